//! `[media]` configuration: the WebSocket endpoint, its security, its limits and the
//! per-call session settings.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use voxbridge_config::{NoOtherKeys, Secret};
use voxbridge_net::ListenerConfig;
use voxbridge_session::SessionConfig;

/// Settings of the Media Streams bridge (`[media]`): its own keys below, and the per-call
/// session keys of [`SessionConfig`] flattened beside them. Each key is declared once, with
/// its default (`Default`) and its check ([`MediaConfig::validate`]); `config/default.toml`
/// documents them and a test keeps the two equal. Durations are whole milliseconds (`*_ms`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct MediaConfig {
    /// Address the binary binds the media listener to. Default `0.0.0.0:8080`.
    pub listen: SocketAddr,
    /// Address of a separate listener for `GET /metrics` (e.g. `127.0.0.1:9090`), so the
    /// public port does not serve them; empty (the default) serves `/metrics` on `listen`.
    pub metrics_listen: String,
    /// Public base URL Twilio connects to, as written in the TwiML `<Stream url>` minus the
    /// path, e.g. `wss://voice.example.com` (an `https://` URL is accepted and rewritten to
    /// `wss://`). `X-Twilio-Signature` is validated against `public_url + media_path`
    /// (+ the request's query string). Required unless `insecure_skip_signature` is set.
    pub public_url: String,
    /// Path of the Media Streams WebSocket route. Default `/media`.
    pub media_path: String,
    /// Twilio auth token used to validate `X-Twilio-Signature`. Never logged (`Debug` redacts
    /// it). Required unless `insecure_skip_signature` is set.
    pub auth_token: Secret,
    /// Accept upgrades without a valid signature. Development only: a warning is logged at
    /// every start. Default `false`.
    pub insecure_skip_signature: bool,
    /// How long the socket may go without taking any of our frames while some wait: a peer
    /// that does not read for this long ends its call with `SlowPeer` (`/media` and `/relay`
    /// alike). Key `send_timeout_ms`, default 5000.
    #[serde(rename = "send_timeout_ms", with = "voxbridge_config::millis")]
    pub send_timeout: Duration,
    /// Frames that may wait per call (or relay session) for a socket that is not taking them.
    /// While full, the driver takes no more output from the session (it keeps reading the
    /// socket) until the socket takes frames, within `send_timeout_ms`. Default 64 (about
    /// 1.3 s of 20 ms frames; the session keeps only ~100 ms ahead).
    pub send_queue_frames: usize,
    /// After shutdown is requested, how long live calls may continue before each is ended
    /// with close 1001. Key `drain_timeout_ms`, default 30000.
    #[serde(rename = "drain_timeout_ms", with = "voxbridge_config::millis")]
    pub drain_timeout: Duration,
    /// Largest WebSocket message accepted from Twilio, in bytes. Larger messages count as bad
    /// messages. The WebSocket layer refuses, unread, anything beyond a small margin (4 KiB)
    /// over this: such a message counts as a bad message too and ends the call with close 1009,
    /// as the socket cannot go on. Default 65536.
    pub max_message_bytes: usize,
    /// Path of the ConversationRelay WebSocket route (served by `voxbridge serve` with the
    /// screening agent). Default `/relay`.
    pub relay_path: String,
    /// ConversationRelay: how long Twilio is assumed to take to speak one word of bot text.
    /// The silence timer starts, and `end` is sent, once a turn has had this long per word to
    /// play (sooner when Twilio reports `agentSpeaking: off`). Key
    /// `relay_speech_ms_per_word`, default 400 (150 words per minute).
    #[serde(rename = "relay_speech_ms_per_word", with = "voxbridge_config::millis")]
    pub relay_speech_per_word: Duration,
    /// Agent used when the stream's `start.customParameters` has no `agent`. Default `echo`.
    pub default_agent: String,
    /// Most calls at once (Media Streams and ConversationRelay together, counted from the
    /// upgrade): beyond it an upgrade gets 503 and is counted as `max_calls` in
    /// `voxbridge_upgrades_rejected_total`. Default 500.
    pub max_calls: usize,
    /// The listener's connection caps and timeouts (`max_connections`,
    /// `max_connections_per_ip`, `header_read_timeout_ms`, `keep_alive_timeout_ms`,
    /// `body_timeout_ms`), written directly in `[media]`.
    #[serde(flatten)]
    pub listener: ListenerConfig,
    /// The per-call session settings (`pipeline_rate`, `min_speech_ms`, `hangover_ms`, ...),
    /// written directly in `[media]`.
    #[serde(flatten)]
    pub session: SessionConfig,
    /// Rejects keys neither this struct nor [`SessionConfig`] declares.
    #[serde(flatten, skip_serializing)]
    pub other_keys: NoOtherKeys,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            metrics_listen: String::new(),
            public_url: String::new(),
            media_path: "/media".to_owned(),
            auth_token: Secret::default(),
            insecure_skip_signature: false,
            send_timeout: Duration::from_secs(5),
            send_queue_frames: 64,
            drain_timeout: Duration::from_secs(30),
            max_message_bytes: voxbridge_session::MAX_MESSAGE_SIZE,
            relay_path: "/relay".to_owned(),
            relay_speech_per_word: Duration::from_millis(400),
            default_agent: "echo".to_owned(),
            max_calls: 500,
            listener: ListenerConfig::default(),
            session: SessionConfig::default(),
            other_keys: NoOtherKeys,
        }
    }
}

