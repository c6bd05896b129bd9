//! Messaging: SMS (and WhatsApp addressing) through Twilio's Messages API from a durable
//! queue, with consent, quiet hours and per-sender pacing.
//!
//! - `POST /api/messages` (bearer): validate, refuse opted-out recipients (code 21610) and
//!   invalid numbers (21211, per field), count segments, hold for `sendAt` and the recipient's
//!   quiet hours, queue; 202 with the id, segments, encoding and when it will go out.
//! - `GET /api/messages/{id}`, `GET /api/messages/stats` (bearer).
//! - `POST /twilio/sms/inbound` (signed): opt-out / opt-in / help keywords, other messages
//!   logged; TwiML replies. `POST /twilio/sms/status` (signed): delivery statuses, forward
//!   only.
//! - [`worker`]: the sender that drains the queue.

pub(crate) mod config;
mod inbound;
pub(crate) mod worker;

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use voxbridge_store::{NewMessage, Store, rfc3339};
use voxbridge_twilio::E164;
use voxbridge_twilio::messaging::{ZoneGuess, count_segments};

use crate::{ApiError, AppState};

/// Longest body Twilio accepts (error 21617 beyond).
const MAX_BODY_CHARS: usize = 1600;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Messaging counters and gauges (`voxbridge_api_messages_*`).
#[derive(Debug, Default)]
pub(crate) struct MessagingMetrics {
    pub(crate) sent: Counter,
    pub(crate) failed: Counter,
    pub(crate) retried: Counter,
    pub(crate) held: Counter,
    pub(crate) received: Counter,
    pub(crate) opt_outs: Counter,
    pub(crate) queue_depth: Gauge,
    pub(crate) last_sent_seconds: Gauge,
}

/// The messaging part of the service's state.
#[derive(Debug, Default)]
pub(crate) struct Messaging {
    pub(crate) metrics: MessagingMetrics,
}

impl Messaging {
    /// Registers the messaging metrics in `registry`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        let m = &self.metrics;
        for (name, help, counter) in [
            (
                "voxbridge_api_messages_sent",
                "Messages Twilio accepted",
                &m.sent,
            ),
            (
                "voxbridge_api_messages_failed",
                "Messages failed for good (not retried)",
                &m.failed,
            ),
            (
                "voxbridge_api_messages_retried",
                "Message sends rescheduled after 429/5xx",
                &m.retried,
            ),
            (
                "voxbridge_api_messages_held",
                "Messages held for the recipient's quiet hours at send time",
                &m.held,
            ),
            (
                "voxbridge_api_messages_received",
                "Incoming messages (new MessageSids)",
                &m.received,
            ),
            (
                "voxbridge_api_sms_opt_outs",
                "Opt-out keywords received",
                &m.opt_outs,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "voxbridge_api_messages_queue_depth",
            "Outbound messages not yet accepted by Twilio (refreshed each second by the sender)",
            m.queue_depth.clone(),
        );
        registry.register(
            "voxbridge_api_messages_last_sent_seconds",
            "Unix time Twilio last accepted a message",
            m.last_sent_seconds.clone(),
        );
    }

    /// Reads the queue gauges from the store.
    pub(crate) async fn refresh_gauges(&self, store: &Store, now_ms: i64) {
        match store.message_stats(now_ms).await {
            Ok(stats) => {
                self.metrics.queue_depth.set(stats.queue_depth);
                if let Some(at) = stats.last_sent_at {
                    self.metrics.last_sent_seconds.set(at / 1000);
                }
            }
            Err(error) => tracing::debug!(%error, "messaging: cannot read queue stats"),
        }
    }
}

/// The bearer-protected routes (merged before the bearer layer).
pub(crate) fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/api/messages", post(create))
        .route("/api/messages/stats", get(stats))
        .route("/api/messages/{id}", get(detail))
}

/// The signed Twilio routes.
pub(crate) fn twilio_routes() -> Router<AppState> {
    Router::new()
        .route("/twilio/sms/inbound", post(inbound::inbound))
        .route("/twilio/sms/status", post(inbound::status))
}

/// The number of a `To`/`From` (`+1415...` or `whatsapp:+1415...`).
pub(crate) fn recipient_number(address: &str) -> Option<E164> {
    E164::parse(address.strip_prefix("whatsapp:").unwrap_or(address)).ok()
}

/// Where Twilio posts delivery statuses.
pub(crate) fn status_callback_url(state: &AppState) -> String {
    state.0.config.public("/twilio/sms/status")
}

