//! The text-level conversation interface shared by both transports.
//!
//! A [`Conversation`] is a sans-IO state machine that exchanges *text* with the caller. Two
//! shells drive it:
//!
//! - ConversationRelay (`/relay`): Twilio does speech recognition and synthesis. `setup` ->
//!   [`ConversationInput::Started`], `prompt` with `last: true` -> [`ConversationInput::UserSaid`],
//!   `dtmf` -> [`ConversationInput::Dtmf`], `interrupt` -> [`ConversationInput::Interrupted`]
//!   (with `utteranceUntilInterrupt`), a closed socket -> [`ConversationInput::Hangup`].
//!   [`ConversationOutput::Say`] is streamed as `text` tokens, [`ConversationOutput::End`] becomes
//!   `end` with `handoffData` = [`EndReason::handoff_data_json`].
//! - Media Streams through the speech pipeline: ASR finals -> `UserSaid`, barge-in ->
//!   `Interrupted { heard }` (the text of the chunks whose marks came back), `Say` -> TTS.
//!
//! Driving: call [`Conversation::handle`] with the current time (milliseconds since any fixed
//! origin, e.g. the call start) and an input, then drain [`Conversation::poll`] until `None`.
//! The machine never reads a clock and never blocks. Silence is detected by the shell (no
//! final transcript for a while after a bot turn finished playing) and reported as
//! [`ConversationInput::Silence`]; [`Conversation::silence_timeout_ms`] says how long to wait.

use std::collections::BTreeMap;

use crate::outcome::CallOutcome;
pub use crate::outcome::EndReason;

/// The `handoffData.reasonCode` for a transfer to a person.
pub const REASON_LIVE_AGENT_HANDOFF: &str = "live-agent-handoff";
/// The `handoffData.reasonCode` when the caller asked to be called back.
pub const REASON_CALLBACK_REQUESTED: &str = "callback-requested";
/// The `handoffData.reasonCode` when every question was asked.
pub const REASON_SCREENING_COMPLETE: &str = "screening-complete";
/// The `handoffData.reasonCode` when an answer ended the screening early.
pub const REASON_KNOCK_OUT: &str = "knock-out";
/// The `handoffData.reasonCode` when an answering machine picked up.
pub const REASON_VOICEMAIL: &str = "voicemail";
/// The `handoffData.reasonCode` when the caller stopped answering.
pub const REASON_NO_ANSWER: &str = "no-answer";
/// The `handoffData.reasonCode` when the screening could not be completed (unclear answers).
pub const REASON_INCOMPLETE: &str = "screening-incomplete";

/// An input to a [`Conversation`].
#[derive(Debug, Clone, PartialEq)]
pub enum ConversationInput {
    /// The call is connected. `parameters` are the custom parameters of the call
    /// (`candidateId`, `firstName`, `jobTitle`, `screening`, ...).
    Started {
        /// The Twilio call SID, for the result record.
        call_sid: String,
        /// Custom parameters (`<Parameter>` children of the TwiML noun).
        parameters: BTreeMap<String, String>,
    },
    /// A final transcript of what the caller said (relay `prompt` with `last: true`, or an ASR
    /// final result).
    UserSaid {
        /// The transcript.
        text: String,
        /// ASR confidence in `0.0..=1.0` when the recogniser reports one.
        confidence: Option<f32>,
    },
    /// One DTMF key: `0-9`, `*` or `#`.
    Dtmf(char),
    /// The caller spoke over the bot: the current bot turn was cut. `heard` is what the caller
    /// actually heard of it (relay `utteranceUntilInterrupt`).
    Interrupted {
        /// The part of the bot turn that was played.
        heard: String,
    },
    /// The caller hung up or the socket dropped. No output follows.
    Hangup,
    /// The caller has said nothing for `ms` since the last bot turn finished.
    Silence {
        /// How long the silence lasted.
        ms: u64,
    },
}

/// An output of a [`Conversation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConversationOutput {
    /// One bot turn to speak, complete (the relay shell streams it as `text` tokens and marks
    /// the final token `last: true`; the speech pipeline synthesises it).
    Say {
        /// What to say.
        text: String,
        /// Whether the caller may barge in (relay `interruptible`). Closing lines are not.
        interruptible: bool,
        /// This is the final bot turn of the conversation: an [`ConversationOutput::End`]
        /// follows, to be acted on once this turn has played.
        last: bool,
    },
    /// The conversation is over: hang up or hand off (relay `end` with `handoffData`).
    End(EndReason),
    /// Play DTMF tones (relay `sendDigits`): `0-9`, `w`, `#`, `*`.
    SendDigits(String),
    /// Switch languages for what follows (relay `language`).
    Language {
        /// TTS language, e.g. `en-US`.
        tts: Option<String>,
        /// Transcription language.
        transcription: Option<String>,
    },
}

/// A text conversation: one per call, driven by a transport shell.
pub trait Conversation: Send {
    /// Feeds one input at `now_ms` (milliseconds since a fixed origin; only differences and
    /// order matter). Inputs after the conversation ended are ignored.
    fn handle(&mut self, now_ms: u64, input: ConversationInput);

    /// The next output, oldest first; `None` when there is nothing more for now.
    fn poll(&mut self) -> Option<ConversationOutput>;

    /// How long the shell waits for the caller after a bot turn has played before it reports
    /// [`ConversationInput::Silence`].
    fn silence_timeout_ms(&self) -> u64;

    /// Whether an `End` was produced or the caller hung up.
    fn is_ended(&self) -> bool;

    /// What was gathered so far (complete once [`Conversation::is_ended`]).
    fn outcome(&self) -> CallOutcome;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handoff_data_is_the_relay_convention() {
        let reason = EndReason::new(REASON_LIVE_AGENT_HANDOFF, "The caller asked for a person");
        assert_eq!(
            reason.handoff_data_json(),
            r#"{"reasonCode":"live-agent-handoff","reason":"The caller asked for a person"}"#
        );
    }
}
