//! The TLS crypto provider, installed once per process.
//!
//! The workspace's one reqwest (0.13) is built with `rustls-no-provider`: its default provider,
//! aws-lc-rs, needs a C/CMake toolchain we do not want. rustls then has no provider to pick by
//! itself, and building a `reqwest::Client` (or a TLS WebSocket) panics until one is installed
//! process-wide. [`install_ring_provider`] installs *ring*'s; every place that builds an HTTP
//! client or opens a TLS socket calls it first (it costs one atomic load after the first call).

use std::sync::Once;

/// Installs rustls' *ring* provider as the process default, once. Call it before building a
/// `reqwest::Client` (the Twilio REST client, the OpenAI providers, the simulator, tests).
pub fn install_ring_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another part of the process installed a provider first: that one is used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_a_default_provider_and_is_idempotent() {
        install_ring_provider();
        install_ring_provider();
        let installed = rustls::crypto::CryptoProvider::get_default().expect("a default provider");
        let ring = rustls::crypto::ring::default_provider();
        let suites = |p: &rustls::crypto::CryptoProvider| {
            p.cipher_suites
                .iter()
                .map(rustls::SupportedCipherSuite::suite)
                .collect::<Vec<_>>()
        };
        assert_eq!(suites(installed), suites(&ring));
    }
}
