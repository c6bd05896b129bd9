//! An in-process stand-in for the OpenAI API, for tests, the simulator and load tests.
//!
//! It listens on 127.0.0.1 (axum) and speaks the real wire protocol, so the real client code
//! (async-openai, reqwest, tungstenite) runs against it unchanged:
//!
//! | endpoint | behaviour |
//! |---|---|
//! | `POST /v1/chat/completions` | scripted reply; `stream: true` -> SSE `data: {chat.completion.chunk}` ... `data: [DONE]` with token deltas and streamed `tool_calls` deltas; else one `chat.completion` JSON |
//! | `POST /v1/audio/transcriptions` | multipart (`file`, `model`, `language`, `prompt`, `response_format`); the WAV is parsed; answers the next queued transcript (or the default) as `json`, `text` or `verbose_json`; a transcript queued with an [`UtteranceCheck`] is answered only when the audio is that utterance (else 400, recorded in [`StandinHandle::audio_mismatches`]) |
//! | `GET /v1/realtime?model=` | Realtime WebSocket (see [`realtime`]) |
//! | `POST /v1/audio/speech` | a synthetic tone whose length is proportional to the text ([`StandinConfig::tts_ms_per_char`]), as `pcm` (24 kHz s16le), `wav` or `opus` (real Ogg Opus), streamed in paced chunks (chunked transfer) |
//!
//! Errors use OpenAI's body shape `{"error":{"message","type","param","code"}}` and status:
//! 401 for a missing or wrong key (when [`StandinConfig::api_key`] is set), 400 for bad
//! requests, and injected faults ([`StandinHandle::fail_next`]): 429 with `Retry-After` and
//! `retry-after-ms`, 500, or a hang until the client gives up.
//!
//! Everything it receives is logged ([`StandinHandle::requests`]), and a streamed answer the
//! client abandons (connection closed before the end) is logged as cancelled
//! ([`StandinHandle::cancelled`], [`StandinHandle::wait_for_cancel`]), so tests can assert
//! "no work continues after a cancel".
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use voxbridge_openai_standin::{Reply, Standin, StandinConfig};
//! let standin = Standin::start(StandinConfig::default()).await?;
//! standin.set_reply("price", Reply::text("It costs ten dollars."));
//! let base_url = standin.base_url(); // "http://127.0.0.1:PORT/v1"
//! # Ok(()) }
//! ```

mod audio;
mod chat;
pub mod realtime;
pub mod utterance;

pub use audio::{SPEECH_RATE, synthetic_speech};
pub use realtime::RealtimeScript;
pub use utterance::{AudioStats, UtteranceCheck};

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// An API endpoint of the stand-in, for fault injection and the request log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// `POST /v1/audio/transcriptions`.
    Transcriptions,
    /// `POST /v1/audio/speech`.
    Speech,
    /// `GET /v1/realtime` (WebSocket).
    Realtime,
}

/// An injected failure for the next requests to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 429 with `Retry-After` (whole seconds, rounded up) and `retry-after-ms`.
    RateLimited {
        /// What the headers say.
        retry_after: Duration,
    },
    /// HTTP 500 with OpenAI's `server_error` body.
    ServerError,
    /// Accept the request and never answer (for an hour): the client's timeout must fire.
    Hang,
    /// Send the first chunk of a streamed answer, then stall: the client's idle timeout must
    /// fire. Non-streamed answers hang as [`Fault::Hang`].
    StallAfterFirstChunk,
}

/// A scripted tool call of a [`Reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptedToolCall {
    /// Function name.
    pub name: String,
    /// Arguments, JSON text (streamed in 7-character pieces).
    pub arguments: String,
}

/// What the chat model answers; also one response of the stand-in Realtime model
/// ([`RealtimeScript::responses`]: its tool calls become function calls, its text the spoken
/// reply).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    /// Text, streamed word by word (each token keeps its leading space, as OpenAI's do).
    pub text: String,
    /// Tool calls after the text; `finish_reason` is `tool_calls` when there are any.
    pub tool_calls: Vec<ScriptedToolCall>,
}

impl Reply {
    /// A text-only reply.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            tool_calls: Vec::new(),
        }
    }

    /// Adds a tool call.
    #[must_use]
    pub fn with_tool_call(mut self, name: impl Into<String>, arguments: impl Into<String>) -> Self {
        self.tool_calls.push(ScriptedToolCall {
            name: name.into(),
            arguments: arguments.into(),
        });
        self
    }
}

