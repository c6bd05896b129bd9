//! Twilio's side of a Media Streams socket over a real connection on 127.0.0.1.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use voxbridge_brain::Agents;
use voxbridge_media::{
    CallRecord, CallSink, LogOnly, MediaConfig, MediaError, MediaState, serve_with_state,
};
use voxbridge_twilio::RequestValidator;
use voxbridge_twilio::media::{OutboundDecoder, OutboundEvent, Track, TwilioEncoder};
use voxbridge_twilio::sid::{AccountSid, CallSid, StreamSid};

/// The most a turn may take beyond the providers' configured latencies (utterance or provider
/// speech stop -> first frame sent, minus them): the README's promise for the bridge's own
/// share (Performance: voice pipeline overhead p99 <= 10 ms) plus 5 ms for a debug build and
/// the fakes' 1 ms timer ticks (one per provider stage). Measured: 2.1-2.8 ms (voice), 1.2 ms
/// (realtime, whose stand-in adds no configured latency).
pub const BRIDGE_SHARE_BOUND: Duration = Duration::from_millis(15);

pub const PUBLIC_URL: &str = "wss://voice.example.com";
pub const AUTH_TOKEN: &str = "12345678901234567890123456789012";

pub fn config() -> MediaConfig {
    MediaConfig {
        public_url: PUBLIC_URL.into(),
        auth_token: AUTH_TOKEN.into(),
        ..MediaConfig::default()
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub state: MediaState,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), MediaError>>,
}

/// Keeps every finished call's record.
#[derive(Clone, Default)]
pub struct Records(pub Arc<Mutex<Vec<CallRecord>>>);

impl CallSink for Records {
    fn call_ended(&self, record: &CallRecord) {
        self.0.lock().expect("not poisoned").push(record.clone());
    }
}

pub async fn start_server(config: MediaConfig) -> Server {
    start_server_with_sink(config, Arc::new(LogOnly)).await
}

pub async fn start_server_with_sink(config: MediaConfig, sink: Arc<dyn CallSink>) -> Server {
    start_server_with_agents(config, Agents::builtin(), sink).await
}

