//! Twilio-facing endpoints. Each one checks `X-Twilio-Signature` first (form bodies, and JSON
//! bodies with `bodySHA256`; <https://www.twilio.com/docs/usage/webhooks/webhooks-security>),
//! then parses the typed payload (400 with the field on error), then commits its record, and
//! only then answers 2xx (503 if the store is down, so Twilio retries). The one exception is the
//! inbound voice webhook, which fails open: a caller is answered even when the store is down
//! (see [`inbound`]).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, OriginalUri, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::Instrument as _;
use voxbridge_store::{
    AmdEvent, CallStatusEvent, InboundClaim, InboundDecision, RateLimitDecision, RecordingEvent,
    RelaySessionEvent, ScreeningRecord,
};
use voxbridge_twilio::E164;
use voxbridge_twilio::call::AnsweredBy;
use voxbridge_twilio::e164::Address;
use voxbridge_twilio::sid::CallSid;
use voxbridge_twilio::twiml::{
    Connect, ConversationRelay, Dial, Hangup, Number, Parameter, Reject, RejectReason,
    Response as Twiml, Say, Stream, TwimlError,
};
use voxbridge_twilio::webhook::{
    AmdCallback, CallStatusCallback, FormParams, RecordingStatusCallback, RelaySessionCallback,
};

use crate::config::{ConnectMode, InboundMode};
use crate::{ApiError, AppState, TwilioOperation, caller_key};

/// The parameters of a Twilio webhook whose `X-Twilio-Signature` checked out. Every
/// Twilio-facing handler takes this extractor, so none can skip the check; a bad or missing
/// signature is answered 403 before the handler runs (body-size and read errors as axum
/// answers them).
pub(crate) struct TwilioForm(pub(crate) FormParams);

impl FromRequest<AppState> for TwilioForm {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        // Behind `nest`, the signed URL is the one Twilio requested, not the inner route's.
        let uri = request
            .extensions()
            .get::<OriginalUri>()
            .map_or_else(|| request.uri().clone(), |original| original.0.clone());
        let headers = request.headers().clone();
        let body = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        verify(state, &uri, &headers, &body)
            .map(Self)
            .map_err(IntoResponse::into_response)
    }
}

/// Validates the signature of a webhook and returns its parameters.
pub(crate) fn verify(
    state: &AppState,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<FormParams, ApiError> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let url = state.0.config.public(path);
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    let validator = &state.0.validator;
    let checked = if is_json {
        validator
            .validate_json(&url, body, signature)
            .map(|()| json_params(body))
    } else {
        let params = FormParams::parse(body);
        validator
            .validate_form(&url, params.as_pairs(), signature)
            .map(|()| Ok(params))
    };
    match checked {
        Ok(params) => params,
        Err(error) => {
            state.0.metrics.signature_failures.inc();
            Err(ApiError::Forbidden(error))
        }
    }
}

/// A JSON webhook body as parameters: a flat object; strings as they are, other scalars as
/// their JSON text.
fn json_params(body: &[u8]) -> Result<FormParams, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON body: {e}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(ApiError::BadRequest(
            "JSON webhook body must be an object".to_owned(),
        ));
    };
    Ok(FormParams::from_pairs(
        map.into_iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect(),
    ))
}

fn params_json(params: &FormParams) -> String {
    let mut map = serde_json::Map::new();
    for (k, v) in params.as_pairs() {
        map.entry(k.clone())
            .or_insert_with(|| serde_json::Value::String(v.clone()));
    }
    serde_json::Value::Object(map).to_string()
}

fn twiml(response: &Twiml) -> Response {
    xml(response.to_xml())
}

fn xml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

fn required_call_sid(params: &FormParams) -> Result<CallSid, ApiError> {
    let text = params
        .get("CallSid")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::BadRequest("missing required parameter CallSid".to_owned()))?;
    CallSid::new(text).map_err(|e| ApiError::BadRequest(format!("invalid CallSid: {e}")))
}

fn twiml_error(error: &TwimlError) -> ApiError {
    ApiError::Internal(format!("cannot build TwiML: {error}"))
}

