//! The console's pages: the calls list, a call's detail, the launch form, the rate-limit
//! look-up, and the event stream that keeps them live.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Value, json};
use voxbridge_store::{
    CallEvent, ConsoleCall, ConsoleCallFilter, SCREENING_OUTCOMES, SCREENING_STATES,
    ScreeningFilter, ScreeningRecord, TranscriptLine, TurnLatencyRecord,
};
use voxbridge_twilio::sid::CallSid;
use voxbridge_twilio::webhook::FormParams;

use super::auth::{Session, random_token};
use super::view::{self, micros_as_ms, when, words};
use crate::calls::Params;
use crate::{ApiError, AppState};

/// Calls per page of the list.
pub(super) const PAGE: i64 = 25;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// What every page's layout needs: who is signed in, the CSRF token of the sign-out form, and
/// which navigation entry is current.
pub(super) fn layout(session: &Session, current: &str, title: &str) -> Value {
    json!({
        "subject": session.subject,
        "csrf": session.csrf,
        "current": current,
        "title": title,
    })
}

/// Merges `extra` (an object) into `base` (an object).
pub(super) fn with(mut base: Value, extra: Value) -> Value {
    if let (Value::Object(base), Value::Object(extra)) = (&mut base, extra) {
        base.extend(extra);
    }
    base
}

/// An error page with `status` and the message (an [`ApiError`]'s, usually).
pub(super) fn error_page(
    state: &AppState,
    session: &Session,
    status: StatusCode,
    message: &str,
) -> Response {
    let mut response = view::render(
        state,
        "error.html",
        &with(
            layout(session, "", "Error"),
            json!({"status": status.as_u16(), "message": message}),
        ),
    );
    *response.status_mut() = status;
    response
}

/// The calls filters as the list, its pages and the exports take them (`state`, `outcome`,
/// `job`, `date` YYYY-MM-DD, `page`; `launched`, the call a launch just placed, is only
/// shown); empty values are no filter.
pub(super) struct CallsQuery {
    pub(super) filter: ConsoleCallFilter,
    /// The filters again, for the form, the page links and the export links.
    pub(super) echo: Value,
    pub(super) page: i64,
}

