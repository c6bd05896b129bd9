//! Outreach in a real browser, end to end: the real binary (`voxbridge serve`), the simulator
//! as Twilio (its REST API places each call and plays the candidate: one answers the happy
//! path, one never picks up, one is busy; its Messages API takes the texts), headless
//! Chromium as the recruiter.
//!
//! The recruiter launches a campaign from a CSV on the Campaigns page; the calls go out at the
//! account's pace; the answered one is qualified, the two missed ones are scheduled again and
//! each candidate gets the follow-up text; one replies with a time (their next call moves to
//! it, in their zone), the other replies STOP (their next call is canceled); the campaign's
//! progress and the candidate's thread show it all. Screenshots of each page are saved under
//! `<target>/console-screenshots/`.

#![allow(clippy::too_many_lines)]

mod api_process;
mod browser;

use std::sync::Arc;
use std::time::{Duration, Instant};

use api_process::{free_port, scratch_dir};
use browser::{click, page_text, repo, serve_with_user, shoot, sign_in, start_browser, wait_until};
use fantoccini::{Client, Locator};
use voxbridge_sim::messaging::{MessagingSim, MessagingSimConfig};
use voxbridge_sim::twilio_api::{SimConfig, TwilioSim};
use voxbridge_sim::{Recorder, Scenario, TranscriptTap};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "outreach-browser-auth-token";
const BEARER: &str = "outreach-browser-bearer";
const EMAIL: &str = "recruiter@example.com";
const PASSWORD: &str = "correct horse battery staple";
const TEST: &str = "outreach in a browser";
const FROM: &str = "+14155550100";
const ANN: &str = "+14158675301";
const BO: &str = "+14158675302";
const CY: &str = "+14158675303";

