//! The guarded listener both voxbridge services run on (`voxbridge serve`'s `/media` and
//! `/relay` bridge, `voxbridge api`): an axum [`Router`] served over HTTP/1 (with WebSocket
//! upgrades) with the exposure limits `axum::serve` does not offer:
//!
//! - a global connection cap and an optional per-IP cap ([`ListenerConfig`]): beyond them a
//!   new connection is closed at once and counted; an upgraded WebSocket keeps its place
//!   until it closes;
//! - a header-read timeout (a silent or trickling client is closed), a keep-alive idle timeout,
//!   and a deadline for each request body (the request gets 408 and the connection closes);
//! - accept errors never stop the listener: out of file descriptors (`EMFILE`/`ENFILE`) it
//!   backs off briefly and goes on, so the timeouts free descriptors and service resumes;
//! - on shutdown it stops accepting, lets requests in flight finish until the drain deadline,
//!   then closes what is left, so a request with an unfinished body cannot hold the process.
//!
//! ```no_run
//! # async fn run(router: axum::Router) -> std::io::Result<()> {
//! use voxbridge_net::{ListenerConfig, Server};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8081").await?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! Server::new(ListenerConfig::default())
//!     .serve(listener, router, shutdown, std::time::Duration::from_secs(10))
//!     .await;
//! # Ok(()) }
//! ```

mod admission;
mod config;
mod conn;
mod metrics;

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

pub use config::{LimitError, ListenerConfig};
pub use metrics::{ListenerMetrics, Refusal, Timeout};

use crate::admission::Admission;

/// How long the accept loop waits after an accept error that is not about one connection
/// (out of file descriptors or memory): long enough not to spin, short enough that service
/// resumes as soon as a timeout frees a descriptor.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Accept errors are logged at most this often (a full descriptor table fails every accept).
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(5);

type Setup = Arc<dyn Fn(&TcpStream) + Send + Sync>;

/// A guarded HTTP/1 server: see the crate documentation.
#[derive(Clone)]
pub struct Server {
    config: ListenerConfig,
    metrics: Arc<ListenerMetrics>,
    setup: Option<Setup>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .field("setup", &self.setup.is_some())
            .finish_non_exhaustive()
    }
}

/// How [`Server::serve`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// Connections still open at the drain deadline, closed then.
    pub closed_at_deadline: usize,
}

impl Server {
    /// A server with `config`'s caps and timeouts (checked by [`ListenerConfig::validate`]
    /// beforehand) and metrics of its own.
    pub fn new(config: ListenerConfig) -> Self {
        Self {
            config,
            metrics: Arc::new(ListenerMetrics::default()),
            setup: None,
        }
    }

    /// Counts into `metrics` (registered by the service in its registry).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<ListenerMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Runs `setup` on each admitted socket before anything is read (socket options).
    #[must_use]
    pub fn on_accept(mut self, setup: impl Fn(&TcpStream) + Send + Sync + 'static) -> Self {
        self.setup = Some(Arc::new(setup));
        self
    }

    /// The server's counters.
    pub fn metrics(&self) -> &Arc<ListenerMetrics> {
        &self.metrics
    }

    /// Serves `router` on `listener` until `shutdown` fires; then stops accepting, lets the
    /// requests in flight finish (idle connections close at once) for at most `drain`, and
    /// closes what is left. Upgraded connections (WebSocket calls) belong to their handlers and are
    /// not waited for.
    pub async fn serve(
        self,
        listener: TcpListener,
        router: Router,
        shutdown: CancellationToken,
        drain: Duration,
    ) -> Served {
        let admission = Admission::new(
            self.config.max_connections,
            self.config.max_connections_per_ip,
            Arc::clone(&self.metrics),
        );
        let shared = Arc::new(conn::Shared {
            router,
            config: self.config,
            metrics: Arc::clone(&self.metrics),
        });
        let connections = TaskTracker::new();
        let graceful = CancellationToken::new();
        let abort = CancellationToken::new();
        let mut last_error_log: Option<Instant> = None;
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = shutdown.cancelled() => break,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => {
                    debug!(error = %e, "accept: connection failed before it was accepted");
                    continue;
                }
                Err(e) => {
                    self.metrics.on_accept_error();
                    if last_error_log.is_none_or(|at| at.elapsed() >= ACCEPT_ERROR_LOG_EVERY) {
                        warn!(
                            error = %e,
                            errors = self.metrics.accept_errors(),
                            "accept failed (out of file descriptors?); backing off, still serving"
                        );
                        last_error_log = Some(Instant::now());
                    }
                    tokio::select! {
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                        () = shutdown.cancelled() => break,
                    }
                    continue;
                }
            };
            let permit = match admission.admit(peer.ip()) {
                Ok(permit) => permit,
                Err(why) => {
                    self.metrics.on_refused(why);
                    debug!(?why, "connection cap reached: closing a new connection");
                    drop(stream);
                    continue;
                }
            };
            if let Some(setup) = &self.setup {
                setup(&stream);
            }
            connections.spawn(conn::run(
                stream,
                permit,
                Arc::clone(&shared),
                graceful.clone(),
                abort.clone(),
            ));
        }
        drop(listener);
        connections.close();
        graceful.cancel();
        info!(
            connections = connections.len(),
            ?drain,
            "listener closed: finishing requests in flight"
        );
        let mut closed_at_deadline = 0;
        if tokio::time::timeout(drain, connections.wait())
            .await
            .is_err()
        {
            closed_at_deadline = connections.len();
            warn!(
                connections = closed_at_deadline,
                "drain deadline passed: closing connections with requests still in flight"
            );
            abort.cancel();
            connections.wait().await;
        }
        Served { closed_at_deadline }
    }
}

/// Errors about one connection (it went away before `accept` took it): retry at once.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}