/// A refusal with Twilio's code: `{"success": false, "error", "code", "moreInfo"}` plus
/// per-field `errors` when given.
fn refused(
    status: StatusCode,
    code: u32,
    error: &str,
    errors: Option<BTreeMap<&'static str, String>>,
) -> Response {
    let mut body = json!({
        "success": false,
        "error": error,
        "code": code,
        "moreInfo": format!("https://www.twilio.com/docs/errors/{code}"),
    });
    if let Some(errors) = errors {
        body["errors"] = json!(errors);
    }
    (status, Json(body)).into_response()
}

/// A validated `POST /api/messages`.
struct MessageRequest {
    to: String,
    number: E164,
    whatsapp: bool,
    /// The text, or empty when a template is sent.
    body: String,
    /// A Content API template (`HX` and 32 hex digits) and its variables as JSON text.
    template: Option<(String, Option<String>)>,
    from: Option<String>,
    send_at: Option<i64>,
}

/// Most variables a template takes (Twilio's limit).
const MAX_CONTENT_VARIABLES: usize = 100;

/// `contentVariables`: an object of at most [`MAX_CONTENT_VARIABLES`] string (or number)
/// values, as the JSON text Twilio takes.
fn content_variables(value: &Value) -> Result<String, String> {
    let Value::Object(map) = value else {
        return Err("must be an object of variables, e.g. {\"1\": \"Ada\"}".to_owned());
    };
    if map.len() > MAX_CONTENT_VARIABLES {
        return Err(format!("at most {MAX_CONTENT_VARIABLES} variables"));
    }
    let mut out = serde_json::Map::new();
    for (name, value) in map {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(format!("variable {name:?} must be a string")),
        };
        out.insert(name.clone(), Value::String(text));
    }
    Ok(Value::Object(out).to_string())
}

/// A request refused before it was queued: the answer to send (boxed: a `Response` is large).
type Refusal = Box<Response>;

#[allow(clippy::too_many_lines)] // every field of the request, checked in turn
fn parse_request(body: &[u8]) -> Result<MessageRequest, Refusal> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        Box::new(ApiError::BadRequest(format!("malformed JSON body: {e}")).into_response())
    })?;
    let Value::Object(object) = value else {
        return Err(Box::new(
            ApiError::BadRequest("the body must be a JSON object".to_owned()).into_response(),
        ));
    };
    let mut errors: BTreeMap<&'static str, String> = BTreeMap::new();
    let text =
        |name: &'static str, errors: &mut BTreeMap<&'static str, String>| match object.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                errors.insert(name, "must be a string".to_owned());
                None
            }
        };
    let to = text("to", &mut errors);
    let (number, whatsapp) = match &to {
        None => {
            errors
                .entry("to")
                .or_insert_with(|| "is required".to_owned());
            (None, false)
        }
        Some(to) => {
            let whatsapp = to.starts_with("whatsapp:");
            let raw = to.strip_prefix("whatsapp:").unwrap_or(to);
            match E164::parse(raw) {
                Ok(number) => (Some(number), whatsapp),
                Err(e) => {
                    errors.insert("to", format!("{e} (E.164, or whatsapp:+<E.164>)"));
                    (None, whatsapp)
                }
            }
        }
    };
    let content_sid = text("contentSid", &mut errors);
    if let Some(sid) = &content_sid
        && !voxbridge_twilio::messaging::is_content_sid(sid)
    {
        errors.insert(
            "contentSid",
            "must be a Content API template SID: HX and 32 hex digits".to_owned(),
        );
    }
    let variables = match object.get("contentVariables") {
        None | Some(Value::Null) => None,
        Some(value) => match content_variables(value) {
            Ok(text) => Some(text),
            Err(message) => {
                errors.insert("contentVariables", message);
                None
            }
        },
    };
    if variables.is_some() && content_sid.is_none() {
        errors
            .entry("contentVariables")
            .or_insert_with(|| "needs a contentSid".to_owned());
    }
    let body = match text("body", &mut errors) {
        Some(_) if content_sid.is_some() => {
            errors.insert(
                "body",
                "send either a body or a template (contentSid), not both".to_owned(),
            );
            None
        }
        None if content_sid.is_some() => Some(String::new()),
        Some(b) if b.trim().is_empty() => {
            errors.insert("body", "must not be empty".to_owned());
            None
        }
        Some(b) if b.chars().count() > MAX_BODY_CHARS => {
            errors.insert(
                "body",
                format!("must be at most {MAX_BODY_CHARS} characters"),
            );
            None
        }
        Some(b) => Some(b),
        None => {
            errors
                .entry("body")
                .or_insert_with(|| "is required".to_owned());
            None
        }
    };
    let from = text("from", &mut errors);
    let send_at = match object.get("sendAt") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_i64().or_else(|| {
            errors.insert(
                "sendAt",
                "must be Unix milliseconds or an RFC 3339 UTC time".to_owned(),
            );
            None
        }),
        Some(Value::String(s)) => crate::calls::parse_time("sendAt", s)
            .map_err(|e| errors.insert("sendAt", e.to_string()))
            .ok(),
        Some(_) => {
            errors.insert(
                "sendAt",
                "must be Unix milliseconds or an RFC 3339 UTC time".to_owned(),
            );
            None
        }
    };
    match (to, number, body) {
        (Some(_), Some(number), Some(body)) if errors.is_empty() => Ok(MessageRequest {
            to: if whatsapp {
                format!("whatsapp:{number}")
            } else {
                number.as_str().to_owned()
            },
            number,
            whatsapp,
            body,
            template: content_sid.map(|sid| (sid, variables)),
            from,
            send_at,
        }),
        _ => {
            let summary = errors
                .iter()
                .map(|(field, message)| format!("{field}: {message}"))
                .collect::<Vec<_>>()
                .join("; ");
            // Twilio's code for what is wrong: an invalid `To`, template or body.
            let code = if errors.contains_key("to") {
                21211
            } else if errors.contains_key("contentSid") {
                21655
            } else if errors.contains_key("contentVariables") {
                if content_sid.is_none() { 21654 } else { 21656 }
            } else {
                21602
            };
            Err(Box::new(refused(
                StatusCode::BAD_REQUEST,
                code,
                &format!("invalid request: {summary}"),
                Some(errors),
            )))
        }
    }
}