/// Fixed latencies per stage (all zero by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Latency {
    /// Chat: before the first SSE chunk (or the JSON answer).
    pub first_token: Duration,
    /// Chat: between SSE chunks.
    pub token_gap: Duration,
    /// Transcription: before the answer.
    pub transcription: Duration,
    /// Speech: before the first audio bytes.
    pub speech_first_byte: Duration,
    /// Speech: between audio chunks.
    pub speech_chunk_gap: Duration,
}

/// How the stand-in behaves. Everything can also be changed while it runs through
/// [`StandinHandle`].
#[derive(Debug, Clone)]
pub struct StandinConfig {
    /// Required bearer key; `None` accepts any (or no) key.
    pub api_key: Option<String>,
    /// Stage latencies.
    pub latency: Latency,
    /// Chat reply when no trigger matches.
    pub default_reply: Reply,
    /// Transcript when the queue is empty.
    pub default_transcript: String,
    /// Milliseconds of synthetic speech per character of TTS input (default 60, about the pace
    /// of real speech); at least 200 ms per request.
    pub tts_ms_per_char: u32,
    /// Bytes per streamed TTS body chunk (default 4800: 100 ms of 24 kHz pcm).
    pub tts_chunk_bytes: usize,
}

impl Default for StandinConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            latency: Latency::default(),
            default_reply: Reply::text("I am the stand-in model."),
            default_transcript: "hello".to_owned(),
            tts_ms_per_char: 60,
            tts_chunk_bytes: 4_800,
        }
    }
}

/// One request as received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// Sequence number (1, 2, ...) across all endpoints.
    pub id: u64,
    /// The endpoint.
    pub endpoint: Endpoint,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The body: JSON as sent for chat and speech; for transcriptions an object of the text
    /// fields plus `file` = `{"name", "content_type", "bytes", "sample_rate", "samples",
    /// "rms_dbfs"}` (`rms_dbfs` is `null` for digital silence); for
    /// realtime `{"model": ...}` from the query.
    pub body: serde_json::Value,
}

/// A streamed answer the client abandoned before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled {
    /// The request's [`RecordedRequest::id`].
    pub id: u64,
    /// Its endpoint.
    pub endpoint: Endpoint,
}

#[derive(Debug)]
struct Inner {
    config: StandinConfig,
    replies: Vec<(String, Reply)>,
    transcripts: VecDeque<(String, Option<UtteranceCheck>)>,
    audio_mismatches: Vec<String>,
    faults: BTreeMap<Endpoint, VecDeque<Fault>>,
    requests: Vec<RecordedRequest>,
    cancelled: Vec<Cancelled>,
    completed: Vec<u64>,
    realtime: realtime::RealtimeScript,
    realtime_events: Vec<serde_json::Value>,
    realtime_errors: Vec<String>,
    realtime_audio: Vec<u8>,
}

/// State shared by the handlers and the handle.
#[derive(Debug)]
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking handler cannot leave the log half-written in a way that matters here.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn config(&self) -> StandinConfig {
        self.lock().config.clone()
    }

    /// Records a request; returns its id and the fault to inject, if any.
    pub(crate) fn record(
        &self,
        endpoint: Endpoint,
        authorization: Option<String>,
        body: serde_json::Value,
    ) -> (u64, Option<Fault>) {
        self.log(endpoint, authorization, body, true)
    }

    /// Logs a request; takes the next queued fault only when `take_fault`.
    fn log(
        &self,
        endpoint: Endpoint,
        authorization: Option<String>,
        body: serde_json::Value,
        take_fault: bool,
    ) -> (u64, Option<Fault>) {
        let mut inner = self.lock();
        let id = inner.requests.len() as u64 + 1;
        inner.requests.push(RecordedRequest {
            id,
            endpoint,
            authorization,
            body,
        });
        let fault = if take_fault {
            inner
                .faults
                .get_mut(&endpoint)
                .and_then(VecDeque::pop_front)
        } else {
            None
        };
        drop(inner);
        self.changed.notify_waiters();
        (id, fault)
    }

    pub(crate) fn reply_for(&self, last_user: &str) -> Reply {
        let inner = self.lock();
        let lower = last_user.to_lowercase();
        inner
            .replies
            .iter()
            .find(|(trigger, _)| lower.contains(trigger.as_str()))
            .map_or_else(|| inner.config.default_reply.clone(), |(_, r)| r.clone())
    }

    /// The next queued transcript (or the default) for request `id` with audio `pcm` at
    /// `rate`. When the transcript carries an [`UtteranceCheck`] the audio does not pass, the
    /// mismatch is recorded, the transcript stays queued, and the error says why.
    pub(crate) fn next_transcript(
        &self,
        id: u64,
        pcm: &[i16],
        rate: u32,
    ) -> Result<String, String> {
        let mut inner = self.lock();
        let Some((text, check)) = inner.transcripts.front() else {
            return Ok(inner.config.default_transcript.clone());
        };
        if let Some(Err(problem)) = check.map(|c| c.check(pcm, rate)) {
            let message = format!(
                "request {id}: the audio sent for {text:?} is not its utterance: {problem}"
            );
            inner.audio_mismatches.push(message.clone());
            drop(inner);
            self.changed.notify_waiters();
            return Err(message);
        }
        let text = text.clone();
        inner.transcripts.pop_front();
        Ok(text)
    }

    pub(crate) fn realtime_script(&self) -> realtime::RealtimeScript {
        self.lock().realtime.clone()
    }

    pub(crate) fn record_realtime_error(&self, code: &str) {
        self.lock().realtime_errors.push(code.to_owned());
    }

    pub(crate) fn record_realtime_event(&self, event: serde_json::Value) {
        self.lock().realtime_events.push(event);
        self.changed.notify_waiters();
    }

    pub(crate) fn record_realtime_audio(&self, bytes: &[u8]) {
        self.lock().realtime_audio.extend_from_slice(bytes);
    }

    pub(crate) fn finished(&self, id: u64, endpoint: Endpoint, completed: bool) {
        let mut inner = self.lock();
        if completed {
            inner.completed.push(id);
        } else {
            inner.cancelled.push(Cancelled { id, endpoint });
        }
        drop(inner);
        self.changed.notify_waiters();
    }
}