impl CallsQuery {
    pub(super) fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let kept: Vec<&str> = raw
            .unwrap_or_default()
            .split('&')
            .filter(|pair| !pair.is_empty() && !pair.ends_with('='))
            .collect();
        let kept = kept.join("&");
        let params = Params::parse(
            Some(kept.as_str()),
            &[
                "state",
                "outcome",
                "job",
                "date",
                "page",
                "launched",
                "scheduled",
                "canceled",
            ],
        )?;
        let state = params.one_of("state", &SCREENING_STATES)?;
        let outcome = params.one_of("outcome", &SCREENING_OUTCOMES)?;
        let job = params.text("job");
        let date = params.text("date");
        let since = match &date {
            Some(date) if date.len() == 10 => params.time("date")?,
            Some(date) => {
                return Err(ApiError::BadRequest(format!(
                    "date must be a day YYYY-MM-DD, got {date:?}"
                )));
            }
            None => None,
        };
        let page = match params.text("page") {
            None => 1,
            Some(page) => page
                .parse::<i64>()
                .ok()
                .filter(|p| *p >= 1)
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("page must be a positive integer, got {page:?}"))
                })?,
        };
        Ok(Self {
            echo: json!({"state": state, "outcome": outcome, "job": job, "date": date}),
            filter: ConsoleCallFilter {
                state,
                outcome,
                job_title: job,
                since_ms: since,
                until_ms: since.map(|since| since + DAY_MS),
                limit: PAGE,
                offset: (page - 1).saturating_mul(PAGE),
            },
            page,
        })
    }

    /// The filters as a query string (without `page`), `&`-joined, values encoded.
    fn query_string(&self) -> String {
        ["state", "outcome", "job", "date"]
            .into_iter()
            .filter_map(|name| {
                self.echo[name]
                    .as_str()
                    .map(|value| format!("{name}={}", view::url_encode(value)))
            })
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// One row of the calls table.
fn call_row(call: &ConsoleCall) -> Value {
    let record = &call.call;
    json!({
        "sid": record.call_sid,
        "when": when(record.created_at),
        "candidate": record.candidate_id,
        "first_name": call.first_name,
        "job": call.job_title,
        "to": record.to,
        "status": record.status.as_deref().map(words),
        "state": record.state,
        "state_words": record.state.as_deref().map(words),
        "outcome": record.outcome,
        "outcome_words": record.outcome.as_deref().map(words),
    })
}

/// A screening waiting for the candidate's calling hours, for the calls page.
fn scheduled_row(screening: &ScreeningRecord) -> Value {
    json!({
        "id": screening.id,
        "first_name": screening.first_name,
        "candidate": screening.candidate_id,
        "job": screening.job_title,
        "at": screening.scheduled_for.map(when),
    })
}

/// `GET /console/calls`: newest first, filtered, paged; today's counts by outcome; the
/// screenings scheduled for their calling hours.
pub(crate) async fn calls(
    State(state): State<AppState>,
    session: Session,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = match CallsQuery::parse(raw.as_deref()) {
        Ok(query) => query,
        Err(e) => return error_page(&state, &session, e.status(), &e.to_string()),
    };
    let store = &state.0.store;
    let now = state.now_ms();
    let today = now - now.rem_euclid(DAY_MS);
    let loaded = async {
        let (calls, total) = store.console_calls(&query.filter).await?;
        let counts = store.outcome_counts(today, today + DAY_MS).await?;
        let jobs = store.job_titles().await?;
        let (scheduled, _) = store
            .list_screenings(&ScreeningFilter {
                state: Some("scheduled".to_owned()),
                limit: 20,
                ..ScreeningFilter::default()
            })
            .await?;
        Ok::<_, voxbridge_store::StoreError>((calls, total, counts, jobs, scheduled))
    }
    .await;
    let (calls, total, counts, jobs, mut scheduled) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            let e = ApiError::from(e);
            return error_page(&state, &session, e.status(), &e.to_string());
        }
    };
    let filters = query.query_string();
    let page_link = |page: i64| {
        let mut link = format!("/console/calls?page={page}");
        if !filters.is_empty() {
            link.push('&');
            link.push_str(&filters);
        }
        link
    };
    let pages = (total + PAGE - 1) / PAGE;
    let shown = FormParams::parse(raw.as_deref().unwrap_or_default().as_bytes());
    let launched = shown.get("launched").map(str::to_owned);
    let just_scheduled = shown
        .get("scheduled")
        .and_then(|id| id.parse::<i64>().ok())
        .and_then(|id| scheduled.iter().find(|s| s.id == id))
        .map(scheduled_row);
    // Due first on top.
    scheduled.sort_by_key(|s| (s.scheduled_for, s.id));
    view::render(
        &state,
        "calls.html",
        &with(
            layout(&session, "calls", "Calls"),
            json!({
                "calls": calls.iter().map(call_row).collect::<Vec<_>>(),
                "total": total,
                "page": query.page,
                "pages": pages.max(1),
                "prev": (query.page > 1).then(|| page_link(query.page - 1)),
                "next": (query.page < pages).then(|| page_link(query.page + 1)),
                "filter": query.echo,
                "states": SCREENING_STATES.iter().map(|s| json!({"id": s, "label": words(s)})).collect::<Vec<_>>(),
                "outcomes": SCREENING_OUTCOMES.iter().map(|s| json!({"id": s, "label": words(s)})).collect::<Vec<_>>(),
                "jobs": jobs,
                "today": &view::when(today)[..10],
                "counts": counts.iter().map(|(outcome, n)| json!({
                    "outcome": outcome,
                    "label": outcome.as_deref().map_or_else(|| "no outcome yet".to_owned(), words),
                    "n": n,
                })).collect::<Vec<_>>(),
                "counted": counts.iter().map(|(_, n)| n).sum::<i64>(),
                "export_query": &filters,
                "launched": launched,
                "just_scheduled": just_scheduled,
                "canceled": shown.get("canceled"),
                "scheduled": scheduled.iter().map(scheduled_row).collect::<Vec<_>>(),
            }),
        ),
    )
}

