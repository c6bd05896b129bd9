//! `voxbridge user add EMAIL`: a recruiter account for the console, stored (argon2id hash, never
//! the password) in `[store]`'s database. The password comes from `VOXBRIDGE_USER_PASSWORD` or
//! standard input, never argv (command lines are visible to every user of the machine in `ps`).

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::{Context, Result, bail};

use crate::config::Config;

/// The environment variable `user add` reads the password from, before standard input.
const PASSWORD_ENV: &str = "VOXBRIDGE_USER_PASSWORD";
/// The shortest password accepted.
const MIN_PASSWORD_CHARS: usize = 12;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Create a console account, or give an existing one a new password. The password is read
    /// from `VOXBRIDGE_USER_PASSWORD`, else from the first line of standard input.
    Add {
        /// The e-mail address to sign in with (case is ignored).
        email: String,
    },
}

/// The e-mail as stored (lower case), or why it cannot be one.
fn normalized_email(email: &str) -> Result<String> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    if !valid {
        bail!("{email:?} is not an e-mail address (name@example.com)");
    }
    Ok(email)
}

fn read_password() -> Result<String> {
    if let Ok(password) = std::env::var(PASSWORD_ENV) {
        return Ok(password);
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password (shown as typed; or set {PASSWORD_ENV}): ");
        std::io::stderr().flush().ok();
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

pub(crate) fn run(config: &Config, command: &Command) -> Result<()> {
    let Command::Add { email } = command;
    let email = normalized_email(email)?;
    let password = read_password()?;
    if password.chars().count() < MIN_PASSWORD_CHARS {
        bail!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters (from {PASSWORD_ENV} \
             or standard input)"
        );
    }
    let hash = voxbridge_api::hash_password(&password)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let created = runtime.block_on(async {
        let store = voxbridge_store::Store::connect(&config.store)
            .await
            .context("cannot open the store ([store] database_url)")?;
        let now = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
        )
        .unwrap_or(i64::MAX);
        let created = store.put_console_user(&email, &hash, now).await;
        store.close().await;
        created.context("cannot save the account")
    })?;
    let mut out = std::io::stdout().lock();
    if created {
        writeln!(out, "created console user {email}")?;
    } else {
        writeln!(out, "new password set for console user {email}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_and_lower_cased() {
        assert_eq!(
            normalized_email(" Ada@Example.COM ").unwrap(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@localhost",
            "a da@example.com",
        ] {
            assert!(normalized_email(bad).is_err(), "{bad}");
        }
    }
}
