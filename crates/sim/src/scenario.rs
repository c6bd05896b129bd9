//! Scripted candidates: what the simulated caller says and does, and when.
//!
//! A scenario is a TOML file (`config/scenarios/*.toml`):
//!
//! ```toml
//! name = "happy-path"
//! description = "Answers every question; qualifies."
//! answered_by = "human"          # async AMD result; machine_end_beep etc. for voicemail
//!
//! [[step]]                        # one per caller action, in order
//! trigger = "bot_done"            # start | bot_done (default) | barge_in
//! delay_ms = 700                  # think time after the trigger (barge_in: ms into the turn)
//! say = "Yes, I am."              # what the caller says (relay: the prompt text)
//! audio = "tests/data/candidate/yes.wav"  # Media Streams: the recording of it (any rate)
//! # or: dtmf = "1" | silence = true (let the bot's turn pass) | hangup = true
//! ```
//!
//! [`Director`] runs the steps against call events on time passed in (microseconds since the
//! call connected); the Media Streams and ConversationRelay callers feed it their events.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use voxbridge_audio::resample::StreamResampler;

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not valid scenario TOML.
    #[error("scenario {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A step's audio file could not be read or converted.
    #[error("scenario step {step}: audio {path}: {message}")]
    Audio {
        /// 1-based step number.
        step: usize,
        /// The audio file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// When a step fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// `delay_ms` after the call connected.
    Start,
    /// `delay_ms` after the bot finished a turn (the default).
    #[default]
    BotDone,
    /// `delay_ms` into the bot's next turn: the caller talks over the bot.
    BargeIn,
}

/// A step as written in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// When the step fires.
    #[serde(default)]
    pub trigger: Trigger,
    /// Delay after the trigger, in ms.
    #[serde(default)]
    pub delay_ms: u64,
    /// What the caller says.
    pub say: Option<String>,
    /// A recording of `say` for Media Streams (path relative to the scenario file's
    /// directory or the working directory).
    pub audio: Option<PathBuf>,
    /// DTMF digits to press.
    pub dtmf: Option<String>,
    /// Let this bot turn pass without answering.
    #[serde(default)]
    pub silence: bool,
    /// Hang up.
    #[serde(default)]
    pub hangup: bool,
}

/// A scenario file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSpec {
    /// Short name.
    pub name: String,
    /// What the scenario exercises.
    #[serde(default)]
    pub description: String,
    /// Async AMD result posted for the call (`human` when absent).
    pub answered_by: Option<String>,
    /// When the AMD result is posted, ms after the answer. Default 1200.
    pub amd_delay_ms: Option<u64>,
    /// The call is never answered: after ringing it ends with this status, `no-answer`, `busy`
    /// or `failed` (a missed screening call, which the API retries).
    pub unanswered: Option<String>,
    /// The steps, in order.
    #[serde(default, rename = "step")]
    pub steps: Vec<StepSpec>,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Speak: the text (relay prompt, transcript) and, for Media Streams, mu-law 8 kHz audio.
    Say {
        /// The words.
        text: String,
        /// The recording as mu-law 8 kHz, shared between calls.
        audio: Option<Arc<[u8]>>,
    },
    /// Press keys.
    Dtmf(String),
    /// Let the bot's turn pass.
    Silence,
    /// Hang up.
    Hangup,
}

/// A step ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// When it fires.
    pub trigger: Trigger,
    /// Delay after the trigger, in microseconds.
    pub delay_us: u64,
    /// What it does.
    pub action: Action,
}

/// A loaded scenario, cheap to clone (audio is shared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    /// Short name.
    pub name: String,
    /// Async AMD result (`human` by default).
    pub answered_by: String,
    /// When AMD reports, ms after the answer.
    pub amd_delay_ms: u64,
    /// The final status of a call never answered (`no-answer`, `busy`, `failed`).
    pub unanswered: Option<&'static str>,
    /// The steps.
    pub steps: Vec<Step>,
}

/// Reads a WAV at any rate and returns it as mu-law 8 kHz.
pub fn load_mulaw_8k(path: &Path) -> Result<Vec<u8>, String> {
    let (pcm, rate) = voxbridge_audio::wav::read_wav(path).map_err(|e| e.to_string())?;
    let pcm = if rate == 8000 {
        pcm
    } else {
        let mut resampler = StreamResampler::new(rate, 8000).map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(pcm.len() * 8000 / rate as usize + 256);
        resampler.process(&pcm, &mut out);
        resampler.flush(&mut out);
        // Drop the resampler's delay so the clip starts where the recording starts.
        let delay = resampler.delay_samples().min(out.len());
        out.drain(..delay);
        out
    };
    let mut mulaw = Vec::with_capacity(pcm.len());
    voxbridge_audio::mulaw::encode(&pcm, &mut mulaw);
    Ok(mulaw)
}

