//! `GET /metrics`: the bridge's own gauges and counters plus the voice pipeline metrics of
//! every registered agent that has them ([`voxbridge_brain::BrainFactory::turn_metrics`]), in
//! one `prometheus-client` registry ([`register`]); [`voxbridge_metrics::exposition`] writes it
//! in the Prometheus text format 0.0.4, or OpenMetrics when the scraper asks for it.
//!
//! Calls update the counters and gauges through handles taken once (relaxed atomics, no
//! lock); the connection count and the drain flag are read when scraped. A scrape never
//! awaits and never slows a call.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio_util::task::TaskTracker;
use voxbridge_brain::Agents;
use voxbridge_brain::turn::register_agents;
use voxbridge_metrics::{Computed, Series, latency_histogram};
use voxbridge_net::ListenerMetrics;
use voxbridge_session::EndReason;

use crate::relay::RelayEnd;

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
    /// `max_calls` calls are live (503).
    Busy,
}

impl Rejection {
    const LABELS: [&'static str; 4] = ["draining", "forbidden", "not_websocket", "max_calls"];

    fn index(self) -> usize {
        match self {
            Self::Draining => 0,
            Self::Forbidden => 1,
            Self::NotWebSocket => 2,
            Self::Busy => 3,
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

/// The bridge's counters and gauges. One per [`crate::MediaState`].
#[derive(Debug)]
pub(crate) struct BridgeMetrics {
    /// Calls (media: `start` received; relay: `setup` accepted) not yet ended, per transport.
    active: [Gauge; 2],
    /// Calls started, per transport.
    started: [Counter; 2],
    media_ended: [Counter; MEDIA_ENDS.len()],
    relay_ended: [Counter; RelayEnd::LABELS.len()],
    /// Refused upgrades, per transport and reason.
    rejected: [[Counter; Rejection::LABELS.len()]; 2],
    /// The TCP listener's connections, caps and timeouts (`voxbridge_tcp_*`).
    pub(crate) listener: Arc<ListenerMetrics>,
    /// ConversationRelay: caller's prompt in -> the reply's first `text` token queued.
    relay_first_text: Histogram,
}

impl Default for BridgeMetrics {
    fn default() -> Self {
        Self {
            active: Default::default(),
            started: Default::default(),
            media_ended: Default::default(),
            relay_ended: Default::default(),
            rejected: Default::default(),
            listener: Arc::default(),
            relay_first_text: latency_histogram(),
        }
    }
}

impl BridgeMetrics {
    /// A call started; it counts as active until the guard is dropped (on every exit path).
    pub(crate) fn call_started(&self, transport: Transport) -> ActiveCall {
        self.started[transport.index()].inc();
        let active = self.active[transport.index()].clone();
        active.inc();
        ActiveCall(active)
    }

    /// A Media Streams connection ended (`refused`: the shell refused its agent).
    pub(crate) fn media_ended(&self, reason: Option<&EndReason>, refused: bool) {
        self.media_ended[media_end_index(reason, refused)].inc();
    }

    /// A ConversationRelay session ended.
    pub(crate) fn relay_ended(&self, end: &RelayEnd) {
        self.relay_ended[end.index()].inc();
    }

    /// A relay turn's first `text` token was queued `elapsed` after its prompt arrived.
    pub(crate) fn relay_first_text(&self, elapsed: std::time::Duration) {
        self.relay_first_text.observe(elapsed.as_secs_f64());
    }

    /// An upgrade was refused.
    pub(crate) fn rejected(&self, transport: Transport, why: Rejection) {
        self.rejected[transport.index()][why.index()].inc();
    }
}

/// Counts one live call in `voxbridge_calls_active` while it exists.
#[derive(Debug)]
pub(crate) struct ActiveCall(Gauge);

impl Drop for ActiveCall {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `{transport="…"}` series of per-transport metrics.
fn by_transport<M: Clone>(metrics: &[M; 2]) -> Series<[(&'static str, &'static str); 1], M> {
    Series::new(
        Transport::LABELS
            .into_iter()
            .zip(metrics.iter().cloned())
            .map(|(t, m)| ([("transport", t)], m)),
    )
}

/// `{transport="…",reason="…"}` series.
type ByReason = Series<[(&'static str, &'static str); 2], Counter>;

fn by_reason<'a>(
    transport: &'static str,
    reasons: &'a [&'static str],
    counts: &'a [Counter],
) -> impl Iterator<Item = ([(&'static str, &'static str); 2], Counter)> + 'a {
    reasons
        .iter()
        .zip(counts)
        .map(move |(r, c)| ([("transport", transport), ("reason", *r)], c.clone()))
}

/// Registers what `/metrics` serves for one bridge in `registry`: the bridge's families, the
/// open connections of `connections` and the `draining` flag (both read when scraped), then
/// the voice pipeline families of the `agents` that have them.
pub(crate) fn register(
    registry: &mut Registry,
    metrics: &BridgeMetrics,
    connections: &TaskTracker,
    draining: &Arc<AtomicBool>,
    agents: &Agents,
) {
    registry.register(
        "voxbridge_calls_active",
        "Live calls: Media Streams calls after `start`, ConversationRelay sessions after `setup`",
        by_transport(&metrics.active),
    );
    registry.register(
        "voxbridge_calls_started",
        "Calls started (agent chosen and running)",
        by_transport(&metrics.started),
    );
    let ended: ByReason = Series::new(
        by_reason("media", &MEDIA_ENDS, &metrics.media_ended).chain(by_reason(
            "relay",
            &RelayEnd::LABELS,
            &metrics.relay_ended,
        )),
    );
    registry.register(
        "voxbridge_calls_ended",
        "Connections ended, by transport and reason",
        ended,
    );
    let rejected: ByReason = Series::new(
        Transport::LABELS
            .into_iter()
            .zip(&metrics.rejected)
            .flat_map(|(t, counts)| by_reason(t, &Rejection::LABELS, counts)),
    );
    registry.register(
        "voxbridge_upgrades_rejected",
        "WebSocket upgrades refused, by transport and reason",
        rejected,
    );
    let connections = connections.clone();
    registry.register(
        "voxbridge_connections_open",
        "Open WebSocket connections, including those whose start/setup has not arrived",
        Computed::new(move || i64::try_from(connections.len()).unwrap_or(i64::MAX)),
    );
    let draining = Arc::clone(draining);
    registry.register(
        "voxbridge_draining",
        "1 while the bridge refuses new calls at shutdown",
        Computed::new(move || i64::from(draining.load(Ordering::Acquire))),
    );
    metrics.listener.register(registry, "voxbridge");
    registry.register(
        "voxbridge_relay_prompt_first_text_seconds",
        "ConversationRelay: caller's prompt (or key press) received -> the reply's first text token queued",
        metrics.relay_first_text.clone(),
    );

    let voices: Vec<_> = agents
        .iter()
        .filter_map(|(name, factory)| factory.turn_metrics().map(|m| (name, m)))
        .collect();
    let series: Vec<_> = voices.iter().map(|(name, m)| (*name, &**m)).collect();
    register_agents(registry, &series);
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
        let metrics = BridgeMetrics::default();
        let a = metrics.call_started(Transport::Media);
        let b = metrics.call_started(Transport::Relay);
        assert_eq!(metrics.active[0].get(), 1);
        drop(a);
        assert_eq!(metrics.active[0].get(), 0);
        assert_eq!(metrics.active[1].get(), 1);
        drop(b);
        assert_eq!(metrics.started[0].get(), 1);
        assert_eq!(metrics.active[1].get(), 0);
    }

    #[test]
    fn one_process_registry_serves_the_bridge_beside_other_services() {
        let config = crate::MediaConfig {
            insecure_skip_signature: true,
            ..crate::MediaConfig::default()
        };
        let state = crate::MediaState::new(config, Agents::builtin()).expect("valid");
        let mut registry = Registry::default();
        let other = Counter::<u64>::default();
        registry.register("voxbridge_api_webhooks_accepted", "Webhooks", other.clone());
        state.register_metrics(&mut registry);
        other.inc();
        state
            .bridge_metrics()
            .rejected(Transport::Relay, Rejection::Forbidden);
        let _call = state.bridge_metrics().call_started(Transport::Media);
        state.begin_drain();
        let text = voxbridge_metrics::Format::PrometheusText.encode(&registry);
        for line in [
            "voxbridge_api_webhooks_accepted_total 1",
            "voxbridge_upgrades_rejected_total{transport=\"relay\",reason=\"forbidden\"} 1",
            "voxbridge_calls_active{transport=\"media\"} 1",
            "voxbridge_calls_started_total{transport=\"media\"} 1",
            "voxbridge_draining 1",
            "voxbridge_connections_open 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        // The state's own `/metrics` shows the same counters, once each.
        let own = state.render_metrics();
        assert!(own.contains("\nvoxbridge_draining 1\n"), "{own}");
        assert_eq!(
            own.matches("# TYPE voxbridge_calls_active gauge").count(),
            1
        );
        assert!(!own.contains("voxbridge_api_"), "{own}");
    }
}