/// A timeline entry in words: queued, ringing, answered, AMD, ended.
fn timeline_entry(event: &CallEvent) -> Value {
    let param = |name: &str| event.params.get(name).and_then(Value::as_str);
    let status = event.status.as_deref().unwrap_or_default();
    let (label, detail) = match event.kind.as_str() {
        "status" => match status {
            "queued" | "initiated" => ("queued".to_owned(), status.to_owned()),
            "ringing" => ("ringing".to_owned(), String::new()),
            "in-progress" => ("answered".to_owned(), String::new()),
            other => (
                "ended".to_owned(),
                match param("CallDuration").or_else(|| param("Duration")) {
                    Some(secs) => format!("{} after {secs} s", words(other)),
                    None => words(other),
                },
            ),
        },
        "amd" => (
            "answering machine detection".to_owned(),
            param("AnsweredBy").unwrap_or(status).to_owned(),
        ),
        "recording" => ("recording".to_owned(), words(status)),
        "relay" => ("agent session".to_owned(), words(status)),
        other => (other.to_owned(), words(status)),
    };
    json!({
        "when": when(event.event_ts.unwrap_or(event.received_at)),
        "label": label,
        "detail": detail,
    })
}

fn transcript_line(line: &TranscriptLine) -> Value {
    json!({
        "role": line.role,
        "bot": line.role == "agent",
        "text": line.text,
        "when": when(line.at_ms),
        "interrupted": line.interrupted,
    })
}

/// An answer's parsed value in words (the screening agent's `AnswerValue`, keys camelCase):
/// `{"type": "yes_no", "value": true}` -> `yes`, `{"type": "number", "value": 5.0, "unit":
/// "years"}` -> `5 years`, a choice's option, free text, a start date; anything else as JSON.
fn parsed_value(value: &Value) -> String {
    let text = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    match value {
        Value::Null => "—".to_owned(),
        Value::Bool(true) => "yes".to_owned(),
        Value::Bool(false) => "no".to_owned(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}"),
            _ => n.to_string(),
        },
        Value::Object(object) => {
            if let Some(inner) = object.get("value") {
                let mut shown = parsed_value(inner);
                if let Some(unit) = text("unit") {
                    shown.push(' ');
                    shown.push_str(&unit);
                }
                shown
            } else if let Some(shown) = text("option").or_else(|| text("text")) {
                shown
            } else if let Some(when) = object.get("availability") {
                availability(when)
            } else {
                value.to_string()
            }
        }
        Value::Array(_) => value.to_string(),
    }
}

/// A start date (`Availability`, tagged by `kind`) in words.
fn availability(when: &Value) -> String {
    let number = |name: &str| when.get(name).and_then(Value::as_u64).unwrap_or_default();
    let flag = |name: &str| when.get(name).and_then(Value::as_bool).unwrap_or_default();
    match when.get("kind").and_then(Value::as_str).unwrap_or_default() {
        "immediately" => "immediately".to_owned(),
        "in_days" => format!("in {} days", number("days")),
        "weekday" => format!(
            "{}{}",
            if flag("next") { "next " } else { "" },
            when.get("weekday").and_then(Value::as_str).unwrap_or("?")
        ),
        "day_of_month" => format!(
            "{} day {} of the month",
            if flag("after") { "after" } else { "on" },
            number("day")
        ),
        "date" => format!("month {}, day {}", number("month"), number("day")),
        _ => when.to_string(),
    }
}

/// The answers of a screening as table rows (each a question id, what was said, the parsed
/// value, the confidence in percent and the answer's status).
pub(super) fn answer_rows(answers: Option<&Value>) -> Vec<Value> {
    let Some(Value::Array(answers)) = answers else {
        return Vec::new();
    };
    answers
        .iter()
        .map(|answer| {
            let text = |name: &str| answer.get(name).and_then(Value::as_str).unwrap_or_default();
            json!({
                "question": text("questionId"),
                "raw": text("raw"),
                "parsed": parsed_value(answer.get("value").unwrap_or(&Value::Null)),
                "confidence": answer
                    .get("confidence")
                    .and_then(Value::as_f64)
                    .map(|c| format!("{:.0}%", c * 100.0)),
                "status": text("status"),
            })
        })
        .collect()
}

