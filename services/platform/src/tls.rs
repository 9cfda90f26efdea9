//! The process-wide rustls crypto provider.
//!
//! The AWS SDK's HTTPS client brings rustls with aws-lc-rs while reqwest and async-nats bring
//! it with ring; with both compiled in, rustls cannot pick a default, and a client built with
//! `ClientConfig::builder()` (async-nats for `tls://` servers) would panic. Every process
//! therefore installs ring, the provider the rest of the workspace already uses, before it
//! opens any TLS connection. reqwest and the AWS SDK choose their providers explicitly and
//! are unaffected.

/// Installs ring as the process default; a no-op when a default is already installed.
pub fn install_default_crypto_provider() {
    // Err only means a provider is already installed, which is all this needs.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_default_provider_exists_after_installing_twice() {
        super::install_default_crypto_provider();
        super::install_default_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
