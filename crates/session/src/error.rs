//! Typed errors for bad input, and the WebSocket close code each one earns when a run of them
//! ends the session.
//!
//! Close codes (RFC 6455 section 7.4.1), chosen by the error that completes the run of
//! `max_consecutive_errors` bad messages:
//!
//! | error | code | why |
//! |---|---|---|
//! | not JSON, wrong JSON types, missing fields, bad SIDs, bad base64, unsupported media format, unknown track, bad DTMF digit | **1007** invalid frame payload data | the bytes are not a valid message of their kind |
//! | unknown event, wrong-direction event (`clear`), binary frame, oversize frame (> 64 KiB), any message other than `connected`/`stop` before `start`, a second `start`, a `streamSid` other than the stream's, a mark echo we never sent | **1008** policy violation | a well-formed frame that the Media Streams protocol does not allow here |
//! | a message the WebSocket layer refused ([`SessionError::TooBig`]) | **1009** message too big | ends the session at once, whatever the run: the socket cannot go on |
//!
//! Errors caused by the brain ([`SessionError::BrainAudio`]) are logged and skipped but never
//! count toward the run: the peer did nothing wrong.

use voxbridge_audio::resample::ResampleError;
use voxbridge_twilio::media::MediaStreamError;

/// WebSocket close code 1007: invalid frame payload data.
pub const CLOSE_INVALID_PAYLOAD: u16 = crate::close::INVALID_PAYLOAD;
/// WebSocket close code 1008: policy violation.
pub const CLOSE_POLICY: u16 = crate::close::POLICY;

/// Why an input was rejected. Every variant is recoverable: the input is skipped and the session
/// carries on, unless it completes a run of `max_consecutive_errors` bad Twilio messages.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The text frame is not a valid Media Streams message (JSON, fields, SIDs, base64, format).
    #[error("invalid Media Streams message: {0}")]
    Decode(#[from] MediaStreamError),
    /// A binary WebSocket frame; Twilio only sends text.
    #[error("binary frame of {len} bytes; Media Streams only uses text frames")]
    Binary {
        /// Frame length in bytes.
        len: usize,
    },
    /// A frame over [`MAX_MESSAGE_SIZE`](crate::MAX_MESSAGE_SIZE).
    #[error(
        "frame of {len} bytes exceeds the {} byte limit",
        crate::MAX_MESSAGE_SIZE
    )]
    Oversize {
        /// Frame length in bytes.
        len: usize,
    },
    /// A message beyond the WebSocket layer's hard limit, refused unread ([`crate::Input::TooBig`]).
    #[error("message of {len} bytes is beyond what the WebSocket layer accepts")]
    TooBig {
        /// Message length in bytes, as the frame header declared it.
        len: usize,
    },
    /// A `media`, `dtmf` or `mark` message before `start`.
    #[error("{event} message before start")]
    BeforeStart {
        /// The event that came too early.
        event: &'static str,
    },
    /// A second `start` on the same stream.
    #[error("second start message on one stream")]
    DuplicateStart,
    /// A message for a different stream than the one `start` announced.
    #[error("message for stream {found:?}, but this socket carries {expected:?}")]
    StreamSidMismatch {
        /// The stream from `start`.
        expected: String,
        /// The stream in the message (at most 64 characters).
        found: String,
    },
    /// A `mark` echo whose name this session never sent (or already saw echoed).
    #[error("mark echo {name:?} matches no mark this session sent")]
    UnknownMark {
        /// The echoed name (at most 64 characters).
        name: String,
    },
    /// Brain audio at a sample rate the outbound resampler cannot convert to 8 kHz.
    #[error("brain audio at {sample_rate} Hz cannot be converted to 8 kHz: {source}")]
    BrainAudio {
        /// The rate the brain gave.
        sample_rate: u32,
        /// Why the resampler refused it.
        #[source]
        source: ResampleError,
    },
}

impl SessionError {
    /// The close code this error earns when it completes a run of bad messages, or `None` for
    /// errors that do not count toward the run (brain-side errors).
    pub fn close_code(&self) -> Option<u16> {
        match self {
            Self::Decode(e) => Some(match e {
                MediaStreamError::UnknownEvent(_) | MediaStreamError::WrongDirection(_) => {
                    CLOSE_POLICY
                }
                _ => CLOSE_INVALID_PAYLOAD,
            }),
            Self::Binary { .. }
            | Self::Oversize { .. }
            | Self::BeforeStart { .. }
            | Self::DuplicateStart
            | Self::StreamSidMismatch { .. }
            | Self::UnknownMark { .. } => Some(CLOSE_POLICY),
            Self::TooBig { .. } => Some(crate::close::MESSAGE_TOO_BIG),
            Self::BrainAudio { .. } => None,
        }
    }

    /// A short stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Decode(e) => match e {
                MediaStreamError::Json(_) => "json",
                MediaStreamError::MissingEvent => "missing_event",
                MediaStreamError::UnknownEvent(_) => "unknown_event",
                MediaStreamError::WrongDirection(_) => "wrong_direction",
                MediaStreamError::MissingStreamSid(_) | MediaStreamError::MissingField { .. } => {
                    "missing_field"
                }
                MediaStreamError::InvalidSid { .. } => "invalid_sid",
                MediaStreamError::Base64(_) => "base64",
                MediaStreamError::UnsupportedMediaFormat { .. } => "media_format",
                MediaStreamError::UnknownTrack(_) => "unknown_track",
                MediaStreamError::InvalidDigit(_) => "dtmf_digit",
            },
            Self::Binary { .. } => "binary",
            Self::Oversize { .. } => "oversize",
            Self::TooBig { .. } => "too_big",
            Self::BeforeStart { .. } => "before_start",
            Self::DuplicateStart => "duplicate_start",
            Self::StreamSidMismatch { .. } => "stream_sid_mismatch",
            Self::UnknownMark { .. } => "unknown_mark",
            Self::BrainAudio { .. } => "brain_audio",
        }
    }
}

/// Why a [`SessionConfig`](crate::SessionConfig) is unusable.
#[derive(Debug, thiserror::Error)]
#[error("{key} = {value}: must be {expected}")]
pub struct ConfigError {
    /// The offending configuration key, as written in `[media]` (e.g. `hangover_ms`).
    pub key: &'static str,
    /// Its value, printed.
    pub value: String,
    /// What is accepted.
    pub expected: &'static str,
}

/// At most 64 characters of untrusted text, for error values.
pub(crate) fn excerpt(text: &str) -> String {
    text.chars().take(64).collect()
}
