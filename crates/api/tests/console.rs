//! The recruiter console over real HTTP: nothing without a session, sign-in (password and API
//! token), CSRF on every form, session expiry, the launch form reporting the API's own errors
//! and limits, CSV exports, and the event stream fed by the status webhook.

mod common;

use std::time::Duration;

use common::{Harness, T0, start, status_params};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;

const EMAIL: &str = "recruiter@example.com";
const PASSWORD: &str = "a long enough password";

/// A client that shows redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `name=value` of the `Set-Cookie` named `name` (with its attributes, for checks).
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// The value of the hidden `name="csrf"` input of a page.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..at + 64].to_owned()
}

/// Sends the sign-in form (fetched first, for its token and cookie) with `form` added.
async fn sign_in(h: &Harness, form: &[(&str, &str)]) -> reqwest::Response {
    let http = client();
    let page = http
        .get(format!("{}/console/login", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let login_cookie = cookie_pair(&set_cookie(&page, LOGIN_COOKIE).expect("login cookie"));
    let csrf = csrf_of(&page.text().await.unwrap());
    let mut pairs = vec![("csrf", csrf.as_str())];
    pairs.extend_from_slice(form);
    http.post(format!("{}/console/login", h.base))
        .header(COOKIE, login_cookie)
        .form(&pairs)
        .send()
        .await
        .unwrap()
}

/// The cookies' names with `secure_cookie` on (the default).
const SESSION_COOKIE: &str = "__Host-vb_session";
const LOGIN_COOKIE: &str = "__Host-vb_login";

async fn add_user(h: &Harness) {
    let hash = voxbridge_api::hash_password(PASSWORD).unwrap();
    assert!(
        h.state
            .store()
            .put_console_user(EMAIL, &hash, T0)
            .await
            .unwrap()
    );
}

/// Signed in as [`EMAIL`]: the session cookie pair.
async fn session(h: &Harness) -> String {
    add_user(h).await;
    let signed_in = sign_in(h, &[("email", EMAIL), ("password", PASSWORD)]).await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    cookie_pair(&set_cookie(&signed_in, SESSION_COOKIE).expect("session cookie"))
}

async fn get(h: &Harness, path: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut request = client().get(format!("{}{path}", h.base));
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    request.send().await.unwrap()
}

async fn post(h: &Harness, path: &str, cookie: &str, form: &[(&str, &str)]) -> reqwest::Response {
    client()
        .post(format!("{}{path}", h.base))
        .header(COOKIE, cookie)
        .form(form)
        .send()
        .await
        .unwrap()
}

/// The CSRF token of the session's pages.
async fn csrf(h: &Harness, cookie: &str) -> String {
    let page = get(h, "/console/screenings/new", Some(cookie)).await;
    assert_eq!(page.status(), StatusCode::OK);
    csrf_of(&page.text().await.unwrap())
}

#[tokio::test]
async fn nothing_is_served_without_a_session() {
    let h = start(|_| {}).await;
    // Pages send the browser to the sign-in page, and back afterwards.
    for (path, next) in [
        ("/", None),
        ("/console/calls", Some("next=/console/calls")),
        ("/console/calls/CA00000000000000000000000000000001", None),
        ("/console/screenings/new", None),
        ("/console/rate-limits?number=%2B14155550100", None),
    ] {
        let mut response = get(&h, path, None).await;
        if path == "/" {
            assert_eq!(response.status(), StatusCode::SEE_OTHER);
            response = get(&h, response.headers()[LOCATION].to_str().unwrap(), None).await;
        }
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
        assert!(
            location.starts_with("/console/login?next="),
            "{path}: {location}"
        );
        if let Some(next) = next {
            assert!(location.ends_with(next), "{location}");
        }
        assert!(
            response.text().await.unwrap().is_empty(),
            "{path}: no content"
        );
    }
    // Everything else is refused outright: exports, the event stream, every form.
    for path in [
        "/console/export/calls.csv",
        "/console/export/answers.csv",
        "/console/events",
    ] {
        let response = get(&h, path, None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    for path in ["/console/screenings/new", "/console/logout"] {
        let response = post(&h, path, "vb_session=forged", &[("csrf", "x")]).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    // A made-up session cookie is no session.
    let forged = get(&h, "/console/calls", Some("__Host-vb_session=00ff")).await;
    assert_eq!(forged.status(), StatusCode::SEE_OTHER);
    assert!(h.fake.creates.lock().unwrap().is_empty());
    // The assets are public (the sign-in page needs them).
    let css = get(&h, "/console/assets/console.css", None).await;
    assert_eq!(css.status(), StatusCode::OK);
    assert!(
        css.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
}

#[tokio::test]
async fn a_password_signs_in_with_a_hardened_cookie_and_signing_out_ends_the_session() {
    let h = start(|_| {}).await;
    add_user(&h).await;
    let wrong = sign_in(&h, &[("email", EMAIL), ("password", "not the password")]).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&wrong, SESSION_COOKIE).is_none());
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("Wrong e-mail or password.")
    );
    let unknown = sign_in(
        &h,
        &[("email", "nobody@example.com"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);

    // The e-mail's case does not matter.
    let signed_in = sign_in(
        &h,
        &[("email", "Recruiter@Example.com"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed_in.headers()[LOCATION], "/console/calls");
    let line = set_cookie(&signed_in, SESSION_COOKIE).expect("a __Host- session cookie");
    for attribute in [
        "HttpOnly",
        "SameSite=Lax",
        "Secure",
        "Path=/",
        "Max-Age=28800",
    ] {
        assert!(line.contains(attribute), "{attribute} missing: {line}");
    }
    let cookie = cookie_pair(&line);
    let calls = get(&h, "/console/calls", Some(&cookie)).await;
    assert_eq!(calls.status(), StatusCode::OK);
    assert_eq!(calls.headers()["cache-control"], "no-store");
    assert_eq!(calls.headers()["x-frame-options"], "DENY");
    let html = calls.text().await.unwrap();
    assert!(html.contains(EMAIL), "shows who is signed in");
    assert!(html.contains("<h1>Calls</h1>"));

    let token = csrf_of(&html);
    let out = post(&h, "/console/logout", &cookie, &[("csrf", &token)]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(out.headers()[LOCATION], "/console/login?signed_out=1");
    let cleared = set_cookie(&out, SESSION_COOKIE).unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // The old cookie no longer opens anything, even if the browser kept it.
    let after = get(&h, "/console/calls", Some(&cookie)).await;
    assert_eq!(after.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_api_token_signs_in_an_administrator() {
    let h = start(|_| {}).await;
    let wrong = sign_in(&h, &[("token", "not-the-token")]).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let admin = sign_in(&h, &[("token", common::BEARER)]).await;
    assert_eq!(admin.status(), StatusCode::SEE_OTHER);
    let cookie = cookie_pair(&set_cookie(&admin, SESSION_COOKIE).unwrap());
    let page = get(&h, "/console/calls", Some(&cookie)).await;
    assert!(page.text().await.unwrap().contains("admin (API token)"));

    let off = start(|c| c.console.token_sign_in = false).await;
    let refused = sign_in(&off, &[("token", common::BEARER)]).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn forms_without_the_csrf_token_are_refused() {
    let h = start(|_| {}).await;
    let cookie = session(&h).await;
    let form = [
        ("candidateId", "cand-1"),
        ("firstName", "Ada"),
        ("phone", "+14158675309"),
        ("jobTitle", "Engineer"),
        ("screening", "default"),
    ];
    let without = post(&h, "/console/screenings/new", &cookie, &form).await;
    assert_eq!(without.status(), StatusCode::FORBIDDEN);
    let mut wrong = form.to_vec();
    wrong.push((
        "csrf",
        "0000000000000000000000000000000000000000000000000000000000000000",
    ));
    let forged = post(&h, "/console/screenings/new", &cookie, &wrong).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(h.fake.creates.lock().unwrap().is_empty(), "no call placed");
    // Signing out needs it too: a cross-site POST cannot end the session.
    let out = post(&h, "/console/logout", &cookie, &[]).await;
    assert_eq!(out.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        get(&h, "/console/calls", Some(&cookie)).await.status(),
        StatusCode::OK
    );
    // The sign-in form: its token must match the cookie set with the form.
    let page = get(&h, "/console/login", None).await;
    let html = page.text().await.unwrap();
    let no_cookie = client()
        .post(format!("{}/console/login", h.base))
        .form(&[
            ("csrf", csrf_of(&html).as_str()),
            ("email", EMAIL),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(no_cookie.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&no_cookie, SESSION_COOKIE).is_none());
}

#[tokio::test]
async fn sessions_expire() {
    let h = start(|c| c.console.session_ttl = Duration::from_secs(60)).await;
    let cookie = session(&h).await;
    assert_eq!(
        get(&h, "/console/calls", Some(&cookie)).await.status(),
        StatusCode::OK
    );
    h.clock.advance(59_000);
    assert_eq!(
        get(&h, "/console/calls", Some(&cookie)).await.status(),
        StatusCode::OK
    );
    h.clock.advance(1_000);
    assert_eq!(
        get(&h, "/console/calls", Some(&cookie)).await.status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn plain_http_cookies_when_secure_cookies_are_off() {
    let h = start(|c| c.console.secure_cookie = false).await;
    add_user(&h).await;
    let page = get(&h, "/console/login", None).await;
    let login = set_cookie(&page, "vb_login").expect("an unprefixed login cookie");
    assert!(!login.contains("Secure"), "{login}");
    let csrf = csrf_of(&page.text().await.unwrap());
    let signed_in = client()
        .post(format!("{}/console/login", h.base))
        .header(COOKIE, cookie_pair(&login))
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", EMAIL),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let line = set_cookie(&signed_in, "vb_session").unwrap();
    assert!(
        line.contains("HttpOnly") && !line.contains("Secure"),
        "{line}"
    );
}

#[tokio::test]
async fn the_launch_form_shows_the_apis_errors_and_limits_and_places_the_call() {
    let h = start(|c| c.max_calls_per_candidate_per_day = 1).await;
    let cookie = session(&h).await;
    let token = csrf(&h, &cookie).await;
    let bad = [
        ("csrf", token.as_str()),
        ("candidateId", "cand-1"),
        ("firstName", ""),
        ("phone", "555-0100"),
        ("jobTitle", "Warehouse Associate"),
        ("screening", "nope"),
    ];
    let refused = post(&h, "/console/screenings/new", &cookie, &bad).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let html = refused.text().await.unwrap();
    // Each field's message is the API's, word for word.
    let (status, api) = h
        .create_screening(
            &json!({"candidateId": "cand-1", "firstName": "", "phone": "555-0100",
            "jobTitle": "Warehouse Associate", "screening": "nope"}),
        )
        .await;
    assert_eq!(status.as_u16(), 400);
    for field in ["firstName", "phone", "screening"] {
        let message = api["errors"][field].as_str().unwrap();
        let escaped = message.replace('\'', "&#x27;").replace('"', "&quot;");
        assert!(
            html.contains(&format!("id=\"{field}-error\"")) && html.contains(&escaped),
            "{field}: {message} not shown"
        );
    }
    assert!(html.contains("aria-invalid=\"true\""));
    assert!(
        html.contains("value=\"Warehouse Associate\""),
        "typed values are kept"
    );
    assert!(h.fake.creates.lock().unwrap().is_empty());

    let form_page = get(&h, "/console/screenings/new", Some(&cookie))
        .await
        .text()
        .await
        .unwrap();
    let key_at = form_page.find("name=\"idempotencyKey\" value=\"").unwrap() + 29;
    let key = form_page[key_at..key_at + 64].to_owned();
    let good = [
        ("csrf", token.as_str()),
        ("idempotencyKey", key.as_str()),
        ("candidateId", "cand-1"),
        ("firstName", "Ada"),
        ("phone", "+1 415 867 5309"),
        ("jobTitle", "Warehouse Associate"),
        ("screening", "default"),
    ];
    let launched = post(&h, "/console/screenings/new", &cookie, &good).await;
    assert_eq!(launched.status(), StatusCode::SEE_OTHER);
    let location = launched.headers()[LOCATION].to_str().unwrap().to_owned();
    let call_sid = location
        .strip_prefix("/console/calls?launched=")
        .unwrap()
        .to_owned();
    assert_eq!(h.fake.creates.lock().unwrap().len(), 1);
    // The same form sent again (a double click) is the same screening: no second call.
    let again = post(&h, "/console/screenings/new", &cookie, &good).await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    assert_eq!(again.headers()[LOCATION].to_str().unwrap(), location);
    assert_eq!(h.fake.creates.lock().unwrap().len(), 1);

    let list = get(&h, &location, Some(&cookie))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        list.contains(&format!("id=\"call-{call_sid}\"")),
        "the new call is listed"
    );
    assert!(list.contains("Warehouse Associate"));

    // A new form for the same candidate: the per-candidate cap, as the API words it.
    let mut capped = good.to_vec();
    capped[1] = ("idempotencyKey", "another-key");
    let refused = post(&h, "/console/screenings/new", &cookie, &capped).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let html = refused.text().await.unwrap();
    assert!(
        html.contains("already called 1 times in the last 24 hours (limit 1)"),
        "{html}"
    );
    assert_eq!(h.fake.creates.lock().unwrap().len(), 1);
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one story: seed, filter, count, export
async fn the_list_filters_counts_today_and_exports_csv() {
    let h = start(|_| {}).await;
    let cookie = session(&h).await;
    let token = csrf(&h, &cookie).await;
    for (candidate, job) in [("cand-1", "Driver"), ("cand-2", "Picker, nights")] {
        let launched = post(
            &h,
            "/console/screenings/new",
            &cookie,
            &[
                ("csrf", token.as_str()),
                ("candidateId", candidate),
                ("firstName", "Ada"),
                ("phone", "+14158675309"),
                ("jobTitle", job),
                ("screening", "default"),
            ],
        )
        .await;
        assert_eq!(launched.status(), StatusCode::SEE_OTHER);
    }
    let creates = h.fake.creates.lock().unwrap().len();
    assert_eq!(creates, 2);
    let first = "CA00000000000000000000000000000001";
    // The first call completes.
    let done = h
        .webhook(
            "/twilio/voice/status",
            &status_params(first, "completed", "3"),
        )
        .await;
    assert_eq!(done.status().as_u16(), 204);

    let all = get(&h, "/console/calls", Some(&cookie))
        .await
        .text()
        .await
        .unwrap();
    assert!(all.contains("2 calls"), "{all}");
    assert!(all.contains("2 screenings"), "today's count");
    let completed = get(&h, "/console/calls?state=completed", Some(&cookie))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        completed.contains(first) && completed.contains("1 call<"),
        "{completed}"
    );
    let by_job = get(
        &h,
        "/console/calls?job=Picker%2C+nights&state=&date=",
        Some(&cookie),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(
        by_job.contains("1 call<") && !by_job.contains(first),
        "{by_job}"
    );
    let day = get(&h, "/console/calls?date=2023-11-13", Some(&cookie))
        .await
        .text()
        .await
        .unwrap();
    assert!(day.contains("0 calls"), "T0 is 2023-11-14");
    let bogus = get(&h, "/console/calls?state=bogus", Some(&cookie)).await;
    assert_eq!(bogus.status(), StatusCode::BAD_REQUEST);
    assert!(bogus.text().await.unwrap().contains("unknown state"));

    let csv = get(
        &h,
        "/console/export/calls.csv?job=Picker%2C+nights",
        Some(&cookie),
    )
    .await;
    assert_eq!(csv.status(), StatusCode::OK);
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(
        csv.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("calls.csv")
    );
    let text = csv.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("callSid,createdAt,candidateId,firstName,jobTitle,to,"));
    assert!(
        lines[1].contains(",cand-2,Ada,\"Picker, nights\",+14158675309,"),
        "{text}"
    );

    // Answers: one row each, as the agent stored them.
    let answers = json!([{"question_id": "work_authorization", "raw": "Yes, I am.",
        "value": {"type": "yes_no", "value": true}, "confidence": 0.93, "status": "accepted"}]);
    assert!(
        h.state
            .store()
            .save_screening_result(first, &answers, "qualified", None, T0)
            .await
            .unwrap()
    );
    let csv = get(&h, "/console/export/answers.csv", Some(&cookie))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        csv.contains(&format!(
            "{first},cand-1,Driver,qualified,work_authorization,\"Yes, I am.\",yes,93%,accepted"
        )),
        "{csv}"
    );
    let detail = get(&h, &format!("/console/calls/{first}"), Some(&cookie)).await;
    assert_eq!(detail.status(), StatusCode::OK);
    let html = detail.text().await.unwrap();
    assert!(
        html.contains("work_authorization") && html.contains("93%"),
        "{html}"
    );
    assert_eq!(
        get(
            &h,
            "/console/calls/CA0000000000000000000000000000ffff",
            Some(&cookie)
        )
        .await
        .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn status_webhooks_reach_open_event_streams() {
    let h = start(|_| {}).await;
    let cookie = session(&h).await;
    let mut stream = get(&h, "/console/events", Some(&cookie)).await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let call = "CA0000000000000000000000000000abcd";
    let accepted = h
        .webhook("/twilio/voice/status", &status_params(call, "ringing", "1"))
        .await;
    assert_eq!(accepted.status().as_u16(), 204);
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !seen.contains(&format!("event: call\ndata: {call}\n")) {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("no event within 5 s: {seen:?}"))
            .unwrap()
            .expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn the_rate_limit_page_shows_the_apis_figures() {
    let h = start(|c| c.rate_limit.allowlist = vec!["+14155550100".to_owned()]).await;
    let cookie = session(&h).await;
    let (status, _) = h.inbound_call(1, "+14155550111").await;
    assert_eq!(status, 200);
    let page = get(
        &h,
        "/console/rate-limits?number=%2B14155550111",
        Some(&cookie),
    )
    .await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<dt>Allowed in total</dt><dd>1</dd>"),
        "{html}"
    );
    let allowlisted = get(
        &h,
        "/console/rate-limits?number=%2B14155550100",
        Some(&cookie),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(allowlisted.contains("yes: never limited"));
    let bad = get(&h, "/console/rate-limits?number=12", Some(&cookie)).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.unwrap().contains("number must be E.164"));
}

#[tokio::test]
async fn a_launch_outside_calling_hours_shows_when_the_call_will_ring() {
    // T0 is 22:13 in London: the candidate is called at 09:00 London time.
    let h = start(|_| {}).await;
    let cookie = session(&h).await;
    let token = csrf(&h, &cookie).await;
    let form = [
        ("csrf", token.as_str()),
        ("candidateId", "cand-uk"),
        ("firstName", "Ada"),
        ("phone", "+44 20 7123 4567"),
        ("jobTitle", "Welder"),
        ("screening", "default"),
    ];
    let launched = post(&h, "/console/screenings/new", &cookie, &form).await;
    assert_eq!(launched.status(), StatusCode::SEE_OTHER);
    let location = launched.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("/console/calls?scheduled="),
        "{location}"
    );
    assert!(h.fake.creates.lock().unwrap().is_empty(), "no call yet");
    let page = get(&h, &location, Some(&cookie))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(
            "Screening for Ada scheduled: it is outside their calling hours, so the call will \
             be placed at 2023-11-15 09:00:00 UTC."
        ),
        "{page}"
    );
    let id = location.trim_start_matches("/console/calls?scheduled=");
    let row = &page[page
        .find(&format!("id=\"scheduled-{id}\""))
        .expect("listed")..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains("Ada") && row.contains("Welder") && row.contains("2023-11-15 09:00:00 UTC"),
        "{row}"
    );

    // Cancel it from its row: refused without the form's CSRF token, then canceled.
    let cancel = format!("/console/screenings/{id}/cancel");
    let forged = post(&h, &cancel, &cookie, &[("csrf", "not-the-token")]).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let canceled = post(&h, &cancel, &cookie, &[("csrf", token.as_str())]).await;
    assert_eq!(canceled.status(), StatusCode::SEE_OTHER);
    let location = canceled.headers()[LOCATION].to_str().unwrap().to_owned();
    assert_eq!(location, format!("/console/calls?canceled={id}"));
    let page = get(&h, &location, Some(&cookie))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!(
            "Screening {id} is canceled: its call will not be placed."
        )),
        "{page}"
    );
    assert!(!page.contains(&format!("id=\"scheduled-{id}\"")), "{page}");
    let (_, detail) = h.api_get(&format!("/api/screenings/{id}")).await;
    assert_eq!(detail["screening"]["state"], "canceled");
    // Twice: the API's 409, as an error page.
    let again = post(&h, &cancel, &cookie, &[("csrf", token.as_str())]).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert!(h.fake.creates.lock().unwrap().is_empty(), "never called");
}

#[tokio::test]
async fn campaigns_launch_from_a_csv_with_every_bad_row_named() {
    // T0 is 14:13 in San Francisco, 22:13 in London.
    let h = start(|c| c.retries.max_attempts = 3).await;
    let cookie = session(&h).await;
    let token = csrf(&h, &cookie).await;
    let page = get(&h, "/console/campaigns", Some(&cookie)).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("No campaigns yet."), "{html}");
    assert!(html.contains("aria-current=\"page\">Campaigns</a>"));

    // A bad row: refused with the row named, the form kept.
    let bad = "candidateId,firstName,phone\nk1,Ann,+14158675309\nk2,Bo,12345\n";
    let refused = post(
        &h,
        "/console/campaigns",
        &cookie,
        &[
            ("csrf", token.as_str()),
            ("name", "Welders"),
            ("jobTitle", "Welder"),
            ("csv", bad),
        ],
    )
    .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let html = refused.text().await.unwrap();
    assert!(html.contains("Line 3: phone:"), "{html}");
    assert!(html.contains("k2,Bo,12345"), "the CSV is kept: {html}");
    // Without the form's token: refused.
    let forged = post(
        &h,
        "/console/campaigns",
        &cookie,
        &[("csrf", "x"), ("csv", bad)],
    )
    .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    let good = "candidateId,firstName,phone\nk1,Ann,+14158675309\nk2,Bo,+442071234567\n";
    let launched = post(
        &h,
        "/console/campaigns",
        &cookie,
        &[
            ("csrf", token.as_str()),
            ("name", "Welders"),
            ("jobTitle", "Welder"),
            ("csv", good),
        ],
    )
    .await;
    assert_eq!(launched.status(), StatusCode::SEE_OTHER);
    let location = launched.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("/console/campaigns?launched="),
        "{location}"
    );
    let html = get(&h, &location, Some(&cookie))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("launched: its calls go out"), "{html}");
    let row = &html[html.find("id=\"campaign-").expect("listed")..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains("Welders") && row.contains("0 of 2 done"),
        "{row}"
    );
}

#[tokio::test]
async fn a_candidates_thread_shows_both_sides_their_consent_and_screenings() {
    // T0 is 14:13 in San Francisco.
    let h = start(|c| c.retries.max_attempts = 3).await;
    let cookie = session(&h).await;
    // The candidate is called, misses it, gets the follow-up and answers.
    let (_, created) = h
        .create_screening(&json!({
            "candidateId": "k1", "firstName": "Ann", "phone": "+14158675309", "jobTitle": "Welder",
        }))
        .await;
    let sid = created["callSid"].as_str().unwrap().to_owned();
    let r = h
        .webhook(
            "/twilio/voice/status",
            &status_params(&sid, "no-answer", "2"),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        voxbridge_api::outreach::send_follow_ups_once(&h.state)
            .await
            .unwrap(),
        1
    );
    let r = h
        .webhook(
            "/twilio/sms/inbound",
            &[
                ("AccountSid", common::ACCOUNT),
                ("MessageSid", "SM000000000000000000000000000000aa"),
                ("From", "+14158675309"),
                ("To", common::FROM),
                ("Body", "tomorrow at 4"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);

    let html = get(&h, "/console/messages", Some(&cookie))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("href=\"/console/messages/%2B14158675309\""),
        "{html}"
    );
    assert!(html.contains("tomorrow at 4"), "the latest message: {html}");
    let html = get(&h, "/console/messages/%2B14158675309", Some(&cookie))
        .await
        .text()
        .await
        .unwrap();
    let outbound = html.find("class=\"outbound\"").expect("our follow-up");
    let inbound = html.find("class=\"inbound\"").expect("their reply");
    assert!(outbound < inbound, "oldest first: {html}");
    assert!(html.contains("we just tried to call you about your application for Welder"));
    assert!(html.contains("call 2 of 3"), "{html}");
    assert!(
        html.contains("next call 2023-11-16 00:00:00 UTC"),
        "4 PM in San Francisco: {html}"
    );
    assert!(html.contains("follow-up sent"), "{html}");
    let missing = get(&h, "/console/messages/not-a-number", Some(&cookie)).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let anonymous = get(&h, "/console/messages", None).await;
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
}
