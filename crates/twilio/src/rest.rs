//! Twilio REST client for creating calls and messages (feature `rest`).
//!
//! `POST {base}/2010-04-01/Accounts/{AccountSid}/Calls.json`, form-encoded, HTTP Basic auth with
//! the account SID and auth token or an API key SID and secret
//! (<https://www.twilio.com/docs/voice/api/call-resource#create-a-call-resource>,
//! <https://www.twilio.com/docs/iam/api-keys>). Twilio's error JSON (`code`, `message`,
//! `more_info`, `status`) is returned as [`RestError::Api`] so callers can pass it on. HTTP 429
//! and 5xx are retried with exponential backoff (honouring `Retry-After`), up to
//! [`RetryPolicy::max_retries`] times.
//!
//! Retrying a create after a 5xx can in principle place a call twice (Twilio may have created
//! it before failing); the issue asks for the retry, and Twilio's 5xx on create are rare.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Twilio's production API base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

/// Why a REST call failed.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// Twilio answered with an error body (after any retries).
    #[error("Twilio error {}: {}", .0.code.map_or_else(|| "?".to_owned(), |c| c.to_string()), .0.message)]
    Api(TwilioApiError),
    /// The request could not be sent or the response not read.
    #[error("cannot reach Twilio: {0}")]
    Transport(#[from] reqwest::Error),
    /// Twilio answered 2xx with a body that is not the expected resource.
    #[error("unexpected response from Twilio ({status}): {message}")]
    Decode {
        /// HTTP status.
        status: u16,
        /// What was wrong.
        message: String,
    },
}

/// Twilio's error JSON (<https://www.twilio.com/docs/usage/twilios-response#response-formats-exceptions>).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwilioApiError {
    /// Twilio error code, e.g. 21211.
    #[serde(default)]
    pub code: Option<u32>,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
    /// Link to the error's documentation.
    #[serde(default)]
    pub more_info: Option<String>,
    /// HTTP status.
    #[serde(default)]
    pub status: u16,
}

/// Credentials for HTTP Basic auth.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Account SID and auth token.
    AuthToken {
        /// `AC…`.
        account_sid: String,
        /// The auth token.
        auth_token: String,
    },
    /// API key SID (`SK…`) and secret, acting on `account_sid`.
    ApiKey {
        /// `AC…`: the account whose resources are used.
        account_sid: String,
        /// `SK…`.
        key_sid: String,
        /// The key's secret.
        secret: String,
    },
}

impl Credentials {
    fn account_sid(&self) -> &str {
        match self {
            Self::AuthToken { account_sid, .. } | Self::ApiKey { account_sid, .. } => account_sid,
        }
    }

    fn basic(&self) -> (&str, &str) {
        match self {
            Self::AuthToken {
                account_sid,
                auth_token,
            } => (account_sid, auth_token),
            Self::ApiKey {
                key_sid, secret, ..
            } => (key_sid, secret),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AuthToken { account_sid, .. } => f
                .debug_struct("AuthToken")
                .field("account_sid", account_sid)
                .field("auth_token", &"<redacted>")
                .finish(),
            Self::ApiKey {
                account_sid,
                key_sid,
                ..
            } => f
                .debug_struct("ApiKey")
                .field("account_sid", account_sid)
                .field("key_sid", key_sid)
                .field("secret", &"<redacted>")
                .finish(),
        }
    }
}

/// Retry of 429 and 5xx answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Delay before the first retry; doubles each time.
    pub base_delay: Duration,
    /// Longest delay (also caps `Retry-After`).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (0-based), unless the server said otherwise.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self
            .base_delay
            .saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX));
        retry_after.unwrap_or(backoff).min(self.max_delay)
    }
}

/// `MachineDetection` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineDetection {
    /// `Enable`: decide as soon as possible.
    Enable,
    /// `DetectMessageEnd`: wait for the greeting to end (to leave a message).
    DetectMessageEnd,
}

impl MachineDetection {
    fn as_str(self) -> &'static str {
        match self {
            Self::Enable => "Enable",
            Self::DetectMessageEnd => "DetectMessageEnd",
        }
    }
}

