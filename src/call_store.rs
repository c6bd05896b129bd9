//! Finished Media Streams calls -> the store: the glue between `voxbridge-media`'s
//! [`CallSink`], the voice brains' [`VoiceCallReport`]s and `voxbridge-store`'s
//! [`Store::record_media_call`].
//!
//! A voice brain returns its report (turn latencies, the dialog's outcome) when its task
//! ends; the media driver awaits the brain and hands the report inside the [`CallRecord`] to
//! [`CallSink::call_ended`], which writes the call on a background task:
//! - every call: the call row, `summary` = JSON with `transport: "media"`, `streamSid`,
//!   `agent`, `end` (+ `endReason` for a brain hang-up, e.g. the three-strike
//!   `provider_failures: ...`), frame, utterance, barge-in and turn counts, `callerTurns`
//!   and `botTurns` as ConversationRelay counts them, `durationMs`; a dialog that ended the
//!   call (a finished screening, a handoff) puts its reason code in `end` as on
//!   ConversationRelay (`screening-complete`, `live-agent-handoff`, ...) and its
//!   `handoffData` JSON on the call row, where ConversationRelay's action callback puts it;
//! - calls whose dialog's outcome carries a screening (`screening`/`voice`): the screening
//!   (answers, outcome, transcript with interrupted bot lines) exactly as ConversationRelay
//!   stores it ([`crate::screening_store::screening_session`]), linked to the screening the
//!   API placed for the call (`direction` and `from` from the stream's `customParameters`);
//!   other voice agents (`assistant`, `realtime`): the transcript;
//! - voice agents: one `turn_latencies` row per turn.

use std::time::{Duration, SystemTime};

use tokio_util::task::TaskTracker;
use voxbridge_brain::EndReason;
use voxbridge_brain::outcome::EndReason as DialogEnd;
use voxbridge_brain::turn::{TurnLatency, VoiceCallReport};
use voxbridge_media::{CallRecord, CallSink};
use voxbridge_screening::ScreeningResult;
use voxbridge_store::{MediaCallEnd, Store, TurnLatencyRecord};

use crate::record_metrics::{Record, RecordMetrics};
use crate::screening_store::{screening_session, transcript_lines, unix_ms};

/// Stores each finished Media Streams call; [`StoreCalls::flush`] waits for the writes in
/// flight at shutdown.
#[derive(Debug, Clone)]
pub(crate) struct StoreCalls {
    store: Store,
    writes: TaskTracker,
    metrics: RecordMetrics,
}

impl StoreCalls {
    /// Stores calls in `store`, counting them in `metrics`.
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

impl CallSink for StoreCalls {
    fn call_ended(&self, record: &CallRecord) {
        let Some(call_sid) = record.summary.call_sid.clone().filter(|s| !s.is_empty()) else {
            // `start` never came: there is no call to attach anything to.
            return;
        };
        let call = media_call_of(record, &call_sid, record.report.as_ref(), SystemTime::now());
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        self.writes.spawn(async move {
            match store.record_media_call(&call).await {
                Ok(()) => {
                    if let Some(screening) = &call.screening {
                        metrics.screening_stored(&screening.outcome);
                    }
                }
                Err(e) => {
                    metrics.not_stored(Record::MediaCall);
                    tracing::error!(call_sid = %call.call_sid, error = %e, "media call not stored");
                }
            }
        });
    }
}

/// `end` as stored in the summary (the session's label for it, or the code of the dialog
/// that ended the call, as ConversationRelay stores it), and the brain's reason for a
/// hang-up.
fn end_code<'a>(
    reason: Option<&'a EndReason>,
    dialog_end: Option<&'a DialogEnd>,
) -> (&'a str, Option<&'a str>) {
    match (reason, dialog_end) {
        (Some(EndReason::BrainHangup(why)), Some(end)) => (end.reason_code.as_str(), Some(why)),
        (Some(EndReason::BrainHangup(why)), None) => ("brain-hangup", Some(why)),
        (Some(other), _) => (other.label(), None),
        (None, _) => ("unknown", None),
    }
}