/// TwiML that connects the call to the agent with `parameters` as `<Parameter>`s.
pub(crate) fn agent_twiml(
    state: &AppState,
    parameters: &[(&str, &str)],
) -> Result<Twiml, ApiError> {
    let config = &state.0.config;
    let mut built = Vec::with_capacity(parameters.len());
    for (name, value) in parameters {
        built.push(Parameter::new(*name, *value).map_err(|e| twiml_error(&e))?);
    }
    let connect = match config.connect.mode {
        ConnectMode::Relay => {
            let mut relay = ConversationRelay::new(config.connect.relay_url.clone())
                .map_err(|e| twiml_error(&e))?;
            if !config.connect.welcome_greeting.is_empty() {
                relay = relay.welcome_greeting(config.connect.welcome_greeting.clone());
            }
            for parameter in built {
                relay = relay.parameter(parameter);
            }
            Connect::conversation_relay(relay).action(config.public("/twilio/relay/action"))
        }
        ConnectMode::Stream => {
            let mut stream =
                Stream::new(config.connect.stream_url.clone()).map_err(|e| twiml_error(&e))?;
            if !config.connect.agent.is_empty() {
                stream = stream.parameter(
                    Parameter::new("agent", config.connect.agent.as_str())
                        .map_err(|e| twiml_error(&e))?,
                );
            }
            for parameter in built {
                stream = stream.parameter(parameter);
            }
            Connect::stream(stream)
        }
    };
    Ok(Twiml::new().push(connect))
}

/// `POST /twilio/voice/answer`: the screening call was answered.
pub(crate) async fn answer(
    State(state): State<AppState>,
    TwilioForm(params): TwilioForm,
) -> Result<Response, ApiError> {
    let call_sid = required_call_sid(&params)?;
    let span = tracing::info_span!("call", call_sid = %call_sid);
    async move {
        let answered_by = params
            .get("AnsweredBy")
            .filter(|s| !s.is_empty())
            .and_then(|s| AnsweredBy::parse(s).ok());
        if let Some(answered_by) = answered_by {
            state
                .0
                .store
                .record_amd(&AmdEvent {
                    call_sid: call_sid.to_string(),
                    answered_by: answered_by.as_str().to_owned(),
                    detection_ms: params
                        .get("MachineDetectionDuration")
                        .and_then(|v| v.parse().ok()),
                    params_json: params_json(&params),
                    received_at_ms: state.now_ms(),
                })
                .await?;
            if answered_by.is_machine() {
                tracing::info!(%answered_by, "voicemail: leaving the message and hanging up");
                state.0.metrics.webhooks_accepted.inc();
                let screening = state
                    .0
                    .store
                    .screening_for_call(call_sid.as_str())
                    .await
                    .unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "voicemail: screening lookup failed; the message is not personalised");
                        None
                    });
                return Ok(twiml(&voicemail_twiml(&state, screening.as_ref())));
            }
        }
        if state.line_busy() {
            tracing::warn!(
                "the bridge is at media.max_calls: telling the candidate the line is busy"
            );
            state.0.metrics.busy.inc();
            state.0.metrics.webhooks_accepted.inc();
            return Ok(twiml(
                &Twiml::new()
                    .push(Say::new(state.0.config.busy_message.clone()))
                    .push(Hangup),
            ));
        }
        let screening = state.0.store.screening_for_call(call_sid.as_str()).await?;
        let mut parameters: Vec<(&str, &str)> =
            vec![("callSid", call_sid.as_str()), ("direction", "outbound")];
        if let Some(s) = &screening {
            parameters.extend([
                ("candidateId", s.candidate_id.as_str()),
                ("firstName", s.first_name.as_str()),
                ("jobTitle", s.job_title.as_str()),
                ("screening", s.screening.as_str()),
            ]);
        } else {
            tracing::warn!(
                "answered call has no screening record; connecting without candidate data"
            );
        }
        let response = agent_twiml(&state, &parameters)?;
        state.0.metrics.webhooks_accepted.inc();
        Ok(twiml(&response))
    }
    .instrument(span)
    .await
}

/// How a claim on an inbound call may stay undecided before a redelivery takes it over (the
/// process that claimed it died before deciding).
const STALE_CLAIM_MS: i64 = 30_000;

/// How long a redelivery waits for the decision of a first delivery still being decided.
const PENDING_WAIT: Duration = Duration::from_secs(5);

/// What the limiter made of an incoming call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// On the allowlist: not counted.
    Allowlisted,
    /// Counted and within the limit.
    Allowed,
    /// Over the limit.
    Blocked,
    /// The limiter's store failed: allowed (fail open), not counted.
    FailOpen,
}

impl Verdict {
    fn allowed(self) -> bool {
        self != Self::Blocked
    }

