//! Building the speech providers from [`SpeechConfig`] and choosing among them per call.
//!
//! [`SpeechConfig::build`] validates every value (errors name the key and the fix) and builds
//! the configured providers once per process; [`SpeechProviders`] hands them to agents
//! (`asr(agent)` ... fail with a message naming `speech.asr` when a stage is `none`), and
//! [`SpeechProviders::for_call`] applies a call's custom parameters.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::config::{
    AsrKind, LlmKind, Secret, SpeechConfig, SpeechConfigError, SpeechToSpeechKind, StageTimeouts,
    TtsKind,
};
use super::espeak::EspeakTts;
use super::openai::{OpenAiAsr, OpenAiEndpoint, OpenAiLlm, OpenAiTts};
use super::realtime::OpenAiRealtime;
use super::{Asr, Llm, SpeechToSpeech, Tts};

/// Looks up environment variables; injected so tests do not touch the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl SpeechConfig {
    /// Checks every value and builds the configured providers, reading the API key from the
    /// process environment when `api_key` is empty. Must be called inside a tokio runtime only
    /// when a provider is later used; building opens no connection.
    pub fn build(&self) -> Result<SpeechProviders, SpeechConfigError> {
        self.build_with_env(&|name| std::env::var(name).ok())
    }

    /// [`SpeechConfig::build`] with an explicit environment.
    pub fn build_with_env(&self, env: EnvLookup<'_>) -> Result<SpeechProviders, SpeechConfigError> {
        let espeak = self.build_espeak()?;
        let mut providers = SpeechProviders {
            asr: None,
            local_asr_metrics: None,
            llm: None,
            tts: None,
            speech_to_speech: None,
            named_tts: BTreeMap::new(),
            espeak: espeak.clone(),
        };
        if let Some(espeak) = espeak {
            providers.named_tts.insert("espeak", espeak);
        }

        let openai = &self.openai;
        if self.asr == AsrKind::Openai {
            let asr = self
                .openai_stage(
                    "asr",
                    &openai.asr.base_url,
                    &openai.asr.api_key,
                    &openai.asr.model,
                    &openai.asr.timeouts,
                    env,
                )
                .and_then(|e| invalid("openai.asr", OpenAiAsr::new(&e, &openai.asr)))?;
            providers.asr = Some(Arc::new(asr));
        }
        if matches!(self.asr, AsrKind::Local | AsrKind::Auto) {
            let local = self.build_local_asr(env)?;
            providers.local_asr_metrics = local.as_ref().map(|asr| asr.metrics().clone());
            providers.asr = local.map(|asr| Arc::new(asr) as Arc<dyn Asr>);
        }
        if self.llm == LlmKind::Openai {
            if openai.llm.temperature > 2.0 {
                return Err(SpeechConfigError::Invalid {
                    key: "openai.llm.temperature".into(),
                    problem: format!(
                        "{} is above 2.0; use 0.0..=2.0, or a negative value for the server default",
                        openai.llm.temperature
                    ),
                });
            }
            let llm = self
                .openai_stage(
                    "llm",
                    &openai.llm.base_url,
                    &openai.llm.api_key,
                    &openai.llm.model,
                    &openai.llm.timeouts,
                    env,
                )
                .and_then(|e| invalid("openai.llm", OpenAiLlm::new(&e, &openai.llm)))?;
            providers.llm = Some(Arc::new(llm));
        }
        // OpenAI TTS is also built when another stage uses an OpenAI-compatible server, so a
        // call can pick it with `tts=openai` while espeak is the default; it must resolve when
        // it is the default.
        let openai_tts = if self.tts == TtsKind::Openai
            || self.asr == AsrKind::Openai
            || self.llm == LlmKind::Openai
        {
            non_empty("openai.tts.voice", &openai.tts.voice)?;
            match self.openai_stage(
                "tts",
                &openai.tts.base_url,
                &openai.tts.api_key,
                &openai.tts.model,
                &openai.tts.timeouts,
                env,
            ) {
                Ok(e) => Some(
                    Arc::new(invalid("openai.tts", OpenAiTts::new(e, &openai.tts))?)
                        as Arc<dyn Tts>,
                ),
                Err(e) if self.tts == TtsKind::Openai => return Err(e),
                Err(_) => None,
            }
        } else {
            None
        };
        if let Some(tts) = &openai_tts {
            providers.named_tts.insert("openai", tts.clone());
        }
        providers.tts = match self.tts {
            TtsKind::Openai => openai_tts,
            TtsKind::Espeak => providers.espeak.clone(),
            TtsKind::None => None,
        };
        if self.speech_to_speech == SpeechToSpeechKind::Openai {
            let rt = &openai.realtime;
            let realtime = self
                .openai_stage(
                    "realtime",
                    &rt.base_url,
                    &rt.api_key,
                    &rt.model,
                    &rt.timeouts,
                    env,
                )
                .and_then(|e| invalid("openai.realtime", OpenAiRealtime::new(&e, rt)))?;
            providers.speech_to_speech = Some(Arc::new(realtime));
        }
        Ok(providers)
    }

    /// The embedded recogniser: required for `local` (a missing model is an error naming the
    /// directory and the setup command), used by `auto` when its model is installed.
    fn build_local_asr(
        &self,
        env: EnvLookup<'_>,
    ) -> Result<Option<crate::local::LocalAsr>, SpeechConfigError> {
        self.local.validate()?;
        let explicit = self.asr == AsrKind::Local;
        let dir = if self.local.model_dir.trim().is_empty() {
            crate::local::default_model_dir(env)
        } else {
            std::path::PathBuf::from(self.local.model_dir.trim())
        };
        if let Err(problem) = crate::local::check_model_dir(&dir) {
            if explicit {
                return Err(SpeechConfigError::Invalid {
                    key: "local.model_dir".into(),
                    problem,
                });
            }
            tracing::info!(%problem, "speech.asr = \"auto\": no local recogniser, ASR off");
            return Ok(None);
        }
        #[cfg(feature = "whisper")]
        {
            let asr = invalid("local", crate::local::start_whisper(dir, &self.local))?;
            Ok(Some(asr))
        }
        #[cfg(not(feature = "whisper"))]
        {
            let problem = format!(
                "a model is installed in {} but this binary was built without the `whisper` feature",
                dir.display()
            );
            if explicit {
                return Err(SpeechConfigError::Invalid {
                    key: "asr".into(),
                    problem: format!(
                        "{problem}; rebuild with default features, or set speech.asr to \"openai\" or \"none\""
                    ),
                });
            }
            tracing::info!(%problem, "speech.asr = \"auto\": ASR off");
            Ok(None)
        }
    }

    /// The espeak-ng synthesiser: required when it is the TTS, else the optional fallback.
    fn build_espeak(&self) -> Result<Option<Arc<dyn Tts>>, SpeechConfigError> {
        self.espeak.validate()?;
        match EspeakTts::new(self.espeak.clone()) {
            Ok(tts) => Ok(Some(Arc::new(tts))),
            Err(problem) if self.tts == TtsKind::Espeak => Err(SpeechConfigError::Invalid {
                key: "espeak.binary".into(),
                problem: format!(
                    "{problem}; install espeak-ng or set speech.tts to \"openai\" or \"none\""
                ),
            }),
            Err(problem) => {
                tracing::info!(%problem, "espeak-ng not available: no spoken fallback");
                Ok(None)
            }
        }
    }

    /// Validates one OpenAI-compatible stage's model and timeouts and resolves its endpoint.
    fn openai_stage(
        &self,
        stage: &str,
        base_url: &str,
        api_key: &Secret,
        model: &str,
        timeouts: &StageTimeouts,
        env: EnvLookup<'_>,
    ) -> Result<OpenAiEndpoint, SpeechConfigError> {
        timeouts.validate(&format!("openai.{stage}"))?;
        non_empty(&format!("openai.{stage}.model"), model)?;
        self.endpoint(stage, base_url, api_key, env)
    }

    /// Resolves the base URL and key of one stage (stage override, shared value, environment).
    fn endpoint(
        &self,
        stage: &str,
        base_url: &str,
        api_key: &Secret,
        env: EnvLookup<'_>,
    ) -> Result<OpenAiEndpoint, SpeechConfigError> {
        let (url_key, base_url) = if base_url.is_empty() {
            ("openai.base_url".to_owned(), self.openai.base_url.as_str())
        } else {
            (format!("openai.{stage}.base_url"), base_url)
        };
        let parsed = url::Url::parse(base_url).map_err(|e| SpeechConfigError::Invalid {
            key: url_key.clone(),
            problem: format!("{base_url:?} is not a URL ({e}); e.g. \"https://api.openai.com/v1\""),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(SpeechConfigError::Invalid {
                key: url_key,
                problem: format!("{base_url:?} must start with http:// or https://"),
            });
        }
        let key = if !api_key.is_empty() {
            api_key.clone()
        } else if !self.openai.api_key.is_empty() {
            self.openai.api_key.clone()
        } else {
            env(&self.openai.api_key_env)
                .filter(|k| !k.trim().is_empty())
                .map(Secret::new)
                .unwrap_or_default()
        };
        // Self-hosted servers often need no key; OpenAI itself always does.
        if key.is_empty() && parsed.host_str() == Some("api.openai.com") {
            return Err(SpeechConfigError::Invalid {
                key: "openai.api_key".into(),
                problem: format!(
                    "empty and {} is not set; OpenAI needs a key (speech.{stage} uses {base_url})",
                    self.openai.api_key_env
                ),
            });
        }
        Ok(OpenAiEndpoint {
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: key,
        })
    }
}

