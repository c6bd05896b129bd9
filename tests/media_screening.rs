//! One screening result whichever transport: the same candidate screened over
//! ConversationRelay (`api.connect.mode = "relay"`, Twilio's speech) and over Media Streams
//! (`mode = "stream"`, `agent = "screening"`: the embedded recogniser and espeak-ng), each by
//! the real `voxbridge serve` (bridge and API on one port, a real SQLite file), placed through
//! `POST /api/screenings` and dialled by the simulated Twilio over real sockets. Both must
//! store the same result: the screening the API created, its state and outcome, the same
//! answers with the same parsed values and the same keys, the transcript's caller and keypad
//! lines, the handoff data, and the summary's shared fields.
//!
//! Without the Whisper model (`scripts/setup.sh`) the test records a counted skip.
//!
//! A third run, which needs no model, screens the same candidate with the `realtime` agent
//! (`agent = "realtime"`, the OpenAI stand-in's Realtime WebSocket scripted as a model that
//! records each answer through the screening tools) and checks the stored result the same way.

mod api_process;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api_process::{free_port, http_response, scratch_dir, start_voxbridge};
use serde_json::Value;
use voxbridge_sim::twilio_api::{SimConfig, TwilioSim};
use voxbridge_sim::{Recorder, Scenario, TranscriptTap};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "media-screening-auth-token";
const BEARER: &str = "media-screening-bearer";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `voxbridge serve` on a port known in advance (its public URL), with the API in the same
/// process, the simulator at `sim` as its Twilio and the Whisper model in `model`; `connect`
/// is the `[api.connect]` body.
fn serve(what: &str, sim: &str, model: &Path, connect: &str) -> (PathBuf, String, Child) {
    let dir = scratch_dir(what);
    let addr = format!("127.0.0.1:{}", free_port());
    std::fs::write(
        dir.join("voxbridge.toml"),
        format!(
            "[store]\ndatabase_url = \"sqlite://{db}\"\n\n[media]\nlisten = \"{addr}\"\n\n\
             [api]\npublic_url = \"http://{addr}\"\napi_token = \"{BEARER}\"\n\n\
             [api.twilio]\naccount_sid = \"{ACCOUNT}\"\nauth_token = \"{TOKEN}\"\n\
             from_number = \"+14155550100\"\nrest_base_url = \"http://{sim}\"\n\n\
             # The test runs at any hour: no calling hours.\n\
             [api.calling_hours]\nenabled = false\n\n\
             [api.connect]\n{connect}\n\n[speech.local]\nmodel_dir = \"{model}\"\n",
            db = dir.join("voxbridge.db").display(),
            model = model.display(),
        ),
    )
    .unwrap();
    let (child, addr) = start_voxbridge("serve", &dir, "serve.log");
    (dir, addr, child)
}

