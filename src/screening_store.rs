//! Finished ConversationRelay sessions -> the store: the glue between `voxbridge-media`'s
//! [`ScreeningSink`] and `voxbridge-store`'s [`Store::record_screening_session`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::task::TaskTracker;
use voxbridge_media::{RelayEnd, RelayRecord, ScreeningSink};
use voxbridge_screening::{ScreeningResult, Speaker, TranscriptEntry};
use voxbridge_store::{ScreeningSession, Store, TranscriptLine};

use crate::record_metrics::{Record, RecordMetrics};

/// Writes each finished session on a background task (the sink must not block the session's
/// task); [`StoreScreenings::flush`] waits for the writes in flight at shutdown.
#[derive(Debug, Clone)]
pub(crate) struct StoreScreenings {
    store: Store,
    writes: TaskTracker,
    metrics: RecordMetrics,
}

impl StoreScreenings {
    /// Stores sessions in `store`, counting them in `metrics`.
    pub(crate) fn new(store: Store, metrics: RecordMetrics) -> Self {
        Self {
            store,
            writes: TaskTracker::new(),
            metrics,
        }
    }

    /// Waits for every write started so far.
    pub(crate) async fn flush(&self) {
        self.writes.close();
        self.writes.wait().await;
    }
}

impl ScreeningSink for StoreScreenings {
    fn relay_ended(&self, record: &RelayRecord) {
        let Some(session) = session_of(record) else {
            return;
        };
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        self.writes.spawn(async move {
            match store.record_screening_session(&session).await {
                Ok(()) => metrics.screening_stored(&session.outcome),
                Err(e) => {
                    metrics.not_stored(Record::Screening);
                    tracing::error!(call_sid = %session.call_sid, error = %e, "screening result not stored");
                }
            }
        });
    }
}

pub(crate) fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `end` as stored in the summary: the end's label, or the agent's own reason code.
fn end_code(end: &RelayEnd) -> String {
    match end {
        RelayEnd::Agent(reason) => reason.reason_code.clone(),
        other => other.label().to_owned(),
    }
}

/// The store's view of a session; `None` when no dialog ran (no call to attach it to).
pub(crate) fn session_of(record: &RelayRecord) -> Option<ScreeningSession> {
    let result: &ScreeningResult = record.outcome.as_ref()?.payload()?;
    if record.call_sid.is_empty() {
        return None;
    }
    let summary = serde_json::json!({
        "transport": "relay",
        "sessionId": record.session_id,
        "agent": record.agent,
        "end": end_code(&record.end),
        "handoff": result.end,
        "callerTurns": record.caller_turns,
        "botTurns": record.bot_turns,
        "badMessages": record.bad_messages,
        "durationMs": u64::try_from(record.duration.as_millis()).unwrap_or(u64::MAX),
    });
    let mut session = screening_session(result, &record.call_sid, record.opened_at, &summary);
    session.direction.clone_from(&record.direction);
    session.from = Some(record.from.clone()).filter(|s| !s.is_empty());
    session.to = Some(record.to.clone()).filter(|s| !s.is_empty());
    Some(session)
}

/// A dialog's result as the store keeps it, for `call_sid`. The dialog's times are
/// milliseconds from `origin`; `summary` goes to the call and screening rows. Direction and
/// numbers are left for the caller to fill in when the transport knows them.
pub(crate) fn screening_session(
    result: &ScreeningResult,
    call_sid: &str,
    origin: SystemTime,
    summary: &serde_json::Value,
) -> ScreeningSession {
    let outcome = result
        .outcome
        .and_then(|o| serde_json::to_value(o).ok())
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "incomplete".into());
    ScreeningSession {
        call_sid: call_sid.to_owned(),
        direction: None,
        from: None,
        to: None,
        candidate_id: result.candidate_id.clone(),
        first_name: result.parameters.get("firstName").cloned(),
        job_title: result.job_title.clone(),
        screening: result.screening_id.clone(),
        outcome,
        answers: serde_json::to_value(&result.answers).unwrap_or_default(),
        summary: summary.to_string(),
        transcript: transcript_lines(&result.transcript, origin),
        ended_at_ms: unix_ms(
            origin + Duration::from_millis(result.ended_at_ms.unwrap_or_default()),
        ),
    }
}

/// The dialog's transcript with Unix-ms times (its times are milliseconds from `origin`);
/// interrupted bot lines keep their flag and hold only what the caller heard.
pub(crate) fn transcript_lines(
    transcript: &[TranscriptEntry],
    origin: SystemTime,
) -> Vec<TranscriptLine> {
    transcript
        .iter()
        .map(|entry| TranscriptLine {
            role: match entry.speaker {
                Speaker::Bot => "agent",
                Speaker::Caller => "caller",
                Speaker::Keypad => "keypad",
            }
            .into(),
            text: entry.text.clone(),
            at_ms: unix_ms(origin + Duration::from_millis(entry.at_ms)),
            interrupted: entry.interrupted,
        })
        .collect()
}

