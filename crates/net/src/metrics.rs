//! What a guarded listener counts: open connections, connections refused by a cap, connections
//! closed by a timeout, failed accepts.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use voxbridge_metrics::Series;

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections`.
    Global,
    /// `max_connections_per_ip`.
    PerIp,
}

impl Refusal {
    const LABELS: [&'static str; 2] = ["max_connections", "max_connections_per_ip"];

    fn index(self) -> usize {
        match self {
            Self::Global => 0,
            Self::PerIp => 1,
        }
    }
}

/// Which timeout closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// `header_read_timeout_ms`: the header block did not arrive in time.
    Header,
    /// `keep_alive_timeout_ms`: no request for that long.
    Idle,
    /// `body_timeout_ms`: a request body did not arrive in time (the request got 408).
    Body,
}

impl Timeout {
    const LABELS: [&'static str; 3] = ["header", "idle", "body"];

    fn index(self) -> usize {
        match self {
            Self::Header => 0,
            Self::Idle => 1,
            Self::Body => 2,
        }
    }
}

/// The counters of one listener (relaxed atomics; clone the handles to register them).
#[derive(Debug, Default)]
pub struct ListenerMetrics {
    open: Gauge,
    accepted: Counter,
    refused: [Counter; 2],
    timed_out: [Counter; 3],
    accept_errors: Counter,
}

impl ListenerMetrics {
    /// Registers the families as `{prefix}_tcp_connections_open`,
    /// `{prefix}_tcp_connections_accepted`, `{prefix}_tcp_connections_refused{reason}`,
    /// `{prefix}_tcp_connections_timed_out{timeout}` and `{prefix}_tcp_accept_errors`
    /// (counters get the `_total` suffix).
    pub fn register(&self, registry: &mut Registry, prefix: &str) {
        registry.register(
            format!("{prefix}_tcp_connections_open"),
            "Open TCP connections (HTTP and upgraded WebSockets)",
            self.open.clone(),
        );
        registry.register(
            format!("{prefix}_tcp_connections_accepted"),
            "TCP connections accepted within the caps",
            self.accepted.clone(),
        );
        registry.register(
            format!("{prefix}_tcp_connections_refused"),
            "TCP connections closed at once by a connection cap",
            Series::new(
                Refusal::LABELS
                    .into_iter()
                    .zip(self.refused.iter().cloned())
                    .map(|(r, c)| ([("reason", r)], c)),
            ),
        );
        registry.register(
            format!("{prefix}_tcp_connections_timed_out"),
            "Connections closed (or requests answered 408) by a listener timeout",
            Series::new(
                Timeout::LABELS
                    .into_iter()
                    .zip(self.timed_out.iter().cloned())
                    .map(|(t, c)| ([("timeout", t)], c)),
            ),
        );
        registry.register(
            format!("{prefix}_tcp_accept_errors"),
            "Failed accepts (e.g. out of file descriptors); the listener backs off and goes on",
            self.accept_errors.clone(),
        );
    }

    /// Open connections now.
    pub fn open(&self) -> i64 {
        self.open.get()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.get()
    }

    /// Connections refused by `why` so far.
    pub fn refused(&self, why: Refusal) -> u64 {
        self.refused[why.index()].get()
    }

    /// Timeouts of kind `which` so far.
    pub fn timed_out(&self, which: Timeout) -> u64 {
        self.timed_out[which.index()].get()
    }

    /// Failed accepts so far.
    pub fn accept_errors(&self) -> u64 {
        self.accept_errors.get()
    }

    pub(crate) fn on_accepted(&self) {
        self.accepted.inc();
        self.open.inc();
    }

    pub(crate) fn on_closed(&self) {
        self.open.dec();
    }

    pub(crate) fn on_refused(&self, why: Refusal) {
        self.refused[why.index()].inc();
    }

    pub(crate) fn on_timeout(&self, which: Timeout) {
        self.timed_out[which.index()].inc();
    }

    pub(crate) fn on_accept_error(&self) {
        self.accept_errors.inc();
    }
}
