//! Which agents a process offers: the screening catalog for ConversationRelay and the voice
//! pipeline, and the `/media` agents the configured providers allow.
//!
//! - `echo` always.
//! - `screening` (the screening interview through ASR -> dialog -> TTS: the same scripts,
//!   answer understanding, DTMF answers and stored result as `/relay`) when `[speech]` has an
//!   ASR and a TTS; `voice` is another name for it (its calls are counted under `screening`
//!   in `/metrics`).
//! - `assistant` (a free-form LLM conversation) when it also has an LLM.
//! - `realtime` (one speech-to-speech session per call, mu-law in and out; the screening
//!   scripts through the model's tools unless `speech.realtime.mode = "instructions"`) when
//!   `speech.speech_to_speech` is set.
//!
//! An agent whose providers are missing is left out (logged), unless it is the configured
//! default agent: then building fails with the `speech.*` key to set. Errors name the key.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use voxbridge_brain::dialog::Dialog;
use voxbridge_brain::turn::PipelineMetrics;
use voxbridge_brain::{Agents, Brain, BrainError, BrainFactory, CallInfo, CallerAudio};
use voxbridge_screening::catalog::ScriptsOrigin;
use voxbridge_screening::llm::LlmScreeningAgent;
use voxbridge_screening::{AgentConfig, Screenings, ScriptError};
use voxbridge_speech::config::{SpeechConfig, SpeechConfigError};
use voxbridge_speech::providers::SpeechProviders;

use crate::assistant::AssistantSource;
use crate::pipeline::{PipelineError, VoiceFactory, VoiceOptions, VoiceProviders};
use crate::realtime_brain::{RealtimeFactory, RealtimeOptions};