fn micros(d: Option<Duration>) -> Option<i64> {
    d.map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// One turn as stored.
fn turn_record(index: usize, turn: &TurnLatency, now_ms: i64) -> TurnLatencyRecord {
    TurnLatencyRecord {
        turn_index: i64::try_from(index).unwrap_or(i64::MAX),
        bot_turn: turn.turn.and_then(|t| i64::try_from(t).ok()),
        speech_ended_at_ms: millis(turn.utterance_ended_at),
        hangover_ms: millis(turn.hangover),
        asr_us: micros(turn.asr),
        dialog_first_text_us: micros(turn.dialog_first_text),
        first_sentence_us: micros(turn.first_sentence),
        tts_first_byte_us: micros(turn.tts_first_byte),
        first_frame_us: micros(turn.first_frame),
        total_us: micros(turn.total),
        retries: i64::from(turn.retries),
        outcome: turn.outcome.label().to_owned(),
        failed_stage: turn.outcome.failed_stage().map(|s| s.to_string()),
        recorded_at_ms: now_ms,
    }
}

/// The store's view of a finished call (`report`: the voice brain's, if it ran one).
fn media_call_of(
    record: &CallRecord,
    call_sid: &str,
    report: Option<&VoiceCallReport>,
    now: SystemTime,
) -> MediaCallEnd {
    let now_ms = unix_ms(now);
    let summary = &record.summary;
    let dialog_end = report.and_then(|r| r.outcome.end.as_ref());
    let (end, end_reason) = end_code(summary.end_reason.as_ref(), dialog_end);
    let json = serde_json::json!({
        "transport": "media",
        "streamSid": summary.stream_sid,
        "agent": record.agent,
        "end": end,
        "endReason": end_reason,
        "handoff": dialog_end,
        "callerTurns": summary.utterances + summary.dtmf,
        "utterances": summary.utterances,
        "bargeIns": summary.barge_ins,
        "dtmf": summary.dtmf,
        "botTurns": summary.bot_turns,
        "interruptedBotTurns": summary.interrupted_bot_turns,
        "voiceTurns": report.map(|r| r.turns.len()),
        "framesIn": summary.frames_in,
        "framesOut": summary.frames_out,
        "badMessages": summary.bad_messages,
        "durationMs": millis(record.duration),
    });
    let mut call = MediaCallEnd {
        call_sid: call_sid.to_owned(),
        summary: json.to_string(),
        ended_at_ms: now_ms,
        ..MediaCallEnd::default()
    };
    let Some(report) = report else {
        return call;
    };
    call.turns = report
        .turns
        .iter()
        .enumerate()
        .map(|(i, turn)| turn_record(i, turn, now_ms))
        .collect();
    // Only a dialog's own end is a handoff: a hang-up after provider failures is not.
    if matches!(summary.end_reason, Some(EndReason::BrainHangup(_))) {
        call.handoff_data = dialog_end.map(DialogEnd::handoff_data_json);
    }
    // A screening dialog's payload is stored as ConversationRelay stores it; other dialogs
    // (`assistant`) leave their transcript.
    if let Some(result) = report.outcome.payload::<ScreeningResult>() {
        let mut session = screening_session(result, call_sid, report.started_at, &json);
        // What the answer or inbound TwiML says of the call (the API's own row wins).
        let parameter = |name: &str| {
            result
                .parameters
                .get(name)
                .filter(|v| !v.is_empty())
                .cloned()
        };
        session.direction = parameter("direction");
        session.from = parameter("from");
        call.screening = Some(session);
    } else {
        call.transcript = transcript_lines(&report.outcome.transcript, report.started_at);
    }
    call
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use voxbridge_brain::Stage;
    use voxbridge_brain::turn::TurnOutcome;
    use voxbridge_session::CallSummary;
    use voxbridge_store::StoreConfig;

    use super::*;
    use crate::screening_store::scripted_result;

    const CALL: &str = "CA91000000000000000000000000000001";

    fn turn(outcome: TurnOutcome, total_ms: Option<u64>) -> TurnLatency {
        TurnLatency {
            turn: Some(2),
            utterance_ended_at: Duration::from_millis(4_200),
            hangover: Duration::from_millis(600),
            asr: Some(Duration::from_micros(180_500)),
            dialog_first_text: Some(Duration::from_millis(90)),
            first_sentence: Some(Duration::from_millis(120)),
            tts_first_byte: total_ms.map(|_| Duration::from_millis(60)),
            first_frame: total_ms.map(|_| Duration::from_micros(1_250)),
            total: total_ms.map(Duration::from_millis),
            retries: 1,
            outcome,
        }
    }

    /// A scripted screening (greeting, one answer, a barge-in on the next question,
    /// hang-up) as the voice brain would report it.
    fn report() -> VoiceCallReport {
        let result = scripted_result(CALL, "cand-3", "Yes, I am.");
        VoiceCallReport {
            call_sid: CALL.into(),
            agent: "voice",
            started_at: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            turns: vec![
                turn(TurnOutcome::Spoken, Some(364)),
                turn(TurnOutcome::Fallback { stage: Stage::Tts }, None),
            ],
            outcome: result.to_outcome(),
        }
    }

    fn record(end: EndReason) -> CallRecord {
        let mut record = CallRecord {
            summary: CallSummary::default(),
            agent: Some("voice".into()),
            started_at: Some(UNIX_EPOCH + Duration::from_secs(1_800_000_000)),
            duration: Duration::from_secs(5),
            report: None,
        };
        record.summary.call_sid = Some(CALL.into());
        record.summary.stream_sid = Some("MZ91000000000000000000000000000001".into());
        record.summary.utterances = 1;
        record.summary.barge_ins = 1;
        record.summary.bot_turns = 3;
        record.summary.interrupted_bot_turns = 1;
        record.summary.end_reason = Some(end);
        record
    }

    #[test]
    fn voice_call_maps_to_a_screening_and_turn_rows() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_010);
        let reason = "provider_failures: tts server_error x3";
        let call = media_call_of(
            &record(EndReason::BrainHangup(reason.into())),
            CALL,
            Some(&report()),
            now,
        );
        let summary: serde_json::Value = serde_json::from_str(&call.summary).unwrap();
        assert_eq!(summary["transport"], "media");
        assert_eq!(summary["end"], "brain-hangup");
        assert_eq!(summary["endReason"], reason);
        assert_eq!(summary["voiceTurns"], 2);
        assert_eq!(summary["botTurns"], 3);
        assert_eq!(summary["interruptedBotTurns"], 1);
        let session = call
            .screening
            .as_ref()
            .expect("a voice call is a screening");
        assert_eq!(session.summary, call.summary);
        assert_eq!(session.outcome, "incomplete");
        assert_eq!(session.candidate_id.as_deref(), Some("cand-3"));
        assert_eq!(session.answers[0]["question_id"], "work_authorization");
        assert_eq!(session.answers[0]["raw"], "Yes, I am.");
        let bot_cut: Vec<_> = session
            .transcript
            .iter()
            .filter(|l| l.interrupted)
            .collect();
        assert_eq!(bot_cut.len(), 1, "{:?}", session.transcript);
        assert_eq!(bot_cut[0].text, "Thanks. Are you");
        assert_eq!(bot_cut[0].role, "agent");
        assert_eq!(session.transcript[0].at_ms, 1_800_000_000_000);
        assert_eq!(call.turns.len(), 2);
        let spoken = &call.turns[0];
        assert_eq!((spoken.turn_index, spoken.bot_turn), (0, Some(2)));
        assert_eq!(spoken.asr_us, Some(180_500));
        assert_eq!(spoken.total_us, Some(364_000));
        assert_eq!(spoken.first_frame_us, Some(1_250));
        assert_eq!(
            (spoken.speech_ended_at_ms, spoken.hangover_ms),
            (4_200, 600)
        );
        assert_eq!(spoken.outcome, "spoken");
        assert_eq!(spoken.recorded_at_ms, 1_800_000_010_000);
        let failed = &call.turns[1];
        assert_eq!(failed.outcome, "fallback");
        assert_eq!(failed.failed_stage.as_deref(), Some("tts"));
        assert_eq!(failed.total_us, None);
    }

    /// A screening the dialog finished itself is stored as ConversationRelay stores it: its
    /// reason code as `end`, its `handoffData` on the call, the caller's turns counted, and
    /// the direction and number the TwiML's parameters give.
    #[test]
    fn a_finished_screening_ends_as_on_conversation_relay() {
        let mut result = scripted_result(CALL, "cand-3", "Yes, I am.");
        result.end = Some(DialogEnd::new(
            "screening-complete",
            "All questions answered",
        ));
        result
            .parameters
            .insert("direction".into(), "inbound".into());
        result
            .parameters
            .insert("from".into(), "+14155550142".into());
        let mut voice = report();
        voice.outcome = result.to_outcome();
        let mut ended = record(EndReason::BrainHangup(
            "screening-complete: All questions answered".into(),
        ));
        ended.summary.dtmf = 2;
        let call = media_call_of(&ended, CALL, Some(&voice), SystemTime::now());
        let summary: serde_json::Value = serde_json::from_str(&call.summary).unwrap();
        assert_eq!(summary["end"], "screening-complete");
        assert_eq!(
            summary["callerTurns"], 3,
            "one utterance and two key presses"
        );
        assert_eq!(summary["handoff"]["reasonCode"], "screening-complete");
        let handoff: serde_json::Value =
            serde_json::from_str(call.handoff_data.as_deref().expect("handoff data")).unwrap();
        assert_eq!(
            handoff,
            serde_json::json!({"reasonCode": "screening-complete", "reason": "All questions answered"})
        );
        let session = call.screening.expect("a screening");
        assert_eq!(session.direction.as_deref(), Some("inbound"));
        assert_eq!(session.from.as_deref(), Some("+14155550142"));
        // A call the session ended (the caller hung up) carries no handoff.
        let hung_up = media_call_of(
            &record(EndReason::Stopped),
            CALL,
            Some(&voice),
            SystemTime::now(),
        );
        assert!(hung_up.handoff_data.is_none());
        let summary: serde_json::Value = serde_json::from_str(&hung_up.summary).unwrap();
        assert_eq!(summary["end"], "stopped");
    }

    #[test]
    fn calls_without_a_screening_keep_their_summary_or_transcript() {
        let echo = media_call_of(&record(EndReason::Stopped), CALL, None, SystemTime::now());
        assert!(echo.screening.is_none() && echo.turns.is_empty() && echo.transcript.is_empty());
        let summary: serde_json::Value = serde_json::from_str(&echo.summary).unwrap();
        assert_eq!(summary["end"], "stopped");
        assert!(summary["endReason"].is_null());
        // An assistant's dialog reports a transcript and no domain payload.
        let mut assistant = report();
        assistant.agent = "assistant";
        assistant.outcome.payload = None;
        let call = media_call_of(
            &record(EndReason::Stopped),
            CALL,
            Some(&assistant),
            SystemTime::now(),
        );
        assert!(call.screening.is_none());
        assert!(!call.transcript.is_empty());
        assert_eq!(call.turns.len(), 2);
    }

    #[tokio::test]
    async fn finished_voice_call_lands_in_a_sqlite_file() {
        let dir = std::env::temp_dir().join(format!("voxbridge-calls-{}", std::process::id()));
        let config = StoreConfig {
            database_url: format!("sqlite://{}/v.db", dir.display()).into(),
            ..StoreConfig::default()
        };
        let store = Store::connect(&config).await.unwrap();
        let sink = StoreCalls::new(store.clone(), RecordMetrics::default());
        // The driver at teardown, with the report the brain returned.
        let mut voice = record(EndReason::Stopped);
        voice.report = Some(report());
        sink.call_ended(&voice);
        // A connection whose `start` never came stores nothing.
        let mut nameless = record(EndReason::StartTimeout);
        nameless.summary.call_sid = None;
        sink.call_ended(&nameless);
        sink.flush().await;
        let detail = store.call_detail(CALL).await.unwrap().expect("the call");
        let turns = store.turn_latencies(CALL).await.unwrap();
        store.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
        let summary = detail.call.summary.clone().unwrap();
        assert_eq!(summary["agent"], "voice");
        let screening = detail.screening.expect("a screening row");
        assert_eq!(screening.answers.unwrap()[0]["raw"], "Yes, I am.");
        assert!(detail.transcript.iter().any(|l| l.interrupted));
        assert_eq!(turns.len(), 2);
        assert_eq!(turns[0].total_us, Some(364_000));
    }
}