    fn label(self) -> &'static str {
        match self {
            Self::Allowlisted => "allowlisted",
            Self::Allowed => "allowed",
            Self::Blocked => "blocked",
            Self::FailOpen => "fail_open",
        }
    }
}

/// The rate-limit decision for an incoming call from `key`, logged as
/// `ALLOWED: +1415***5309 (3/5 calls in last hour)` or `BLOCKED: ...` (`masked` is the caller
/// masked and escaped for logs). Allowlisted numbers bypass the limiter; if the limiter's store
/// fails the call is allowed (fail open), logged and counted. Returns the verdict and the count
/// in the window.
async fn decide_inbound(state: &AppState, key: &str, masked: &str, now: i64) -> (Verdict, u32) {
    let window = state.0.limiter.window();
    let window_text = if window.window_ms == 3_600_000 {
        "last hour".to_owned()
    } else {
        format!("last {} s", window.window_ms / 1000)
    };
    if state.0.allowlist.contains(key) {
        tracing::info!("ALLOWED: {masked} (allowlisted)");
        return (Verdict::Allowlisted, 0);
    }
    match state.0.limiter.check(key, now).await {
        Ok(d) if d.allowed => {
            tracing::info!(
                "ALLOWED: {masked} ({}/{} calls in {window_text})",
                d.count,
                d.limit
            );
            (Verdict::Allowed, d.count)
        }
        Ok(d) => {
            tracing::warn!(
                "BLOCKED: {masked} ({}/{} calls in {window_text})",
                d.count,
                d.limit
            );
            (Verdict::Blocked, d.count)
        }
        Err(error) => {
            state.0.metrics.rate_limit_store_failures.inc();
            tracing::error!(%error, "ALLOWED: {masked} (rate limiter unavailable: failing open)");
            (Verdict::FailOpen, 0)
        }
    }
}

/// The TwiML an incoming call gets for `verdict`. Never fails on the caller's input: a `From`
/// too long for a `<Parameter>` is left out of the parameters.
fn inbound_twiml(
    state: &AppState,
    call_sid: &CallSid,
    from: &Address,
    verdict: Verdict,
) -> Result<Twiml, ApiError> {
    if !verdict.allowed() {
        return Ok(Twiml::new()
            .push(Say::new(
                "You have exceeded the maximum number of calls allowed. Please try again later.",
            ))
            .push(Hangup));
    }
    match state.0.config.inbound.mode {
        InboundMode::Agent => {
            let from_text = from.to_string();
            let mut parameters = vec![("callSid", call_sid.as_str()), ("direction", "inbound")];
            if Parameter::new("from", from_text.as_str()).is_ok() {
                parameters.push(("from", from_text.as_str()));
            }
            agent_twiml(state, &parameters)
        }
        InboundMode::Dial => {
            let number = E164::parse(&state.0.config.inbound.dial_number)
                .map_err(|e| ApiError::Internal(format!("inbound.dial_number: {e}")))?;
            Ok(Twiml::new().push(Dial::new().number(Number::new(number))))
        }
    }
}

/// `POST /twilio/voice/inbound`: an incoming call, rate-limited per caller.
///
/// A `CallSid` counts once: the first delivery claims the call in `inbound_calls`, decides and
/// stores the decision with the TwiML it answers; a redelivery (Twilio's retry, a replayed
/// request) gets that same TwiML and is not counted. The path fails open: if the store is
/// down the call is connected, not counted, and `rate_limit_store_failures` goes up. While the
/// bridge is at its call limit (one-process mode), an agent call gets `<Reject reason="busy"/>`
/// before any of that: the caller hears a busy signal and is not counted.
pub(crate) async fn inbound(
    State(state): State<AppState>,
    TwilioForm(params): TwilioForm,
) -> Result<Response, ApiError> {
    let call_sid = required_call_sid(&params)?;
    let span = tracing::info_span!("call", call_sid = %call_sid);
    async move {
        let from_text = params.get("From").unwrap_or_default();
        let from = Address::parse(from_text);
        let key = caller_key(&from);
        let masked = from.masked();
        let now = state.now_ms();
        let store = &state.0.store;
        let body = if state.0.config.inbound.mode == InboundMode::Agent && state.line_busy() {
            // Not claimed and not counted: a redelivery is decided afresh.
            tracing::warn!("REJECTED busy: {masked} (the bridge is at media.max_calls)");
            state.0.metrics.busy.inc();
            Twiml::new()
                .push(Reject::new().reason(RejectReason::Busy))
                .to_xml()
        } else {
            decide_inbound_twiml(&state, &call_sid, &from, &key, &masked, now).await?
        };
        let status = CallStatusEvent {
            call_sid: call_sid.to_string(),
            status: params
                .get("CallStatus")
                .filter(|s| !s.is_empty())
                .unwrap_or("ringing")
                .to_owned(),
            direction: Some("inbound".to_owned()),
            from: Some(from_text.to_owned()),
            to: params.get("To").map(str::to_owned),
            params_json: params_json(&params),
            received_at_ms: now,
            ..CallStatusEvent::default()
        };
        if let Err(error) = store.record_call_status(&status).await {
            tracing::warn!(%error, "cannot store the inbound call's status: answering anyway");
        }
        state.0.metrics.webhooks_accepted.inc();
        Ok(xml(body))
    }
    .instrument(span)
    .await
}

