//! TLS for both listeners and the cluster's node links: rustls with the aws-lc-rs provider (the one
//! provider in the build, shared with reqwest), certificates and key from
//! PEM files. The handshake runs in the connection's own task under
//! [`TLS_HANDSHAKE_TIMEOUT_MS`], so a client that stalls mid-handshake holds
//! only its own connection slot, never the accept loop.

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use spool_cluster::transport::LinkTls;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to complete the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

/// Where the server's certificate chain and private key are (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert_path: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the TLS {what} {}", path.display()))
}

/// Builds the acceptor, with errors naming the file at fault.
pub fn acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    Ok(TlsAcceptor::from(Arc::new(server_config(files)?)))
}

/// The certificates in the PEM file at `path` (at least one), with errors
/// naming the file.
fn read_certs(path: &Path, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate chain: {e}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "{}: no certificate found (expected a PEM \"BEGIN CERTIFICATE\" block)",
            path.display()
        );
    }
    Ok(certs)
}

fn server_config(files: &TlsFiles) -> anyhow::Result<rustls::ServerConfig> {
    let certs = read_certs(&files.cert_path, "certificate")?;
    let key_pem = read(&files.key_path, "private key")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        anyhow::anyhow!(
            "{}: no usable PEM private key: {e}",
            files.key_path.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "{} and {} do not make a usable certificate and key pair",
                files.cert_path.display(),
                files.key_path.display()
            )
        })?;
    Ok(config)
}

/// TLS on the cluster's node links: each node listens with its own
/// certificate (`files`, as its client listeners) and checks its peers'
/// against the CA certificates in `ca_path` (`--cluster-tls-ca-file`).
pub fn cluster_link_tls(files: &TlsFiles, ca_path: &Path) -> anyhow::Result<LinkTls> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(ca_path, "cluster CA file")? {
        roots
            .add(cert)
            .map_err(|e| anyhow::anyhow!("{}: unusable CA certificate: {e}", ca_path.display()))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let dialer = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(LinkTls::new(
        Arc::new(dialer),
        Arc::new(server_config(files)?),
    ))
}
