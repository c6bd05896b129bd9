//! Sign-in, sessions and CSRF for the console.
//!
//! A session is a random 256-bit token in a cookie; the store keeps only its SHA-256 digest
//! (with who signed in, the session's CSRF token and when it expires), so reading the database
//! opens no session. Every form carries the session's CSRF token in a hidden field `csrf`,
//! compared in constant time; the sign-in form, which has no session yet, carries a
//! double-submit token instead (the same random value in a short-lived cookie and the form).
//! Passwords are argon2id PHC strings, verified off the async threads.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore as _};
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use axum::body::Bytes;
use axum::extract::{FromRequestParts, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;
use subtle::ConstantTimeEq as _;
use voxbridge_store::ConsoleSession;
use voxbridge_twilio::webhook::FormParams;

use super::view;
use crate::AppState;

/// Who signs in with the API token.
const ADMIN: &str = "admin (API token)";
/// How long the sign-in form's double-submit cookie lives, in seconds.
const LOGIN_COOKIE_SECS: u64 = 30 * 60;

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("cannot hash the password: {0}")]
pub struct PasswordError(String);

/// The argon2id PHC string of `password` (random salt, the argon2 crate's default cost), as
/// `voxbridge user add` stores it.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordError(e.to_string()))
}

/// Whether `password` matches the PHC string `phc` (false for a malformed one).
fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// A hash no password matches, verified for unknown accounts so that an unknown e-mail takes
/// as long to refuse as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password(&random_token()).unwrap_or_default())
}

/// 32 random bytes from the operating system, hex.
pub(super) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// SHA-256 (hex) of a session token: what the store keys sessions by.
fn token_hash(token: &str) -> String {
    use sha2::{Digest as _, Sha256};
    hex(&Sha256::digest(token.as_bytes()))
}

fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The cookie names: `__Host-` prefixed when the cookie is `Secure` (the browser then refuses
/// it from plain HTTP, another path or a subdomain).
fn cookie_name(state: &AppState, base: &'static str) -> String {
    if state.0.config.console.secure_cookie {
        format!("__Host-{base}")
    } else {
        base.to_owned()
    }
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Lax`, `Path=/`, `Secure` as configured.
fn set_cookie(state: &AppState, name: &str, value: &str, max_age_secs: u64) -> HeaderValue {
    let secure = if state.0.config.console.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
    ))
    .expect("cookie names and hex tokens are valid header text")
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A signed-in request: who, and the CSRF token its forms carry.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) subject: String,
    pub(crate) csrf: String,
    token_hash: String,
}

impl Session {
    /// The 403 to answer unless `form` carries this session's CSRF token.
    pub(crate) fn csrf_refusal(&self, form: &FormParams) -> Option<Response> {
        match form.get("csrf") {
            Some(given) if same(given, &self.csrf) => None,
            _ => {
                tracing::warn!("console form refused: missing or wrong CSRF token");
                Some(plain(
                    StatusCode::FORBIDDEN,
                    "This form has expired or did not come from the console (CSRF token \
                     missing or wrong). Reload the page and try again.",
                ))
            }
        }
    }
}

pub(crate) fn plain(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    /// The request's session, or: a page (`GET` of an HTML page) redirects to the sign-in page
    /// and comes back after it; anything else is 401.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let token = cookie(&parts.headers, &cookie_name(state, "vb_session"));
        let found = match token {
            Some(token) => {
                let hash = token_hash(&token);
                state
                    .0
                    .store
                    .console_session(&hash, state.now_ms())
                    .await
                    .map_err(|e| crate::ApiError::from(e).into_response())?
            }
            None => None,
        };
        if let Some(session) = found {
            return Ok(Self {
                subject: session.subject,
                csrf: session.csrf_token,
                token_hash: session.token_hash,
            });
        }
        let path = parts.uri.path();
        let page = parts.method == Method::GET && !is_csv(path) && path != "/console/events";
        if page {
            let back = parts.uri.path_and_query().map_or(path, |p| p.as_str());
            Err(
                Redirect::to(&format!("/console/login?next={}", view::url_encode(back)))
                    .into_response(),
            )
        } else {
            Err(plain(
                StatusCode::UNAUTHORIZED,
                "Sign in to the console first (/console/login).",
            ))
        }
    }
}

/// Where to go after signing in: `next` when it is a console page, else the calls list.
fn next_page(raw_query: Option<&str>) -> String {
    let next = FormParams::parse(raw_query.unwrap_or_default().as_bytes())
        .get("next")
        .map(str::to_owned)
        .unwrap_or_default();
    // Only a path of this site: no scheme, no `//host`, no backslash tricks.
    if next.starts_with("/console/") && !next.contains("//") && !next.contains('\\') {
        next
    } else {
        "/console/calls".to_owned()
    }
}

/// `GET /console/login`.
pub(crate) async fn login_page(
    State(state): State<AppState>,
    session: Result<Session, Response>,
    RawQuery(query): RawQuery,
) -> Response {
    if session.is_ok() {
        return Redirect::to(&next_page(query.as_deref())).into_response();
    }
    let signed_out = query.as_deref().is_some_and(|q| q.contains("signed_out=1"));
    login_form(
        &state,
        query.as_deref(),
        StatusCode::OK,
        None,
        signed_out,
        "",
    )
}

/// The sign-in page with a fresh double-submit token.
fn login_form(
    state: &AppState,
    query: Option<&str>,
    status: StatusCode,
    error: Option<&str>,
    signed_out: bool,
    email: &str,
) -> Response {
    let token = random_token();
    let mut response = view::render(
        state,
        "login.html",
        &json!({
            "title": "Sign in",
            "login_csrf": token,
            "next_encoded": view::url_encode(&next_page(query)),
            "error": error,
            "signed_out": signed_out,
            "email": email,
            "token_sign_in": state.0.config.console.token_sign_in,
        }),
    );
    *response.status_mut() = status;
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            state,
            &cookie_name(state, "vb_login"),
            &token,
            LOGIN_COOKIE_SECS,
        ),
    );
    response
}

