//! Campaigns: many screenings launched at once from a CSV or JSON list of candidates, and
//! their progress.
//!
//! - `POST /api/campaigns` (bearer): JSON `{name, screening?, jobTitle?, callbackUrl?,
//!   metadata?, candidates: [{candidateId, firstName, phone, jobTitle?}]}`, or `text/csv` with
//!   a header row (`candidateId,firstName,phone,jobTitle`; snake case and any letter case
//!   too) and `name`, `screening`, `jobTitle`, `callbackUrl` in the query string. Every row is
//!   checked as `POST /api/screenings` checks one request; any bad row refuses the whole upload
//!   (400, with each bad row's number and fields), so nothing is half-launched. A candidate
//!   who already has a screening of that script under way is skipped and listed.
//! - Each screening is `scheduled`: due now, or at its candidate's next calling hours
//!   (`crate::outreach`), and placed by the outreach loop at `api.calls_per_second`, retried
//!   and followed up like any other.
//! - `GET /api/campaigns`, `GET /api/campaigns/{id}` (bearer): progress (queued, scheduled,
//!   retrying, calling, done by outcome).

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use voxbridge_store::{NewCampaign, NewScreening, ScreeningCallback};
use voxbridge_twilio::E164;

use crate::screenings::text_field;
use crate::{ApiError, AppState};

/// Most candidates in one campaign.
pub(crate) const MAX_CANDIDATES: usize = 5_000;
/// Largest upload (a CSV of [`MAX_CANDIDATES`] rows fits with room to spare).
const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// The bearer-protected routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/campaigns",
            post(create)
                .get(list)
                .layer(DefaultBodyLimit::max(BODY_LIMIT)),
        )
        .route("/api/campaigns/{id}", get(detail))
}

/// A checked upload.
#[derive(Debug)]
pub(crate) struct CampaignRequest {
    pub(crate) name: String,
    pub(crate) screening: String,
    pub(crate) callback_url: Option<String>,
    pub(crate) metadata: Option<Value>,
    pub(crate) candidates: Vec<CheckedCandidate>,
}

/// One checked candidate.
#[derive(Debug)]
pub(crate) struct CheckedCandidate {
    pub(crate) candidate_id: String,
    pub(crate) first_name: String,
    pub(crate) phone: E164,
    pub(crate) job_title: String,
}

/// Why an upload was refused: a message, and the bad rows (a CSV's line numbers, the header
/// being line 1; a JSON list's 1-based positions) with their fields' problems.
#[derive(Debug, Default)]
pub(crate) struct Refused {
    pub(crate) error: String,
    pub(crate) fields: BTreeMap<&'static str, String>,
    pub(crate) rows: Vec<(usize, BTreeMap<&'static str, String>)>,
}

impl Refused {
    fn new(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            ..Self::default()
        }
    }

    fn into_response(self) -> Response {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|(row, errors)| json!({"row": row, "errors": errors}))
            .collect();
        (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "success": false,
                "error": self.error,
                "errors": self.fields,
                "rows": rows,
            })),
        )
            .into_response()
    }
}

/// Splits CSV text (RFC 4180: quoted fields may hold commas, quotes doubled, line breaks)
/// into rows of fields, each with the line of the file it starts on (1-based); blank lines are
/// skipped.
fn csv_lines(text: &str) -> Result<Vec<(usize, Vec<String>)>, String> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.trim_start_matches('\u{feff}').chars().peekable();
    let mut line = 1;
    let mut row_line = 1;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
            }
            // `a, "b,c"`: spaces before the opening quote are not part of the field.
            (false, '"') if field.trim().is_empty() => {
                field.clear();
                quoted = true;
            }
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                if row.iter().any(|f| !f.trim().is_empty()) {
                    rows.push((row_line, std::mem::take(&mut row)));
                } else {
                    row.clear();
                }
                line += 1;
                row_line = line;
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err(format!("a quoted field is not closed (line {line})"));
    }
    row.push(field);
    if row.iter().any(|f| !f.trim().is_empty()) {
        rows.push((row_line, row));
    }
    Ok(rows)
}

/// The request field a CSV column names, whatever its case and separators.
fn column(name: &str) -> Option<&'static str> {
    let key: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase();
    match key.as_str() {
        "candidateid" | "candidate" | "id" => Some("candidateId"),
        "firstname" | "first" | "name" => Some("firstName"),
        "phone" | "phonenumber" | "number" | "mobile" => Some("phone"),
        "jobtitle" | "job" | "title" => Some("jobTitle"),
        _ => None,
    }
}

