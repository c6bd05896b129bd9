//! `X-Twilio-Signature`: compute and validate
//! (<https://www.twilio.com/docs/usage/security>, twilio-python `request_validator.py`).
//!
//! Algorithm: take the full URL Twilio requested; for a form POST append every parameter as
//! `name + value`, names sorted byte-wise (case-sensitive), a repeated name's values
//! de-duplicated and sorted (as the SDKs do); HMAC-SHA1 with the primary auth token; base64.
//! JSON webhooks carry `bodySHA256=<hex sha256 of the body>` in the query: the signature covers
//! the URL alone, and the body hash is compared separately. WebSocket upgrades are signed over
//! the `wss://` form of the URL with no parameters.
//!
//! Twilio does not always sign the URL the server sees: voice callbacks over HTTPS drop the
//! port, credentials (`user:pass@`) are dropped, Node's WHATWG URL percent-encodes `'` in the
//! query, and WebSocket handshakes may differ by a trailing `/`. So validation tries each of
//! those forms, like twilio-python (port removed / default port added) and twilio-node
//! (legacy query encoding). All comparisons are constant-time.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha1 = Hmac<Sha1>;

/// The query parameter that carries the body hash of a JSON webhook.
pub const BODY_HASH_PARAM: &str = "bodySHA256";

/// Why a request failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No (or an empty) `X-Twilio-Signature` header.
    #[error("missing X-Twilio-Signature")]
    Missing,
    /// The signature matches none of the URL forms Twilio may have signed.
    #[error("X-Twilio-Signature does not match")]
    Mismatch,
    /// The signature is good but the body's SHA-256 differs from `bodySHA256`.
    #[error("body does not match its bodySHA256 query parameter")]
    BodyHashMismatch,
    /// A JSON webhook URL without `bodySHA256`.
    #[error("JSON webhook URL has no bodySHA256 query parameter")]
    MissingBodyHash,
    /// The URL is not an absolute http(s)/ws(s) URL.
    #[error("cannot validate against URL: {0}")]
    BadUrl(&'static str),
}

/// Computes and checks signatures with one account's auth token. `Debug` never shows the token.
#[derive(Clone)]
pub struct RequestValidator {
    auth_token: String,
}

impl fmt::Debug for RequestValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestValidator")
            .field("auth_token", &"<redacted>")
            .finish()
    }
}

impl RequestValidator {
    /// A validator for the account's primary auth token.
    pub fn new(auth_token: impl Into<String>) -> Self {
        Self {
            auth_token: auth_token.into(),
        }
    }

    /// The signature Twilio sends for `url` and form `params` (empty for GET, JSON and
    /// WebSocket requests).
    pub fn sign(&self, url: &str, params: &[(String, String)]) -> String {
        let mac = self.mac_over(url, &canonical_params(params));
        STANDARD.encode(mac.finalize().into_bytes())
    }

    /// The signature of a WebSocket upgrade to `url` (`https://` is rewritten to `wss://`).
    pub fn sign_websocket(&self, url: &str) -> String {
        self.sign(&websocket_scheme(url), &[])
    }

    /// Checks a form-encoded (or GET) webhook. Pass every received parameter: Twilio adds new
    /// ones without notice, and they are all signed.
    pub fn validate_form(
        &self,
        url: &str,
        params: &[(String, String)],
        signature: &str,
    ) -> Result<(), SignatureError> {
        let signature = present(signature)?;
        let suffix = canonical_params(params);
        self.check_variants(&url_variants(url)?, &suffix, signature)
    }

    /// Checks an `application/json` webhook: the signature over the URL (which carries
    /// `bodySHA256`), then the body's SHA-256 against that parameter, in constant time.
    pub fn validate_json(
        &self,
        url: &str,
        body: &[u8],
        signature: &str,
    ) -> Result<(), SignatureError> {
        let signature = present(signature)?;
        let expected_hash =
            query_param(url, BODY_HASH_PARAM).ok_or(SignatureError::MissingBodyHash)?;
        self.check_variants(&url_variants(url)?, &[], signature)?;
        let actual = body_sha256_hex(body);
        let expected = expected_hash.to_ascii_lowercase();
        if bool::from(actual.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(())
        } else {
            Err(SignatureError::BodyHashMismatch)
        }
    }

