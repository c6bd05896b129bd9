//! HTTP side: the upgrade route (signature, drain, WebSocket limits), `/healthz`, `/metrics`,
//! and [`serve`] with its graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{OriginalUri, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use futures::stream::{SplitSink, SplitStream};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use voxbridge_brain::Agents;
use voxbridge_twilio::SignatureError;

use crate::metrics::{Rejection, Transport};
use crate::{MediaConfig, MediaError, MediaState, drive_call, drive_relay, tune_call_socket};

/// The header Twilio signs requests with.
const SIGNATURE_HEADER: &str = "x-twilio-signature";
/// tungstenite's read buffer, zero-filled before every read: Twilio frames are ~300 bytes, so
/// 1 KiB (3% of the bridge's CPU at 4 KiB, 1,000 calls); larger messages take more reads.
const READ_BUFFER: usize = 1024;
/// Most bytes buffered for writing before writes fail (only grows while the peer is slow).
const MAX_WRITE_BUFFER: usize = 64 * 1024;
/// After the forced close, beyond two send timeouts (a full queue, then the close frame's
/// flush), how long calls get for the close handshake and stopping their brain.
const CLOSE_GRACE_EXTRA: Duration = Duration::from_secs(2);
/// How long the HTTP server gets to finish plain requests at the very end.
const SERVER_STOP_GRACE: Duration = Duration::from_secs(5);

/// An HTTP error with a clear message and status; the internal cause is logged.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The server is shutting down.
    #[error("server is shutting down; Twilio should retry another instance")]
    Draining,
    /// `X-Twilio-Signature` missing or wrong.
    #[error("invalid X-Twilio-Signature")]
    Forbidden(#[source] SignatureError),
    /// `max_calls` calls are live.
    #[error("the bridge is at its call limit (media.max_calls); try again later")]
    Busy,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Draining | Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
        };
        let body = Json(serde_json::json!({ "error": self.to_string() }));
        (status, body).into_response()
    }
}

/// The media routes: `config.media_path` (WebSocket), `GET /healthz`, `GET /readyz` (503 while
/// draining, so a load balancer stops sending new calls), and `GET /metrics` (Prometheus text
/// format, or OpenMetrics on request; left out when `metrics_listen` puts it on a listener of
/// its own), plus `relay_path` when ConversationRelay is served.
pub fn router(state: MediaState) -> Router {
    let path = state.config().media_path.clone();
    let mut router = Router::new()
        .route(&path, get(media_upgrade))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    if state.config().metrics_listen.is_empty() {
        router = router.route("/metrics", get(metrics_text));
    }
    if state.relay().is_some() {
        router = router.route(&state.config().relay_path, get(relay_upgrade));
    }
    router.with_state(state)
}

/// `GET /metrics` alone, for the separate `metrics_listen` listener.
pub fn metrics_router(state: MediaState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

/// Checks drain state and the signature of an upgrade, applies the WebSocket limits, and runs
/// `drive` on the socket halves once upgraded. Refusals are counted per `transport`.
fn accept<F, Fut>(
    state: MediaState,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    transport: Transport,
    drive: F,
) -> Response
where
    F: FnOnce(MediaState, SplitSink<WebSocket, Message>, SplitStream<WebSocket>) -> Fut
        + Send
        + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let what = match transport {
        Transport::Media => "Media Streams",
        Transport::Relay => "ConversationRelay",
    };
    let metrics = state.bridge_metrics();
    if state.is_draining() {
        metrics.rejected(transport, Rejection::Draining);
        return ApiError::Draining.into_response();
    }
    let path_and_query = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    if let Err(e) = state.check_signature(path_and_query, signature) {
        warn!(error = %e, path = uri.path(), "rejected {what} upgrade");
        metrics.rejected(transport, Rejection::Forbidden);
        return ApiError::Forbidden(e).into_response();
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            metrics.rejected(transport, Rejection::NotWebSocket);
            return rejection.into_response();
        }
    };
    // Counted from before the upgrade, so a drain that starts now still waits for this call,
    // and two upgrades at once cannot both take the last place under `max_calls`.
    let connection = state.connection_token();
    if state.connections() > state.config().max_calls {
        drop(connection);
        metrics.rejected(transport, Rejection::Busy);
        warn!(
            max_calls = state.config().max_calls,
            "refused a {what} upgrade: at the call limit (503)"
        );
        return ApiError::Busy.into_response();
    }
    let limit = state.config().hard_message_limit();
    upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER.max(limit * 2))
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_failed_upgrade(move |e| warn!(error = %e, "{what} upgrade failed"))
        .on_upgrade(move |socket| async move {
            let (sink, stream) = socket.split();
            drive(state, sink, stream).await;
            drop(connection);
        })
}

async fn relay_upgrade(
    State(state): State<MediaState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Some(service) = state.relay().cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    accept(
        state,
        &uri,
        &headers,
        upgrade,
        Transport::Relay,
        move |state, sink, stream| async move {
            drive_relay(state, service, sink, stream).await;
        },
    )
}

async fn media_upgrade(
    State(state): State<MediaState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    accept(
        state,
        &uri,
        &headers,
        upgrade,
        Transport::Media,
        |state, sink, stream| async move {
            drive_call(state, sink, stream).await;
        },
    )
}

async fn healthz(State(state): State<MediaState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": if state.is_draining() { "draining" } else { "ok" },
        "calls": state.registry().count(),
        "connections": state.connections(),
    }))
}

