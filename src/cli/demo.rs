//! `voxbridge demo`: the whole product on one machine with no account and no network.
//!
//! Starts the bridge (`/media`, `/relay`) and the companion API on embedded defaults (SQLite
//! in a temporary directory), starts the Twilio simulator as the API's Twilio, places a
//! screening through `POST /api/screenings`, prints the live transcript as the simulated
//! candidate experiences it, then the record the API stored (status timeline, answers,
//! outcome), and exits 0 when the call completed cleanly. `--mode voice` runs the screening
//! over Media Streams with local speech recognition and synthesis ([`super::demo_voice`]).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use voxbridge_api::{ConnectMode, Secret};
use voxbridge_brain::Agents;
use voxbridge_media::{MediaState, RelayService};
use voxbridge_sim::twilio_api::{SimConfig, TwilioSim};
use voxbridge_sim::{Recorder, Scenario, TranscriptTap};
use voxbridge_store::Store;

use crate::call_store::StoreCalls;
use crate::config::Config;
use crate::record_metrics::RecordMetrics;
use crate::screening_store::StoreScreenings;

/// Credentials that exist only inside this process.
const DEMO_ACCOUNT: &str = "ACd0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0";
const DEMO_TOKEN: &str = "demo-auth-token-not-a-secret";
const DEMO_BEARER: &str = "demo-bearer-token";
const DEMO_FROM: &str = "+14155550100";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DemoMode {
    /// ConversationRelay with the scripted screening agent: a full interview.
    Relay,
    /// Media Streams with the `echo` agent: the candidate's recordings come back.
    Echo,
    /// Media Streams with the `screening` agent: the candidate's recordings are recognised
    /// locally (Whisper), the bot speaks with espeak-ng; exits 0 on a qualified outcome.
    Voice,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Which call to demonstrate.
    #[arg(long, value_enum, default_value_t = DemoMode::Relay)]
    mode: DemoMode,
    /// The candidate's scenario (default: config/scenarios/demo-<mode>.toml).
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Keep the SQLite database here instead of a temporary directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 180)]
    timeout: u64,
    /// How long the simulated Twilio takes to speak each character of bot text (ms).
    #[arg(long, default_value_t = 60)]
    tts_ms_per_char: u64,
}