/// Parameters of a call create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateCall {
    /// `To` (E.164).
    pub to: String,
    /// `From`: a Twilio number or verified caller ID.
    pub from: String,
    /// `Url`: where Twilio fetches the TwiML when the call is answered.
    pub url: String,
    /// `StatusCallback`.
    pub status_callback: Option<String>,
    /// `StatusCallbackEvent`s, each sent as its own parameter.
    pub status_callback_events: Vec<String>,
    /// `MachineDetection`.
    pub machine_detection: Option<MachineDetection>,
    /// `AsyncAmd=true` with this `AsyncAmdStatusCallback`.
    pub async_amd_status_callback: Option<String>,
    /// `Record`.
    pub record: Option<bool>,
    /// `RecordingStatusCallback`.
    pub recording_status_callback: Option<String>,
    /// `Timeout` in seconds to ring.
    pub timeout_seconds: Option<u32>,
}

impl CreateCall {
    /// The form pairs in the order they are sent.
    pub fn form_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![
            ("To", self.to.clone()),
            ("From", self.from.clone()),
            ("Url", self.url.clone()),
        ];
        if let Some(callback) = &self.status_callback {
            pairs.push(("StatusCallback", callback.clone()));
            pairs.push(("StatusCallbackMethod", "POST".to_owned()));
        }
        for event in &self.status_callback_events {
            pairs.push(("StatusCallbackEvent", event.clone()));
        }
        if let Some(mode) = self.machine_detection {
            pairs.push(("MachineDetection", mode.as_str().to_owned()));
        }
        if let Some(callback) = &self.async_amd_status_callback {
            pairs.push(("AsyncAmd", "true".to_owned()));
            pairs.push(("AsyncAmdStatusCallback", callback.clone()));
            pairs.push(("AsyncAmdStatusCallbackMethod", "POST".to_owned()));
        }
        if let Some(record) = self.record {
            pairs.push(("Record", record.to_string()));
        }
        if let Some(callback) = &self.recording_status_callback {
            pairs.push(("RecordingStatusCallback", callback.clone()));
        }
        if let Some(timeout) = self.timeout_seconds {
            pairs.push(("Timeout", timeout.to_string()));
        }
        pairs
    }
}

/// The fields of a Call resource this project reads; others are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallResource {
    /// `CA…`.
    pub sid: String,
    /// `queued`, `ringing`, ...
    pub status: String,
    /// `outbound-api` for calls created here.
    #[serde(default)]
    pub direction: Option<String>,
    /// `to`.
    #[serde(default)]
    pub to: Option<String>,
    /// `from`.
    #[serde(default)]
    pub from: Option<String>,
    /// `account_sid`.
    #[serde(default)]
    pub account_sid: Option<String>,
    /// `date_created` (RFC 2822, e.g. `Tue, 14 Nov 2023 22:13:20 +0000`).
    #[serde(default)]
    pub date_created: Option<String>,
    /// `start_time` (RFC 2822); empty until the call is dialed.
    #[serde(default)]
    pub start_time: Option<String>,
}

/// Parameters of a message create (`POST Messages.json`,
/// <https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource>).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateMessage {
    /// `To`: E.164, or `whatsapp:+...`.
    pub to: String,
    /// `From`: a Twilio number, short code or `whatsapp:+...`; or use `messaging_service_sid`.
    pub from: Option<String>,
    /// `MessagingServiceSid` (`MG…`): Twilio picks the sender from the service's pool.
    pub messaging_service_sid: Option<String>,
    /// `Body` (at most 1600 characters).
    pub body: Option<String>,
    /// `ContentSid` (`HX…`): an approved template (WhatsApp outside the 24-hour window).
    pub content_sid: Option<String>,
    /// `ContentVariables`: the template's variables as a JSON object text.
    pub content_variables: Option<String>,
    /// `StatusCallback`: where Twilio posts `MessageStatus` changes.
    pub status_callback: Option<String>,
}

impl CreateMessage {
    /// The form pairs in the order they are sent.
    pub fn form_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![("To", self.to.clone())];
        for (name, value) in [
            ("From", &self.from),
            ("MessagingServiceSid", &self.messaging_service_sid),
            ("Body", &self.body),
            ("ContentSid", &self.content_sid),
            ("ContentVariables", &self.content_variables),
            ("StatusCallback", &self.status_callback),
        ] {
            if let Some(value) = value {
                pairs.push((name, value.clone()));
            }
        }
        pairs
    }
}

