//! Why writing to Twilio stopped. Both drivers write from their own task through an
//! [`crate::outbox::Outbox`]; the relay driver's writer task is gone.

use std::time::Duration;

/// Why writing to the socket stopped (the media and relay drivers' outbox).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WriteError {
    /// A write did not complete within `send_timeout`: the peer is not reading.
    #[error("write to Twilio timed out after {0:?}")]
    Timeout(Duration),
    /// The socket failed.
    #[error("socket write failed: {0}")]
    Socket(String),
}