/// Reloads `path` until `check` (JavaScript) holds, or fails after `limit` with the page's text.
async fn reload_until(
    browser: &Client,
    base: &str,
    path: &str,
    what: &str,
    limit: Duration,
    check: &str,
) {
    let deadline = Instant::now() + limit;
    loop {
        browser.goto(&format!("{base}{path}")).await.unwrap();
        let holds = browser
            .execute(&format!("return Boolean({check});"), vec![])
            .await
            .unwrap();
        if holds == serde_json::json!(true) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}; the page says:\n{}",
            page_text(browser).await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_with_missed_calls_follow_ups_and_replies_in_a_browser() {
    if !voxbridge_testkit::require_tool(TEST, "chromium")
        || !voxbridge_testkit::require_tool(TEST, "chromedriver")
    {
        return;
    }
    let dir = scratch_dir("outreach-browser");

    // Twilio: Ann answers (the happy path), Bo never picks up, Cy is busy; texts accepted.
    let scenarios = repo().join("config/scenarios");
    let happy = Scenario::load(&scenarios.join("happy-path.toml")).unwrap();
    let no_answer = Scenario::load(&scenarios.join("no-answer.toml")).unwrap();
    let busy = Scenario {
        name: "busy".to_owned(),
        unanswered: Some("busy"),
        ..no_answer.clone()
    };
    let mut config = SimConfig::new(ACCOUNT, TOKEN, happy);
    config.scenarios.insert(BO.to_owned(), no_answer);
    config.scenarios.insert(CY.to_owned(), busy);
    let calls = TwilioSim::new(config, Arc::new(Recorder::new()), TranscriptTap::none());
    let texts = MessagingSim::new(MessagingSimConfig::new(ACCOUNT, TOKEN));
    let sim_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim_url = format!("http://{}", sim_listener.local_addr().unwrap());
    let app = calls.router().merge(texts.router());
    tokio::spawn(async move { axum::serve(sim_listener, app).await });

    let listen = format!("127.0.0.1:{}", free_port());
    let db = dir.join("voxbridge.db");
    std::fs::write(
        dir.join("voxbridge.toml"),
        format!(
            "[media]\nlisten = \"{listen}\"\n\n\
             [api]\npublic_url = \"http://{listen}\"\napi_token = \"{BEARER}\"\n\n\
             [api.twilio]\naccount_sid = \"{ACCOUNT}\"\nauth_token = \"{TOKEN}\"\n\
             from_number = \"{FROM}\"\nrest_base_url = \"{sim_url}\"\n\n\
             [api.console]\nsecure_cookie = false\n\n\
             # The test runs at any hour: no calling or quiet hours.\n\
             [api.calling_hours]\nenabled = false\n\n\
             [api.messaging.quiet_hours]\nenabled = false\n\n\
             [api.retries]\nmax_attempts = 3\nspacing_ms = 3600000\n\n\
             [store]\ndatabase_url = \"sqlite://{}\"\n",
            db.display()
        ),
    )
    .unwrap();
    // The account, as README tells an operator to make one, and the server.
    let _serve = serve_with_user(&dir, &listen, EMAIL, PASSWORD);

    let (_driver, browser) = start_browser(&dir).await;
    let base = format!("http://{listen}");
    sign_in(&browser, &base, EMAIL, PASSWORD).await;

    // The Campaigns page: a CSV pasted into the form.
    browser
        .find(Locator::LinkText("Campaigns"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_until(
        &browser,
        "the campaigns page",
        Duration::from_secs(10),
        "document.getElementById('csv')",
    )
    .await;
    let csv = format!(
        "candidateId,firstName,phone\ncand-ann,Ann,{ANN}\ncand-bo,Bo,{BO}\ncand-cy,Cy,{CY}\n"
    );
    browser
        .find(Locator::Id("name"))
        .await
        .unwrap()
        .send_keys("Welders, December")
        .await
        .unwrap();
    browser
        .find(Locator::Id("jobTitle"))
        .await
        .unwrap()
        .send_keys("Welder")
        .await
        .unwrap();
    browser
        .find(Locator::Id("csv"))
        .await
        .unwrap()
        .send_keys(&csv)
        .await
        .unwrap();
    shoot(&browser, "10-campaign-form").await;
    click(&browser, "main form button[type=submit]").await;
    wait_until(
        &browser,
        "the launched notice",
        Duration::from_secs(10),
        "document.getElementById('launched')",
    )
    .await;

    // Ann's call is answered and qualifies; Bo's and Cy's are missed and scheduled again.
    let row = "document.querySelector('[id^=campaign-]') && \
               document.querySelector('[id^=campaign-]').innerText";
    reload_until(
        &browser,
        &base,
        "/console/campaigns",
        "one done and two retries",
        Duration::from_secs(150),
        &format!("({row}).includes('1 of 3 done') && ({row}).includes('2 retries')"),
    )
    .await;
    let progress = page_text(&browser).await;
    assert!(progress.contains("1 qualified"), "{progress}");
    shoot(&browser, "11-campaign-progress").await;

    // Each missed candidate gets the follow-up text, once.
    assert!(
        texts
            .wait_until(Duration::from_secs(30), |t| t.accepted().len() >= 2)
            .await,
        "follow-ups sent: {:?}",
        texts.accepted().len()
    );
    let sent: Vec<String> = texts.accepted().iter().map(|a| a.to.clone()).collect();
    assert!(
        sent.contains(&BO.to_owned()) && sent.contains(&CY.to_owned()),
        "{sent:?}"
    );
    assert!(!sent.contains(&ANN.to_owned()), "{sent:?}");

    // Bo answers with a time: the next call moves to 10:00 tomorrow in San Francisco.
    let inbound = format!("{base}/twilio/sms/inbound");
    let (status, twiml) = texts
        .send_inbound(&inbound, BO, FROM, "tomorrow 10am works")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(
        twiml.contains("Thanks Bo, we will call you tomorrow at 10:00 AM."),
        "{twiml}"
    );
    // Cy replies STOP: the next call is canceled.
    let (status, _) = texts
        .send_inbound(&inbound, CY, FROM, "STOP")
        .await
        .unwrap();
    assert_eq!(status, 200);

    // Bo's thread: our follow-up, their reply, the screening's next call.
    browser
        .goto(&format!("{base}/console/messages"))
        .await
        .unwrap();
    browser
        .find(Locator::LinkText(BO))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_until(
        &browser,
        "Bo's thread",
        Duration::from_secs(10),
        "document.getElementById('thread')",
    )
    .await;
    let thread = page_text(&browser).await;
    for expected in [
        "Hi Bo, we just tried to call you about your application for Welder.",
        "tomorrow 10am works",
        "call 2 of 3",
        "next call",
        "follow-up sent",
    ] {
        assert!(thread.contains(expected), "{expected:?} missing:\n{thread}");
    }
    shoot(&browser, "12-message-thread").await;

    // Cy opted out: shown in their thread, and their scheduled call is canceled.
    browser
        .goto(&format!("{base}/console/messages/%2B14158675303"))
        .await
        .unwrap();
    let thread = page_text(&browser).await;
    assert!(thread.contains("opted out"), "{thread}");
    assert!(thread.contains("canceled"), "{thread}");
    reload_until(
        &browser,
        &base,
        "/console/campaigns",
        "Cy's screening counted as canceled",
        Duration::from_secs(10),
        &format!("({row}).includes('2 of 3 done') && ({row}).includes('1 canceled')"),
    )
    .await;
    shoot(&browser, "13-campaign-after-replies").await;
}