fn api(addr: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut headers = vec![("Authorization", format!("Bearer {BEARER}"))];
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json".to_owned()));
    }
    let (status, text) = http_response(addr, method, path, &headers, body)
        .unwrap_or_else(|| panic!("{method} {path}: no answer"));
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Places the demo candidate's screening through `serve` at `addr` (the simulator plays
/// `config/scenarios/demo-voice.toml`), waits for the stored outcome; returns the screening
/// id, `GET /api/calls/{sid}` and `GET /api/screenings/{id}`.
fn screen(
    runtime: &tokio::runtime::Runtime,
    sim: &TwilioSim,
    addr: &str,
    dir: &Path,
) -> (i64, Value, Value) {
    let (status, created) = api(
        addr,
        "POST",
        "/api/screenings",
        r#"{"candidateId":"cand-77","firstName":"Jane","phone":"+14155550123","jobTitle":"Warehouse Associate"}"#,
    );
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().expect("screening id");
    let call_sid = created["callSid"].as_str().expect("callSid").to_owned();
    let finished = runtime
        .block_on(sim.wait_finished(&call_sid, Duration::from_secs(240)))
        .unwrap_or_else(|| {
            panic!(
                "the call did not finish\n{}",
                std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
            )
        });
    assert!(finished.errors.is_empty(), "{:?}", finished.errors);
    assert_eq!(finished.status, "completed");
    // The bridge stores the result as the session ends: poll for it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, detail) = api(addr, "GET", &format!("/api/calls/{call_sid}"), "");
        // The bridge writes the call row, its transcript and the screening in one transaction,
        // but the API reads the tables one after another: wait until all of it is seen.
        let stored = detail["call"]["screening"]["outcome"].is_string()
            && detail["call"]["call"]["summary"].is_object()
            && detail["call"]["transcript"]
                .as_array()
                .is_some_and(|t| !t.is_empty());
        if status == 200 && stored {
            let (status, screening) = api(addr, "GET", &format!("/api/screenings/{id}"), "");
            assert_eq!(status, 200, "{screening}");
            return (id, detail, screening["screening"].clone());
        }
        assert!(
            Instant::now() < deadline,
            "no stored outcome for {call_sid}: {detail}\n{}",
            std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The simulated Twilio with the voice demo's candidate; returns it and its address.
fn start_sim(runtime: &tokio::runtime::Runtime) -> (TwilioSim, String) {
    let scenario = Scenario::load(&repo().join("config/scenarios/demo-voice.toml")).unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let sim_addr = listener.local_addr().unwrap().to_string();
    let mut config = SimConfig::new(ACCOUNT, TOKEN, scenario);
    config.relay.tts_ms_per_char = 10;
    let sim = TwilioSim::new(config, Arc::new(Recorder::new()), TranscriptTap::none());
    let server = sim.clone();
    runtime.spawn(async move { server.serve(listener).await });
    (sim, sim_addr)
}

/// The keys of a JSON object.
fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// Each answer's question, parsed value and status (what the recruiter reads).
fn answers(detail: &Value) -> Vec<(String, String, String)> {
    detail["call"]["screening"]["answers"]
        .as_array()
        .expect("answers")
        .iter()
        .map(|a| {
            (
                a["questionId"].as_str().unwrap_or_default().to_owned(),
                a["value"].to_string(),
                a["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The transcript's roles without the bot's lines (their count depends on how each
/// transport cuts bot turns).
fn caller_roles(detail: &Value) -> Vec<String> {
    detail["call"]["transcript"]
        .as_array()
        .expect("transcript")
        .iter()
        .filter_map(|l| l["role"].as_str())
        .filter(|r| *r != "agent")
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_media_streams_screening_stores_the_same_result_as_a_relay_one() {
    let model = voxbridge_speech::local::default_model_dir(&|name| std::env::var(name).ok());
    if let Err(why) = voxbridge_speech::local::check_model_dir(&model) {
        voxbridge_testkit::skip(
            "a_media_streams_screening_stores_the_same_result_as_a_relay_one",
            &why,
        );
        return;
    }
    let runtime = runtime();
    let (sim, sim_addr) = start_sim(&runtime);

    let (relay_dir, relay_addr, mut relay_child) =
        serve("screen-relay", &sim_addr, &model, "mode = \"relay\"");
    let (relay_id, relay, relay_screening) = screen(&runtime, &sim, &relay_addr, &relay_dir);
    let _ = relay_child.kill();
    let _ = relay_child.wait();

    let (media_dir, media_addr, mut media_child) = serve(
        "screen-media",
        &sim_addr,
        &model,
        "mode = \"stream\"\nagent = \"screening\"",
    );
    let (media_id, media, media_screening) = screen(&runtime, &sim, &media_addr, &media_dir);
    let _ = media_child.kill();
    let _ = media_child.wait();
    sim.shutdown();

    let report = format!("relay: {relay:#}\nmedia: {media:#}");
    // The screening the API created is the one that holds the result, on both transports.
    for (id, screening, detail) in [
        (relay_id, &relay_screening, &relay),
        (media_id, &media_screening, &media),
    ] {
        assert_eq!(screening["id"].as_i64(), Some(id), "{report}");
        assert_eq!(screening["state"], "completed", "{screening}");
        assert_eq!(screening["outcome"], "qualified", "{screening}");
        assert_eq!(
            screening["callSid"], detail["call"]["call"]["callSid"],
            "{report}"
        );
        assert_eq!(
            detail["call"]["screening"]["candidateId"], "cand-77",
            "{report}"
        );
    }
    // The same answers, parsed alike, with the same keys.
    assert_eq!(answers(&relay).len(), 6, "{report}");
    assert_eq!(answers(&relay), answers(&media), "{report}");
    let answer_keys = |detail: &Value| -> Vec<BTreeSet<String>> {
        detail["call"]["screening"]["answers"]
            .as_array()
            .unwrap()
            .iter()
            .map(keys)
            .collect()
    };
    assert_eq!(answer_keys(&relay), answer_keys(&media), "{report}");
    assert_eq!(
        keys(&relay["call"]["screening"]),
        keys(&media["call"]["screening"]),
        "{report}"
    );
    // Five spoken answers and a key press, in order.
    let roles = caller_roles(&relay);
    assert_eq!(
        roles,
        ["caller", "caller", "caller", "caller", "caller", "keypad"],
        "{report}"
    );
    assert_eq!(roles, caller_roles(&media), "{report}");
    // The dialog's end: the same handoff data where the recruiter reads it, and in the
    // summary beside the transport's own counts.
    assert_eq!(
        relay["call"]["call"]["handoffData"], media["call"]["call"]["handoffData"],
        "{report}"
    );
    assert_eq!(
        media["call"]["call"]["handoffData"]["reasonCode"], "screening-complete",
        "{report}"
    );
    let summary = |detail: &Value| detail["call"]["call"]["summary"].clone();
    assert_eq!(summary(&relay)["transport"], "relay", "{report}");
    assert_eq!(summary(&media)["transport"], "media", "{report}");
    for key in ["agent", "end", "handoff", "callerTurns"] {
        assert_eq!(
            summary(&relay)[key],
            summary(&media)[key],
            "{key}: {report}"
        );
    }
    assert_eq!(summary(&media)["agent"], "screening", "{report}");
    assert_eq!(summary(&media)["callerTurns"], 6, "{report}");
}

/// The voice demo's candidate's answers, as the stand-in model hears them and records them.
const ANSWERS: [(&str, &str, &str); 5] = [
    ("work_authorization", "true", "Yes, I am."),
    ("age_18_plus", "true", "Yes, I'm twenty four."),
    ("forklift_years", "5", "Five years."),
    ("shift_preference", "\"night\"", "Nights work best for me."),
    (
        "start_availability",
        "\"I can start next Monday.\"",
        "I can start next Monday.",
    ),
];

/// The stand-in Realtime model of the default warehouse screening: it greets and asks the
/// first question; after each answer it makes one `record_answer` call (a response of tool
/// calls only, so the bridge asks it to go on) and asks the next question; after the key for
/// the last question it records it, completes the screening and says the qualified goodbye.
fn realtime_model() -> voxbridge_openai_standin::RealtimeScript {
    use voxbridge_openai_standin::{RealtimeScript, Reply};
    let record = |id: &str, value: &str, raw: &str| {
        format!(r#"{{"question_id":"{id}","value":{value},"raw":"{raw}","confidence":0.9}}"#)
    };
    let questions = [
        "Hi Jane, this is Vox from Northwind Staffing. Are you legally authorized to work in the United States?",
        "Are you at least 18 years old?",
        "How many years of forklift experience do you have?",
        "Which shift do you prefer: day, night, or weekend?",
        "When would you be able to start?",
        "Do you have reliable transportation? You can also press 1 for yes or 2 for no.",
    ];
    let mut responses = vec![Reply::text(questions[0])];
    for (i, (id, value, raw)) in ANSWERS.iter().enumerate() {
        responses.push(Reply::default().with_tool_call("record_answer", record(id, value, raw)));
        responses.push(Reply::text(questions[i + 1]));
    }
    responses.push(
        Reply::text("That's everything, Jane. You meet the requirements. Goodbye!")
            .with_tool_call("record_answer", record("reliable_transport", "true", "1"))
            .with_tool_call(
                "end_screening",
                r#"{"outcome":"completed","reason":"all questions answered"}"#,
            ),
    );
    RealtimeScript {
        responses,
        caller_transcripts: ANSWERS
            .iter()
            .map(|(_, _, raw)| (*raw).to_owned())
            .collect(),
        ms_per_char: 10,
        // The candidate's recordings pause up to 320 ms between words.
        silence_ms: 700,
        ..RealtimeScript::default()
    }
}

/// The same candidate screened by the `realtime` agent through `voxbridge serve` and the API:
/// the result is stored on the screening the API created, with the answers the model recorded
/// through the tools (checked and parsed by the script), the last one keyed, the transcript's
/// caller and keypad lines, and the dialog's end as on the other transports.
#[test]
fn a_realtime_screening_stores_its_result_like_the_other_transports() {
    let runtime = runtime();
    let (sim, sim_addr) = start_sim(&runtime);
    let standin = runtime
        .block_on(voxbridge_openai_standin::Standin::start(
            voxbridge_openai_standin::StandinConfig::default(),
        ))
        .expect("the OpenAI stand-in starts");
    standin.set_realtime_script(realtime_model());
    let connect = format!(
        "mode = \"stream\"\nagent = \"realtime\"\n\n[speech]\nasr = \"none\"\n\
         speech_to_speech = \"openai\"\n\n[speech.openai]\nbase_url = \"{}\"\n\
         api_key = \"sk-realtime-test\"",
        standin.base_url()
    );
    let (dir, addr, mut child) = serve(
        "screen-realtime",
        &sim_addr,
        Path::new("/nonexistent/no-model-needed"),
        &connect,
    );
    let (id, detail, screening) = screen(&runtime, &sim, &addr, &dir);
    let _ = child.kill();
    let _ = child.wait();
    sim.shutdown();
    let report = format!("{detail:#}");
    assert_eq!(screening["id"].as_i64(), Some(id), "{report}");
    assert_eq!(screening["state"], "completed", "{screening}");
    assert_eq!(screening["outcome"], "qualified", "{screening}");
    assert_eq!(
        detail["call"]["screening"]["candidateId"], "cand-77",
        "{report}"
    );
    let answers = answers(&detail);
    let ids: Vec<&str> = answers.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "work_authorization",
            "age_18_plus",
            "forklift_years",
            "shift_preference",
            "start_availability",
            "reliable_transport"
        ],
        "{report}"
    );
    assert!(
        answers
            .iter()
            .all(|(_, value, status)| status == "accepted" && value != "null"),
        "{report}"
    );
    assert_eq!(
        caller_roles(&detail),
        ["caller", "caller", "caller", "caller", "caller", "keypad"],
        "{report}"
    );
    assert_eq!(
        detail["call"]["call"]["handoffData"]["reasonCode"], "screening-complete",
        "{report}"
    );
    let summary = &detail["call"]["call"]["summary"];
    assert_eq!(summary["transport"], "media", "{report}");
    assert_eq!(summary["agent"], "realtime", "{report}");
    assert_eq!(summary["end"], "screening-complete", "{report}");
    assert_eq!(
        standin.realtime_errors(),
        Vec::<String>::new(),
        "no protocol errors from the bridge"
    );
}
