//! `voxbridge api`: the companion HTTP service on `[api].listen`.

use anyhow::{Context, Result};

use crate::config::Config;

/// The checks `api` runs before it binds a socket (also run by `voxbridge config check`).
pub(crate) fn check(config: &Config) -> Result<()> {
    config.api.validate().context("invalid [api] configuration")
}

pub(crate) fn run(config: Config) -> Result<()> {
    // Check the configuration before any socket is bound or file opened.
    check(&config)?;
    config.warn_local_only_urls(false, true);
    let listen = config.api.listen.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let shutdown = crate::shutdown::on_signal();
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("cannot listen on {listen} (api.listen)"))?;
        voxbridge_api::serve(config.api, config.store, listener, shutdown)
            .await
            .context("api server failed")
    })
}
