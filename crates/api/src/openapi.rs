//! The OpenAPI 3.1 document of `/api/*`, served at `GET /api/openapi.json` (no token needed:
//! it describes, it does not disclose). Generated from the code with utoipa: the operations
//! from the `#[utoipa::path]` attributes on the handlers, the record schemas from the store's
//! types (`#[derive(ToSchema)]` beside their `Serialize`), the envelopes the handlers build from
//! the types below. `tests/openapi.rs` checks real answers against it, every object closed, so
//! a field the code adds or renames without the document fails there.

use std::collections::BTreeMap;

use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use voxbridge_store::{
    CallDetail, CallEvent, CallRecord, CampaignProgress, CampaignRecord, MessageRecord,
    MessageStats, ScreeningAttempt, ScreeningRecord, TranscriptLine, WebhookDelivery,
};

/// The filters and page `GET /api/screenings` and `GET /api/calls` take (parsed by
/// `crate::calls::ListQuery`; this type only describes them).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // a description of the query string, never built
pub struct ListFilters {
    /// Only screenings in this state (for calls: whose screening is): `scheduled`,
    /// `requested`, `calling`, `in_progress`, `completed`, `failed`, `no_answer`, `voicemail`,
    /// `canceled`.
    state: Option<String>,
    /// Only this outcome: `qualified`, `not_qualified`, `incomplete`, `callback_requested`,
    /// `handoff`, `voicemail`, `no_answer`, `failed`.
    outcome: Option<String>,
    /// Only this candidate.
    #[param(rename = "candidateId")]
    candidate_id: Option<String>,
    /// Created at or after: an RFC 3339 UTC time, a date (YYYY-MM-DD) or Unix milliseconds.
    from: Option<String>,
    /// Created before (as `from`).
    to: Option<String>,
    /// Page size, 1 to 200 (default 50).
    limit: Option<i64>,
    /// Rows to skip (default 0).
    offset: Option<i64>,
}

/// `POST /api/screenings`' body.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScreeningRequest {
    /// Your candidate id (1 to 120 characters).
    pub candidate_id: String,
    /// The candidate's first name, said by the agent.
    pub first_name: String,
    /// The number to call, E.164 (`+14155550123`; spaces and dashes are removed).
    pub phone: String,
    /// The job the screening is for.
    pub job_title: String,
    /// The screening script (one of `api.screenings`; the first when left out).
    pub screening: Option<String>,
    /// Where the result goes when the screening ends (http or https); default
    /// `api.webhooks.url`.
    pub callback_url: Option<String>,
    /// Any JSON object (at most 4 KB), echoed in the screening and its result webhook.
    pub metadata: Option<BTreeMap<String, Value>>,
}

/// `201 Created` (also the replay of a used `Idempotency-Key`, then with
/// `Idempotent-Replayed: true`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScreeningCreated {
    /// Always true.
    pub success: bool,
    /// The screening id (`Location: /api/screenings/{id}`).
    pub id: i64,
    /// The call Twilio created; null while the screening is `scheduled`.
    pub call_sid: Option<String>,
    /// A sentence for people.
    pub message: String,
    /// The screening.
    pub screening: ScreeningRecord,
}

/// One screening.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScreeningEnvelope {
    /// Always true.
    pub success: bool,
    /// The screening.
    pub screening: ScreeningRecord,
}

/// One screening with its earlier attempts (`GET /api/screenings/{id}`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ScreeningDetail {
    /// Always true.
    pub success: bool,
    /// The screening: the attempt under way, or the last one made.
    pub screening: ScreeningRecord,
    /// The attempts before it that were missed and retried, first first.
    pub attempts: Vec<ScreeningAttempt>,
}

/// A page of screenings.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScreeningPage {
    /// Always true.
    pub success: bool,
    /// Matching screenings in all pages.
    pub total: i64,
    /// Page size.
    pub limit: i64,
    /// Rows skipped.
    pub offset: i64,
    /// This page, newest first.
    pub screenings: Vec<ScreeningRecord>,
}

/// A page of calls.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallPage {
    /// Always true.
    pub success: bool,
    /// Matching calls in all pages.
    pub total: i64,
    /// Page size.
    pub limit: i64,
    /// Rows skipped.
    pub offset: i64,
    /// This page, newest first.
    pub calls: Vec<CallRecord>,
}

/// One call with everything known about it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallEnvelope {
    /// Always true.
    pub success: bool,
    /// The call.
    pub call: CallDetail,
}

/// What the rate limiter knows about a number.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitStats {
    /// Always true.
    pub success: bool,
    /// The number, E.164.
    pub number: String,
    /// Calls allowed per window.
    pub max_calls: i64,
    /// The window in seconds.
    pub window_secs: i64,
    /// Never limited.
    pub allowlisted: bool,
    /// The calls counted in the current window.
    #[schema(format = DateTime)]
    pub recent: Vec<String>,
    /// How many.
    pub recent_count: i64,
    /// The last allowed call.
    #[schema(format = DateTime)]
    pub last_allowed: Option<String>,
    /// Calls allowed, ever.
    pub total_allowed: i64,
    /// Calls blocked, ever.
    pub total_blocked: i64,
}

