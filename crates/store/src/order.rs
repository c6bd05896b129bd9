//! Ordering of call-progress events, as a pure rule.
//!
//! Twilio sends each call-progress event as a separate HTTP request, so they may arrive out of
//! order (<https://www.twilio.com/docs/voice/api/call-resource#statuscallback>). A later status
//! must never be replaced by an earlier one, and a terminal status (`completed`, `busy`,
//! `failed`, `no-answer`, `canceled`) sticks. The same rule is written once more as SQL in
//! [`crate::Store::record_call_status`] so the check and the write are one atomic statement;
//! the tests below pin the rule and the store tests pin the SQL against it.

/// Progress rank of a status (higher is later); unknown statuses rank lowest.
pub fn status_rank(status: &str) -> i64 {
    match status {
        "queued" => 1,
        "initiated" => 2,
        "ringing" => 3,
        "in-progress" => 4,
        "completed" | "busy" | "failed" | "no-answer" | "canceled" => 5,
        _ => 0,
    }
}

/// Whether `status` ends the call (no further progress events follow).
pub fn is_terminal(status: &str) -> bool {
    status_rank(status) == 5
}

/// Where a status sits in the call's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusPoint<'a> {
    /// The `CallStatus`.
    pub status: &'a str,
    /// `SequenceNumber` (starts at 0), when Twilio sent one.
    pub sequence_number: Option<i64>,
    /// `Timestamp` in Unix milliseconds, when Twilio sent one.
    pub timestamp_ms: Option<i64>,
}

/// Whether `incoming` should replace `current` as the call's status.
///
/// Terminal states stick; otherwise the sequence numbers decide when both have one, then the
/// timestamps when both have one and they differ, then the progress rank.
pub fn supersedes(current: Option<StatusPoint<'_>>, incoming: StatusPoint<'_>) -> bool {
    let Some(current) = current else {
        return true;
    };
    if is_terminal(current.status) {
        return false;
    }
    if is_terminal(incoming.status) {
        return true;
    }
    if let (Some(a), Some(b)) = (incoming.sequence_number, current.sequence_number) {
        return a > b;
    }
    if let (Some(a), Some(b)) = (incoming.timestamp_ms, current.timestamp_ms)
        && a != b
    {
        return a > b;
    }
    status_rank(incoming.status) > status_rank(current.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(status: &str, seq: Option<i64>, ts: Option<i64>) -> StatusPoint<'_> {
        StatusPoint {
            status,
            sequence_number: seq,
            timestamp_ms: ts,
        }
    }

    #[test]
    fn terminal_states_stick() {
        let done = p("completed", Some(3), None);
        assert!(!supersedes(Some(done), p("ringing", Some(9), None)));
        assert!(!supersedes(Some(done), p("busy", Some(9), None)));
        assert!(supersedes(
            Some(p("ringing", Some(1), None)),
            p("no-answer", Some(0), None)
        ));
    }

    #[test]
    fn sequence_number_beats_rank_and_duplicates_do_not_apply() {
        assert!(!supersedes(
            Some(p("in-progress", Some(2), None)),
            p("ringing", Some(1), None)
        ));
        assert!(!supersedes(
            Some(p("ringing", Some(1), None)),
            p("ringing", Some(1), None)
        ));
        assert!(supersedes(
            Some(p("initiated", Some(0), None)),
            p("ringing", Some(1), None)
        ));
    }

    #[test]
    fn timestamp_then_rank_without_sequence_numbers() {
        assert!(!supersedes(
            Some(p("in-progress", None, Some(2_000))),
            p("ringing", None, Some(1_000))
        ));
        assert!(supersedes(
            Some(p("ringing", None, Some(1_000))),
            p("in-progress", None, Some(1_000))
        ));
        assert!(supersedes(None, p("queued", None, None)));
    }
}