pub async fn start_server_with_agents(
    config: MediaConfig,
    agents: Agents,
    sink: Arc<dyn CallSink>,
) -> Server {
    let state = MediaState::with_call_sink(config, agents, sink).expect("valid test config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let addr = listener.local_addr().expect("bound address");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve_with_state(state.clone(), listener, shutdown.clone()));
    Server {
        addr,
        state,
        shutdown,
        task,
    }
}

pub fn sign(url: &str, token: &str) -> String {
    RequestValidator::new(token).sign_websocket(url)
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens the WebSocket; `Err(status)` if the server answered with an HTTP error.
pub async fn connect(addr: SocketAddr, path: &str, signature: Option<&str>) -> Result<Ws, u16> {
    let mut request = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("valid URL");
    if let Some(signature) = signature {
        request.headers_mut().insert(
            "X-Twilio-Signature",
            signature.parse().expect("base64 is a valid header"),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("connect failed: {e}"),
    }
}

/// A signed connection to `/media`.
pub async fn connect_signed(addr: SocketAddr) -> Ws {
    let signature = sign(&format!("{PUBLIC_URL}/media"), AUTH_TOKEN);
    connect(addr, "/media", Some(&signature))
        .await
        .expect("signed upgrade accepted")
}

static NEXT_SID: AtomicU64 = AtomicU64::new(1);

/// One simulated Twilio stream.
pub struct Twilio {
    pub ws: Ws,
    pub encoder: TwilioEncoder,
    pub call_sid: CallSid,
    pub account_sid: AccountSid,
    chunk: u64,
}

impl Twilio {
    pub fn new(ws: Ws) -> Self {
        let n = NEXT_SID.fetch_add(1, Ordering::Relaxed);
        Self {
            ws,
            encoder: TwilioEncoder::new(
                StreamSid::new(format!("MZ{n:032x}")).expect("valid stream SID"),
            ),
            call_sid: CallSid::new(format!("CA{n:032x}")).expect("valid call SID"),
            account_sid: AccountSid::new(format!("AC{:032x}", 7)).expect("valid account SID"),
            chunk: 0,
        }
    }

    pub fn stream_sid(&self) -> String {
        self.encoder.stream_sid().as_str().to_owned()
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text.to_owned()))
            .await
            .expect("send to bridge");
    }

    /// `connected` then `start` with these custom parameters.
    pub async fn begin(&mut self, params: &[(&str, &str)]) {
        let connected = self.encoder.connected().to_owned();
        self.send_text(&connected).await;
        self.send_start(params).await;
    }

    /// `start` alone.
    pub async fn send_start(&mut self, params: &[(&str, &str)]) {
        let params: BTreeMap<String, String> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let start = self
            .encoder
            .start(
                self.account_sid.clone(),
                self.call_sid.clone(),
                vec![Track::Inbound],
                params,
            )
            .to_owned();
        // Twilio adds fields without notice: the bridge must ignore unknown ones.
        let start = start.replacen('{', r#"{"futureField":{"x":1},"#, 1);
        self.send_text(&start).await;
    }

    pub async fn media(&mut self, mulaw: &[u8]) {
        self.chunk += 1;
        let frame = self
            .encoder
            .media(Track::Inbound, self.chunk, (self.chunk - 1) * 20, mulaw)
            .to_owned();
        self.send_text(&frame).await;
    }

    pub async fn mark(&mut self, name: &str) {
        let mark = self.encoder.mark(name).to_owned();
        self.send_text(&mark).await;
    }

    /// A key pressed on the caller's keypad (`dtmf` message).
    pub async fn dtmf(&mut self, digit: char) {
        let digit = voxbridge_twilio::media::DtmfDigit::from_char(digit).expect("a DTMF key");
        let dtmf = self.encoder.dtmf(digit).to_owned();
        self.send_text(&dtmf).await;
    }

    pub async fn stop(&mut self) {
        let stop = self
            .encoder
            .stop(self.account_sid.clone(), self.call_sid.clone())
            .to_owned();
        self.send_text(&stop).await;
    }

    /// Reads until the bridge's close frame; returns its code. Panics after `within`.
    pub async fn expect_close(&mut self, within: Duration) -> u16 {
        tokio::time::timeout(within, async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                    Some(Ok(Message::Close(None))) => return 1005,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => panic!("socket error before close: {e}"),
                    None => panic!("socket ended without a close frame"),
                }
            }
        })
        .await
        .expect("bridge closed in time")
    }

    /// Whether the bridge has sent nothing that ends the socket within `wait`.
    pub async fn still_open(&mut self, wait: Duration) -> bool {
        let ended = tokio::time::timeout(wait, async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await;
        ended.is_err()
    }
}

/// What the bridge sent, decoded.
pub enum FromBridge {
    Media(Vec<u8>),
    Mark(String),
    Clear,
}

pub fn decode_outbound(text: &str) -> FromBridge {
    let mut decoder = OutboundDecoder::new();
    match decoder
        .decode(text)
        .expect("bridge sends valid Media Streams JSON")
    {
        OutboundEvent::Media { payload, .. } => FromBridge::Media(payload.to_vec()),
        OutboundEvent::Mark { name, .. } => FromBridge::Mark(name.to_owned()),
        OutboundEvent::Clear { .. } => FromBridge::Clear,
    }
}

/// The clean speech fixture as Twilio would send it: 8 kHz mu-law.
pub fn speech_8k_mulaw() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/speech_clean_8k.wav"
    );
    let (pcm, rate) = voxbridge_audio::wav::read_wav(path).expect("fixture readable");
    assert_eq!(rate, 8000);
    let mut mulaw = Vec::new();
    voxbridge_audio::mulaw::encode(&pcm, &mut mulaw);
    mulaw
}

/// Waits until `check` holds (polling), or panics after `within`.
pub async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
