//! The async Media Streams bridge: Twilio opens a WebSocket to `media_path` (default
//! `/media`), we check `X-Twilio-Signature`, and one driver task per call runs the sans-IO
//! [`voxbridge_session::Session`] against the socket and the call's brain
//! ([`voxbridge_brain`]).
//!
//! ```text
//! Twilio ──ws──▶ router(): /media (signature, limits) ──▶ drive_call(): one task per call
//!                   │                                       │ select! { frame, brain command,
//!                   │                                       │   control, timeout, shutdown,
//!                   │                                       │   held-up writes } + Outbox
//!                   ▼                                       ▼
//!            Registry (DashMap of handles)            Session (sans-IO) ◀──▶ Brain task
//! ```
//!
//! - [`serve`] runs the route on a listener until the shutdown token fires, then drains:
//!   upgrades get 503, live calls get up to `drain_timeout_ms`, then each is ended with close
//!   1001 ([`voxbridge_session::Input::Shutdown`]).
//! - [`router`] gives the routes (`media_path`, `/healthz` and `/metrics`) for embedding;
//!   whoever accepts the TCP connections applies [`tune_call_socket`] to each (no Nagle delay,
//!   a bounded kernel send buffer so a peer that stops reading is found within seconds).
//!   `/metrics` serves the bridge's gauges and counters and the voice pipeline metrics of
//!   every agent that has them from the state's `prometheus-client` registry, in the
//!   Prometheus text format (OpenMetrics when the scraper asks for it);
//!   [`MediaState::register_metrics`] puts the same metrics in another registry.
//! - [`Registry`] lists live calls by call and stream SID; entries vanish on every exit path.
//! - [`CallSink`] receives each call's [`CallRecord`] at teardown (the store plugs in here).
//! - [`relay`]: the ConversationRelay route (`relay_path`, default `/relay`), served when the
//!   state has a [`RelayService`]: text in, streamed text out, one [`drive_relay`] task per
//!   session, each finished session handed to a [`ScreeningSink`].

mod config;
mod driver;
mod metrics;
mod outbox;
mod registry;
pub mod relay;
mod relay_driver;
mod server;
mod socket;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use prometheus_client::registry::Registry as MetricsRegistry;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use voxbridge_brain::{Agents, BrainChannels, BrainError, VoiceCallReport};
use voxbridge_session::CallSummary;
use voxbridge_twilio::RequestValidator;

pub use config::{ConfigError, MediaConfig};
pub use driver::drive_call;
pub use registry::{CallEntry, Control, ControlError, Registry};
pub use relay::{
    DialogFactory, LogOnlyScreenings, RelayEnd, RelayRecord, RelayService, ScreeningSink,
    drive_relay,
};
pub use server::{ApiError, metrics_router, router, serve, serve_with_routes, serve_with_state};
pub use socket::{ReadError, SEND_BUFFER_BYTES, tune_call_socket};

/// Errors starting or running the media service.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// A `[media]` key is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `default_agent` names no registered agent.
    #[error("media.default_agent: {0}")]
    DefaultAgent(BrainError),
    /// The HTTP server failed.
    #[error("media server failed: {0}")]
    Server(#[source] std::io::Error),
    /// The server task panicked or was cancelled.
    #[error("media server task ended abnormally: {0}")]
    Task(String),
}

/// Everything the bridge records about a finished call.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// The session's summary (the end reason may be the shell's, e.g. a refused agent).
    pub summary: CallSummary,
    /// The agent that ran the call (`None` if `start` never came or the agent was refused).
    pub agent: Option<String>,
    /// When `start` arrived.
    pub started_at: Option<SystemTime>,
    /// From socket open to teardown.
    pub duration: Duration,
    /// What the brain returned: a voice brain's turn latencies and its dialog's outcome
    /// (`None` for brains that keep nothing, like `echo`, or one that failed).
    pub report: Option<VoiceCallReport>,
}

/// Where finished calls go (the store implements this). Called once per connection, from the
/// call's task, after it is unregistered: must not block; spawn for slow I/O.
pub trait CallSink: Send + Sync + 'static {
    /// One call has ended.
    fn call_ended(&self, record: &CallRecord);
}

/// The default sink: the summary is already logged by the driver; keep nothing else.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogOnly;

impl CallSink for LogOnly {
    fn call_ended(&self, _record: &CallRecord) {}
}