/// The candidates of a CSV upload as JSON objects, one per data row, with the line each is on.
fn csv_candidates(body: &[u8]) -> Result<(Vec<Value>, Vec<usize>), Refused> {
    let text = std::str::from_utf8(body).map_err(|_| Refused::new("the CSV must be UTF-8"))?;
    let rows = csv_lines(text).map_err(|e| Refused::new(format!("malformed CSV: {e}")))?;
    let Some((header, data)) = rows.split_first() else {
        return Err(Refused::new(
            "the CSV is empty: give a header row (candidateId,firstName,phone,jobTitle) and a row per candidate",
        ));
    };
    let header = &header.1;
    let columns: Vec<Option<&'static str>> = header.iter().map(|h| column(h)).collect();
    for needed in ["candidateId", "firstName", "phone"] {
        if !columns.contains(&Some(needed)) {
            return Err(Refused::new(format!(
                "the CSV header has no {needed} column (it has: {})",
                header.join(", ")
            )));
        }
    }
    let lines = data.iter().map(|(line, _)| *line).collect();
    let candidates = data
        .iter()
        .map(|(_, row)| {
            let mut object = Map::new();
            for (name, value) in columns.iter().zip(row) {
                if let Some(name) = name
                    && !value.trim().is_empty()
                {
                    object.insert((*name).to_owned(), Value::String(value.clone()));
                }
            }
            Value::Object(object)
        })
        .collect();
    Ok((candidates, lines))
}

/// Each candidate checked: the good ones, and each bad row with its fields' problems, named by
/// `rows` (a CSV's line numbers; 1-based positions for JSON). `default_job` stands for a
/// missing `jobTitle`.
#[allow(clippy::type_complexity)] // the two lists `parse` reports
fn check_rows(
    candidates: &[Value],
    rows: &[usize],
    default_job: Option<&str>,
) -> (
    Vec<CheckedCandidate>,
    Vec<(usize, BTreeMap<&'static str, String>)>,
) {
    let mut bad = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut checked = Vec::with_capacity(candidates.len());
    for (index, candidate) in candidates.iter().enumerate() {
        let row = rows.get(index).copied().unwrap_or(index + 1);
        let mut row_errors = BTreeMap::new();
        let Value::Object(object) = candidate else {
            row_errors.insert("candidate", "must be an object".to_owned());
            bad.push((row, row_errors));
            continue;
        };
        let candidate_id = text_field(object, "candidateId", true, &mut row_errors);
        let first_name = text_field(object, "firstName", true, &mut row_errors);
        let phone = text_field(object, "phone", true, &mut row_errors).and_then(|p| {
            E164::parse(&p)
                .map_err(|e| row_errors.insert("phone", e.to_string()))
                .ok()
        });
        let job_title = text_field(object, "jobTitle", false, &mut row_errors)
            .or_else(|| default_job.map(str::to_owned));
        if job_title.is_none() {
            row_errors
                .entry("jobTitle")
                .or_insert_with(|| "is required (per candidate, or jobTitle for all)".to_owned());
        }
        if let Some(id) = &candidate_id
            && let Some(first) = seen.insert(id.clone(), row)
        {
            row_errors.insert("candidateId", format!("{id:?} is also on row {first}"));
        }
        match (candidate_id, first_name, phone, job_title) {
            (Some(candidate_id), Some(first_name), Some(phone), Some(job_title))
                if row_errors.is_empty() =>
            {
                checked.push(CheckedCandidate {
                    candidate_id,
                    first_name,
                    phone,
                    job_title,
                });
            }
            _ => bad.push((row, row_errors)),
        }
    }
    (checked, bad)
}

/// The upload's settings (JSON body or query string) and its candidates, checked.
pub(crate) fn parse(
    content_type: Option<&str>,
    query: Option<&str>,
    body: &[u8],
    known: &[String],
) -> Result<CampaignRequest, Refused> {
    let csv = content_type.is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        t.starts_with("text/csv") || t.starts_with("application/csv")
    });
    let (settings, candidates, rows) = if csv {
        let settings: Map<String, Value> =
            url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect();
        let (candidates, lines) = csv_candidates(body)?;
        (settings, candidates, lines)
    } else {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| Refused::new(format!("malformed JSON body: {e} (or send text/csv)")))?;
        let Value::Object(mut object) = value else {
            return Err(Refused::new("the body must be a JSON object"));
        };
        let Some(Value::Array(candidates)) = object.remove("candidates") else {
            let mut refused = Refused::new("invalid request");
            refused
                .fields
                .insert("candidates", "must be a list of candidates".to_owned());
            return Err(refused);
        };
        let positions = (1..=candidates.len()).collect();
        (object, candidates, positions)
    };
    let mut errors = BTreeMap::new();
    let name = text_field(&settings, "name", true, &mut errors);
    let screening = text_field(&settings, "screening", false, &mut errors)
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
    let default_job = text_field(&settings, "jobTitle", false, &mut errors);
    let (callback_url, metadata) = crate::ats::parse_callback(&settings, &mut errors);
    if candidates.is_empty() {
        errors.insert("candidates", "list at least one candidate".to_owned());
    } else if candidates.len() > MAX_CANDIDATES {
        errors.insert(
            "candidates",
            format!(
                "at most {MAX_CANDIDATES} per campaign, got {}",
                candidates.len()
            ),
        );
    }
    let (checked, bad_rows) = check_rows(&candidates, &rows, default_job.as_deref());
    let mut refused = Refused::new("invalid request");
    refused.rows = bad_rows;
    match (name, screening) {
        (Some(name), Some(screening)) if errors.is_empty() && refused.rows.is_empty() => {
            Ok(CampaignRequest {
                name,
                screening,
                callback_url,
                metadata,
                candidates: checked,
            })
        }
        _ => {
            refused.error = if refused.rows.is_empty() {
                "invalid request".to_owned()
            } else {
                format!(
                    "invalid request: {} of {} candidates have errors; nothing was launched",
                    refused.rows.len(),
                    candidates.len()
                )
            };
            refused.fields = errors;
            Err(refused)
        }
    }
}

