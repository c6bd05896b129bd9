//! `POST /api/screenings`: validate, replay a retried `Idempotency-Key`, check the
//! per-candidate daily limit, record the request, create the call through Twilio's REST API,
//! link the call to the screening. `GET /api/screenings`: the list, filtered by state and
//! outcome; `GET /api/screenings/{id}`: one screening.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use voxbridge_store::{
    IdempotencyKey, KeyedInsert, NewScreening, ScreeningCallback, ScreeningRecord,
};
use voxbridge_twilio::E164;
use voxbridge_twilio::rest::{CreateCall, MachineDetection, RestClient, RestError};

use crate::calls::ListQuery;
use crate::{ApiError, AppState, TwilioOperation};

/// Longest accepted text field (keeps `<Parameter>` under Twilio's 500-character limit).
const MAX_FIELD_CHARS: usize = 120;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// Longest accepted `Idempotency-Key` (a UUID is 36 characters).
const MAX_KEY_CHARS: usize = 255;

/// A validated request.
#[derive(Debug)]
struct ScreeningRequest {
    candidate_id: String,
    first_name: String,
    phone: E164,
    job_title: String,
    screening: String,
    /// Where this screening's result goes (`None`: `api.webhooks.url`).
    callback_url: Option<String>,
    /// The caller's object, echoed back (`crate::ats`).
    metadata: Option<Value>,
}

pub(crate) fn text_field(
    object: &serde_json::Map<String, Value>,
    name: &'static str,
    required: bool,
    errors: &mut BTreeMap<&'static str, String>,
) -> Option<String> {
    match object.get(name) {
        None | Some(Value::Null) => {
            if required {
                errors.insert(name, "is required".to_owned());
            }
            None
        }
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() {
                errors.insert(name, "must not be empty".to_owned());
                None
            } else if s.chars().count() > MAX_FIELD_CHARS {
                errors.insert(
                    name,
                    format!("must be at most {MAX_FIELD_CHARS} characters"),
                );
                None
            } else if s.chars().any(char::is_control) {
                errors.insert(name, "must not contain control characters".to_owned());
                None
            } else {
                Some(s.to_owned())
            }
        }
        Some(_) => {
            errors.insert(name, "must be a string".to_owned());
            None
        }
    }
}

fn parse_request(body: &[u8], known: &[String]) -> Result<ScreeningRequest, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON body: {e}")))?;
    let Value::Object(object) = value else {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object".to_owned(),
        ));
    };
    let mut errors = BTreeMap::new();
    let candidate_id = text_field(&object, "candidateId", true, &mut errors);
    let first_name = text_field(&object, "firstName", true, &mut errors);
    let phone = text_field(&object, "phone", true, &mut errors).and_then(|p| {
        E164::parse(&p)
            .map_err(|e| errors.insert("phone", e.to_string()))
            .ok()
    });
    let job_title = text_field(&object, "jobTitle", true, &mut errors);
    let screening = text_field(&object, "screening", false, &mut errors)
        .or_else(|| known.first().cloned())
        .and_then(|s| {
            if known.contains(&s) {
                Some(s)
            } else {
                errors.insert(
                    "screening",
                    format!("unknown screening {s:?}; known: {}", known.join(", ")),
                );
                None
            }
        });
    let (callback_url, metadata) = crate::ats::parse_callback(&object, &mut errors);
    match (candidate_id, first_name, phone, job_title, screening) {
        (Some(candidate_id), Some(first_name), Some(phone), Some(job_title), Some(screening))
            if errors.is_empty() =>
        {
            Ok(ScreeningRequest {
                candidate_id,
                first_name,
                phone,
                job_title,
                screening,
                callback_url,
                metadata,
            })
        }
        _ => Err(ApiError::Validation(errors)),
    }
}

