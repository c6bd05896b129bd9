//! The recruiter console: server-rendered pages at `/console/*` (and `/`, which leads there)
//! over the same state, store and create logic as `/api/*`.
//!
//! - Sign-in ([`auth`]): console accounts (`voxbridge user add EMAIL`, argon2id hashes in the
//!   store) or the API token as a first admin; a session cookie (`HttpOnly`, `SameSite=Lax`,
//!   `Secure` unless `api.console.secure_cookie = false`) naming a session kept in the store
//!   (migration 7) that expires after `api.console.session_ttl_ms`; a CSRF token in every form.
//!   Every page and action needs a session: pages redirect to the sign-in page, everything
//!   else answers 401.
//! - Pages ([`pages`]): the calls list (filters, pages, today's counts by outcome), a call's
//!   detail (timeline, transcript, answers, recording, latencies), the launch form (the API's
//!   `POST /api/screenings` handler itself, so its validation and limits are the API's), the
//!   rate-limit look-up; CSV exports ([`export`]); campaigns (a CSV launch and each
//!   campaign's progress) and messages (every conversation, one candidate's thread with their
//!   consent and screenings) ([`outreach`]).
//! - Live updates: the Twilio webhooks publish each changed call SID on a broadcast channel
//!   ([`publish`]); `GET /console/events` streams them as Server-Sent Events and the page's
//!   script re-reads the regions marked `data-live`.
//!
//! Templates (minijinja) and assets are compiled into the binary: nothing to build or install.

mod auth;
mod export;
mod outreach;
mod pages;
mod view;

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use auth::{PasswordError, hash_password};

use crate::AppState;

/// `[api.console]`: the recruiter console.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve the console at `/` and `/console/*`. Default true.
    pub enabled: bool,
    /// Mark the session cookie `Secure` (sent over HTTPS only). Default true; set false only
    /// to use the console over plain `http://` (a local run).
    pub secure_cookie: bool,
    /// How long a sign-in lasts. Key `session_ttl_ms`, default 28800000 (8 hours).
    #[serde(rename = "session_ttl_ms", with = "voxbridge_config::millis")]
    pub session_ttl: Duration,
    /// Whether `api.api_token` signs in as an administrator (for the first sign-in, before any
    /// account exists). Default true.
    pub token_sign_in: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            secure_cookie: true,
            session_ttl: Duration::from_secs(8 * 60 * 60),
            token_sign_in: true,
        }
    }
}

/// The console's part of [`AppState`]: the call-change channel, the shutdown signal for its
/// event streams, and the compiled templates.
pub(crate) struct Shared {
    changes: broadcast::Sender<String>,
    stop: CancellationToken,
    templates: minijinja::Environment<'static>,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Self {
            changes: broadcast::channel(256).0,
            stop: CancellationToken::new(),
            templates: view::environment(),
        }
    }
}

/// Tells open consoles that call `call_sid` changed (a webhook was committed). Never blocks;
/// without a console open it does nothing.
pub(crate) fn publish(state: &AppState, call_sid: &str) {
    let _ = state.0.console.changes.send(call_sid.to_owned());
}

/// Ends the console's event streams when `shutdown` is cancelled, so open pages do not hold
/// the drain to its deadline.
pub(crate) fn stop_streams_on(state: &AppState, shutdown: CancellationToken) {
    let stop = state.0.console.stop.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        stop.cancel();
    });
}

/// The console's routes (empty when `api.console.enabled` is false).
pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    if !state.0.config.console.enabled {
        return Router::new();
    }
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/calls") }))
        .route("/console", get(|| async { Redirect::to("/console/calls") }))
        .route("/console/login", get(auth::login_page).post(auth::login))
        .route("/console/logout", post(auth::logout))
        .route("/console/calls", get(pages::calls))
        .route("/console/calls/{call_sid}", get(pages::call_detail))
        .route(
            "/console/screenings/new",
            get(pages::new_screening).post(pages::launch),
        )
        .route(
            "/console/screenings/{id}/cancel",
            post(pages::cancel_screening),
        )
        .route(
            "/console/campaigns",
            get(outreach::campaigns).post(outreach::launch_campaign),
        )
        .route("/console/messages", get(outreach::messages))
        .route("/console/messages/{address}", get(outreach::thread))
        .route("/console/rate-limits", get(pages::rate_limits))
        .route("/console/webhooks", get(pages::webhooks))
        .route(
            "/console/webhooks/{id}/redeliver",
            post(pages::redeliver_webhook),
        )
        .route("/console/export/calls.csv", get(export::calls))
        .route("/console/export/answers.csv", get(export::answers))
        .route("/console/events", get(pages::events))
        .route("/console/assets/console.css", get(stylesheet))
        .route("/console/assets/console.js", get(script))
}

async fn stylesheet() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    )
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}
