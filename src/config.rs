//! Configuration: the code's defaults, then an optional file, then environment overrides.
//! Unknown keys and values of the wrong type are errors that name the key, reported before
//! any work starts (STYLE.md: bad configuration is reported with the key and the fix).
//!
//! Each key is declared once, in the crate that uses it: a field with its serde name, its
//! default in that struct's `Default`, its check in that struct's `validate`. Durations are
//! `Duration`s read from whole milliseconds (`*_ms`). `config/default.toml` documents every
//! key with its default; a test keeps it equal to the code, key for key and value for value.
//!
//! Environment overrides use `VOXBRIDGE__<SECTION>__<KEY>=value`, e.g.
//! `VOXBRIDGE__MEDIA__MIN_SPEECH_MS=250`. A value is read as the key's type: text for a text
//! key (`+14155550100` stays a string), a TOML value for the others (numbers, booleans,
//! `["a", "b"]`). `DATABASE_URL`, when set, overrides `store.database_url`. The ecosystem's
//! standard names ([`STANDARD_ENV`]: `TWILIO_AUTH_TOKEN`, `PUBLIC_URL`, ...) fill keys that
//! neither the file nor a `VOXBRIDGE__` variable set. `media.auth_token` defaults to
//! `api.twilio.auth_token`: one Twilio auth token serves both services.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Every key with its default and what it does (documentation, checked against the code).
#[cfg(test)]
const DEFAULT_TOML: &str = include_str!("../config/default.toml");
const ENV_PREFIX: &str = "VOXBRIDGE__";