impl ScreeningRequest {
    /// SHA-256 (hex) of the validated fields: a retry is "the same request" when it asks for
    /// the same screening, however its JSON is spaced, ordered or its number written.
    fn digest(&self) -> String {
        use sha2::{Digest as _, Sha256};
        let mut canonical = json!([
            self.candidate_id,
            self.first_name,
            self.phone.as_str(),
            self.job_title,
            self.screening,
        ]);
        // Only when given, so the digest of a request without them is what it always was.
        if (self.callback_url.is_some() || self.metadata.is_some())
            && let Value::Array(fields) = &mut canonical
        {
            fields.push(json!(self.callback_url));
            fields.push(json!(self.metadata));
        }
        format!("{:x}", Sha256::digest(canonical.to_string().as_bytes()))
    }
}

/// The request's `Idempotency-Key` header, if any: 1 to [`MAX_KEY_CHARS`] visible ASCII
/// characters.
fn idempotency_key(
    headers: &HeaderMap,
    request: &ScreeningRequest,
) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || {
        ApiError::BadRequest(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_CHARS} visible ASCII characters (a UUID, say)"
        ))
    };
    let key = value.to_str().map_err(|_| bad())?;
    if key.is_empty() || key.len() > MAX_KEY_CHARS || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(IdempotencyKey {
        key: key.to_owned(),
        request_hash: request.digest(),
    }))
}

/// The answer to a request whose `Idempotency-Key` was already used: the screening its first
/// request created, as that request was answered, when it placed a call; 422 for a different
/// body; 409 while the first request is still being served or when it placed no call.
async fn replay(
    state: &AppState,
    key: &IdempotencyKey,
    screening_id: i64,
    request_hash: &str,
) -> Result<Response, ApiError> {
    if request_hash != key.request_hash {
        return Err(ApiError::Unprocessable(format!(
            "Idempotency-Key {:?} was already used with a different request body (screening \
             {screening_id}); send a new key for a new screening",
            key.key
        )));
    }
    let record = state
        .0
        .store
        .screening(screening_id)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("screening {screening_id} of a key is gone")))?;
    if record.call_sid.is_some() || record.state == "scheduled" {
        tracing::info!(screening = screening_id, "Idempotency-Key replayed");
        return Ok(created_response(&record, true));
    }
    Err(ApiError::Conflict(
        match (record.state.as_str(), &record.error) {
            ("requested", None) => format!(
                "the first request with this Idempotency-Key (screening {screening_id}) is still \
             placing the call; retry shortly"
            ),
            ("failed", error) => format!(
                "the first request with this Idempotency-Key (screening {screening_id}) placed no \
             call: {}; send a new key to try again",
                error.as_deref().unwrap_or("Twilio refused it")
            ),
            (state, error) => format!(
                "the first request with this Idempotency-Key (screening {screening_id}) is {state} \
             with no call known ({}); GET /api/screenings/{screening_id} shows how it resolves",
                error.as_deref().unwrap_or("no detail")
            ),
        },
    ))
}