/// Records the end of a streamed answer: completed if [`StreamGuard::complete`] was called,
/// cancelled if the guard is dropped first (the client closed the connection, so hyper dropped
/// the body).
#[derive(Debug)]
pub(crate) struct StreamGuard {
    shared: Arc<Shared>,
    id: u64,
    endpoint: Endpoint,
    done: bool,
}

impl StreamGuard {
    pub(crate) fn new(shared: Arc<Shared>, id: u64, endpoint: Endpoint) -> Self {
        Self {
            shared,
            id,
            endpoint,
            done: false,
        }
    }

    pub(crate) fn complete(&mut self) {
        if !self.done {
            self.done = true;
            self.shared.finished(self.id, self.endpoint, true);
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if !self.done {
            self.shared.finished(self.id, self.endpoint, false);
        }
    }
}

/// Starts stand-ins.
#[derive(Debug)]
pub struct Standin;

impl Standin {
    /// Binds 127.0.0.1 on a free port and serves until the handle is dropped.
    pub async fn start(config: StandinConfig) -> std::io::Result<StandinHandle> {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                config,
                replies: Vec::new(),
                transcripts: VecDeque::new(),
                audio_mismatches: Vec::new(),
                faults: BTreeMap::new(),
                requests: Vec::new(),
                cancelled: Vec::new(),
                completed: Vec::new(),
                realtime: realtime::RealtimeScript::default(),
                realtime_events: Vec::new(),
                realtime_errors: Vec::new(),
                realtime_audio: Vec::new(),
            }),
            changed: Notify::new(),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let app = router(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "openai stand-in stopped");
            }
        });
        Ok(StandinHandle { addr, shared, task })
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/audio/transcriptions", post(audio::transcriptions))
        .route("/v1/audio/speech", post(audio::speech))
        .route("/v1/realtime", get(realtime::upgrade))
        .layer(middleware::from_fn_with_state(shared.clone(), authorize))
        .with_state(shared)
}

/// 401 like OpenAI when a key is required and missing or wrong (the attempt is logged with a
/// `null` body).
async fn authorize(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let Some(expected) = shared.lock().config.api_key.clone() else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    if given.as_deref() != Some(expected.as_str()) {
        // Refused requests are logged too (body not read), so tests can count attempts.
        let endpoint = match request.uri().path() {
            "/v1/chat/completions" => Some(Endpoint::ChatCompletions),
            "/v1/audio/transcriptions" => Some(Endpoint::Transcriptions),
            "/v1/audio/speech" => Some(Endpoint::Speech),
            "/v1/realtime" => Some(Endpoint::Realtime),
            _ => None,
        };
        if let Some(endpoint) = endpoint {
            // A refused request does not use up an injected fault.
            shared.log(
                endpoint,
                authorization(request.headers()),
                serde_json::Value::Null,
                false,
            );
        }
    }
    match given {
        Some(key) if key == expected => next.run(request).await,
        Some(key) => api_error(
            StatusCode::UNAUTHORIZED,
            &format!(
                "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.",
                mask_key(&key)
            ),
            "invalid_request_error",
            Some("invalid_api_key"),
        ),
        None => api_error(
            StatusCode::UNAUTHORIZED,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            "invalid_request_error",
            None,
        ),
    }
}

