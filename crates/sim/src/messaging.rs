//! A stand-in for Twilio's Messages API, and a phone that texts in.
//!
//! `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (HTTP Basic auth, form body:
//! `To`, `From` or `MessagingServiceSid`, `Body` or `ContentSid`, `StatusCallback`) answers
//! `201` with a Message resource (`status` `queued`, or `accepted` through a Messaging
//! Service; `num_segments` counted as Twilio does) or Twilio's error JSON:
//! 21604 (no `To`), 21603 (no sender), 21602 (no body), 21617 (body over 1600 characters),
//! 21654 (`ContentVariables` without `ContentSid`), 21655 (a `ContentSid` that is not `HX` and
//! 32 hex digits), 21656 (`ContentVariables` not a JSON object of at most 100 strings),
//! 21211 (`To` not a valid number, or [`INVALID_NUMBER`]), 21610 (the recipient texted STOP
//! and has not texted START since), 20429 with HTTP 429 (after [`MessagingSim::throttle_next`])
//! and 20500 with HTTP 500 (after [`MessagingSim::fail_next`]).
//!
//! An accepted message is "delivered" in a task: signed status callbacks `queued`, `sent`, then
//! `delivered`, or `undelivered`/`failed` with `ErrorCode` as [`Delivery`] says for its `To`
//! (in reverse order with [`MessagingSimConfig::reverse_callbacks`], as a network may
//! reorder them). [`MessagingSim::send_inbound`] posts a signed incoming-message webhook as
//! Twilio does when a phone texts one of the account's numbers; a STOP-class keyword opts the
//! sender out of further messages (Twilio's default opt-out handling, here account-wide), a
//! START-class keyword opts them back in.
//! Sources: <https://www.twilio.com/docs/messaging/api/message-resource>,
//! <https://www.twilio.com/docs/messaging/guides/track-outbound-message-status>,
//! <https://www.twilio.com/docs/messaging/guides/webhook-request>.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;
use voxbridge_twilio::messaging::count_segments;
use voxbridge_twilio::webhook::{FormParams, SmsKeyword};
use voxbridge_twilio::{E164, RequestValidator};

use crate::twilio_api::{INVALID_NUMBER, WebhookLog};

/// What happens to a message after Twilio accepted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// `sent`, then `delivered`.
    Delivered,
    /// `sent`, then `undelivered` with this `ErrorCode` (30003-30008...).
    Undelivered(u32),
    /// `failed` with this `ErrorCode`, never sent.
    Failed(u32),
}

/// How the simulated messaging account behaves.
#[derive(Debug, Clone)]
pub struct MessagingSimConfig {
    /// The account SID the API must use (`AC…`).
    pub account_sid: String,
    /// The auth token: Basic auth password and the key of every signature sent.
    pub auth_token: String,
    /// The fate of messages by `To` (as sent, e.g. `+1415...`); others are delivered.
    pub delivery: HashMap<String, Delivery>,
    /// Pause between one message's status callbacks. Default 10 ms.
    pub callback_gap: Duration,
    /// Send each message's status callbacks last first. Default false.
    pub reverse_callbacks: bool,
}

impl MessagingSimConfig {
    /// An account where every message is delivered.
    pub fn new(account_sid: impl Into<String>, auth_token: impl Into<String>) -> Self {
        Self {
            account_sid: account_sid.into(),
            auth_token: auth_token.into(),
            delivery: HashMap::new(),
            callback_gap: Duration::from_millis(10),
            reverse_callbacks: false,
        }
    }
}

/// A create request as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct CreateAttempt {
    /// When it arrived.
    pub at: Instant,
    /// `To`.
    pub to: String,
    /// `From` or `MessagingServiceSid`.
    pub sender: String,
    /// The HTTP status answered.
    pub status: u16,
    /// The Twilio error code answered, if any.
    pub code: Option<u32>,
    /// The `MessageSid` created, if any.
    pub sid: Option<String>,
    /// The form.
    pub params: Vec<(String, String)>,
}

struct Inner {
    config: MessagingSimConfig,
    http: reqwest::Client,
    signer: RequestValidator,
    next_sid: AtomicU64,
    throttle: AtomicU32,
    failures: AtomicU32,
    opted_out: Mutex<HashSet<String>>,
    attempts: Mutex<Vec<CreateAttempt>>,
    callbacks: Mutex<Vec<WebhookLog>>,
    changed: watch::Sender<u64>,
}

