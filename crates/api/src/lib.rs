//! voxbridge companion HTTP service: places screening calls through Twilio's REST API, serves
//! the TwiML that connects calls to the agent, takes Twilio's status/AMD/recording/relay
//! webhooks into the durable store, and rate-limits incoming callers.
//!
//! Driven by [`serve`] (or [`router`] with an [`AppState`] for embedding and tests). Every
//! Twilio-facing route validates `X-Twilio-Signature` against [`ApiConfig::public_url`] and
//! answers 2xx only after its record is committed. `/api/*` needs the bearer token.
//!
//! Routes:
//! - `POST /api/screenings` (honours `Idempotency-Key`), `GET /api/screenings`,
//!   `GET /api/screenings/{id}`, `POST /api/screenings/{id}/cancel` (a scheduled one),
//!   `GET /api/calls`, `GET /api/calls/{callSid}`,
//!   `GET /api/rate-limits/{number}`, `GET /api/webhook-deliveries[/{id}]`,
//!   `POST /api/webhook-deliveries/{id}/redeliver` (bearer token; see [`ats`])
//! - `GET /api/openapi.json`: the OpenAPI 3.1 document of `/api/*` ([`openapi`]; no token)
//! - `POST /api/messages`, `GET /api/messages/{id}`, `GET /api/messages/stats` (bearer);
//!   `POST /twilio/sms/inbound`, `/twilio/sms/status` (signed): see [`messages`]
//! - `POST /twilio/voice/answer`, `/twilio/voice/inbound`, `/twilio/voice/status`,
//!   `/twilio/voice/amd`, `/twilio/voice/recording`, `/twilio/relay/action` (signed)
//! - `GET /healthz`, `GET /readyz`, `GET /metrics` (the last on `metrics_listen` when set)
//! - `GET /` and `/console/*`: the recruiter console ([`console`]; a session cookie)
//!
//! `voxbridge serve` mounts [`routes`] beside the bridge's own (one port; see
//! [`AppState::set_busy_check`] for the busy answer at the bridge's call limit).

pub mod ats;
mod calls;
mod campaigns;
pub mod config;
pub mod console;
mod error;
mod messages;
pub mod openapi;
pub mod outreach;
pub mod ratelimit;
pub mod reconcile;
mod screenings;
mod webhooks;

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use voxbridge_metrics::{Series, exposition, latency_histogram};
use voxbridge_net::{ListenerMetrics, Server};
use voxbridge_store::{Store, StoreConfig, StoreError};
use voxbridge_twilio::RequestValidator;
use voxbridge_twilio::rest::{Credentials, RestClient, RetryPolicy};

pub use config::{
    ApiConfig, ConfigError, ConnectConfig, ConnectMode, InboundConfig, InboundMode, LimiterBackend,
    ListenerConfig, RateLimitConfig, Secret, TwilioConfig,
};
pub use console::{ConsoleConfig, hash_password};
pub use error::ApiError;
pub use messages::config::{MessagingConfig, QuietHoursConfig, SenderRates};
pub use outreach::follow_up::FollowUpConfig;
pub use outreach::{CallingHoursConfig, RetriesConfig};
pub use ratelimit::{
    Decision, LimiterError, MemoryLimiter, NumberStats, RateLimiter, RedisLimiter, SlidingWindow,
    caller_key,
};