/// The fields of a Message resource this project reads; others are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageResource {
    /// `SM…` (or `MM…`).
    pub sid: String,
    /// `accepted` (Messaging Service), `queued`, `sending`, `sent`, `delivered`, ...
    pub status: String,
    /// `num_segments`: a string in Twilio's JSON.
    #[serde(default)]
    pub num_segments: Option<String>,
    /// `error_code`, when the message already failed.
    #[serde(default)]
    pub error_code: Option<u32>,
    /// `to`.
    #[serde(default)]
    pub to: Option<String>,
    /// `from` (null until a Messaging Service picked a sender).
    #[serde(default)]
    pub from: Option<String>,
}

/// Filters of the call list (`GET Calls.json`), as Twilio names them.
/// (<https://www.twilio.com/docs/voice/api/call-resource#read-multiple-call-resources>)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallListFilter {
    /// `To`: calls to this number.
    pub to: Option<String>,
    /// `From`: calls from this number.
    pub from: Option<String>,
    /// `StartTime>`: calls that started on or after this UTC date (`YYYY-MM-DD`).
    pub started_on_or_after: Option<String>,
}

/// Most pages [`RestClient::list_calls`] follows.
const MAX_LIST_PAGES: usize = 20;

/// One page of the call list.
#[derive(Debug, Deserialize)]
struct CallPage {
    calls: Vec<CallResource>,
    #[serde(default)]
    next_page_uri: Option<String>,
}

/// A Twilio REST client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RestClient {
    http: reqwest::Client,
    base_url: String,
    credentials: Credentials,
    retry: RetryPolicy,
}

