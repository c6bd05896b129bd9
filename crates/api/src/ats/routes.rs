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