/// `sk-ab***yz`, as OpenAI shows a wrong key.
fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "***".to_owned();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}***{tail}")
}

/// An OpenAI-shaped error response.
pub(crate) fn api_error(
    status: StatusCode,
    message: &str,
    kind: &str,
    code: Option<&str>,
) -> Response {
    let body = serde_json::json!({
        "error": {"message": message, "type": kind, "param": null, "code": code}
    });
    (status, axum::Json(body)).into_response()
}

/// The response for an injected fault that answers at once; `None` for hangs (the caller
/// decides how to hang).
pub(crate) fn fault_response(fault: Fault) -> Option<Response> {
    match fault {
        Fault::RateLimited { retry_after } => {
            let mut response = api_error(
                StatusCode::TOO_MANY_REQUESTS,
                "Rate limit reached for requests. Please try again later.",
                "requests",
                Some("rate_limit_exceeded"),
            );
            let headers: &mut HeaderMap = response.headers_mut();
            let secs = retry_after.as_millis().div_ceil(1000);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                headers.insert(header::RETRY_AFTER, v);
            }
            if let Ok(v) = HeaderValue::from_str(&retry_after.as_millis().to_string()) {
                headers.insert("retry-after-ms", v);
            }
            Some(response)
        }
        Fault::ServerError => Some(api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        )),
        Fault::Hang | Fault::StallAfterFirstChunk => None,
    }
}

/// How long a hang lasts: longer than any client timeout in a test.
pub(crate) const HANG: Duration = Duration::from_secs(3600);

/// A streamed (chunked) response body: `pieces` sent with `first` before the first and `gap`
/// between the others; [`Fault::Hang`] holds the first piece back, and
/// [`Fault::StallAfterFirstChunk`] the second. `guard` logs the end: completed, or cancelled
/// when the client goes away first (hyper drops the body).
pub(crate) fn paced_body(
    pieces: Vec<axum::body::Bytes>,
    first: Duration,
    gap: Duration,
    fault: Option<Fault>,
    guard: StreamGuard,
) -> axum::body::Body {
    let body = futures::stream::unfold(
        (pieces.into_iter().enumerate(), guard),
        move |(mut pieces, mut guard)| async move {
            let Some((i, piece)) = pieces.next() else {
                guard.complete();
                return None;
            };
            let wait = match (i, fault) {
                (0, Some(Fault::Hang)) | (1, Some(Fault::StallAfterFirstChunk)) => HANG,
                (0, _) => first,
                _ => gap,
            };
            if wait > Duration::ZERO {
                tokio::time::sleep(wait).await;
            }
            Some((Ok::<_, std::convert::Infallible>(piece), (pieces, guard)))
        },
    );
    axum::body::Body::from_stream(body)
}

