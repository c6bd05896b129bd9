//! Sans-IO Twilio protocols for voxbridge. No tokio, no sockets, no clock: every type here
//! turns bytes into typed values and back, so the async shells (media, api, sim) stay thin and
//! this crate is tested and benchmarked alone.
//!
//! - [`media`]: Media Streams WebSocket messages, both directions, allocation-free `media` path.
//! - [`relay`]: ConversationRelay WebSocket messages, both directions, with outbound validation.
//! - [`twiml`]: TwiML builder (`<Say>`, `<Dial>`, `<Connect><Stream>`,
//!   `<Connect><ConversationRelay>`, ...), with correct XML escaping.
//! - [`signature`]: compute and validate `X-Twilio-Signature` (form, JSON and WebSocket).
//! - [`webhook`]: typed webhook payloads (call status, AMD, recordings, relay session end, SMS).
//! - [`messaging`]: SMS segments and encodings, recipients' local time, messaging error codes.
//! - [`sid`], [`e164`] and [`call`]: identifiers, phone numbers and call vocabulary as types.
//!
//! The wire facts come from `shared/reference/twilio-protocols.md`, which cites the Twilio docs
//! and SDK sources for each one; each module cites the Twilio page it implements.

pub mod call;
pub mod e164;
pub mod media;
pub mod messaging;
pub mod relay;
pub mod sid;
pub mod signature;
pub mod twiml;
pub mod webhook;

pub use e164::{Address, E164, E164Error};
pub use signature::{RequestValidator, SignatureError};
#[cfg(feature = "rest")]
pub mod rest;
