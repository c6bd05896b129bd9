//! Rendering: the templates compiled into the binary (minijinja, HTML auto-escaped), the
//! headers every console answer carries, and the small text helpers the pages share.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;

use crate::AppState;

/// Every template, by name (a `.html` name turns auto-escaping on).
const TEMPLATES: [(&str, &str); 11] = [
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("calls.html", include_str!("templates/calls.html")),
    ("call.html", include_str!("templates/call.html")),
    ("launch.html", include_str!("templates/launch.html")),
    (
        "rate_limits.html",
        include_str!("templates/rate_limits.html"),
    ),
    ("webhooks.html", include_str!("templates/webhooks.html")),
    ("campaigns.html", include_str!("templates/campaigns.html")),
    ("messages.html", include_str!("templates/messages.html")),
    ("thread.html", include_str!("templates/thread.html")),
    ("error.html", include_str!("templates/error.html")),
];

pub(crate) fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .unwrap_or_else(|e| panic!("console template {name} does not compile: {e:#}"));
    }
    env
}

/// `name` rendered with `context`, as a page of the console (200; the caller sets another
/// status). A template error is a bug: logged, 500.
pub(crate) fn render(state: &AppState, name: &str, context: &impl Serialize) -> Response {
    let rendered = state
        .0
        .console
        .templates
        .get_template(name)
        .and_then(|template| template.render(context));
    match rendered {
        Ok(html) => with_page_headers(Html(html).into_response()),
        Err(error) => {
            tracing::error!(template = name, error = %format!("{error:#}"), "console template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// The headers of every console page: not cached (they show live data behind a sign-in), not
/// framed, scripts and styles from this origin only.
pub(crate) fn with_page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; media-src 'self' https:; frame-ancestors 'none'; \
             form-action 'self'; base-uri 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// `text` percent-encoded for a query value.
pub(crate) fn url_encode(text: &str) -> String {
    use std::fmt::Write as _;
    text.bytes().fold(String::new(), |mut out, b| {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
        out
    })
}

/// Unix ms as `2023-11-14 22:13:20 UTC`.
pub(crate) fn when(ms: i64) -> String {
    let text = voxbridge_store::rfc3339(ms);
    format!("{} {} UTC", &text[..10], &text[11..19])
}

/// Microseconds as milliseconds with one decimal, or an em dash.
pub(crate) fn micros_as_ms(us: Option<i64>) -> String {
    // Tenths of a millisecond (never negative), halves rounded up (a float's `{:.1}` rounds 180.25 to 180.2).
    us.map_or_else(
        || "—".to_owned(),
        |us| {
            let tenths = (us.max(0) + 50) / 100;
            format!("{}.{}", tenths / 10, tenths % 10)
        },
    )
}

/// A state or outcome id as words (`not_qualified` -> `not qualified`).
pub(crate) fn words(id: &str) -> String {
    id.replace(['_', '-'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        let env = environment();
        for (name, _) in TEMPLATES {
            env.get_template(name).unwrap();
        }
    }

    #[test]
    fn helpers_format_for_people() {
        assert_eq!(when(1_700_000_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(micros_as_ms(Some(180_250)), "180.3");
        assert_eq!(micros_as_ms(Some(180_249)), "180.2");
        assert_eq!(micros_as_ms(Some(7)), "0.0");
        assert_eq!(micros_as_ms(None), "—");
        assert_eq!(
            url_encode("/console/calls?state=completed&x=a b"),
            "/console/calls%3Fstate%3Dcompleted%26x%3Da%20b"
        );
        assert_eq!(words("not_qualified"), "not qualified");
    }
}
