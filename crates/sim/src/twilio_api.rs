//! A stand-in for Twilio's REST API that really places the calls it is asked for.
//!
//! `POST /2010-04-01/Accounts/{AccountSid}/Calls.json` (HTTP Basic auth, form body) answers
//! with a Call resource (`201`, `status: queued`) or Twilio's error JSON
//! (`{"code","message","more_info","status"}`), then "dials" the call in a task:
//!
//! 1. signed status callbacks for the requested `StatusCallbackEvent`s (`initiated`,
//!    `ringing`, `answered` as `in-progress`), numbered with `SequenceNumber` from 0;
//! 2. a signed fetch of `Url` (the answer TwiML), then the verbs: `<Connect><Stream>` runs a
//!    [`crate::media_call`], `<Connect><ConversationRelay>` a [`crate::relay_call`], `<Say>`,
//!    `<Pause>`, `<Hangup>`; a `<Connect action>` is posted when the session ends and its
//!    TwiML runs next;
//! 3. with `AsyncAmd=true`, the scenario's `AnsweredBy` posted to `AsyncAmdStatusCallback`;
//! 4. `completed` with `CallDuration`, `Duration` and the last `SequenceNumber`.
//!
//! `GET .../Calls.json` lists the calls created, newest first, filtered by `To`, `From`,
//! `Status` and `StartTime`/`StartTime>`/`StartTime<` and paged (`PageSize`, `Page`,
//! `next_page_uri`) with Twilio's list shape. [`SimConfig::on_create`] runs a hook between
//! creating a call and answering `201`.
//!
//! `POST .../Calls/{CallSid}.json` updates a live call (`Twiml` or `Url`: redirect;
//! `Status=completed`: hang up); `GET` fetches it. Sources: twilio-protocols.md §4 and
//! <https://www.twilio.com/docs/voice/api/call-resource>.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use voxbridge_twilio::webhook::{FormParams, Rfc2822Timestamp};
use voxbridge_twilio::{E164, RequestValidator};

use crate::call::{CallOutcome, Speaker, TranscriptLine, TranscriptTap};
use crate::media_call::{MediaCall, MediaCallOptions, run_media_call};
use crate::relay_call::{RelayCall, RelayCallOptions, run_relay_call, setup_message};
use crate::scenario::Scenario;
use crate::stats::Recorder;
use crate::twiml::{ConnectTarget, Verb};
use crate::ws::Route;

/// Twilio's "invalid phone number" test number (error 21211).
pub const INVALID_NUMBER: &str = "+15005550001";

/// How the simulated Twilio account behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The account SID the API must use (`AC…`).
    pub account_sid: String,
    /// The auth token: Basic auth password and the key for every signature we send.
    pub auth_token: String,
    /// Where WebSocket URLs from TwiML are dialed.
    pub route: Route,
    /// The scenario for numbers without their own.
    pub default_scenario: Scenario,
    /// Scenarios by the called number (E.164).
    pub scenarios: HashMap<String, Scenario>,
    /// Media Streams caller timing.
    pub media: MediaCallOptions,
    /// ConversationRelay caller timing.
    pub relay: RelayCallOptions,
    /// Ringing time before the answer. Default 300 ms.
    pub ring: Duration,
    /// Called with the new call's SID once a `Calls.json` create succeeded, before the `201`
    /// is written (tests use it to kill the API between Twilio placing a call and the API
    /// committing it). Default none.
    pub on_create: Option<CreateHook>,
}

/// A function [`SimConfig::on_create`] calls with each created call's SID.
#[derive(Clone)]
pub struct CreateHook(pub Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for CreateHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CreateHook")
    }
}

impl SimConfig {
    /// An account with default timing, routing `wss://` URLs to the same host over `ws://`.
    pub fn new(
        account_sid: impl Into<String>,
        auth_token: impl Into<String>,
        scenario: Scenario,
    ) -> Self {
        Self {
            account_sid: account_sid.into(),
            auth_token: auth_token.into(),
            route: Route::default(),
            default_scenario: scenario,
            scenarios: HashMap::new(),
            media: MediaCallOptions::default(),
            relay: RelayCallOptions::default(),
            ring: Duration::from_millis(300),
            on_create: None,
        }
    }
}

