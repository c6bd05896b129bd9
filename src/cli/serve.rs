//! `voxbridge serve`: the Media Streams bridge (`[media].media_path`) and ConversationRelay
//! with the screening agent (`[media].relay_path`, scripts from `[agent]`) on `[media].listen`.
//! Finished screenings (relay and Media Streams) and every Media Streams call, with the voice
//! pipeline's per-turn latencies, are stored in `[store]`. `GET /metrics` on the same port
//! serves the bridge's and the voice agents' metrics.
//!
//! Agents on `/media`: `echo` always; `voice` (the screening interview through ASR -> dialog ->
//! TTS) when `[speech]` has an ASR and a TTS; `assistant` (a free-form LLM conversation) when it
//! also has an LLM; `realtime` (one speech-to-speech session per call, mu-law in and out) when
//! `speech.speech_to_speech` is set. Naming an agent in `media.default_agent` whose providers
//! are missing stops the startup with the `speech.*` key to set.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use voxbridge_brain::Agents;
use voxbridge_brain::dialog::Dialog;
use voxbridge_brain::turn::{LatencyLog, TurnSink};
use voxbridge_media::{MediaState, RelayService};
use voxbridge_screening::Screenings;
use voxbridge_screening::catalog::ScriptsOrigin;
use voxbridge_screening::llm::LlmScreeningAgent;
use voxbridge_speech::config::SpeechConfig;
use voxbridge_speech::providers::SpeechProviders;
use voxbridge_voice::assistant::AssistantSource;
use voxbridge_voice::pipeline::{VoiceFactory, VoiceOptions, VoiceProviders};
use voxbridge_voice::realtime_brain::{RealtimeFactory, RealtimeOptions};

use crate::call_store::{StoreCalls, report_log};
use crate::config::Config;
use crate::screening_store::StoreScreenings;

pub(crate) fn run(config: Config) -> Result<()> {
    // Check the configuration and load the scripts before any socket is bound.
    let media = config.media;
    let listen = media.listen;
    media.validate().context("invalid [media] configuration")?;
    let providers = config
        .speech
        .build()
        .context("invalid [speech] configuration")?;
    let screenings = screenings(&config.agent, config.source.as_deref(), &providers)?;
    let reports = report_log();
    let (agents, voices, realtime) =
        agents(&config.speech, &providers, &screenings, &media, &reports)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        for voice in &voices {
            // Render the spoken fallback lines once, so a failing provider never leaves a
            // caller in silence; a brain retries this at call start if it fails here.
            if let Err(e) = voice.prerender().await {
                tracing::warn!(error = %e, "cannot pre-render the fallback lines yet");
            }
        }
        if let Some(realtime) = &realtime
            && let Err(e) = realtime.prerender().await
        {
            tracing::warn!(error = %e, "cannot pre-render the realtime apology yet");
        }
        let store = voxbridge_store::Store::connect(&config.store)
            .await
            .with_context(|| {
                format!(
                    "cannot open the store {} (store.database_url)",
                    voxbridge_store::redact_url(&config.store.database_url)
                )
            })?;
        let results = StoreScreenings::new(store.clone());
        let calls = StoreCalls::new(store.clone(), reports);
        let relay = RelayService::new(Arc::new(screenings), Arc::new(results.clone()));
        let state = MediaState::with_services(media, agents, Arc::new(calls.clone()), Some(relay))
            .context("invalid [media] configuration")?;
        let shutdown = crate::shutdown::on_signal();
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} (media.listen)"))?;
        let served = voxbridge_media::serve_with_state(state, listener, shutdown)
            .await
            .context("media server failed");
        // Every session has ended: let the last results reach the database.
        results.flush().await;
        calls.flush().await;
        store.close().await;
        served
    })
}

