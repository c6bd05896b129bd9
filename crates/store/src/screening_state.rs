//! The screening state machine: (`scheduled` ->) `requested` -> `calling` -> `in_progress` -> `completed` |
//! `failed` | `no_answer` | `voicemail` | `canceled`, derived in SQL from the call row (its
//! Twilio status and AMD answer) and the screening's stored outcome, so every write that
//! touches either keeps `screenings.state` current in the same transaction, whatever order
//! Twilio's callbacks and the agent's result arrive in.
//!
//! `scheduled` (a call due later: calling hours), `requested` and the create failures are set
//! by the API's create path
//! ([`crate::Store::mark_screening_failed`]); from the moment a call is linked, the state is
//! `state_of_call!` of the call. Rows for calls nobody requested (inbound) stay
//! `unrequested`.

/// Every screening state, in lifecycle order (`unrequested` last: not part of the machine).
pub const SCREENING_STATES: [&str; 10] = [
    "scheduled",
    "requested",
    "calling",
    "in_progress",
    "completed",
    "failed",
    "no_answer",
    "voicemail",
    "canceled",
    "unrequested",
];

/// Every outcome the screening agent stores: `voxbridge_screening::Outcome` in snake case.
pub const SCREENING_OUTCOMES: [&str; 8] = [
    "qualified",
    "not_qualified",
    "incomplete",
    "callback_requested",
    "handoff",
    "voicemail",
    "no_answer",
    "failed",
];

/// Every Twilio `CallStatus`.
pub const CALL_STATUSES: [&str; 9] = [
    "queued",
    "initiated",
    "ringing",
    "in-progress",
    "completed",
    "busy",
    "failed",
    "no-answer",
    "canceled",
];

/// The state of a linked screening from its call `c` and its own `outcome`: a machine answer
/// (or the agent's `voicemail`) wins, then Twilio's terminal statuses, then a stored outcome
/// (the conversation ended before the `completed` callback came), then progress.
macro_rules! state_of_call {
    () => {
        "CASE \
           WHEN c.answered_by LIKE 'machine%' OR screenings.outcome = 'voicemail' THEN 'voicemail' \
           WHEN c.status IN ('busy', 'no-answer') THEN 'no_answer' \
           WHEN c.status = 'failed' THEN 'failed' \
           WHEN c.status = 'canceled' THEN 'canceled' \
           WHEN c.status = 'completed' OR screenings.outcome IS NOT NULL THEN 'completed' \
           WHEN c.status = 'in-progress' THEN 'in_progress' \
           ELSE 'calling' END"
    };
}

/// The screenings the machine applies to: not `unrequested`, linked to a call that has a row.
macro_rules! linked {
    () => {
        "state <> 'unrequested' AND call_sid IS NOT NULL \
         AND EXISTS (SELECT 1 FROM calls c WHERE c.call_sid = screenings.call_sid)"
    };
}

/// Sets the state of every linked screening from its call, and the voicemail outcome (migration
/// 6 runs it once over the rows written before the machine existed).
macro_rules! sync_all {
    () => {
        concat!(
            "UPDATE screenings SET outcome = 'voicemail' WHERE outcome = 'no_answer' \
             AND EXISTS (SELECT 1 FROM calls c WHERE c.call_sid = screenings.call_sid \
             AND c.answered_by LIKE 'machine%');\n",
            "UPDATE screenings SET state = (SELECT ",
            $crate::screening_state::state_of_call!(),
            " FROM calls c WHERE c.call_sid = screenings.call_sid) WHERE ",
            $crate::screening_state::linked!(),
            ";\n"
        )
    };
}
pub(crate) use {linked, state_of_call, sync_all};

/// An answering machine picked up and the agent heard nobody: the outcome is `voicemail`, not
/// `no_answer`. `$1` the call SID.
pub(crate) const VOICEMAIL_OUTCOME: &str = "UPDATE screenings SET outcome = 'voicemail' \
    WHERE call_sid = $1 AND outcome = 'no_answer' \
    AND EXISTS (SELECT 1 FROM calls c WHERE c.call_sid = $1 AND c.answered_by LIKE 'machine%')";

/// The state of the screening of call `$1` from its call, `updated_at` set to `$2` (Unix ms)
/// when it changes.
pub(crate) const SYNC_ONE: &str = concat!(
    "UPDATE screenings SET updated_at = $2, state = (SELECT ",
    state_of_call!(),
    " FROM calls c WHERE c.call_sid = screenings.call_sid) WHERE call_sid = $1 AND ",
    linked!(),
    " AND state <> (SELECT ",
    state_of_call!(),
    " FROM calls c WHERE c.call_sid = screenings.call_sid)"
);

