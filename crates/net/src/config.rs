//! The listener keys every voxbridge service shares, written directly in its section (`[media]`,
//! `[api]`): declared once here, flattened into each service's config struct.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Connection caps and timeouts of one listener. Durations are whole milliseconds (`*_ms`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct ListenerConfig {
    /// Most open TCP connections (HTTP and upgraded WebSocket connections alike); beyond it a new
    /// connection is closed at once. Default 10000.
    pub max_connections: usize,
    /// Most open connections from one IP address; 0 (the default) turns the per-IP cap off
    /// (behind a proxy or NAT every caller shares one address).
    pub max_connections_per_ip: usize,
    /// How long a client has to send a request's header block, counted from the connection's
    /// start or from the first byte of a later request. Key `header_read_timeout_ms`, default
    /// 10000.
    #[serde(rename = "header_read_timeout_ms", with = "voxbridge_config::millis")]
    pub header_read_timeout: Duration,
    /// How long a keep-alive connection may sit idle between requests. Key
    /// `keep_alive_timeout_ms`, default 75000.
    #[serde(rename = "keep_alive_timeout_ms", with = "voxbridge_config::millis")]
    pub keep_alive_timeout: Duration,
    /// How long a request's whole body may take to arrive, from its header block on; then the
    /// request gets 408 and the connection is closed. Key `body_timeout_ms`, default 30000.
    #[serde(rename = "body_timeout_ms", with = "voxbridge_config::millis")]
    pub body_timeout: Duration,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_ip: 0,
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(75),
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// A listener key that cannot work: the key (relative to its section) and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct LimitError {
    /// The key, e.g. `max_connections`.
    pub key: &'static str,
    /// What is wrong and how to fix it.
    pub problem: String,
}

impl ListenerConfig {
    /// Checks every key.
    pub fn validate(&self) -> Result<(), LimitError> {
        let bad = |key, problem: String| Err(LimitError { key, problem });
        if self.max_connections == 0 {
            return bad(
                "max_connections",
                "must be at least 1 (default 10000)".into(),
            );
        }
        if self.max_connections_per_ip > self.max_connections {
            return bad(
                "max_connections_per_ip",
                format!(
                    "{} is above max_connections ({}); 0 turns the per-IP cap off",
                    self.max_connections_per_ip, self.max_connections
                ),
            );
        }
        for (key, value) in [
            ("header_read_timeout_ms", self.header_read_timeout),
            ("keep_alive_timeout_ms", self.keep_alive_timeout),
            ("body_timeout_ms", self.body_timeout),
        ] {
            if value.is_zero() {
                return bad(key, "must be at least 1".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_keys() {
        let c: ListenerConfig = toml::from_str(
            "max_connections = 5\nmax_connections_per_ip = 2\nheader_read_timeout_ms = 100\n\
             keep_alive_timeout_ms = 200\nbody_timeout_ms = 300\n",
        )
        .expect("valid keys");
        assert_eq!(c.max_connections, 5);
        assert_eq!(c.max_connections_per_ip, 2);
        assert_eq!(c.header_read_timeout, Duration::from_millis(100));
        assert_eq!(c.keep_alive_timeout, Duration::from_millis(200));
        assert_eq!(c.body_timeout, Duration::from_millis(300));
        assert_eq!(c.validate(), Ok(()));
        let d = ListenerConfig::default();
        assert_eq!(d.max_connections, 10_000);
        assert_eq!(d.max_connections_per_ip, 0);
        assert_eq!(d.validate(), Ok(()));
    }

    #[test]
    fn validation_names_the_key() {
        let zero = ListenerConfig {
            max_connections: 0,
            ..ListenerConfig::default()
        };
        assert_eq!(zero.validate().unwrap_err().key, "max_connections");
        let per_ip = ListenerConfig {
            max_connections: 10,
            max_connections_per_ip: 11,
            ..ListenerConfig::default()
        };
        assert_eq!(per_ip.validate().unwrap_err().key, "max_connections_per_ip");
        let body = ListenerConfig {
            body_timeout: Duration::ZERO,
            ..ListenerConfig::default()
        };
        assert_eq!(body.validate().unwrap_err().key, "body_timeout_ms");
    }
}
