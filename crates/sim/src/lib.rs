//! voxbridge's Twilio simulator and load generator: plays Twilio's side of a call over real
//! sockets so the bridge and the companion API can be tested, demonstrated and load-tested
//! with no account and no network.
//!
//! - [`twilio_api`]: a stand-in for Twilio's REST `Calls.json` (Basic auth, Twilio's JSON and
//!   error shapes) whose calls are "dialed": signed status callbacks with `SequenceNumber`,
//!   async AMD, a signed fetch of the answer TwiML, then the call itself.
//! - [`messaging`]: a stand-in for Twilio's `Messages.json` (its errors, signed delivery
//!   callbacks) and a phone that texts in (signed incoming-message webhooks).
//! - [`media_call`]: the Media Streams caller (`connected`, `start`, 20 ms mu-law frames in
//!   real time, a playout buffer that echoes marks when playback reaches them, `clear`,
//!   `dtmf`, `stop`), recording what the caller heard.
//! - [`relay_call`]: the ConversationRelay caller (`setup`, timed `prompt`s, `interrupt`,
//!   `dtmf`; consumes `text` tokens and `end`).
//! - [`scenario`]: scripted candidates from TOML files; [`playout`]: Twilio's outbound buffer
//!   (sans-IO); [`twiml`]: reading the TwiML we serve.
//! - [`loadtest`]: N concurrent calls with ramp-up, latency histograms ([`stats`]), server
//!   CPU/RSS sampling and a JSON + SVG report ([`report`]); [`stamped`]: sockets that keep
//!   the kernel's receive time, so the generator's scheduling delay is not counted as the
//!   bridge's lateness.
//!
//! Sans-IO where it matters (playout model, scenario director, histograms are driven with
//! time passed in); the async shells are thin `select!` loops, one task per call.

pub mod call;
pub mod loadtest;
pub mod media_call;
pub mod messaging;
pub mod playout;
pub mod relay_call;
pub mod report;
pub mod scenario;
pub mod stamped;
pub mod stats;
pub mod twilio_api;
pub mod twiml;
pub mod ws;

pub use call::{CallEnd, CallOutcome, Speaker, TranscriptLine, TranscriptTap};
pub use scenario::{Action, Director, Scenario, Step, Trigger};
pub use stats::{Histogram, Recorder, Summary};
