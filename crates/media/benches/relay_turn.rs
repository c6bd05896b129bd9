//! One ConversationRelay turn through the relay driver, over an in-memory socket: a final
//! `prompt` in -> the first `text` token out, with the scripted screening agent. Sessions are
//! set up outside the timed part; each runs the six questions of the default script, then a
//! new one starts.
//!
//! `cargo bench -p voxbridge-media --bench relay_turn`

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Message;
use criterion::{Criterion, criterion_group, criterion_main};
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use voxbridge_brain::Agents;
use voxbridge_media::{LogOnly, MediaConfig, MediaState, RelayService, drive_relay};
use voxbridge_screening::catalog::SHIPPED_SCRIPTS;
use voxbridge_screening::{Screenings, ScriptLibrary};

const SETUP: &str = r#"{"type":"setup","sessionId":"VX00000000000000000000000000000000","accountSid":"AC00000000000000000000000000000000","callSid":"CA00000000000000000000000000000000","from":"+18005550100","to":"+18005550101","direction":"outbound-api","customParameters":{"firstName":"Ana","candidateId":"c1"}}"#;
/// Answers that move the default script forward, one question each.
const ANSWERS: [&str; 6] = [
    "yes I am",
    "yes",
    "about five years",
    "nights",
    "in two weeks",
    "absolutely",
];

struct Session {
    to_bridge: mpsc::UnboundedSender<Result<Message, Infallible>>,
    from_bridge: mpsc::UnboundedReceiver<Message>,
}

fn state() -> MediaState {
    let library = ScriptLibrary::from_sources(SHIPPED_SCRIPTS).expect("shipped scripts");
    let screenings = Screenings::new(library, "default").expect("default script");
    let config = MediaConfig {
        insecure_skip_signature: true,
        ..MediaConfig::default()
    };
    MediaState::with_services(
        config,
        Agents::builtin(),
        Arc::new(LogOnly),
        Some(RelayService::logged(screenings)),
    )
    .expect("valid config")
}

async fn open(state: &MediaState) -> Session {
    let (to_bridge, stream) = mpsc::unbounded();
    let (sink, mut from_bridge) = mpsc::unbounded();
    let service = state.relay().cloned().expect("relay configured");
    tokio::spawn(drive_relay(state.clone(), service, sink, stream));
    to_bridge
        .unbounded_send(Ok(Message::Text(SETUP.into())))
        .expect("driver alive");
    from_bridge.next().await.expect("greeting");
    Session {
        to_bridge,
        from_bridge,
    }
}

fn prompt(text: &str) -> Message {
    Message::Text(
        format!(r#"{{"type":"prompt","voicePrompt":"{text}","lang":"en-US","last":true}}"#).into(),
    )
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let state = state();
    c.bench_function("relay prompt -> first text (scripted agent)", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                let mut session = open(&state).await;
                let mut turn = 0;
                for _ in 0..iters {
                    if turn == ANSWERS.len() {
                        session.to_bridge.close().await.ok();
                        session = open(&state).await;
                        turn = 0;
                    }
                    let message = prompt(ANSWERS[turn]);
                    let start = Instant::now();
                    session
                        .to_bridge
                        .unbounded_send(Ok(message))
                        .expect("driver alive");
                    let first = session.from_bridge.next().await.expect("a text token");
                    total += start.elapsed();
                    assert!(matches!(first, Message::Text(_)));
                    turn += 1;
                }
                total
            })
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
