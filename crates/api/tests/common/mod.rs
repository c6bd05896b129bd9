//! Test harness: the API on 127.0.0.1:0 with a temp SQLite file and a virtual clock, a local
//! stand-in for Twilio's REST API, and a client that signs webhooks exactly as Twilio does.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::field_reassign_with_default,
    clippy::assigning_clones
)]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use serde_json::{Value, json};
use voxbridge_api::{ApiConfig, AppState, ManualClock, Secret, router};
use voxbridge_store::{Store, StoreConfig};
use voxbridge_twilio::RequestValidator;
use voxbridge_twilio::webhook::FormParams;

pub const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
pub const TOKEN: &str = "test-auth-token";
pub const BEARER: &str = "test-bearer";
pub const FROM: &str = "+14155550199";
/// Twilio's stand-in refuses this number with error 21211.
pub const INVALID_TO: &str = "+15005550001";
/// Twilio's stand-in answers 503 twice for this number, then creates the call.
pub const FLAKY_TO: &str = "+15005550009";
/// Twilio's stand-in always answers 500 for this number (the call's fate is unknown).
pub const BROKEN_TO: &str = "+15005550010";
pub const T0: i64 = 1_700_000_000_000;

/// One `POST Calls/{sid}.json`: the call SID and its form pairs.
pub type CallUpdate = (String, Vec<(String, String)>);

/// What the stand-in saw.
#[derive(Debug, Default)]
pub struct FakeTwilio {
    pub creates: Mutex<Vec<Vec<(String, String)>>>,
    /// Call updates: the call SID and the form of each.
    pub updates: Mutex<Vec<CallUpdate>>,
    pub attempts: Mutex<u32>,
    pub flaky_failures: Mutex<u32>,
}

fn authorized(headers: &HeaderMap, account: &str) -> bool {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:{TOKEN}"))
    );
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    auth == Some(expected.as_str()) && account == ACCOUNT
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401})),
    )
        .into_response()
}

/// `POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`: update a live call.
async fn fake_update_call(
    State(fake): State<Arc<FakeTwilio>>,
    Path((account, call)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if !authorized(&headers, &account) {
        return unauthorized();
    }
    let Some(sid) = call.strip_suffix(".json") else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"code": 20404, "message": "The requested resource was not found", "more_info": "https://www.twilio.com/docs/errors/20404", "status": 404})),
        )
            .into_response();
    };
    let form = FormParams::parse(body.as_bytes());
    fake.updates
        .lock()
        .unwrap()
        .push((sid.to_owned(), form.as_pairs().to_vec()));
    (
        StatusCode::OK,
        axum::Json(json!({
            "account_sid": ACCOUNT,
            "sid": sid,
            "status": "in-progress",
            "direction": "outbound-api",
            "uri": format!("/2010-04-01/Accounts/{ACCOUNT}/Calls/{sid}.json"),
        })),
    )
        .into_response()
}

async fn fake_calls(
    State(fake): State<Arc<FakeTwilio>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    *fake.attempts.lock().unwrap() += 1;
    if !authorized(&headers, &account) {
        return unauthorized();
    }
    let form = FormParams::parse(body.as_bytes());
    let to = form.get("To").unwrap_or_default().to_owned();
    if to == INVALID_TO {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({
                "code": 21211,
                "message": format!("The 'To' number {to} is not a valid phone number."),
                "more_info": "https://www.twilio.com/docs/errors/21211",
                "status": 400
            })),
        )
            .into_response();
    }
    if to == BROKEN_TO {
        return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
    }
    if to == FLAKY_TO {
        let mut failures = fake.flaky_failures.lock().unwrap();
        if *failures < 2 {
            *failures += 1;
            return (StatusCode::SERVICE_UNAVAILABLE, "upstream busy").into_response();
        }
    }
    let mut creates = fake.creates.lock().unwrap();
    creates.push(form.as_pairs().to_vec());
    let sid = format!("CA{:032x}", creates.len());
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "account_sid": ACCOUNT,
            "annotation": null,
            "answered_by": null,
            "api_version": "2010-04-01",
            "caller_name": null,
            "date_created": null,
            "date_updated": null,
            "direction": "outbound-api",
            "duration": null,
            "end_time": null,
            "forwarded_from": null,
            "from": form.get("From"),
            "from_formatted": form.get("From"),
            "group_sid": null,
            "parent_call_sid": null,
            "phone_number_sid": "PN0123456789abcdef0123456789abcdef",
            "price": null,
            "price_unit": "USD",
            "sid": sid,
            "start_time": null,
            "status": "queued",
            "subresource_uris": {"recordings": format!("/2010-04-01/Accounts/{ACCOUNT}/Calls/{sid}/Recordings.json")},
            "to": to,
            "to_formatted": to,
            "trunk_sid": null,
            "uri": format!("/2010-04-01/Accounts/{ACCOUNT}/Calls/{sid}.json"),
            "queue_time": "0"
        })),
    )
        .into_response()
}

