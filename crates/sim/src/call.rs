//! What both simulated callers report: transcript lines, how the call ended, the outcome.

use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::stats::Recorder;
use crate::ws::{self, ConnectError, Route};

/// Who spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    /// The voice agent.
    Bot,
    /// The simulated candidate.
    Caller,
}

/// One line of the live transcript as the simulated caller experienced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TranscriptLine {
    /// Milliseconds since the call connected.
    pub at_ms: u64,
    /// Who.
    pub speaker: Speaker,
    /// What (bot audio on Media Streams is described, e.g. `(bot audio 1.2 s)`).
    pub text: String,
    /// The caller talked over this bot turn and it was cut short.
    pub interrupted: bool,
}

/// Where transcript lines go while a call runs (bounded; lines are dropped if the reader
/// falls behind, never blocking the call).
#[derive(Debug, Clone, Default)]
pub struct TranscriptTap(Option<mpsc::Sender<(String, TranscriptLine)>>);

impl TranscriptTap {
    /// No live output.
    pub fn none() -> Self {
        Self(None)
    }

    /// Sends `(call_sid, line)` pairs to `tx`.
    pub fn to(tx: mpsc::Sender<(String, TranscriptLine)>) -> Self {
        Self(Some(tx))
    }

    /// Offers a line; drops it if the reader is behind or gone.
    pub fn offer(&self, call_sid: &str, line: &TranscriptLine) {
        if let Some(tx) = &self.0 {
            let _ = tx.try_send((call_sid.to_owned(), line.clone()));
        }
    }
}

/// How a simulated call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "code")]
pub enum CallEnd {
    /// The scenario hung up (Twilio sent `stop` / closed the session).
    CallerHungUp,
    /// The server closed the socket, with this close code.
    ServerClosed(u16),
    /// ConversationRelay: the server sent `end`.
    SessionEnded,
    /// The call hit its maximum length.
    MaxDuration,
    /// Ended from outside (REST hang-up or redirect, shutdown).
    Cancelled,
}

/// The result of one simulated call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CallOutcome {
    /// How it ended (`None` if it never connected).
    pub end: Option<CallEnd>,
    /// From connect to end.
    #[serde(skip)]
    pub duration: Duration,
    /// The transcript as the caller experienced it.
    pub transcript: Vec<TranscriptLine>,
    /// Media Streams: the audio the caller heard (mu-law 8 kHz, real-time timeline), when
    /// recording.
    #[serde(skip)]
    pub heard: Option<Vec<u8>>,
    /// Media Streams: the audio the caller sent (mu-law 8 kHz, same timeline), when
    /// recording.
    #[serde(skip)]
    pub sent: Option<Vec<u8>>,
    /// Relay: the `handoffData` of the server's `end`, if any.
    pub handoff_data: Option<String>,
    /// Marks echoed.
    pub marks_echoed: u64,
    /// `clear`s received.
    pub clears: u64,
    /// Bot turns heard.
    pub bot_turns: u64,
}

impl CallOutcome {
    /// Appends a transcript line and offers it to `tap`.
    pub(crate) fn say(&mut self, tap: &TranscriptTap, call_sid: &str, line: TranscriptLine) {
        tap.offer(call_sid, &line);
        self.transcript.push(line);
    }
}

/// Microseconds in `d`, saturating.
pub(crate) fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Opens a call's socket, counting it in `recorder` (started, connected or failed, connect
/// time).
pub(crate) async fn open(
    url: &str,
    route: &Route,
    auth_token: Option<&str>,
    timeout: Duration,
    recorder: &Recorder,
) -> Result<ws::Socket, ConnectError> {
    Recorder::bump(&recorder.calls_started);
    let dial_start = tokio::time::Instant::now();
    match ws::connect(url, route, auth_token, timeout).await {
        Ok(socket) => {
            recorder.connect_us.record(us(dial_start.elapsed()));
            Recorder::bump(&recorder.calls_connected);
            Ok(socket)
        }
        Err(e) => {
            Recorder::bump(&recorder.calls_failed);
            recorder.error(&format!("connect: {e}"));
            Err(e)
        }
    }
}

/// Counts how a connected call ended and attaches the end to its outcome.
pub(crate) fn finish<E>(
    result: Result<CallEnd, E>,
    mut outcome: CallOutcome,
    recorder: &Recorder,
) -> Result<CallOutcome, E> {
    match result {
        Ok(end) => {
            outcome.end = Some(end);
            match end {
                CallEnd::ServerClosed(code) if code != 1000 => {
                    Recorder::bump(&recorder.calls_failed);
                    recorder.error(&format!("server closed with {code}"));
                }
                _ => Recorder::bump(&recorder.calls_completed),
            }
            Ok(outcome)
        }
        Err(e) => {
            Recorder::bump(&recorder.calls_failed);
            recorder.error("socket error");
            Err(e)
        }
    }
}