    /// Checks a WebSocket upgrade (Media Streams, ConversationRelay). The URL may be given as
    /// the server saw it (`https://`); it is rewritten to `wss://`, and both the form with and
    /// without a trailing `/` on the path are tried, as Twilio's security page advises.
    pub fn validate_websocket(&self, url: &str, signature: &str) -> Result<(), SignatureError> {
        let signature = present(signature)?;
        let url = websocket_scheme(url);
        let mut variants = url_variants(&url)?;
        // The toggled form is a guess; if it does not parse, the given form still counts.
        if let Ok(toggled) = url_variants(&toggle_trailing_slash(&url)) {
            variants.extend(toggled);
        }
        dedupe(&mut variants);
        self.check_variants(&variants, &[], signature)
    }

    fn mac_over(&self, url: &str, suffix: &[u8]) -> HmacSha1 {
        let mut mac = HmacSha1::new_from_slice(self.auth_token.as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(url.as_bytes());
        mac.update(suffix);
        mac
    }

    fn check_variants(
        &self,
        urls: &[String],
        suffix: &[u8],
        signature: &str,
    ) -> Result<(), SignatureError> {
        let mut matched = subtle::Choice::from(0);
        // Every variant is computed and compared, so timing does not tell which one matched.
        for url in urls {
            let expected = STANDARD.encode(self.mac_over(url, suffix).finalize().into_bytes());
            matched |= expected.as_bytes().ct_eq(signature.as_bytes());
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

fn present(signature: &str) -> Result<&str, SignatureError> {
    let signature = signature.trim();
    if signature.is_empty() {
        Err(SignatureError::Missing)
    } else {
        Ok(signature)
    }
}

/// Lower-case hex SHA-256, as Twilio puts in `bodySHA256`.
pub fn body_sha256_hex(body: &[u8]) -> String {
    use fmt::Write as _;
    let digest = Sha256::digest(body);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// `url` with `bodySHA256=<hash of body>` appended to its query: the URL Twilio signs for a
/// JSON webhook (for the simulator).
pub fn json_webhook_url(url: &str, body: &[u8]) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!(
        "{url}{separator}{BODY_HASH_PARAM}={}",
        body_sha256_hex(body)
    )
}

/// Sorted `name+value` pairs, a repeated name's values de-duplicated.
fn canonical_params(params: &[(String, String)]) -> Vec<u8> {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = Vec::with_capacity(sorted.iter().map(|(k, v)| k.len() + v.len()).sum());
    for (key, value) in sorted {
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// The first value of `name` in the URL's query, undecoded.
fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or_default();
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn websocket_scheme(url: &str) -> String {
    if let Some(rest) = strip_scheme(url, "https") {
        format!("wss://{rest}")
    } else if let Some(rest) = strip_scheme(url, "http") {
        format!("ws://{rest}")
    } else {
        url.to_owned()
    }
}

fn strip_scheme<'a>(url: &'a str, scheme: &str) -> Option<&'a str> {
    let (head, rest) = url.split_once("://")?;
    head.eq_ignore_ascii_case(scheme).then_some(rest)
}

/// Adds or removes one trailing `/` at the end of the path (before `?` or `#`).
fn toggle_trailing_slash(url: &str) -> String {
    let split = url.find(['?', '#']).unwrap_or(url.len());
    let (base, tail) = url.split_at(split);
    match base.strip_suffix('/') {
        Some(stripped) => format!("{stripped}{tail}"),
        None => format!("{base}/{tail}"),
    }
}

struct UrlParts<'a> {
    scheme: &'a str,
    userinfo: Option<&'a str>,
    host: &'a str,
    port: Option<&'a str>,
    rest: &'a str,
}

impl UrlParts<'_> {
    fn render(&self, userinfo: Option<&str>, port: Option<&str>) -> String {
        let mut out =
            String::with_capacity(self.scheme.len() + self.host.len() + self.rest.len() + 16);
        out.push_str(self.scheme);
        out.push_str("://");
        if let Some(userinfo) = userinfo {
            out.push_str(userinfo);
            out.push('@');
        }
        out.push_str(self.host);
        if let Some(port) = port {
            out.push(':');
            out.push_str(port);
        }
        out.push_str(self.rest);
        out
    }

    fn default_port(&self) -> &'static str {
        if self.scheme.eq_ignore_ascii_case("https") || self.scheme.eq_ignore_ascii_case("wss") {
            "443"
        } else {
            "80"
        }
    }
}

fn split_url(url: &str) -> Result<UrlParts<'_>, SignatureError> {
    let (scheme, after) = url
        .split_once("://")
        .ok_or(SignatureError::BadUrl("no scheme"))?;
    if !["http", "https", "ws", "wss"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
    {
        return Err(SignatureError::BadUrl(
            "scheme must be http, https, ws or wss",
        ));
    }
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => (Some(userinfo), host_port),
        None => (None, authority),
    };
    let (host, port) = if host_port.starts_with('[') {
        let close = host_port
            .find(']')
            .ok_or(SignatureError::BadUrl("unclosed IPv6 literal"))?;
        let (host, tail) = host_port.split_at(close + 1);
        match tail.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if tail.is_empty() => (host, None),
            None => return Err(SignatureError::BadUrl("junk after IPv6 literal")),
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err(SignatureError::BadUrl("no host"));
    }
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(SignatureError::BadUrl("port is not a number"));
    }
    Ok(UrlParts {
        scheme,
        userinfo,
        host,
        port,
        rest,
    })
}

