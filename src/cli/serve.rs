//! `voxbridge serve`: the Media Streams bridge (`[media].media_path`) and ConversationRelay
//! with the screening agent (`[media].relay_path`, scripts from `[agent]`) on `[media].listen`.
//! Finished screenings are stored in `[store]`.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use voxbridge_agent::Agents;
use voxbridge_agent::screening::Screenings;
use voxbridge_agent::screening::catalog::ScriptsOrigin;
use voxbridge_media::{LogOnly, MediaState, RelayService};

use crate::config::Config;
use crate::screening_store::StoreScreenings;

pub(crate) fn run(config: Config) -> Result<()> {
    // Check the configuration and load the scripts before any socket is bound.
    let media = config.media;
    let listen = media.listen;
    media.validate().context("invalid [media] configuration")?;
    let screenings = screenings(&config.agent, config.source.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let store = voxbridge_store::Store::connect(&config.store)
            .await
            .with_context(|| {
                format!(
                    "cannot open the store {} (store.database_url)",
                    voxbridge_store::redact_url(&config.store.database_url)
                )
            })?;
        let results = StoreScreenings::new(store.clone());
        let relay = RelayService::new(Arc::new(screenings), Arc::new(results.clone()));
        let state =
            MediaState::with_services(media, Agents::builtin(), Arc::new(LogOnly), Some(relay))
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
        store.close().await;
        served
    })
}

/// Loads the screening scripts and picks the agent; errors name the file and key.
pub(crate) fn screenings(
    agent: &voxbridge_agent::screening::AgentConfig,
    config_file: Option<&std::path::Path>,
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
    if agent.llm.enabled {
        bail!(
            "agent.llm.enabled = true, but this build has no LLM provider to run it with; \
             set agent.llm.enabled = false to use the scripted agent"
        );
    }
    Screenings::new(library, &agent.default_screening).context("agent.default_screening")
}