/// A page of result webhook deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    /// Always true.
    pub success: bool,
    /// Matching deliveries in all pages.
    pub total: i64,
    /// Page size.
    pub limit: i64,
    /// Rows skipped.
    pub offset: i64,
    /// This page, newest first.
    pub deliveries: Vec<WebhookDelivery>,
}

/// One result webhook delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryEnvelope {
    /// Always true.
    pub success: bool,
    /// The delivery.
    pub delivery: WebhookDelivery,
}

/// `POST /api/messages`' body: `body` or a WhatsApp template (`contentSid`), not both.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageRequest {
    /// The recipient: E.164 (`+14155550123`) for SMS, `whatsapp:+14155550123` for WhatsApp.
    pub to: String,
    /// The text (at most 1,600 characters).
    pub body: Option<String>,
    /// A WhatsApp template approved in Twilio's Content API (`HX` and 32 hex digits); the only
    /// way to reach a WhatsApp user outside the 24-hour session window.
    pub content_sid: Option<String>,
    /// The template's variables, e.g. `{"1": "Ada"}`.
    pub content_variables: Option<BTreeMap<String, String>>,
    /// One of the configured senders (`api.messaging.senders`); the channel's default else.
    pub from: Option<String>,
    /// Not before this time (RFC 3339 UTC or Unix milliseconds); quiet hours may hold it later.
    pub send_at: Option<String>,
}

/// `202 Accepted`: queued.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageQueued {
    /// Always true.
    pub success: bool,
    /// The message id (`GET /api/messages/{id}`).
    pub id: i64,
    /// Always `scheduled`.
    pub status: String,
    /// The recipient as it is sent to.
    pub to: String,
    /// The sender.
    pub from: String,
    /// `sms` or `whatsapp`.
    pub channel: String,
    /// SMS segments the body takes (billing units); null for a template (Twilio renders it).
    pub segments: Option<i64>,
    /// `GSM-7` or `UCS-2`; null for a template.
    pub encoding: Option<String>,
    /// The WhatsApp template, when one is sent.
    pub content_sid: Option<String>,
    /// When it will go out.
    #[schema(format = DateTime)]
    pub send_at: String,
    /// Why it waits: `scheduled` (`sendAt`) or `quiet_hours`; null when it goes out now.
    pub hold_reason: Option<String>,
    /// The recipient's time zone as guessed from the number.
    pub zone: String,
    /// False when the number's zone is a guess among several.
    pub zone_known: bool,
}

/// One message.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageEnvelope {
    /// Always true.
    pub success: bool,
    /// The message.
    pub message: MessageRecord,
}

/// Queue depth, last send and 24-hour counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageStatsEnvelope {
    /// Always true.
    pub success: bool,
    /// The figures.
    pub stats: MessageStats,
}

/// A message refused with Twilio's error code (21610 opted out, 21211 invalid `To`, 21602 bad
/// body, 21603 bad sender, 63016 outside the WhatsApp window).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageRefusal {
    /// Always false.
    pub success: bool,
    /// What went wrong and what to do.
    pub error: String,
    /// Twilio's error code (absent when the body is not a JSON object at all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u32>,
    /// Twilio's page about the code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub more_info: Option<String>,
    /// A message per invalid field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<BTreeMap<String, String>>,
}

/// `POST /api/campaigns`' JSON body (or send `text/csv` with the settings in the query).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignRequest {
    /// A name for people (e.g. the requisition).
    pub name: String,
    /// The screening script (one of `api.screenings`; the first when left out).
    pub screening: Option<String>,
    /// The job, for candidates without their own `jobTitle`.
    pub job_title: Option<String>,
    /// Where each screening's result goes; default `api.webhooks.url`.
    pub callback_url: Option<String>,
    /// Any JSON object, echoed in every screening and its result webhook.
    pub metadata: Option<BTreeMap<String, Value>>,
    /// The candidates, 1 to 5,000.
    pub candidates: Vec<CampaignCandidate>,
}

/// One candidate of a campaign (checked as `POST /api/screenings` checks its fields).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignCandidate {
    /// Your candidate id.
    pub candidate_id: String,
    /// First name.
    pub first_name: String,
    /// E.164 number.
    pub phone: String,
    /// The job (else the campaign's `jobTitle`).
    pub job_title: Option<String>,
}

/// The settings of a `text/csv` upload (a JSON body carries them itself).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // a description of the query string, never built
pub struct CampaignCsvParams {
    /// The campaign's name (required with `text/csv`).
    name: Option<String>,
    /// The screening script.
    screening: Option<String>,
    /// The job, for rows without a `jobTitle` column.
    #[param(rename = "jobTitle")]
    job_title: Option<String>,
    /// Where each result goes.
    #[param(rename = "callbackUrl")]
    callback_url: Option<String>,
}