/// Shared state of the media service: config, agents, registry, drain state. Cheap to clone.
#[derive(Clone)]
pub struct MediaState {
    shared: Arc<Shared>,
}

struct Shared {
    config: MediaConfig,
    /// `None` only with `insecure_skip_signature`.
    validator: Option<RequestValidator>,
    public_base: String,
    agents: Agents,
    registry: Registry,
    sink: Arc<dyn CallSink>,
    relay: Option<RelayService>,
    brain_channels: BrainChannels,
    metrics: metrics::BridgeMetrics,
    /// What `GET /metrics` serves: [`Shared::metrics`] and the agents' voice metrics.
    /// Behind a lock only so a process can add its own families at start-up
    /// ([`MediaState::register_more_metrics`]); scrapes take the read side.
    metrics_registry: std::sync::RwLock<MetricsRegistry>,
    /// Shared with the `voxbridge_draining` gauge.
    draining: Arc<AtomicBool>,
    force_close: CancellationToken,
    connections: TaskTracker,
    /// What `GET /readyz` checks besides the drain flag ([`MediaState::set_readiness_check`]).
    readiness: std::sync::OnceLock<ReadinessCheck>,
}

/// Longest a readiness check may take before `/readyz` counts it as failed.
const READINESS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// A check `GET /readyz` runs while not draining: `Err` (why) answers 503. See
/// [`MediaState::set_readiness_check`].
pub type ReadinessCheck =
    Box<dyn Fn() -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync>;

impl fmt::Debug for MediaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaState")
            .field("config", &self.shared.config)
            .field("agents", &self.shared.agents)
            .field("calls", &self.shared.registry.count())
            .field("connections", &self.shared.connections.len())
            .field("draining", &self.is_draining())
            .finish_non_exhaustive()
    }
}

impl MediaState {
    /// Validates `config` (errors name the key) and builds the state with the [`LogOnly`]
    /// sink. Logs a warning if signature checks are switched off.
    pub fn new(config: MediaConfig, agents: Agents) -> Result<Self, MediaError> {
        Self::with_call_sink(config, agents, Arc::new(LogOnly))
    }

    /// As [`MediaState::new`], handing each finished call to `sink`.
    pub fn with_call_sink(
        config: MediaConfig,
        agents: Agents,
        sink: Arc<dyn CallSink>,
    ) -> Result<Self, MediaError> {
        Self::with_services(config, agents, sink, None)
    }