/// `POST /console/login`: an e-mail and password, or the API token.
pub(crate) async fn login(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = FormParams::parse(&body);
    let expected = cookie(&headers, &cookie_name(&state, "vb_login"));
    let given = form.get("csrf").unwrap_or_default();
    if !expected.is_some_and(|expected| !given.is_empty() && same(given, &expected)) {
        tracing::warn!("console sign-in refused: missing or wrong sign-in form token");
        return login_form(
            &state,
            query.as_deref(),
            StatusCode::FORBIDDEN,
            Some("The sign-in form expired. Please try again."),
            false,
            "",
        );
    }
    let email = form.get("email").unwrap_or_default().trim().to_lowercase();
    let password = form.get("password").unwrap_or_default().to_owned();
    let token = form.get("token").unwrap_or_default().to_owned();
    let subject = if token.is_empty() {
        let hash = match state.0.store.console_password_hash(&email).await {
            Ok(hash) => hash,
            Err(e) => return crate::ApiError::from(e).into_response(),
        };
        let known = hash.is_some();
        let matches = tokio::task::spawn_blocking(move || {
            verify_password(&password, hash.as_deref().unwrap_or_else(|| decoy_hash()))
        })
        .await
        .unwrap_or(false);
        (known && matches && !email.is_empty()).then_some(email.clone())
    } else {
        let api_token = &state.0.config.api_token;
        (state.0.config.console.token_sign_in
            && !api_token.is_empty()
            && same(&token, api_token.expose()))
        .then(|| ADMIN.to_owned())
    };
    let Some(subject) = subject else {
        tracing::warn!("console sign-in refused: wrong credentials");
        return login_form(
            &state,
            query.as_deref(),
            StatusCode::UNAUTHORIZED,
            Some(if token.is_empty() {
                "Wrong e-mail or password."
            } else {
                "That is not the API token."
            }),
            false,
            &email,
        );
    };
    let token = random_token();
    let now = state.now_ms();
    let ttl = state.0.config.console.session_ttl;
    let session = ConsoleSession {
        token_hash: token_hash(&token),
        subject: subject.clone(),
        csrf_token: random_token(),
        created_at: now,
        expires_at: now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
    };
    if let Err(e) = state.0.store.insert_console_session(&session).await {
        return crate::ApiError::from(e).into_response();
    }
    tracing::info!(admin = subject == ADMIN, "console sign-in");
    let mut response = Redirect::to(&next_page(query.as_deref())).into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        set_cookie(
            &state,
            &cookie_name(&state, "vb_session"),
            &token,
            ttl.as_secs(),
        ),
    );
    headers.append(
        header::SET_COOKIE,
        set_cookie(&state, &cookie_name(&state, "vb_login"), "", 0),
    );
    response
}

/// `POST /console/logout`: ends the session (CSRF-checked), clears the cookie.
pub(crate) async fn logout(
    State(state): State<AppState>,
    session: Session,
    body: Bytes,
) -> Response {
    if let Some(refused) = session.csrf_refusal(&FormParams::parse(&body)) {
        return refused;
    }
    if let Err(e) = state
        .0
        .store
        .delete_console_session(&session.token_hash)
        .await
    {
        return crate::ApiError::from(e).into_response();
    }
    let mut response = Redirect::to("/console/login?signed_out=1").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&state, &cookie_name(&state, "vb_session"), "", 0),
    );
    response
}

/// Whether `path` names a CSV download (which a redirect to the sign-in page would break).
fn is_csv(path: &str) -> bool {
    std::path::Path::new(path)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_against_their_hash_only() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("correct horsE", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
        assert_ne!(hash, hash_password("correct horse").unwrap(), "salted");
    }

    #[test]
    fn next_is_a_console_page_or_the_list() {
        assert_eq!(
            next_page(Some("next=%2Fconsole%2Fcalls%2FCA1")),
            "/console/calls/CA1"
        );
        for bad in [
            "next=https%3A%2F%2Fevil.example",
            "next=%2F%2Fevil.example%2Fconsole%2F",
            "next=%2Fconsole%2F..%5C..",
            "next=",
        ] {
            assert_eq!(next_page(Some(bad)), "/console/calls", "{bad}");
        }
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; vb_session_x=2; vb_session=abc"),
        );
        assert_eq!(cookie(&headers, "vb_session").as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "b"), None);
    }
}