/// `GET /readyz`: 200 while taking calls; 503 from the moment the drain starts (the process
/// stays up and healthy until its live calls end), or while the process's readiness check
/// fails ([`MediaState::set_readiness_check`]: `serve` checks the store when it serves the API).
async fn readyz(State(state): State<MediaState>) -> Response {
    if state.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "draining" })),
        )
            .into_response();
    }
    match state.check_readiness().await {
        Ok(()) => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Err(error) => {
            warn!(%error, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "status": "unavailable", "error": error })),
            )
                .into_response()
        }
    }
}

/// `GET /metrics`: see [`crate::metrics`]; the format the scraper's `Accept` prefers.
async fn metrics_text(State(state): State<MediaState>, headers: HeaderMap) -> Response {
    let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = voxbridge_metrics::exposition(&state.metrics_registry(), accept);
    ([(CONTENT_TYPE, content_type)], body).into_response()
}

/// Runs the media service on `listener` until `shutdown` fires, then drains (see
/// [`serve_with_state`]).
pub async fn serve(
    config: MediaConfig,
    listener: TcpListener,
    agents: Agents,
    shutdown: CancellationToken,
) -> Result<(), MediaError> {
    let state = MediaState::new(config, agents)?;
    serve_with_state(state, listener, shutdown).await
}

/// Runs [`router`] for `state` on `listener` (see [`serve_with_routes`]).
pub async fn serve_with_state(
    state: MediaState,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), MediaError> {
    serve_with_routes(state, Router::new(), listener, shutdown).await
}

/// Runs [`router`] for `state`, merged with `extra` (another service's routes on the same
/// port; they must not repeat the media routes), on `listener`: a [`voxbridge_net::Server`]
/// with `[media]`'s connection caps and timeouts, each accepted socket tuned by
/// [`tune_call_socket`]. `GET /metrics` goes to its own listener when `metrics_listen` is
/// set. When `shutdown` fires: upgrades get 503, live calls get `drain_timeout_ms` to end on
/// their own, then each is closed with 1001; the server stops once every call is gone (or a
/// short grace after that).
pub async fn serve_with_routes(
    state: MediaState,
    extra: Router,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), MediaError> {
    let local = listener.local_addr().ok();
    let metrics_listener = match state.config().metrics_address()? {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(MediaError::Server)?),
        None => None,
    };
    info!(
        address = ?local,
        path = %state.config().media_path,
        relay_path = state.relay().map(|_| state.config().relay_path.as_str()),
        metrics = ?metrics_listener.as_ref().and_then(|l| l.local_addr().ok()),
        "media service listening"
    );
    let stop_server = CancellationToken::new();
    // No Nagle delay, a bounded send buffer: see `tune_call_socket`.
    let server = voxbridge_net::Server::new(state.config().listener.clone())
        .with_metrics(Arc::clone(&state.bridge_metrics().listener))
        .on_accept(tune_call_socket)
        .serve(
            listener,
            router(state.clone()).merge(extra),
            stop_server.clone(),
            SERVER_STOP_GRACE,
        );
    let mut server = tokio::spawn(server);
    // The metrics listener stays up through the drain, so the drain can be watched.
    let metrics_server = metrics_listener.map(|listener| {
        tokio::spawn(
            voxbridge_net::Server::new(voxbridge_net::ListenerConfig::default()).serve(
                listener,
                metrics_router(state.clone()),
                stop_server.clone(),
                SERVER_STOP_GRACE,
            ),
        )
    });

    tokio::select! {
        () = shutdown.cancelled() => {}
        result = &mut server => {
            stop_server.cancel();
            return server_result(result);
        }
    }

    let drain = state.config().drain_timeout;
    info!(
        calls = state.registry().count(),
        connections = state.connections(),
        ?drain,
        "shutdown: refusing new calls, draining live ones"
    );
    state.begin_drain();
    if tokio::time::timeout(drain, state.idle()).await.is_err() {
        warn!(
            calls = state.registry().count(),
            connections = state.connections(),
            "drain deadline passed: closing live calls (1001)"
        );
        state.close_all();
        // A driver's worst case after the forced close: a wait for room in its send queue
        // ends at once, sending the close frame and closing the socket take at most one send
        // timeout, then the close handshake and the brain's stop; the second send timeout is
        // margin. Less than that and `serve` could return before `CallSink::call_ended` ran
        // for a slow peer.
        let grace = state.config().send_timeout * 2 + CLOSE_GRACE_EXTRA;
        if tokio::time::timeout(grace, state.idle()).await.is_err() {
            warn!(
                connections = state.connections(),
                "calls did not close in time; stopping anyway"
            );
        }
    }
    // The listener closes, plain HTTP requests get SERVER_STOP_GRACE to finish.
    stop_server.cancel();
    if let Some(metrics_server) = metrics_server {
        let _ = metrics_server.await;
    }
    server_result(server.await)
}

fn server_result(
    result: Result<voxbridge_net::Served, tokio::task::JoinError>,
) -> Result<(), MediaError> {
    match result {
        Ok(served) => {
            if served.closed_at_deadline > 0 {
                warn!(
                    connections = served.closed_at_deadline,
                    "HTTP connections still open at exit; closed them"
                );
            }
            info!("media service stopped");
            Ok(())
        }
        Err(e) => Err(MediaError::Task(e.to_string())),
    }
}