/// A callback or TwiML fetch the simulator made, and the answer.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookLog {
    /// The URL.
    pub url: String,
    /// The form parameters sent.
    pub params: Vec<(String, String)>,
    /// The HTTP status (0: no answer).
    pub status: u16,
}

/// A finished call.
#[derive(Debug, Clone, Serialize)]
pub struct FinishedCall {
    /// `CA…`.
    pub call_sid: String,
    /// The called number.
    pub to: String,
    /// The scenario that played the candidate.
    pub scenario: String,
    /// Final status (`completed`, `busy`, `no-answer`, `failed`).
    pub status: String,
    /// What the caller experienced (the last connected session's).
    pub outcome: CallOutcome,
    /// Every webhook sent for the call, in order.
    pub webhooks: Vec<WebhookLog>,
    /// Problems (TwiML that could not be fetched or read, socket failures).
    pub errors: Vec<String>,
}

/// A change requested through `POST Calls/{sid}.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Redirect {
    Twiml(String),
    Url(String),
    Hangup,
}

/// A call as the account's call list shows it.
#[derive(Debug, Clone, Default)]
struct Placed {
    sid: String,
    to: String,
    from: String,
    /// `date_created` and `start_time` (the stand-in dials at once), Unix seconds.
    created: i64,
}

#[derive(Debug, Default)]
struct Live {
    redirect: Option<Redirect>,
    /// Cancels whatever the call is doing now (a session, a `<Say>`).
    current: CancellationToken,
    status: String,
}

struct Inner {
    config: SimConfig,
    http: reqwest::Client,
    signer: RequestValidator,
    recorder: Arc<Recorder>,
    tap: TranscriptTap,
    next_sid: AtomicU64,
    live: Mutex<HashMap<String, Live>>,
    finished: Mutex<HashMap<String, FinishedCall>>,
    /// Every call created, oldest first.
    placed: Mutex<Vec<Placed>>,
    finished_count: watch::Sender<u64>,
    shutdown: CancellationToken,
}

/// The simulated Twilio: REST routes plus the calls it dials. Cheap to clone.
#[derive(Clone)]
pub struct TwilioSim(Arc<Inner>);

impl std::fmt::Debug for TwilioSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioSim")
            .field("account_sid", &self.0.config.account_sid)
            .field("live", &self.live_calls())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        })),
    )
        .into_response()
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn rfc2822_now() -> String {
    Rfc2822Timestamp::from_unix_seconds(now_unix()).to_string()
}

impl TwilioSim {
    /// A simulator; calls' measurements go to `recorder`, transcript lines to `tap`.
    pub fn new(config: SimConfig, recorder: Arc<Recorder>, tap: TranscriptTap) -> Self {
        voxbridge_config::tls::install_ring_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap_or_default();
        Self(Arc::new(Inner {
            signer: RequestValidator::new(config.auth_token.clone()),
            config,
            http,
            recorder,
            tap,
            next_sid: AtomicU64::new(1),
            live: Mutex::new(HashMap::new()),
            finished: Mutex::new(HashMap::new()),
            placed: Mutex::new(Vec::new()),
            finished_count: watch::channel(0).0,
            shutdown: CancellationToken::new(),
        }))
    }