/// The TwiML for the delivery of an incoming call that is not answered busy: the first
/// delivery claims the call, decides and stores the decision; a redelivery answers as the
/// first time; a store failure fails open.
async fn decide_inbound_twiml(
    state: &AppState,
    call_sid: &CallSid,
    from: &Address,
    key: &str,
    masked: &str,
    now: i64,
) -> Result<String, ApiError> {
    let store = &state.0.store;
    let claim = store
        .claim_inbound_call(call_sid.as_str(), key, now, now - STALE_CLAIM_MS)
        .await;
    let claim = match claim {
        Ok(InboundClaim::Pending) => match wait_for_decision(state, call_sid).await {
            Some(decided) => Ok(InboundClaim::Decided(decided)),
            None => Ok(InboundClaim::Pending),
        },
        other => other,
    };
    let body = match claim {
        Ok(InboundClaim::Decided(decided)) => {
            tracing::info!(
                decision = %decided.decision,
                "repeated delivery of an inbound call: answering as the first time"
            );
            decided.twiml
        }
        Ok(InboundClaim::Pending) => {
            tracing::warn!(
                "inbound call still being decided by another delivery: connecting without counting"
            );
            inbound_twiml(state, call_sid, from, Verdict::FailOpen)?.to_xml()
        }
        Ok(InboundClaim::Claimed) => {
            let (verdict, count) = decide_inbound(state, key, masked, now).await;
            let counter = if verdict.allowed() {
                &state.0.metrics.rate_limit_allowed
            } else {
                &state.0.metrics.rate_limit_blocked
            };
            counter.inc();
            let xml = inbound_twiml(state, call_sid, from, verdict)?.to_xml();
            let decision = RateLimitDecision {
                number: key.to_owned(),
                allowed: verdict.allowed(),
                recent_count: i64::from(count),
                decided_at_ms: now,
            };
            if let Err(error) = store
                .decide_inbound_call(call_sid.as_str(), verdict.label(), &decision, &xml)
                .await
            {
                store_failed(state, &error, "cannot store the inbound decision");
            }
            xml
        }
        Err(error) => {
            store_failed(
                state,
                &error,
                &format!("ALLOWED: {masked} (store unavailable: failing open, not counted)"),
            );
            state.0.metrics.rate_limit_allowed.inc();
            inbound_twiml(state, call_sid, from, Verdict::FailOpen)?.to_xml()
        }
    };
    Ok(body)
}

/// A store failure on the inbound path, which fails open: logged and counted.
fn store_failed(state: &AppState, error: &voxbridge_store::StoreError, what: &str) {
    state.0.metrics.rate_limit_store_failures.inc();
    tracing::warn!(%error, "{what}");
}

/// Waits up to [`PENDING_WAIT`] for the decision of a delivery of `call_sid` being decided.
async fn wait_for_decision(state: &AppState, call_sid: &CallSid) -> Option<InboundDecision> {
    let deadline = tokio::time::Instant::now() + PENDING_WAIT;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        match state.0.store.inbound_decision(call_sid.as_str()).await {
            Ok(Some(decided)) => return Some(decided),
            Ok(None) => {}
            Err(_) => return None,
        }
    }
    None
}