/// Why the agents could not be built. Each message names the setting to change.
#[derive(Debug, thiserror::Error)]
pub enum AgentsError {
    /// The screening scripts did not load.
    #[error("cannot load the screening scripts ([agent] screenings_dir, default_screening)")]
    Scripts(#[source] ScriptError),
    /// `agent.default_screening` names no loaded script.
    #[error("agent.default_screening")]
    DefaultScreening(#[source] ScriptError),
    /// `[agent.llm] enabled` without an LLM provider.
    #[error("agent.llm.enabled = true needs an LLM provider")]
    ScreeningLlm(#[source] SpeechConfigError),
    /// The default `/media` agent lacks a provider.
    #[error("media.default_agent = {agent:?}")]
    DefaultAgent {
        /// The agent named in `media.default_agent`.
        agent: &'static str,
        /// The missing provider.
        #[source]
        source: SpeechConfigError,
    },
    /// A `[speech.pipeline]` value is invalid.
    #[error("invalid [speech.pipeline] configuration")]
    Pipeline(#[source] PipelineError),
    /// A `[speech.realtime]` value is invalid.
    #[error("invalid [speech.realtime] configuration")]
    Realtime(#[source] PipelineError),
}

/// The screening interview on Media Streams: the name `/relay`'s agent has too.
pub const SCREENING: &str = "screening";

/// The screening interview's first name on `/media`, kept working.
pub const VOICE_ALIAS: &str = "voice";

/// Another name for a factory: starts its brains, and leaves the turn metrics to it (one
/// series per agent, not one per name).
struct Alias {
    name: &'static str,
    target: VoiceFactory,
}

impl BrainFactory for Alias {
    fn name(&self) -> &'static str {
        self.name
    }

    fn start(&self, call: &CallInfo) -> Result<Box<dyn Brain>, BrainError> {
        self.target.start(call)
    }

    fn pipeline_rate(&self) -> Option<u32> {
        self.target.pipeline_rate()
    }

    fn turn_metrics(&self) -> Option<Arc<PipelineMetrics>> {
        None
    }

    fn caller_audio(&self) -> CallerAudio {
        self.target.caller_audio()
    }
}

/// Loads the screening scripts (`[agent]`) and, when `agent.llm.enabled`, puts the LLM
/// interview in front of them.
pub fn load_screenings(
    agent: &AgentConfig,
    config_file: Option<&Path>,
    providers: &SpeechProviders,
) -> Result<Screenings, AgentsError> {
    let (library, origin) = agent
        .load_scripts(config_file)
        .map_err(AgentsError::Scripts)?;
    match &origin {
        ScriptsOrigin::Dir(dir) => tracing::info!(
            dir = %dir.display(),
            scripts = ?library.ids().collect::<Vec<_>>(),
            "screening scripts loaded"
        ),
        ScriptsOrigin::BuiltIn => tracing::info!(
            scripts = ?library.ids().collect::<Vec<_>>(),
            "agent.screenings_dir not found; using the scripts built into the binary"
        ),
    }
    let screenings = Screenings::new(library, &agent.default_screening)
        .map_err(AgentsError::DefaultScreening)?;
    if !agent.llm.enabled {
        return Ok(screenings);
    }
    let llm = providers
        .llm("screening-llm")
        .map_err(AgentsError::ScreeningLlm)?;
    let llm_config = agent.llm.clone();
    Ok(screenings.with_llm(Arc::new(move |script| {
        Box::new(LlmScreeningAgent::new(
            script,
            Arc::clone(&llm),
            llm_config.clone(),
        )) as Box<dyn Dialog>
    })))
}

/// What the `/media` agents need besides the providers.
#[derive(Debug, Clone)]
pub struct MediaAgentOptions {
    /// `media.default_agent`: this one must be built or the whole set fails.
    pub default_agent: String,
    /// `media.hangover_ms`, for the voice brains' latency breakdown.
    pub hangover: Duration,
}

/// The `/media` agents, and the voice and realtime factories among them (their fallback lines
/// are pre-rendered before serving, [`MediaAgents::prerender`]).
#[derive(Debug, Clone)]
pub struct MediaAgents {
    /// Every agent offered, by name.
    pub agents: Agents,
    /// The `screening` and `assistant` factories built.
    pub voices: Vec<VoiceFactory>,
    /// The `realtime` factory, if built.
    pub realtime: Option<RealtimeFactory>,
}

impl MediaAgents {
    /// Renders the spoken fallback lines once, so a failing provider never leaves a caller in
    /// silence; a brain retries this at call start if it fails here (logged, not an error).
    pub async fn prerender(&self) {
        for voice in &self.voices {
            if let Err(e) = voice.prerender().await {
                tracing::warn!(error = %e, "cannot pre-render the fallback lines yet");
            }
        }
        if let Some(realtime) = &self.realtime
            && let Err(e) = realtime.prerender().await
        {
            tracing::warn!(error = %e, "cannot pre-render the realtime apology yet");
        }
    }
}

/// The `/media` agents the providers allow (see the module docs). Each voice factory has its
/// own metrics (`/metrics` labels them by agent).
pub fn media_agents(
    speech: &SpeechConfig,
    providers: &SpeechProviders,
    screenings: &Screenings,
    options: &MediaAgentOptions,
) -> Result<MediaAgents, AgentsError> {
    let mut agents = Agents::builtin();
    let mut voices = Vec::new();
    let voice_options = || VoiceOptions {
        hangover: options.hangover,
        ..VoiceOptions::default()
    };
    let wanted = |name: &str| {
        options.default_agent == name || (name == SCREENING && options.default_agent == VOICE_ALIAS)
    };
    for name in [SCREENING, "assistant"] {
        let stages = providers.asr(name).and_then(|asr| {
            let tts = providers.tts(name)?;
            let llm = if name == "assistant" {
                Some(providers.llm(name)?)
            } else {
                None
            };
            Ok((asr, tts, llm))
        });
        let (asr, tts, llm) = match stages {
            Ok(stages) => stages,
            Err(source) if wanted(name) => {
                return Err(AgentsError::DefaultAgent {
                    agent: name,
                    source,
                });
            }
            Err(e) => {
                tracing::info!(agent = name, reason = %e, "agent not offered");
                continue;
            }
        };
        let voice_providers = VoiceProviders {
            asr: Some(asr),
            tts: Some(tts),
            fallback_tts: providers.espeak(),
        };
        let factory = match llm {
            Some(llm) => VoiceFactory::new(
                "assistant",
                speech.pipeline.clone(),
                voice_providers,
                Arc::new(AssistantSource::new(llm, speech.assistant.clone())),
                voice_options(),
            ),
            None => VoiceFactory::new(
                SCREENING,
                speech.pipeline.clone(),
                voice_providers,
                Arc::new(screenings.clone()),
                voice_options(),
            ),
        }
        .map_err(AgentsError::Pipeline)?;
        agents = agents.with(factory.clone());
        if factory.name() == SCREENING {
            agents = agents.with(Alias {
                name: VOICE_ALIAS,
                target: factory.clone(),
            });
        }
        voices.push(factory);
    }
    let realtime = match providers.speech_to_speech("realtime") {
        Ok(provider) => {
            let factory = RealtimeFactory::new(
                speech.realtime.clone(),
                provider,
                RealtimeOptions {
                    fallback_tts: providers.espeak(),
                    screenings: Some(screenings.clone()),
                    ..RealtimeOptions::default()
                },
            )
            .map_err(AgentsError::Realtime)?;
            agents = agents.with(factory.clone());
            Some(factory)
        }
        Err(source) if wanted("realtime") => {
            return Err(AgentsError::DefaultAgent {
                agent: "realtime",
                source,
            });
        }
        Err(e) => {
            tracing::info!(agent = "realtime", reason = %e, "agent not offered");
            None
        }
    };
    Ok(MediaAgents {
        agents,
        voices,
        realtime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(default_agent: &str) -> MediaAgentOptions {
        MediaAgentOptions {
            default_agent: default_agent.to_owned(),
            hangover: Duration::from_millis(600),
        }
    }

    fn screenings_for(providers: &SpeechProviders) -> Screenings {
        load_screenings(&AgentConfig::default(), None, providers).expect("built-in scripts")
    }

    /// The error and its causes, as `anyhow`'s `{:#}` prints them.
    fn chain(err: &dyn std::error::Error) -> String {
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        message
    }

    /// Without a recognizer (`asr = "none"`, also what the default `auto` resolves to when the
    /// Whisper model is not installed or the binary has no `whisper` feature) only echo runs.
    /// `none` is set explicitly: whether `auto` finds a model depends on the machine.
    #[test]
    fn without_a_recognizer_only_echo_is_offered() {
        let speech = SpeechConfig {
            asr: voxbridge_speech::config::AsrKind::None,
            ..SpeechConfig::default()
        };
        let providers = speech.build().expect("defaults build");
        let set = media_agents(
            &speech,
            &providers,
            &screenings_for(&providers),
            &options("echo"),
        )
        .expect("echo needs nothing");
        assert_eq!(set.agents.names().collect::<Vec<_>>(), ["echo"]);
        assert!(set.voices.is_empty());
        assert!(set.realtime.is_none());
    }

    #[test]
    fn realtime_as_default_without_a_provider_names_the_key() {
        let speech = SpeechConfig::default();
        let providers = speech.build().expect("defaults build");
        let err = media_agents(
            &speech,
            &providers,
            &screenings_for(&providers),
            &options("realtime"),
        )
        .expect_err("refused");
        let message = chain(&err);
        assert!(
            message.contains("media.default_agent = \"realtime\""),
            "{message}"
        );
        assert!(message.contains("speech.speech_to_speech"), "{message}");
    }

    #[test]
    fn realtime_is_offered_when_speech_to_speech_is_configured() {
        let speech: SpeechConfig = toml::from_str(
            "speech_to_speech = \"openai\"\n[openai]\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key = \"k\"\n",
        )
        .expect("valid [speech]");
        let providers = speech.build().expect("builds");
        let set = media_agents(
            &speech,
            &providers,
            &screenings_for(&providers),
            &options("realtime"),
        )
        .expect("offered");
        assert!(set.agents.contains("realtime"));
        assert!(set.realtime.is_some());
    }

    /// The screening interview is `screening` on `/media` as on `/relay`; `voice` still
    /// reaches it (also as the default agent), and its turns are counted once, as `screening`.
    #[test]
    fn screening_is_offered_with_voice_as_its_other_name() {
        let speech: SpeechConfig = toml::from_str(
            "asr = \"openai\"\n[openai]\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key = \"k\"\n",
        )
        .expect("valid [speech]");
        let providers = speech.build().expect("builds");
        let set = media_agents(
            &speech,
            &providers,
            &screenings_for(&providers),
            &options(VOICE_ALIAS),
        )
        .expect("voice as the default agent is the screening agent");
        assert_eq!(
            set.agents.names().collect::<Vec<_>>(),
            ["echo", "screening", "voice"]
        );
        assert_eq!(set.voices.len(), 1);
        assert_eq!(set.voices[0].name(), SCREENING);
        let screening = set.agents.get(SCREENING).expect("screening");
        let voice = set.agents.get(VOICE_ALIAS).expect("voice");
        assert!(screening.turn_metrics().is_some());
        assert!(voice.turn_metrics().is_none(), "counted under screening");
        assert_eq!(voice.caller_audio(), screening.caller_audio());
    }

    #[test]
    fn screening_llm_without_a_provider_names_the_key() {
        let speech = SpeechConfig::default();
        let providers = speech.build().expect("defaults build");
        let mut agent = AgentConfig::default();
        agent.llm.enabled = true;
        let err = load_screenings(&agent, None, &providers).expect_err("no LLM");
        let message = chain(&err);
        assert!(message.contains("agent.llm.enabled"), "{message}");
        assert!(message.contains("speech.llm"), "{message}");
    }
}