/// 201 with `Location: /api/screenings/{id}` and the screening, placed or scheduled (also the
/// answer to a replayed `Idempotency-Key`, then with `Idempotent-Replayed: true`).
fn created_response(record: &ScreeningRecord, replayed: bool) -> Response {
    let location = format!("/api/screenings/{}", record.id);
    let body = Json(json!({
        "success": true,
        "id": record.id,
        "callSid": record.call_sid,
        "message": match record.scheduled_for.filter(|_| record.state == "scheduled") {
            Some(at) => format!(
                "Screening call for {} scheduled for {} (their local calling hours)",
                record.first_name,
                voxbridge_store::rfc3339(at)
            ),
            None => format!("Screening call initiated for {}", record.first_name),
        },
        "screening": record,
    }));
    let mut response = (StatusCode::CREATED, [(header::LOCATION, location)], body).into_response();
    if replayed {
        response.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    response
}

/// `GET /api/screenings?state=&outcome=&candidateId=&from=&to=&limit=&offset=`.
#[utoipa::path(
    get,
    path = "/api/screenings",
    tag = "screenings",
    params(
        crate::openapi::ListFilters,
    ),
    responses(
        (status = 200, description = "A page of screenings, newest first.", body = crate::openapi::ScreeningPage),
        (status = 400, description = "An unknown parameter or filter value.", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors,
    ),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let query = ListQuery::parse(raw.as_deref(), &[])?;
    let (screenings, total) = state.0.store.list_screenings(&query.filter).await?;
    Ok(query.page("screenings", screenings, total))
}

/// `GET /api/screenings/{id}`.
#[utoipa::path(
    get,
    path = "/api/screenings/{id}",
    tag = "screenings",
    params(("id" = i64, Path, description = "The screening id.")),
    responses(
        (status = 200, description = "The screening, and the earlier attempts of a retried one.", body = crate::openapi::ScreeningDetail),
        (status = 400, description = "The id is not a positive integer.", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such screening.", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors,
    ),
)]
pub(crate) async fn detail(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = screening_id(&id)?;
    let store = &state.0.store;
    let record = store
        .screening(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no screening {id}")))?;
    let attempts = store.screening_attempts(id).await?;
    Ok(Json(
        json!({"success": true, "screening": record, "attempts": attempts}),
    ))
}

/// `POST /api/screenings/{id}/cancel`.
#[utoipa::path(
    post,
    path = "/api/screenings/{id}/cancel",
    tag = "screenings",
    params(("id" = i64, Path, description = "The screening id.")),
    responses(
        (status = 200, description = "Canceled: the scheduled call will not be placed; the result webhook reports `canceled`.", body = crate::openapi::ScreeningEnvelope),
        (status = 400, description = "The id is not a positive integer.", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such screening.", body = crate::openapi::ErrorBody),
        (status = 409, description = "Not scheduled: its call was placed (or it ended) already.", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors,
    ),
)]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = screening_id(&id)?;
    let (canceled, record) = state
        .0
        .store
        .cancel_scheduled_screening(id, state.now_ms())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no screening {id}")))?;
    if !canceled {
        return Err(ApiError::Conflict(format!(
            "screening {id} is {}: only a scheduled screening can be canceled",
            record.state
        )));
    }
    tracing::info!(screening = id, "scheduled screening canceled");
    Ok(Json(json!({"success": true, "screening": record})))
}

/// A screening id from the path: a positive integer.
fn screening_id(text: &str) -> Result<i64, ApiError> {
    path_id("screening", text)
}

/// The row id of a `what` in a path: a positive integer, else 400 saying so.
pub(crate) fn path_id(what: &str, text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{what} id must be a positive integer, got {text:?}"
            ))
        })
}