/// A provider constructor's error as an `Invalid` for `key`.
fn invalid<T>(key: &str, built: Result<T, String>) -> Result<T, SpeechConfigError> {
    built.map_err(|problem| SpeechConfigError::Invalid {
        key: key.to_owned(),
        problem,
    })
}

fn non_empty(key: &str, value: &str) -> Result<(), SpeechConfigError> {
    if value.trim().is_empty() {
        Err(SpeechConfigError::Invalid {
            key: key.to_owned(),
            problem: "empty; set a model or voice name".to_owned(),
        })
    } else {
        Ok(())
    }
}

/// The providers built from [`SpeechConfig`], shared by all calls. Cheap to clone.
#[derive(Clone)]
pub struct SpeechProviders {
    asr: Option<Arc<dyn Asr>>,
    /// The embedded recogniser's metrics, when it is the ASR.
    local_asr_metrics: Option<crate::local::LocalAsrMetrics>,
    llm: Option<Arc<dyn Llm>>,
    tts: Option<Arc<dyn Tts>>,
    speech_to_speech: Option<Arc<dyn SpeechToSpeech>>,
    /// Every usable TTS by name (`espeak`, `openai`), for per-call overrides.
    named_tts: BTreeMap<&'static str, Arc<dyn Tts>>,
    espeak: Option<Arc<dyn Tts>>,
}

