//! The recruiter console in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, which `scripts/setup.sh` installs) driven over WebDriver, against the
//! real binary (`voxbridge serve`, the console on the bridge's port) and the simulator as
//! Twilio (its REST API places the call, posts the signed callbacks and plays the happy-path
//! candidate over ConversationRelay).
//!
//! One recruiter's session: an account made with `voxbridge user add`; sign in; the launch
//! form refuses a bad phone with the API's message; launch a screening; the calls list follows
//! the call to `completed` without a reload (Server-Sent Events); the call's page shows the
//! answers and transcript; the CSV export has the call; the page on a phone-sized screen;
//! sign out, after which the pages are closed. A screenshot of each page is saved under
//! `<target>/console-screenshots/`.

#![allow(clippy::too_many_lines)]

mod api_process;
mod browser;

use std::sync::Arc;
use std::time::{Duration, Instant};

use api_process::{free_port, scratch_dir};
use browser::{click, fill, page_text, repo, serve_with_user, shoot, start_browser, wait_until};
use fantoccini::Locator;
use serde_json::json;
use voxbridge_sim::twilio_api::{SimConfig, TwilioSim};
use voxbridge_sim::{Recorder, Scenario, TranscriptTap};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "console-browser-auth-token";
const BEARER: &str = "console-browser-bearer";
const EMAIL: &str = "recruiter@example.com";
const PASSWORD: &str = "correct horse battery staple";
const TEST: &str = "console in a browser";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recruiter_launches_watches_reviews_and_exports_a_screening_in_a_browser() {
    if !voxbridge_testkit::require_tool(TEST, "chromium")
        || !voxbridge_testkit::require_tool(TEST, "chromedriver")
    {
        return;
    }
    let dir = scratch_dir("console-browser");

    // Twilio: the simulator, playing the happy-path candidate.
    let scenario = Scenario::load(&repo().join("config/scenarios/happy-path.toml")).unwrap();
    let sim = TwilioSim::new(
        SimConfig::new(ACCOUNT, TOKEN, scenario),
        Arc::new(Recorder::new()),
        TranscriptTap::none(),
    );
    let sim_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim_url = format!("http://{}", sim_listener.local_addr().unwrap());
    let serving = sim.clone();
    tokio::spawn(async move { serving.serve(sim_listener).await });

    // voxbridge serve: bridge, API and console on one port (the public URL must name it
    // before the binary starts: Twilio's callbacks are signed for it).
    let listen = format!("127.0.0.1:{}", free_port());
    let db = dir.join("voxbridge.db");
    let ats_port = free_port();
    std::fs::write(
        dir.join("voxbridge.toml"),
        format!(
            "[media]\nlisten = \"{listen}\"\n\n\
             [api]\npublic_url = \"http://{listen}\"\napi_token = \"{BEARER}\"\n\n\
             [api.twilio]\naccount_sid = \"{ACCOUNT}\"\nauth_token = \"{TOKEN}\"\n\
             from_number = \"+14155550100\"\nrest_base_url = \"{sim_url}\"\n\n\
             [api.console]\n# Plain http:// on localhost.\nsecure_cookie = false\n\n\
             # The test runs at any hour: no calling hours.\n\
             [api.calling_hours]\nenabled = false\n\n\
             [api.webhooks]\n# An ATS that is down: the result is dead-lettered after two tries.\n\
             url = \"http://127.0.0.1:{ats_port}/results\"\nsecret = \"whsec_console_browser\"\n\
             max_attempts = 2\nbackoff_base_ms = 100\nbackoff_max_ms = 200\nsettle_ms = 0\n\n\
             [store]\ndatabase_url = \"sqlite://{}\"\n",
            db.display()
        ),
    )
    .unwrap();
    // The account, as README tells an operator to make one, and the server.
    let _serve = serve_with_user(&dir, &listen, EMAIL, PASSWORD);

    let (_driver, browser) = start_browser(&dir).await;
    let base = format!("http://{listen}");

    // No session: the console sends the browser to the sign-in page.
    browser
        .goto(&format!("{base}/console/calls"))
        .await
        .unwrap();
    let url = browser.current_url().await.unwrap();
    assert_eq!(url.path(), "/console/login", "{url}");
    fill(&browser, "email", EMAIL).await;
    fill(&browser, "password", "a wrong password").await;
    shoot(&browser, "01-sign-in").await;
    click(&browser, "form.card button[type=submit]").await;
    wait_until(
        &browser,
        "the refusal",
        Duration::from_secs(10),
        "document.body.innerText.includes('Wrong e-mail or password.')",
    )
    .await;
    fill(&browser, "email", EMAIL).await;
    fill(&browser, "password", PASSWORD).await;
    click(&browser, "form.card button[type=submit]").await;
    wait_until(
        &browser,
        "the calls page",
        Duration::from_secs(10),
        "document.querySelector('h1') && document.querySelector('h1').textContent === 'Calls'",
    )
    .await;
    assert!(page_text(&browser).await.contains(EMAIL));

    // The launch form: a bad phone number gets the API's message under the field.
    browser
        .find(Locator::LinkText("Launch a screening"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    fill(&browser, "candidateId", "cand-42").await;
    fill(&browser, "firstName", "Ada").await;
    fill(&browser, "phone", "415 867 5309").await;
    fill(&browser, "jobTitle", "Warehouse Associate").await;
    click(&browser, "main form button[type=submit]").await;
    // The click returns before the answer's page has loaded.
    wait_until(
        &browser,
        "the phone's error",
        Duration::from_secs(10),
        "document.getElementById('phone-error')",
    )
    .await;
    let error = browser
        .find(Locator::Id("phone-error"))
        .await
        .expect("the phone's error")
        .text()
        .await
        .unwrap();
    assert_eq!(
        error,
        "Phone number: phone number must start with '+' and the country code, e.g. +14155550100"
    );
    shoot(&browser, "02-launch-form-errors").await;
    fill(&browser, "phone", "+14158675309").await;
    click(&browser, "main form button[type=submit]").await;

    // The calls list follows the call to completed, live: the page is never reloaded (a
    // marker set in this page's window survives).
    wait_until(
        &browser,
        "the launched notice",
        Duration::from_secs(10),
        "document.getElementById('launched')",
    )
    .await;
    let call_sid = browser
        .find(Locator::Css("#launched a"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(call_sid.starts_with("CA"), "{call_sid}");
    browser
        .execute("window.stillTheSamePage = true; return null;", vec![])
        .await
        .unwrap();
    wait_until(
        &browser,
        "the event stream",
        Duration::from_secs(10),
        "document.body.getAttribute('data-stream') === 'open'",
    )
    .await;
    shoot(&browser, "03-calls-live").await;
    let row_state = format!(
        "document.querySelector('#call-{call_sid} [data-state]') && \
         document.querySelector('#call-{call_sid} [data-state]').getAttribute('data-state')"
    );
    wait_until(
        &browser,
        "the call's row to show completed",
        Duration::from_secs(120),
        &format!("({row_state}) === 'completed'"),
    )
    .await;
    wait_until(
        &browser,
        "the outcome",
        Duration::from_secs(30),
        &format!("document.querySelector('#call-{call_sid}').innerText.includes('qualified')"),
    )
    .await;
    assert_eq!(
        browser
            .execute("return window.stillTheSamePage === true;", vec![])
            .await
            .unwrap(),
        json!(true),
        "the list changed without a reload"
    );
    shoot(&browser, "04-calls-completed").await;

    // The call's page: answers, transcript, timeline.
    browser
        .find(Locator::Css(&format!("#call-{call_sid} a")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_until(
        &browser,
        "the call's page",
        Duration::from_secs(10),
        "document.getElementById('answers-title')",
    )
    .await;
    let detail = page_text(&browser).await;
    for expected in [
        "qualified",
        "Status timeline",
        "answered",
        "Yes, I am.",
        "Transcript",
        "Agent",
        "Candidate",
    ] {
        assert!(
            detail.contains(expected),
            "{expected:?} missing from the call's page:\n{detail}"
        );
    }
    shoot(&browser, "05-call-detail").await;

    // The CSV export, fetched with the browser's session.
    let csv = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             fetch('/console/export/calls.csv').then(r => r.text()).then(done, e => done(String(e)));",
            vec![],
        )
        .await
        .unwrap();
    let csv = csv.as_str().unwrap_or_default();
    assert!(csv.starts_with("callSid,createdAt,"), "{csv}");
    assert!(
        csv.contains(&call_sid) && csv.contains("cand-42") && csv.contains(",completed,qualified,"),
        "{csv}"
    );
    let answers = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             fetch('/console/export/answers.csv').then(r => r.text()).then(done, e => done(String(e)));",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        answers.as_str().unwrap_or_default().lines().count() >= 7,
        "a header and six answers: {answers}"
    );

    // The rate-limit look-up.
    browser
        .goto(&format!("{base}/console/rate-limits"))
        .await
        .unwrap();
    fill(&browser, "number", "+14158675309").await;
    click(&browser, "main form button[type=submit]").await;
    wait_until(
        &browser,
        "the figures",
        Duration::from_secs(10),
        "document.getElementById('stats-title')",
    )
    .await;
    shoot(&browser, "06-rate-limits").await;

    // The result webhook to the (unreachable) ATS, dead-lettered, and sent again.
    browser
        .goto(&format!("{base}/console/webhooks"))
        .await
        .unwrap();
    let mut dead = false;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        dead = browser
            .execute(
                "return Boolean(document.querySelector('#deliveries .badge.state-dead'));",
                vec![],
            )
            .await
            .unwrap()
            == json!(true);
        if dead {
            break;
        }
        // The page is server-rendered: read it again until the second try has failed.
        browser.refresh().await.unwrap();
    }
    assert!(dead, "no dead letter: {}", page_text(&browser).await);
    assert!(page_text(&browser).await.contains("Send again"));
    shoot(&browser, "06b-webhooks-dead").await;
    click(&browser, "#deliveries form button[type=submit]").await;
    wait_until(
        &browser,
        "the redelivery notice",
        Duration::from_secs(10),
        "document.getElementById('redelivered')",
    )
    .await;

    // On a phone-sized screen.
    browser.set_window_size(390, 844).await.unwrap();
    browser
        .goto(&format!("{base}/console/calls"))
        .await
        .unwrap();
    wait_until(
        &browser,
        "the list",
        Duration::from_secs(10),
        &format!("document.getElementById('call-{call_sid}')"),
    )
    .await;
    let overflow = browser
        .execute(
            "return document.documentElement.scrollWidth - window.innerWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        overflow.as_i64().unwrap_or(1) <= 0,
        "the page scrolls sideways by {overflow} px"
    );
    shoot(&browser, "07-calls-phone").await;
    browser
        .goto(&format!("{base}/console/calls/{call_sid}"))
        .await
        .unwrap();
    shoot(&browser, "08-call-detail-phone").await;
    browser.set_window_size(1280, 1000).await.unwrap();

    // Sign out: the session is over, the pages closed.
    click(&browser, "form.signout button").await;
    wait_until(
        &browser,
        "the signed-out page",
        Duration::from_secs(10),
        "document.body.innerText.includes('You are signed out.')",
    )
    .await;
    shoot(&browser, "09-signed-out").await;
    browser
        .goto(&format!("{base}/console/calls"))
        .await
        .unwrap();
    assert_eq!(
        browser.current_url().await.unwrap().path(),
        "/console/login"
    );

    browser.close().await.unwrap();
    sim.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
