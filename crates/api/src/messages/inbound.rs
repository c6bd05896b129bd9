//! `POST /twilio/sms/inbound` and `POST /twilio/sms/status`, both signature-checked
//! (the [`TwilioForm`] extractor answers 403 before these run).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use voxbridge_twilio::messaging::{describe_error, reply_twiml};
use voxbridge_twilio::webhook::{IncomingSms, SmsKeyword};

use crate::messages::recipient_number;
use crate::webhooks::TwilioForm;
use crate::{ApiError, AppState};

fn twiml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

/// An incoming SMS or WhatsApp message: logged once per `MessageSid`; an opt-out or opt-in
/// keyword (the whole trimmed message, any case) records consent with its time, keyword and
/// channel; HELP/INFO answers the configured help text. Answered with messaging TwiML.
pub(crate) async fn inbound(
    State(state): State<AppState>,
    TwilioForm(params): TwilioForm,
) -> Result<Response, ApiError> {
    let sms = IncomingSms::from_params(params)?;
    let from = sms.from.to_string();
    let channel = if from.starts_with("whatsapp:") {
        "whatsapp"
    } else {
        "sms"
    };
    let now = state.now_ms();
    let store = &state.0.store;
    let new = store
        .record_inbound_message(
            sms.message_sid.as_str(),
            channel,
            &from,
            &sms.to.to_string(),
            &sms.body,
            now,
        )
        .await?;
    if new {
        state.0.messaging.metrics.received.inc();
    }
    let config = &state.0.config.messaging;
    let number = recipient_number(&from);
    let keyword = sms.body.trim().to_ascii_uppercase();
    let reply = match (sms.keyword, &number) {
        (Some(SmsKeyword::OptOut), Some(number)) => {
            if new {
                store
                    .record_consent(
                        number.as_str(),
                        "opted_out",
                        Some(keyword.as_str()),
                        Some(channel),
                        now,
                    )
                    .await?;
                state.0.messaging.metrics.opt_outs.inc();
            }
            tracing::info!(from = %number.masked(), %keyword, channel, "opt-out recorded");
            // STOP ends outreach: no more calls are placed for this number's screenings.
            let canceled = store.end_outreach(number.as_str(), now).await?;
            if !canceled.is_empty() {
                tracing::info!(from = %number.masked(), screenings = ?canceled, "opt-out: scheduled screening calls canceled");
            }
            Some(config.opt_out_reply.clone())
        }
        (Some(SmsKeyword::OptIn), Some(number)) => {
            if new {
                store
                    .record_consent(
                        number.as_str(),
                        "opted_in",
                        Some(keyword.as_str()),
                        Some(channel),
                        now,
                    )
                    .await?;
            }
            tracing::info!(from = %number.masked(), %keyword, channel, "opt-in recorded");
            Some(config.opt_in_reply.clone())
        }
        (Some(SmsKeyword::Help), _) => Some(config.help_text.clone()),
        // A reply to the follow-up after a missed screening call moves the next call (a
        // retried delivery moves it again to the same time).
        (None, Some(number)) if channel == "sms" => {
            let answer = crate::outreach::follow_up::answer(&state, number, &sms.body).await?;
            if answer.is_none() {
                tracing::info!(from = %sms.from.masked(), channel, "incoming message stored");
            }
            answer
        }
        _ => {
            tracing::info!(from = %sms.from.masked(), channel, "incoming message stored");
            None
        }
    };
    // The answer goes back in the TwiML; it is kept in the thread beside their message (once,
    // for the first delivery of it).
    if let Some(text) = reply.as_deref().filter(|t| new && !t.is_empty()) {
        store
            .record_twiml_reply(channel, &from, &sms.to.to_string(), text, now)
            .await?;
    }
    Ok(twiml(reply_twiml(reply.as_deref())))
}

/// A delivery status: moves the message forward only (a repeated or late callback changes
/// nothing), keeping `ErrorCode` with its meaning. Answered 204 once committed.
pub(crate) async fn status(
    State(state): State<AppState>,
    TwilioForm(params): TwilioForm,
) -> Result<Response, ApiError> {
    let sid = params
        .get("MessageSid")
        .or_else(|| params.get("SmsSid"))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::BadRequest("missing required parameter MessageSid".to_owned()))?
        .to_owned();
    let status = params
        .get("MessageStatus")
        .or_else(|| params.get("SmsStatus"))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::BadRequest("missing required parameter MessageStatus".to_owned()))?
        .to_owned();
    if voxbridge_store::message_status_rank(&status) < 0 {
        return Err(ApiError::BadRequest(format!(
            "unknown MessageStatus {status:?}"
        )));
    }
    let code = params
        .get("ErrorCode")
        .filter(|s| !s.is_empty())
        .map(|c| {
            c.parse::<u32>()
                .map_err(|_| ApiError::BadRequest(format!("invalid ErrorCode {c:?}")))
        })
        .transpose()?;
    let meaning = code
        .map(|c| describe_error(c).map_or_else(|| format!("Twilio error {c}"), |d| d.0.to_owned()));
    let error = code.zip(meaning.as_deref()).map(|(c, m)| (i64::from(c), m));
    let changed = state
        .0
        .store
        .message_status(&sid, &status, error, state.now_ms())
        .await?;
    tracing::debug!(message_sid = %sid, %status, ?code, changed, "message status");
    if matches!(status.as_str(), "failed" | "undelivered") && changed {
        state.0.messaging.metrics.failed.inc();
    }
    state.0.metrics.webhooks_accepted.inc();
    Ok(StatusCode::NO_CONTENT.into_response())
}
