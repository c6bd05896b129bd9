//! The console's outreach pages: campaigns (launch from a CSV, follow their progress) and
//! messages (every conversation, and one candidate's thread with their consent and
//! screenings).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Value, json};
use voxbridge_store::{CampaignRecord, MessageRecord, ScreeningRecord};
use voxbridge_twilio::webhook::FormParams;

use super::auth::Session;
use super::pages::{error_page, layout, with};
use super::view::{self, when, words};
use crate::campaigns::{self, Refused};
use crate::messages::recipient_number;
use crate::{ApiError, AppState};

/// Campaigns and conversations per page.
const PAGE: i64 = 50;
/// Messages shown of one thread.
const THREAD: i64 = 500;

fn campaign_row(campaign: &CampaignRecord) -> Value {
    let p = &campaign.progress;
    let percent = |n: i64| {
        if p.total == 0 {
            0
        } else {
            (n * 100 + p.total / 2) / p.total
        }
    };
    let outcomes: Vec<Value> = p
        .done_by_outcome
        .iter()
        .map(|(outcome, n)| json!({"outcome": outcome, "label": words(outcome), "count": n}))
        .collect();
    json!({
        "id": campaign.id,
        "name": campaign.name,
        "screening": words(&campaign.screening),
        "created": when(campaign.created_at),
        "total": p.total,
        "queued": p.queued,
        "scheduled": p.scheduled,
        "retrying": p.retrying,
        "calling": p.calling,
        "done": p.done,
        "donePercent": percent(p.done),
        "outcomes": outcomes,
    })
}

/// The campaigns page: the launch form (with `values` and the refusal, when a launch was
/// refused) above the campaigns and their progress.
async fn campaigns_page(
    state: &AppState,
    session: &Session,
    status: StatusCode,
    values: &Value,
    refused: Option<&Refused>,
    launched: Option<(&str, &str)>,
) -> Response {
    let (campaigns, total) = match state.0.store.list_campaigns(PAGE, 0, state.now_ms()).await {
        Ok(found) => found,
        Err(e) => {
            let e = ApiError::from(e);
            return error_page(state, session, e.status(), &e.to_string());
        }
    };
    let rows: Vec<Value> = campaigns.iter().map(campaign_row).collect();
    let refusal = refused.map(|r| {
        json!({
            "error": r.error,
            "fields": r.fields,
            "rows": r.rows.iter().map(|(row, errors)| json!({
                "row": row,
                "errors": errors.iter().map(|(f, m)| format!("{f}: {m}")).collect::<Vec<_>>().join("; "),
            })).collect::<Vec<_>>(),
        })
    });
    let mut response = view::render(
        state,
        "campaigns.html",
        &with(
            layout(session, "campaigns", "Campaigns"),
            json!({
                "campaigns": rows,
                "total": total,
                "values": values,
                "refusal": refusal,
                "launched": launched.map(|(id, _)| id),
                "skipped": launched.map(|(_, n)| n).filter(|n| *n != "0"),
                "screenings": state.0.config.screenings,
                "max_candidates": campaigns::MAX_CANDIDATES,
                "calling_hours": state.0.config.calling_hours.enabled.then(|| {
                    let hours = &state.0.config.calling_hours;
                    json!({"start": hours.start, "end": hours.end, "days": hours.days.join(", ")})
                }),
                "retries": state.0.config.retries.max_attempts,
            }),
        ),
    );
    *response.status_mut() = status;
    response
}

/// `GET /console/campaigns`.
pub(crate) async fn campaigns(
    State(state): State<AppState>,
    session: Session,
    RawQuery(raw): RawQuery,
) -> Response {
    let form = FormParams::parse(raw.as_deref().unwrap_or_default().as_bytes());
    campaigns_page(
        &state,
        &session,
        StatusCode::OK,
        &json!({}),
        None,
        form.get("launched")
            .map(|id| (id, form.get("skipped").unwrap_or("0"))),
    )
    .await
}

/// `POST /console/campaigns`: the form's CSV and settings through the API's own parsing and
/// launch; back to the list with a notice, or the form with every bad row named.
pub(crate) async fn launch_campaign(
    State(state): State<AppState>,
    session: Session,
    body: Bytes,
) -> Response {
    let form = FormParams::parse(&body);
    if let Some(refused) = session.csrf_refusal(&form) {
        return refused;
    }
    let mut values = serde_json::Map::new();
    // The serializer is not Send: built and finished before any await.
    let query = {
        let mut settings = url::form_urlencoded::Serializer::new(String::new());
        for name in ["name", "screening", "jobTitle", "csv"] {
            if let Some(value) = form.get(name) {
                values.insert(name.to_owned(), Value::String(value.to_owned()));
                if name != "csv" && !value.trim().is_empty() {
                    settings.append_pair(name, value);
                }
            }
        }
        settings.finish()
    };
    let values = Value::Object(values);
    let csv = form.get("csv").unwrap_or_default();
    let request = match campaigns::parse(
        Some("text/csv"),
        Some(&query),
        csv.as_bytes(),
        &state.0.config.screenings,
    ) {
        Ok(request) => request,
        Err(refused) => {
            return campaigns_page(
                &state,
                &session,
                StatusCode::BAD_REQUEST,
                &values,
                Some(&refused),
                None,
            )
            .await;
        }
    };
    match campaigns::launch(&state, &request).await {
        Ok((id, skipped)) => {
            tracing::info!(
                campaign = id,
                skipped = skipped.len(),
                "campaign launched from the console"
            );
            Redirect::to(&format!(
                "/console/campaigns?launched={id}&skipped={}#campaign-{id}",
                skipped.len()
            ))
            .into_response()
        }
        Err(e) => {
            let refused = Refused {
                error: e.to_string(),
                ..Refused::default()
            };
            campaigns_page(&state, &session, e.status(), &values, Some(&refused), None).await
        }
    }
}

