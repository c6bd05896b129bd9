//! Read endpoints: `GET /api/calls`, `GET /api/calls/{callSid}`,
//! `GET /api/rate-limits/{number}`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use serde_json::{Value, json};
use voxbridge_store::CallFilter;
use voxbridge_twilio::E164;
use voxbridge_twilio::sid::CallSid;

use crate::{ApiError, AppState};

const MAX_PAGE: i64 = 200;

/// Unix ms from `1700000000000` or a UTC date `2025-01-31`.
fn parse_time(name: &str, text: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || {
        ApiError::BadRequest(format!(
            "{name} must be Unix milliseconds or a date YYYY-MM-DD, got {text:?}"
        ))
    };
    let mut parts = text.splitn(3, '-');
    let year: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let month: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let day: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || !(1970..=9999).contains(&year) {
        return Err(bad());
    }
    Ok(days_from_civil(year, month, day) * 86_400_000)
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

/// `GET /api/calls?status=&candidateId=&from=&to=&limit=&offset=`.
pub(crate) async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let query = query_map(raw.as_deref());
    let number = |name: &str, default: i64| -> Result<i64, ApiError> {
        query.get(name).map_or(Ok(default), |v| {
            v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                ApiError::BadRequest(format!("{name} must be a non-negative integer"))
            })
        })
    };
    let limit = number("limit", 50)?.clamp(1, MAX_PAGE);
    let offset = number("offset", 0)?;
    let filter = CallFilter {
        status: query.get("status").filter(|s| !s.is_empty()).cloned(),
        candidate_id: query.get("candidateId").filter(|s| !s.is_empty()).cloned(),
        since_ms: query
            .get("from")
            .map(|v| parse_time("from", v))
            .transpose()?,
        until_ms: query.get("to").map(|v| parse_time("to", v)).transpose()?,
        limit,
        offset,
    };
    let (calls, total) = state.0.store.list_calls(&filter).await?;
    Ok(Json(json!({
        "success": true,
        "calls": calls,
        "total": total,
        "limit": limit,
        "offset": offset,
    })))
}

/// `GET /api/calls/{callSid}`.
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
        "recent": snapshot.recent,
        "recentCount": snapshot.recent.len(),
        "lastAllowed": snapshot.last_allowed,
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
