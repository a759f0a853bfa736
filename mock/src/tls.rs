//! TLS for the mock, so tests reach a provider over HTTPS as every real
//! one is, on HTTP/2 or HTTP/1.1 by ALPN.

use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

/// An acceptor for the PEM certificate chain and key, offering `alpn`
/// (e.g. `["h2", "http/1.1"]`) in order of preference.
pub fn acceptor(cert_pem: &str, key_pem: &str, alpn: &[&str]) -> Result<TlsAcceptor, String> {
    let certs = rustls_pemfile::certs(&mut std::io::Cursor::new(cert_pem))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate: {e}"))?;
    let key = rustls_pemfile::private_key(&mut std::io::Cursor::new(key_pem))
        .map_err(|e| format!("key: {e}"))?
        .ok_or("key: no private key in the file")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}