/// `POST /api/screenings`.
#[utoipa::path(
    post,
    path = "/api/screenings",
    tag = "screenings",
    request_body = crate::openapi::ScreeningRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request safe: the same key and body answer the first request's screening (with `Idempotent-Replayed: true`) and never place a second call. At most 255 characters.")),
    responses(
        (status = 201, description = "The screening: its call placed, or (outside the candidate's calling hours) `scheduled` for `scheduledFor`.", body = crate::openapi::ScreeningCreated,
            headers(("Location" = String, description = "`/api/screenings/{id}`"))),
        (status = 400, description = "Fields that failed validation (`errors`), or Twilio refused the number (`twilioError`).", body = crate::openapi::ErrorBody),
        (status = 409, description = "The first request with this Idempotency-Key is still placing its call, or placed none.", body = crate::openapi::ErrorBody),
        (status = 422, description = "The Idempotency-Key was used with a different body.", body = crate::openapi::ErrorBody),
        (status = 429, description = "The candidate's daily limit, or Twilio's rate limit.", body = crate::openapi::ErrorBody),
        (status = 502, description = "Twilio could not be reached or failed.", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors,
    ),
)]
#[allow(clippy::too_many_lines)] // one request's path: validate, replay, cap, place, record
pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let config = &state.0.config;
    let request = parse_request(&body, &config.screenings)?;
    let key = idempotency_key(&headers, &request)?;
    if let Some(key) = &key
        && let Some(KeyedInsert::Existing {
            screening_id,
            request_hash,
        }) = state
            .0
            .store
            .screening_for_idempotency_key(&key.key)
            .await?
    {
        return replay(&state, key, screening_id, &request_hash).await;
    }
    let Some(twilio) = &state.0.twilio else {
        return Err(ApiError::Unavailable(
            "placing calls is not configured: set api.twilio.account_sid".to_owned(),
        ));
    };
    if config.twilio.from_number.is_empty() {
        return Err(ApiError::Unavailable(
            "placing calls is not configured: set api.twilio.from_number".to_owned(),
        ));
    }
    let callback = ScreeningCallback {
        deliver: request.callback_url.is_some() || !config.webhooks.url.is_empty(),
        url: request.callback_url.clone(),
        metadata: request.metadata.clone(),
    };
    if callback.url.is_some() && config.webhooks.secret.is_empty() {
        return Err(ApiError::Unavailable(
            "callbackUrl needs signed deliveries: set api.webhooks.secret".to_owned(),
        ));
    }
    let now = state.now_ms();
    let store = &state.0.store;
    let placed = store
        .count_screenings_since(&request.candidate_id, now - DAY_MS)
        .await?;
    let max = i64::from(config.max_calls_per_candidate_per_day);
    if placed >= max {
        return Err(ApiError::TooManyRequests(format!(
            "candidate {} was already called {placed} times in the last 24 hours (limit {max})",
            request.candidate_id
        )));
    }
    // Outside the candidate's calling hours the screening waits, without an intent, for
    // crate::outreach to place it when the window opens.
    let scheduled_for = crate::outreach::next_call_time(&state, &request.phone, now);
    let new = NewScreening {
        candidate_id: request.candidate_id.clone(),
        first_name: request.first_name.clone(),
        phone: request.phone.as_str().to_owned(),
        job_title: request.job_title.clone(),
        screening: request.screening.clone(),
        created_at_ms: now,
    };
    let callback = (callback.deliver || callback.metadata.is_some()).then_some(&callback);
    // Otherwise the intent is committed before Twilio is asked: if this process dies between
    // Twilio's 201 and the commit below, start-up reconciliation finds the call
    // (crate::reconcile).
    let from = scheduled_for
        .is_none()
        .then_some(config.twilio.from_number.as_str());
    let inserted = store
        .insert_screening_request(
            &new,
            from,
            key.as_ref(),
            callback,
            scheduled_for,
            crate::outreach::outreach(&state, None),
        )
        .await?;
    let id = match (inserted, &key) {
        (KeyedInsert::Created(id), _) => id,
        // Another request with this key got there between the look-up above and the insert.
        (
            KeyedInsert::Existing {
                screening_id,
                request_hash,
            },
            Some(key),
        ) => return replay(&state, key, screening_id, &request_hash).await,
        (KeyedInsert::Existing { screening_id, .. }, None) => screening_id,
    };
    let record = match scheduled_for {
        Some(at) => {
            tracing::info!(
                screening = id,
                to = %request.phone.masked(),
                candidate = %request.candidate_id,
                at = %voxbridge_store::rfc3339(at),
                "screening call scheduled for the candidate's calling hours"
            );
            store.screening(id).await?.ok_or_else(|| {
                ApiError::Internal(format!("screening {id} vanished after it was scheduled"))
            })?
        }
        None => place_call(&state, twilio, id, &request.phone, &request.candidate_id).await?,
    };
    Ok(created_response(&record, false))
}