/// The `Authorization` header as text.
pub(crate) fn authorization(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A running stand-in. Dropping it stops the server.
#[derive(Debug)]
pub struct StandinHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for StandinHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StandinHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`: what goes into `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Requests to one endpoint.
    pub fn requests_to(&self, endpoint: Endpoint) -> Vec<RecordedRequest> {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .cloned()
            .collect()
    }

    /// Streamed answers the client abandoned.
    pub fn cancelled(&self) -> Vec<Cancelled> {
        self.shared.lock().cancelled.clone()
    }

    /// Ids of streamed answers sent to the end.
    pub fn completed(&self) -> Vec<u64> {
        self.shared.lock().completed.clone()
    }

    /// Waits until request `id`'s answer is logged as cancelled; `false` after `limit`.
    pub async fn wait_for_cancel(&self, id: u64, limit: Duration) -> bool {
        self.wait_until(limit, |inner| inner.cancelled.iter().any(|c| c.id == id))
            .await
    }

    /// Waits until request `id`'s streamed answer or Realtime session has ended: `Some(true)`
    /// completed (for Realtime: the client sent a close frame), `Some(false)` cancelled (the
    /// connection went away), `None` still running after `limit`.
    pub async fn wait_for_end(&self, id: u64, limit: Duration) -> Option<bool> {
        let ended = |inner: &Inner| {
            if inner.completed.contains(&id) {
                Some(true)
            } else if inner.cancelled.iter().any(|c| c.id == id) {
                Some(false)
            } else {
                None
            }
        };
        self.wait_until(limit, |inner| ended(inner).is_some()).await;
        ended(&self.shared.lock())
    }

    /// Waits until at least `n` requests have reached `endpoint`; `false` after `limit`.
    pub async fn wait_for_requests(&self, endpoint: Endpoint, n: usize, limit: Duration) -> bool {
        self.wait_until(limit, |inner| {
            inner
                .requests
                .iter()
                .filter(|r| r.endpoint == endpoint)
                .count()
                >= n
        })
        .await
    }

    async fn wait_until(&self, limit: Duration, done: impl Fn(&Inner) -> bool) -> bool {
        let wait = async {
            loop {
                let notified = self.shared.changed.notified();
                if done(&self.shared.lock()) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }

    /// Client events received on Realtime sessions (in order, as JSON). Audio payloads of
    /// `input_audio_buffer.append` are replaced by their decoded length (`"audio_bytes"`).
    pub fn realtime_events(&self) -> Vec<serde_json::Value> {
        self.shared.lock().realtime_events.clone()
    }

    /// The codes of the `error` events Realtime sessions sent, in order (a client that follows
    /// the protocol gets none).
    pub fn realtime_errors(&self) -> Vec<String> {
        self.shared.lock().realtime_errors.clone()
    }

    /// The input audio bytes of every `input_audio_buffer.append` on Realtime sessions, in
    /// order, exactly as decoded from base64 (mu-law stays mu-law).
    pub fn realtime_input_audio(&self) -> Vec<u8> {
        self.shared.lock().realtime_audio.clone()
    }

    /// Waits until a Realtime client event of type `kind` has arrived; returns the first one.
    pub async fn wait_for_realtime_event(
        &self,
        kind: &str,
        limit: Duration,
    ) -> Option<serde_json::Value> {
        let found = |inner: &Inner| {
            inner
                .realtime_events
                .iter()
                .find(|e| e["type"] == kind)
                .cloned()
        };
        if self.wait_until(limit, |inner| found(inner).is_some()).await {
            found(&self.shared.lock())
        } else {
            None
        }
    }

    /// Replaces the Realtime script (what the model says, how it hears) for new sessions.
    pub fn set_realtime_script(&self, script: realtime::RealtimeScript) {
        self.shared.lock().realtime = script;
    }

    /// The next `count` requests to `endpoint` fail with `fault`.
    pub fn fail_next(&self, endpoint: Endpoint, count: usize, fault: Fault) {
        let mut inner = self.shared.lock();
        let queue = inner.faults.entry(endpoint).or_default();
        queue.extend(std::iter::repeat_n(fault, count));
    }

    /// When the last user message contains `trigger` (case-insensitive), answer `reply`.
    /// Earlier triggers win.
    pub fn set_reply(&self, trigger: &str, reply: Reply) {
        self.shared
            .lock()
            .replies
            .push((trigger.to_lowercase(), reply));
    }

    /// The reply when no trigger matches.
    pub fn set_default_reply(&self, reply: Reply) {
        self.shared.lock().config.default_reply = reply;
    }

    /// Queues a transcript for the next transcription request.
    pub fn push_transcript(&self, text: &str) {
        self.shared
            .lock()
            .transcripts
            .push_back((text.to_owned(), None));
    }

    /// Queues a transcript that is answered only for audio that passes `check` (the
    /// utterance it transcribes); other audio gets a 400 and is listed in
    /// [`Self::audio_mismatches`].
    pub fn push_transcript_expecting(&self, text: &str, check: UtteranceCheck) {
        self.shared
            .lock()
            .transcripts
            .push_back((text.to_owned(), Some(check)));
    }

    /// Every transcription whose audio failed its queued [`UtteranceCheck`], with what
    /// differed (empty when all audio was the expected utterance).
    pub fn audio_mismatches(&self) -> Vec<String> {
        self.shared.lock().audio_mismatches.clone()
    }

    /// Replaces the stage latencies.
    pub fn set_latency(&self, latency: Latency) {
        self.shared.lock().config.latency = latency;
    }
}

/// Splits text into OpenAI-like tokens: words with their leading space.
pub(crate) fn tokens(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut prev_space = false;
    for c in text.chars() {
        if c == ' ' && !prev_space && !current.trim().is_empty() {
            out.push(std::mem::take(&mut current));
        }
        prev_space = c == ' ';
        current.push(c);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_leading_spaces_and_rejoin_exactly() {
        assert_eq!(
            tokens("Hello there, friend."),
            ["Hello", " there,", " friend."]
        );
        for text in ["", " a  b ", "one", "x y z"] {
            assert_eq!(tokens(text).concat(), text);
        }
    }

    #[test]
    fn keys_are_masked() {
        assert_eq!(mask_key("sk-abcdefghijkl"), "sk-a***ijkl");
        assert_eq!(mask_key("short"), "***");
    }
}