/// Twilio's and the ecosystem's conventional variables, and the keys each fills when neither
/// the config file nor a `VOXBRIDGE__` variable set them.
pub(crate) const STANDARD_ENV: &[(&str, &[&str])] = &[
    ("TWILIO_ACCOUNT_SID", &["api.twilio.account_sid"]),
    (
        "TWILIO_AUTH_TOKEN",
        &["api.twilio.auth_token", "media.auth_token"],
    ),
    ("TWILIO_API_KEY", &["api.twilio.api_key"]),
    ("TWILIO_API_SECRET", &["api.twilio.api_secret"]),
    ("TWILIO_PHONE_NUMBER", &["api.twilio.from_number"]),
    ("REDIS_URL", &["api.rate_limit.redis_url"]),
    ("PUBLIC_URL", &["api.public_url", "media.public_url"]),
];

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
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
    /// Reads `path` when given, applies `VOXBRIDGE__*` environment overrides over it, and
    /// fills every key not set from the code's defaults.
    pub(crate) fn load(path: Option<&Path>) -> Result<Self> {
        Self::load_with_env(path, std::env::vars())
    }

    fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut merged = toml::Table::new();
        if let Some(path) = path {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            merged = toml::from_str(&text)
                .with_context(|| format!("config file {} is not valid TOML", path.display()))?;
        }
        let defaults = toml::Table::try_from(Config::default())
            .context("the default configuration does not serialise")?;
        // Which variable set which key, to name it when the value is wrong.
        let mut origin: Vec<(String, String)> = Vec::new();
        let mut standard: Vec<(String, String)> = Vec::new();
        let mut env: Vec<(String, String)> = env.into_iter().collect();
        env.sort();
        for (name, value) in env {
            // The conventional variable wins for the database, as in most deployments.
            if name == "DATABASE_URL" && !value.is_empty() {
                set_path(
                    &mut merged,
                    &["store".to_owned(), "database_url".to_owned()],
                    toml::Value::String(value),
                )?;
                origin.push(("store.database_url".to_owned(), name));
                continue;
            }
            if STANDARD_ENV.iter().any(|(n, _)| *n == name) {
                standard.push((name, value));
                continue;
            }
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let keys: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            if keys.iter().any(String::is_empty) {
                bail!("environment variable {name}: expected VOXBRIDGE__SECTION__KEY");
            }
            let typed = typed_value(&defaults, &keys, &value)
                .with_context(|| format!("environment variable {name}"))?;
            set_path(&mut merged, &keys, typed)
                .with_context(|| format!("environment variable {name}"))?;
            origin.push((keys.join("."), name));
        }
        // One Twilio auth token serves both services (either key sets the other): the one
        // configured wins over an ambient TWILIO_AUTH_TOKEN.
        let media_token = ["media".to_owned(), "auth_token".to_owned()];
        let api_token = [
            "api".to_owned(),
            "twilio".to_owned(),
            "auth_token".to_owned(),
        ];
        let pairs: [(&[String], &[String]); 2] =
            [(&media_token, &api_token), (&api_token, &media_token)];
        for (to, from) in pairs {
            if get_path(&merged, to).is_none()
                && let Some(token) = get_path(&merged, from)
            {
                let token = token.clone();
                set_path(&mut merged, to, token)?;
            }
        }
        for (name, value) in standard {
            if value.trim().is_empty() {
                continue;
            }
            let (_, keys) = STANDARD_ENV
                .iter()
                .find(|(n, _)| *n == name)
                .expect("collected from STANDARD_ENV");
            for key in *keys {
                let path: Vec<String> = key.split('.').map(str::to_owned).collect();
                if get_path(&merged, &path).is_none() {
                    set_path(&mut merged, &path, toml::Value::String(value.clone()))?;
                    origin.push(((*key).to_owned(), name.clone()));
                }
            }
        }
        let mut config: Config = parse(&merged, &origin)?;
        let media_from_public_url = origin
            .iter()
            .any(|(key, var)| key == "media.public_url" && var == "PUBLIC_URL");
        config.derive_urls(
            |key| {
                let path: Vec<String> = key.split('.').map(str::to_owned).collect();
                get_path(&merged, &path).is_some()
            },
            media_from_public_url,
        );
        config.source = path.map(Path::to_path_buf);
        config.validate()?;
        Ok(config)
    }

    /// Fills the public URLs nobody set (`given(key)`: the file or the environment set `key`)
    /// from the one that was, so one public URL configures everything. Twilio opens
    /// `WebSockets` over TLS only and signs the `wss://` URL, so every URL of the bridge derived
    /// here is in `wss://` form, and every URL of the API in `http(s)://` form:
    /// - `media.public_url`: from `PUBLIC_URL` (`media_from_public_url`), or, when not set and
    ///   `api.in_serve` (one port), from `api.public_url` (given or derived);
    /// - `api.public_url`: `media.public_url` when not set; else `http://localhost:<port>` of
    ///   the listener the API is on (`media.listen` when `api.in_serve`, else `api.listen`);
    /// - `api.connect.relay_url` / `stream_url`: the bridge's public URL + `media.relay_path` /
    ///   `media_path`; with no public URL, `wss://localhost:<media.listen port>`.
    fn derive_urls(&mut self, given: impl Fn(&str) -> bool, media_from_public_url: bool) {
        let media_port = self.media.listen.port();
        if media_from_public_url {
            self.media.public_url = wss_form(self.media.public_url.trim_end_matches('/'));
        }
        let media_url = self.media.public_url.trim_end_matches('/').to_owned();
        if given("api.public_url") {
            self.api.public_url = http_form(&self.api.public_url);
        } else {
            self.api.public_url = if !media_url.is_empty() {
                http_form(&media_url)
            } else if self.api.in_serve {
                format!("http://localhost:{media_port}")
            } else {
                let port = self
                    .api
                    .listen
                    .rsplit_once(':')
                    .map_or("8081", |(_, port)| port);
                format!("http://localhost:{port}")
            };
        }
        if self.api.in_serve && media_url.is_empty() {
            self.media.public_url = wss_form(self.api.public_url.trim_end_matches('/'));
        }
        let bridge = if self.media.public_url.is_empty() {
            format!("wss://localhost:{media_port}")
        } else {
            wss_form(self.media.public_url.trim_end_matches('/'))
        };
        if !given("api.connect.relay_url") {
            self.api.connect.relay_url = format!("{bridge}{}", self.media.relay_path);
        }
        if !given("api.connect.stream_url") {
            self.api.connect.stream_url = format!("{bridge}{}", self.media.media_path);
        }
    }

    /// The URLs Twilio must reach that point at this machine only (`localhost`, a loopback,
    /// private or unspecified address), as `(key, url)`, for a warning at startup: calls
    /// cannot work until a public URL (a tunnel's, say) is set. `serve` says whether the
    /// bridge runs (its `media.public_url`) and `api` whether the API does. Empty when
    /// Twilio's REST API is itself local (the simulator: an offline run).
    pub(crate) fn local_only_urls(&self, serve: bool, api: bool) -> Vec<(&'static str, String)> {
        if is_local_url(&self.api.twilio.rest_base_url) {
            return Vec::new();
        }
        let mut urls = Vec::new();
        if serve && !self.media.public_url.is_empty() {
            urls.push(("media.public_url", self.media.public_url.clone()));
        }
        if api {
            urls.push(("api.public_url", self.api.public_url.clone()));
            urls.push(match self.api.connect.mode {
                voxbridge_api::ConnectMode::Relay => {
                    ("api.connect.relay_url", self.api.connect.relay_url.clone())
                }
                voxbridge_api::ConnectMode::Stream => (
                    "api.connect.stream_url",
                    self.api.connect.stream_url.clone(),
                ),
            });
        }
        urls.retain(|(_, url)| is_local_url(url));
        urls
    }

    /// Logs a warning for each of [`Config::local_only_urls`].
    pub(crate) fn warn_local_only_urls(&self, serve: bool, api: bool) {
        for (key, url) in self.local_only_urls(serve, api) {
            tracing::warn!(
                "{key} = {url}: Twilio cannot reach this machine-only address, so real calls \
                 will fail; set PUBLIC_URL to the public https:// URL that reaches this port \
                 (e.g. your tunnel's)"
            );
        }
    }

    /// Checks the settings every command relies on (the per-call session settings); each
    /// service checks the rest of its section when it starts.
    fn validate(&self) -> Result<()> {
        self.media.session.validate().map_err(|e| {
            anyhow::anyhow!(
                "media.{} = {}: must be {} (set it in your config file or VOXBRIDGE__MEDIA__{})",
                e.key,
                e.value,
                e.expected,
                e.key.to_ascii_uppercase()
            )
        })
    }
}

