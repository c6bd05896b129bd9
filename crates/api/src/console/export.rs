//! CSV exports of the calls list (same filters as the page, every page of it) and of the
//! answers of those calls' screenings. RFC 4180 quoting; cells a spreadsheet would run as a
//! formula are prefixed with `'`.

use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use voxbridge_store::{ConsoleCall, rfc3339};

use super::auth::Session;
use super::pages::{CallsQuery, answer_rows};
use crate::{ApiError, AppState};

/// Most rows one export holds.
const MAX_ROWS: i64 = 10_000;
/// Rows read per query.
const BATCH: i64 = 200;

/// One CSV cell.
fn cell(text: &str) -> String {
    let formula = match text.as_bytes() {
        [b'=' | b'@' | b'\t' | b'\r', ..] => true,
        // `+14155550100` and `-3` stay numbers; `+SUM(...)`, `-cmd|...` do not run.
        [b'+' | b'-', rest @ ..] => !rest.is_empty() && !rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    let text = if formula {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn line(cells: &[&str]) -> String {
    let mut line = cells.iter().map(|c| cell(c)).collect::<Vec<_>>().join(",");
    line.push_str("\r\n");
    line
}

/// Every call the query selects (at most [`MAX_ROWS`]), newest first.
/// The calls the query string `raw` (the list's filters) selects, every page.
async fn filtered(state: &AppState, raw: Option<&str>) -> Result<Vec<ConsoleCall>, ApiError> {
    all_calls(state, &CallsQuery::parse(raw)?).await
}

async fn all_calls(state: &AppState, query: &CallsQuery) -> Result<Vec<ConsoleCall>, ApiError> {
    let mut filter = query.filter.clone();
    filter.offset = 0;
    filter.limit = BATCH;
    let mut calls = Vec::new();
    loop {
        let (page, _) = state.0.store.console_calls(&filter).await?;
        let done = i64::try_from(page.len()).unwrap_or(0) < BATCH;
        calls.extend(page);
        if done || i64::try_from(calls.len()).unwrap_or(i64::MAX) >= MAX_ROWS {
            break;
        }
        filter.offset += BATCH;
    }
    calls.truncate(usize::try_from(MAX_ROWS).unwrap_or(usize::MAX));
    Ok(calls)
}

fn csv(name: &'static str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response()
}

fn refused(error: &ApiError) -> Response {
    (
        error.status(),
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        error.to_string(),
    )
        .into_response()
}

/// `GET /console/export/calls.csv?state=&outcome=&job=&date=`.
pub(crate) async fn calls(
    State(state): State<AppState>,
    _session: Session,
    RawQuery(raw): RawQuery,
) -> Response {
    let calls = match filtered(&state, raw.as_deref()).await {
        Ok(calls) => calls,
        Err(e) => return refused(&e),
    };
    let mut body = line(&[
        "callSid",
        "createdAt",
        "candidateId",
        "firstName",
        "jobTitle",
        "to",
        "status",
        "state",
        "outcome",
        "answeredBy",
        "durationSeconds",
        "screeningId",
    ]);
    for call in &calls {
        let record = &call.call;
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        body.push_str(&line(&[
            &record.call_sid,
            &rfc3339(record.created_at),
            &text(&record.candidate_id),
            &text(&call.first_name),
            &text(&call.job_title),
            &text(&record.to),
            &text(&record.status),
            &text(&record.state),
            &text(&record.outcome),
            &text(&record.answered_by),
            &record
                .duration_seconds
                .map(|s| s.to_string())
                .unwrap_or_default(),
            &call.screening_id.map(|s| s.to_string()).unwrap_or_default(),
        ]));
    }
    csv("calls.csv", body)
}

/// `GET /console/export/answers.csv?state=&outcome=&job=&date=`: one row per answer.
pub(crate) async fn answers(
    State(state): State<AppState>,
    _session: Session,
    RawQuery(raw): RawQuery,
) -> Response {
    let calls = match filtered(&state, raw.as_deref()).await {
        Ok(calls) => calls,
        Err(e) => return refused(&e),
    };
    let mut body = line(&[
        "callSid",
        "candidateId",
        "jobTitle",
        "outcome",
        "questionId",
        "raw",
        "parsed",
        "confidence",
        "status",
    ]);
    for call in calls.iter().filter(|c| c.screening_id.is_some()) {
        let screening = match state.0.store.screening_for_call(&call.call.call_sid).await {
            Ok(screening) => screening,
            Err(e) => return refused(&ApiError::from(e)),
        };
        let Some(screening) = screening else { continue };
        for answer in answer_rows(screening.answers.as_ref()) {
            let field = |name: &str| answer[name].as_str().unwrap_or_default().to_owned();
            body.push_str(&line(&[
                &call.call.call_sid,
                &screening.candidate_id,
                &screening.job_title,
                screening.outcome.as_deref().unwrap_or_default(),
                &field("question"),
                &field("raw"),
                &field("parsed"),
                &field("confidence"),
                &field("status"),
            ]));
        }
    }
    csv("answers.csv", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_and_formulas_defused() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("two\nlines"), "\"two\nlines\"");
        assert_eq!(cell("+14155550100"), "+14155550100");
        assert_eq!(cell("-3"), "-3");
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("+SUM(A1)"), "'+SUM(A1)");
        assert_eq!(cell("@cmd"), "'@cmd");
        assert_eq!(line(&["a", "b"]), "a,b\r\n");
    }
}
