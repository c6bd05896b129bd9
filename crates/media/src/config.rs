//! `[media]` configuration: the WebSocket endpoint, its security, its limits and the
//! per-call session settings.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use voxbridge_config::Secret;
use voxbridge_session::SessionConfig;

/// Settings of the Media Streams bridge. `Default` gives the production defaults.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Address the binary binds the media listener to. Default `0.0.0.0:8080`.
    pub listen: SocketAddr,
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
    /// alike). Default 5000 ms.
    pub send_timeout_ms: u64,
    /// Frames that may wait per call (or relay session) for a socket that is not taking them.
    /// While full, the driver takes no more output and
    /// waits, within `send_timeout_ms`, for room. Default 64 (about 1.3 s of 20 ms frames;
    /// the session keeps only ~100 ms ahead).
    pub send_queue_frames: usize,
    /// After shutdown is requested, how long live calls may continue before each is ended
    /// with close 1001. Default 30000 ms.
    pub drain_timeout_ms: u64,
    /// Largest WebSocket message accepted from Twilio, in bytes. Larger messages (up to a
    /// small margin, which the WebSocket layer enforces) count as bad messages; anything
    /// beyond the margin fails the socket at the protocol layer. Default 65536.
    pub max_message_bytes: usize,
    /// Path of the ConversationRelay WebSocket route (served by `voxbridge serve` with the
    /// screening agent). Default `/relay`.
    pub relay_path: String,
    /// ConversationRelay: how long Twilio is assumed to take to speak one word of bot text
    /// (ms). The silence timer starts, and `end` is sent, once a turn has had this long per
    /// word to play (sooner when Twilio reports `agentSpeaking: off`). Default 400 (150 words
    /// per minute).
    pub relay_speech_ms_per_word: u64,
    /// Agent used when the stream's `start.customParameters` has no `agent`. Default `echo`.
    pub default_agent: String,
    /// Rate (Hz) caller audio is resampled to for the VAD and the brain: 8000, 16000, 24000
    /// or 48000. Default 16000.
    pub pipeline_rate: u32,
    /// How far ahead of Twilio's playout position bot audio may be sent. Default 100 ms.
    pub playout_lead_ms: u64,
    /// Caller speech needed before it counts (also the barge-in threshold). Default 200 ms.
    pub min_speech_ms: u64,
    /// Silence that ends a caller utterance. Default 600 ms.
    pub hangover_ms: u64,
    /// Whether caller speech interrupts the bot. Default `true`.
    pub barge_in: bool,
    /// Consecutive bad messages before the call is closed (1007/1008). Default 10.
    pub max_consecutive_errors: u32,
    /// Time allowed from socket open to Twilio's `start`. Default 10000 ms.
    pub start_timeout_ms: u64,
    /// Silence from Twilio (no message at all) that means the peer is gone. Default 10000 ms.
    pub idle_timeout_ms: u64,
    /// Hard cap on a call's length. Default 3600000 ms (1 h).
    pub max_call_duration_ms: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        let session = SessionConfig::default();
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            public_url: String::new(),
            media_path: "/media".to_owned(),
            auth_token: Secret::default(),
            insecure_skip_signature: false,
            send_timeout_ms: 5000,
            send_queue_frames: 64,
            drain_timeout_ms: 30_000,
            max_message_bytes: voxbridge_session::MAX_MESSAGE_SIZE,
            relay_path: "/relay".to_owned(),
            relay_speech_ms_per_word: 400,
            default_agent: "echo".to_owned(),
            pipeline_rate: session.pipeline_rate,
            playout_lead_ms: millis(session.playout_lead),
            min_speech_ms: millis(session.min_speech),
            hangover_ms: millis(session.hangover),
            barge_in: session.barge_in,
            max_consecutive_errors: session.max_consecutive_errors,
            start_timeout_ms: millis(session.start_timeout),
            idle_timeout_ms: millis(session.idle_timeout),
            max_call_duration_ms: millis(session.max_call_duration),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl fmt::Debug for MediaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaConfig")
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("media_path", &self.media_path)
            .field("auth_token", &self.auth_token)
            .field("insecure_skip_signature", &self.insecure_skip_signature)
            .field("send_timeout_ms", &self.send_timeout_ms)
            .field("send_queue_frames", &self.send_queue_frames)
            .field("drain_timeout_ms", &self.drain_timeout_ms)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("relay_path", &self.relay_path)
            .field("relay_speech_ms_per_word", &self.relay_speech_ms_per_word)
            .field("default_agent", &self.default_agent)
            .field("pipeline_rate", &self.pipeline_rate)
            .field("playout_lead_ms", &self.playout_lead_ms)
            .field("min_speech_ms", &self.min_speech_ms)
            .field("hangover_ms", &self.hangover_ms)
            .field("barge_in", &self.barge_in)
            .field("max_consecutive_errors", &self.max_consecutive_errors)
            .field("start_timeout_ms", &self.start_timeout_ms)
            .field("idle_timeout_ms", &self.idle_timeout_ms)
            .field("max_call_duration_ms", &self.max_call_duration_ms)
            .finish()
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
    /// The per-call session settings these keys map to.
    pub fn session_config(&self) -> SessionConfig {
        let ms = Duration::from_millis;
        SessionConfig {
            pipeline_rate: self.pipeline_rate,
            playout_lead: ms(self.playout_lead_ms),
            min_speech: ms(self.min_speech_ms),
            hangover: ms(self.hangover_ms),
            barge_in: self.barge_in,
            max_consecutive_errors: self.max_consecutive_errors,
            start_timeout: ms(self.start_timeout_ms),
            idle_timeout: ms(self.idle_timeout_ms),
            max_call_duration: ms(self.max_call_duration_ms),
            ..SessionConfig::default()
        }
    }

    /// `send_timeout_ms` as a duration.
    pub fn send_timeout(&self) -> Duration {
        Duration::from_millis(self.send_timeout_ms)
    }

    /// `drain_timeout_ms` as a duration.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }

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
        if self.send_timeout_ms == 0 {
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
        self.session_config().validate().map_err(|e| ConfigError {
            key: session_key(e.field),
            problem: e.to_string(),
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

/// The `[media]` key for a `SessionConfig` field.
fn session_key(field: &str) -> &'static str {
    match field {
        "pipeline_rate" => "pipeline_rate",
        "playout_lead" => "playout_lead_ms",
        "min_speech" => "min_speech_ms",
        "hangover" => "hangover_ms",
        "max_consecutive_errors" => "max_consecutive_errors",
        "start_timeout" => "start_timeout_ms",
        "idle_timeout" => "idle_timeout_ms",
        "max_call_duration" => "max_call_duration_ms",
        _ => "session",
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
        assert_eq!(c.send_timeout_ms, 5000);
        assert_eq!(c.drain_timeout_ms, 30_000);
        assert_eq!(c.max_message_bytes, 65_536);
        assert_eq!(c.default_agent, "echo");
        assert_eq!(c.relay_path, "/relay");
        assert_eq!(c.relay_speech_ms_per_word, 400);
        assert!(!c.insecure_skip_signature);
        assert_eq!(c.session_config(), SessionConfig::default());
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
            pipeline_rate: 11_025,
            ..valid()
        };
        assert_eq!(bad_rate.validate().unwrap_err().key, "pipeline_rate");
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
        assert_eq!(c.send_timeout_ms, 250);
        assert_eq!(c.public_base().expect("valid url"), "wss://x.example.com");
        assert!(toml::from_str::<MediaConfig>("sned_timeout_ms = 1\n").is_err());
    }
}