fn accepted(state: &AppState) -> Response {
    state.0.metrics.webhooks_accepted.inc();
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /twilio/voice/status`: call progress; stored, applied only if newer.
pub(crate) async fn status(
    State(state): State<AppState>,
    TwilioForm(params): TwilioForm,
) -> Result<Response, ApiError> {
    let callback = CallStatusCallback::from_params(params)?;
    let span = tracing::info_span!("call", call_sid = %callback.call_sid);
    async move {
        let event = CallStatusEvent {
            call_sid: callback.call_sid.to_string(),
            status: callback.call_status.as_str().to_owned(),
            sequence_number: callback.sequence_number.and_then(|n| i64::try_from(n).ok()),
            timestamp_ms: callback
                .timestamp
                .map(|t| t.unix_seconds().saturating_mul(1000)),
            direction: callback.direction.as_ref().map(|d| d.as_str().to_owned()),
            from: Some(callback.from.to_string()),
            to: Some(callback.to.to_string()),
            duration_seconds: callback.call_duration_seconds.map(i64::from),
            answered_by: callback.answered_by.map(|a| a.as_str().to_owned()),
            recording_url: callback.recording_url.clone(),
            recording_sid: callback.recording_sid.as_ref().map(ToString::to_string),
            params_json: params_json(&callback.params),
            received_at_ms: state.now_ms(),
        };
        let outcome = state.0.store.record_call_status(&event).await?;
        crate::console::publish(&state, &event.call_sid);
        tracing::info!(
            status = %event.status,
            sequence = ?event.sequence_number,
            applied = outcome.applied,
            duplicate = outcome.duplicate,
            "call status"
        );
        Ok(accepted(&state))
    }
    .instrument(span)
    .await
}

/// `POST /twilio/voice/amd`: asynchronous answering-machine detection result.
pub(crate) async fn amd(
    State(state): State<AppState>,
    TwilioForm(params): TwilioForm,
) -> Result<Response, ApiError> {
    let callback = AmdCallback::from_params(params)?;
    let span = tracing::info_span!("call", call_sid = %callback.call_sid);
    async move {
        let outcome = state
            .0
            .store
            .record_amd(&AmdEvent {
                call_sid: callback.call_sid.to_string(),
                answered_by: callback.answered_by.as_str().to_owned(),
                detection_ms: callback.machine_detection_duration_ms.map(i64::from),
                params_json: params_json(&callback.params),
                received_at_ms: state.now_ms(),
            })
            .await?;
        crate::console::publish(&state, callback.call_sid.as_str());
        tracing::info!(answered_by = %callback.answered_by, "answering machine detection");
        if callback.answered_by.is_machine() && !outcome.duplicate {
            // Calls are placed with AsyncAmd, so the answer webhook never carries AnsweredBy:
            // the voicemail is left by replacing the live call's TwiML. Done after the 2xx so
            // Twilio's callback is not held up by our REST round trip (and its retries). A
            // redelivered callback or a call that already ended is left alone.
            let ended = state
                .0
                .store
                .call(callback.call_sid.as_str())
                .await?
                .and_then(|c| c.status)
                .is_some_and(|s| voxbridge_store::is_terminal(&s));
            if ended {
                tracing::info!("machine answered but the call already ended: no voicemail");
            } else {
                redirect_to_voicemail(&state, callback.call_sid.as_str().to_owned());
            }
        }
        Ok(accepted(&state))
    }
    .instrument(span)
    .await
}

/// Replaces the call's TwiML with the voicemail message and a hang-up, in the background.
fn redirect_to_voicemail(state: &AppState, call_sid: String) {
    let Some(client) = state.0.twilio.clone() else {
        tracing::warn!(
            "machine answered but no Twilio REST credentials are configured: cannot leave the voicemail"
        );
        state.0.metrics.voicemail_redirect_failures.inc();
        return;
    };
    let state = state.clone();
    tokio::spawn(
        async move {
            // The message names the candidate and the job when the call is a screening's.
            let screening = match state.0.store.screening_for_call(&call_sid).await {
                Ok(screening) => screening,
                Err(e) => {
                    tracing::warn!(error = %e, "voicemail: screening lookup failed; the message is not personalised");
                    None
                }
            };
            let twiml = voicemail_twiml(&state, screening.as_ref()).to_xml();
            let updated = state
                .0
                .metrics
                .timed_rest(
                    TwilioOperation::UpdateCall,
                    client.update_call_twiml(&call_sid, &twiml),
                )
                .await;
            match updated {
                Ok(_) => {
                    tracing::info!("voicemail: call redirected to the message and a hang-up");
                    state.0.metrics.voicemail_redirects.inc();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "voicemail: could not redirect the call");
                    state.0.metrics.voicemail_redirect_failures.inc();
                }
            }
        }
        .in_current_span(),
    );
}

/// The voicemail message (the screening script's own, else `api.voicemail_message`,
/// personalised for `screening`) followed by a hang-up.
fn voicemail_twiml(state: &AppState, screening: Option<&ScreeningRecord>) -> Twiml {
    let config = &state.0.config;
    let template = screening
        .and_then(|s| config.voicemail_messages.get(&s.screening))
        .unwrap_or(&config.voicemail_message);
    Twiml::new()
        .push(Say::new(personalise(template, screening)))
        .push(Hangup)
}

/// `api.voicemail_message` with `{firstName}` and `{jobTitle}` filled in from the screening;
/// without one (or with an empty field) they read "there" and "a job with us".
pub(crate) fn personalise(template: &str, screening: Option<&ScreeningRecord>) -> String {
    let field = |value: Option<&str>, otherwise: &str| {
        value
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .unwrap_or(otherwise)
            .to_owned()
    };
    template
        .replace(
            "{firstName}",
            &field(screening.map(|s| s.first_name.as_str()), "there"),
        )
        .replace(
            "{jobTitle}",
            &field(screening.map(|s| s.job_title.as_str()), "a job with us"),
        )
}

/// `POST /twilio/voice/recording`: recording status.
pub(crate) async fn recording(
    State(state): State<AppState>,
    TwilioForm(params): TwilioForm,
) -> Result<Response, ApiError> {
    let callback = RecordingStatusCallback::from_params(params)?;
    let span = tracing::info_span!("call", call_sid = %callback.call_sid);
    async move {
        state
            .0
            .store
            .record_recording(&RecordingEvent {
                call_sid: callback.call_sid.to_string(),
                recording_sid: callback.recording_sid.to_string(),
                status: callback.recording_status.as_str().to_owned(),
                url: callback.recording_url.clone(),
                duration_seconds: callback.recording_duration_seconds.map(i64::from),
                params_json: params_json(&callback.params),
                received_at_ms: state.now_ms(),
            })
            .await?;
        crate::console::publish(&state, callback.call_sid.as_str());
        Ok(accepted(&state))
    }
    .instrument(span)
    .await
}

/// `POST /twilio/relay/action`: a ConversationRelay session ended; the call hangs up.
pub(crate) async fn relay_action(
    State(state): State<AppState>,
    TwilioForm(params): TwilioForm,
) -> Result<Response, ApiError> {
    let callback = RelaySessionCallback::from_params(params)?;
    let span = tracing::info_span!("call", call_sid = %callback.call_sid);
    async move {
        state
            .0
            .store
            .record_relay_session(&RelaySessionEvent {
                call_sid: callback.call_sid.to_string(),
                session_id: callback.session_id.to_string(),
                session_status: callback.session_status.as_str().to_owned(),
                handoff_data: callback.handoff_data.clone(),
                params_json: params_json(&callback.params),
                received_at_ms: state.now_ms(),
            })
            .await?;
        crate::console::publish(&state, callback.call_sid.as_str());
        if let Some(code) = callback.error_code {
            tracing::warn!(code, message = ?callback.error_message, "relay session failed");
        }
        state.0.metrics.webhooks_accepted.inc();
        Ok(twiml(&Twiml::new().push(Hangup)))
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::personalise;
    use voxbridge_store::ScreeningRecord;

    fn screening(first_name: &str, job_title: &str) -> ScreeningRecord {
        ScreeningRecord {
            id: 1,
            call_sid: Some("CA0123456789abcdef0123456789abcdef".into()),
            candidate_id: "cand-1".into(),
            first_name: first_name.into(),
            phone: "+14155550123".into(),
            job_title: job_title.into(),
            screening: "default".into(),
            state: "calling".into(),
            error: None,
            scheduled_for: None,
            attempt: 1,
            max_attempts: 1,
            follow_up: None,
            campaign_id: None,
            ended_at: None,
            answers: None,
            outcome: None,
            summary: None,
            callback_url: None,
            metadata: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn the_voicemail_names_the_candidate_and_the_job() {
        let template = "Hi {firstName}, about your application for {jobTitle}. Bye, {firstName}.";
        assert_eq!(
            personalise(template, Some(&screening("Jane", "Forklift Operator"))),
            "Hi Jane, about your application for Forklift Operator. Bye, Jane."
        );
        assert_eq!(
            personalise(template, Some(&screening(" ", ""))),
            "Hi there, about your application for a job with us. Bye, there."
        );
        assert_eq!(
            personalise(template, None),
            "Hi there, about your application for a job with us. Bye, there."
        );
        assert_eq!(
            personalise("Sorry we missed you.", None),
            "Sorry we missed you."
        );
    }
}