impl fmt::Debug for SpeechProviders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpeechProviders")
            .field("asr", &self.asr.as_ref().map(|p| p.name()))
            .field("local_asr_metrics", &self.local_asr_metrics.is_some())
            .field("llm", &self.llm.as_ref().map(|p| p.name()))
            .field("tts", &self.tts.as_ref().map(|p| p.name()))
            .field(
                "speech_to_speech",
                &self.speech_to_speech.as_ref().map(|p| p.name()),
            )
            .field("named_tts", &self.named_tts.keys().collect::<Vec<_>>())
            .field("espeak", &self.espeak.is_some())
            .finish()
    }
}

impl SpeechProviders {
    /// Providers assembled by hand (tests, embedders). `espeak` is the spoken fallback.
    pub fn from_parts(
        asr: Option<Arc<dyn Asr>>,
        llm: Option<Arc<dyn Llm>>,
        tts: Option<Arc<dyn Tts>>,
        speech_to_speech: Option<Arc<dyn SpeechToSpeech>>,
        espeak: Option<Arc<dyn Tts>>,
    ) -> Self {
        let mut named_tts = BTreeMap::new();
        if let Some(t) = &tts {
            named_tts.insert(t.name(), t.clone());
        }
        if let Some(e) = &espeak {
            named_tts.insert(e.name(), e.clone());
        }
        Self {
            asr,
            local_asr_metrics: None,
            llm,
            tts,
            speech_to_speech,
            named_tts,
            espeak,
        }
    }

