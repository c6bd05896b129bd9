//! `GET /metrics`: the bridge's own gauges and counters plus the voice pipeline metrics of
//! every registered agent that has them ([`voxbridge_brain::BrainFactory::turn_metrics`]), in
//! the Prometheus text exposition format 0.0.4
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format>).
//!
//! Everything is a relaxed atomic updated by the call tasks; rendering reads them without a
//! lock and never awaits, so a scrape costs one string build and never slows a call.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use voxbridge_brain::turn::render_agents;
use voxbridge_session::EndReason;

use crate::MediaState;
use crate::relay::RelayEnd;

/// The `Content-Type` of the text exposition format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Which WebSocket route a metric is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Media Streams (`media_path`).
    Media,
    /// ConversationRelay (`relay_path`).
    Relay,
}

impl Transport {
    const LABELS: [&'static str; 2] = ["media", "relay"];

    fn index(self) -> usize {
        match self {
            Self::Media => 0,
            Self::Relay => 1,
        }
    }
}

/// Why an upgrade was refused before any call started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// The server is draining (503).
    Draining,
    /// Missing or wrong `X-Twilio-Signature` (403).
    Forbidden,
    /// Not a valid WebSocket upgrade request (axum's 4xx).
    NotWebSocket,
}

impl Rejection {
    const LABELS: [&'static str; 3] = ["draining", "forbidden", "not_websocket"];

    fn index(self) -> usize {
        match self {
            Self::Draining => 0,
            Self::Forbidden => 1,
            Self::NotWebSocket => 2,
        }
    }
}

/// Media Streams end reasons, as labels: the session's [`EndReason::LABELS`], then a refused
/// agent and a call that ended before the session said why ([`media_end_index`] order).
const MEDIA_ENDS: [&str; EndReason::LABELS.len() + 2] = {
    let mut labels = [""; EndReason::LABELS.len() + 2];
    let mut i = 0;
    while i < EndReason::LABELS.len() {
        labels[i] = EndReason::LABELS[i];
        i += 1;
    }
    labels[i] = "refused";
    labels[i + 1] = "unknown";
    labels
};

fn media_end_index(reason: Option<&EndReason>, refused: bool) -> usize {
    let known = EndReason::LABELS.len();
    if refused {
        return known;
    }
    reason.map_or(known + 1, EndReason::index)
}

/// The bridge's counters. One per [`MediaState`].
#[derive(Debug, Default)]
pub(crate) struct BridgeMetrics {
    /// Calls (media: `start` received; relay: `setup` accepted) not yet ended, per transport.
    active: [AtomicU64; 2],
    /// Calls started, per transport.
    started: [AtomicU64; 2],
    media_ended: [AtomicU64; MEDIA_ENDS.len()],
    relay_ended: [AtomicU64; RelayEnd::LABELS.len()],
    /// Refused upgrades, per transport and reason.
    rejected: [[AtomicU64; Rejection::LABELS.len()]; 2],
}

impl BridgeMetrics {
    /// A call started; it counts as active until the guard is dropped (on every exit path).
    pub(crate) fn call_started(self: &Arc<Self>, transport: Transport) -> ActiveCall {
        self.started[transport.index()].fetch_add(1, Ordering::Relaxed);
        self.active[transport.index()].fetch_add(1, Ordering::Relaxed);
        ActiveCall {
            metrics: Arc::clone(self),
            transport,
        }
    }

    /// A Media Streams connection ended (`refused`: the shell refused its agent).
    pub(crate) fn media_ended(&self, reason: Option<&EndReason>, refused: bool) {
        self.media_ended[media_end_index(reason, refused)].fetch_add(1, Ordering::Relaxed);
    }

