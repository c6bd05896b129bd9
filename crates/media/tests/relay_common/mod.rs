//! Twilio's side of a ConversationRelay socket over a real connection on 127.0.0.1.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use voxbridge_brain::Agents;
use voxbridge_media::{
    DialogFactory, LogOnly, MediaConfig, MediaError, MediaState, RelayRecord, RelayService,
    ScreeningSink, serve_with_state,
};
use voxbridge_screening::catalog::SHIPPED_SCRIPTS;
use voxbridge_screening::{Screenings, ScriptLibrary};

pub use crate::common::{AUTH_TOKEN, PUBLIC_URL, Ws};

/// The screening a relay session gathered (its outcome's payload).
pub trait ScreeningOf {
    fn screening(&self) -> Option<voxbridge_screening::ScreeningResult>;
}

impl ScreeningOf for RelayRecord {
    fn screening(&self) -> Option<voxbridge_screening::ScreeningResult> {
        self.outcome.as_ref()?.payload().cloned()
    }
}

pub fn config() -> MediaConfig {
    MediaConfig {
        // Tests do not wait for a simulated voice to finish speaking.
        relay_speech_per_word: Duration::from_millis(1),
        ..crate::common::config()
    }
}

/// Keeps every finished session's record.
#[derive(Clone, Default)]
pub struct Sessions(pub Arc<Mutex<Vec<RelayRecord>>>);

impl ScreeningSink for Sessions {
    fn relay_ended(&self, record: &RelayRecord) {
        self.0.lock().expect("not poisoned").push(record.clone());
    }
}

impl Sessions {
    /// Waits (up to 5 s) for exactly one finished session and returns it.
    pub async fn wait_one(&self) -> RelayRecord {
        for _ in 0..500 {
            if let Some(record) = self.0.lock().expect("not poisoned").first() {
                return record.clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no relay session ended within 5 s");
    }

    pub fn is_empty(&self) -> bool {
        self.0.lock().expect("not poisoned").is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.lock().expect("not poisoned").len()
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub state: MediaState,
    pub sessions: Sessions,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), MediaError>>,
}

impl TestServer {
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("server task")
            .expect("server stops cleanly");
    }
}

pub fn screenings() -> Screenings {
    let library = ScriptLibrary::from_sources(SHIPPED_SCRIPTS).expect("shipped scripts load");
    Screenings::new(library, "default").expect("default script")
}

/// A server whose relay runs the shipped scripts.
pub async fn start() -> TestServer {
    start_with(Arc::new(screenings()), config()).await
}

/// A server whose default script waits `silence_ms` for the caller.
pub async fn start_with_silence(silence_ms: u64) -> TestServer {
    let text = SHIPPED_SCRIPTS[0].1.replace(
        "# silence_timeout_ms = 8000",
        &format!("silence_timeout_ms = {silence_ms}"),
    );
    assert_ne!(
        text, SHIPPED_SCRIPTS[0].1,
        "the script documents silence_timeout_ms"
    );
    let library = ScriptLibrary::from_sources([("quiet.toml", text.as_str())]).unwrap();
    start_with(
        Arc::new(Screenings::new(library, "default").unwrap()),
        config(),
    )
    .await
}

pub async fn start_with(dialogs: Arc<dyn DialogFactory>, config: MediaConfig) -> TestServer {
    let sessions = Sessions::default();
    let service = RelayService::new(dialogs, Arc::new(sessions.clone()));
    let state =
        MediaState::with_services(config, Agents::builtin(), Arc::new(LogOnly), Some(service))
            .expect("valid test config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let addr = listener.local_addr().expect("bound address");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve_with_state(state.clone(), listener, shutdown.clone()));
    TestServer {
        addr,
        state,
        sessions,
        shutdown,
        task,
    }
}

/// The signature Twilio would send for `path` on the public URL.
pub fn sign(path: &str) -> String {
    crate::common::sign(&format!("{PUBLIC_URL}{path}"), AUTH_TOKEN)
}

/// Opens `/relay`; `Err(status)` if the server answered with an HTTP error.
pub async fn connect_relay(addr: SocketAddr, signature: Option<&str>) -> Result<Ws, u16> {
    crate::common::connect(addr, "/relay", signature).await
}

/// The documented `setup` example with the screening parameters.
pub fn setup_json(call_sid: &str, screening: &str) -> String {
    format!(
        r#"{{
  "type": "setup",
  "sessionId": "VX00000000000000000000000000000000",
  "accountSid": "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
  "parentCallSid": "",
  "callSid": "{call_sid}",
  "from": "+18005550100",
  "to": "+18005550101",
  "forwardedFrom": "+18005550102",
  "callType": "PSTN",
  "callerName": "",
  "direction": "outbound-api",
  "callStatus": "RINGING",
  "customParameters": {{ "candidateId": "cand-42", "firstName": "Ana", "jobTitle": "Warehouse Associate", "screening": "{screening}" }}
}}"#
    )
}

