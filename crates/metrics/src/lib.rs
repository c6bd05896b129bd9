//! The Prometheus exposition shared by voxbridge's servers, on top of `prometheus-client`.
//!
//! Each component registers its metrics into a [`Registry`] it is handed (the bridge's
//! `MediaState::register_metrics`, the API's `AppState::register_metrics`, the voice agents'
//! `voxbridge_brain::turn::register_agents`), so one process can serve them all from one
//! registry; `GET /metrics` answers with [`exposition`]. This crate adds what those need
//! beyond `prometheus-client`'s own metrics:
//!
//! - [`Series`]: a family whose series (label sets) are fixed when it is registered and listed
//!   in that order. Each series is a plain `Counter`/`Gauge`/`Histogram` handle that the hot
//!   path updates directly, and a scrape reads them without a lock (a `Family` looks series
//!   up in a locked map and lists them in hash order).
//! - [`Computed`]: a gauge read at scrape time (a connection count, a flag) instead of kept up
//!   to date by every call.
//! - [`exposition`] / [`Format`]: the body and `Content-Type` of `GET /metrics`: the Prometheus
//!   text format 0.0.4 unless the scraper's `Accept` prefers OpenMetrics 1.0.0 (as Prometheus
//!   itself does).
//! - [`register_process`]: `process_*` metrics (CPU, memory, threads, file descriptors, start
//!   time) and `voxbridge_build_info`, which every server's registry carries.

mod process;

use std::fmt;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

pub use process::register_process;

/// Upper bounds (µs) of the latency histogram buckets: 1-2-5 steps from 100 µs to 20 s.
pub const LATENCY_BOUNDS_US: [u64; 16] = [
    100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000,
    1_000_000, 2_000_000, 5_000_000, 20_000_000,
];

/// A latency histogram in seconds with the [`LATENCY_BOUNDS_US`] buckets (and `+Inf`), shared
/// by every latency family (voice turns, relay turns, HTTP requests, Twilio REST calls) so
/// dashboards can compare them.
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BOUNDS_US.map(|us| us as f64 / 1e6))
}

/// A metric family with a fixed, ordered set of series: `(labels, metric)` pairs given once at
/// registration. Register it like any metric (`registry.register(name, help, series)`); the
/// family is left out of the exposition while it has no series.
#[derive(Debug, Clone)]
pub struct Series<S, M> {
    series: Vec<(S, M)>,
}

impl<S, M> Series<S, M> {
    /// The family's series, exposed in this order.
    pub fn new(series: impl IntoIterator<Item = (S, M)>) -> Self {
        Self {
            series: series.into_iter().collect(),
        }
    }
}

impl<S, M> TypedMetric for Series<S, M>
where
    M: TypedMetric,
{
    const TYPE: MetricType = M::TYPE;
}

impl<S, M> EncodeMetric for Series<S, M>
where
    S: EncodeLabelSet,
    M: EncodeMetric + TypedMetric,
{
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        for (labels, metric) in &self.series {
            metric.encode(encoder.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }

    fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

/// A gauge whose value is read by `read` at each scrape.
pub struct Computed<F>(F);

impl<F> Computed<F> {
    /// A gauge that shows `read()` when scraped (`read` must not block).
    pub fn new(read: F) -> Self {
        Self(read)
    }
}

impl<F> fmt::Debug for Computed<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Computed")
    }
}

impl<F> TypedMetric for Computed<F> {
    const TYPE: MetricType = MetricType::Gauge;
}

impl<F> EncodeMetric for Computed<F>
where
    F: Fn() -> i64,
{
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        encoder.encode_gauge(&(self.0)())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// A text exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4 (`text/plain; version=0.0.4`): the default.
    PrometheusText,
    /// OpenMetrics 1.0.0 (`application/openmetrics-text`), ends with `# EOF`.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header prefers: the acceptable (`q` > 0) range with the highest
    /// `q` (the first on a tie) among `application/openmetrics-text` (version 1.0.0 or none)
    /// and `text/plain` (version 0.0.4 or none); the Prometheus text format when neither is
    /// listed or there is no header.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let mut best: Option<(f64, Self)> = None;
        for range in accept.unwrap_or_default().split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let (mut q, mut version) = (1.0, None);
            for (key, value) in parts.filter_map(|p| p.split_once('=')) {
                match key.trim() {
                    "q" => q = value.trim().parse().unwrap_or(0.0),
                    "version" => version = Some(value.trim()),
                    _ => {}
                }
            }
            let format = if media.eq_ignore_ascii_case("application/openmetrics-text")
                && matches!(version, None | Some("1.0.0"))
            {
                Self::OpenMetrics
            } else if media.eq_ignore_ascii_case("text/plain")
                && matches!(version, None | Some("0.0.4"))
            {
                Self::PrometheusText
            } else {
                continue;
            };
            if q > 0.0 && best.is_none_or(|(best_q, _)| q > best_q) {
                best = Some((q, format));
            }
        }
        best.map_or(Self::PrometheusText, |(_, format)| format)
    }

    /// The `Content-Type` of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::PrometheusText => prometheus_text::CONTENT_TYPE,
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// `registry`'s metrics in this format.
    pub fn encode(self, registry: &Registry) -> String {
        let mut body = String::with_capacity(16 * 1024);
        let written = match self {
            Self::PrometheusText => prometheus_text::encode(&mut body, registry),
            Self::OpenMetrics => text::encode(&mut body, registry),
        };
        // Writing to a String fails only for native-only histograms, which no one registers.
        written.expect("the text exposition of classic metrics always encodes");
        body
    }
}