/// Where handlers get the time (Unix milliseconds). Tests use [`ManualClock`].
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, in Unix milliseconds.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that moves only when told (virtual time for tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock showing `now_ms`.
    pub fn new(now_ms: i64) -> Self {
        Self(AtomicI64::new(now_ms))
    }

    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Counters exposed at `/metrics` (`prometheus-client` handles: relaxed atomics, no lock).
/// [`Metrics::register`] puts them in a registry; the service serves its own (see
/// [`AppState::register_metrics`] for a process-wide one).
#[derive(Debug)]
pub struct Metrics {
    /// Webhooks accepted (signature good, record committed).
    pub webhooks_accepted: Counter,
    /// Webhooks rejected for their signature.
    pub signature_failures: Counter,
    /// Incoming calls blocked by the rate limit.
    pub rate_limit_blocked: Counter,
    /// Incoming calls allowed by the rate limit (allowlist included).
    pub rate_limit_allowed: Counter,
    /// Rate-limit decisions that failed (the call was allowed: fail open).
    pub rate_limit_store_failures: Counter,
    /// Screening calls Twilio accepted.
    pub screenings_created: Counter,
    /// Live calls redirected to the voicemail message after async AMD reported a machine.
    pub voicemail_redirects: Counter,
    /// Voicemail redirects that Twilio's REST API refused or that could not reach it.
    pub voicemail_redirect_failures: Counter,
    /// Calls answered busy because the bridge was at `media.max_calls`.
    pub busy: Counter,
    /// The TCP listener's connections, caps and timeouts (`voxbridge_api_tcp_*`).
    pub listener: Arc<ListenerMetrics>,
    /// Time to answer each request, by matched route (`voxbridge_api_request_duration_seconds`).
    pub requests: ByRoute,
    /// Calls to Twilio's REST API, by [`TwilioOperation`] (`voxbridge_api_twilio_rest_seconds`),
    /// failed ones included.
    pub twilio_rest: [Histogram; TwilioOperation::LABELS.len()],
    /// Result webhooks to the ATS (`voxbridge_api_ats_*`).
    pub webhooks: ats::DeliveryMetrics,
}

/// Latency histograms keyed by `{route="..."}`.
pub type ByRoute = Family<[(&'static str, String); 1], Histogram, fn() -> Histogram>;

impl Default for Metrics {
    fn default() -> Self {
        Self {
            webhooks_accepted: Counter::default(),
            signature_failures: Counter::default(),
            rate_limit_blocked: Counter::default(),
            rate_limit_allowed: Counter::default(),
            rate_limit_store_failures: Counter::default(),
            screenings_created: Counter::default(),
            voicemail_redirects: Counter::default(),
            voicemail_redirect_failures: Counter::default(),
            busy: Counter::default(),
            listener: Arc::default(),
            requests: Family::new_with_constructor(latency_histogram),
            twilio_rest: std::array::from_fn(|_| latency_histogram()),
            webhooks: ats::DeliveryMetrics::default(),
        }
    }
}

/// A call to Twilio's REST API, as the `operation` label of `voxbridge_api_twilio_rest_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwilioOperation {
    /// `POST Calls.json` (a screening call).
    CreateCall,
    /// `POST Calls/{sid}.json` with new TwiML (the voicemail redirect).
    UpdateCall,
    /// `GET Calls.json` (start-up reconciliation).
    ListCalls,
}

impl TwilioOperation {
    const LABELS: [&'static str; 3] = ["create_call", "update_call", "list_calls"];
}

impl Metrics {
    /// Runs `call` (a Twilio REST request) and records how long it took.
    pub(crate) async fn timed_rest<T>(
        &self,
        operation: TwilioOperation,
        call: impl std::future::Future<Output = T>,
    ) -> T {
        let started = std::time::Instant::now();
        let result = call.await;
        self.twilio_rest[operation as usize].observe(started.elapsed().as_secs_f64());
        result
    }

    /// Registers the counters in `registry` as `voxbridge_api_*_total` (the registry adds the
    /// `_total` suffix and the final full stop of each help text).
    pub fn register(&self, registry: &mut Registry) {
        self.register_counters(registry);
        self.listener.register(registry, "voxbridge_api");
        self.register_requests(registry);
    }

    /// Everything but the listener's metrics: for a registry of a process that serves the
    /// API's routes on another service's listener (`voxbridge serve`).
    pub fn register_without_listener(&self, registry: &mut Registry) {
        self.register_counters(registry);
        self.register_requests(registry);
    }

    fn register_counters(&self, registry: &mut Registry) {
        for (name, help, counter) in [
            (
                "voxbridge_api_webhooks_accepted",
                "Twilio webhooks accepted and committed",
                &self.webhooks_accepted,
            ),
            (
                "voxbridge_api_signature_failures",
                "Webhooks rejected for X-Twilio-Signature",
                &self.signature_failures,
            ),
            (
                "voxbridge_api_rate_limit_allowed",
                "Incoming calls allowed",
                &self.rate_limit_allowed,
            ),
            (
                "voxbridge_api_rate_limit_blocked",
                "Incoming calls blocked",
                &self.rate_limit_blocked,
            ),
            (
                "voxbridge_api_rate_limit_store_failures",
                "Rate-limit decisions that failed open",
                &self.rate_limit_store_failures,
            ),
            (
                "voxbridge_api_screenings_created",
                "Screening calls created",
                &self.screenings_created,
            ),
            (
                "voxbridge_api_voicemail_redirects",
                "Calls redirected to the voicemail message after async AMD",
                &self.voicemail_redirects,
            ),
            (
                "voxbridge_api_voicemail_redirect_failures",
                "Voicemail redirects that failed at Twilio's REST API",
                &self.voicemail_redirect_failures,
            ),
            (
                "voxbridge_api_calls_answered_busy",
                "Calls answered busy (screening: busy message; incoming: Reject busy) at media.max_calls",
                &self.busy,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        self.webhooks.register(registry);
    }

    /// The request and Twilio REST histograms.
    fn register_requests(&self, registry: &mut Registry) {
        registry.register(
            "voxbridge_api_request_duration_seconds",
            "Time to answer an HTTP request, by matched route (unmatched for 404s)",
            self.requests.clone(),
        );
        registry.register(
            "voxbridge_api_twilio_rest_seconds",
            "Calls to Twilio's REST API, by operation, failed ones included",
            Series::new(
                TwilioOperation::LABELS
                    .into_iter()
                    .zip(self.twilio_rest.iter().cloned())
                    .map(|(operation, h)| ([("operation", operation)], h)),
            ),
        );
    }
}

/// Why [`AppState::new`] or [`serve`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A configuration value is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened.
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    /// The Twilio client or the Redis limiter could not be built.
    #[error("cannot start: {0}")]
    Setup(String),
    /// The listener failed.
    #[error("HTTP server failed: {0}")]
    Io(#[from] std::io::Error),
}

pub(crate) struct Inner {
    pub(crate) config: ApiConfig,
    pub(crate) store: Store,
    pub(crate) validator: RequestValidator,
    pub(crate) twilio: Option<RestClient>,
    pub(crate) limiter: RateLimiter,
    pub(crate) allowlist: HashSet<String>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metrics: Metrics,
    /// What `GET /metrics` serves: [`Inner::metrics`].
    pub(crate) metrics_registry: Registry,
    /// Whether the bridge serving the calls is at its call limit (set in one-process mode).
    pub(crate) busy_check: std::sync::OnceLock<BusyCheck>,
    /// The recruiter console's channel and templates.
    pub(crate) console: console::Shared,
    /// Messaging metrics (the queue itself lives in the store).
    pub(crate) messaging: messages::Messaging,
}

/// See [`AppState::set_busy_check`].
pub type BusyCheck = Box<dyn Fn() -> bool + Send + Sync>;

/// Shared state of the service. Cheap to clone.
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Inner>);

impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.0.config)
            .field("store", &self.0.store.backend())
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Validates `config` and builds the state (the Twilio client, when credentials are set,
    /// and the limiter backend; Redis is connected lazily).
    pub fn new(config: ApiConfig, store: Store, clock: Arc<dyn Clock>) -> Result<Self, ServeError> {
        config.validate()?;
        let twilio = if config.twilio.account_sid.is_empty() {
            None
        } else {
            let credentials = if config.twilio.api_key.is_empty() {
                Credentials::AuthToken {
                    account_sid: config.twilio.account_sid.clone(),
                    auth_token: config.twilio.auth_token.expose().to_owned(),
                }
            } else {
                Credentials::ApiKey {
                    account_sid: config.twilio.account_sid.clone(),
                    key_sid: config.twilio.api_key.clone(),
                    secret: config.twilio.api_secret.expose().to_owned(),
                }
            };
            let retry = RetryPolicy {
                max_retries: config.twilio.max_retries,
                base_delay: config.twilio.retry_base_delay,
                ..RetryPolicy::default()
            };
            Some(
                RestClient::new(config.twilio.rest_base_url.clone(), credentials, retry)
                    .map_err(|e| ServeError::Setup(e.to_string()))?,
            )
        };
        let rule = SlidingWindow {
            max_calls: config.rate_limit.max_calls,
            window_ms: i64::try_from(config.rate_limit.window.as_millis()).unwrap_or(i64::MAX),
        };
        let limiter = match config.rate_limit.backend {
            LimiterBackend::Memory => RateLimiter::Memory(MemoryLimiter::new(rule)),
            LimiterBackend::Redis => RateLimiter::Redis(Box::new(
                RedisLimiter::new(
                    rule,
                    config.rate_limit.redis_url.expose(),
                    &config.rate_limit.redis_key_prefix,
                    config
                        .rate_limit
                        .redis_timeout
                        .max(Duration::from_millis(1)),
                )
                .map_err(|e| ServeError::Setup(format!("api.rate_limit.redis_url: {e}")))?,
            )),
        };
        let allowlist = config
            .rate_limit
            .allowlist
            .iter()
            .filter_map(|n| voxbridge_twilio::E164::parse(n).ok())
            .map(|n| n.as_str().to_owned())
            .collect();
        let metrics = Metrics::default();
        let mut metrics_registry = Registry::default();
        voxbridge_metrics::register_process(&mut metrics_registry);
        metrics.register(&mut metrics_registry);
        let messaging = messages::Messaging::default();
        messaging.register(&mut metrics_registry);
        Ok(Self(Arc::new(Inner {
            validator: RequestValidator::new(config.twilio.auth_token.expose()),
            config,
            store,
            twilio,
            limiter,
            allowlist,
            clock,
            metrics,
            metrics_registry,
            busy_check: std::sync::OnceLock::new(),
            console: console::Shared::new(),
            messaging,
        })))
    }

    /// Tells the service how to see that the bridge taking its calls is full (one-process
    /// mode: `voxbridge serve` passes its `max_calls` check). While `busy()` is true, an
    /// answered screening call hears `busy_message` and is hung up, and an incoming call gets
    /// `<Reject reason="busy"/>` (not counted by the rate limiter), instead of TwiML that
    /// would connect them to a bridge that must refuse the upgrade. Set once; later calls are
    /// ignored.
    pub fn set_busy_check(&self, busy: impl Fn() -> bool + Send + Sync + 'static) {
        let _ = self.0.busy_check.set(Box::new(busy));
    }

    /// Whether the bridge is at its call limit (false when no check was set).
    pub(crate) fn line_busy(&self) -> bool {
        self.0.busy_check.get().is_some_and(|busy| busy())
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// Registers the service's metrics in `registry` too (one registry for several services
    /// in one process, the API's routes served on another service's listener, so without
    /// `voxbridge_api_tcp_*`); its own `GET /metrics` keeps serving them.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.0.metrics.register_without_listener(registry);
        self.0.messaging.register(registry);
    }

    /// How long requests and background work get after shutdown (`drain_timeout_ms`).
    pub fn drain_timeout(&self) -> Duration {
        self.0.config.drain_timeout
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.0.clock.now_ms()
    }
}

/// The service's own routes over `state`: `/api/*` (bearer) and `/twilio/*` (signed), without
/// `/healthz`, `/readyz` and `/metrics`, for merging into another server (`voxbridge serve`
/// mounts them beside `/media` and `/relay`, whose health and metrics routes cover both).
pub fn routes(state: AppState) -> Router {
    bare_routes(state.clone()).route_layer(middleware::from_fn_with_state(state, time_request))
}

/// [`routes`] without the request timing.
fn bare_routes(state: AppState) -> Router {
    let body_limit = state.0.config.body_limit_bytes;
    let api = Router::new()
        .route(
            "/api/screenings",
            post(screenings::create).get(screenings::list),
        )
        .route("/api/screenings/{id}", get(screenings::detail))
        .route("/api/screenings/{id}/cancel", post(screenings::cancel))
        .route("/api/calls", get(calls::list))
        .route("/api/calls/{call_sid}", get(calls::detail))
        .route("/api/rate-limits/{number}", get(calls::rate_limit_stats))
        .merge(ats::routes::routes())
        .merge(messages::api_routes())
        .merge(campaigns::routes())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_bearer,
        ));
    Router::new()
        .merge(api)
        .route("/api/openapi.json", get(openapi::serve))
        .route("/twilio/voice/answer", post(webhooks::answer))
        .route("/twilio/voice/inbound", post(webhooks::inbound))
        .route("/twilio/voice/status", post(webhooks::status))
        .route("/twilio/voice/amd", post(webhooks::amd))
        .route("/twilio/voice/recording", post(webhooks::recording))
        .route("/twilio/relay/action", post(webhooks::relay_action))
        .merge(console::routes(&state))
        .merge(messages::twilio_routes())
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The whole service: [`routes`] plus `GET /healthz`, `GET /readyz` and `GET /metrics` (the
/// last left out when `metrics_listen` gives it a listener of its own: [`metrics_router`]).
pub fn router(state: AppState) -> Router {
    let mut health = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    if state.0.config.metrics_listen.is_empty() {
        health = health.route("/metrics", get(metrics));
    }
    bare_routes(state.clone())
        .merge(health.with_state(state.clone()))
        .layer(middleware::from_fn_with_state(state, time_request))
}

/// `GET /metrics` alone, for the `metrics_listen` listener.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Runs the background work of the service until `shutdown`: the reconciliation of
/// screenings whose call was placed but not linked (see [`reconcile`]), the delivery of
/// results to the ATS (see [`ats`]) and the message sender (unless `messaging.send = false`).
/// Await the handle after `shutdown`, bounded: a pass may still be talking to Twilio or a
/// receiver; aborting it aborts them.
pub fn spawn_background(state: &AppState, shutdown: CancellationToken) -> JoinHandle<()> {
    console::stop_streams_on(state, shutdown.clone());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(reconcile::run(state.clone(), shutdown.clone()));
    tasks.spawn(ats::worker::run(state.clone(), shutdown.clone()));
    tasks.spawn(outreach::run(state.clone(), shutdown.clone()));
    if state.0.config.messaging.send {
        tasks.spawn(messages::worker::run(state.clone(), shutdown));
    }
    tokio::spawn(async move { while tasks.join_next().await.is_some() {} })
}

/// Opens the store, builds the state and serves on `listener` (a [`voxbridge_net::Server`] with
/// `[api]`'s connection caps and timeouts) until `shutdown` is cancelled; then stops accepting,
/// lets requests in flight finish for at most `drain_timeout_ms`, closes the rest and the store.
pub async fn serve(
    config: ApiConfig,
    store_config: StoreConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    config.validate()?;
    let store = Store::connect(&store_config).await?;
    let state = AppState::new(config, store.clone(), Arc::new(SystemClock))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        store = ?store.backend(),
        "voxbridge api listening"
    );
    let metrics_listener = if state.0.config.metrics_listen.is_empty() {
        None
    } else {
        let listener = TcpListener::bind(&state.0.config.metrics_listen)
            .await
            .map_err(|e| {
                ServeError::Setup(format!(
                    "cannot listen on {} (api.metrics_listen): {e}",
                    state.0.config.metrics_listen
                ))
            })?;
        tracing::info!(addr = %listener.local_addr()?, "voxbridge api metrics listening");
        Some(listener)
    };
    let reconciler = spawn_background(&state, shutdown.clone());
    let drain = state.0.config.drain_timeout;
    let metrics_server = metrics_listener.map(|listener| {
        tokio::spawn(Server::new(ListenerConfig::default()).serve(
            listener,
            metrics_router(state.clone()),
            shutdown.clone(),
            drain,
        ))
    });
    let served = Server::new(state.0.config.listener.clone())
        .with_metrics(Arc::clone(&state.0.metrics.listener))
        .serve(listener, router(state), shutdown, drain)
        .await;
    if let Some(metrics_server) = metrics_server {
        let _ = metrics_server.await;
    }
    if served.closed_at_deadline > 0 {
        tracing::warn!(
            connections = served.closed_at_deadline,
            "drain deadline (api.drain_timeout_ms) passed: closed requests still in flight"
        );
    }
    // The reconciler stops at `shutdown` between passes; a pass still talking to Twilio gets
    // at most another `drain_timeout_ms`.
    let mut reconciler = reconciler;
    if tokio::time::timeout(drain, &mut reconciler).await.is_err() {
        reconciler.abort();
    }
    store.close().await;
    tracing::info!("voxbridge api stopped");
    Ok(())
}

/// Times each request into `voxbridge_api_request_duration_seconds{route}`: the route pattern
/// (`/api/calls/{call_sid}`), never the raw path, so the label set stays bounded.
async fn time_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    state
        .0
        .metrics
        .requests
        .get_or_create(&[("route", route)])
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn require_bearer(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let expected = &state.0.config.api_token;
    if expected.is_empty() {
        return Err(ApiError::Unauthorized(
            "the API is disabled: set api.api_token in the configuration",
        ));
    }
    // The whole header must be `Bearer <token>`, byte for byte: no extra or trailing
    // whitespace, no other scheme spelling.
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized(
            "missing Authorization: Bearer <token>",
        ))?;
    if !bearer_matches(given.as_bytes(), expected.expose().as_bytes()) {
        return Err(ApiError::Unauthorized("invalid bearer token"));
    }
    Ok(next.run(request).await)
}

/// Whether `header` is exactly `Bearer <token>`. Compares SHA-256 digests in constant time,
/// so neither the token's length nor the position of the first differing byte shows in the
/// timing.
fn bearer_matches(header: &[u8], token: &[u8]) -> bool {
    use sha2::{Digest as _, Sha256};
    use subtle::ConstantTimeEq as _;
    let expected = Sha256::new()
        .chain_update(b"Bearer ")
        .chain_update(token)
        .finalize();
    let given = Sha256::digest(header);
    bool::from(given.ct_eq(&expected))
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.0.store.ping().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "error": "store unreachable"})),
            )
                .into_response()
        }
    }
}

/// `GET /metrics`: the counters, in the format the scraper's `Accept` prefers (Prometheus text
/// 0.0.4 by default, OpenMetrics on request).
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = exposition(&state.0.metrics_registry, accept);
    ([(header::CONTENT_TYPE, content_type)], body)
}

#[cfg(test)]
mod tests {
    use super::bearer_matches;

    #[test]
    fn the_bearer_header_must_be_exact() {
        assert!(bearer_matches(b"Bearer s3cret", b"s3cret"));
        for given in [
            &b"Bearer s3cret "[..],
            b"Bearer s3cret\t",
            b"Bearer  s3cret",
            b"bearer s3cret",
            b"Bearer s3cre",
            b"Bearer s3cretX",
            b"Bearer ",
            b"s3cret",
            b"",
        ] {
            assert!(
                !bearer_matches(given, b"s3cret"),
                "{}",
                String::from_utf8_lossy(given)
            );
        }
    }
}
