//! `POST /api/screenings`: validate, check the per-candidate daily limit, record the request,
//! create the call through Twilio's REST API, link the call to the screening.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use voxbridge_store::NewScreening;
use voxbridge_twilio::E164;
use voxbridge_twilio::rest::{CreateCall, MachineDetection, RestError};

use crate::{ApiError, AppState, TwilioOperation};

/// Longest accepted text field (keeps `<Parameter>` under Twilio's 500-character limit).
const MAX_FIELD_CHARS: usize = 120;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// A validated request.
#[derive(Debug)]
struct ScreeningRequest {
    candidate_id: String,
    first_name: String,
    phone: E164,
    job_title: String,
    screening: String,
}

fn text_field(
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
            })
        }
        _ => Err(ApiError::Validation(errors)),
    }
}

/// `POST /api/screenings`.
pub(crate) async fn create(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let config = &state.0.config;
    let request = parse_request(&body, &config.screenings)?;
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
    // The intent is committed before Twilio is asked: if this process dies between Twilio's
    // 201 and the commit below, start-up reconciliation finds the call (crate::reconcile).
    let id = store
        .insert_screening_intent(
            &NewScreening {
                candidate_id: request.candidate_id.clone(),
                first_name: request.first_name.clone(),
                phone: request.phone.as_str().to_owned(),
                job_title: request.job_title.clone(),
                screening: request.screening.clone(),
                created_at_ms: now,
            },
            &config.twilio.from_number,
        )
        .await?;
    let call = CreateCall {
        to: request.phone.as_str().to_owned(),
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
    };
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
                to = %request.phone.masked(),
                candidate = %request.candidate_id,
                "screening call created"
            );
            Ok(Json(json!({
                "success": true,
                "callSid": resource.sid,
                "message": format!("Screening call initiated for {}", request.first_name),
            }))
            .into_response())
        }
        Err(error) => Err(record_create_failure(&state, id, &request.phone, error).await?),
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
