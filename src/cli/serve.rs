//! `voxbridge serve`: the Media Streams bridge (`[media].media_path`) and ConversationRelay
//! with the screening agent (`[media].relay_path`, scripts from `[agent]`) on `[media].listen`,
//! and (`api.in_serve`, the default) the companion API's `/api/*` and `/twilio/*` on the same
//! port: one process, one public URL. Finished screenings (relay and Media Streams) and every
//! Media Streams call, with the voice pipeline's per-turn latencies, are stored in `[store]`.
//! `GET /metrics` on the same port (or `media.metrics_listen`) serves the bridge's, the voice
//! agents' and the API's metrics.
//!
//! Which agents `/media` offers is decided by [`voxbridge_voice::agents`] from `[speech]`;
//! naming an agent in `media.default_agent` whose providers are missing stops the startup with
//! the `speech.*` key to set.

use std::sync::Arc;

use anyhow::{Context, Result};
use voxbridge_api::{AppState, SystemClock};
use voxbridge_media::{MediaState, RelayService};
use voxbridge_screening::Screenings;
use voxbridge_speech::local::LocalAsrMetrics;
use voxbridge_voice::agents::{MediaAgentOptions, MediaAgents, load_screenings, media_agents};

use crate::call_store::StoreCalls;
use crate::config::Config;
use crate::record_metrics::RecordMetrics;
use crate::screening_store::StoreScreenings;

/// What `serve` needs before it binds a socket: the checked `[media]`, `[speech]` and
/// `[agent]` sections (and `[api]` when it is served too), the loaded screening scripts and
/// the agents they allow. Also what `voxbridge config check` runs.
pub(crate) fn prepare(
    config: &Config,
) -> Result<(Screenings, MediaAgents, Option<LocalAsrMetrics>)> {
    config
        .media
        .validate()
        .context("invalid [media] configuration")?;
    if serves_api(config) {
        config.api.validate().context(
            "invalid [api] configuration (`voxbridge serve` serves the API too; \
             api.in_serve = false leaves it to `voxbridge api`)",
        )?;
        for (key, path) in [
            ("media.media_path", &config.media.media_path),
            ("media.relay_path", &config.media.relay_path),
        ] {
            if path.starts_with("/api/") || path.starts_with("/twilio/") {
                anyhow::bail!(
                    "{key} = {path:?} is taken by the API served on the same port \
                     (api.in_serve): choose a path outside /api/ and /twilio/"
                );
            }
        }
    }
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
    Ok((screenings, set, providers.local_asr_metrics().cloned()))
}

/// Whether this `serve` mounts the API: `api.in_serve`, and a Twilio auth token to check its
/// webhooks with (without one, a development run of the bridge alone, the API is left out
/// with a warning).
pub(crate) fn serves_api(config: &Config) -> bool {
    config.api.in_serve && !config.api.twilio.auth_token.is_empty()
}

pub(crate) fn run(config: Config) -> Result<()> {
    // Check the configuration and load the scripts before any socket is bound.
    let (screenings, set, local_asr) = prepare(&config)?;
    let with_api = serves_api(&config);
    if config.api.in_serve && !with_api {
        tracing::warn!(
            "the companion API (/api/*, /twilio/*) is not served: no Twilio auth token to check \
             its webhooks (set TWILIO_AUTH_TOKEN, or api.in_serve = false to run the bridge alone)"
        );
    }
    config.warn_local_only_urls(true, with_api);
    let api_config = config.api.clone();
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
        if let Some(local_asr) = &local_asr {
            state.register_more_metrics(|registry| local_asr.register(registry));
        }
        let shutdown = crate::shutdown::on_signal();
        let api = if with_api {
            let api = AppState::new(api_config, store.clone(), Arc::new(SystemClock))
                .context("cannot start the API served by `voxbridge serve`")?;
            state.register_more_metrics(|registry| api.register_metrics(registry));
            // At max_calls the answer TwiML says the line is busy instead of connecting a call
            // the upgrade would refuse.
            let bridge = state.clone();
            api.set_busy_check(move || bridge.at_capacity());
            // Webhooks are committed before their 2xx: not ready while the store is down, as
            // `voxbridge api`'s /readyz.
            let readiness_store = store.clone();
            state.set_readiness_check(move || {
                let store = readiness_store.clone();
                Box::pin(async move {
                    store
                        .ping()
                        .await
                        .map_err(|_| "store unreachable".to_owned())
                })
            });
            Some(api)
        } else {
            None
        };
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} (media.listen)"))?;
        let (routes, background) = match &api {
            Some(api) => {
                tracing::info!("companion API served on the same port: /api/*, /twilio/*");
                (
                    voxbridge_api::routes(api.clone()),
                    Some(voxbridge_api::spawn_background(api, shutdown.clone())),
                )
            }
            None => (axum::Router::new(), None),
        };
        let served = voxbridge_media::serve_with_routes(state, routes, listener, shutdown)
            .await
            .context("media server failed");
        // The reconciler stops at shutdown between passes; one still talking to Twilio gets
        // the API's drain deadline.
        if let (Some(mut background), Some(api)) = (background, &api)
            && tokio::time::timeout(api.drain_timeout(), &mut background)
                .await
                .is_err()
        {
            background.abort();
        }
        // Every session has ended: let the last results reach the database.
        results.flush().await;
        calls.flush().await;
        store.close().await;
        served
    })
}
