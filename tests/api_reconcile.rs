//! A `kill -9` between Twilio placing a screening call and the API committing its SID.
//!
//! Runs the real binary (`voxbridge api`) against the Twilio stand-in (`voxbridge-sim`) in this
//! process. The stand-in's create hook SIGKILLs the API the moment Twilio has created the call,
//! before the `201` is written, so the API can never commit the call's SID: the same state as a
//! kill between reading the 201 and the commit. The API is restarted with the same SQLite file;
//! reconciliation must find the call at Twilio (`GET Calls.json` by To/From/StartTime) and link
//! it, and must mark failed a screening whose call Twilio never got (its intent was committed
//! but the process died before the REST call).

#![allow(clippy::too_many_lines)]

mod api_process;

use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use voxbridge_sim::twilio_api::{CreateHook, SimConfig, TwilioSim};
use voxbridge_sim::{Recorder, Scenario, TranscriptTap};
use voxbridge_store::{NewScreening, Store, StoreConfig};

use api_process::{free_port, http, scratch_dir, start_api};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "reconcile-auth-token";
const BEARER: &str = "reconcile-bearer";
const FROM: &str = "+14155550199";
const CANDIDATE_PHONE: &str = "+14158675309";
/// The phone of a screening whose process died before it asked Twilio.
const NEVER_CALLED: &str = "+14155550123";

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

async fn open(db_url: &str) -> Store {
    Store::connect(&StoreConfig {
        database_url: db_url.into(),
        ..StoreConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_placed_before_a_kill_9_is_linked_after_restart() {
    let dir = scratch_dir("reconcile");
    let db_url = format!("sqlite://{}", dir.join("voxbridge.db").display());

    // Twilio's stand-in; its create hook kills whatever API process is running.
    let running: Arc<Mutex<Option<Child>>> = Arc::new(Mutex::new(None));
    let killed_for: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let mut sim_config = SimConfig::new(
        ACCOUNT,
        TOKEN,
        Scenario {
            name: "hangs up".to_owned(),
            answered_by: "human".to_owned(),
            amd_delay_ms: 1_200,
            unanswered: None,
            steps: Vec::new(),
        },
    );
    let (hook_child, hook_sid) = (running.clone(), killed_for.clone());
    sim_config.on_create = Some(CreateHook(Arc::new(move |sid: &str| {
        if let Some(mut child) = hook_child.lock().unwrap().take() {
            // Noted first: the test reads it as soon as its request sees the API die.
            *hook_sid.lock().unwrap() = Some(sid.to_owned());
            child.kill().expect("SIGKILL the API");
            child.wait().unwrap();
        }
    })));
    let sim = TwilioSim::new(sim_config, Arc::new(Recorder::new()), TranscriptTap::none());
    let sim_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim_url = format!("http://{}", sim_listener.local_addr().unwrap());
    let serving = sim.clone();
    tokio::spawn(async move { serving.serve(sim_listener).await });

    // A screening whose process died after committing its intent, before asking Twilio.
    let store = open(&db_url).await;
    let orphan = store
        .insert_screening_intent(
            &NewScreening {
                candidate_id: "cand-orphan".to_owned(),
                first_name: "Grace".to_owned(),
                phone: NEVER_CALLED.to_owned(),
                job_title: "Engineer".to_owned(),
                screening: "default".to_owned(),
                created_at_ms: now_ms(),
            },
            FROM,
        )
        .await
        .unwrap();
    store.close().await;

    // A fixed port: the callbacks Twilio's stand-in makes go to the public URL, which must
    // name the port before the API starts, and the restarted API must answer on it too.
    let addr = format!("127.0.0.1:{}", free_port());
    std::fs::write(
        dir.join("voxbridge.toml"),
        format!(
            "[api]\nlisten = \"{addr}\"\npublic_url = \"http://{addr}\"\napi_token = \"{BEARER}\"\n\n\
             [api.twilio]\naccount_sid = \"{ACCOUNT}\"\nauth_token = \"{TOKEN}\"\n\
             from_number = \"{FROM}\"\nrest_base_url = \"{sim_url}\"\nmax_retries = 0\n\
             reconcile_after_ms = 300\n\n\
             # The test runs at any hour: no calling hours.\n\
             [api.calling_hours]\nenabled = false\n\n[store]\ndatabase_url = \"{db_url}\"\n"
        ),
    )
    .unwrap();
    *running.lock().unwrap() = Some(start_api(&dir, "first.log").0);

    // The screening request: Twilio creates the call and the API dies before it learns the SID.
    let body = r#"{"candidateId":"cand-1","firstName":"Ada","phone":"+14158675309","jobTitle":"Engineer"}"#;
    let request_addr = addr.clone();
    let answered = tokio::task::spawn_blocking(move || {
        http(
            &request_addr,
            "POST",
            "/api/screenings",
            &[
                ("Authorization", format!("Bearer {BEARER}")),
                ("Content-Type", "application/json".to_owned()),
            ],
            body,
        )
    })
    .await
    .unwrap();
    assert_eq!(answered, None, "the API died before answering");
    let call_sid = killed_for
        .lock()
        .unwrap()
        .clone()
        .expect("the API was killed right after Twilio created the call");

    // What the kill left: the screening requested, the placed call unknown to it.
    let store = open(&db_url).await;
    assert!(store.screening_for_call(&call_sid).await.unwrap().is_none());
    store.close().await;

    let (mut child, _) = start_api(&dir, "second.log");
    let store = open(&db_url).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let linked = loop {
        let linked = store.screening_for_call(&call_sid).await.unwrap();
        let orphan_state = store.screening(orphan).await.unwrap().unwrap().state;
        if let Some(linked) = linked.filter(|_| orphan_state == "failed") {
            break linked;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let log = std::fs::read_to_string(dir.join("second.log")).unwrap_or_default();
            panic!(
                "not reconciled in 30 s: call {call_sid} linked: {}, orphan {orphan_state}\n{log}",
                store.screening_for_call(&call_sid).await.unwrap().is_some()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(linked.candidate_id, "cand-1");
    assert_eq!(linked.phone, CANDIDATE_PHONE);
    let call = store.call(&call_sid).await.unwrap().expect("the call row");
    assert_eq!(call.candidate_id.as_deref(), Some("cand-1"));
    // Linked, the screening takes the state of the callbacks that came in before (the call
    // row and its screening's state are read in one query).
    let expected = match (call.status.as_deref(), &call.outcome) {
        (Some("completed"), _) | (_, Some(_)) => "completed",
        (Some("in-progress"), None) => "in_progress",
        _ => "calling",
    };
    assert_eq!(call.state.as_deref(), Some(expected), "{call:?}");
    let orphan = store.screening(orphan).await.unwrap().unwrap();
    assert_eq!(orphan.call_sid, None);
    assert!(
        orphan
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("no call"),
        "{orphan:?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    store.close().await;
    sim.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
