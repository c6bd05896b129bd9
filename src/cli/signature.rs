//! `voxbridge signature`: compute or check X-Twilio-Signature by hand, the first thing to reach
//! for when a webhook answers 403. The auth token comes from the environment, never argv
//! (command lines are visible to every user of the machine in `ps`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use voxbridge_twilio::signature::RequestValidator;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Print the signature Twilio would send for a request.
    Sign(Request),
    /// Check a signature against a request; exits non-zero when it does not match.
    Check {
        #[command(flatten)]
        request: Request,
        /// The X-Twilio-Signature header value to check.
        #[arg(long)]
        signature: String,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct Request {
    /// The full URL Twilio requested (scheme through query string; wss:// for WebSocket upgrades).
    #[arg(long)]
    url: String,
    /// A form parameter of a POST, as KEY=VALUE; repeat for each.
    #[arg(long = "param", value_parser = super::parse_pair)]
    params: Vec<(String, String)>,
    /// Raw JSON body of an application/json webhook (its bodySHA256 must be in --url).
    #[arg(long, conflicts_with = "params")]
    json_body: Option<PathBuf>,
    /// Environment variable holding the auth token.
    #[arg(long, default_value = "TWILIO_AUTH_TOKEN")]
    auth_token_env: String,
}

pub(crate) fn run(command: &Command) -> Result<()> {
    let request = match command {
        Command::Sign(r) | Command::Check { request: r, .. } => r,
    };
    let token = std::env::var(&request.auth_token_env)
        .with_context(|| format!("set {} to the Twilio auth token", request.auth_token_env))?;
    let validator = RequestValidator::new(token);
    let mut out = std::io::stdout().lock();
    match command {
        Command::Sign(_) => {
            if request.json_body.is_some() {
                // A JSON webhook is signed over the URL (which carries bodySHA256) alone.
                writeln!(out, "{}", validator.sign(&request.url, &[]))?;
            } else {
                writeln!(out, "{}", validator.sign(&request.url, &request.params))?;
            }
        }
        Command::Check { signature, .. } => {
            let outcome = if let Some(body) = &request.json_body {
                let body = std::fs::read(body)
                    .with_context(|| format!("cannot read {}", body.display()))?;
                validator.validate_json(&request.url, &body, signature)
            } else {
                validator.validate_form(&request.url, &request.params, signature)
            };
            match outcome {
                Ok(()) => writeln!(out, "valid")?,
                Err(e) => bail!("invalid: {e}"),
            }
        }
    }
    Ok(())
}