/// Launches a checked campaign: every candidate scheduled (now, or at their calling hours).
/// Returns the campaign's id and the candidates skipped, with why (`under_way`, `opted_out`,
/// `daily_limit`).
pub(crate) async fn launch(
    state: &AppState,
    request: &CampaignRequest,
) -> Result<(i64, Vec<(String, &'static str)>), ApiError> {
    let config = &state.0.config;
    if state.0.twilio.is_none() || config.twilio.from_number.is_empty() {
        return Err(ApiError::Unavailable(
            "placing calls is not configured: set api.twilio.account_sid and api.twilio.from_number"
                .to_owned(),
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
    let candidates: Vec<(NewScreening, i64)> = request
        .candidates
        .iter()
        .map(|c| {
            let due = crate::outreach::next_call_time(state, &c.phone, now).unwrap_or(now);
            (
                NewScreening {
                    candidate_id: c.candidate_id.clone(),
                    first_name: c.first_name.clone(),
                    phone: c.phone.as_str().to_owned(),
                    job_title: c.job_title.clone(),
                    screening: request.screening.clone(),
                    created_at_ms: now,
                },
                due,
            )
        })
        .collect();
    let (created, skipped) = state
        .0
        .store
        .insert_campaign(
            &NewCampaign {
                name: request.name.clone(),
                screening: request.screening.clone(),
                created_at_ms: now,
            },
            &candidates,
            crate::outreach::outreach(state, None),
            (callback.deliver || callback.metadata.is_some()).then_some(&callback),
            i64::from(config.max_calls_per_candidate_per_day),
        )
        .await?;
    let Some(id) = created else {
        let under_way = skipped.iter().filter(|(_, r)| *r == "under_way").count();
        return Err(ApiError::Conflict(format!(
            "no candidate was launched: {under_way} of {} already have a {} screening under way, \
             the others opted out or reached api.max_calls_per_candidate_per_day",
            skipped.len(),
            request.screening
        )));
    };
    tracing::info!(
        campaign = id,
        candidates = candidates.len() - skipped.len(),
        skipped = skipped.len(),
        "campaign launched"
    );
    Ok((id, skipped))
}

/// `POST /api/campaigns`.
#[utoipa::path(
    post,
    path = "/api/campaigns",
    tag = "campaigns",
    request_body(content(
        (crate::openapi::CampaignRequest = "application/json"),
        (String = "text/csv", example = "candidateId,firstName,phone,jobTitle\ncand-1,Ada,+14155550123,Welder\n"),
    )),
    params(crate::openapi::CampaignCsvParams),
    responses(
        (status = 201, description = "Launched: every candidate is scheduled (now, or at their calling hours).", body = crate::openapi::CampaignCreated),
        (status = 400, description = "Refused as a whole: the fields and rows with errors.", body = crate::openapi::CampaignRefusal),
        (status = 409, description = "Every candidate was skipped (a launch sent twice, opted out, or at the daily limit): nothing was launched.", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors,
    ),
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let request = match parse(
        content_type,
        query.as_deref(),
        &body,
        &state.0.config.screenings,
    ) {
        Ok(request) => request,
        Err(refused) => return Ok(refused.into_response()),
    };
    let (id, skipped) = launch(&state, &request).await?;
    let campaign = state
        .0
        .store
        .campaign(id, state.now_ms())
        .await?
        .ok_or_else(|| ApiError::Internal(format!("campaign {id} vanished after launch")))?;
    let skipped: Vec<Value> = skipped
        .iter()
        .map(|(candidate, reason)| json!({"candidateId": candidate, "reason": reason}))
        .collect();
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/campaigns/{id}"))],
        Json(json!({"success": true, "campaign": campaign, "skipped": skipped})),
    )
        .into_response())
}

/// `GET /api/campaigns`.
#[utoipa::path(
    get,
    path = "/api/campaigns",
    tag = "campaigns",
    params(crate::openapi::PageParams),
    responses(
        (status = 200, description = "Campaigns, newest first, with their progress.", body = crate::openapi::CampaignPage),
        (status = 400, description = "A bad page parameter.", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors,
    ),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let (mut limit, mut offset) = (50_i64, 0_i64);
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let number = value.parse::<i64>().ok();
        match (key.as_ref(), number) {
            ("limit", Some(n)) if (1..=200).contains(&n) => limit = n,
            ("offset", Some(n)) if n >= 0 => offset = n,
            ("limit", _) => {
                return Err(ApiError::BadRequest("limit must be 1 to 200".to_owned()));
            }
            ("offset", _) => {
                return Err(ApiError::BadRequest("offset must be 0 or more".to_owned()));
            }
            (other, _) => {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter {other:?}; known: limit, offset"
                )));
            }
        }
    }
    let (campaigns, total) = state
        .0
        .store
        .list_campaigns(limit, offset, state.now_ms())
        .await?;
    Ok(Json(json!({
        "success": true,
        "total": total,
        "limit": limit,
        "offset": offset,
        "campaigns": campaigns,
    })))
}