/// The simulated Messages API. Cheap to clone.
#[derive(Clone)]
pub struct MessagingSim(Arc<Inner>);

impl std::fmt::Debug for MessagingSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessagingSim")
            .field("account_sid", &self.0.config.account_sid)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether `headers` carry HTTP Basic auth with `account_sid:auth_token` and the path's
/// account is `account_sid`. Not a constant-time comparison: this is a local stand-in.
pub(crate) fn basic_auth_matches(
    headers: &HeaderMap,
    account_sid: &str,
    auth_token: &str,
    account: &str,
) -> bool {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{account_sid}:{auth_token}"))
    );
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    given == expected && account == account_sid
}

/// `To` without a `whatsapp:` prefix, as a number.
fn recipient_number(to: &str) -> Option<E164> {
    E164::parse(to.strip_prefix("whatsapp:").unwrap_or(to)).ok()
}

impl MessagingSim {
    /// A stand-in with `config`.
    pub fn new(config: MessagingSimConfig) -> Self {
        voxbridge_config::tls::install_ring_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap_or_default();
        Self(Arc::new(Inner {
            signer: RequestValidator::new(config.auth_token.clone()),
            config,
            http,
            next_sid: AtomicU64::new(1),
            throttle: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            opted_out: Mutex::new(HashSet::new()),
            attempts: Mutex::new(Vec::new()),
            callbacks: Mutex::new(Vec::new()),
            changed: watch::channel(0).0,
        }))
    }