/// The sender for `request`: the one it names (when configured), else the channel's default.
fn sender_for(state: &AppState, request: &MessageRequest) -> Result<String, Refusal> {
    let config = &state.0.config;
    let messaging = &config.messaging;
    let known: Vec<&String> = [
        &messaging.from,
        &messaging.messaging_service_sid,
        &messaging.whatsapp_from,
        &config.twilio.from_number,
    ]
    .into_iter()
    .chain(&messaging.senders)
    .filter(|s| !s.is_empty())
    .collect();
    let bad = |message: String| {
        let errors = BTreeMap::from([("from", message.clone())]);
        Err(Box::new(refused(
            StatusCode::BAD_REQUEST,
            21603,
            &format!("invalid request: from: {message}"),
            Some(errors),
        )))
    };
    if let Some(from) = &request.from {
        if !known.contains(&from) {
            return bad(format!(
                "{from:?} is not a configured sender (api.messaging.senders)"
            ));
        }
        if from.starts_with("whatsapp:") != request.whatsapp {
            return bad(
                "a whatsapp: recipient needs a whatsapp: sender and an SMS one an SMS sender"
                    .to_owned(),
            );
        }
        return Ok(from.clone());
    }
    let default = if request.whatsapp {
        [&messaging.whatsapp_from]
            .into_iter()
            .find(|s| !s.is_empty())
            .cloned()
    } else {
        default_sms_sender(state)
    };
    match default {
        Some(sender) => Ok(sender),
        None if request.whatsapp => {
            bad("set api.messaging.whatsapp_from to send WhatsApp messages".to_owned())
        }
        None => bad(
            "set api.messaging.from (or twilio.from_number, or messaging.messaging_service_sid)"
                .to_owned(),
        ),
    }
}

/// The SMS sender used when none is asked for: `messaging.from`, else the Messaging Service,
/// else `twilio.from_number`.
pub(crate) fn default_sms_sender(state: &AppState) -> Option<String> {
    let config = &state.0.config;
    [
        &config.messaging.from,
        &config.messaging.messaging_service_sid,
        &config.twilio.from_number,
    ]
    .into_iter()
    .find(|s| !s.is_empty())
    .cloned()
}

/// When a message asked for at `requested` may reach a recipient in `guess`'s zones: the
/// quiet hours' next opening if they are closed then (with the reason `quiet_hours`), else
/// `requested` (held as `scheduled` when it is later than `now_ms`).
pub(crate) fn send_time(
    state: &AppState,
    guess: &ZoneGuess,
    requested: i64,
    now_ms: i64,
) -> (i64, Option<String>) {
    let mut hold_reason = (requested > now_ms).then(|| "scheduled".to_owned());
    let mut send_at = requested;
    if let Some(window) = state.0.config.messaging.quiet_hours.window() {
        // Windows that never overlap (an unknown +1 number with a very short window) fall
        // back to the first zone's window.
        let open = window
            .next_open(guess, requested)
            .or_else(|| window.next_open(&guess.first_only(), requested));
        if let Some(open) = open.filter(|&open| open > requested) {
            send_at = open;
            hold_reason = Some("quiet_hours".to_owned());
        }
    }
    (send_at, hold_reason)
}

