//! Sans-IO audio for telephone calls. No tokio, no clock: every function takes samples in and
//! hands samples out; time is counted in samples.
//!
//! - [`mulaw`]: G.711 mu-law, Twilio Media Streams' wire format (ITU-T G.711).
//! - [`resample`]: streaming rational resampler (8/16/24/48/22.05 kHz) over rubato.
//! - [`vad`]: energy-based voice activity detector with an adaptive noise floor.
//! - [`opus`]: 20 ms Opus frames with packet-loss concealment (RFC 6716, via libopus).
//! - [`ogg_opus`]: Ogg Opus recording writer and push-based stream reader (RFC 7845, RFC 3533).
//! - [`wav`]: WAV read/write for fixtures and tools.
//!
//! Slice-processing functions append to a caller-provided `Vec` so hot paths reuse buffers.

pub mod mulaw;
pub mod ogg_opus;
pub mod opus;
pub mod resample;
pub mod vad;
pub mod wav;
