//! What `voxbridge serve` counts about the records it writes, served on the bridge's
//! `GET /metrics` ([`voxbridge_media::MediaState::register_more_metrics`]):
//!
//! - `voxbridge_screenings_stored_total{outcome}`: screening results stored (ConversationRelay
//!   sessions and `voice` calls), by outcome (`qualified`, `not_qualified`, `incomplete`, ...);
//! - `voxbridge_records_not_stored_total{record}`: writes that failed (`screening`,
//!   `media_call`), each also logged with its call SID. A rising count means results are being
//!   lost: check the store.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use voxbridge_metrics::Series;

/// The record a failed write was for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Record {
    /// A finished screening (relay session).
    Screening,
    /// A finished Media Streams call (with its screening or transcript).
    MediaCall,
}

impl Record {
    const LABELS: [&'static str; 2] = ["screening", "media_call"];
}

#[derive(Debug, Default)]
struct Inner {
    stored: Family<[(&'static str, String); 1], Counter>,
    not_stored: [Counter; Record::LABELS.len()],
}

/// Shared by the screening and call sinks of one process (cheap to clone).
#[derive(Debug, Clone, Default)]
pub(crate) struct RecordMetrics(Arc<Inner>);

impl RecordMetrics {
    /// A screening with `outcome` was stored.
    pub(crate) fn screening_stored(&self, outcome: &str) {
        self.0
            .stored
            .get_or_create(&[("outcome", outcome.to_owned())])
            .inc();
    }

    /// A write for `record` failed.
    pub(crate) fn not_stored(&self, record: Record) {
        self.0.not_stored[record as usize].inc();
    }

    /// Registers both families in `registry`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "voxbridge_screenings_stored",
            "Screening results stored, by outcome",
            self.0.stored.clone(),
        );
        registry.register(
            "voxbridge_records_not_stored",
            "Record writes that failed (the result is lost; see the log for the call SID)",
            Series::new(
                Record::LABELS
                    .into_iter()
                    .zip(self.0.not_stored.iter().cloned())
                    .map(|(record, counter)| ([("record", record)], counter)),
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_outcome_and_record() {
        let metrics = RecordMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.screening_stored("qualified");
        metrics.screening_stored("qualified");
        metrics.screening_stored("incomplete");
        metrics.not_stored(Record::MediaCall);
        let body = voxbridge_metrics::Format::PrometheusText.encode(&registry);
        for line in [
            "voxbridge_screenings_stored_total{outcome=\"qualified\"} 2",
            "voxbridge_screenings_stored_total{outcome=\"incomplete\"} 1",
            "voxbridge_records_not_stored_total{record=\"screening\"} 0",
            "voxbridge_records_not_stored_total{record=\"media_call\"} 1",
        ] {
            assert!(body.lines().any(|l| l == line), "{line}:\n{body}");
        }
    }
}