/// Starts the stand-in; returns its base URL.
pub async fn start_fake_twilio() -> (String, Arc<FakeTwilio>) {
    let fake = Arc::new(FakeTwilio::default());
    let app = Router::new()
        .route(
            "/2010-04-01/Accounts/{account}/Calls.json",
            post(fake_calls),
        )
        .route(
            "/2010-04-01/Accounts/{account}/Calls/{call}",
            post(fake_update_call),
        )
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), fake)
}

pub struct Harness {
    pub base: String,
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    pub http: reqwest::Client,
    pub signer: RequestValidator,
    pub fake: Arc<FakeTwilio>,
    pub db_url: String,
    pub server: tokio::task::JoinHandle<()>,
    pub dir: tempfile::TempDir,
}

pub fn base_config() -> ApiConfig {
    let mut config = ApiConfig::default();
    config.api_token = Secret::new(BEARER);
    config.twilio.account_sid = ACCOUNT.to_owned();
    config.twilio.auth_token = Secret::new(TOKEN);
    config.twilio.from_number = FROM.to_owned();
    config.twilio.retry_base_delay = std::time::Duration::from_millis(1);
    config.connect.relay_url = "wss://media.example.com/relay".to_owned();
    config.connect.stream_url = "wss://media.example.com/media".to_owned();
    // One call per screening: these tests follow a single call's states and webhooks;
    // tests/outreach.rs turns retries on.
    config.retries.max_attempts = 1;
    config
}

pub async fn start(configure: impl FnOnce(&mut ApiConfig)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}/api.db", dir.path().display());
    start_on(dir, db_url, configure).await
}

/// [`start`] on the store at `db_url` (`dir` is kept for the harness's lifetime).
pub async fn start_on(
    dir: tempfile::TempDir,
    db_url: String,
    configure: impl FnOnce(&mut ApiConfig),
) -> Harness {
    let (twilio_url, fake) = start_fake_twilio().await;
    let store = Store::connect(&StoreConfig {
        database_url: db_url.clone().into(),
        ..StoreConfig::default()
    })
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = base_config();
    config.public_url = base.clone();
    config.twilio.rest_base_url = twilio_url;
    configure(&mut config);
    let clock = Arc::new(ManualClock::new(T0));
    let state = AppState::new(config, store, clock.clone()).unwrap();
    let app = router(state.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    voxbridge_config::tls::install_ring_provider();
    Harness {
        base,
        state,
        clock,
        http: reqwest::Client::new(),
        signer: RequestValidator::new(TOKEN),
        fake,
        db_url,
        server,
        dir,
    }
}

impl Harness {
    /// POSTs a form webhook signed as Twilio signs it.
    pub async fn webhook(&self, path: &str, pairs: &[(&str, &str)]) -> reqwest::Response {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let url = format!("{}{path}", self.base);
        let signature = self.signer.sign(&url, &pairs);
        self.http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", signature)
            .body(FormParams::from_pairs(pairs).to_body())
            .send()
            .await
            .unwrap()
    }

    /// `GET /metrics`: the exposition text.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn api_get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(BEARER)
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        (status, response.json().await.unwrap())
    }

    pub async fn create_screening(&self, body: &Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}/api/screenings", self.base))
            .bearer_auth(BEARER)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        (status, response.json().await.unwrap())
    }
}

/// The parameters of a call-progress event.
pub fn status_params<'a>(
    call_sid: &'a str,
    status: &'a str,
    sequence: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("AccountSid", ACCOUNT),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", call_sid),
        ("CallStatus", status),
        ("Called", "+14158675309"),
        ("Caller", FROM),
        ("CallbackSource", "call-progress-events"),
        ("Direction", "outbound-api"),
        ("From", FROM),
        ("SequenceNumber", sequence),
        ("Timestamp", "Tue, 14 Nov 2023 22:13:20 +0000"),
        ("To", "+14158675309"),
    ]
}

#[allow(unused_imports)]
pub use voxbridge_testkit::TestDatabase;

/// The Redis server tests use (`REDIS_URL`, else `redis://127.0.0.1:6379`), if one answers
/// `PING`; otherwise the skip is recorded (a failure under CI).
pub fn redis_url(test: &str) -> Option<String> {
    voxbridge_testkit::require_redis(test)
}

/// A Redis key prefix no other test run uses.
pub fn unique_redis_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("voxbridge-api-test:{}:{nanos}:", std::process::id())
}

impl Harness {
    /// An inbound call webhook (`CallSid` built from `sid_n`) from `from`: status and body.
    pub async fn inbound_call(&self, sid_n: usize, from: &str) -> (u16, String) {
        let sid = format!("CA{sid_n:032x}");
        let r = self
            .webhook(
                "/twilio/voice/inbound",
                &[
                    ("AccountSid", ACCOUNT),
                    ("CallSid", &sid),
                    ("CallStatus", "ringing"),
                    ("Direction", "inbound"),
                    ("From", from),
                    ("To", FROM),
                ],
            )
            .await;
        (r.status().as_u16(), r.text().await.unwrap())
    }
}