/// Asks Twilio to call `phone` for screening `id` (whose intent is recorded) and links the call;
/// on failure the screening is marked failed (or uncertain) and the error returned.
pub(crate) async fn place_call(
    state: &AppState,
    twilio: &RestClient,
    id: i64,
    phone: &E164,
    candidate_id: &str,
) -> Result<ScreeningRecord, ApiError> {
    let config = &state.0.config;
    let store = &state.0.store;
    let call = call_request(config, phone);
    let created = state
        .0
        .metrics
        .timed_rest(TwilioOperation::CreateCall, twilio.create_call(&call))
        .await;
    match created {
        Ok(resource) => {
            store
                .mark_screening_initiated(
                    id,
                    &resource.sid,
                    &config.twilio.from_number,
                    state.now_ms(),
                )
                .await?;
            state.0.metrics.screenings_created.inc();
            tracing::info!(
                call_sid = %resource.sid,
                to = %phone.masked(),
                candidate = %candidate_id,
                "screening call created"
            );
            store.screening(id).await?.ok_or_else(|| {
                ApiError::Internal(format!("screening {id} vanished after its call was linked"))
            })
        }
        Err(error) => Err(record_create_failure(state, id, phone, error).await?),
    }
}

/// The `Calls.json` request for a screening call to `phone`: answer TwiML, status callbacks,
/// async AMD and optional recording, all at `public_url`.
fn call_request(config: &crate::ApiConfig, phone: &E164) -> CreateCall {
    CreateCall {
        to: phone.as_str().to_owned(),
        from: config.twilio.from_number.clone(),
        url: config.public("/twilio/voice/answer"),
        status_callback: Some(config.public("/twilio/voice/status")),
        status_callback_events: ["initiated", "ringing", "answered", "completed"]
            .map(str::to_owned)
            .to_vec(),
        machine_detection: Some(MachineDetection::DetectMessageEnd),
        async_amd_status_callback: Some(config.public("/twilio/voice/amd")),
        record: config.twilio.record.then_some(true),
        recording_status_callback: config
            .twilio
            .record
            .then(|| config.public("/twilio/voice/recording")),
        timeout_seconds: None,
    }
}

/// Records a failed call create and returns the error for the caller of our API.
///
/// Only a 4xx error body from Twilio proves no call was placed. A transport failure, an
/// unreadable 2xx or a 5xx after the retries may follow a call Twilio did create: that attempt
/// keeps counting toward the daily limit, so a retry cannot ring the candidate twice.
async fn record_create_failure(
    state: &AppState,
    id: i64,
    phone: &E164,
    error: RestError,
) -> Result<ApiError, ApiError> {
    let definite = matches!(&error, RestError::Api(e) if e.status < 500);
    let error = ApiError::from(error);
    let store = &state.0.store;
    if definite {
        tracing::warn!(to = %phone.masked(), %error, "Twilio refused the screening call");
        store
            .mark_screening_failed(id, &error.to_string(), state.now_ms())
            .await?;
    } else {
        tracing::warn!(
            to = %phone.masked(),
            %error,
            "screening call outcome unknown: it may have been placed; counted toward the daily limit"
        );
        store
            .mark_screening_uncertain(id, &error.to_string(), state.now_ms())
            .await?;
    }
    Ok(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<String> {
        vec!["default".to_owned()]
    }

    #[test]
    fn each_bad_field_gets_its_own_message() {
        let err = parse_request(
            br#"{"candidateId":"c1","firstName":"","phone":"555-0100","jobTitle":7,"screening":"nope"}"#,
            &known(),
        )
        .unwrap_err();
        let ApiError::Validation(errors) = err else {
            panic!("expected validation errors, got {err:?}");
        };
        assert_eq!(
            errors.keys().copied().collect::<Vec<_>>(),
            ["firstName", "jobTitle", "phone", "screening"]
        );
        assert!(errors["phone"].contains('+'), "{}", errors["phone"]);
    }

    #[test]
    fn screening_defaults_to_the_first_known_one() {
        let ok = parse_request(
            br#"{"candidateId":"c1","firstName":"Ada","phone":"+1 415 867 5309","jobTitle":"Engineer"}"#,
            &known(),
        )
        .unwrap();
        assert_eq!(ok.screening, "default");
        assert_eq!(ok.phone.as_str(), "+14158675309");
    }

    #[test]
    fn malformed_json_and_non_objects_are_bad_requests() {
        assert!(matches!(
            parse_request(b"{not json", &known()),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_request(b"[1,2]", &known()),
            Err(ApiError::BadRequest(_))
        ));
    }
}