impl Scenario {
    /// Loads a scenario file; `audio` paths are tried relative to the file's directory, then
    /// to the working directory.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|e| match e {
            ScenarioError::Parse { message, .. } => ScenarioError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses scenario TOML; `audio` paths are resolved against `base`, then the working
    /// directory.
    pub fn parse(text: &str, base: &Path) -> Result<Self, ScenarioError> {
        let spec: ScenarioSpec = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        Self::from_spec(spec, base)
    }

    /// Builds a scenario from its parsed form, loading audio.
    pub fn from_spec(spec: ScenarioSpec, base: &Path) -> Result<Self, ScenarioError> {
        let unanswered = match spec.unanswered.as_deref() {
            None => None,
            Some("no-answer") => Some("no-answer"),
            Some("busy") => Some("busy"),
            Some("failed") => Some("failed"),
            Some(other) => {
                return Err(ScenarioError::Parse {
                    path: PathBuf::new(),
                    message: format!("unanswered must be no-answer, busy or failed, got {other:?}"),
                });
            }
        };
        let mut steps = Vec::with_capacity(spec.steps.len());
        for (i, step) in spec.steps.into_iter().enumerate() {
            let n = i + 1;
            let chosen = usize::from(step.say.is_some())
                + usize::from(step.dtmf.is_some())
                + usize::from(step.silence)
                + usize::from(step.hangup);
            if chosen != 1 {
                return Err(ScenarioError::Parse {
                    path: PathBuf::new(),
                    message: format!(
                        "step {n}: give exactly one of say, dtmf, silence = true, hangup = true"
                    ),
                });
            }
            let action = if let Some(text) = step.say {
                let audio = match step.audio {
                    None => None,
                    Some(audio) => {
                        let candidates = [base.join(&audio), audio.clone()];
                        let found = candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
                            ScenarioError::Audio {
                                step: n,
                                path: audio.clone(),
                                message: "file not found (run scripts/gen-candidate-audio.sh)"
                                    .to_owned(),
                            }
                        })?;
                        let mulaw =
                            load_mulaw_8k(found).map_err(|message| ScenarioError::Audio {
                                step: n,
                                path: found.clone(),
                                message,
                            })?;
                        Some(Arc::from(mulaw))
                    }
                };
                Action::Say { text, audio }
            } else if let Some(digits) = step.dtmf {
                if digits.is_empty()
                    || !digits
                        .chars()
                        .all(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D'))
                {
                    return Err(ScenarioError::Parse {
                        path: PathBuf::new(),
                        message: format!("step {n}: dtmf must be digits 0-9, *, #, A-D"),
                    });
                }
                Action::Dtmf(digits)
            } else if step.silence {
                Action::Silence
            } else {
                Action::Hangup
            };
            steps.push(Step {
                trigger: step.trigger,
                delay_us: step.delay_ms * 1000,
                action,
            });
        }
        Ok(Self {
            name: spec.name,
            answered_by: spec.answered_by.unwrap_or_else(|| "human".to_owned()),
            amd_delay_ms: spec.amd_delay_ms.unwrap_or(1200),
            unanswered,
            steps,
        })
    }
}

/// Runs a scenario's steps against call events. Sans-IO: time is passed in.
#[derive(Debug, Clone)]
pub struct Director {
    steps: Arc<[Step]>,
    next: usize,
    /// When the current step's trigger happened.
    armed_at: Option<u64>,
    bot_speaking: bool,
}

impl Director {
    /// A director at the first step.
    pub fn new(steps: Arc<[Step]>) -> Self {
        Self {
            steps,
            next: 0,
            armed_at: None,
            bot_speaking: false,
        }
    }

    fn current(&self) -> Option<&Step> {
        self.steps.get(self.next)
    }

    fn arm_if(&mut self, trigger: Trigger, now_us: u64) {
        if self.armed_at.is_none() && self.current().is_some_and(|s| s.trigger == trigger) {
            self.armed_at = Some(now_us);
        }
    }

    /// The call connected (`start`/`setup` sent).
    pub fn handle_connected(&mut self, now_us: u64) {
        self.arm_if(Trigger::Start, now_us);
    }

    /// The bot started a turn.
    pub fn handle_bot_started(&mut self, now_us: u64) {
        self.bot_speaking = true;
        self.arm_if(Trigger::BargeIn, now_us);
    }

    /// The bot finished a turn.
    pub fn handle_bot_done(&mut self, now_us: u64) {
        self.bot_speaking = false;
        self.arm_if(Trigger::BotDone, now_us);
    }

    /// Whether the bot is in a turn (as last reported).
    pub fn bot_speaking(&self) -> bool {
        self.bot_speaking
    }

    /// The action due at `now_us`, if any; the director moves to the next step. A `silence`
    /// step is consumed here and never returned.
    pub fn poll(&mut self, now_us: u64) -> Option<Action> {
        loop {
            let step = self.current()?;
            let armed = self.armed_at?;
            if now_us < armed + step.delay_us {
                return None;
            }
            let action = step.action.clone();
            self.next += 1;
            self.armed_at = None;
            if action != Action::Silence {
                return Some(action);
            }
        }
    }

