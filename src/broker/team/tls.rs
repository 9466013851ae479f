//! TLS to etcd (`[team] ca`, and `cert` with `key` when etcd asks clients
//! for a certificate): the files are read once, when the config is
//! loaded, and every connection to a member is then made with them.

use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// How to reach etcd over TLS: the CA that signed the members'
/// certificates, and this client's certificate if it has one.
#[derive(Clone)]
pub struct Tls(tokio_rustls::TlsConnector);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(..)")
    }
}

impl PartialEq for Tls {
    fn eq(&self, other: &Tls) -> bool {
        Arc::ptr_eq(self.0.config(), other.0.config())
    }
}

impl Tls {
    /// Reads the CA certificates in `ca` and, if given, the client's
    /// certificate chain and private key (PEM files). An error names the
    /// file and what is wrong with it.
    pub fn load(ca: &str, client: Option<(&str, &str)>) -> Result<Tls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in certificates(ca)? {
            roots
                .add(cert)
                .map_err(|e| format!("[team] ca {ca}: {e}"))?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = certificates(cert)?;
                let secret = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("[team] key {key}: no private key read: {e}"))?;
                builder
                    .with_client_auth_cert(chain, secret)
                    .map_err(|e| format!("[team] cert {cert} with key {key}: {e}"))?
            }
        };
        Ok(Tls(tokio_rustls::TlsConnector::from(Arc::new(config))))
    }

    /// `tcp` to member `host` wrapped in TLS, its certificate checked.
    pub(super) async fn connect(
        &self,
        host: &str,
        tcp: tokio::net::TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| format!("{host}: not a name TLS can check: {e}"))?;
        self.0
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}: {e}"))
    }
}

/// The certificates of PEM file `path`: at least one.
fn certificates(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let bad = |why: String| format!("[team] {path}: {why}");
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".to_string()));
    }
    Ok(certs)
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
