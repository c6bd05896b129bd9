//! Configuration: embedded defaults (`config/default.toml`), then an optional file, then
//! environment overrides. Unknown keys are errors that name the key, reported before any work
//! starts (STYLE.md: bad configuration is reported with the key and the fix).
//!
//! Environment overrides use `VOXBRIDGE__<SECTION>__<KEY>=value`, e.g.
//! `VOXBRIDGE__MEDIA__MIN_SPEECH_MS=250`. Values are parsed as TOML scalars (numbers, booleans)
//! and fall back to strings. `DATABASE_URL`, when set, overrides `store.database_url`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The defaults, compiled in so the binary runs with no files next to it.
pub(crate) const DEFAULT_TOML: &str = include_str!("../config/default.toml");
const ENV_PREFIX: &str = "VOXBRIDGE__";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// `[media]`: the Media Streams bridge (`voxbridge serve`) and its per-call sessions.
    pub(crate) media: voxbridge_media::MediaConfig,
    /// `[api]`: the companion HTTP service (`voxbridge api`).
    pub(crate) api: voxbridge_api::ApiConfig,
    /// `[store]`: durable records (SQLite or PostgreSQL).
    pub(crate) store: voxbridge_store::StoreConfig,
    /// `[agent]`: the screening agent `voxbridge serve` runs on `/relay`.
    pub(crate) agent: voxbridge_screening::AgentConfig,
    /// `[speech]`: ASR/LLM/TTS providers and the voice pipeline of Media Streams calls.
    pub(crate) speech: voxbridge_speech::config::SpeechConfig,
    /// The configuration file given, if any (relative `agent.screenings_dir` is resolved
    /// against its directory).
    #[serde(skip)]
    pub(crate) source: Option<PathBuf>,
}

impl Config {
    /// Loads the defaults, merges `path` over them when given, then applies `VOXBRIDGE__*`
    /// environment overrides.
    pub(crate) fn load(path: Option<&Path>) -> Result<Self> {
        Self::load_with_env(path, std::env::vars())
    }

    fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut merged: toml::Table =
            toml::from_str(DEFAULT_TOML).context("embedded config/default.toml is invalid")?;
        if let Some(path) = path {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            let user: toml::Table = toml::from_str(&text)
                .with_context(|| format!("config file {} is not valid TOML", path.display()))?;
            merge(&mut merged, user);
        }
        for (name, value) in env {
            // The conventional variable wins for the database, as in most deployments.
            if name == "DATABASE_URL" && !value.is_empty() {
                set_path(
                    &mut merged,
                    &["store".to_owned(), "database_url".to_owned()],
                    toml::Value::String(value),
                )?;
                continue;
            }
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let keys: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            if keys.iter().any(String::is_empty) {
                bail!("environment variable {name}: expected VOXBRIDGE__SECTION__KEY");
            }
            set_path(&mut merged, &keys, parse_scalar(&value))
                .with_context(|| format!("environment variable {name}"))?;
        }
        let mut config: Config = toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("invalid configuration: {e}"))?;
        config.source = path.map(Path::to_path_buf);
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        let rate = self.media.pipeline_rate;
        if !matches!(rate, 8000 | 16000 | 24000 | 48000) {
            bail!(
                "media.pipeline_rate = {rate}: must be 8000, 16000, 24000 or 48000 (set it in your config file or VOXBRIDGE__MEDIA__PIPELINE_RATE)"
            );
        }
        Ok(())
    }
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn set_path(table: &mut toml::Table, keys: &[String], value: toml::Value) -> Result<()> {
    let (last, parents) = keys
        .split_last()
        .expect("split on a non-empty prefix yields a key");
    let mut cursor = table;
    for key in parents {
        cursor = match cursor
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(t) => t,
            _ => bail!("{key} is a value, not a section"),
        };
    }
    cursor.insert(last.clone(), value);
    Ok(())
}

fn parse_scalar(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn embedded_defaults_load() {
        let c = Config::load_with_env(None, env(&[])).unwrap();
        assert_eq!(c.media.pipeline_rate, 16000);
        assert_eq!(c.media.media_path, "/media");
        assert!(c.media.min_speech_ms > 0);
    }

    #[test]
    fn env_overrides_a_key() {
        let c = Config::load_with_env(None, env(&[("VOXBRIDGE__MEDIA__MIN_SPEECH_MS", "250")]))
            .unwrap();
        assert_eq!(c.media.min_speech_ms, 250);
    }

    #[test]
    fn file_overrides_defaults_and_keeps_the_rest() {
        let dir = std::env::temp_dir().join(format!("voxbridge-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "[media]\nhangover_ms = 900\n").unwrap();
        let c = Config::load_with_env(Some(&path), env(&[])).unwrap();
        assert_eq!(c.media.hangover_ms, 900);
        assert_eq!(c.media.pipeline_rate, 16000);
    }

    #[test]
    fn unknown_key_is_an_error_naming_the_key() {
        let err = Config::load_with_env(None, env(&[("VOXBRIDGE__MEDIA__MIN_SPEACH_MS", "250")]))
            .unwrap_err();
        assert!(format!("{err:#}").contains("min_speach_ms"), "{err:#}");
    }

    #[test]
    fn bad_sample_rate_names_the_key() {
        let err = Config::load_with_env(None, env(&[("VOXBRIDGE__MEDIA__PIPELINE_RATE", "44100")]))
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("media.pipeline_rate"),
            "{err:#}"
        );
    }

    #[test]
    fn database_url_overrides_the_store() {
        let c = Config::load_with_env(
            None,
            env(&[("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")]),
        )
        .unwrap();
        assert_eq!(
            c.store.database_url,
            "postgres://postgres@127.0.0.1:5432/test"
        );
    }

    #[test]
    fn every_default_key_matches_the_code_defaults() {
        // config/default.toml documents every key; it must say what the code does.
        let c = Config::load_with_env(None, env(&[])).unwrap();
        assert_eq!(c.media, voxbridge_media::MediaConfig::default());
        assert_eq!(c.api, voxbridge_api::ApiConfig::default());
        assert_eq!(c.store, voxbridge_store::StoreConfig::default());
        assert_eq!(c.agent, voxbridge_screening::AgentConfig::default());
        assert_eq!(c.speech, voxbridge_speech::config::SpeechConfig::default());
    }

    #[test]
    fn wrong_type_is_an_error() {
        let err = Config::load_with_env(None, env(&[("VOXBRIDGE__MEDIA__HANGOVER_MS", "soon")]))
            .unwrap_err();
        assert!(format!("{err:#}").contains("hangover_ms"), "{err:#}");
    }
}