/// Adds the token of a `text` message to `turn`; whether it closed the talk cycle
/// (`last: true`). Panics on any other message.
pub fn add_token(turn: &mut String, message: &serde_json::Value) -> bool {
    assert_eq!(message["type"], "text", "expected text, got {message}");
    turn.push_str(message["token"].as_str().expect("token is a string"));
    message["last"] == true
}

/// The value of the metric line starting with `prefix` in the bridge's `/metrics` text.
pub fn metric(state: &MediaState, prefix: &str) -> u64 {
    let text = state.render_metrics();
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{prefix} missing:\n{text}"))
}

const WAIT: Duration = Duration::from_secs(5);

/// One simulated ConversationRelay session.
pub struct Relay {
    pub ws: Ws,
}

impl Relay {
    pub async fn open(server: &TestServer) -> Self {
        let ws = connect_relay(server.addr, Some(&sign("/relay")))
            .await
            .expect("signed upgrade accepted");
        Self { ws }
    }

    pub async fn send(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send to the bridge");
    }

    /// Sends `setup` for the default screening and returns the greeting turn.
    pub async fn setup(&mut self, call_sid: &str) -> String {
        self.send(&setup_json(call_sid, "default")).await;
        self.turn().await
    }

    /// The next message as JSON (panics on close or after 5 s).
    pub async fn next_json(&mut self) -> serde_json::Value {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a message within 5 s")
                .expect("socket open")
                .expect("socket ok");
            match frame {
                Message::Text(text) => {
                    // Everything the bridge sends must pass Twilio's validation.
                    voxbridge_twilio::relay::OutboundMessage::parse(text.as_str())
                        .unwrap_or_else(|e| panic!("invalid outbound message {text}: {e}"));
                    return serde_json::from_str(text.as_str()).expect("JSON");
                }
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// The tokens of one talk cycle, up to the one with `last: true`, concatenated.
    pub async fn turn(&mut self) -> String {
        let mut text = String::new();
        while !add_token(&mut text, &self.next_json().await) {}
        text
    }

    /// Says something (a final prompt) and returns the agent's answer.
    pub async fn say(&mut self, words: &str) -> String {
        let prompt = serde_json::json!({
            "type": "prompt", "voicePrompt": words, "lang": "en-US", "last": true
        });
        self.send(&prompt.to_string()).await;
        self.turn().await
    }

    /// The next message must be `end`; returns its parsed `handoffData`.
    pub async fn expect_end(&mut self) -> serde_json::Value {
        let message = self.next_json().await;
        assert_eq!(message["type"], "end", "expected end, got {message}");
        let data = message["handoffData"].as_str().expect("handoffData string");
        serde_json::from_str(data).expect("handoffData is JSON")
    }

    /// Nothing arrives for `quiet`.
    pub async fn expect_quiet(&mut self, quiet: Duration) {
        if let Ok(frame) = tokio::time::timeout(quiet, self.ws.next()).await {
            panic!("expected silence, got {frame:?}");
        }
    }

    /// Reads until the server closes; returns the close code.
    pub async fn expect_close(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("close within 5 s")
            {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Closes as Twilio does after `end` (or on hang-up).
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        let _ = tokio::time::timeout(WAIT, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }
}
