//! `voxbridge config`: print the effective configuration as TOML (secrets redacted), or
//! `voxbridge config check`: run the checks `serve` and `api` run at startup, without binding a
//! socket or opening the store.

use std::io::Write;

use anyhow::{Context, Result};

use crate::config::Config;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Option<Action>,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Check every section as `serve` and `api` do at startup; exit 0 when both would start.
    Check,
}

pub(crate) fn run(config: &Config, args: &Args) -> Result<()> {
    match args.action {
        None => print(config),
        Some(Action::Check) => check(config),
    }
}

/// The configuration as TOML: `Secret`s print as `"<redacted>"`, URL passwords as `***`.
fn print(config: &Config) -> Result<()> {
    let text = toml::to_string(config).context("cannot print the configuration")?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    Ok(())
}

fn check(config: &Config) -> Result<()> {
    crate::cli::serve::prepare(config)?;
    crate::cli::api::check(config)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "configuration OK: `voxbridge serve`{} and `voxbridge api` would start{}",
        if crate::cli::serve::serves_api(config) {
            " (with the API on the same port)"
        } else {
            ""
        },
        config
            .source
            .as_deref()
            .map(|p| format!(" (file {})", p.display()))
            .unwrap_or_default()
    )?;
    Ok(())
}
