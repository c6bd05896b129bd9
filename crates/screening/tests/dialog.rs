//! The scripted screening agent as a streaming dialog (what both transports drive).

use std::collections::BTreeMap;

use futures::StreamExt;
use voxbridge_brain::conversation::ConversationInput;
use voxbridge_brain::dialog::{Dialog, DialogEvent, Scripted};
use voxbridge_screening::{ScreeningAgent, ScriptLibrary};

fn library() -> ScriptLibrary {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/screenings");
    ScriptLibrary::load_dir(&dir).expect("the shipped scripts load")
}

#[test]
fn scripted_greeting_is_one_text_and_a_turn_end() {
    let library = library();
    let script = library
        .select(&BTreeMap::new(), "default")
        .expect("the default script");
    let mut dialog = Scripted::new(ScreeningAgent::new(script));
    let events: Vec<_> = futures::executor::block_on(
        dialog
            .handle(
                0,
                ConversationInput::Started {
                    call_sid: "CA00000000000000000000000000000001".into(),
                    parameters: BTreeMap::from([("firstName".into(), "Ana".into())]),
                },
            )
            .collect(),
    );
    let texts: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            DialogEvent::Text { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert!(!texts.is_empty(), "the agent greets the caller: {events:?}");
    assert!(
        texts[0].contains("Ana"),
        "greeting uses the first name: {texts:?}"
    );
    assert!(
        matches!(events.last(), Some(DialogEvent::TurnEnd { last: false })),
        "a turn ends the greeting: {events:?}"
    );
    assert!(!dialog.is_ended());
}