    /// When the next action is due, if its trigger has happened.
    pub fn next_due_us(&self) -> Option<u64> {
        Some(self.armed_at? + self.current()?.delay_us)
    }

    /// All steps have run.
    pub fn finished(&self) -> bool {
        self.next >= self.steps.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1000;

    fn scenario(text: &str) -> Scenario {
        Scenario::parse(text, Path::new(".")).unwrap()
    }

    #[test]
    fn parses_all_step_kinds_with_defaults() {
        let s = scenario(
            r#"
            name = "t"
            [[step]]
            trigger = "start"
            say = "hello"
            [[step]]
            delay_ms = 500
            dtmf = "1#"
            [[step]]
            silence = true
            [[step]]
            trigger = "barge_in"
            delay_ms = 800
            say = "wait"
            [[step]]
            hangup = true
            "#,
        );
        assert_eq!(s.answered_by, "human");
        assert_eq!(s.steps.len(), 5);
        assert_eq!(s.steps[1].trigger, Trigger::BotDone);
        assert_eq!(s.steps[1].delay_us, 500 * MS);
        assert_eq!(s.steps[1].action, Action::Dtmf("1#".into()));
        assert_eq!(s.steps[3].trigger, Trigger::BargeIn);
        assert_eq!(s.steps[4].action, Action::Hangup);
    }

    #[test]
    fn unanswered_calls_end_with_their_status() {
        assert_eq!(scenario("name = 'x'").unanswered, None);
        assert_eq!(
            scenario("name = 'x'\nunanswered = 'busy'").unanswered,
            Some("busy")
        );
        let shipped = Scenario::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/scenarios/no-answer.toml"
        )))
        .unwrap();
        assert_eq!(shipped.unanswered, Some("no-answer"));
        assert!(Scenario::parse("name = 'x'\nunanswered = 'ringing'", Path::new(".")).is_err());
    }

    #[test]
    fn rejects_ambiguous_steps_unknown_keys_and_bad_digits() {
        for bad in [
            "name='x'\n[[step]]\nsay='a'\nhangup=true",
            "name='x'\n[[step]]\n",
            "name='x'\n[[step]]\nsay='a'\nvolume=3",
            "name='x'\n[[step]]\ndtmf='12x'",
        ] {
            assert!(
                matches!(
                    Scenario::parse(bad, Path::new(".")),
                    Err(ScenarioError::Parse { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            Scenario::parse(
                "name='x'\n[[step]]\nsay='a'\naudio='no/such.wav'",
                Path::new(".")
            ),
            Err(ScenarioError::Audio { step: 1, .. })
        ));
    }

    #[test]
    fn director_fires_steps_on_their_triggers() {
        let s = scenario(
            r#"
            name = "t"
            [[step]]
            delay_ms = 100
            say = "first"
            [[step]]
            silence = true
            [[step]]
            trigger = "barge_in"
            delay_ms = 300
            say = "over you"
            [[step]]
            delay_ms = 50
            hangup = true
            "#,
        );
        let mut d = Director::new(s.steps.into());
        d.handle_connected(0);
        assert_eq!(d.poll(10 * MS), None, "waits for the bot's turn");
        d.handle_bot_started(100 * MS);
        d.handle_bot_done(1000 * MS);
        assert_eq!(d.next_due_us(), Some(1100 * MS));
        assert_eq!(d.poll(1099 * MS), None);
        assert!(matches!(d.poll(1100 * MS), Some(Action::Say { text, .. }) if text == "first"));
        // The silence step lets one bot turn pass.
        d.handle_bot_started(2000 * MS);
        d.handle_bot_done(3000 * MS);
        assert_eq!(d.poll(3000 * MS), None);
        // Barge-in: 300 ms into the next turn.
        d.handle_bot_started(4000 * MS);
        assert!(d.bot_speaking());
        assert!(matches!(d.poll(4300 * MS), Some(Action::Say { text, .. }) if text == "over you"));
        d.handle_bot_done(5000 * MS);
        assert_eq!(d.poll(5049 * MS), None);
        assert_eq!(d.poll(5050 * MS), Some(Action::Hangup));
        assert!(d.finished());
        assert_eq!(d.poll(9000 * MS), None);
    }

    #[test]
    fn loads_audio_at_any_rate_as_mulaw_8k() {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data");
        let s =
            Scenario::parse("name='x'\n[[step]]\nsay='C'\naudio='speech_16k.wav'", &data).unwrap();
        let Action::Say {
            audio: Some(audio), ..
        } = &s.steps[0].action
        else {
            panic!("expected audio");
        };
        let (pcm16k, rate) = voxbridge_audio::wav::read_wav(data.join("speech_16k.wav")).unwrap();
        assert_eq!(rate, 16000);
        let expected = pcm16k.len() / 2;
        assert!(
            audio.len().abs_diff(expected) < 80,
            "{} vs {expected}",
            audio.len()
        );
    }
}