    /// As [`MediaState::with_call_sink`], also serving ConversationRelay on `relay_path` when
    /// `relay` is given.
    pub fn with_services(
        config: MediaConfig,
        agents: Agents,
        sink: Arc<dyn CallSink>,
        relay: Option<RelayService>,
    ) -> Result<Self, MediaError> {
        config.validate()?;
        agents
            .get(&config.default_agent)
            .map_err(MediaError::DefaultAgent)?;
        let validator = if config.insecure_skip_signature {
            tracing::warn!(
                "media.insecure_skip_signature = true: X-Twilio-Signature is NOT checked and \
                 anyone who can reach {} can open calls. Development only.",
                config.media_path
            );
            None
        } else {
            Some(RequestValidator::new(config.auth_token.expose()))
        };
        let public_base = if config.public_url.is_empty() {
            String::new()
        } else {
            config.public_base()?
        };
        let metrics = metrics::BridgeMetrics::default();
        let draining = Arc::new(AtomicBool::new(false));
        let connections = TaskTracker::new();
        let mut metrics_registry = MetricsRegistry::default();
        voxbridge_metrics::register_process(&mut metrics_registry);
        metrics::register(
            &mut metrics_registry,
            &metrics,
            &connections,
            &draining,
            &agents,
        );
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                validator,
                public_base,
                agents,
                registry: Registry::new(),
                sink,
                relay,
                brain_channels: BrainChannels::default(),
                metrics,
                metrics_registry: std::sync::RwLock::new(metrics_registry),
                draining,
                force_close: CancellationToken::new(),
                connections,
                readiness: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Adds a check to `GET /readyz` (e.g. "the store answers"): while not draining, `/readyz`
    /// answers 503 with the check's error when it fails or takes over 2 s. Set once (by the
    /// process, at start-up); later calls are ignored.
    pub fn set_readiness_check(
        &self,
        check: impl Fn() -> futures::future::BoxFuture<'static, Result<(), String>>
        + Send
        + Sync
        + 'static,
    ) {
        let _ = self.shared.readiness.set(Box::new(check));
    }

    /// Runs the readiness check, if any.
    pub(crate) async fn check_readiness(&self) -> Result<(), String> {
        let Some(check) = self.shared.readiness.get() else {
            return Ok(());
        };
        match tokio::time::timeout(READINESS_TIMEOUT, check()).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "readiness check took over {} s",
                READINESS_TIMEOUT.as_secs()
            )),
        }
    }

    /// The live calls.
    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    /// Open Media Streams connections, including those whose `start` has not arrived yet.
    pub fn connections(&self) -> usize {
        self.shared.connections.len()
    }

    /// Whether `max_calls` calls are live (or being upgraded): one more would be refused.
    pub fn at_capacity(&self) -> bool {
        self.connections() >= self.config().max_calls
    }

    /// Whether shutdown has begun (new upgrades get 503).
    pub fn is_draining(&self) -> bool {
        self.shared.draining.load(Ordering::Acquire)
    }

    /// Stops accepting calls; live ones continue. Idempotent.
    pub fn begin_drain(&self) {
        self.shared.draining.store(true, Ordering::Release);
        self.shared.connections.close();
    }

    /// Ends every live call now with close 1001 (the drain deadline passed).
    pub fn close_all(&self) {
        self.begin_drain();
        self.shared.force_close.cancel();
    }

    /// Resolves when draining and every connection has ended.
    pub async fn idle(&self) {
        self.shared.connections.wait().await;
    }

    /// The configuration.
    pub fn config(&self) -> &MediaConfig {
        &self.shared.config
    }

    pub(crate) fn agents(&self) -> &Agents {
        &self.shared.agents
    }

    /// The ConversationRelay service, when `relay_path` is served.
    pub fn relay(&self) -> Option<&RelayService> {
        self.shared.relay.as_ref()
    }

    pub(crate) fn call_sink(&self) -> &dyn CallSink {
        &*self.shared.sink
    }

    pub(crate) fn bridge_metrics(&self) -> &metrics::BridgeMetrics {
        &self.shared.metrics
    }

    /// The registry `GET /metrics` serves.
    pub(crate) fn metrics_registry(&self) -> std::sync::RwLockReadGuard<'_, MetricsRegistry> {
        // A panic while registering leaves the registry as it was: still fine to read.
        self.shared
            .metrics_registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lets the process add its own families to what `GET /metrics` serves (e.g. `voxbridge
    /// serve`'s record counters). Meant for start-up; a scrape waits while `register` runs.
    pub fn register_more_metrics(&self, register: impl FnOnce(&mut MetricsRegistry)) {
        let mut registry = self
            .shared
            .metrics_registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        register(&mut registry);
    }

    /// Registers the bridge's metrics and its agents' voice metrics in `registry` too (one
    /// registry for several services in one process); the same counters keep counting, and
    /// `GET /metrics` keeps serving them.
    pub fn register_metrics(&self, registry: &mut MetricsRegistry) {
        metrics::register(
            registry,
            &self.shared.metrics,
            &self.shared.connections,
            &self.shared.draining,
            &self.shared.agents,
        );
    }

    /// The `/metrics` body in the Prometheus text format 0.0.4: what `GET /metrics` serves
    /// unless the scraper asks for OpenMetrics.
    pub fn render_metrics(&self) -> String {
        voxbridge_metrics::Format::PrometheusText.encode(&self.metrics_registry())
    }

    pub(crate) fn brain_channels(&self) -> BrainChannels {
        self.shared.brain_channels
    }

    pub(crate) fn force_close_token(&self) -> CancellationToken {
        self.shared.force_close.clone()
    }

    pub(crate) fn connection_token(&self) -> tokio_util::task::task_tracker::TaskTrackerToken {
        self.shared.connections.token()
    }

    /// Checks the upgrade's `X-Twilio-Signature` against `public_url` + the request's path
    /// and query. `Ok` when checks are switched off.
    pub(crate) fn check_signature(
        &self,
        path_and_query: &str,
        signature: Option<&str>,
    ) -> Result<(), voxbridge_twilio::SignatureError> {
        let Some(validator) = &self.shared.validator else {
            return Ok(());
        };
        let url = format!("{}{path_and_query}", self.shared.public_base);
        validator.validate_websocket(&url, signature.unwrap_or(""))
    }
}
