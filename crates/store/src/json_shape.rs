//! How records look as JSON (the companion API serves them as they serialize): times as RFC 3339
//! in UTC with milliseconds (`2023-11-14T22:13:20.000Z`) rather than bare Unix milliseconds,
//! JSON columns nested rather than as JSON inside strings, and object keys in camelCase like the
//! rest of the API. The database keeps Unix milliseconds and JSON text.

use serde::Serializer;
use serde_json::{Map, Value};

/// `ms` (Unix milliseconds) as RFC 3339 in UTC, e.g. `2023-11-14T22:13:20.000Z`.
pub fn rfc3339(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1_000 % 60,
        in_day % 1_000
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `serialize_with` for a Unix-millisecond field: [`rfc3339`].
#[allow(clippy::trivially_copy_pass_by_ref)] // serde hands `serialize_with` a reference.
pub(crate) fn time<S: Serializer>(ms: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&rfc3339(*ms))
}

/// `serialize_with` for an optional Unix-millisecond field: [`rfc3339`] or `null`.
#[allow(clippy::ref_option)] // serde hands `serialize_with` a reference.
pub(crate) fn optional_time<S: Serializer>(
    ms: &Option<i64>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => serializer.serialize_str(&rfc3339(*ms)),
        None => serializer.serialize_none(),
    }
}

/// `serialize_with` for an optional JSON column: the JSON nested (text that does not parse as
/// JSON, which the writers never store, as a string), or `null`.
#[allow(clippy::ref_option)] // serde hands `serialize_with` a reference.
pub(crate) fn optional_json<S: Serializer>(
    text: &Option<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match text {
        Some(text) => serde::Serialize::serialize(&json_or_text(text.clone()), serializer),
        None => serializer.serialize_none(),
    }
}

/// A column that holds JSON or plain text (a summary, Twilio's `HandoffData`): the JSON
/// nested when it parses, else the text as a JSON string.
pub(crate) fn json_or_text(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// `value` with every object key, at any depth, in camelCase (`question_id` ->
/// `questionId`); string values are left alone.
pub(crate) fn camel_case_keys(value: Value) -> Value {
    match value {
        Value::Object(object) => Value::Object(
            object
                .into_iter()
                .map(|(key, value)| (camel_case(&key), camel_case_keys(value)))
                .collect::<Map<_, _>>(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(camel_case_keys).collect()),
        other => other,
    }
}

/// `snake_case` -> `snakeCase`; a key without underscores is unchanged.
fn camel_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' && !out.is_empty() {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
        assert_eq!(rfc3339(951_868_800_123), "2000-03-01T00:00:00.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn keys_become_camel_case_values_do_not() {
        let value = serde_json::json!([{"question_id": "work_auth", "raw": "yes",
            "nested": {"parsed_value": 1, "a_b_c": [{"x_y": "not_qualified"}]}}]);
        assert_eq!(
            camel_case_keys(value),
            serde_json::json!([{"questionId": "work_auth", "raw": "yes",
                "nested": {"parsedValue": 1, "aBC": [{"xY": "not_qualified"}]}}])
        );
        assert_eq!(camel_case("_private"), "_private");
    }

    #[test]
    fn json_columns_nest_and_text_stays_text() {
        assert_eq!(
            json_or_text(r#"{"turns":1}"#.into()),
            serde_json::json!({"turns": 1})
        );
        assert_eq!(
            json_or_text("caller hung up".into()),
            Value::String("caller hung up".into())
        );
    }
}