    /// The REST route (`/2010-04-01/Accounts/{AccountSid}/Messages.json`); merge it with
    /// [`crate::twilio_api::TwilioSim::router`] to serve both on one listener.
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/2010-04-01/Accounts/{account}/Messages.json",
                post(create_message),
            )
            .with_state(self.clone())
    }

    /// The next `n` creates are answered 429 (code 20429).
    pub fn throttle_next(&self, n: u32) {
        self.0.throttle.store(n, Ordering::SeqCst);
    }

    /// The next `n` creates are answered 500 (code 20500).
    pub fn fail_next(&self, n: u32) {
        self.0.failures.store(n, Ordering::SeqCst);
    }

    /// Marks `number` as having texted STOP.
    pub fn opt_out(&self, number: &str) {
        lock(&self.0.opted_out).insert(number.to_owned());
    }

    /// Every create request so far, in arrival order.
    pub fn attempts(&self) -> Vec<CreateAttempt> {
        lock(&self.0.attempts).clone()
    }

    /// The accepted creates so far.
    pub fn accepted(&self) -> Vec<CreateAttempt> {
        lock(&self.0.attempts)
            .iter()
            .filter(|a| a.sid.is_some())
            .cloned()
            .collect()
    }

    /// Every status callback sent so far, with the answer.
    pub fn callbacks(&self) -> Vec<WebhookLog> {
        lock(&self.0.callbacks).clone()
    }

    /// Waits until `done` holds for the stand-in (checked after each request or callback), up
    /// to `timeout`; returns whether it did.
    pub async fn wait_until(&self, timeout: Duration, done: impl Fn(&Self) -> bool) -> bool {
        let mut changes = self.0.changed.subscribe();
        tokio::time::timeout(timeout, async {
            loop {
                if done(self) {
                    return;
                }
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await
        .is_ok()
    }

    fn bump(&self) {
        self.0.changed.send_modify(|n| *n += 1);
    }

    fn new_sid(&self) -> String {
        let n = self.0.next_sid.fetch_add(1, Ordering::SeqCst);
        format!("SM{n:032x}")
    }

    /// A phone texts `body` from `from` to `to` (one of the account's numbers): posts the
    /// signed incoming-message webhook to `url` and returns the status and body answered
    /// (the TwiML reply), or `None` when the request failed.
    pub async fn send_inbound(
        &self,
        url: &str,
        from: &str,
        to: &str,
        body: &str,
    ) -> Option<(u16, String)> {
        match SmsKeyword::classify(body) {
            Some(SmsKeyword::OptOut) => {
                lock(&self.0.opted_out).insert(from.to_owned());
            }
            Some(SmsKeyword::OptIn) => {
                lock(&self.0.opted_out).remove(from);
            }
            _ => {}
        }
        let sid = self.new_sid();
        let mut params: Vec<(String, String)> = [
            ("AccountSid", self.0.config.account_sid.as_str()),
            ("ApiVersion", "2010-04-01"),
            ("Body", body),
            ("From", from),
            ("MessageSid", sid.as_str()),
            ("NumMedia", "0"),
            ("SmsMessageSid", sid.as_str()),
            ("SmsSid", sid.as_str()),
            ("SmsStatus", "received"),
            ("To", to),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        params.push((
            "NumSegments".to_owned(),
            count_segments(body).segments.to_string(),
        ));
        if let Some(number) = from.strip_prefix("whatsapp:") {
            params.push(("WaId".to_owned(), number.trim_start_matches('+').to_owned()));
            params.push(("ProfileName".to_owned(), "Sim Candidate".to_owned()));
        }
        self.post_signed(url, params).await
    }

    /// POSTs a signed form to `url`, logs it, and returns the answer.
    async fn post_signed(&self, url: &str, params: Vec<(String, String)>) -> Option<(u16, String)> {
        let signature = self.0.signer.sign(url, &params);
        let body = FormParams::from_pairs(params.clone()).to_body();
        let answer = match self
            .0
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", signature)
            .body(body)
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status().as_u16();
                Some((status, response.text().await.unwrap_or_default()))
            }
            Err(e) => {
                tracing::debug!(error = %e, "messaging stand-in: webhook failed");
                None
            }
        };
        lock(&self.0.callbacks).push(WebhookLog {
            url: url.to_owned(),
            params,
            status: answer.as_ref().map_or(0, |(s, _)| *s),
        });
        self.bump();
        answer
    }

    /// Posts the status callbacks of an accepted message.
    async fn deliver(self, url: String, base: Vec<(String, String)>, to: String) {
        let fate = self
            .0
            .config
            .delivery
            .get(&to)
            .copied()
            .unwrap_or(Delivery::Delivered);
        let mut steps: Vec<(&str, Option<u32>)> = match fate {
            Delivery::Delivered => vec![("queued", None), ("sent", None), ("delivered", None)],
            Delivery::Undelivered(code) => {
                vec![
                    ("queued", None),
                    ("sent", None),
                    ("undelivered", Some(code)),
                ]
            }
            Delivery::Failed(code) => vec![("queued", None), ("failed", Some(code))],
        };
        if self.0.config.reverse_callbacks {
            steps.reverse();
        }
        for (status, code) in steps {
            tokio::time::sleep(self.0.config.callback_gap).await;
            let mut params = base.clone();
            params.push(("MessageStatus".to_owned(), status.to_owned()));
            params.push(("SmsStatus".to_owned(), status.to_owned()));
            if let Some(code) = code {
                params.push(("ErrorCode".to_owned(), code.to_string()));
            }
            self.post_signed(&url, params).await;
        }
    }
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

/// Why a create is refused, if it is: the HTTP status, code and message.
fn refusal(sim: &MessagingSim, form: &FormParams) -> Option<(StatusCode, u32, String)> {
    let bad = StatusCode::BAD_REQUEST;
    let given = |name| form.get(name).filter(|v| !v.is_empty());
    let Some(to) = given("To") else {
        return Some((bad, 21604, "A 'To' phone number is required.".to_owned()));
    };
    if given("From").is_none() && given("MessagingServiceSid").is_none() {
        return Some((bad, 21603, "A 'From' phone number is required.".to_owned()));
    }
    if given("ContentVariables").is_some() && given("ContentSid").is_none() {
        return Some((
            bad,
            21654,
            "A ContentSid must be specified if ContentVariables are provided in the request."
                .to_owned(),
        ));
    }
    if let Some(sid) = given("ContentSid")
        && !voxbridge_twilio::messaging::is_content_sid(sid)
    {
        return Some((bad, 21655, "The ContentSid is Invalid.".to_owned()));
    }
    if let Some(variables) = given("ContentVariables") {
        let valid = serde_json::from_str::<serde_json::Value>(variables).is_ok_and(|v| {
            v.as_object()
                .is_some_and(|m| m.len() <= 100 && m.values().all(serde_json::Value::is_string))
        });
        if !valid {
            return Some((
                bad,
                21656,
                "The ContentVariables Parameter is invalid.".to_owned(),
            ));
        }
    }
    if given("Body").is_none() && given("ContentSid").is_none() {
        return Some((bad, 21602, "Message body is required.".to_owned()));
    }
    if given("Body").is_some_and(|b| b.chars().count() > 1600) {
        return Some((
            bad,
            21617,
            "The concatenated message body exceeds the 1600 character limit.".to_owned(),
        ));
    }
    let number = recipient_number(to).filter(|n| n.as_str() != INVALID_NUMBER);
    let Some(number) = number else {
        return Some((
            bad,
            21211,
            format!("The 'To' number {to} is not a valid phone number."),
        ));
    };
    let taken = |counter: &AtomicU32| {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    };
    if taken(&sim.0.throttle) {
        return Some((
            StatusCode::TOO_MANY_REQUESTS,
            20429,
            "Too Many Requests".to_owned(),
        ));
    }
    if taken(&sim.0.failures) {
        return Some((
            StatusCode::INTERNAL_SERVER_ERROR,
            20500,
            "Internal Server Error".to_owned(),
        ));
    }
    let opted_out = lock(&sim.0.opted_out);
    if opted_out.contains(to) || opted_out.contains(number.as_str()) {
        return Some((
            bad,
            21610,
            "Attempt to send to unsubscribed recipient".to_owned(),
        ));
    }
    None
}

/// `POST Messages.json`.
async fn create_message(
    State(sim): State<MessagingSim>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let config = &sim.0.config;
    if !basic_auth_matches(&headers, &config.account_sid, &config.auth_token, &account) {
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let form = FormParams::parse(body.as_bytes());
    let to = form.get("To").unwrap_or_default().to_owned();
    let from = form.get("From").filter(|v| !v.is_empty());
    let service = form.get("MessagingServiceSid").filter(|v| !v.is_empty());
    let mut attempt = CreateAttempt {
        at: Instant::now(),
        to: to.clone(),
        sender: from.or(service).unwrap_or_default().to_owned(),
        status: 201,
        code: None,
        sid: None,
        params: form.as_pairs().to_vec(),
    };
    if let Some((status, code, message)) = refusal(&sim, &form) {
        attempt.status = status.as_u16();
        attempt.code = Some(code);
        lock(&sim.0.attempts).push(attempt);
        sim.bump();
        return twilio_error(status, code, &message);
    }
    let sid = sim.new_sid();
    let text = form.get("Body").unwrap_or_default();
    let status = if from.is_none() { "accepted" } else { "queued" };
    let resource = json!({
        "account_sid": config.account_sid,
        "api_version": "2010-04-01",
        "body": text,
        "date_created": null,
        "date_sent": null,
        "date_updated": null,
        "direction": "outbound-api",
        "error_code": null,
        "error_message": null,
        "from": from,
        "messaging_service_sid": service,
        "num_media": "0",
        "num_segments": count_segments(text).segments.to_string(),
        "price": null,
        "price_unit": "USD",
        "sid": sid,
        "status": status,
        "subresource_uris": {
            "media": format!("/2010-04-01/Accounts/{}/Messages/{sid}/Media.json", config.account_sid)
        },
        "to": to,
        "uri": format!("/2010-04-01/Accounts/{}/Messages/{sid}.json", config.account_sid),
    });
    if let Some(url) = form.get("StatusCallback").filter(|u| !u.is_empty()) {
        let mut base = vec![
            ("AccountSid".to_owned(), config.account_sid.clone()),
            ("ApiVersion".to_owned(), "2010-04-01".to_owned()),
            ("From".to_owned(), from.unwrap_or_default().to_owned()),
            ("MessageSid".to_owned(), sid.clone()),
            ("SmsSid".to_owned(), sid.clone()),
            ("To".to_owned(), to.clone()),
        ];
        if let Some(service) = service {
            base.push(("MessagingServiceSid".to_owned(), service.to_owned()));
        }
        tokio::spawn(sim.clone().deliver(url.to_owned(), base, to.clone()));
    }
    attempt.sid = Some(sid);
    lock(&sim.0.attempts).push(attempt);
    sim.bump();
    (StatusCode::CREATED, axum::Json(resource)).into_response()
}
