//! The streaming text dialog both transports drive: the async face of a conversation.
//!
//! A [`Conversation`] is a sans-IO state machine that answers each input with whole bot turns.
//! An LLM-backed agent instead *streams* its answer (tokens as the model produces them) and
//! awaits a provider. [`Dialog`] covers both: [`Dialog::handle`] takes one input and returns a
//! stream of [`DialogEvent`]s for it.
//!
//! - The ConversationRelay shell (`/relay`) sends each [`DialogEvent::Text`] as a `text` token
//!   as soon as it arrives and the [`DialogEvent::TurnEnd`] as the `last: true` token.
//! - The speech pipeline (Media Streams) cuts the text into sentences, synthesises each one as
//!   soon as it is complete, and plays them in order.
//!
//! Dropping the stream cancels the turn (barge-in): no provider work continues after the drop.
//! The shell then reports what the caller actually heard with
//! [`ConversationInput::Interrupted`]. A shell must drain (or drop) one stream before calling
//! `handle` again; the borrow makes that hold.
//!
//! [`Scripted`] adapts any [`Conversation`] (the screening agent) into a [`Dialog`].

use futures::stream::{self, BoxStream, StreamExt};

use crate::conversation::{Conversation, ConversationInput, ConversationOutput, EndReason};
use crate::outcome::CallOutcome;

/// One piece of what the agent does in answer to an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialogEvent {
    /// Text of the current bot turn, in order. Concatenating the `text`s of a turn gives the
    /// whole turn (pieces carry their own spacing).
    Text {
        /// The piece.
        text: String,
        /// Whether the caller may barge in on this turn (relay `interruptible`).
        interruptible: bool,
    },
    /// The current bot turn is complete. `last`: it is the final turn, an
    /// [`DialogEvent::End`] follows once it has played.
    TurnEnd {
        /// This was the closing turn.
        last: bool,
    },
    /// Hang up or hand off (relay `end` with `handoffData`).
    End(EndReason),
    /// Play DTMF tones (relay `sendDigits`).
    SendDigits(String),
    /// Switch languages (relay `language`).
    Language {
        /// TTS language, e.g. `en-US`.
        tts: Option<String>,
        /// Transcription language.
        transcription: Option<String>,
    },
}

/// A conversation that streams its answers. One per call.
pub trait Dialog: Send + 'static {
    /// Handles one input at `now_ms` (milliseconds since a fixed origin) and streams what to
    /// do about it. An empty stream means nothing to say. Dropping the stream cancels.
    fn handle(&mut self, now_ms: u64, input: ConversationInput) -> BoxStream<'_, DialogEvent>;

    /// How long the shell waits for the caller after a bot turn has played before it reports
    /// [`ConversationInput::Silence`].
    fn silence_timeout_ms(&self) -> u64;

    /// Whether the dialog has ended (an `End` was produced or the caller hung up).
    fn is_ended(&self) -> bool;

    /// What was gathered so far (complete once [`Dialog::is_ended`]).
    fn outcome(&self) -> CallOutcome;
}

/// A [`Conversation`] as a [`Dialog`]: each `Say` becomes one `Text` and a `TurnEnd`.
#[derive(Debug)]
pub struct Scripted<C> {
    conversation: C,
}

impl<C: Conversation + 'static> Scripted<C> {
    /// Wraps a conversation.
    pub fn new(conversation: C) -> Self {
        Self { conversation }
    }

    /// The wrapped conversation.
    pub fn inner(&self) -> &C {
        &self.conversation
    }

    /// Unwraps it.
    pub fn into_inner(self) -> C {
        self.conversation
    }
}

/// The dialog events of one conversation output.
pub fn events_of(output: ConversationOutput) -> Vec<DialogEvent> {
    match output {
        ConversationOutput::Say {
            text,
            interruptible,
            last,
        } => vec![
            DialogEvent::Text {
                text,
                interruptible,
            },
            DialogEvent::TurnEnd { last },
        ],
        ConversationOutput::End(reason) => vec![DialogEvent::End(reason)],
        ConversationOutput::SendDigits(digits) => vec![DialogEvent::SendDigits(digits)],
        ConversationOutput::Language { tts, transcription } => {
            vec![DialogEvent::Language { tts, transcription }]
        }
    }
}

impl<C: Conversation + 'static> Dialog for Scripted<C> {
    fn handle(&mut self, now_ms: u64, input: ConversationInput) -> BoxStream<'_, DialogEvent> {
        self.conversation.handle(now_ms, input);
        let mut events = Vec::new();
        while let Some(output) = self.conversation.poll() {
            events.extend(events_of(output));
        }
        stream::iter(events).boxed()
    }

    fn silence_timeout_ms(&self) -> u64 {
        self.conversation.silence_timeout_ms()
    }

    fn is_ended(&self) -> bool {
        self.conversation.is_ended()
    }

    fn outcome(&self) -> CallOutcome {
        self.conversation.outcome()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// Greets on start, says goodbye on any key, then ends.
    #[derive(Default)]
    struct Greeter {
        queued: VecDeque<ConversationOutput>,
        ended: bool,
    }

    impl Conversation for Greeter {
        fn handle(&mut self, _now_ms: u64, input: ConversationInput) {
            match input {
                ConversationInput::Started { .. } => {
                    self.queued.push_back(ConversationOutput::Say {
                        text: "Hello".into(),
                        interruptible: true,
                        last: false,
                    });
                }
                ConversationInput::Dtmf(_) => {
                    self.queued.push_back(ConversationOutput::Say {
                        text: "Bye".into(),
                        interruptible: false,
                        last: true,
                    });
                    self.queued
                        .push_back(ConversationOutput::End(EndReason::new(
                            "done",
                            "key pressed",
                        )));
                    self.ended = true;
                }
                _ => {}
            }
        }
        fn poll(&mut self) -> Option<ConversationOutput> {
            self.queued.pop_front()
        }
        fn silence_timeout_ms(&self) -> u64 {
            5_000
        }
        fn is_ended(&self) -> bool {
            self.ended
        }
        fn outcome(&self) -> CallOutcome {
            CallOutcome::default()
        }
    }

    fn events(dialog: &mut Scripted<Greeter>, input: ConversationInput) -> Vec<DialogEvent> {
        futures::executor::block_on(dialog.handle(0, input).collect())
    }

    #[test]
    fn each_say_is_one_text_and_a_turn_end_and_end_follows_the_last() {
        let mut dialog = Scripted::new(Greeter::default());
        let greeting = events(
            &mut dialog,
            ConversationInput::Started {
                call_sid: "CA00000000000000000000000000000001".into(),
                parameters: std::collections::BTreeMap::new(),
            },
        );
        assert_eq!(
            greeting,
            [
                DialogEvent::Text {
                    text: "Hello".into(),
                    interruptible: true
                },
                DialogEvent::TurnEnd { last: false }
            ]
        );
        assert!(!dialog.is_ended());
        let goodbye = events(&mut dialog, ConversationInput::Dtmf('1'));
        assert_eq!(
            goodbye,
            [
                DialogEvent::Text {
                    text: "Bye".into(),
                    interruptible: false
                },
                DialogEvent::TurnEnd { last: true },
                DialogEvent::End(EndReason::new("done", "key pressed")),
            ]
        );
        assert!(dialog.is_ended());
        assert_eq!(dialog.silence_timeout_ms(), 5_000);
    }
}