/// Deserialises the configuration; on failure, names the offending key (and the environment
/// variable that set it, from `origin`). serde reports a wrong type inside a flattened
/// section (`[media]` holds the session keys) against the section, so the key is found by
/// trying the section's entries one at a time.
fn parse(table: &toml::Table, origin: &[(String, String)]) -> Result<Config> {
    toml::Value::Table(table.clone())
        .try_into()
        .map_err(|e: toml::de::Error| match find_bad_key(table, &[]) {
            Some((key, cause)) => match origin.iter().find(|(k, _)| *k == key) {
                Some((_, var)) => {
                    anyhow::anyhow!(
                        "invalid configuration: environment variable {var} ({key}): {cause}"
                    )
                }
                None => anyhow::anyhow!("invalid configuration: {key}: {cause}"),
            },
            None => anyhow::anyhow!("invalid configuration: {e}"),
        })
}

/// An environment value as the type of the key it sets: text stays text for a text key
/// (`+14155550100`, `0123`, `true` are strings there), anything else is read as a TOML value.
fn typed_value(defaults: &toml::Table, keys: &[String], raw: &str) -> Result<toml::Value> {
    match get_path(defaults, keys) {
        Some(toml::Value::String(_)) => Ok(toml::Value::String(raw.to_owned())),
        Some(toml::Value::Array(_)) => toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .filter(toml::Value::is_array)
            .ok_or_else(|| anyhow::anyhow!("expected a list such as [\"a\", \"b\"], got {raw:?}")),
        _ => Ok(parse_scalar(raw)),
    }
}