    /// The REST routes (`/2010-04-01/Accounts/{AccountSid}/Calls...`).
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/2010-04-01/Accounts/{account}/Calls.json",
                post(create_call).get(list_calls),
            )
            .route(
                "/2010-04-01/Accounts/{account}/Calls/{call}",
                post(update_call).get(fetch_call),
            )
            .with_state(self.clone())
    }

    /// Serves the REST routes on `listener` until [`TwilioSim::shutdown`].
    pub async fn serve(&self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let token = self.0.shutdown.clone();
        axum::serve(listener, self.router())
            .with_graceful_shutdown(token.cancelled_owned())
            .await
    }

    /// Ends every live call and stops serving.
    pub fn shutdown(&self) {
        self.0.shutdown.cancel();
        for live in lock(&self.0.live).values_mut() {
            live.redirect = Some(Redirect::Hangup);
            live.current.cancel();
        }
    }

    /// Calls being dialed or connected.
    pub fn live_calls(&self) -> usize {
        lock(&self.0.live).len()
    }

    /// The measurements of every call.
    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.0.recorder
    }

    /// A finished call, if it has finished.
    pub fn finished(&self, call_sid: &str) -> Option<FinishedCall> {
        lock(&self.0.finished).get(call_sid).cloned()
    }

    /// Waits until `call_sid` has finished, up to `timeout`.
    pub async fn wait_finished(&self, call_sid: &str, timeout: Duration) -> Option<FinishedCall> {
        let mut changes = self.0.finished_count.subscribe();
        tokio::time::timeout(timeout, async {
            loop {
                if let Some(call) = self.finished(call_sid) {
                    return call;
                }
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await
        .ok()
    }

    fn authorized(&self, headers: &HeaderMap, account: &str) -> bool {
        let config = &self.0.config;
        crate::messaging::basic_auth_matches(
            headers,
            &config.account_sid,
            &config.auth_token,
            account,
        )
    }

    /// The call `sid` as created (an unknown SID: only its SID).
    fn placed(&self, sid: &str) -> Placed {
        lock(&self.0.placed)
            .iter()
            .find(|p| p.sid == sid)
            .cloned()
            .unwrap_or_else(|| Placed {
                sid: sid.to_owned(),
                created: now_unix(),
                ..Placed::default()
            })
    }

    fn resource(&self, placed: &Placed, status: &str) -> Value {
        let account = &self.0.config.account_sid;
        let sid = &placed.sid;
        let created = Rfc2822Timestamp::from_unix_seconds(placed.created).to_string();
        let now = rfc2822_now();
        json!({
            "account_sid": account,
            "annotation": null,
            "answered_by": null,
            "api_version": "2010-04-01",
            "caller_name": null,
            "date_created": created,
            "date_updated": now,
            "direction": "outbound-api",
            "duration": null,
            "end_time": null,
            "forwarded_from": null,
            "from": placed.from,
            "from_formatted": placed.from,
            "group_sid": null,
            "parent_call_sid": null,
            "phone_number_sid": format!("PN{:032x}", 1),
            "price": null,
            "price_unit": "USD",
            "queue_time": "0",
            "sid": sid,
            "start_time": created,
            "status": status,
            "subresource_uris": {
                "notifications": format!("/2010-04-01/Accounts/{account}/Calls/{sid}/Notifications.json"),
                "recordings": format!("/2010-04-01/Accounts/{account}/Calls/{sid}/Recordings.json"),
                "streams": format!("/2010-04-01/Accounts/{account}/Calls/{sid}/Streams.json"),
            },
            "to": placed.to,
            "to_formatted": placed.to,
            "trunk_sid": null,
            "uri": format!("/2010-04-01/Accounts/{account}/Calls/{sid}.json"),
        })
    }
}

async fn create_call(
    State(sim): State<TwilioSim>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if !sim.authorized(&headers, &account) {
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let form = FormParams::parse(body.as_bytes());
    let Some(to) = form.get("To").filter(|t| !t.is_empty()) else {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21201,
            "No 'To' number is specified",
        );
    };
    let Ok(to) = E164::parse(to) else {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21211,
            &format!("The 'To' number {to} is not a valid phone number."),
        );
    };
    if to.as_str() == INVALID_NUMBER {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21211,
            &format!(
                "The 'To' number {} is not a valid phone number.",
                to.as_str()
            ),
        );
    }
    if form.get("From").is_none_or(str::is_empty) {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21603,
            "A 'From' phone number is required.",
        );
    }
    if form.get("Url").is_none_or(str::is_empty) && form.get("Twiml").is_none_or(str::is_empty) {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21205,
            "A 'Url', 'Twiml' or 'ApplicationSid' parameter is required.",
        );
    }
    let n = sim.0.next_sid.fetch_add(1, Ordering::Relaxed);
    let sid = format!("CA{:016x}{:016x}", std::process::id(), n);
    lock(&sim.0.live).insert(
        sid.clone(),
        Live {
            status: "queued".to_owned(),
            ..Live::default()
        },
    );
    let placed = Placed {
        sid: sid.clone(),
        to: to.as_str().to_owned(),
        from: form.get("From").unwrap_or_default().to_owned(),
        created: now_unix(),
    };
    let resource = sim.resource(&placed, "queued");
    lock(&sim.0.placed).push(placed);
    if let Some(hook) = &sim.0.config.on_create {
        (hook.0)(&sid);
    }
    let dial = sim.clone();
    let call_sid = sid.clone();
    let span = tracing::info_span!("sim_call", call_sid = %call_sid, to = %to.masked());
    tokio::spawn(async move { dial.dial(call_sid, to, form).await }.instrument(span));
    (StatusCode::CREATED, axum::Json(resource)).into_response()
}