    /// A ConversationRelay session ended.
    pub(crate) fn relay_ended(&self, end: &RelayEnd) {
        self.relay_ended[end.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// An upgrade was refused.
    pub(crate) fn rejected(&self, transport: Transport, why: Rejection) {
        self.rejected[transport.index()][why.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts one live call in `voxbridge_calls_active` while it exists.
#[derive(Debug)]
pub(crate) struct ActiveCall {
    metrics: Arc<BridgeMetrics>,
    transport: Transport,
}

impl Drop for ActiveCall {
    fn drop(&mut self) {
        self.metrics.active[self.transport.index()].fetch_sub(1, Ordering::Relaxed);
    }
}

/// One family: `HELP`, `TYPE`, then each `(labels, value)` sample (`labels` with braces, or
/// empty).
fn family(
    out: &mut String,
    (name, kind, help): (&str, &str, &str),
    samples: impl IntoIterator<Item = (String, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// `{transport="…"}` samples of per-transport counters.
fn by_transport(counts: &[AtomicU64; 2]) -> impl Iterator<Item = (String, u64)> + '_ {
    Transport::LABELS
        .iter()
        .zip(counts)
        .map(|(t, c)| (format!("{{transport=\"{t}\"}}"), load(c)))
}

/// `{transport="…",reason="…"}` samples.
fn by_reason<'a>(
    transport: &'a str,
    reasons: &'a [&'a str],
    counts: &'a [AtomicU64],
) -> impl Iterator<Item = (String, u64)> + 'a {
    reasons.iter().zip(counts).map(move |(r, c)| {
        (
            format!("{{transport=\"{transport}\",reason=\"{r}\"}}"),
            load(c),
        )
    })
}

/// The whole `/metrics` body.
pub(crate) fn render(state: &MediaState) -> String {
    let m = state.bridge_metrics();
    let mut out = String::with_capacity(16 * 1024);
    family(
        &mut out,
        (
            "voxbridge_calls_active",
            "gauge",
            "Live calls: Media Streams calls after `start`, ConversationRelay sessions after `setup`.",
        ),
        by_transport(&m.active),
    );
    family(
        &mut out,
        (
            "voxbridge_calls_started_total",
            "counter",
            "Calls started (agent chosen and running).",
        ),
        by_transport(&m.started),
    );
    family(
        &mut out,
        (
            "voxbridge_calls_ended_total",
            "counter",
            "Connections ended, by transport and reason.",
        ),
        by_reason("media", &MEDIA_ENDS, &m.media_ended).chain(by_reason(
            "relay",
            &RelayEnd::LABELS,
            &m.relay_ended,
        )),
    );
    family(
        &mut out,
        (
            "voxbridge_upgrades_rejected_total",
            "counter",
            "WebSocket upgrades refused, by transport and reason.",
        ),
        Transport::LABELS
            .iter()
            .zip(&m.rejected)
            .flat_map(|(t, counts)| by_reason(t, &Rejection::LABELS, counts)),
    );
    family(
        &mut out,
        (
            "voxbridge_connections_open",
            "gauge",
            "Open WebSocket connections, including those whose start/setup has not arrived.",
        ),
        [(
            String::new(),
            u64::try_from(state.connections()).unwrap_or(u64::MAX),
        )],
    );
    family(
        &mut out,
        (
            "voxbridge_draining",
            "gauge",
            "1 while the bridge refuses new calls at shutdown.",
        ),
        [(String::new(), u64::from(state.is_draining()))],
    );

    let voices: Vec<_> = state
        .agents()
        .iter()
        .filter_map(|(name, factory)| factory.turn_metrics().map(|m| (name, m)))
        .collect();
    let series: Vec<_> = voices.iter().map(|(name, m)| (*name, &**m)).collect();
    render_agents(&mut out, &series);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_cover_every_index() {
        assert_eq!(media_end_index(None, false), MEDIA_ENDS.len() - 1);
        assert_eq!(MEDIA_ENDS[media_end_index(None, true)], "refused");
        assert_eq!(
            MEDIA_ENDS[media_end_index(Some(&EndReason::Shutdown), false)],
            "shutdown"
        );
        // One vocabulary: the stored record's `end` uses the same labels.
        assert_eq!(
            MEDIA_ENDS[media_end_index(Some(&EndReason::TooManyBadMessages), false)],
            "malformed-messages"
        );
        assert_eq!(MEDIA_ENDS[..EndReason::LABELS.len()], EndReason::LABELS);
        assert_eq!(RelayEnd::SlowPeer.label(), "slow-peer");
        assert_eq!(
            RelayEnd::Refused(String::new()).label(),
            "agent-unavailable"
        );
        assert_eq!(
            Rejection::LABELS[Rejection::NotWebSocket.index()],
            "not_websocket"
        );
    }

    #[test]
    fn active_calls_are_counted_until_their_guard_drops() {
        let metrics = Arc::new(BridgeMetrics::default());
        let a = metrics.call_started(Transport::Media);
        let b = metrics.call_started(Transport::Relay);
        assert_eq!(metrics.active[0].load(Ordering::Relaxed), 1);
        drop(a);
        assert_eq!(metrics.active[0].load(Ordering::Relaxed), 0);
        assert_eq!(metrics.active[1].load(Ordering::Relaxed), 1);
        drop(b);
        assert_eq!(metrics.started[0].load(Ordering::Relaxed), 1);
        assert_eq!(metrics.active[1].load(Ordering::Relaxed), 0);
    }
}
