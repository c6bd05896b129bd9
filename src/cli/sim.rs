//! `voxbridge sim`: play Twilio's side by hand.
//!
//! - `sim call`: one Media Streams or ConversationRelay call straight to a WebSocket, playing
//!   a scenario; prints the transcript and can write what the caller heard.
//! - `sim twilio`: the REST stand-in (`Calls.json`, and `Messages.json` for the API's texts);
//!   point `api.twilio.rest_base_url` at it and every call the API places is dialed with the
//!   scenario.
//! - `sim sms`: one text from a candidate to the API's `/twilio/sms/inbound`, signed as Twilio
//!   signs it; prints the TwiML answer.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio_util::sync::CancellationToken;
use voxbridge_sim::media_call::{MediaCall, MediaCallOptions, run_media_call};
use voxbridge_sim::messaging::{MessagingSim, MessagingSimConfig};
use voxbridge_sim::relay_call::{RelayCall, RelayCallOptions, run_relay_call, setup_message};
use voxbridge_sim::twilio_api::{SimConfig, TwilioSim};
use voxbridge_sim::ws::Route;
use voxbridge_sim::{CallOutcome, Recorder, Scenario, Speaker, TranscriptLine, TranscriptTap};
use voxbridge_twilio::sid::{AccountSid, CallSid, StreamSid};

use crate::config::Config;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Place one call straight to a WebSocket (`/media` or `/relay`) and play a scenario.
    Call(CallArgs),
    /// Run the stand-in for Twilio's REST API; calls the API places are dialed for real.
    Twilio(TwilioArgs),
    /// Text the API as a candidate would (a signed `/twilio/sms/inbound` webhook).
    Sms(SmsArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct SmsArgs {
    /// The API's inbound SMS webhook as Twilio would call it (signed as is), e.g.
    /// `http://127.0.0.1:8080/twilio/sms/inbound`.
    #[arg(long)]
    url: String,
    /// The candidate's number (E.164, or `whatsapp:+...`).
    #[arg(long)]
    from: String,
    /// Our number it is sent to (default: `api.twilio.from_number`).
    #[arg(long)]
    to: Option<String>,
    /// The text.
    #[arg(long)]
    body: String,
}

#[derive(Debug, clap::Args)]
pub(crate) struct CallArgs {
    /// The WebSocket URL as TwiML would name it (signed as is): `wss://host/media` or `/relay`.
    #[arg(long)]
    url: String,
    /// Scenario file (config/scenarios/*.toml).
    #[arg(long)]
    scenario: PathBuf,
    /// ConversationRelay instead of Media Streams.
    #[arg(long)]
    relay: bool,
    /// Dial this base instead of the URL's host (e.g. `ws://127.0.0.1:8080`).
    #[arg(long)]
    route: Option<String>,
    /// A custom parameter (`<Parameter>`), KEY=VALUE; repeat for each.
    #[arg(long = "param", value_parser = super::parse_pair)]
    params: Vec<(String, String)>,
    /// Write what the caller heard (Media Streams) to this WAV.
    #[arg(long)]
    write_heard: Option<PathBuf>,
    /// Environment variable with the auth token ("" = unsigned).
    #[arg(long, default_value = "TWILIO_AUTH_TOKEN")]
    auth_token_env: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    max_seconds: u64,
}

#[derive(Debug, clap::Args)]
pub(crate) struct TwilioArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// The scenario every called number plays.
    #[arg(long)]
    scenario: PathBuf,
    /// A scenario for one number, NUMBER=FILE; repeat for each.
    #[arg(long = "number", value_parser = super::parse_pair)]
    numbers: Vec<(String, String)>,
    /// Dial WebSocket URLs from TwiML at this base (e.g. `ws://127.0.0.1:8080`).
    #[arg(long)]
    route: Option<String>,
}

fn token(env: &str) -> Result<Option<String>> {
    if env.is_empty() {
        return Ok(None);
    }
    std::env::var(env).map(Some).with_context(|| {
        format!("set {env} to the auth token (or --auth-token-env '' for unsigned)")
    })
}

/// Prints transcript lines as they arrive.
pub(crate) fn print_live(
    mut rx: tokio::sync::mpsc::Receiver<(String, TranscriptLine)>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some((_, line)) = rx.recv().await {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", format_line(&line));
        }
    })
}

pub(crate) fn format_line(line: &TranscriptLine) -> String {
    let who = match line.speaker {
        Speaker::Bot => "bot      ",
        Speaker::Caller => "candidate",
    };
    let cut = if line.interrupted {
        "  [interrupted]"
    } else {
        ""
    };
    format!(
        "[{:>6.1}s] {who}: {}{cut}",
        line.at_ms as f64 / 1000.0,
        line.text
    )
}

pub(crate) fn run(config: &Config, command: &Command) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match command {
        Command::Call(args) => runtime.block_on(call(args)),
        Command::Twilio(args) => runtime.block_on(twilio(config, args)),
        Command::Sms(args) => runtime.block_on(sms(config, args)),
    }
}

