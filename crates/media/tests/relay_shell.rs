//! The relay driver over in-memory sockets on paused time: what only the shell decides (the
//! outbox's slow-peer cut-off, the drain deadline, close frames and the record), with the
//! scripted screening agent.

mod common;
mod relay_common;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Message;
use futures::StreamExt;
use futures::channel::mpsc;
use tokio::task::JoinHandle;
use voxbridge_brain::Agents;
use voxbridge_media::{
    LogOnly, MediaConfig, MediaState, RelayEnd, RelayRecord, RelayService, drive_relay,
};
use voxbridge_session::SessionConfig;

fn state(config: MediaConfig) -> (MediaState, relay_common::Sessions) {
    let sessions = relay_common::Sessions::default();
    let service = RelayService::new(
        Arc::new(relay_common::screenings()),
        Arc::new(sessions.clone()),
    );
    let state =
        MediaState::with_services(config, Agents::builtin(), Arc::new(LogOnly), Some(service))
            .expect("valid test config");
    (state, sessions)
}

fn setup() -> Message {
    Message::Text(relay_common::setup_json("CA30000000000000000000000000000001", "default").into())
}

/// Twilio's side of an in-memory socket that reads everything.
struct Peer {
    to_bridge: mpsc::UnboundedSender<Result<Message, Infallible>>,
    from_bridge: mpsc::UnboundedReceiver<Message>,
    task: JoinHandle<RelayRecord>,
}

impl Peer {
    fn open(state: &MediaState) -> Self {
        let (to_bridge, stream) = mpsc::unbounded();
        let (sink, from_bridge) = mpsc::unbounded();
        let service = state.relay().cloned().expect("relay configured");
        let task = tokio::spawn(drive_relay(state.clone(), service, sink, stream));
        Self {
            to_bridge,
            from_bridge,
            task,
        }
    }

    fn send(&self, message: Message) {
        self.to_bridge
            .unbounded_send(Ok(message))
            .expect("driver alive");
    }

    async fn next(&mut self) -> Message {
        tokio::time::timeout(Duration::from_secs(60), self.from_bridge.next())
            .await
            .expect("a frame within 60 s")
            .expect("socket open")
    }

    async fn next_json(&mut self) -> serde_json::Value {
        match self.next().await {
            Message::Text(text) => serde_json::from_str(text.as_str()).expect("JSON"),
            other => panic!("expected text, got {other:?}"),
        }
    }

    /// The tokens of one talk cycle, up to the one with `last: true`, concatenated.
    async fn turn(&mut self) -> String {
        let mut text = String::new();
        while !relay_common::add_token(&mut text, &self.next_json().await) {}
        text
    }

    fn send_text(&self, text: &str) {
        self.send(Message::Text(text.into()));
    }