/// The `GET /metrics` answer for a request with header `Accept: accept`: its `Content-Type`
/// and body (see [`Format::negotiate`]).
pub fn exposition(registry: &Registry, accept: Option<&str>) -> (&'static str, String) {
    let format = Format::negotiate(accept);
    (format.content_type(), format.encode(registry))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};

    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::histogram::Histogram;

    use super::*;

    /// What Prometheus 3 sends by default.
    const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
        application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=1.0.0;\
        escaping=allow-utf-8;q=0.5,text/plain;version=0.0.4;q=0.25,*/*;q=0.1";

    #[test]
    fn negotiation_prefers_what_the_scraper_ranks_highest() {
        assert_eq!(Format::negotiate(None), Format::PrometheusText);
        assert_eq!(Format::negotiate(Some("*/*")), Format::PrometheusText);
        assert_eq!(
            Format::negotiate(Some(PROMETHEUS_ACCEPT)),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text")),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some(
                "text/plain;version=0.0.4;q=0.9, application/openmetrics-text;q=0.5"
            )),
            Format::PrometheusText
        );
        // Refused (q=0) or a version we cannot write: not chosen.
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Format::PrometheusText
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; version=0.0.1")),
            Format::PrometheusText
        );
        assert_eq!(
            Format::OpenMetrics.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        assert_eq!(
            Format::PrometheusText.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
    }

    #[test]
    fn series_keep_their_order_and_labels_and_empty_families_are_left_out() {
        let calls: [Counter; 2] = Default::default();
        calls[1].inc_by(3);
        let latency = Histogram::new([0.1, 0.5]);
        latency.observe(0.2);
        let mut registry = Registry::default();
        registry.register(
            "calls",
            "Calls, by transport",
            Series::new(
                ["media", "relay"]
                    .into_iter()
                    .zip(calls.iter().cloned())
                    .map(|(t, c)| ([("transport", t)], c)),
            ),
        );
        registry.register(
            "latency_seconds",
            "Latency",
            Series::new([([("agent", "voice".to_owned())], latency)]),
        );
        registry.register(
            "nothing",
            "No series",
            Series::<[(&str, &str); 1], Counter>::new([]),
        );
        let (content_type, text) = exposition(&registry, None);
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        assert_eq!(
            text,
            "# HELP calls_total Calls, by transport.\n\
             # TYPE calls_total counter\n\
             calls_total{transport=\"media\"} 0\n\
             calls_total{transport=\"relay\"} 3\n\
             # HELP latency_seconds Latency.\n\
             # TYPE latency_seconds histogram\n\
             latency_seconds_bucket{agent=\"voice\",le=\"0.1\"} 0\n\
             latency_seconds_bucket{agent=\"voice\",le=\"0.5\"} 1\n\
             latency_seconds_bucket{agent=\"voice\",le=\"+Inf\"} 1\n\
             latency_seconds_sum{agent=\"voice\"} 0.2\n\
             latency_seconds_count{agent=\"voice\"} 1\n"
        );

        let (content_type, text) = exposition(&registry, Some(PROMETHEUS_ACCEPT));
        assert_eq!(
            content_type,
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        assert!(
            text.starts_with("# HELP calls Calls, by transport.\n"),
            "{text}"
        );
        assert!(
            text.contains("\ncalls_total{transport=\"relay\"} 3\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(!text.contains("nothing"), "{text}");
    }

    #[test]
    fn computed_gauges_are_read_at_each_scrape() {
        let open = Arc::new(AtomicI64::new(2));
        let mut registry = Registry::default();
        let read = Arc::clone(&open);
        registry.register(
            "connections_open",
            "Open connections",
            Computed::new(move || read.load(Ordering::Relaxed)),
        );
        let text = Format::PrometheusText.encode(&registry);
        assert!(text.ends_with("\nconnections_open 2\n"), "{text}");
        open.store(5, Ordering::Relaxed);
        let text = Format::PrometheusText.encode(&registry);
        assert!(text.contains("# TYPE connections_open gauge\n"), "{text}");
        assert!(text.ends_with("\nconnections_open 5\n"), "{text}");
    }
}