fn message_row(message: &MessageRecord) -> Value {
    json!({
        "id": message.id,
        "inbound": message.direction == "inbound",
        "body": message.body,
        "template": message.content_sid,
        "status": message.status,
        "error": message.error_message.as_ref().map(|m| match message.error_code {
            Some(code) => format!("{code}: {m}"),
            None => m.clone(),
        }),
        "hold": message.hold_reason.as_deref().map(words),
        "sendAt": when(message.send_at),
        "at": when(message.created_at),
    })
}

fn screening_row(screening: &ScreeningRecord) -> Value {
    json!({
        "id": screening.id,
        "candidateId": screening.candidate_id,
        "firstName": screening.first_name,
        "jobTitle": screening.job_title,
        "state": screening.state,
        "stateLabel": words(&screening.state),
        "outcome": screening.outcome.as_deref().map(words),
        "attempt": screening.attempt,
        "maxAttempts": screening.max_attempts,
        "scheduledFor": (screening.state == "scheduled")
            .then(|| screening.scheduled_for.map(when))
            .flatten(),
        "callSid": screening.call_sid,
        "followUp": screening.follow_up.as_deref().map(words),
    })
}

/// `GET /console/messages`: every conversation, the latest first.
pub(crate) async fn messages(State(state): State<AppState>, session: Session) -> Response {
    let (threads, total) = match state.0.store.message_threads(PAGE, 0).await {
        Ok(found) => found,
        Err(e) => {
            let e = ApiError::from(e);
            return error_page(&state, &session, e.status(), &e.to_string());
        }
    };
    let rows: Vec<Value> = threads
        .iter()
        .map(|t| {
            json!({
                "address": t.address,
                "encoded": view::url_encode(&t.address),
                "channel": t.channel,
                "messages": t.messages,
                "inbound": t.inbound,
                "last": when(t.last_at),
                "lastBody": t.last_body,
                "lastInbound": t.last_direction.as_deref() == Some("inbound"),
            })
        })
        .collect();
    view::render(
        &state,
        "messages.html",
        &with(
            layout(&session, "messages", "Messages"),
            json!({"threads": rows, "total": total}),
        ),
    )
}

/// `GET /console/messages/{address}`: one candidate's thread, oldest first, with their
/// consent and their screenings (a reply to a follow-up moves the scheduled one).
pub(crate) async fn thread(
    State(state): State<AppState>,
    session: Session,
    Path(address): Path<String>,
) -> Response {
    let Some(number) = recipient_number(&address) else {
        return error_page(
            &state,
            &session,
            StatusCode::NOT_FOUND,
            &format!("{address:?} is not a phone number (E.164, or whatsapp:+E.164)"),
        );
    };
    let store = &state.0.store;
    let found = async {
        let messages = store.message_thread(&address, THREAD).await?;
        let consent = store.sms_consent(number.as_str()).await?;
        let history = store.consent_history(number.as_str()).await?;
        let screenings = store.screenings_for_phone(number.as_str(), 20).await?;
        Ok::<_, ApiError>((messages, consent, history, screenings))
    }
    .await;
    let (messages, consent, history, screenings) = match found {
        Ok(found) => found,
        Err(e) => return error_page(&state, &session, e.status(), &e.to_string()),
    };
    let history: Vec<Value> = history
        .iter()
        .map(|e| {
            json!({
                "status": words(&e.status),
                "keyword": e.keyword,
                "channel": e.channel,
                "at": when(e.at),
            })
        })
        .collect();
    view::render(
        &state,
        "thread.html",
        &with(
            layout(&session, "messages", &format!("Messages with {address}")),
            json!({
                "address": address,
                "whatsapp": address.starts_with("whatsapp:"),
                "messages": messages.iter().map(message_row).collect::<Vec<_>>(),
                "consent": consent.as_deref().map(words),
                "optedOut": consent.as_deref() == Some("opted_out"),
                "history": history,
                "screenings": screenings.iter().map(screening_row).collect::<Vec<_>>(),
            }),
        ),
    )
}
