//! DRAFT, not yet declared in lib.rs (needs the `utoipa` dependency, `#[derive(ToSchema)]` on the
//! store's records and `#[utoipa::path]` on the handlers; written while the machine was gated).
//!
//! The OpenAPI 3.1 document of `/api/*`, served at `GET /api/openapi.json`. Generated from the
//! code with utoipa: the operations from the `#[utoipa::path]` attributes on the handlers, the
//! record schemas from the store's types (`#[derive(ToSchema)]` beside their `Serialize`), the
//! envelopes the handlers build from the types below. `tests/openapi.rs` checks real answers
//! against it.

use std::collections::BTreeMap;

use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use voxbridge_store::{
    CallDetail, CallEvent, CallRecord, ScreeningRecord, TranscriptLine, WebhookDelivery,
};

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

/// `201 Created` (also the replay of a used `Idempotency-Key`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScreeningCreated {
    /// Always true.
    pub success: bool,
    /// The screening id (`Location: /api/screenings/{id}`).
    pub id: i64,
    /// The call Twilio created.
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
    pub recent: Vec<String>,
    /// How many.
    pub recent_count: i64,
    /// The last allowed call.
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

/// Every error: a message, and per field for a request that failed validation.
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
    /// Twilio's error, when Twilio refused the call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub twilio_error: Option<BTreeMap<String, Value>>,
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
#[derive(OpenApi)]
#[openapi(
    info(
        title = "voxbridge API",
        description = "Screening calls, their records, and the result webhooks to your ATS. \
            Every operation needs `Authorization: Bearer <api.api_token>`."
    ),
    paths(
        crate::screenings::create,
        crate::screenings::list,
        crate::screenings::detail,
        crate::calls::list,
        crate::calls::detail,
        crate::calls::rate_limit_stats,
        crate::ats::routes::list,
        crate::ats::routes::detail,
        crate::ats::routes::redeliver,
    ),
    components(schemas(
        ScreeningRequest, ScreeningCreated, ScreeningEnvelope, ScreeningPage, CallPage,
        CallEnvelope, RateLimitStats, DeliveryPage, DeliveryEnvelope, ErrorBody, ScreeningRecord,
        CallRecord, CallDetail, CallEvent, TranscriptLine, WebhookDelivery
    )),
    modifiers(&BearerToken),
    security(("bearer" = [])),
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