fn latency_row(turn: &TurnLatencyRecord) -> Value {
    json!({
        "turn": turn.turn_index + 1,
        "outcome": words(&turn.outcome),
        "asr": micros_as_ms(turn.asr_us),
        "dialog": micros_as_ms(turn.dialog_first_text_us),
        "sentence": micros_as_ms(turn.first_sentence_us),
        "tts": micros_as_ms(turn.tts_first_byte_us),
        "frame": micros_as_ms(turn.first_frame_us),
        "total": micros_as_ms(turn.total_us),
        "failed_stage": turn.failed_stage,
    })
}

/// The handoff reason: `HandoffData`'s `reason` (or `reasonCode`), else the whole of it.
fn handoff_reason(data: Option<&Value>) -> Option<String> {
    let data = data?;
    ["reason", "reasonCode", "handoffReason"]
        .into_iter()
        .find_map(|key| data.get(key).and_then(Value::as_str).map(str::to_owned))
        .or_else(|| match data {
            Value::String(text) => Some(text.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        })
}

/// `GET /console/calls/{callSid}`.
pub(crate) async fn call_detail(
    State(state): State<AppState>,
    session: Session,
    Path(call_sid): Path<String>,
) -> Response {
    if let Err(e) = CallSid::check(&call_sid) {
        return error_page(
            &state,
            &session,
            StatusCode::BAD_REQUEST,
            &format!("invalid call SID: {e}"),
        );
    }
    let store = &state.0.store;
    let loaded = async {
        let detail = store.call_detail(&call_sid).await?;
        let turns = store.turn_latencies(&call_sid).await?;
        Ok::<_, voxbridge_store::StoreError>((detail, turns))
    }
    .await;
    let (detail, turns) = match loaded {
        Ok((Some(detail), turns)) => (detail, turns),
        Ok((None, _)) => {
            return error_page(
                &state,
                &session,
                StatusCode::NOT_FOUND,
                &format!("no call {call_sid}"),
            );
        }
        Err(e) => {
            let e = ApiError::from(e);
            return error_page(&state, &session, e.status(), &e.to_string());
        }
    };
    let call = &detail.call;
    let screening = detail.screening.as_ref();
    let summary = screening
        .and_then(|s| s.summary.as_ref())
        .or(call.summary.as_ref())
        .map(|summary| match summary {
            Value::String(text) => text.clone(),
            other => serde_json::to_string_pretty(other).unwrap_or_default(),
        });
    let recording = call
        .recording_url
        .as_deref()
        .filter(|url| url.starts_with("https://") || url.starts_with("http://"));
    view::render(
        &state,
        "call.html",
        &with(
            layout(&session, "calls", &format!("Call {call_sid}")),
            json!({
                "sid": call.call_sid,
                "live_call": call.call_sid,
                "when": when(call.created_at),
                "updated": when(call.updated_at),
                "candidate": call.candidate_id,
                "first_name": screening.map(|s| &s.first_name),
                "phone": call.to,
                "from": call.from,
                "direction": call.direction,
                "job": screening.map(|s| &s.job_title),
                "script": screening.map(|s| &s.screening).or(call.screening.as_ref()),
                "screening_id": screening.map(|s| s.id),
                "screening_error": screening.and_then(|s| s.error.as_ref()),
                "state": call.state,
                "state_words": call.state.as_deref().map(words),
                "outcome": call.outcome,
                "outcome_words": call.outcome.as_deref().map(words),
                "status": call.status.as_deref().map(words),
                "answered_by": call.answered_by.as_deref().map(words),
                "duration": call.duration_seconds,
                "handoff_reason": handoff_reason(call.handoff_data.as_ref()),
                "summary": summary,
                "recording": recording.map(|url| json!({
                    "url": url,
                    "audio": format!("{url}.mp3"),
                    "status": call.recording_status,
                })),
                "timeline": detail.timeline.iter().map(timeline_entry).collect::<Vec<_>>(),
                "transcript": detail.transcript.iter().map(transcript_line).collect::<Vec<_>>(),
                "answers": answer_rows(screening.and_then(|s| s.answers.as_ref())),
                "latencies": turns.iter().map(latency_row).collect::<Vec<_>>(),
            }),
        ),
    )
}

/// The launch form's fields, as the API names them.
const FIELDS: [&str; 5] = ["candidateId", "firstName", "phone", "jobTitle", "screening"];

fn launch_form(
    state: &AppState,
    session: &Session,
    status: StatusCode,
    values: &Value,
    errors: &Value,
    refusal: Option<&str>,
) -> Response {
    let mut response = view::render(
        state,
        "launch.html",
        &with(
            layout(session, "launch", "Launch a screening"),
            json!({
                "values": values,
                "errors": errors,
                "refusal": refusal,
                "screenings": state.0.config.screenings,
                "calling_hours": state.0.config.calling_hours.enabled.then(|| {
                    let hours = &state.0.config.calling_hours;
                    json!({"start": hours.start, "end": hours.end, "days": hours.days.join(", ")})
                }),
                // A new key for each form shown: submitting it twice (a double click, a
                // reload) places one call.
                "idempotency_key": random_token(),
            }),
        ),
    );
    *response.status_mut() = status;
    response
}

/// `GET /console/screenings/new`.
pub(crate) async fn new_screening(State(state): State<AppState>, session: Session) -> Response {
    launch_form(
        &state,
        &session,
        StatusCode::OK,
        &json!({}),
        &json!({}),
        None,
    )
}

/// `POST /console/screenings`: the form, sent through the API's own create handler (same
/// validation, per-candidate limit, idempotency and Twilio call), its answer shown: the new
/// call's page on success, the form with the API's per-field messages or refusal otherwise.
pub(crate) async fn launch(
    State(state): State<AppState>,
    session: Session,
    body: Bytes,
) -> Response {
    let form = FormParams::parse(&body);
    if let Some(refused) = session.csrf_refusal(&form) {
        return refused;
    }
    let mut request = serde_json::Map::new();
    for name in FIELDS {
        if let Some(value) = form.get(name) {
            request.insert(name.to_owned(), Value::String(value.to_owned()));
        }
    }
    let values = Value::Object(request.clone());
    let mut headers = HeaderMap::new();
    if let Some(key) = form
        .get("idempotencyKey")
        .and_then(|key| HeaderValue::from_str(key).ok())
    {
        headers.insert("idempotency-key", key);
    }
    let body = Bytes::from(Value::Object(request).to_string());
    match crate::screenings::create(State(state.clone()), headers, body).await {
        Ok(created) => {
            let (parts, body) = created.into_parts();
            let created: Value = match axum::body::to_bytes(body, 1 << 20).await {
                Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
                Err(_) => Value::Null,
            };
            tracing::info!(status = %parts.status, "screening launched from the console");
            match created["callSid"].as_str() {
                Some(call_sid) => {
                    super::publish(&state, call_sid);
                    Redirect::to(&format!("/console/calls?launched={call_sid}")).into_response()
                }
                // Outside the candidate's calling hours: scheduled, no call yet.
                None => match created["id"].as_i64() {
                    Some(id) => {
                        Redirect::to(&format!("/console/calls?scheduled={id}")).into_response()
                    }
                    None => Redirect::to("/console/calls").into_response(),
                },
            }
        }
        Err(ApiError::Validation(errors)) => launch_form(
            &state,
            &session,
            StatusCode::BAD_REQUEST,
            &values,
            &json!(errors),
            None,
        ),
        Err(refusal) => launch_form(
            &state,
            &session,
            refusal.status(),
            &values,
            &json!({}),
            Some(&refusal.to_string()),
        ),
    }
}

/// `GET /console/rate-limits?number=`: the API's figures for one number.
pub(crate) async fn rate_limits(
    State(state): State<AppState>,
    session: Session,
    RawQuery(raw): RawQuery,
) -> Response {
    let form = FormParams::parse(raw.as_deref().unwrap_or_default().as_bytes());
    let number = form
        .get("number")
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    let (totals, error, status) = if number.is_empty() {
        (None, None, StatusCode::OK)
    } else {
        match crate::calls::rate_limit_stats(State(state.clone()), Path(number.clone())).await {
            Ok(axum::Json(found)) => {
                let recent: Vec<String> = found["recent"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(|t| {
                        format!(
                            "{} {} UTC",
                            &t[..10.min(t.len())],
                            t.get(11..19).unwrap_or("")
                        )
                    })
                    .collect();
                (
                    Some(with(found, json!({"recent": recent}))),
                    None,
                    StatusCode::OK,
                )
            }
            Err(e) => (None, Some(e.to_string()), e.status()),
        }
    };
    let mut response = view::render(
        &state,
        "rate_limits.html",
        &with(
            layout(&session, "rate-limits", "Rate limits"),
            json!({"number": number, "stats": totals, "error": error}),
        ),
    );
    *response.status_mut() = status;
    response
}

/// `GET /console/events`: `event: call` with the changed call's SID as data, for each
/// committed webhook, until the client goes or the service shuts down; `event: resync` when
/// this stream fell behind (the page then re-reads everything).
pub(crate) async fn events(State(state): State<AppState>, _session: Session) -> Response {
    let receiver = state.0.console.changes.subscribe();
    let stop = state.0.console.stop.clone();
    let stream = futures::stream::unfold((receiver, stop), |(mut receiver, stop)| async move {
        use tokio::sync::broadcast::error::RecvError;
        let event = tokio::select! {
            () = stop.cancelled() => return None,
            next = receiver.recv() => match next {
                Ok(call_sid) => Event::default().event("call").data(call_sid),
                Err(RecvError::Lagged(_)) => Event::default().event("resync").data("lagged"),
                Err(RecvError::Closed) => return None,
            },
        };
        Some((Ok::<_, Infallible>(event), (receiver, stop)))
    });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Deliveries shown per page of `/console/webhooks`.
const WEBHOOK_PAGE: i64 = 50;

/// `GET /console/webhooks?state=`: the result webhooks to the ATS (`crate::ats`), newest first,
/// with the counts per state; dead-lettered and delivered ones can be sent again.
pub(crate) async fn webhooks(
    State(state): State<AppState>,
    session: Session,
    RawQuery(raw): RawQuery,
) -> Response {
    let form = FormParams::parse(raw.as_deref().unwrap_or_default().as_bytes());
    let wanted = form
        .get("state")
        .filter(|s| voxbridge_store::WEBHOOK_DELIVERY_STATES.contains(s))
        .map(str::to_owned);
    let store = &state.0.store;
    let found = async {
        let (deliveries, total) = store
            .list_webhook_deliveries(wanted.as_deref(), None, WEBHOOK_PAGE, 0)
            .await?;
        let counts = store.webhook_delivery_counts().await?;
        Ok::<_, ApiError>((deliveries, total, counts))
    }
    .await;
    let (deliveries, total, counts) = match found {
        Ok(found) => found,
        Err(e) => return error_page(&state, &session, e.status(), &e.to_string()),
    };
    let rows: Vec<Value> = deliveries
        .iter()
        .map(|d| {
            json!({
                "id": d.id,
                "screeningId": d.screening_id,
                "state": d.state,
                "attempts": d.attempts,
                "url": d.url,
                "lastStatus": d.last_status,
                "lastError": d.last_error,
                "updated": when(d.updated_at),
                "nextAttempt": (d.state == "pending").then(|| when(d.next_attempt_at)),
                "canRedeliver": d.state != "pending",
            })
        })
        .collect();
    let counts: Vec<Value> = voxbridge_store::WEBHOOK_DELIVERY_STATES
        .iter()
        .zip(counts)
        .map(|(name, n)| json!({"state": name, "count": n}))
        .collect();
    view::render(
        &state,
        "webhooks.html",
        &with(
            layout(&session, "webhooks", "Result webhooks"),
            json!({
                "deliveries": rows,
                "total": total,
                "shown": WEBHOOK_PAGE.min(total),
                "counts": counts,
                "state": wanted,
                "states": voxbridge_store::WEBHOOK_DELIVERY_STATES,
                "redelivered": form.get("redelivered"),
                "configured": !state.0.config.webhooks.url.is_empty(),
            }),
        ),
    )
}

/// `POST /console/screenings/{id}/cancel`: the API's cancel of a scheduled screening, then back
/// to the calls with a notice; the API's refusal (409 once the call was placed, 404) as an error
/// page.
pub(crate) async fn cancel_screening(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Some(refused) = session.csrf_refusal(&FormParams::parse(&body)) {
        return refused;
    }
    match crate::screenings::cancel(State(state.clone()), Path(id.clone())).await {
        Ok(_) => {
            tracing::info!(screening = %id, "scheduled screening canceled from the console");
            Redirect::to(&format!(
                "/console/calls?canceled={}",
                view::url_encode(&id)
            ))
            .into_response()
        }
        Err(e) => error_page(&state, &session, e.status(), &e.to_string()),
    }
}

/// `POST /console/webhooks/{id}/redeliver`: the API's redelivery (same delivery id and body,
/// attempts from zero), then back to the list with a notice; the API's refusal (409 while it
/// is still pending, 404) as an error page.
pub(crate) async fn redeliver_webhook(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Some(refused) = session.csrf_refusal(&FormParams::parse(&body)) {
        return refused;
    }
    match crate::ats::routes::redeliver(State(state.clone()), Path(id.clone())).await {
        Ok(_) => {
            tracing::info!(delivery = %id, "result webhook redelivery asked from the console");
            Redirect::to(&format!(
                "/console/webhooks?redelivered={}",
                view::url_encode(&id)
            ))
            .into_response()
        }
        Err(e) => error_page(&state, &session, e.status(), &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_empty_values_are_no_filter() {
        let query = CallsQuery::parse(Some(
            "state=completed&outcome=&job=Warehouse+Associate&date=2023-11-14&page=2",
        ))
        .unwrap();
        assert_eq!(query.filter.state.as_deref(), Some("completed"));
        assert_eq!(query.filter.outcome, None);
        assert_eq!(
            query.filter.job_title.as_deref(),
            Some("Warehouse Associate")
        );
        assert_eq!(query.filter.since_ms, Some(1_699_920_000_000));
        assert_eq!(query.filter.until_ms, Some(1_699_920_000_000 + DAY_MS));
        assert_eq!(query.filter.offset, PAGE);
        assert_eq!(
            query.query_string(),
            "state=completed&job=Warehouse%20Associate&date=2023-11-14"
        );
        for bad in [
            "state=bogus",
            "outcome=maybe",
            "date=yesterday",
            "page=0",
            "sort=x",
        ] {
            assert!(CallsQuery::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_show_what_was_said_and_understood() {
        let answers = json!([
            {"questionId": "work_authorization", "raw": "Yes, I am.", "value": {"type": "yes_no", "value": true}, "confidence": 0.93, "status": "accepted"},
            {"questionId": "experience", "raw": "About five years.", "value": {"type": "number", "value": 5.0, "unit": "years"}, "confidence": 0.9, "status": "accepted"},
            {"questionId": "shift", "raw": "hmm", "value": null, "confidence": 0.2, "status": "unclear"},
            {"questionId": "start", "raw": "I can start next Monday.", "value": {"type": "availability", "availability": {"kind": "weekday", "weekday": "monday", "next": true}}, "confidence": 0.9, "status": "accepted"},
            {"questionId": "shift_pref", "raw": "Nights", "value": {"type": "choice", "option": "nights"}, "confidence": 0.9, "status": "accepted"}
        ]);
        let rows = answer_rows(Some(&answers));
        assert_eq!(rows[0]["parsed"], "yes");
        assert_eq!(rows[0]["confidence"], "93%");
        assert_eq!(rows[1]["parsed"], "5 years");
        assert_eq!(rows[2]["parsed"], "—");
        assert_eq!(rows[2]["status"], "unclear");
        assert_eq!(rows[3]["parsed"], "next monday");
        assert_eq!(rows[4]["parsed"], "nights");
    }

    #[test]
    fn the_handoff_reason_is_found_or_shown_whole() {
        assert_eq!(
            handoff_reason(Some(&json!({"reason": "caller asked for a person"}))).as_deref(),
            Some("caller asked for a person")
        );
        assert_eq!(
            handoff_reason(Some(&json!("transfer"))).as_deref(),
            Some("transfer")
        );
        assert_eq!(handoff_reason(None), None);
    }
}
