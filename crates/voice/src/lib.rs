//! Voice brains of voxbridge: what runs a Media Streams call once the session has turned the
//! caller's audio into utterances (or raw mu-law).
//!
//! - [`pipeline`]: the `voice` agent, caller utterance -> ASR -> the call's dialog ->
//!   sentences ([`chunker`]) -> TTS -> paced audio, with barge-in, retries, spoken fallbacks
//!   and a per-turn latency breakdown ([`voxbridge_brain::turn`]).
//! - [`realtime_brain`]: the `realtime` agent, one speech-to-speech session per call.
//! - [`agents`]: which agents a process offers, from the configured providers (what
//!   `voxbridge serve` runs).
//! - [`assistant`]: a free-form LLM dialog (the `assistant` agent) for deployments without a
//!   screening script.
//!
//! Dependencies point one way: `voxbridge-brain` (the interface) <- `voxbridge-speech`
//! (providers) <- `voxbridge-screening` (the recruiting domain) <- this crate. The media shell
//! depends on `voxbridge-brain` alone and gets these brains as `Arc<dyn BrainFactory>`.

pub mod agents;
pub mod assistant;
pub mod chunker;
pub mod pipeline;
pub mod realtime_brain;
