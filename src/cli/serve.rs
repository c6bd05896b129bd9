//! `voxbridge serve`: the Media Streams bridge (`[media].media_path`) and ConversationRelay
//! with the screening agent (`[media].relay_path`, scripts from `[agent]`) on `[media].listen`.
//! Finished screenings (relay and Media Streams) and every Media Streams call, with the voice
//! pipeline's per-turn latencies, are stored in `[store]`. `GET /metrics` on the same port
//! serves the bridge's and the voice agents' metrics.
//!
//! Which agents `/media` offers is decided by [`voxbridge_voice::agents`] from `[speech]`;
//! naming an agent in `media.default_agent` whose providers are missing stops the startup with
//! the `speech.*` key to set.

use std::sync::Arc;

use anyhow::{Context, Result};
use voxbridge_media::{MediaState, RelayService};
use voxbridge_screening::Screenings;
use voxbridge_voice::agents::{MediaAgentOptions, MediaAgents, load_screenings, media_agents};

use crate::call_store::StoreCalls;
use crate::config::Config;
use crate::record_metrics::RecordMetrics;
use crate::screening_store::StoreScreenings;

/// What `serve` needs before it binds a socket: the checked `[media]`, `[speech]` and
/// `[agent]` sections, the loaded screening scripts and the agents they allow. Also what
/// `voxbridge config check` runs.
pub(crate) fn prepare(config: &Config) -> Result<(Screenings, MediaAgents)> {
    config
        .media
        .validate()
        .context("invalid [media] configuration")?;
    let providers = config
        .speech
        .build()
        .context("invalid [speech] configuration")?;
    let screenings = load_screenings(&config.agent, config.source.as_deref(), &providers)?;
    let set = media_agents(
        &config.speech,
        &providers,
        &screenings,
        &MediaAgentOptions {
            default_agent: config.media.default_agent.clone(),
            hangover: config.media.session.hangover,
        },
    )?;
    Ok((screenings, set))
}

pub(crate) fn run(config: Config) -> Result<()> {
    // Check the configuration and load the scripts before any socket is bound.
    let (screenings, set) = prepare(&config)?;
    let media = config.media;
    let listen = media.listen;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        set.prerender().await;
        let store = voxbridge_store::Store::connect(&config.store)
            .await
            .with_context(|| {
                format!(
                    "cannot open the store {} (store.database_url)",
                    config.store.database_url
                )
            })?;
        let records = RecordMetrics::default();
        let results = StoreScreenings::new(store.clone(), records.clone());
        let calls = StoreCalls::new(store.clone(), records.clone());
        let relay = RelayService::new(Arc::new(screenings), Arc::new(results.clone()));
        let state =
            MediaState::with_services(media, set.agents, Arc::new(calls.clone()), Some(relay))
                .context("invalid [media] configuration")?;
        state.register_more_metrics(|registry| records.register(registry));
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
