//! `voxbridge serve`: the Media Streams bridge on `[media].listen`.

use anyhow::{Context, Result};
use voxbridge_agent::Agents;
use voxbridge_media::MediaState;

use crate::config::Config;

pub(crate) fn run(config: Config) -> Result<()> {
    // Check the configuration before any socket is bound.
    let media = config.media;
    let listen = media.listen;
    let state =
        MediaState::new(media, Agents::builtin()).context("invalid [media] configuration")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let shutdown = crate::shutdown::on_signal();
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} (media.listen)"))?;
        voxbridge_media::serve_with_state(state, listener, shutdown)
            .await
            .context("media server failed")
    })
}