async fn call(args: &CallArgs) -> Result<()> {
    let scenario = Scenario::load(&args.scenario)?;
    let auth_token = token(&args.auth_token_env)?;
    let route = args.route.clone().map(Route::to).unwrap_or_default();
    let parameters = args.params.iter().cloned().collect();
    let recorder = Recorder::new();
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let printer = print_live(rx);
    let tap = TranscriptTap::to(tx);
    let cancel = CancellationToken::new();
    let stamp = std::process::id();
    let outcome: CallOutcome = if args.relay {
        let call = RelayCall {
            url: args.url.clone(),
            route,
            auth_token,
            setup: setup_message(
                &format!("VX{stamp:032x}"),
                &format!("AC{:032x}", 1),
                &format!("CA{stamp:032x}"),
                "+14155550100",
                "+14155550123",
                &parameters,
            ),
            welcome_greeting: None,
            steps: scenario.steps.clone().into(),
            options: RelayCallOptions {
                max_duration: Duration::from_secs(args.max_seconds),
                ..RelayCallOptions::default()
            },
        };
        run_relay_call(&call, &recorder, &tap, &cancel).await?
    } else {
        let call = MediaCall {
            url: args.url.clone(),
            route,
            auth_token,
            account_sid: AccountSid::new(format!("AC{:032x}", 1))?,
            call_sid: CallSid::new(format!("CA{stamp:032x}"))?,
            stream_sid: StreamSid::new(format!("MZ{stamp:032x}"))?,
            parameters,
            steps: scenario.steps.clone().into(),
            options: MediaCallOptions {
                record: args.write_heard.is_some(),
                max_duration: Duration::from_secs(args.max_seconds),
                ..MediaCallOptions::default()
            },
        };
        run_media_call(&call, &recorder, &tap, &cancel).await?
    };
    drop(tap);
    let _ = printer.await;
    if let (Some(path), Some(heard)) = (&args.write_heard, &outcome.heard) {
        let mut pcm = Vec::with_capacity(heard.len());
        voxbridge_audio::mulaw::decode(heard, &mut pcm);
        voxbridge_audio::wav::write_wav(path, &pcm, 8000)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "call ended: {:?} after {:.1} s; bot turns {}, marks echoed {}, clears {}",
        outcome.end,
        outcome.duration.as_secs_f64(),
        outcome.bot_turns,
        outcome.marks_echoed,
        outcome.clears
    )?;
    if let Some(handoff) = &outcome.handoff_data {
        writeln!(out, "handoffData: {handoff}")?;
    }
    Ok(())
}

async fn twilio(config: &Config, args: &TwilioArgs) -> Result<()> {
    let twilio = &config.api.twilio;
    if twilio.account_sid.is_empty() || twilio.auth_token.is_empty() {
        bail!(
            "set api.twilio.account_sid and api.twilio.auth_token (VOXBRIDGE__API__TWILIO__*): the stand-in checks the API's Basic auth and signs every callback with the token"
        );
    }
    let mut sim_config = SimConfig::new(
        twilio.account_sid.clone(),
        twilio.auth_token.expose().to_owned(),
        Scenario::load(&args.scenario)?,
    );
    sim_config.route = args.route.clone().map(Route::to).unwrap_or_default();
    let mut scenarios = HashMap::new();
    for (number, file) in &args.numbers {
        scenarios.insert(number.clone(), Scenario::load(std::path::Path::new(file))?);
    }
    sim_config.scenarios = scenarios;
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let _printer = print_live(rx);
    let sim = TwilioSim::new(sim_config, Arc::new(Recorder::new()), TranscriptTap::to(tx));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(addr = %args.listen, "Twilio REST stand-in listening");
    let shutdown = crate::shutdown::on_signal();
    let stopper = sim.clone();
    let serving_until = shutdown.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        stopper.shutdown();
    });
    // The API's texts (follow-ups, POST /api/messages) are accepted here too, with Twilio's
    // shapes, errors and delivery callbacks.
    let messages = MessagingSim::new(MessagingSimConfig::new(
        twilio.account_sid.clone(),
        twilio.auth_token.expose().to_owned(),
    ));
    axum::serve(listener, sim.router().merge(messages.router()))
        .with_graceful_shutdown(serving_until.cancelled_owned())
        .await
        .context("Twilio stand-in failed")
}

async fn sms(config: &Config, args: &SmsArgs) -> Result<()> {
    let twilio = &config.api.twilio;
    if twilio.account_sid.is_empty() || twilio.auth_token.is_empty() {
        bail!(
            "set api.twilio.account_sid and api.twilio.auth_token (VOXBRIDGE__API__TWILIO__*): the text is signed with the token"
        );
    }
    let to = args.to.as_deref().unwrap_or(&twilio.from_number);
    let sim = MessagingSim::new(MessagingSimConfig::new(
        twilio.account_sid.clone(),
        twilio.auth_token.expose().to_owned(),
    ));
    let (status, twiml) = sim
        .send_inbound(&args.url, &args.from, to, &args.body)
        .await
        .with_context(|| format!("cannot reach {}", args.url))?;
    writeln!(std::io::stdout().lock(), "{status} {twiml}")?;
    if !(200..300).contains(&status) {
        bail!("the API answered {status}");
    }
    Ok(())
}