/// `url` with a `wss`/`ws` scheme written as `https`/`http`.
fn http_form(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = url.strip_prefix("ws://") {
        format!("http://{rest}")
    } else {
        url.to_owned()
    }
}

/// `url` with a `wss` scheme, whatever it had (Twilio opens `WebSockets` over TLS only).
fn wss_form(url: &str) -> String {
    match url.split_once("://") {
        Some((_, rest)) => format!("wss://{rest}"),
        None => url.to_owned(),
    }
}

/// Whether `url`'s host is one Twilio cannot reach: `localhost`, or a loopback, private,
/// link-local or unspecified IP address.
fn is_local_url(url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    match parsed.host() {
        Some(url::Host::Domain(name)) => {
            name.eq_ignore_ascii_case("localhost") || name.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => {
            ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified()
        }
        Some(url::Host::Ipv6(ip)) => {
            ip.is_loopback() || ip.is_unspecified() || ip.is_unique_local()
        }
        None => false,
    }
}

fn get_path<'a>(table: &'a toml::Table, keys: &[String]) -> Option<&'a toml::Value> {
    let (last, parents) = keys.split_last()?;
    let mut cursor = table;
    for key in parents {
        cursor = cursor.get(key)?.as_table()?;
    }
    cursor.get(last)
}

