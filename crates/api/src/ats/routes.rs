//! The outbox over HTTP (bearer token, like the rest of `/api`):
//! `GET /api/webhook-deliveries?state=&screeningId=&limit=&offset=`,
//! `GET /api/webhook-deliveries/{id}`, `POST /api/webhook-deliveries/{id}/redeliver`.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use voxbridge_store::WEBHOOK_DELIVERY_STATES;

use crate::calls::Params;
use crate::{ApiError, AppState};

/// The routes, for the bearer-guarded `/api` router.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/webhook-deliveries", get(list))
        .route("/api/webhook-deliveries/{id}", get(detail))
        .route("/api/webhook-deliveries/{id}/redeliver", post(redeliver))
}

fn delivery_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "delivery id must be a positive integer, got {text:?}"
            ))
        })
}

/// `GET /api/webhook-deliveries`: newest first; `state` one of `pending`, `delivered`, `dead`.
#[utoipa::path(
    get,
    path = "/api/webhook-deliveries",
    tag = "webhooks",
    params(
        ("state" = Option<String>, Query, description = "pending, delivered or dead."),
        ("screeningId" = Option<i64>, Query, description = "Only this screening's."),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 200 (default 50)."),
        ("offset" = Option<i64>, Query, description = "Rows to skip (default 0)."),
    ),
    responses(
        (status = 200, description = "A page of deliveries, newest first.", body = crate::openapi::DeliveryPage),
        (status = 400, description = "An unknown parameter or filter value.", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors,
    ),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(raw.as_deref(), &["state", "screeningId", "limit", "offset"])?;
    let wanted = params.one_of("state", &WEBHOOK_DELIVERY_STATES)?;
    let screening = params
        .text("screeningId")
        .map(|id| {
            id.parse::<i64>().map_err(|_| {
                ApiError::BadRequest(format!("screeningId must be an integer, got {id:?}"))
            })
        })
        .transpose()?;
    let (limit, offset) = params.page()?;
    let (deliveries, total) = state
        .0
        .store
        .list_webhook_deliveries(wanted.as_deref(), screening, limit, offset)
        .await?;
    Ok(Json(json!({
        "success": true,
        "deliveries": deliveries,
        "total": total,
        "limit": limit,
        "offset": offset,
    })))
}

/// `GET /api/webhook-deliveries/{id}`.
#[utoipa::path(
    get,
    path = "/api/webhook-deliveries/{id}",
    tag = "webhooks",
    params(("id" = i64, Path, description = "The delivery id (the `Voxbridge-Delivery-Id` header).")),
    responses(
        (status = 200, description = "The delivery, with the body sent.", body = crate::openapi::DeliveryEnvelope),
        (status = 400, description = "The id is not a positive integer.", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such delivery.", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors,
    ),
)]
pub(crate) async fn detail(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = delivery_id(&id)?;
    let delivery = state
        .0
        .store
        .webhook_delivery(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no webhook delivery {id}")))?;
    Ok(Json(json!({"success": true, "delivery": delivery})))
}

/// `POST /api/webhook-deliveries/{id}/redeliver`: a dead or delivered delivery goes back in
/// the queue (same delivery id and body, attempts from zero); 202 with the delivery. 409 while
/// it is still pending.
#[utoipa::path(
    post,
    path = "/api/webhook-deliveries/{id}/redeliver",
    tag = "webhooks",
    params(("id" = i64, Path, description = "The delivery id.")),
    responses(
        (status = 202, description = "Queued again: same id and body, attempts from zero.", body = crate::openapi::DeliveryEnvelope),
        (status = 400, description = "The id is not a positive integer.", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such delivery.", body = crate::openapi::ErrorBody),
        (status = 409, description = "Still pending: it is retried on its own.", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors,
    ),
)]
pub(crate) async fn redeliver(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = delivery_id(&id)?;
    let (requeued, delivery) = state
        .0
        .store
        .redeliver_webhook(id, state.now_ms())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no webhook delivery {id}")))?;
    if !requeued {
        return Err(ApiError::Conflict(format!(
            "webhook delivery {id} is still pending (attempt {} of {}); it is retried on its own",
            delivery.attempts, state.0.config.webhooks.max_attempts
        )));
    }
    tracing::info!(delivery = id, "result webhook queued for redelivery");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"success": true, "delivery": delivery})),
    ))
}
