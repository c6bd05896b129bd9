//! `voxbridge loadtest`: N concurrent simulated calls against a running bridge, with a JSON
//! report and an SVG latency histogram. Runs on one thread (one core), so the generator's
//! own cost is easy to read and to keep off the server's core (`taskset`).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use voxbridge_sim::loadtest::{self, LoadConfig, Mode};
use voxbridge_sim::ws::Route;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// media-echo, media-pipeline or relay.
    #[arg(long, default_value = "media-echo")]
    mode: Mode,
    /// The WebSocket URL as the TwiML names it (signed as is), e.g. `wss://127.0.0.1:8080/media`.
    #[arg(long)]
    url: String,
    /// Dial this base instead of the URL's own host (e.g. `ws://127.0.0.1:8080`).
    #[arg(long)]
    route: Option<String>,
    /// Concurrent calls.
    #[arg(long, default_value_t = 100)]
    calls: usize,
    /// Seconds over which the calls are started.
    #[arg(long, default_value_t = 10.0)]
    ramp_up: f64,
    /// Talk time of each call, seconds.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Media modes: the caller's utterance (WAV, any rate), repeated after each bot turn.
    #[arg(long, default_value = "tests/data/candidate/start_monday.wav")]
    audio: PathBuf,
    /// Relay mode: an answer the caller gives (repeat; cycled).
    #[arg(long = "answer")]
    answers: Vec<String>,
    /// Pause between the bot finishing and the caller speaking, ms.
    #[arg(long, default_value_t = 300)]
    think_ms: u64,
    /// `agent` custom parameter for Media Streams calls.
    #[arg(long, default_value = "echo")]
    agent: String,
    /// Relay mode: a `setup.customParameters` entry, KEY=VALUE; repeat for each.
    #[arg(long = "param", value_parser = super::parse_pair)]
    params: Vec<(String, String)>,
    /// The server's PID: sample its CPU and RSS from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Environment variable with the auth token to sign the upgrades ("" = unsigned).
    #[arg(long, default_value = "TWILIO_AUTH_TOKEN")]
    auth_token_env: String,
    /// Write the JSON report here.
    #[arg(long, default_value = "loadtest-report.json")]
    report: PathBuf,
    /// Write the latency histogram (SVG) here.
    #[arg(long, default_value = "loadtest-histogram.svg")]
    histogram: PathBuf,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

pub(crate) fn run(args: &Args) -> Result<()> {
    if args.calls == 0 || args.duration <= 0.0 || args.ramp_up < 0.0 {
        bail!("--calls must be > 0, --duration > 0 and --ramp-up >= 0");
    }
    let auth_token = if args.auth_token_env.is_empty() {
        None
    } else {
        Some(std::env::var(&args.auth_token_env).with_context(|| {
            format!(
                "set {} to the bridge's auth token (or pass --auth-token-env '' for unsigned)",
                args.auth_token_env
            )
        })?)
    };
    let utterance = match args.mode {
        Mode::Relay => Vec::new(),
        Mode::MediaEcho | Mode::MediaPipeline => {
            voxbridge_sim::scenario::load_mulaw_8k(&args.audio)
                .map_err(|e| anyhow::anyhow!("--audio {}: {e}", args.audio.display()))?
        }
    };
    let answers = if args.answers.is_empty() {
        ["Yes, I am.", "About five years.", "Nights.", "Next Monday."]
            .map(str::to_owned)
            .to_vec()
    } else {
        args.answers.clone()
    };
    let config = LoadConfig {
        mode: args.mode,
        url: args.url.clone(),
        route: args.route.clone().map(Route::to).unwrap_or_default(),
        auth_token,
        agent: args.agent.clone(),
        calls: args.calls,
        ramp_up: Duration::from_secs_f64(args.ramp_up),
        duration: Duration::from_secs_f64(args.duration),
        utterance: Arc::from(utterance),
        answers,
        think: Duration::from_millis(args.think_ms),
        relay_parameters: args.params.iter().cloned().collect(),
        server_pid: args.server_pid,
        progress: !args.quiet,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (report, recorder) = runtime.block_on(loadtest::run(config));
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(&args.report, &json)
        .with_context(|| format!("cannot write {}", args.report.display()))?;
    std::fs::write(&args.histogram, loadtest::histogram_svg(&report, &recorder))
        .with_context(|| format!("cannot write {}", args.histogram.display()))?;
    let mut out = std::io::stdout().lock();
    write!(out, "{}", loadtest::render_text(&report))?;
    writeln!(
        out,
        "report: {}  histogram: {}",
        args.report.display(),
        args.histogram.display()
    )?;
    Ok(())
}