    /// The embedded recogniser's queue-wait and decode histograms, when it is the ASR
    /// (register them with `/metrics`).
    pub fn local_asr_metrics(&self) -> Option<&crate::local::LocalAsrMetrics> {
        self.local_asr_metrics.as_ref()
    }

    /// The recogniser, or an error naming `speech.asr` for `agent`.
    pub fn asr(&self, agent: &str) -> Result<Arc<dyn Asr>, SpeechConfigError> {
        self.asr.clone().ok_or_else(|| SpeechConfigError::Missing {
            stage: "asr",
            agent: agent.to_owned(),
            what: "ASR",
        })
    }

    /// The language model, or an error naming `speech.llm` for `agent`.
    pub fn llm(&self, agent: &str) -> Result<Arc<dyn Llm>, SpeechConfigError> {
        self.llm.clone().ok_or_else(|| SpeechConfigError::Missing {
            stage: "llm",
            agent: agent.to_owned(),
            what: "an LLM",
        })
    }

    /// The default synthesiser, or an error naming `speech.tts` for `agent`.
    pub fn tts(&self, agent: &str) -> Result<Arc<dyn Tts>, SpeechConfigError> {
        self.tts.clone().ok_or_else(|| SpeechConfigError::Missing {
            stage: "tts",
            agent: agent.to_owned(),
            what: "TTS",
        })
    }

    /// The speech-to-speech provider, or an error naming `speech.speech_to_speech`.
    pub fn speech_to_speech(
        &self,
        agent: &str,
    ) -> Result<Arc<dyn SpeechToSpeech>, SpeechConfigError> {
        self.speech_to_speech
            .clone()
            .ok_or_else(|| SpeechConfigError::Missing {
                stage: "speech_to_speech",
                agent: agent.to_owned(),
                what: "a speech-to-speech provider",
            })
    }

    /// The local espeak-ng synthesiser when installed: for system prompts, voicemail and the
    /// spoken fallback when the configured TTS fails.
    pub fn espeak(&self) -> Option<Arc<dyn Tts>> {
        self.espeak.clone()
    }

