//! The stand-in's call list (`GET Calls.json`) through voxbridge's own REST client and raw
//! HTTP: Twilio's filters (`To`, `From`, `StartTime>`), its page shape, and the create hook.

#![allow(clippy::too_many_lines)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use voxbridge_sim::twilio_api::{CreateHook, SimConfig, TwilioSim};
use voxbridge_sim::{Recorder, Scenario, TranscriptTap};
use voxbridge_twilio::rest::{CallListFilter, CreateCall, Credentials, RestClient, RetryPolicy};
use voxbridge_twilio::webhook::Rfc2822Timestamp;

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "sim-list-token";

fn today() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Rfc2822Timestamp::from_unix_seconds(i64::try_from(now).unwrap()).utc_date()
}

#[tokio::test]
async fn calls_are_listed_with_twilios_filters_and_page_shape() {
    let hooked = Arc::new(Mutex::new(Vec::new()));
    let seen = hooked.clone();
    let mut config = SimConfig::new(
        ACCOUNT,
        TOKEN,
        Scenario {
            name: "silent".into(),
            answered_by: "human".into(),
            amd_delay_ms: 1_200,
            unanswered: None,
            steps: Vec::new(),
        },
    );
    config.ring = Duration::from_secs(30);
    config.on_create = Some(CreateHook(Arc::new(move |sid: &str| {
        seen.lock().unwrap().push(sid.to_owned());
    })));
    let sim = TwilioSim::new(config, Arc::new(Recorder::new()), TranscriptTap::none());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let serving = sim.clone();
    tokio::spawn(async move { serving.serve(listener).await });
    let client = RestClient::new(
        base.clone(),
        Credentials::AuthToken {
            account_sid: ACCOUNT.into(),
            auth_token: TOKEN.into(),
        },
        RetryPolicy::default(),
    )
    .unwrap();
    let mut sids = Vec::new();
    for to in ["+14155550001", "+14155550002", "+14155550001"] {
        let call = CreateCall {
            to: to.into(),
            from: "+14155550199".into(),
            url: "http://127.0.0.1:9/answer".into(),
            ..CreateCall::default()
        };
        sids.push(client.create_call(&call).await.unwrap().sid);
    }
    assert_eq!(*hooked.lock().unwrap(), sids, "the hook saw every create");

    let listed = client
        .list_calls(&CallListFilter {
            to: Some("+14155550001".into()),
            from: Some("+14155550199".into()),
            started_on_or_after: Some(today()),
        })
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|c| c.sid.as_str()).collect::<Vec<_>>(),
        [sids[2].as_str(), sids[0].as_str()],
        "newest first, only calls to that number"
    );
    let created = listed[0].date_created.as_deref().unwrap();
    assert!(Rfc2822Timestamp::parse(created).is_ok(), "{created}");
    assert_eq!(listed[0].start_time.as_deref(), Some(created));
    assert_eq!(listed[0].to.as_deref(), Some("+14155550001"));
    assert_eq!(listed[0].from.as_deref(), Some("+14155550199"));
    let tomorrow_on = client
        .list_calls(&CallListFilter {
            started_on_or_after: Some("9999-12-31".into()),
            ..CallListFilter::default()
        })
        .await
        .unwrap();
    assert!(tomorrow_on.is_empty());

    // Paging as Twilio pages: PageSize/Page and next_page_uri relative to the host; the client
    // follows it.
    voxbridge_config::tls::install_ring_provider();
    let http = reqwest::Client::new();
    let page: serde_json::Value = http
        .get(format!(
            "{base}/2010-04-01/Accounts/{ACCOUNT}/Calls.json?PageSize=2&StartTime%3E={}",
            today()
        ))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["calls"].as_array().unwrap().len(), 2);
    assert_eq!(
        (page["page"].as_u64(), page["page_size"].as_u64()),
        (Some(0), Some(2))
    );
    assert_eq!(
        (page["start"].as_u64(), page["end"].as_u64()),
        (Some(0), Some(1))
    );
    assert!(page["previous_page_uri"].is_null());
    let next = page["next_page_uri"].as_str().unwrap();
    assert!(
        next.starts_with(&format!("/2010-04-01/Accounts/{ACCOUNT}/Calls.json?")),
        "{next}"
    );
    let second: serde_json::Value = http
        .get(format!("{base}{next}"))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(second["calls"][0]["sid"], sids[0].as_str());
    assert!(second["next_page_uri"].is_null());
    let all = client.list_calls(&CallListFilter::default()).await.unwrap();
    assert_eq!(all.len(), 3);
    let refused = http
        .get(format!("{base}/2010-04-01/Accounts/{ACCOUNT}/Calls.json"))
        .basic_auth(ACCOUNT, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    sim.shutdown();
}