pub(crate) fn run(config: Config, args: &Args) -> Result<()> {
    let scenario_path = args.scenario.clone().unwrap_or_else(|| match args.mode {
        DemoMode::Echo => PathBuf::from("config/scenarios/demo-echo.toml"),
        DemoMode::Voice => PathBuf::from("config/scenarios/demo-voice.toml"),
        DemoMode::Relay => PathBuf::from("config/scenarios/happy-path.toml"),
    });
    let scenario = Scenario::load(&scenario_path)
        .with_context(|| "run the demo from the repository root, or pass --scenario".to_owned())?;
    let (dir, temporary) = match &args.data_dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("voxbridge-demo-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(demo(config, args, scenario, &dir));
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

#[allow(clippy::too_many_lines)] // a script: start, call, print, stop
async fn demo(
    mut config: Config,
    args: &Args,
    scenario: Scenario,
    dir: &std::path::Path,
) -> Result<()> {
    let media_listener = TcpListener::bind("127.0.0.1:0").await?;
    let api_listener = TcpListener::bind("127.0.0.1:0").await?;
    let twilio_listener = TcpListener::bind("127.0.0.1:0").await?;
    let media_addr = media_listener.local_addr()?;
    let api_addr = api_listener.local_addr()?;
    let twilio_addr = twilio_listener.local_addr()?;
    let shutdown = CancellationToken::new();

    // The bridge, checking signatures against its local wss:// name.
    let media = &mut config.media;
    media.public_url = format!("wss://{media_addr}");
    media.auth_token = DEMO_TOKEN.into();
    media.insecure_skip_signature = false;
    config.store.database_url = format!("sqlite://{}/voxbridge.db", dir.display()).into();
    let store = Store::connect(&config.store)
        .await
        .context("cannot open the demo database")?;
    let records = RecordMetrics::default();
    let results = StoreScreenings::new(store.clone(), records.clone());
    // Media Streams calls (`--mode echo`) are stored as `serve` stores them.
    let calls = StoreCalls::new(store.clone(), records.clone());
    // The relay and echo demos need no providers (the scripted agent on ConversationRelay);
    // only the LLM screening agent, when a config file enables it, and the voice demo need
    // [speech].
    let providers = if config.agent.llm.enabled || args.mode == DemoMode::Voice {
        config
            .speech
            .build()
            .context("invalid [speech] configuration")?
    } else {
        voxbridge_speech::providers::SpeechProviders::from_parts(None, None, None, None, None)
    };
    let screenings = voxbridge_voice::agents::load_screenings(
        &config.agent,
        config.source.as_deref(),
        &providers,
    )?;
    let agents = match args.mode {
        DemoMode::Voice => super::demo_voice::agents(&config, &providers, &screenings).await?,
        DemoMode::Relay | DemoMode::Echo => Agents::builtin(),
    };
    let relay = RelayService::new(Arc::new(screenings), Arc::new(results.clone()));
    let media_state = MediaState::with_services(
        config.media.clone(),
        agents,
        Arc::new(calls.clone()),
        Some(relay),
    )
    .context("invalid [media] configuration")?;
    media_state.register_more_metrics(|registry| records.register(registry));
    let bridge = media_state.clone();
    let media_task = tokio::spawn(voxbridge_media::serve_with_state(
        media_state,
        media_listener,
        shutdown.clone(),
    ));

    // The API, with the simulator as its Twilio.
    let api = &mut config.api;
    api.public_url = format!("http://{api_addr}");
    api.api_token = Secret::new(DEMO_BEARER);
    DEMO_ACCOUNT.clone_into(&mut api.twilio.account_sid);
    api.twilio.auth_token = Secret::new(DEMO_TOKEN);
    api.twilio.api_key = String::new();
    DEMO_FROM.clone_into(&mut api.twilio.from_number);
    api.twilio.rest_base_url = format!("http://{twilio_addr}");
    // A simulated call on this machine: it rings now, whatever the hour where the number is.
    api.calling_hours.enabled = false;
    (api.connect.mode, api.connect.agent) = match args.mode {
        DemoMode::Echo => (ConnectMode::Stream, "echo".to_owned()),
        DemoMode::Voice => (ConnectMode::Stream, "screening".to_owned()),
        DemoMode::Relay => (ConnectMode::Relay, String::new()),
    };
    api.connect.stream_url = format!("wss://{media_addr}/media");
    api.connect.relay_url = format!("wss://{media_addr}/relay");
    // Not spawned: sqlx's futures are not `Send` for every lifetime; run it beside the demo.
    let api_future = voxbridge_api::serve(
        config.api.clone(),
        config.store.clone(),
        api_listener,
        shutdown.clone(),
    );
    tokio::pin!(api_future);

    let session = async {
        let recorder = Arc::new(Recorder::new());
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let printer = super::sim::print_live(rx);
        let mut sim_config = SimConfig::new(DEMO_ACCOUNT, DEMO_TOKEN, scenario.clone());
        sim_config.relay.tts_ms_per_char = args.tts_ms_per_char;
        let sim = TwilioSim::new(sim_config, recorder.clone(), TranscriptTap::to(tx));
        let sim_server = sim.clone();
        let sim_task = tokio::spawn(async move { sim_server.serve(twilio_listener).await });

        let mut out = std::io::stdout();
        writeln!(
            out,
            "voxbridge demo ({:?}): bridge ws://{media_addr}, API http://{api_addr}, simulated Twilio http://{twilio_addr}, store {}",
            args.mode, config.store.database_url
        )?;
        writeln!(
            out,
            "candidate scenario: {} ({} steps)",
            scenario.name,
            scenario.steps.len()
        )?;

        voxbridge_config::tls::install_ring_provider();
        let http = reqwest::Client::new();
        let candidate = json!({
            "candidateId": "demo-candidate-1",
            "firstName": "Jane",
            "phone": "+14155550123",
            "jobTitle": "Warehouse Associate",
        });
        writeln!(out, "POST /api/screenings {candidate}")?;
        let response = http
            .post(format!("http://{api_addr}/api/screenings"))
            .bearer_auth(DEMO_BEARER)
            .json(&candidate)
            .send()
            .await
            .context("the API did not answer")?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .context("the API answered without JSON")?;
        writeln!(out, "-> {status} {body}")?;
        let Some(call_sid) = body["callSid"].as_str().map(str::to_owned) else {
            bail!("the screening was not placed: {body}");
        };
        writeln!(out, "--- live transcript (as the candidate hears it) ---")?;
        let finished = sim
            .wait_finished(&call_sid, Duration::from_secs(args.timeout))
            .await
            .with_context(|| format!("the call did not finish within {} s", args.timeout))?;
        drop(sim_task);
        sim.shutdown();
        // The printer ends when the simulator (the last transcript sender) is dropped.
        drop(sim);
        let _ = tokio::time::timeout(Duration::from_secs(2), printer).await;
        writeln!(
            out,
            "--- call {} ended: {} ({:?}) ---",
            call_sid, finished.status, finished.outcome.end
        )?;
        for hook in &finished.webhooks {
            let status = hook
                .params
                .iter()
                .find(|(k, _)| k == "CallStatus")
                .map_or("", |(_, v)| v.as_str());
            writeln!(
                out,
                "  webhook {} {} -> HTTP {}",
                hook.url, status, hook.status
            )?;
        }

        // The bridge hands each result to the store as its session ends: wait for the
        // session to be gone, then for the write.
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while bridge.connections() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            results.flush().await;
            calls.flush().await;
        })
        .await;
        let stored: Value = http
            .get(format!("http://{api_addr}/api/calls/{call_sid}"))
            .bearer_auth(DEMO_BEARER)
            .send()
            .await?
            .json()
            .await?;
        writeln!(out, "--- stored result (GET /api/calls/{call_sid}) ---")?;
        print_stored(&mut out, &stored["call"])?;
        if args.mode == DemoMode::Voice {
            super::demo_voice::report(&mut out, &store, &call_sid, &finished, &stored).await?;
        }
        Ok::<_, anyhow::Error>(finished)
    };
    let finished = tokio::select! {
        result = &mut api_future => {
            shutdown.cancel();
            bail!("the API stopped: {result:?}");
        }
        finished = session => finished,
    };
    shutdown.cancel();
    let finished = finished?;
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = media_task.await;
        let _ = api_future.await;
    })
    .await;
    if !finished.errors.is_empty() {
        bail!("the simulated call had problems: {:?}", finished.errors);
    }
    if finished.status != "completed" {
        bail!("the call ended as {}", finished.status);
    }
    writeln!(std::io::stdout(), "demo finished: call completed")?;
    Ok(())
}