impl RestClient {
    /// A client for `base_url` (no trailing `/` needed; [`DEFAULT_BASE_URL`] in production),
    /// with a 15 s request timeout.
    pub fn new(
        base_url: impl Into<String>,
        credentials: Credentials,
        retry: RetryPolicy,
    ) -> Result<Self, RestError> {
        voxbridge_config::tls::install_ring_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("voxbridge/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            credentials,
            retry,
        })
    }

    /// This client with another retry policy (the message queue retries on its own schedule,
    /// so it sends with `max_retries: 0`).
    #[must_use]
    pub fn with_retry(&self, retry: RetryPolicy) -> Self {
        Self {
            retry,
            ..self.clone()
        }
    }

    /// The `Messages.json` URL of the account.
    pub fn messages_url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.base_url,
            self.credentials.account_sid()
        )
    }

    /// Creates (sends) a message.
    pub async fn create_message(
        &self,
        message: &CreateMessage,
    ) -> Result<MessageResource, RestError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(message.form_pairs())
            .finish();
        self.post_form(&self.messages_url(), body).await
    }

    /// The `Calls.json` URL of the account.
    pub fn calls_url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Calls.json",
            self.base_url,
            self.credentials.account_sid()
        )
    }

    /// The URL of one call resource (`Calls/{CallSid}.json`).
    pub fn call_url(&self, call_sid: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Calls/{call_sid}.json",
            self.base_url,
            self.credentials.account_sid()
        )
    }

    /// Creates a call.
    pub async fn create_call(&self, call: &CreateCall) -> Result<CallResource, RestError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(call.form_pairs())
            .finish();
        self.post_form(&self.calls_url(), body).await
    }

    /// Replaces the TwiML of a live call (`POST Calls/{CallSid}.json` with `Twiml`), e.g. to
    /// leave a voicemail message once asynchronous AMD reports a machine.
    /// (<https://www.twilio.com/docs/voice/api/call-resource#update-a-call-resource>)
    pub async fn update_call_twiml(
        &self,
        call_sid: &str,
        twiml: &str,
    ) -> Result<CallResource, RestError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("Twiml", twiml)
            .finish();
        self.post_form(&self.call_url(call_sid), body).await
    }

    /// Lists the account's calls matching `filter`, newest first, following `next_page_uri`
    /// (at most 20 pages of 50).
    pub async fn list_calls(
        &self,
        filter: &CallListFilter,
    ) -> Result<Vec<CallResource>, RestError> {
        let mut query: Vec<(&str, &str)> = vec![("PageSize", "50")];
        if let Some(to) = &filter.to {
            query.push(("To", to.as_str()));
        }
        if let Some(from) = &filter.from {
            query.push(("From", from.as_str()));
        }
        if let Some(date) = &filter.started_on_or_after {
            // Twilio spells the inequality in the parameter name: `StartTime>=2023-11-14`.
            query.push(("StartTime>", date.as_str()));
        }
        let mut url = format!(
            "{}?{}",
            self.calls_url(),
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&query)
                .finish()
        );
        let mut calls = Vec::new();
        for _ in 0..MAX_LIST_PAGES {
            let page: CallPage = self.send(|| self.http.get(&url)).await?;
            calls.extend(page.calls);
            match page.next_page_uri.filter(|u| !u.is_empty()) {
                Some(next) => url = format!("{}{next}", self.base_url),
                None => break,
            }
        }
        Ok(calls)
    }

    /// POSTs a form; see [`RestClient::send`].
    async fn post_form<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        body: String,
    ) -> Result<T, RestError> {
        self.send(|| {
            self.http
                .post(url)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body.clone())
        })
        .await
    }

    /// Sends the request `build` makes with Basic auth; retries 429/5xx with backoff
    /// (honouring `Retry-After`); decodes the JSON answer or Twilio's error JSON.
    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<T, RestError> {
        let (user, password) = self.credentials.basic();
        let mut attempt = 0;
        loop {
            let response = build()
                .basic_auth(user, Some(password))
                .header(reqwest::header::ACCEPT, "application/json")
                .send()
                .await?;
            let status = response.status();
            let retryable = status.as_u16() == 429 || status.is_server_error();
            if retryable && attempt < self.retry.max_retries {
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let delay = self.retry.delay(attempt, retry_after);
                attempt += 1;
                tokio::time::sleep(delay).await;
                continue;
            }
            let bytes = response.bytes().await?;
            if status.is_success() {
                return serde_json::from_slice(&bytes).map_err(|e| RestError::Decode {
                    status: status.as_u16(),
                    message: e.to_string(),
                });
            }
            let error = serde_json::from_slice::<TwilioApiError>(&bytes)
                .ok()
                .filter(|e| !e.message.is_empty())
                .map_or_else(
                    || TwilioApiError {
                        code: None,
                        message: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
                        more_info: None,
                        status: status.as_u16(),
                    },
                    |mut e| {
                        if e.status == 0 {
                            e.status = status.as_u16();
                        }
                        e
                    },
                );
            return Err(RestError::Api(error));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_call_form_has_every_event_and_async_amd() {
        let call = CreateCall {
            to: "+14155550100".into(),
            from: "+14155550199".into(),
            url: "https://x.test/answer".into(),
            status_callback: Some("https://x.test/status".into()),
            status_callback_events: ["initiated", "ringing", "answered", "completed"]
                .map(String::from)
                .to_vec(),
            machine_detection: Some(MachineDetection::DetectMessageEnd),
            async_amd_status_callback: Some("https://x.test/amd".into()),
            record: Some(true),
            ..CreateCall::default()
        };
        let pairs = call.form_pairs();
        let events: Vec<_> = pairs
            .iter()
            .filter(|(k, _)| *k == "StatusCallbackEvent")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(events, ["initiated", "ringing", "answered", "completed"]);
        assert!(pairs.contains(&("MachineDetection", "DetectMessageEnd".into())));
        assert!(pairs.contains(&("AsyncAmd", "true".into())));
        assert!(pairs.contains(&("Record", "true".into())));
    }

    #[test]
    fn create_message_form_names_the_sender_once() {
        let message = CreateMessage {
            to: "whatsapp:+14155550100".into(),
            messaging_service_sid: Some("MG1".into()),
            body: Some("hi".into()),
            status_callback: Some("https://x.test/twilio/sms/status".into()),
            ..CreateMessage::default()
        };
        let pairs = message.form_pairs();
        let names: Vec<_> = pairs.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            ["To", "MessagingServiceSid", "Body", "StatusCallback"]
        );
        assert!(pairs.contains(&("To", "whatsapp:+14155550100".into())));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        assert_eq!(policy.delay(0, None), Duration::from_millis(100));
        assert_eq!(policy.delay(2, None), Duration::from_millis(400));
        assert_eq!(policy.delay(9, None), Duration::from_secs(1));
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(30))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let creds = Credentials::ApiKey {
            account_sid: "AC1".into(),
            key_sid: "SK1".into(),
            secret: "hunter2".into(),
        };
        assert!(!format!("{creds:?}").contains("hunter2"));
    }
}