/// What a dialog gathers in a short scripted screening, for the store glue's tests.
#[cfg(test)]
pub(crate) fn scripted_result(call_sid: &str, candidate_id: &str, answer: &str) -> ScreeningResult {
    use std::collections::BTreeMap;

    use futures::StreamExt;
    use voxbridge_brain::conversation::ConversationInput;
    use voxbridge_screening::catalog::SHIPPED_SCRIPTS;
    use voxbridge_screening::{Screenings, ScriptLibrary};

    let screenings = Screenings::new(
        ScriptLibrary::from_sources(SHIPPED_SCRIPTS).expect("the shipped scripts load"),
        "default",
    )
    .expect("the default script");
    let parameters = BTreeMap::from([
        ("candidateId".to_owned(), candidate_id.to_owned()),
        ("firstName".to_owned(), "Ana".to_owned()),
    ]);
    let mut dialog = screenings.dialog(&parameters).expect("a dialog");
    // Greeting, one answer, the next question cut by the caller, a hang-up.
    let inputs = [
        ConversationInput::Started {
            call_sid: call_sid.into(),
            parameters,
        },
        ConversationInput::UserSaid {
            text: answer.into(),
            confidence: None,
        },
        ConversationInput::Interrupted {
            heard: "Thanks. Are you".into(),
        },
        ConversationInput::Hangup,
    ];
    for (i, input) in inputs.into_iter().enumerate() {
        let now = 1_000 * i as u64;
        futures::executor::block_on(dialog.handle(now, input).collect::<Vec<_>>());
    }
    dialog
        .outcome()
        .payload::<ScreeningResult>()
        .cloned()
        .expect("a screening dialog reports a screening result")
}

#[cfg(test)]
mod tests {
    use voxbridge_store::StoreConfig;

    use super::*;

    /// A scripted screening run through the agent (greeting, one answer, an interrupted
    /// question, then a hang-up), as the relay driver would record it.
    fn record() -> RelayRecord {
        let result = scripted_result("CA90000000000000000000000000000001", "cand-9", "yes");
        RelayRecord {
            call_sid: "CA90000000000000000000000000000001".into(),
            session_id: "VX90000000000000000000000000000001".into(),
            from: "+14155550142".into(),
            to: "+14155550100".into(),
            direction: Some("inbound".into()),
            agent: Some("screening".into()),
            outcome: Some(result.to_outcome()),
            end: RelayEnd::CallerHungUp,
            started_at: Some(UNIX_EPOCH + Duration::from_secs(1_800_000_000)),
            opened_at: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            duration: Duration::from_secs(3),
            bad_messages: 0,
            caller_turns: 1,
            bot_turns: 2,
        }
    }

    #[test]
    fn session_maps_roles_times_and_outcome() {
        let session = session_of(&record()).unwrap();
        assert_eq!(session.outcome, "incomplete");
        assert_eq!(session.screening, "default");
        assert_eq!(session.candidate_id.as_deref(), Some("cand-9"));
        let roles: Vec<_> = session.transcript.iter().map(|l| l.role.as_str()).collect();
        assert_eq!(roles, ["agent", "caller", "agent"]);
        assert_eq!(session.transcript[0].at_ms, 1_800_000_000_000);
        assert!(session.transcript[2].interrupted);
        assert_eq!(session.transcript[2].text, "Thanks. Are you");
        assert_eq!(session.answers[0]["raw"], "yes");
        assert_eq!(session.answers[0]["question_id"], "work_authorization");
        let summary: serde_json::Value = serde_json::from_str(&session.summary).unwrap();
        assert_eq!(summary["end"], "caller-hung-up");
    }

    #[test]
    fn no_dialog_means_nothing_to_store() {
        let mut record = record();
        record.outcome = None;
        assert!(session_of(&record).is_none());
    }

    #[tokio::test]
    async fn finished_session_lands_in_a_sqlite_file() {
        let dir = std::env::temp_dir().join(format!("voxbridge-screening-{}", std::process::id()));
        let config = StoreConfig {
            database_url: format!("sqlite://{}/v.db", dir.display()).into(),
            ..StoreConfig::default()
        };
        let store = Store::connect(&config).await.unwrap();
        let metrics = RecordMetrics::default();
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry);
        let sink = StoreScreenings::new(store.clone(), metrics.clone());
        sink.relay_ended(&record());
        sink.flush().await;
        // The same session against a closed store: counted as lost, not as stored.
        let closed = Store::connect(&config).await.unwrap();
        closed.close().await;
        let failing = StoreScreenings::new(closed, metrics);
        failing.relay_ended(&record());
        failing.flush().await;
        let body = voxbridge_metrics::Format::PrometheusText.encode(&registry);
        for line in [
            "voxbridge_screenings_stored_total{outcome=\"incomplete\"} 1",
            "voxbridge_records_not_stored_total{record=\"screening\"} 1",
        ] {
            assert!(body.lines().any(|l| l == line), "{line}:\n{body}");
        }
        let detail = store
            .call_detail("CA90000000000000000000000000000001")
            .await
            .unwrap()
            .expect("the call is stored");
        store.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(detail.call.direction.as_deref(), Some("inbound"));
        let screening = detail.screening.expect("a screening row");
        assert_eq!(screening.outcome.as_deref(), Some("incomplete"));
        assert_eq!(screening.phone, "+14155550142");
        assert_eq!(screening.answers.unwrap()[0]["raw"], "yes");
        assert_eq!(detail.transcript.len(), 3);
        assert!(detail.transcript[2].interrupted);
    }
}
