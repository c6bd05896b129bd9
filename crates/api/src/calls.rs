//! Read endpoints: `GET /api/calls`, `GET /api/calls/{callSid}`,
//! `GET /api/rate-limits/{number}`, and the query-string parsing the lists share ([`ListQuery`]).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use serde_json::{Value, json};
use voxbridge_store::{
    CALL_STATUSES, CallFilter, SCREENING_OUTCOMES, SCREENING_STATES, ScreeningFilter, rfc3339,
};
use voxbridge_twilio::E164;
use voxbridge_twilio::sid::CallSid;

use crate::{ApiError, AppState};

const MAX_PAGE: i64 = 200;

/// Unix ms from `1700000000000`, a UTC date `2025-01-31`, or an RFC 3339 UTC time as the API
/// writes them (`2025-01-31T09:30:00.000Z`, fraction optional).
pub(crate) fn parse_time(name: &str, text: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || {
        ApiError::BadRequest(format!(
            "{name} must be Unix milliseconds, a date YYYY-MM-DD or a UTC time \
             YYYY-MM-DDTHH:MM:SS[.mmm]Z, got {text:?}"
        ))
    };
    let (date, time) = text
        .split_once('T')
        .map_or((text, None), |(d, t)| (d, Some(t)));
    let mut parts = date.splitn(3, '-');
    let year: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let month: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let day: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || !(1970..=9999).contains(&year) {
        return Err(bad());
    }
    let in_day = match time {
        None => 0,
        Some(time) => time_of_day_ms(time).ok_or_else(bad)?,
    };
    Ok(days_from_civil(year, month, day) * 86_400_000 + in_day)
}

/// Milliseconds into the day of `HH:MM:SS[.fff]Z`.
fn time_of_day_ms(time: &str) -> Option<i64> {
    let time = time.strip_suffix('Z')?;
    let (clock, fraction) = time
        .split_once('.')
        .map_or((time, None), |(c, f)| (c, Some(f)));
    let mut fields = clock.split(':').map(|f| f.parse::<i64>().ok());
    let (hour, minute, second) = (fields.next()??, fields.next()??, fields.next()??);
    if fields.next().is_some() || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let millis = match fraction {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 3 && f.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{f:0<3}").parse::<i64>().ok()?
        }
        Some(_) => return None,
    };
    Some(((hour * 60 + minute) * 60 + second) * 1_000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn query_map(raw: Option<&str>) -> HashMap<String, String> {
    raw.map(|q| {
        q.split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let decode = |s: &str| {
                    let s = s.replace('+', " ");
                    percent_decode(&s)
                };
                (decode(k), decode(v))
            })
            .collect()
    })
    .unwrap_or_default()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A query string's parameters, checked against the names an endpoint knows, so a misspelt
/// filter is a 400 rather than a silently unfiltered list.
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    /// Parses `raw`; 400 naming the first parameter not in `known`.
    pub(crate) fn parse(raw: Option<&str>, known: &[&str]) -> Result<Self, ApiError> {
        let map = query_map(raw);
        if let Some(unknown) = map.keys().filter(|k| !known.contains(&k.as_str())).min() {
            return Err(ApiError::BadRequest(format!(
                "unknown query parameter {unknown:?}; known: {}",
                known.join(", ")
            )));
        }
        Ok(Self(map))
    }

    /// A non-empty value.
    pub(crate) fn text(&self, name: &str) -> Option<String> {
        self.0.get(name).filter(|v| !v.is_empty()).cloned()
    }

    /// A non-empty value that must be one of `allowed`; 400 listing them otherwise.
    pub(crate) fn one_of(&self, name: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
        match self.text(name) {
            Some(value) if !allowed.contains(&value.as_str()) => {
                Err(ApiError::BadRequest(format!(
                    "unknown {name} {value:?}; use one of: {}",
                    allowed.join(", ")
                )))
            }
            value => Ok(value),
        }
    }

    /// A time (see [`parse_time`]).
    pub(crate) fn time(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.0.get(name).map(|v| parse_time(name, v)).transpose()
    }

    /// `limit` (default 50, at most [`MAX_PAGE`]) and `offset` (default 0).
    pub(crate) fn page(&self) -> Result<(i64, i64), ApiError> {
        let number = |name: &str, default: i64| -> Result<i64, ApiError> {
            self.0.get(name).map_or(Ok(default), |v| {
                v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    ApiError::BadRequest(format!("{name} must be a non-negative integer"))
                })
            })
        };
        Ok((
            number("limit", 50)?.clamp(1, MAX_PAGE),
            number("offset", 0)?,
        ))
    }
}

/// The filters and page both lists take (`state`, `outcome`, `candidateId`, `from`, `to`,
/// `limit`, `offset`), checked.
pub(crate) struct ListQuery {
    /// The parameters, for an endpoint's own filters.
    pub(crate) params: Params,
    /// The shared filters and page (the screenings list's whole filter).
    pub(crate) filter: ScreeningFilter,
}

impl ListQuery {
    /// Parses `raw`, knowing the shared parameters and `extra` ones.
    pub(crate) fn parse(raw: Option<&str>, extra: &[&str]) -> Result<Self, ApiError> {
        let mut known = vec![
            "state",
            "outcome",
            "candidateId",
            "from",
            "to",
            "limit",
            "offset",
        ];
        known.extend_from_slice(extra);
        let params = Params::parse(raw, &known)?;
        let (limit, offset) = params.page()?;
        let filter = ScreeningFilter {
            state: params.one_of("state", &SCREENING_STATES)?,
            outcome: params.one_of("outcome", &SCREENING_OUTCOMES)?,
            candidate_id: params.text("candidateId"),
            since_ms: params.time("from")?,
            until_ms: params.time("to")?,
            limit,
            offset,
        };
        Ok(Self { params, filter })
    }