/// Every form of `url` Twilio may have signed: as given, without the port, with the default
/// port, each with and without credentials, each also with the query re-encoded as a WHATWG
/// URL parser would (twilio-node).
fn url_variants(url: &str) -> Result<Vec<String>, SignatureError> {
    let parts = split_url(url)?;
    let default_port = parts.default_port();
    let mut variants = vec![url.to_owned()];
    for userinfo in [parts.userinfo, None] {
        variants.push(parts.render(userinfo, parts.port));
        variants.push(parts.render(userinfo, None));
        variants.push(parts.render(userinfo, Some(parts.port.unwrap_or(default_port))));
    }
    let reencoded: Vec<String> = variants.iter().filter_map(|v| whatwg_query(v)).collect();
    variants.extend(reencoded);
    dedupe(&mut variants);
    Ok(variants)
}

fn dedupe(variants: &mut Vec<String>) {
    let mut seen = Vec::with_capacity(variants.len());
    variants.retain(|v| {
        if seen.contains(v) {
            false
        } else {
            seen.push(v.clone());
            true
        }
    });
}

/// The URL with its query percent-encoded by the WHATWG special-query set (space, `"`, `<`,
/// `>`, `'`, controls and non-ASCII), or `None` if nothing changes. Node's `URL` does this, so
/// a URL with `It's` is signed as `It%27s` by twilio-node.
fn whatwg_query(url: &str) -> Option<String> {
    let start = url.find('?')? + 1;
    let end = url[start..].find('#').map_or(url.len(), |i| start + i);
    let query = &url[start..end];
    let needs =
        |b: u8| matches!(b, b' ' | b'"' | b'<' | b'>' | b'\'') || !(0x20..0x7f).contains(&b);
    if !query.bytes().any(needs) {
        return None;
    }
    let mut out = String::with_capacity(url.len() + 16);
    out.push_str(&url[..start]);
    for byte in query.bytes() {
        if needs(byte) {
            use fmt::Write as _;
            let _ = write!(out, "%{byte:02X}");
        } else {
            out.push(char::from(byte));
        }
    }
    out.push_str(&url[end..]);
    Some(out)
}

#[cfg(test)]
mod tests;
