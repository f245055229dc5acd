//! TLS to the server (rustls, aws-lc-rs provider): the server's
//! certificate is checked against the CA certificates in a PEM file (a
//! private CA, or the self-signed certificate itself).

use crate::error::ClientError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use spool_types::ErrorCode;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// How to check the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of the CA certificate(s) to trust.
    pub ca_path: PathBuf,
    /// The name the certificate must be valid for; `None`: the server's
    /// IP address (the certificate then needs an IP address SAN).
    pub server_name: Option<String>,
}

impl TlsOptions {
    /// Trust the CA certificates in `ca_path`; check the certificate
    /// against the server's address.
    pub fn new(ca_path: impl Into<PathBuf>) -> TlsOptions {
        TlsOptions {
            ca_path: ca_path.into(),
            server_name: None,
        }
    }

    /// Checks the certificate against `name` (a DNS name or an IP address).
    pub fn with_server_name(mut self, name: impl Into<String>) -> TlsOptions {
        self.server_name = Some(name.into());
        self
    }
}

fn tls_error(message: String) -> ClientError {
    ClientError::local(ErrorCode::InvalidRequest, message)
}

fn connector(options: &TlsOptions) -> Result<TlsConnector, ClientError> {
    let path = &options.ca_path;
    let pem = std::fs::read(path)
        .map_err(|e| tls_error(format!("cannot read the CA file {}: {e}", path.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert =
            cert.map_err(|e| tls_error(format!("{}: not a PEM certificate: {e}", path.display())))?;
        roots
            .add(cert)
            .map_err(|e| tls_error(format!("{}: unusable CA certificate: {e}", path.display())))?;
    }
    if roots.is_empty() {
        return Err(tls_error(format!(
            "{}: no certificate found (expected a PEM \"BEGIN CERTIFICATE\" block)",
            path.display()
        )));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Runs the TLS handshake over `stream`.
pub(crate) async fn connect(
    options: &TlsOptions,
    peer: SocketAddr,
    stream: TcpStream,
) -> Result<TlsStream<TcpStream>, ClientError> {
    let connector = connector(options)?;
    let name = match &options.server_name {
        Some(n) => ServerName::try_from(n.clone())
            .map_err(|e| tls_error(format!("{n:?} is not a server name: {e}")))?,
        None => ServerName::IpAddress(peer.ip().into()),
    };
    connector
        .connect(name, stream)
        .await
        .map_err(handshake_failed)
}

/// Said after a refused certificate that is a CA's: the usual
/// `openssl req -x509` self-signed certificate.
const CA_AS_SERVER_CERT_HINT: &str = "; the server's certificate is a CA certificate \
     (as `openssl req -x509` makes them), which TLS clients refuse as a server's own \
     certificate: give the server a certificate signed by a CA (`spool tls generate`) \
     and trust that CA";
/// Said when the server answered the handshake with something else than TLS.
const NOT_TLS_HINT: &str = "; the server does not seem to speak TLS \
     (connect without TLS, or start it with --tls-cert-file/--tls-key-file)";

/// The handshake's failure, with a hint for the two common mistakes.
fn handshake_failed(e: std::io::Error) -> ClientError {
    let mut message = format!("TLS handshake failed: {e}");
    let cause = e.get_ref().and_then(|c| c.downcast_ref::<rustls::Error>());
    match cause {
        // webpki's error is only reachable as text through rustls.
        Some(rustls::Error::InvalidCertificate(_)) if message.contains("CaUsedAsEndEntity") => {
            message.push_str(CA_AS_SERVER_CERT_HINT);
        }
        Some(rustls::Error::InvalidMessage(_)) => message.push_str(NOT_TLS_HINT),
        _ => {}
    }
    ClientError::Disconnected(message)
}