    /// The answer: `{"success": true, <name>: items, "total", "limit", "offset"}`.
    pub(crate) fn page(&self, name: &str, items: impl serde::Serialize, total: i64) -> Json<Value> {
        let mut body = json!({
            "success": true,
            "total": total,
            "limit": self.filter.limit,
            "offset": self.filter.offset,
        });
        body[name] = json!(items);
        Json(body)
    }
}

/// `GET /api/calls?status=&state=&outcome=&candidateId=&from=&to=&limit=&offset=`.
#[utoipa::path(
    get,
    path = "/api/calls",
    tag = "calls",
    params(
        ("status" = Option<String>, Query, description = "Only calls whose latest status is this (queued, ringing, in-progress, completed, busy, no-answer, failed, canceled)."),
        crate::openapi::ListFilters,
    ),
    responses(
        (status = 200, description = "A page of calls, newest first.", body = crate::openapi::CallPage),
        (status = 400, description = "An unknown parameter or filter value.", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors,
    ),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let query = ListQuery::parse(raw.as_deref(), &["status"])?;
    let filter = CallFilter {
        status: query.params.one_of("status", &CALL_STATUSES)?,
        ..CallFilter::from(query.filter.clone())
    };
    let (calls, total) = state.0.store.list_calls(&filter).await?;
    Ok(query.page("calls", calls, total))
}

/// `GET /api/calls/{callSid}`.
#[utoipa::path(
    get,
    path = "/api/calls/{callSid}",
    tag = "calls",
    params(("callSid" = String, Path, description = "Twilio's CallSid (`CA` and 32 hex digits).")),
    responses(
        (status = 200, description = "The call, its timeline, transcript and screening.", body = crate::openapi::CallEnvelope),
        (status = 400, description = "Not a CallSid.", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such call.", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors,
    ),
)]
pub(crate) async fn detail(
    State(state): State<AppState>,
    Path(call_sid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    CallSid::check(&call_sid)
        .map_err(|e| ApiError::BadRequest(format!("invalid call SID: {e}")))?;
    let detail = state
        .0
        .store
        .call_detail(&call_sid)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no call {call_sid}")))?;
    Ok(Json(json!({"success": true, "call": detail})))
}

/// `GET /api/rate-limits/{number}`.
#[utoipa::path(
    get,
    path = "/api/rate-limits/{number}",
    tag = "calls",
    params(("number" = String, Path, description = "The caller's number, E.164.")),
    responses(
        (status = 200, description = "What the rate limiter knows about the number.", body = crate::openapi::RateLimitStats),
        (status = 400, description = "Not an E.164 number.", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors,
    ),
)]
pub(crate) async fn rate_limit_stats(
    State(state): State<AppState>,
    Path(number): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let number = E164::parse(&number)
        .map_err(|e| ApiError::BadRequest(format!("number must be E.164: {e}")))?;
    let now = state.now_ms();
    let window = state.0.limiter.window();
    let snapshot = state
        .0
        .limiter
        .stats(number.as_str(), now)
        .await
        .map_err(|e| ApiError::Unavailable(format!("rate-limit store unavailable: {e}")))?;
    Ok(Json(json!({
        "success": true,
        "number": number.as_str(),
        "maxCalls": window.max_calls,
        "windowSecs": window.window_ms / 1000,
        "allowlisted": state.0.allowlist.contains(number.as_str()),
        "recent": snapshot.recent.iter().map(|ms| rfc3339(*ms)).collect::<Vec<_>>(),
        "recentCount": snapshot.recent.len(),
        "lastAllowed": snapshot.last_allowed.map(rfc3339),
        "totalAllowed": snapshot.total_allowed,
        "totalBlocked": snapshot.total_blocked,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_millis_parse() {
        assert_eq!(parse_time("from", "1970-01-02").unwrap(), 86_400_000);
        assert_eq!(parse_time("from", "2000-03-01").unwrap(), 951_868_800_000);
        assert_eq!(parse_time("from", "123").unwrap(), 123);
        // What the API writes reads back.
        assert_eq!(
            parse_time("from", "2023-11-14T22:13:20.000Z").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_time("from", &voxbridge_store::rfc3339(1_700_000_123_450)).unwrap(),
            1_700_000_123_450
        );
        assert_eq!(
            parse_time("from", "2000-03-01T00:00:01.5Z").unwrap(),
            951_868_801_500
        );
        for bad in [
            "2023-11-14T22:13:20",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:13Z",
            "2023-11-14T22:13:20.1234Z",
            "2023-11-14T22:13:20+01:00",
        ] {
            assert!(parse_time("from", bad).is_err(), "{bad}");
        }
        assert!(parse_time("from", "2000-13-01").is_err());
        assert!(parse_time("from", "yesterday").is_err());
    }

    #[test]
    fn query_strings_decode() {
        let q = query_map(Some("status=no-answer&candidateId=a%20b+c&x"));
        assert_eq!(q["status"], "no-answer");
        assert_eq!(q["candidateId"], "a b c");
        assert_eq!(q["x"], "");
    }
}