    /// Applies a call's custom parameters: `tts` (`espeak`|`openai`) picks the synthesiser,
    /// `voice` and `language` become defaults for that call's TTS requests (and `language` the
    /// ASR hint). Other parameters are ignored (they belong to the agent).
    pub fn for_call(
        &self,
        parameters: &BTreeMap<String, String>,
    ) -> Result<CallSpeech, SpeechConfigError> {
        let tts = match parameters.get("tts").map(String::as_str) {
            None | Some("") => self.tts.clone(),
            Some("none") => None,
            Some(name) => Some(self.named_tts.get(name).cloned().ok_or_else(|| {
                SpeechConfigError::Parameter {
                    name: "tts".into(),
                    value: name.into(),
                    problem: format!(
                        "no such TTS configured (available: {})",
                        self.named_tts
                            .keys()
                            .copied()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }
            })?),
        };
        let text = |name: &str| {
            parameters
                .get(name)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let voice = text("voice");
        if let Some(v) = &voice
            && (v.len() > 64
                || !v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_+.".contains(c)))
        {
            return Err(SpeechConfigError::Parameter {
                name: "voice".into(),
                value: v.clone(),
                problem: "a voice name is up to 64 letters, digits, '-', '_', '+' or '.'".into(),
            });
        }
        Ok(CallSpeech {
            asr: self.asr.clone(),
            llm: self.llm.clone(),
            tts,
            fallback_tts: self.espeak.clone(),
            voice,
            language: text("language"),
        })
    }
}

/// The providers and per-call defaults chosen for one call by [`SpeechProviders::for_call`].
#[derive(Clone)]
pub struct CallSpeech {
    /// The recogniser, if configured.
    pub asr: Option<Arc<dyn Asr>>,
    /// The language model, if configured.
    pub llm: Option<Arc<dyn Llm>>,
    /// The synthesiser for this call.
    pub tts: Option<Arc<dyn Tts>>,
    /// The local synthesiser for the spoken fallback.
    pub fallback_tts: Option<Arc<dyn Tts>>,
    /// Voice override for this call's TTS requests.
    pub voice: Option<String>,
    /// Language for this call (ASR hint, TTS language).
    pub language: Option<String>,
}

impl fmt::Debug for CallSpeech {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallSpeech")
            .field("asr", &self.asr.as_ref().map(|p| p.name()))
            .field("llm", &self.llm.as_ref().map(|p| p.name()))
            .field("tts", &self.tts.as_ref().map(|p| p.name()))
            .field(
                "fallback_tts",
                &self.fallback_tts.as_ref().map(|p| p.name()),
            )
            .field("voice", &self.voice)
            .field("language", &self.language)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(toml_text: &str) -> Result<SpeechConfig, toml::de::Error> {
        toml::from_str(toml_text)
    }

    #[test]
    fn defaults_need_no_account() {
        let providers = SpeechConfig::default()
            .build_with_env(&no_env)
            .expect("defaults build");
        assert!(providers.asr("screening").is_err());
        assert!(providers.llm("screening").is_err());
        assert_eq!(providers.tts("screening").expect("espeak").name(), "espeak");
    }

    #[test]
    fn missing_stage_names_the_key_and_the_fix() {
        let providers = SpeechConfig::default()
            .build_with_env(&no_env)
            .expect("build");
        let err = providers.asr("screening").err().expect("asr is none");
        assert_eq!(
            err.to_string(),
            "speech.asr = \"none\" but agent screening needs ASR; set speech.asr = \"openai\" \
             and speech.openai.base_url (and speech.openai.api_key or OPENAI_API_KEY)"
        );
    }

    #[test]
    fn openai_needs_a_key_but_self_hosted_does_not() {
        let config = parse("llm = \"openai\"\n").expect("parse");
        let err = config.build_with_env(&no_env).expect_err("no key");
        assert!(
            err.to_string().contains("speech.openai.api_key")
                && err.to_string().contains("OPENAI_API_KEY"),
            "{err}"
        );
        let env = |name: &str| (name == "OPENAI_API_KEY").then(|| "sk-test".to_owned());
        let providers = config.build_with_env(&env).expect("key from env");
        assert_eq!(providers.llm("a").expect("llm").name(), "openai");

        let local = parse(
            "llm = \"openai\"\nasr = \"openai\"\n[openai]\nbase_url = \"http://127.0.0.1:8000/v1\"\n",
        )
        .expect("parse");
        let providers = local.build_with_env(&no_env).expect("no key needed");
        assert!(providers.asr("a").is_ok());
        let err = providers.speech_to_speech("realtime").err().expect("off");
        assert!(
            err.to_string()
                .starts_with("speech.speech_to_speech = \"none\""),
            "{err}"
        );
        // OpenAI TTS becomes selectable per call once ASR/LLM point at a server.
        let call = providers
            .for_call(&BTreeMap::from([("tts".to_owned(), "openai".to_owned())]))
            .expect("tts=openai");
        assert_eq!(call.tts.expect("tts").name(), "openai");
    }

    #[test]
    fn realtime_is_built_from_the_shared_endpoint() {
        let config = parse(
            "speech_to_speech = \"openai\"\n[openai]\nbase_url = \"http://127.0.0.1:9/v1\"\n[openai.realtime]\nmodel = \"gpt-realtime-mini\"\n",
        )
        .expect("parse");
        let providers = config.build_with_env(&no_env).expect("build");
        assert_eq!(
            providers.speech_to_speech("rt").expect("realtime").name(),
            "openai_realtime"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("[openai]\nbase_url = \"ftp://x\"\nllm_x = 1\n", "llm_x"),
            (
                "llm = \"openai\"\n[openai]\nbase_url = \"ftp://x\"\n",
                "speech.openai.base_url",
            ),
            (
                "llm = \"openai\"\n[openai]\napi_key = \"k\"\n[openai.llm]\nbase_url = \"nope\"\n",
                "speech.openai.llm.base_url",
            ),
            (
                "asr = \"openai\"\n[openai]\napi_key = \"k\"\n[openai.asr.timeouts]\nconnect_ms = 0\nfirst_byte_ms = 1\nidle_ms = 1\n",
                "speech.openai.asr.timeouts.connect_ms",
            ),
            ("[espeak]\npitch = 120\n", "speech.espeak.pitch"),
            (
                "tts = \"espeak\"\n[espeak]\nbinary = \"/nonexistent/espeak-ng\"\n",
                "speech.espeak.binary",
            ),
        ];
        for (text, key) in cases {
            let message = match parse(text) {
                Err(e) => e.to_string(),
                Ok(config) => config.build_with_env(&no_env).expect_err(text).to_string(),
            };
            assert!(message.contains(key), "{text:?} -> {message}");
        }
    }

    #[test]
    fn a_missing_local_model_is_named_with_the_setup_command() {
        let config = parse("asr = \"local\"\n[local]\nmodel_dir = \"/nonexistent/whisper\"\n")
            .expect("parse");
        let err = config
            .build_with_env(&no_env)
            .expect_err("no model")
            .to_string();
        assert!(
            err.contains("speech.local.model_dir")
                && err.contains("/nonexistent/whisper")
                && err.contains("model.bin")
                && err.contains("scripts/setup.sh"),
            "{err}"
        );
        // `auto` (the default) quietly goes without.
        let config = parse("[local]\nmodel_dir = \"/nonexistent/whisper\"\n").expect("parse");
        assert_eq!(config.asr, AsrKind::Auto);
        let providers = config
            .build_with_env(&no_env)
            .expect("auto without a model");
        assert!(providers.asr("voice").is_err());
        let err = parse("asr = \"local\"\n[local]\nbeam_size = 0\n")
            .expect("parse")
            .build_with_env(&no_env)
            .expect_err("beam 0")
            .to_string();
        assert!(err.contains("speech.local.beam_size"), "{err}");
    }

    #[test]
    fn the_default_model_dir_follows_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(
            crate::local::default_model_dir(&env(&[("HOME", "/home/u")])),
            std::path::Path::new("/home/u/.cache/voxbridge/models/whisper-tiny.en")
        );
        assert_eq!(
            crate::local::default_model_dir(&env(&[
                ("HOME", "/home/u"),
                ("VOXBRIDGE_MODEL_DIR", "/models")
            ])),
            std::path::Path::new("/models/whisper-tiny.en")
        );
    }

    #[test]
    fn debug_never_shows_keys() {
        let config =
            parse("[openai]\napi_key = \"sk-very-secret\"\n[openai.tts]\napi_key = \"sk-2\"\n")
                .expect("parse");
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("sk-very-secret") && !shown.contains("sk-2"),
            "{shown}"
        );
        assert!(shown.contains("<redacted>"));
        let providers = SpeechConfig {
            llm: LlmKind::Openai,
            ..config
        }
        .build_with_env(&no_env)
        .expect("build");
        assert!(!format!("{providers:?}").contains("sk-very-secret"));
    }

    #[test]
    fn call_parameters_choose_tts_and_voice() {
        let providers = SpeechConfig::default()
            .build_with_env(&no_env)
            .expect("build");
        let params = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>()
        };
        let call = providers
            .for_call(&params(&[("voice", "en-gb"), ("language", "en")]))
            .expect("ok");
        assert_eq!(call.tts.expect("default tts").name(), "espeak");
        assert_eq!(call.voice.as_deref(), Some("en-gb"));
        assert_eq!(call.language.as_deref(), Some("en"));
        assert!(call.fallback_tts.is_some());

        let err = providers
            .for_call(&params(&[("tts", "openai")]))
            .expect_err("openai tts not configured");
        assert!(err.to_string().contains("available: espeak"), "{err}");
        assert!(
            providers
                .for_call(&params(&[("voice", "x; rm -rf /")]))
                .is_err()
        );
        assert!(
            providers
                .for_call(&params(&[("tts", "none")]))
                .expect("none")
                .tts
                .is_none()
        );
    }
}