/// `GET /api/campaigns/{id}`.
#[utoipa::path(
    get,
    path = "/api/campaigns/{id}",
    tag = "campaigns",
    params(("id" = i64, Path, description = "The campaign id.")),
    responses(
        (status = 200, description = "The campaign and its progress.", body = crate::openapi::CampaignEnvelope),
        (status = 400, description = "The id is not a positive integer.", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such campaign.", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors,
    ),
)]
pub(crate) async fn detail(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = crate::screenings::path_id("campaign", &id)?;
    let campaign = state
        .0
        .store
        .campaign(id, state.now_ms())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no campaign {id}")))?;
    Ok(Json(json!({"success": true, "campaign": campaign})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_quote_commas_quotes_and_line_breaks() {
        let rows = csv_lines(
            "\u{feff}candidate_id,First Name,phone\r\n\"c,1\", \"Ann \"\"A\"\"\",+1 415 555 0100\n\n\"c2\",\"Bo\nB\",+14155550101\nc3,Cy,+14155550102",
        )
        .unwrap();
        let rows: Vec<(usize, Vec<&str>)> = rows
            .iter()
            .map(|(line, fields)| (*line, fields.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(
            rows,
            [
                (1, vec!["candidate_id", "First Name", "phone"]),
                (2, vec!["c,1", "Ann \"A\"", "+1 415 555 0100"]),
                (4, vec!["c2", "Bo\nB", "+14155550101"]),
                (6, vec!["c3", "Cy", "+14155550102"]),
            ]
        );
        assert!(csv_lines("a,\"b").is_err());
    }

    #[test]
    fn every_bad_row_is_named_and_nothing_launches() {
        let known = ["default".to_owned()];
        let csv = b"candidateId,firstName,phone,jobTitle\nc1,Ann,+14155550100,Welder\nc2,,+14155550101,Welder\nc3,Cy,555-0102,\nc1,Ann,+14155550103,Welder\n";
        let refused = parse(Some("text/csv"), Some("name=December"), csv, &known).unwrap_err();
        let rows: Vec<(usize, Vec<&str>)> = refused
            .rows
            .iter()
            .map(|(row, errors)| (*row, errors.keys().copied().collect()))
            .collect();
        assert_eq!(
            rows,
            [
                (3, vec!["firstName"]),
                (4, vec!["jobTitle", "phone"]),
                (5, vec!["candidateId"]),
            ]
        );
        assert!(refused.error.contains("3 of 4"), "{}", refused.error);
        let ok = parse(
            Some("text/csv; charset=utf-8"),
            Some("name=December&jobTitle=Welder"),
            b"Candidate ID,Name,Mobile\nc1,Ann,+14155550100\n",
            &known,
        )
        .unwrap();
        assert_eq!(ok.candidates.len(), 1);
        assert_eq!(ok.candidates[0].job_title, "Welder");
        let missing = parse(None, None, br#"{"name": "x"}"#, &known).unwrap_err();
        assert!(missing.fields.contains_key("candidates"));
    }
}