/// A page's size and start.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // a description of the query string, never built
pub struct PageParams {
    /// Page size, 1 to 200 (default 50).
    limit: Option<i64>,
    /// Rows to skip (default 0).
    offset: Option<i64>,
}

/// `201 Created`: the campaign (`Location: /api/campaigns/{id}`).
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignCreated {
    /// Always true.
    pub success: bool,
    /// The campaign and its progress.
    pub campaign: CampaignRecord,
    /// Candidates left out, with why.
    pub skipped: Vec<SkippedCandidate>,
}

/// A candidate a campaign left out.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkippedCandidate {
    /// Your candidate id.
    pub candidate_id: String,
    /// `under_way` (a screening of this script is already under way: a launch sent twice),
    /// `opted_out` (the number replied STOP), or `daily_limit`
    /// (`api.max_calls_per_candidate_per_day`).
    pub reason: String,
}

/// One campaign.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignEnvelope {
    /// Always true.
    pub success: bool,
    /// The campaign and its progress.
    pub campaign: CampaignRecord,
}

/// A page of campaigns.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignPage {
    /// Always true.
    pub success: bool,
    /// Campaigns in all pages.
    pub total: i64,
    /// Page size.
    pub limit: i64,
    /// Rows skipped.
    pub offset: i64,
    /// This page, newest first.
    pub campaigns: Vec<CampaignRecord>,
}

/// A campaign refused as a whole (nothing was launched).
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignRefusal {
    /// Always false.
    pub success: bool,
    /// What went wrong.
    pub error: String,
    /// A message per invalid setting (`name`, `screening`, `candidates`, ...).
    pub errors: BTreeMap<String, String>,
    /// Each candidate with errors.
    pub rows: Vec<CampaignRowErrors>,
}

/// A candidate's errors.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignRowErrors {
    /// For CSV, the line of the file (the header is line 1); for JSON, the candidate's 1-based
    /// position in `candidates`.
    pub row: usize,
    /// A message per invalid field.
    pub errors: BTreeMap<String, String>,
}

/// Every other error: a message, and per field for a request that failed validation.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Always false.
    pub success: bool,
    /// What went wrong and what to do.
    pub error: String,
    /// A message per invalid field (400 on `POST /api/screenings`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<BTreeMap<String, String>>,
    /// Twilio's error as Twilio gave it, when Twilio refused the call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub twilio_error: Option<BTreeMap<String, Value>>,
}

/// The errors every operation can answer (listed with each operation's own).
#[derive(Debug, utoipa::IntoResponses)]
#[allow(dead_code)] // a description of answers the handlers build from `ApiError`
pub enum CommonErrors {
    /// No or a wrong bearer token.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The store is unavailable, or the service is not configured for this.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The bearer scheme every operation uses.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "voxbridge API",
        description = "Screening calls, their records, messages to candidates, and the result \
            webhooks to your ATS. Every operation needs `Authorization: Bearer <api.api_token>`. \
            Times are RFC 3339 in UTC; keys are camelCase; errors are \
            `{\"success\": false, \"error\": \"...\"}`."
    ),
    paths(
        crate::screenings::create,
        crate::screenings::list,
        crate::screenings::detail,
        crate::screenings::cancel,
        crate::calls::list,
        crate::calls::detail,
        crate::calls::rate_limit_stats,
        crate::ats::routes::list,
        crate::ats::routes::detail,
        crate::ats::routes::redeliver,
        crate::messages::create,
        crate::messages::detail,
        crate::messages::stats,
        crate::campaigns::create,
        crate::campaigns::list,
        crate::campaigns::detail,
    ),
    components(schemas(
        ScreeningRequest, ScreeningCreated, ScreeningEnvelope, ScreeningDetail, ScreeningPage,
        ScreeningAttempt, CallPage,
        CallEnvelope, RateLimitStats, DeliveryPage, DeliveryEnvelope, MessageRequest,
        MessageQueued, MessageEnvelope, MessageStatsEnvelope, MessageRefusal, ErrorBody,
        ScreeningRecord, CallRecord, CallDetail, CallEvent, TranscriptLine, WebhookDelivery,
        MessageRecord, MessageStats, CampaignRequest, CampaignCandidate, CampaignCreated,
        CampaignEnvelope, CampaignPage, CampaignRefusal, CampaignRowErrors, CampaignRecord,
        SkippedCandidate,
        CampaignProgress
    )),
    modifiers(&BearerToken),
    security(("bearer" = [])),
    tags(
        (name = "screenings", description = "Screening calls: request one, follow it."),
        (name = "calls", description = "Every call the service knows, with its timeline."),
        (name = "webhooks", description = "Results pushed to your ATS."),
        (name = "messages", description = "SMS and WhatsApp to candidates."),
        (name = "campaigns", description = "Many screenings launched at once, and their progress."),
    ),
)]
pub struct ApiDoc;

/// The document as JSON (what `GET /api/openapi.json` serves).
pub fn document() -> Value {
    serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serialises")
}

/// `GET /api/openapi.json`.
pub(crate) async fn serve() -> Json<Value> {
    Json(document())
}