/// The parts of `GET /api/calls/{sid}` a recruiter reads.
fn print_stored(out: &mut impl Write, detail: &Value) -> Result<()> {
    let call = &detail["call"];
    let screening = &detail["screening"];
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    writeln!(
        out,
        "call: status {}, answered by {}, {} s, handoff {}",
        text(&call["status"]),
        text(&call["answeredBy"]),
        text(&call["durationSeconds"]),
        text(&call["handoffData"])
    )?;
    let statuses: Vec<String> = detail["timeline"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .map(|e| format!("{}:{}", text(&e["kind"]), text(&e["status"])))
                .collect()
        })
        .unwrap_or_default();
    writeln!(out, "timeline: {}", statuses.join(" -> "))?;
    // What the bridge stored when the Media Streams call ended (`--mode echo`).
    let summary = embedded_json(&call["summary"]);
    if summary["transport"] == "media" {
        writeln!(
            out,
            "media call: agent {}, ended {}, {} frames in / {} out, {} utterances, {} bot turns, {} barge-ins, {} ms",
            text(&summary["agent"]),
            text(&summary["end"]),
            text(&summary["framesIn"]),
            text(&summary["framesOut"]),
            text(&summary["utterances"]),
            text(&summary["botTurns"]),
            text(&summary["bargeIns"]),
            text(&summary["durationMs"])
        )?;
    }
    if screening["outcome"].is_null() {
        let why = match summary["agent"].as_str() {
            Some(agent) if agent != "voice" && agent != "screening" => {
                format!("the {agent} agent asks no questions")
            }
            _ => "no result was stored".to_owned(),
        };
        writeln!(
            out,
            "screening {} for {}: no answers ({why})",
            text(&screening["screening"]),
            text(&screening["firstName"]),
        )?;
    } else {
        writeln!(
            out,
            "screening {} for {} ({}): outcome {}",
            text(&screening["screening"]),
            text(&screening["firstName"]),
            text(&screening["jobTitle"]),
            text(&screening["outcome"])
        )?;
    }
    let answers = embedded_json(&screening["answers"]);
    for answer in answers.as_array().into_iter().flatten() {
        writeln!(
            out,
            "  {:<20} {:<30} -> {} ({}, confidence {})",
            text(&answer["questionId"]),
            format!("{:?}", text(&answer["raw"])),
            text(&answer["value"]),
            text(&answer["status"]),
            text(&answer["confidence"])
        )?;
    }
    let lines = detail["transcript"].as_array().map_or(0, Vec::len);
    writeln!(out, "transcript: {lines} lines stored")?;
    Ok(())
}

/// A JSON value the store keeps as text (`summary`, `answers`), or already as JSON; `Null`
/// when it does not parse.
fn embedded_json(v: &Value) -> Value {
    match v {
        Value::String(raw) => serde_json::from_str(raw).unwrap_or(Value::Null),
        other => other.clone(),
    }
}