    /// The close frame (code, reason).
    async fn expect_close(&mut self) -> (u16, String) {
        match self.next().await {
            Message::Close(Some(frame)) => (frame.code, frame.reason.to_string()),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn no_setup_closes_1008_after_start_timeout() {
    let (state, sessions) = state(relay_common::config());
    let mut twilio = Peer::open(&state);
    let began = tokio::time::Instant::now();
    assert_eq!(
        twilio.expect_close().await,
        (1008, "policy violation".to_owned())
    );
    assert_eq!(began.elapsed(), Duration::from_secs(10));
    drop(twilio.to_bridge);
    let record = twilio.task.await.expect("driver task");
    assert_eq!(record.end, RelayEnd::SetupTimeout);
    assert!(record.call_sid.is_empty());
    assert!(record.agent.is_none());
    assert_eq!(sessions.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_drain_deadline_closes_1001_and_keeps_what_was_gathered() {
    let (state, sessions) = state(relay_common::config());
    let mut twilio = Peer::open(&state);
    twilio.send(setup());
    assert_eq!(twilio.next_json().await["type"], "text");
    assert_eq!(state.registry().count(), 1);
    state.close_all();
    assert_eq!(
        twilio.expect_close().await,
        (1001, "server shutting down".to_owned())
    );
    drop(twilio.to_bridge);
    let record = twilio.task.await.expect("driver task");
    assert_eq!(record.end, RelayEnd::Shutdown);
    assert_eq!(record.agent.as_deref(), Some("screening"));
    assert_eq!(record.bot_turns, 1);
    assert!(record.outcome.is_some());
    assert_eq!(state.registry().count(), 0, "unregistered at the end");
    assert_eq!(sessions.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn max_call_duration_sends_end_and_closes_after_the_linger() {
    let (state, _sessions) = state(MediaConfig {
        session: SessionConfig {
            max_call_duration: Duration::from_secs(12),
            ..SessionConfig::default()
        },
        ..relay_common::config()
    });
    let mut twilio = Peer::open(&state);
    let began = tokio::time::Instant::now();
    twilio.send(setup());
    assert_eq!(twilio.next_json().await["type"], "text");
    // The silence timer (8 s) re-prompts once before the maximum duration.
    let end = loop {
        let message = twilio.next_json().await;
        if message["type"] == "end" {
            break message;
        }
        assert_eq!(message["type"], "text", "{message}");
    };
    assert_eq!(began.elapsed(), Duration::from_secs(12));
    let handoff: serde_json::Value =
        serde_json::from_str(end["handoffData"].as_str().expect("a string")).expect("JSON");
    assert_eq!(handoff["reasonCode"], "max-duration");
    assert_eq!(handoff["reason"], "Maximum call duration reached");
    // Twilio does not close: the driver does, 5 s later.
    assert_eq!(
        twilio.expect_close().await,
        (1000, "session ended".to_owned())
    );
    assert_eq!(began.elapsed(), Duration::from_secs(17));
    drop(twilio.to_bridge);
    let record = twilio.task.await.expect("driver task");
    assert_eq!(record.end, RelayEnd::MaxDuration);
}

/// A session on a socket that takes one frame and is never read again (a queue of two): its
/// `setup`, then three prompts 10 ms apart, whose answers fill the queue.
struct HeldUp {
    state: MediaState,
    sessions: relay_common::Sessions,
    to_bridge: mpsc::UnboundedSender<Result<Message, Infallible>>,
    task: JoinHandle<RelayRecord>,
    /// When `setup` was sent.
    began: tokio::time::Instant,
    _never_read: mpsc::Receiver<Message>,
}

async fn held_up_session() -> HeldUp {
    let (state, sessions) = state(MediaConfig {
        send_queue_frames: 2,
        ..relay_common::config()
    });
    let (to_bridge, stream) = mpsc::unbounded::<Result<Message, Infallible>>();
    let (sink, never_read) = mpsc::channel::<Message>(0);
    let service = state.relay().cloned().expect("relay configured");
    let task = tokio::spawn(drive_relay(state.clone(), service, sink, stream));
    to_bridge.unbounded_send(Ok(setup())).expect("driver alive");
    let began = tokio::time::Instant::now();
    let prompt = r#"{ "type": "prompt", "voicePrompt": "yes", "lang": "en-US", "last": true }"#;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let _ = to_bridge.unbounded_send(Ok(Message::Text(prompt.into())));
    }
    HeldUp {
        state,
        sessions,
        to_bridge,
        task,
        began,
        _never_read: never_read,
    }
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_reading_ends_the_session_as_slow_peer() {
    let held = held_up_session().await;
    let (state, sessions, began) = (held.state, held.sessions, held.began);
    let record = tokio::time::timeout(Duration::from_secs(60), held.task)
        .await
        .expect("the session ends")
        .expect("driver task");
    assert_eq!(record.end, RelayEnd::SlowPeer);
    // The default send_timeout: 5 s without the socket taking a frame.
    assert!(
        began.elapsed() >= Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    assert!(
        began.elapsed() < Duration::from_secs(6),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(state.registry().count(), 0);
    assert_eq!(sessions.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_session_whose_output_is_held_up_still_reads_the_caller() {
    let held = held_up_session().await;
    // The greeting went out, two answers fill the queue: the socket takes nothing more. What
    // the caller sends meanwhile is still read (and here, counted as malformed).
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let _ = held
            .to_bridge
            .unbounded_send(Ok(Message::Text("not json".into())));
    }
    let record = tokio::time::timeout(Duration::from_secs(60), held.task)
        .await
        .expect("the session ends")
        .expect("driver task");
    assert_eq!(record.end, RelayEnd::SlowPeer);
    assert_eq!(record.bad_messages, 3);
    assert_eq!(record.caller_turns, 3);
}

/// Not the 400 ms default, so a driver that did not pass `relay_speech_ms_per_word` on fails.
const PER_WORD: Duration = Duration::from_millis(250);
/// The shipped script's `silence_timeout_ms` (the default, 8000).
const SCRIPT_SILENCE: Duration = Duration::from_secs(8);
const AGENT_SILENT: &str =
    r#"{"type":"info","name":"agentSpeaking","value":"off","ts":1752091234567}"#;

/// How long Twilio is assumed to speak `line`: `relay_speech_ms_per_word` x its words.
fn speaking_time(line: &str) -> Duration {
    PER_WORD * u32::try_from(line.split_whitespace().count()).expect("a short line")
}

fn estimating_state() -> (MediaState, relay_common::Sessions) {
    state(MediaConfig {
        relay_speech_per_word: PER_WORD,
        ..relay_common::config()
    })
}

#[tokio::test(start_paused = true)]
async fn the_silence_timer_starts_once_the_turn_has_been_spoken_by_the_estimate() {
    let (state, _sessions) = estimating_state();
    let mut twilio = Peer::open(&state);
    twilio.send(setup());
    let greeting = twilio.turn().await;
    let sent = tokio::time::Instant::now();
    assert!(
        speaking_time(&greeting) > Duration::from_secs(2),
        "{greeting}"
    );
    let reprompt = twilio.turn().await;
    assert!(reprompt.contains("still there"), "{reprompt}");
    assert_eq!(sent.elapsed(), speaking_time(&greeting) + SCRIPT_SILENCE);
}

#[tokio::test(start_paused = true)]
async fn agent_speaking_off_starts_the_silence_timer_at_once() {
    let (state, _sessions) = estimating_state();
    let mut twilio = Peer::open(&state);
    twilio.send(setup());
    let greeting = twilio.turn().await;
    let sent = tokio::time::Instant::now();
    // Twilio finished speaking after 1 s, well before the estimate.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        speaking_time(&greeting) > Duration::from_secs(2),
        "{greeting}"
    );
    twilio.send_text(AGENT_SILENT);
    let reprompt = twilio.turn().await;
    assert!(reprompt.contains("still there"), "{reprompt}");
    assert_eq!(sent.elapsed(), Duration::from_secs(1) + SCRIPT_SILENCE);
}

#[tokio::test(start_paused = true)]
async fn end_waits_for_the_closing_line_by_the_estimate_or_until_agent_speaking_off() {
    let (state, sessions) = estimating_state();
    for twilio_says_when in [None, Some(Duration::from_millis(300))] {
        let mut twilio = Peer::open(&state);
        twilio.send(setup());
        twilio.turn().await;
        twilio.send_text(
            r#"{ "type": "prompt", "voicePrompt": "no, I'm not authorized", "lang": "en-US", "last": true }"#,
        );
        let closing = twilio.turn().await;
        let sent = tokio::time::Instant::now();
        assert!(closing.contains("requires work authorization"), "{closing}");
        if let Some(after) = twilio_says_when {
            tokio::time::sleep(after).await;
            twilio.send_text(AGENT_SILENT);
        }
        let end = twilio.next_json().await;
        assert_eq!(end["type"], "end", "{end}");
        assert_eq!(
            sent.elapsed(),
            twilio_says_when.unwrap_or_else(|| speaking_time(&closing)),
            "agentSpeaking off after {twilio_says_when:?}"
        );
        // Twilio closes after `end`.
        twilio.send(Message::Close(None));
        let record = twilio.task.await.expect("driver task");
        assert!(
            matches!(&record.end, RelayEnd::Agent(handoff) if handoff.reason_code == "knock-out"),
            "{:?}",
            record.end
        );
    }
    assert_eq!(sessions.len(), 2);
}