/// Loads the screening scripts and picks the agent; errors name the file and key.
pub(crate) fn screenings(
    agent: &voxbridge_screening::AgentConfig,
    config_file: Option<&std::path::Path>,
    providers: &SpeechProviders,
) -> Result<Screenings> {
    let (library, origin) = agent
        .load_scripts(config_file)
        .context("cannot load the screening scripts ([agent] screenings_dir, default_screening)")?;
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
    let screenings =
        Screenings::new(library, &agent.default_screening).context("agent.default_screening")?;
    if !agent.llm.enabled {
        return Ok(screenings);
    }
    let llm = providers
        .llm("screening-llm")
        .context("agent.llm.enabled = true needs an LLM provider")?;
    let llm_config = agent.llm.clone();
    Ok(screenings.with_llm(Arc::new(move |script| {
        Box::new(LlmScreeningAgent::new(
            script,
            Arc::clone(&llm),
            llm_config.clone(),
        )) as Box<dyn Dialog>
    })))
}

/// The `/media` agents the providers allow (see the module docs), and the voice and realtime
/// factories (their fallback lines are pre-rendered before serving). Each voice factory has its
/// own metrics (`/metrics` labels them by agent); voice and realtime brains hand their calls'
/// reports (turn latencies, results) to `reports`.
fn agents(
    speech: &SpeechConfig,
    providers: &SpeechProviders,
    screenings: &Screenings,
    media: &voxbridge_media::MediaConfig,
    reports: &Arc<LatencyLog>,
) -> Result<(Agents, Vec<VoiceFactory>, Option<RealtimeFactory>)> {
    let mut agents = Agents::builtin();
    let mut voices = Vec::new();
    let options = || VoiceOptions {
        hangover: Duration::from_millis(media.hangover_ms),
        turn_sink: Some(Arc::clone(reports) as Arc<dyn TurnSink>),
        ..VoiceOptions::default()
    };
    let wanted = |name: &str| media.default_agent == name;
    for name in ["voice", "assistant"] {
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
            Err(e) if wanted(name) => {
                return Err(e).context(format!("media.default_agent = {name:?}"));
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
                options(),
            ),
            None => VoiceFactory::new(
                "voice",
                speech.pipeline.clone(),
                voice_providers,
                Arc::new(screenings.clone()),
                options(),
            ),
        }
        .context("invalid [speech.pipeline] configuration")?;
        agents = agents.with(factory.clone());
        voices.push(factory);
    }
    let realtime = match providers.speech_to_speech("realtime") {
        Ok(provider) => {
            let factory = RealtimeFactory::new(
                speech.realtime.clone(),
                provider,
                RealtimeOptions {
                    fallback_tts: providers.espeak(),
                    turn_sink: Some(Arc::clone(reports) as Arc<dyn TurnSink>),
                    ..RealtimeOptions::default()
                },
            )
            .context("invalid [speech.realtime] configuration")?;
            agents = agents.with(factory.clone());
            Some(factory)
        }
        Err(e) if wanted("realtime") => {
            return Err(e).context("media.default_agent = \"realtime\"");
        }
        Err(e) => {
            tracing::info!(agent = "realtime", reason = %e, "agent not offered");
            None
        }
    };
    Ok((agents, voices, realtime))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media(default_agent: &str) -> voxbridge_media::MediaConfig {
        voxbridge_media::MediaConfig {
            default_agent: default_agent.to_owned(),
            ..voxbridge_media::MediaConfig::default()
        }
    }

    fn screenings_for(providers: &SpeechProviders) -> Screenings {
        screenings(
            &voxbridge_screening::AgentConfig::default(),
            None,
            providers,
        )
        .expect("built-in scripts")
    }

    #[test]
    fn realtime_as_default_without_a_provider_names_the_key() {
        let speech = SpeechConfig::default();
        let providers = speech.build().expect("defaults build");
        let err = agents(
            &speech,
            &providers,
            &screenings_for(&providers),
            &media("realtime"),
            &report_log(),
        )
        .expect_err("refused");
        let message = format!("{err:#}");
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
        let (agents, _, realtime) = agents(
            &speech,
            &providers,
            &screenings_for(&providers),
            &media("realtime"),
            &report_log(),
        )
        .expect("offered");
        assert!(agents.contains("realtime"));
        assert!(realtime.is_some());
    }
}
