//! [`ApiError`]: every failure a handler can return, with its HTTP status and a JSON body of
//! the shape `{"success": false, "error": "..."}` (plus `errors` per field for validation, and
//! `twilioError` when Twilio refused a call).

use std::collections::BTreeMap;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use voxbridge_store::StoreError;
use voxbridge_twilio::SignatureError;
use voxbridge_twilio::rest::{RestError, TwilioApiError};
use voxbridge_twilio::webhook::WebhookError;

/// A request that could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed input.
    #[error("{0}")]
    BadRequest(String),
    /// Fields that failed validation, each with its message.
    #[error("invalid request")]
    Validation(BTreeMap<&'static str, String>),
    /// Missing or wrong bearer token.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// `X-Twilio-Signature` failed.
    #[error("{0}")]
    Forbidden(#[from] SignatureError),
    /// No such resource.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with one already made (an `Idempotency-Key` whose first request
    /// is still being served, or failed).
    #[error("{0}")]
    Conflict(String),
    /// Well-formed but refused (an `Idempotency-Key` reused with a different body).
    #[error("{0}")]
    Unprocessable(String),
    /// A limit was reached.
    #[error("{0}")]
    TooManyRequests(String),
    /// Twilio refused the request.
    #[error("Twilio error: {}", .0.message)]
    Twilio(TwilioApiError),
    /// Twilio could not be reached.
    #[error("cannot reach Twilio: {0}")]
    TwilioUnreachable(String),
    /// The service is not configured for this, or a dependency is down.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure; the detail is logged, not sent.
    #[error("internal error")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "store failure");
        Self::Unavailable("the store is unavailable; try again".to_owned())
    }
}

impl From<WebhookError> for ApiError {
    fn from(error: WebhookError) -> Self {
        Self::BadRequest(format!("invalid webhook: {error}"))
    }
}

impl From<RestError> for ApiError {
    fn from(error: RestError) -> Self {
        match error {
            RestError::Api(api) => Self::Twilio(api),
            RestError::Transport(e) => Self::TwilioUnreachable(e.to_string()),
            RestError::Decode { status, message } => {
                Self::TwilioUnreachable(format!("unexpected answer ({status}): {message}"))
            }
        }
    }
}

impl ApiError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::Validation(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            // Twilio's 4xx about the request (bad number, ...) are the caller's; auth and
            // server errors on Twilio's side are ours.
            Self::Twilio(e) => match e.status {
                400 | 404 | 422 => StatusCode::BAD_REQUEST,
                429 => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::BAD_GATEWAY,
            },
            Self::TwilioUnreachable(_) => StatusCode::BAD_GATEWAY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            Self::Validation(errors) => {
                let first = errors
                    .iter()
                    .map(|(field, message)| format!("{field}: {message}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                json!({"success": false, "error": format!("invalid request: {first}"), "errors": errors})
            }
            Self::Twilio(e) => {
                json!({"success": false, "error": e.message, "twilioError": e})
            }
            Self::Internal(detail) => {
                tracing::error!(detail, "internal error");
                json!({"success": false, "error": self.to_string()})
            }
            Self::Forbidden(reason) => {
                tracing::warn!(%reason, "webhook rejected");
                json!({"success": false, "error": format!("invalid Twilio signature: {reason}")})
            }
            _ => json!({"success": false, "error": self.to_string()}),
        };
        (status, Json(body)).into_response()
    }
}
