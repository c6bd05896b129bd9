//! Command implementations. Each writes its result to stdout and returns errors to `main`.

pub(crate) mod api;
pub(crate) mod config;
pub(crate) mod demo;
pub(crate) mod demo_voice;
pub(crate) mod healthcheck;
pub(crate) mod loadtest;
pub(crate) mod replay;
pub(crate) mod serve;
pub(crate) mod signature;
pub(crate) mod sim;
pub(crate) mod transcribe;
pub(crate) mod twiml;
pub(crate) mod user;

/// Parses `KEY=VALUE` command-line pairs.
pub(crate) fn parse_pair(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {raw:?}"))
}