/// `POST /api/messages`.
#[utoipa::path(
    post,
    path = "/api/messages",
    tag = "messages",
    request_body = crate::openapi::MessageRequest,
    responses(
        (status = 202, description = "Queued: it goes out at `sendAt` (quiet hours and `sendAt` may hold it).", body = crate::openapi::MessageQueued),
        (status = 400, description = "Refused with Twilio's code: 21610 opted out, 21211 invalid `To`, 21602 invalid body, 21603 invalid sender, 21654/21655/21656 invalid template, 63016 outside the WhatsApp window; or a malformed body.", body = crate::openapi::MessageRefusal),
        crate::openapi::CommonErrors,
    ),
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request = match parse_request(&body) {
        Ok(request) => request,
        Err(response) => return Ok(*response),
    };
    if state.0.twilio.is_none() {
        return Err(ApiError::Unavailable(
            "messaging needs a Twilio account: set api.twilio.account_sid".to_owned(),
        ));
    }
    let sender = match sender_for(&state, &request) {
        Ok(sender) => sender,
        Err(response) => return Ok(*response),
    };
    let store = &state.0.store;
    let now = state.now_ms();
    if store.sms_consent(request.number.as_str()).await?.as_deref() == Some("opted_out") {
        tracing::info!(to = %request.number.masked(), "message refused: recipient opted out");
        return Ok(refused(
            StatusCode::BAD_REQUEST,
            21610,
            "the recipient opted out (replied STOP); they must reply START before they can be messaged again",
            None,
        ));
    }
    let channel = if request.whatsapp { "whatsapp" } else { "sms" };
    if request.whatsapp && request.template.is_none() {
        let last = store.last_inbound_at(&request.to, "whatsapp").await?;
        if last.is_none_or(|at| now - at > DAY_MS) {
            return Ok(refused(
                StatusCode::BAD_REQUEST,
                63016,
                "outside the WhatsApp 24-hour session window (no message from the recipient in the last 24 hours): send an approved template instead (contentSid, contentVariables)",
                None,
            ));
        }
    }
    // A template's text is Twilio's to render: its segments are not known here.
    let segments = request
        .template
        .is_none()
        .then(|| count_segments(&request.body));
    let guess = ZoneGuess::for_number(&request.number);
    let requested = request.send_at.unwrap_or(now).max(now);
    let (send_at, hold_reason) = send_time(&state, &guess, requested, now);
    let id = store
        .insert_message(
            &NewMessage {
                channel: channel.to_owned(),
                to: request.to.clone(),
                from: sender.clone(),
                body: request.body,
                encoding: segments.map(|s| s.encoding.as_str().to_owned()),
                segments: segments.map(|s| s.segments as i64),
                content_sid: request.template.as_ref().map(|(sid, _)| sid.clone()),
                content_variables: request.template.as_ref().and_then(|(_, v)| v.clone()),
                send_at,
                hold_reason: hold_reason.clone(),
                zone: guess.name(),
            },
            now,
        )
        .await?;
    tracing::info!(id, to = %request.number.masked(), segments = segments.map(|s| s.segments), template = request.template.is_some(), hold = ?hold_reason, "message queued");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "success": true,
            "id": id,
            "status": "scheduled",
            "to": request.to,
            "from": sender,
            "channel": channel,
            "segments": segments.map(|s| s.segments),
            "encoding": segments.map(|s| s.encoding),
            "contentSid": request.template.as_ref().map(|(sid, _)| sid),
            "sendAt": rfc3339(send_at),
            "holdReason": hold_reason,
            "zone": guess.name(),
            "zoneKnown": guess.known,
        })),
    )
        .into_response())
}

/// `GET /api/messages/{id}`.
#[utoipa::path(
    get,
    path = "/api/messages/{id}",
    tag = "messages",
    params(("id" = i64, Path, description = "The message id.")),
    responses(
        (status = 200, description = "The message and its delivery state.", body = crate::openapi::MessageEnvelope),
        (status = 400, description = "The id is not a number.", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such message.", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors,
    ),
)]
pub(crate) async fn detail(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("message id must be a number, got {id:?}")))?;
    let message = state
        .0
        .store
        .message(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no message {id}")))?;
    Ok(Json(json!({"success": true, "message": message})).into_response())
}

/// `GET /api/messages/stats`: queue depth, last send, 24-hour counts.
#[utoipa::path(
    get,
    path = "/api/messages/stats",
    tag = "messages",
    responses(
        (status = 200, description = "Queue depth, last send and 24-hour counts.", body = crate::openapi::MessageStatsEnvelope),
        crate::openapi::CommonErrors,
    ),
)]
pub(crate) async fn stats(State(state): State<AppState>) -> Result<Response, ApiError> {
    let now = state.now_ms();
    let counts = state.0.store.message_stats(now).await?;
    Ok(Json(json!({"success": true, "stats": counts})).into_response())
}