async fn update_call(
    State(sim): State<TwilioSim>,
    Path((account, call)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if !sim.authorized(&headers, &account) {
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let sid = call.strip_suffix(".json").unwrap_or(&call).to_owned();
    let form = FormParams::parse(body.as_bytes());
    let redirect = if let Some(twiml) = form.get("Twiml").filter(|t| !t.is_empty()) {
        Redirect::Twiml(twiml.to_owned())
    } else if let Some(url) = form.get("Url").filter(|u| !u.is_empty()) {
        Redirect::Url(url.to_owned())
    } else if matches!(form.get("Status"), Some("completed" | "canceled")) {
        Redirect::Hangup
    } else {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21218,
            "Call update needs Url, Twiml or Status.",
        );
    };
    let status = {
        let mut live = lock(&sim.0.live);
        let Some(call) = live.get_mut(&sid) else {
            drop(live);
            return twilio_error(
                StatusCode::NOT_FOUND,
                20404,
                &format!(
                    "The requested resource /2010-04-01/Accounts/{account}/Calls/{sid}.json was not found"
                ),
            );
        };
        call.redirect = Some(redirect);
        call.current.cancel();
        call.status.clone()
    };
    (
        StatusCode::OK,
        axum::Json(sim.resource(&sim.placed(&sid), &status)),
    )
        .into_response()
}

async fn fetch_call(
    State(sim): State<TwilioSim>,
    Path((account, call)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !sim.authorized(&headers, &account) {
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let sid = call.strip_suffix(".json").unwrap_or(&call).to_owned();
    let status = current_status(&sim, &sid);
    match status {
        Some(status) => (
            StatusCode::OK,
            axum::Json(sim.resource(&sim.placed(&sid), &status)),
        )
            .into_response(),
        None => twilio_error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        ),
    }
}

/// The status of call `sid` now.
fn current_status(sim: &TwilioSim, sid: &str) -> Option<String> {
    lock(&sim.0.live)
        .get(sid)
        .map(|l| l.status.clone())
        .or_else(|| lock(&sim.0.finished).get(sid).map(|f| f.status.clone()))
}

/// `GET .../Calls.json`: the account's calls, newest first, filtered by `To`, `From`,
/// `Status`, and `StartTime` / `StartTime>` / `StartTime<` (UTC dates, `YYYY-MM-DD`; the
/// inequality is part of the parameter name, as in `StartTime>=2023-11-14`), paged with
/// `PageSize` (default 50, at most 1000) and `Page`.
/// (<https://www.twilio.com/docs/voice/api/call-resource#read-multiple-call-resources>)
async fn list_calls(
    State(sim): State<TwilioSim>,
    Path(account): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if !sim.authorized(&headers, &account) {
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let query = FormParams::parse(query.unwrap_or_default().as_bytes());
    let page_size = query
        .get("PageSize")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(50)
        .clamp(1, 1000);
    let page = query
        .get("Page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let placed: Vec<Placed> = lock(&sim.0.placed).iter().rev().cloned().collect();
    let matching: Vec<(Placed, String)> = placed
        .into_iter()
        .filter_map(|p| {
            let status = current_status(&sim, &p.sid).unwrap_or_else(|| "queued".to_owned());
            let date = Rfc2822Timestamp::from_unix_seconds(p.created).utc_date();
            let keep = query.get("To").is_none_or(|to| to == p.to)
                && query.get("From").is_none_or(|from| from == p.from)
                && query.get("Status").is_none_or(|s| s == status)
                && query.get("StartTime").is_none_or(|d| d == date)
                && query.get("StartTime>").is_none_or(|d| date.as_str() >= d)
                && query.get("StartTime<").is_none_or(|d| date.as_str() <= d);
            keep.then_some((p, status))
        })
        .collect();
    let start = page * page_size;
    let calls: Vec<Value> = matching
        .iter()
        .skip(start)
        .take(page_size)
        .map(|(p, status)| sim.resource(p, status))
        .collect();
    let filters: Vec<(String, String)> = query
        .as_pairs()
        .iter()
        .filter(|(k, _)| k != "Page" && k != "PageSize" && k != "PageToken")
        .cloned()
        .collect();
    let uri = |page: usize| {
        let mut pairs = filters.clone();
        pairs.push(("PageSize".to_owned(), page_size.to_string()));
        pairs.push(("Page".to_owned(), page.to_string()));
        format!(
            "/2010-04-01/Accounts/{account}/Calls.json?{}",
            FormParams::from_pairs(pairs).to_body()
        )
    };
    let more = start + calls.len() < matching.len();
    (
        StatusCode::OK,
        axum::Json(json!({
            "calls": calls,
            "end": (start + calls.len()).saturating_sub(1),
            "first_page_uri": uri(0),
            "next_page_uri": more.then(|| uri(page + 1)),
            "page": page,
            "page_size": page_size,
            "previous_page_uri": (page > 0).then(|| uri(page - 1)),
            "start": start,
            "uri": uri(page),
        })),
    )
        .into_response()
}

/// One call being dialed.
struct Dial {
    sim: TwilioSim,
    sid: String,
    to: E164,
    form: FormParams,
    scenario: Scenario,
    sequence: u64,
    events: Vec<String>,
    webhooks: Vec<WebhookLog>,
    errors: Vec<String>,
    outcome: CallOutcome,
    answered_at: Option<tokio::time::Instant>,
}

impl Dial {
    fn account(&self) -> &str {
        &self.sim.0.config.account_sid
    }

    fn base_params(&self, status: &str) -> Vec<(String, String)> {
        let from = self.form.get("From").unwrap_or_default().to_owned();
        let to = self.to.as_str().to_owned();
        vec![
            ("AccountSid".into(), self.account().to_owned()),
            ("ApiVersion".into(), "2010-04-01".into()),
            ("CallSid".into(), self.sid.clone()),
            ("CallStatus".into(), status.into()),
            ("Called".into(), to.clone()),
            ("Caller".into(), from.clone()),
            ("Direction".into(), "outbound-api".into()),
            ("From".into(), from),
            ("To".into(), to),
        ]
    }

    /// POSTs a signed form to `url`; returns the status and body.
    async fn post(&mut self, url: &str, params: Vec<(String, String)>) -> Option<(u16, String)> {
        let signature = self.sim.0.signer.sign(url, &params);
        let body = FormParams::from_pairs(params.clone()).to_body();
        let result = self
            .sim
            .0
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", signature)
            .header(
                "i-twilio-idempotency-token",
                format!("{}-{}", self.sid, self.webhooks.len()),
            )
            .body(body)
            .send()
            .await;
        let answer = match result {
            Ok(response) => {
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                Some((status, text))
            }
            Err(e) => {
                self.errors.push(format!("POST {url}: {e}"));
                None
            }
        };
        self.webhooks.push(WebhookLog {
            url: url.to_owned(),
            params,
            status: answer.as_ref().map_or(0, |(s, _)| *s),
        });
        if let Some((status, _)) = &answer
            && *status >= 400
        {
            self.errors.push(format!("POST {url}: HTTP {status}"));
        }
        answer
    }

    /// A call-progress event, if the API asked for it (`completed` always is).
    async fn status_callback(&mut self, event: &str, status: &str, extra: &[(&str, String)]) {
        self.set_status(status);
        let Some(url) = self
            .form
            .get("StatusCallback")
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
        else {
            return;
        };
        if event != "completed" && !self.events.iter().any(|e| e == event) {
            return;
        }
        let mut params = self.base_params(status);
        params.push(("CallbackSource".into(), "call-progress-events".into()));
        params.push(("SequenceNumber".into(), self.sequence.to_string()));
        params.push(("Timestamp".into(), rfc2822_now()));
        for (k, v) in extra {
            params.push(((*k).to_owned(), v.clone()));
        }
        self.sequence += 1;
        self.post(&url, params).await;
    }

    fn set_status(&self, status: &str) {
        if let Some(live) = lock(&self.sim.0.live).get_mut(&self.sid) {
            status.clone_into(&mut live.status);
        }
    }

    /// A fresh token for the next thing the call does, unless a redirect is already pending.
    fn current_token(&self) -> CancellationToken {
        let mut live = lock(&self.sim.0.live);
        match live.get_mut(&self.sid) {
            Some(l) if l.redirect.is_none() => {
                l.current = CancellationToken::new();
                l.current.clone()
            }
            _ => {
                let token = CancellationToken::new();
                token.cancel();
                token
            }
        }
    }

    fn take_redirect(&self) -> Option<Redirect> {
        lock(&self.sim.0.live)
            .get_mut(&self.sid)
            .and_then(|l| l.redirect.take())
    }

    /// Fetches TwiML from `url` (signed POST with the call's parameters).
    async fn fetch_twiml(&mut self, url: &str, answered_by: Option<&str>) -> Option<Vec<Verb>> {
        let mut params = self.base_params("in-progress");
        if let Some(answered_by) = answered_by {
            params.push(("AnsweredBy".into(), answered_by.to_owned()));
        }
        let (status, body) = self.post(url, params).await?;
        if status >= 400 {
            return None;
        }
        match crate::twiml::parse(&body) {
            Ok(verbs) => Some(verbs),
            Err(e) => {
                self.errors.push(format!("TwiML from {url}: {e}"));
                None
            }
        }
    }

    fn async_amd(&self) {
        let amd = self.form.get("AsyncAmd") == Some("true")
            && self.form.get("MachineDetection").is_some();
        let Some(url) = self
            .form
            .get("AsyncAmdStatusCallback")
            .filter(|u| amd && !u.is_empty())
        else {
            return;
        };
        let url = url.to_owned();
        let sim = self.sim.clone();
        let delay = Duration::from_millis(self.scenario.amd_delay_ms);
        let params: Vec<(String, String)> = vec![
            ("AccountSid".into(), self.account().to_owned()),
            ("AnsweredBy".into(), self.scenario.answered_by.clone()),
            ("CallSid".into(), self.sid.clone()),
            (
                "MachineDetectionDuration".into(),
                self.scenario.amd_delay_ms.to_string(),
            ),
        ];
        tokio::spawn(
            async move {
                tokio::time::sleep(delay).await;
                let signature = sim.0.signer.sign(&url, &params);
                let result = sim
                    .0
                    .http
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("x-twilio-signature", signature)
                    .body(FormParams::from_pairs(params).to_body())
                    .send()
                    .await;
                if let Err(e) = result {
                    tracing::warn!(error = %e, "async AMD callback failed");
                }
            }
            .in_current_span(),
        );
    }

    fn line(&mut self, speaker: Speaker, text: String) {
        let at_ms = self.answered_at.map_or(0, |t| {
            u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
        });
        let line = TranscriptLine {
            at_ms,
            speaker,
            text,
            interrupted: false,
        };
        self.outcome.say(&self.sim.0.tap, &self.sid, line);
    }

    /// Runs one `<Connect>`; returns the TwiML that follows it (from `action`), if any.
    #[allow(clippy::too_many_lines)] // two session kinds, then the action callback
    async fn connect(
        &mut self,
        action: Option<String>,
        target: ConnectTarget,
    ) -> Option<Vec<Verb>> {
        let config = &self.sim.0.config;
        let cancel = self.current_token();
        let recorder = self.sim.0.recorder.clone();
        let tap = self.sim.0.tap.clone();
        let started = tokio::time::Instant::now();
        let n = self.sim.0.next_sid.fetch_add(1, Ordering::Relaxed);
        let (outcome, relay) = match target {
            ConnectTarget::Stream { url, parameters } => {
                let call = MediaCall {
                    url,
                    route: config.route.clone(),
                    auth_token: Some(config.auth_token.clone()),
                    account_sid: voxbridge_twilio::sid::AccountSid::new(self.account()).ok()?,
                    call_sid: voxbridge_twilio::sid::CallSid::new(self.sid.clone()).ok()?,
                    stream_sid: voxbridge_twilio::sid::StreamSid::new(format!("MZ{n:032x}"))
                        .ok()?,
                    parameters,
                    steps: self.scenario.steps.clone().into(),
                    options: config.media.clone(),
                };
                (
                    run_media_call(&call, &recorder, &tap, &cancel)
                        .await
                        .map_err(|e| e.to_string()),
                    None,
                )
            }
            ConnectTarget::Relay {
                url,
                attributes,
                parameters,
            } => {
                let session_id = format!("VX{n:032x}");
                let call = RelayCall {
                    url,
                    route: config.route.clone(),
                    auth_token: Some(config.auth_token.clone()),
                    setup: setup_message(
                        &session_id,
                        self.account(),
                        &self.sid,
                        self.form.get("From").unwrap_or_default(),
                        self.to.as_str(),
                        &parameters,
                    ),
                    welcome_greeting: attributes.get("welcomeGreeting").cloned(),
                    steps: self.scenario.steps.clone().into(),
                    options: config.relay.clone(),
                };
                (
                    run_relay_call(&call, &recorder, &tap, &cancel)
                        .await
                        .map_err(|e| e.to_string()),
                    Some(session_id),
                )
            }
        };
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(e) => {
                self.errors.push(e);
                CallOutcome::default()
            }
        };
        // Keep the session's transcript in order with the call's own lines.
        let offset = self.answered_at.map_or(0, |t| {
            u64::try_from(started.duration_since(t).as_millis()).unwrap_or(0)
        });
        for line in &outcome.transcript {
            let mut line = line.clone();
            line.at_ms += offset;
            self.outcome.transcript.push(line);
        }
        self.outcome.end = outcome.end;
        self.outcome.heard.clone_from(&outcome.heard);
        self.outcome.sent.clone_from(&outcome.sent);
        self.outcome.handoff_data.clone_from(&outcome.handoff_data);
        self.outcome.marks_echoed += outcome.marks_echoed;
        self.outcome.clears += outcome.clears;
        self.outcome.bot_turns += outcome.bot_turns;
        let action = action?;
        // A REST update (redirect or hang-up) interrupts the verb: Twilio does not request
        // its action URL then.
        if self.peek_redirect().is_some() {
            return None;
        }
        let mut params = self.base_params("in-progress");
        if let Some(session_id) = relay {
            let (session_status, call_status) = match outcome.end {
                Some(crate::CallEnd::SessionEnded) => ("ended", "in-progress"),
                Some(crate::CallEnd::CallerHungUp) => ("completed", "completed"),
                _ => ("failed", "in-progress"),
            };
            params.retain(|(k, _)| k != "CallStatus");
            params.push(("CallStatus".into(), call_status.into()));
            params.push(("SessionId".into(), session_id));
            params.push(("SessionStatus".into(), session_status.into()));
            params.push((
                "SessionDuration".into(),
                started.elapsed().as_secs().to_string(),
            ));
            if let Some(handoff) = &outcome.handoff_data {
                params.push(("HandoffData".into(), handoff.clone()));
            }
        }
        let (status, body) = self.post(&action, params).await?;
        if status >= 400 || outcome.end == Some(crate::CallEnd::CallerHungUp) {
            return None;
        }
        crate::twiml::parse(&body).ok()
    }

    fn peek_redirect(&self) -> Option<Redirect> {
        lock(&self.sim.0.live)
            .get(&self.sid)
            .and_then(|l| l.redirect.clone())
    }

    /// Waits `duration` unless the call is redirected or hung up first.
    async fn wait(&self, duration: Duration) {
        let token = self.current_token();
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            () = token.cancelled() => {}
        }
    }

    /// Runs TwiML verbs until the call ends.
    async fn run_verbs(&mut self, mut verbs: Vec<Verb>) {
        let mut queue: std::collections::VecDeque<Verb> = verbs.drain(..).collect();
        let mut steps = 0;
        loop {
            match self.take_redirect() {
                Some(Redirect::Hangup) => return,
                Some(Redirect::Twiml(xml)) => match crate::twiml::parse(&xml) {
                    Ok(v) => queue = v.into(),
                    Err(e) => {
                        self.errors.push(format!("redirect TwiML: {e}"));
                        return;
                    }
                },
                Some(Redirect::Url(url)) => match self.fetch_twiml(&url, None).await {
                    Some(v) => queue = v.into(),
                    None => return,
                },
                None => {}
            }
            steps += 1;
            if steps > 100 {
                self.errors
                    .push("more than 100 TwiML verbs; stopping".to_owned());
                return;
            }
            let Some(verb) = queue.pop_front() else {
                return;
            };
            match verb {
                Verb::Say(text) => {
                    let seconds = (text.chars().count() as u64 * 60).min(5000);
                    self.line(Speaker::Bot, format!("(Twilio says) {text}"));
                    self.wait(Duration::from_millis(seconds)).await;
                }
                Verb::Pause(seconds) => self.wait(Duration::from_secs(u64::from(seconds))).await,
                Verb::Hangup => {
                    self.line(Speaker::Bot, "(hangs up)".to_owned());
                    return;
                }
                Verb::Connect { action, target } => {
                    if let Some(next) = self.connect(action, target).await {
                        queue = next.into();
                    }
                    if self.outcome.end == Some(crate::CallEnd::CallerHungUp) {
                        return;
                    }
                }
                Verb::Other(name) => {
                    self.errors
                        .push(format!("<{name}> is not simulated; skipped"));
                }
            }
        }
    }
}

impl TwilioSim {
    fn scenario_for(&self, to: &E164) -> Scenario {
        self.0
            .config
            .scenarios
            .get(to.as_str())
            .unwrap_or(&self.0.config.default_scenario)
            .clone()
    }

    async fn dial(self, sid: String, to: E164, form: FormParams) {
        let scenario = self.scenario_for(&to);
        let events = form
            .get_all("StatusCallbackEvent")
            .flat_map(str::split_whitespace)
            .map(str::to_owned)
            .collect();
        let mut dial = Dial {
            sim: self.clone(),
            sid: sid.clone(),
            to: to.clone(),
            scenario,
            form,
            sequence: 0,
            events,
            webhooks: Vec::new(),
            errors: Vec::new(),
            outcome: CallOutcome::default(),
            answered_at: None,
        };
        dial.status_callback("initiated", "initiated", &[]).await;
        dial.status_callback("ringing", "ringing", &[]).await;
        dial.wait(self.0.config.ring).await;
        let mut final_status = "completed";
        if matches!(dial.take_redirect(), Some(Redirect::Hangup)) {
            final_status = "canceled";
        } else if let Some(status) = dial.scenario.unanswered {
            // Nobody picks up (or the line is busy): no answer, no TwiML fetched.
            final_status = status;
        } else {
            dial.answered_at = Some(tokio::time::Instant::now());
            dial.status_callback("answered", "in-progress", &[]).await;
            dial.async_amd();
            let sync_amd = dial.form.get("MachineDetection").is_some()
                && dial.form.get("AsyncAmd") != Some("true");
            let answered_by = sync_amd.then(|| dial.scenario.answered_by.clone());
            let verbs = if let Some(url) = dial
                .form
                .get("Url")
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
            {
                dial.fetch_twiml(&url, answered_by.as_deref()).await
            } else {
                let twiml = dial.form.get("Twiml").unwrap_or_default().to_owned();
                crate::twiml::parse(&twiml)
                    .map_err(|e| dial.errors.push(e.to_string()))
                    .ok()
            };
            match verbs {
                Some(verbs) => dial.run_verbs(verbs).await,
                None => final_status = "failed",
            }
        }
        let duration = dial.answered_at.map_or(0, |t| t.elapsed().as_secs());
        let extra = [
            ("CallDuration", duration.to_string()),
            (
                "Duration",
                duration
                    .div_ceil(60)
                    .max(u64::from(duration > 0))
                    .to_string(),
            ),
        ];
        dial.status_callback("completed", final_status, &extra)
            .await;
        lock(&self.0.live).remove(&sid);
        let finished = FinishedCall {
            call_sid: sid.clone(),
            to: to.as_str().to_owned(),
            scenario: dial.scenario.name.clone(),
            status: final_status.to_owned(),
            outcome: dial.outcome,
            webhooks: dial.webhooks,
            errors: dial.errors,
        };
        for error in &finished.errors {
            tracing::warn!(%error, "simulated call problem");
        }
        lock(&self.0.finished).insert(sid, finished);
        self.0.finished_count.send_modify(|n| *n += 1);
    }
}