/// The first key (`section.key`) whose value alone fails to deserialise, and why.
fn find_bad_key(table: &toml::Table, path: &[&str]) -> Option<(String, String)> {
    for (key, value) in table {
        let mut inner = path.to_vec();
        inner.push(key);
        if let toml::Value::Table(section) = value
            && let Some(found) = find_bad_key(section, &inner)
        {
            return Some(found);
        }
        let mut alone = toml::Table::new();
        let mut cursor = &mut alone;
        for part in &inner[..inner.len() - 1] {
            cursor = match cursor
                .entry((*part).to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            {
                toml::Value::Table(t) => t,
                _ => return None,
            };
        }
        cursor.insert(key.clone(), value.clone());
        if let Err(e) = toml::Value::Table(alone).try_into::<Config>() {
            return Some((inner.join("."), e.message().to_owned()));
        }
    }
    None
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
    use std::time::Duration;

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
        assert_eq!(c.media.session.pipeline_rate, 16000);
        assert_eq!(c.media.media_path, "/media");
        assert_eq!(c.media.session.min_speech, Duration::from_millis(200));
    }

    #[test]
    fn env_overrides_a_key() {
        let c = Config::load_with_env(None, env(&[("VOXBRIDGE__MEDIA__MIN_SPEECH_MS", "250")]))
            .unwrap();
        assert_eq!(c.media.session.min_speech, Duration::from_millis(250));
    }

    #[test]
    fn file_overrides_defaults_and_keeps_the_rest() {
        let dir = std::env::temp_dir().join(format!("voxbridge-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "[media]\nhangover_ms = 900\n").unwrap();
        let c = Config::load_with_env(Some(&path), env(&[])).unwrap();
        assert_eq!(c.media.session.hangover, Duration::from_millis(900));
        assert_eq!(c.media.session.pipeline_rate, 16000);
        assert_eq!(c.api, voxbridge_api::ApiConfig::default());
    }

    #[test]
    fn unknown_key_is_an_error_naming_the_key() {
        let err = Config::load_with_env(None, env(&[("VOXBRIDGE__MEDIA__MIN_SPEACH_MS", "250")]))
            .unwrap_err();
        assert!(
            format!("{err:#}").ends_with(
                "VOXBRIDGE__MEDIA__MIN_SPEACH_MS (media.min_speach_ms): unknown key `min_speach_ms`"
            ),
            "{err:#}"
        );
        let err = Config::load_with_env(None, env(&[("VOXBRIDGE__API__LISTNE", "x")])).unwrap_err();
        assert!(format!("{err:#}").contains("listne"), "{err:#}");
    }

    #[test]
    fn bad_sample_rate_names_the_key() {
        let err = Config::load_with_env(None, env(&[("VOXBRIDGE__MEDIA__PIPELINE_RATE", "44100")]))
            .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "media.pipeline_rate = 44100: must be 8000, 16000, 24000 or 48000 Hz (set it in \
             your config file or VOXBRIDGE__MEDIA__PIPELINE_RATE)"
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
            c.store.database_url.expose(),
            "postgres://postgres@127.0.0.1:5432/test"
        );
    }

    #[test]
    fn default_toml_gives_the_code_defaults() {
        // config/default.toml documents every key; loaded as a file it must change nothing.
        let documented: Config = parse(&toml::from_str(DEFAULT_TOML).unwrap(), &[]).unwrap();
        let code = Config::default();
        assert_eq!(documented.media, code.media);
        assert_eq!(documented.api, code.api);
        assert_eq!(documented.store, code.store);
        assert_eq!(documented.agent, code.agent);
        assert_eq!(documented.speech, code.speech);
    }

    #[test]
    fn default_toml_documents_every_key() {
        fn keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
            for (key, value) in table {
                let path = format!("{prefix}{key}");
                match value {
                    toml::Value::Table(t) => keys(t, &format!("{path}."), out),
                    _ => out.push(path),
                }
            }
        }
        let mut documented = Vec::new();
        keys(&toml::from_str(DEFAULT_TOML).unwrap(), "", &mut documented);
        let mut declared = Vec::new();
        keys(
            &toml::Table::try_from(Config::default()).unwrap(),
            "",
            &mut declared,
        );
        documented.sort();
        declared.sort();
        let missing: Vec<_> = declared
            .iter()
            .filter(|k| !documented.contains(k))
            .collect();
        let stale: Vec<_> = documented
            .iter()
            .filter(|k| !declared.contains(k))
            .collect();
        assert!(
            missing.is_empty() && stale.is_empty(),
            "config/default.toml lacks {missing:?} and documents unknown {stale:?}"
        );
    }

    #[test]
    fn a_config_file_needs_only_the_keys_it_changes() {
        let c = Config::load_with_env(None, env(&[])).unwrap();
        let media = voxbridge_media::MediaConfig {
            // Derived: one process, one URL (see `one_public_url_sets_the_others`).
            public_url: "wss://localhost:8080".to_owned(),
            ..voxbridge_media::MediaConfig::default()
        };
        assert_eq!(c.media, media);
        assert_eq!(c.store, voxbridge_store::StoreConfig::default());
    }

    #[test]
    fn wrong_type_is_an_error() {
        let err = Config::load_with_env(None, env(&[("VOXBRIDGE__MEDIA__HANGOVER_MS", "soon")]))
            .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains(
                "environment variable VOXBRIDGE__MEDIA__HANGOVER_MS (media.hangover_ms): \
                 invalid type: string \"soon\""
            ),
            "{text}"
        );
        let err = Config::load_with_env(None, env(&[("VOXBRIDGE__API__BODY_LIMIT_BYTES", "big")]))
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("VOXBRIDGE__API__BODY_LIMIT_BYTES (api.body_limit_bytes)"),
            "{err:#}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[media]\nhangover_ms = \"soon\"\n").unwrap();
        let err = Config::load_with_env(Some(&path), env(&[])).unwrap_err();
        assert!(
            format!("{err:#}")
                .starts_with("invalid configuration: media.hangover_ms: invalid type"),
            "{err:#}"
        );
    }

    #[test]
    fn text_keys_take_environment_values_as_text() {
        // Copied from README: a phone number must not become an integer.
        let c = Config::load_with_env(
            None,
            env(&[
                ("VOXBRIDGE__API__TWILIO__FROM_NUMBER", "+14155550100"),
                ("VOXBRIDGE__API__TWILIO__ACCOUNT_SID", "0123"),
                ("VOXBRIDGE__MEDIA__DEFAULT_AGENT", "true"),
                ("VOXBRIDGE__API__SCREENINGS", "[\"default\", \"nurse\"]"),
                ("VOXBRIDGE__API__RATE_LIMIT__MAX_CALLS", "7"),
            ]),
        )
        .unwrap();
        assert_eq!(c.api.twilio.from_number, "+14155550100");
        assert_eq!(c.api.twilio.account_sid, "0123");
        assert_eq!(c.media.default_agent, "true");
        assert_eq!(c.api.screenings, ["default", "nurse"]);
        assert_eq!(c.api.rate_limit.max_calls, 7);
        let err = Config::load_with_env(None, env(&[("VOXBRIDGE__API__SCREENINGS", "nurse")]))
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("environment variable VOXBRIDGE__API__SCREENINGS"),
            "{err:#}"
        );
    }

    #[test]
    fn standard_variables_fill_unset_keys() {
        let c = Config::load_with_env(
            None,
            env(&[
                ("TWILIO_ACCOUNT_SID", "AC0123"),
                ("TWILIO_AUTH_TOKEN", "tok\n"),
                ("TWILIO_PHONE_NUMBER", "+14155550100"),
                ("REDIS_URL", "redis://:pw@cache:6379"),
                ("PUBLIC_URL", "https://voice.example.com"),
            ]),
        )
        .unwrap();
        assert_eq!(c.api.twilio.account_sid, "AC0123");
        assert_eq!(c.api.twilio.auth_token.expose(), "tok");
        assert_eq!(
            c.media.auth_token.expose(),
            "tok",
            "one token for both services"
        );
        assert_eq!(c.api.twilio.from_number, "+14155550100");
        assert_eq!(
            c.api.rate_limit.redis_url.expose(),
            "redis://:pw@cache:6379"
        );
        assert_eq!(c.api.public_url, "https://voice.example.com");
        assert_eq!(
            c.media.public_url, "wss://voice.example.com",
            "Twilio signs the wss:// URL of an upgrade"
        );
        assert_eq!(
            c.api.connect.relay_url, "wss://voice.example.com/relay",
            "one public URL gives the ConversationRelay URL"
        );
        assert_eq!(c.api.connect.stream_url, "wss://voice.example.com/media");

        // The file and VOXBRIDGE__ variables win over the standard names.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[api.twilio]\nauth_token = \"from-file\"\n").unwrap();
        let c = Config::load_with_env(
            Some(&path),
            env(&[
                ("TWILIO_AUTH_TOKEN", "from-env"),
                ("TWILIO_PHONE_NUMBER", "+14155550100"),
                ("VOXBRIDGE__API__TWILIO__FROM_NUMBER", "+14155550199"),
            ]),
        )
        .unwrap();
        assert_eq!(c.api.twilio.auth_token.expose(), "from-file");
        assert_eq!(c.media.auth_token.expose(), "from-file");
        assert_eq!(c.api.twilio.from_number, "+14155550199");

        // A token set only in [api.twilio] also validates the bridge's upgrades, and the
        // other way round.
        let c = Config::load_with_env(Some(&path), env(&[])).unwrap();
        assert_eq!(c.media.auth_token.expose(), "from-file");
        let c = Config::load_with_env(None, env(&[("VOXBRIDGE__MEDIA__AUTH_TOKEN", "m")])).unwrap();
        assert_eq!(c.api.twilio.auth_token.expose(), "m");
    }

    #[test]
    fn one_public_url_sets_the_others() {
        // The bridge's URL alone: the API and the TwiML URLs follow it.
        let c = Config::load_with_env(
            None,
            env(&[
                ("VOXBRIDGE__MEDIA__PUBLIC_URL", "wss://abc.example.net/"),
                ("VOXBRIDGE__MEDIA__RELAY_PATH", "/cr"),
            ]),
        )
        .unwrap();
        assert_eq!(c.api.public_url, "https://abc.example.net");
        assert_eq!(c.api.connect.relay_url, "wss://abc.example.net/cr");
        assert_eq!(c.api.connect.stream_url, "wss://abc.example.net/media");

        // The API's URL alone, one process: the bridge is on the same port and URL.
        let c = Config::load_with_env(
            None,
            env(&[("VOXBRIDGE__API__PUBLIC_URL", "https://abc.example.net")]),
        )
        .unwrap();
        assert_eq!(c.media.public_url, "wss://abc.example.net");
        assert_eq!(c.api.connect.stream_url, "wss://abc.example.net/media");

        // PUBLIC_URL in either form: the API's is https://, the bridge's wss://.
        let c =
            Config::load_with_env(None, env(&[("PUBLIC_URL", "wss://abc.example.net")])).unwrap();
        assert_eq!(c.api.public_url, "https://abc.example.net");
        assert_eq!(c.media.public_url, "wss://abc.example.net");

        // Two processes: the API's URL says nothing about the bridge's.
        let c = Config::load_with_env(
            None,
            env(&[
                ("VOXBRIDGE__API__PUBLIC_URL", "https://api.example.net"),
                ("VOXBRIDGE__API__IN_SERVE", "false"),
                ("VOXBRIDGE__MEDIA__LISTEN", "0.0.0.0:9000"),
            ]),
        )
        .unwrap();
        assert_eq!(c.media.public_url, "");
        assert_eq!(c.api.connect.relay_url, "wss://localhost:9000/relay");
        assert_eq!(c.api.public_url, "https://api.example.net");

        // Nothing set: this machine, on the port of the listener the API is on.
        let c = Config::load_with_env(None, env(&[])).unwrap();
        assert_eq!(c.api.public_url, "http://localhost:8080");
        assert_eq!(c.api.connect.relay_url, "wss://localhost:8080/relay");
        let c = Config::load_with_env(None, env(&[("VOXBRIDGE__API__IN_SERVE", "false")])).unwrap();
        assert_eq!(c.api.public_url, "http://localhost:8081");

        // What is set explicitly is kept.
        let c = Config::load_with_env(
            None,
            env(&[
                ("PUBLIC_URL", "https://abc.example.net"),
                (
                    "VOXBRIDGE__API__CONNECT__RELAY_URL",
                    "wss://other.example.net/relay",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(c.api.connect.relay_url, "wss://other.example.net/relay");
    }

    #[test]
    fn machine_only_urls_are_named_unless_twilio_is_simulated() {
        let c = Config::load_with_env(None, env(&[])).unwrap();
        let keys: Vec<_> = c
            .local_only_urls(true, true)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            keys,
            [
                "media.public_url",
                "api.public_url",
                "api.connect.relay_url"
            ]
        );
        let c = Config::load_with_env(
            None,
            env(&[("VOXBRIDGE__MEDIA__PUBLIC_URL", "wss://192.168.1.20:8080")]),
        )
        .unwrap();
        assert_eq!(c.local_only_urls(true, false).len(), 1);
        let c =
            Config::load_with_env(None, env(&[("PUBLIC_URL", "https://abc.example.net")])).unwrap();
        assert!(c.local_only_urls(true, true).is_empty());
        let c = Config::load_with_env(
            None,
            env(&[(
                "VOXBRIDGE__API__TWILIO__REST_BASE_URL",
                "http://127.0.0.1:9999",
            )]),
        )
        .unwrap();
        assert!(c.local_only_urls(true, true).is_empty(), "offline run");
        assert!(is_local_url("http://[::1]:80"));
        assert!(is_local_url("wss://10.1.2.3"));
        assert!(!is_local_url("wss://8.8.8.8"));
    }
}