/// A `[media]` setting that cannot work, with the key and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("media.{key}: {problem}")]
pub struct ConfigError {
    /// The offending key.
    pub key: &'static str,
    /// What is wrong and how to fix it.
    pub problem: String,
}

fn bad(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        problem: problem.into(),
    }
}

impl MediaConfig {
    /// The WebSocket layer's hard limit: `max_message_bytes` plus a margin, so a slightly
    /// oversize message is still read (and counted as bad) while a huge one is refused cheaply.
    pub(crate) fn hard_message_limit(&self) -> usize {
        self.max_message_bytes.saturating_add(4096)
    }

    /// Checks every key; the error names the key and the fix. Call before binding sockets.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.media_path.starts_with('/') {
            return Err(bad(
                "media_path",
                format!("{:?} must start with '/', e.g. \"/media\"", self.media_path),
            ));
        }
        if !self.relay_path.starts_with('/') || self.relay_path == self.media_path {
            return Err(bad(
                "relay_path",
                format!(
                    "{:?} must start with '/' and differ from media_path, e.g. \"/relay\"",
                    self.relay_path
                ),
            ));
        }
        if !self.insecure_skip_signature {
            if self.auth_token.is_empty() {
                return Err(bad(
                    "auth_token",
                    "is empty: set the Twilio auth token (or, for local development only, \
                     insecure_skip_signature = true)",
                ));
            }
            self.public_base()?;
        } else if !self.public_url.is_empty() {
            self.public_base()?;
        }
        if self.send_timeout.is_zero() {
            return Err(bad("send_timeout_ms", "must be at least 1 (default 5000)"));
        }
        if self.send_queue_frames == 0 {
            return Err(bad("send_queue_frames", "must be at least 1 (default 64)"));
        }
        if self.max_message_bytes < 1024 {
            return Err(bad(
                "max_message_bytes",
                format!(
                    "{} is too small for a Twilio message (default 65536)",
                    self.max_message_bytes
                ),
            ));
        }
        if self.default_agent.trim().is_empty() {
            return Err(bad(
                "default_agent",
                "is empty; \"echo\" is always available",
            ));
        }
        if self.metrics_address()? == Some(self.listen) {
            return Err(bad(
                "metrics_listen",
                "must differ from listen (leave it empty to serve /metrics on listen)",
            ));
        }
        if self.max_calls == 0 {
            return Err(bad("max_calls", "must be at least 1 (default 500)"));
        }
        self.listener
            .validate()
            .map_err(|e| bad(e.key, e.problem))?;
        self.session.validate().map_err(|e| ConfigError {
            key: e.key,
            problem: format!("{} must be {}", e.value, e.expected),
        })
    }

    /// The separate `/metrics` listener's address, if `metrics_listen` is set.
    pub fn metrics_address(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.metrics_listen.is_empty() {
            return Ok(None);
        }
        self.metrics_listen.parse().map(Some).map_err(|_| {
            bad(
                "metrics_listen",
                format!(
                    "{:?} is not an address such as \"127.0.0.1:9090\"",
                    self.metrics_listen
                ),
            )
        })
    }

    /// `public_url` without a trailing `/`, checked to be an absolute ws(s)/http(s) URL.
    pub(crate) fn public_base(&self) -> Result<String, ConfigError> {
        let parsed = url::Url::parse(&self.public_url).map_err(|e| {
            bad(
                "public_url",
                format!(
                    "{:?} is not an absolute URL ({e}); use the public wss:// base Twilio \
                     connects to, e.g. \"wss://voice.example.com\"",
                    self.public_url
                ),
            )
        })?;
        if !matches!(parsed.scheme(), "wss" | "ws" | "https" | "http") {
            return Err(bad(
                "public_url",
                format!(
                    "scheme {:?} is not wss/ws/https/http; e.g. \"wss://voice.example.com\"",
                    parsed.scheme()
                ),
            ));
        }
        if parsed.query().is_some() {
            return Err(bad("public_url", "must not contain a query string"));
        }
        Ok(self.public_url.trim_end_matches('/').to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> MediaConfig {
        MediaConfig {
            public_url: "wss://voice.example.com".into(),
            auth_token: "secret-token".into(),
            ..MediaConfig::default()
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = MediaConfig::default();
        assert_eq!(c.media_path, "/media");
        assert_eq!(c.send_timeout, Duration::from_secs(5));
        assert_eq!(c.drain_timeout, Duration::from_secs(30));
        assert_eq!(c.max_message_bytes, 65_536);
        assert_eq!(c.default_agent, "echo");
        assert_eq!(c.relay_path, "/relay");
        assert_eq!(c.relay_speech_per_word, Duration::from_millis(400));
        assert_eq!(c.max_calls, 500);
        assert_eq!(c.listener, ListenerConfig::default());
        assert!(!c.insecure_skip_signature);
        assert_eq!(c.session, SessionConfig::default());
    }

    #[test]
    fn debug_redacts_the_auth_token() {
        let text = format!("{:?}", valid());
        assert!(!text.contains("secret-token"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }

    #[test]
    fn validation_names_the_key() {
        assert_eq!(valid().validate(), Ok(()));
        let missing_token = MediaConfig {
            auth_token: Secret::default(),
            ..valid()
        };
        assert_eq!(missing_token.validate().unwrap_err().key, "auth_token");
        let bad_url = MediaConfig {
            public_url: "voice.example.com".into(),
            ..valid()
        };
        assert_eq!(bad_url.validate().unwrap_err().key, "public_url");
        let bad_path = MediaConfig {
            media_path: "media".into(),
            ..valid()
        };
        assert_eq!(bad_path.validate().unwrap_err().key, "media_path");
        let same_paths = MediaConfig {
            relay_path: "/media".into(),
            ..valid()
        };
        assert_eq!(same_paths.validate().unwrap_err().key, "relay_path");
        let bad_rate = MediaConfig {
            session: SessionConfig {
                pipeline_rate: 11_025,
                ..SessionConfig::default()
            },
            ..valid()
        };
        assert_eq!(bad_rate.validate().unwrap_err().key, "pipeline_rate");
        let no_calls = MediaConfig {
            max_calls: 0,
            ..valid()
        };
        assert_eq!(no_calls.validate().unwrap_err().key, "max_calls");
        let no_connections = MediaConfig {
            listener: ListenerConfig {
                max_connections: 0,
                ..ListenerConfig::default()
            },
            ..valid()
        };
        assert_eq!(
            no_connections.validate().unwrap_err().key,
            "max_connections"
        );
        let dev = MediaConfig {
            insecure_skip_signature: true,
            ..MediaConfig::default()
        };
        assert_eq!(dev.validate(), Ok(()));
    }

    #[test]
    fn parses_toml_and_rejects_unknown_keys() {
        let c: MediaConfig = toml::from_str(
            "public_url = \"wss://x.example.com/\"\nauth_token = \"t\"\nsend_timeout_ms = 250\n",
        )
        .expect("valid keys");
        assert_eq!(c.send_timeout, Duration::from_millis(250));
        assert_eq!(c.public_base().expect("valid url"), "wss://x.example.com");
        let err = toml::from_str::<MediaConfig>("sned_timeout_ms = 1\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown key `sned_timeout_ms`"),
            "{err}"
        );
    }

    #[test]
    fn session_keys_sit_beside_the_media_keys() {
        let c: MediaConfig = toml::from_str(
            "listen = \"127.0.0.1:9000\"\nhangover_ms = 900\nbarge_in = false\n\
             pipeline_rate = 8000\nmax_queued_audio_ms = 5000\n",
        )
        .expect("valid keys");
        assert_eq!(c.listen.port(), 9000);
        let limits: MediaConfig =
            toml::from_str("max_calls = 7\nmax_connections = 9\nheader_read_timeout_ms = 50\n")
                .expect("listener keys in [media]");
        assert_eq!(limits.max_calls, 7);
        assert_eq!(limits.listener.max_connections, 9);
        assert_eq!(
            limits.listener.header_read_timeout,
            Duration::from_millis(50)
        );
        assert_eq!(c.session.hangover, Duration::from_millis(900));
        assert!(!c.session.barge_in);
        assert_eq!(c.session.pipeline_rate, 8000);
        assert_eq!(c.session.max_queued_audio, Duration::from_secs(5));
        assert_eq!(c.session.min_speech, SessionConfig::default().min_speech);
        let err = toml::from_str::<MediaConfig>("hangover_ms = \"long\"\n").unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
        let bad = MediaConfig {
            session: SessionConfig {
                hangover: Duration::from_millis(5),
                ..SessionConfig::default()
            },
            ..valid()
        };
        let err = bad.validate().unwrap_err();
        assert_eq!(err.key, "hangover_ms");
        assert_eq!(
            err.to_string(),
            "media.hangover_ms: 5ms must be 10 ms ..= 10 s"
        );
    }
}
