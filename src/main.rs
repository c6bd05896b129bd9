//! The `voxbridge` binary: parses the command line, loads configuration, installs tracing and
//! runs the chosen command. The work itself lives in the library crates under `crates/`.

mod call_store;
mod cli;
mod config;
mod record_metrics;
mod screening_store;
mod shutdown;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Real-time voice AI bridge for Twilio Media Streams and ConversationRelay.
#[derive(Debug, Parser)]
#[command(name = "voxbridge", version, about)]
struct Cli {
    /// Configuration file (TOML) merged over the embedded defaults (see config/default.toml).
    #[arg(long, global = true, env = "VOXBRIDGE_CONFIG")]
    config: Option<PathBuf>,
    /// Log format on stderr: `text` (colours only when stderr is a terminal) or `json` (one
    /// flat object per line).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log filter, e.g. `debug` or `info,voxbridge_media=debug`. Default: `RUST_LOG`, else
    /// `info`.
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the voice bridge on `[media].listen`: Media Streams (`<Connect><Stream>`) and
    /// ConversationRelay with the screening agent (`<Connect><ConversationRelay>`), and the
    /// companion API on the same port (`api.in_serve`, the default).
    Serve,
    /// Run the companion HTTP service alone on `[api].listen`: screening calls, TwiML, Twilio
    /// webhooks ([api], [store]); for `api.in_serve = false`.
    Api,
    /// Push a WAV file through the inbound Media Streams path exactly as Twilio would send it
    /// (mu-law 20 ms frames as `media` JSON) and report the utterances the pipeline detects.
    Replay(cli::replay::Args),
    /// Recognise WAV files through the inbound Media Streams path (8 kHz mu-law frames ->
    /// resample -> VAD) and `[speech]`'s recogniser; prints each utterance's span, text and
    /// recognition time.
    Transcribe(cli::transcribe::Args),
    /// Compute or check an X-Twilio-Signature (auth token read from the environment).
    #[command(subcommand)]
    Signature(cli::signature::Command),
    /// Print the TwiML voxbridge serves to connect a call to an agent.
    #[command(subcommand)]
    Twiml(cli::twiml::Command),
    /// Print the effective configuration (defaults + file + environment) as TOML with secrets
    /// redacted, or check it (`config check`) as `serve` and `api` do at startup.
    Config(cli::config::Args),
    /// `GET /healthz` of the local bridge (or `--url`); exit 0 when it answers 200. For
    /// container health checks.
    Healthcheck(cli::healthcheck::Args),
    /// Run a whole screening offline: bridge, API, SQLite and a simulated Twilio and
    /// candidate in one process; prints the transcript and the stored result.
    Demo(cli::demo::Args),
    /// Play Twilio's side: one simulated call, or the REST `Calls.json` stand-in.
    #[command(subcommand)]
    Sim(cli::sim::Command),
    /// N concurrent simulated calls against a running bridge; JSON report + SVG histogram.
    Loadtest(cli::loadtest::Args),
    /// Recruiter accounts for the console (`user add EMAIL`; password from
    /// `VOXBRIDGE_USER_PASSWORD` or standard input).
    #[command(subcommand)]
    User(cli::user::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = install_tracing(cli.log_format, cli.log_level.as_deref()) {
        eprintln!("voxbridge: --log-level: {e}");
        return ExitCode::from(2);
    }
    // `.env` in the working directory, if any: variables already set win.
    match dotenvy::from_path(".env") {
        Ok(()) => {}
        Err(e) if e.not_found() => {}
        Err(e) => {
            tracing::error!("configuration error: .env: {e}");
            return ExitCode::from(2);
        }
    }
    let config = match config::Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("configuration error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Serve => cli::serve::run(config),
        Command::Api => cli::api::run(config),
        Command::Replay(args) => cli::replay::run(&config, &args),
        Command::Transcribe(args) => cli::transcribe::run(&config, &args),
        Command::Signature(cmd) => cli::signature::run(&cmd),
        Command::Twiml(cmd) => cli::twiml::run(&cmd),
        Command::Config(args) => cli::config::run(&config, &args),
        Command::Demo(args) => cli::demo::run(config, &args),
        Command::Healthcheck(args) => cli::healthcheck::run(&config, &args),
        Command::Sim(cmd) => cli::sim::run(&config, &cmd),
        Command::Loadtest(args) => cli::loadtest::run(&args),
        Command::User(cmd) => cli::user::run(&config, &cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr: `--log-level`, else `RUST_LOG`, else `info`. Text logs carry ANSI colours
/// only on a terminal (a log file or journald gets plain text); JSON logs put the event's
/// fields at the top level of each line.
fn install_tracing(
    format: LogFormat,
    level: Option<&str>,
) -> Result<(), tracing_subscriber::filter::ParseError> {
    use std::io::IsTerminal;

    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(level) => EnvFilter::try_new(level)?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}
