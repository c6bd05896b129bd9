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