/// Whether screening `$t` (a table name or alias) ended an attempt that is to be tried again: its
/// call missed (`no_answer`, `failed`, `voicemail`), attempts remain (`api.retries`, frozen on
/// the row), it has not ended for good already (`ended_at`: a late AMD result never reopens a
/// reported screening), the candidate has not opted out (STOP ends outreach), and no other
/// screening of the same candidate and script is under way, or completed since this one was
/// requested (retries are de-duplicated per candidate and screening). Until this is false the
/// result webhook waits: it is sent once, when the screening has ended for good.
macro_rules! retry_wanted {
    ($t:ident) => {
        concat!(
            stringify!($t),
            ".state IN ('no_answer', 'failed', 'voicemail') AND ",
            stringify!($t),
            ".attempt < ",
            stringify!($t),
            ".max_attempts AND ",
            stringify!($t),
            ".call_sid IS NOT NULL AND ",
            stringify!($t),
            ".ended_at IS NULL AND NOT EXISTS (SELECT 1 FROM sms_consent sc \
             WHERE sc.number = ",
            stringify!($t),
            ".phone AND sc.status = 'opted_out') AND NOT EXISTS (SELECT 1 FROM screenings o \
             WHERE o.candidate_id = ",
            stringify!($t),
            ".candidate_id AND o.screening = ",
            stringify!($t),
            ".screening AND o.id <> ",
            stringify!($t),
            ".id AND (o.state IN ('scheduled', 'requested', 'calling', 'in_progress') \
             OR (o.state = 'completed' AND o.created_at >= ",
            stringify!($t),
            ".created_at)))"
        )
    };
}

/// The call's own end has come (a voicemail state arrives with AMD, while the message is still
/// being left): only then is the next attempt scheduled.
macro_rules! call_ended {
    () => {
        "EXISTS (SELECT 1 FROM calls c WHERE c.call_sid = screenings.call_sid \
         AND c.status IN ('completed', 'busy', 'no-answer', 'failed', 'canceled'))"
    };
}

/// Keeps the attempt of call `$1` that is about to be retried (`$2` now) in
/// `screening_attempts`.
pub(crate) const RECORD_ATTEMPT: &str = concat!(
    "INSERT INTO screening_attempts (screening_id, attempt, call_sid, state, outcome, ended_at) \
     SELECT screenings.id, screenings.attempt, screenings.call_sid, screenings.state, \
     screenings.outcome, $2 FROM screenings WHERE screenings.call_sid = $1 AND ",
    retry_wanted!(screenings),
    " AND ",
    call_ended!(),
    " ON CONFLICT (screening_id, attempt) DO NOTHING"
);

/// Schedules the next attempt of the screening of call `$1` (`$2` now) when [`retry_wanted!`]
/// and its call has ended: `scheduled` again, `retry_after_ms` from now, the call unlinked (the
/// attempt keeps it) and what the missed call stored cleared; its follow-up SMS becomes due.
pub(crate) const SCHEDULE_RETRY: &str = concat!(
    "UPDATE screenings SET state = 'scheduled', scheduled_for = $2 + retry_after_ms, \
     attempt = attempt + 1, call_sid = NULL, outcome = NULL, answers = NULL, summary = NULL, \
     error = NULL, updated_at = $2, priority = 0, \
     follow_up = CASE WHEN follow_up = 'wanted' THEN 'due' ELSE follow_up END \
     WHERE call_sid = $1 AND ",
    retry_wanted!(screenings),
    " AND ",
    call_ended!()
);

/// Marks the screening of call `$1` ended for good at `$2` once it is in an end state that is
/// not retried (a voicemail while its message is still being left waits for the call's end,
/// when it may yet be retried).
pub(crate) const MARK_ENDED: &str = concat!(
    "UPDATE screenings SET ended_at = $2 WHERE call_sid = $1 AND ended_at IS NULL \
     AND state IN ('completed', 'failed', 'no_answer', 'voicemail', 'canceled') AND NOT (",
    retry_wanted!(screenings),
    ")"
);

/// Brings the screening of call `$call_sid` up to date inside the transaction `$tx` (the
/// voicemail outcome, then the state, then the next attempt if it missed and may be retried,
/// else the end, and its result webhook if it just ended for good); `?` on failure.
macro_rules! sync_screening {
    ($tx:ident, $call_sid:expr, $now_ms:expr) => {{
        sqlx::query($crate::screening_state::VOICEMAIL_OUTCOME)
            .bind($call_sid)
            .execute(&mut *$tx)
            .await?;
        sqlx::query($crate::screening_state::SYNC_ONE)
            .bind($call_sid)
            .bind($now_ms)
            .execute(&mut *$tx)
            .await?;
        sqlx::query($crate::screening_state::RECORD_ATTEMPT)
            .bind($call_sid)
            .bind($now_ms)
            .execute(&mut *$tx)
            .await?;
        sqlx::query($crate::screening_state::SCHEDULE_RETRY)
            .bind($call_sid)
            .bind($now_ms)
            .execute(&mut *$tx)
            .await?;
        sqlx::query($crate::screening_state::MARK_ENDED)
            .bind($call_sid)
            .bind($now_ms)
            .execute(&mut *$tx)
            .await?;
        // A screening that just ended for good gets its result webhook queued (once, ever); a
        // retried one is no longer linked to the call.
        sqlx::query($crate::webhook_outbox::ENQUEUE_FOR_CALL)
            .bind($call_sid)
            .bind($now_ms)
            .execute(&mut *$tx)
            .await?;
    }};
}
pub(crate) use sync_screening;
