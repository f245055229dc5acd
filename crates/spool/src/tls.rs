//! `spool tls generate`: the certificates a first TLS setup needs, made
//! the way TLS clients (rustls/webpki) accept them. A private CA
//! (certificate and key) and a server certificate it signs, valid for the
//! names given and for `localhost` and 127.0.0.1; the server is started
//! with the server certificate and key, clients trust the CA (`--tls-ca`).
//!
//! Not one self-signed certificate for both jobs: webpki refuses a
//! certificate that is a CA (as `openssl req -x509` makes them) as the
//! server's own certificate (`CaUsedAsEndEntity`), and one that is not a CA
//! cannot sign anything else. Files are created, never overwritten; keys
//! are readable by their owner only.

use crate::Failure;
use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// How long the generated CA is valid.
const CA_VALIDITY_DAYS: i64 = 3650;
/// How long the generated server certificate is valid.
const SERVER_VALIDITY_DAYS: i64 = 825;
/// Certificates start being valid this many days before today, so a peer
/// whose clock is a little behind accepts them at once.
const BACKDATE_DAYS: i64 = 1;
/// Names every generated server certificate is valid for besides `--host`:
/// a server reached on this machine.
const LOCAL_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];
/// Mode of private key files: the owner reads them, nobody else.
const KEY_FILE_MODE: u32 = 0o600;
/// Mode of certificate files: public by nature.
const CERT_FILE_MODE: u32 = 0o644;

/// The files `generate` writes, under `--out`.
const CA_CERT_FILE: &str = "ca.crt";
const CA_KEY_FILE: &str = "ca.key";
const SERVER_CERT_FILE: &str = "server.crt";
const SERVER_KEY_FILE: &str = "server.key";

#[derive(Debug, Args)]
pub struct TlsArgs {
    #[command(subcommand)]
    pub command: TlsCommand,
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Write a private CA (ca.crt, ca.key) and a server certificate it
    /// signs (server.crt, server.key) for --host, localhost and 127.0.0.1.
    /// Start the server with --tls-cert-file server.crt --tls-key-file
    /// server.key; clients trust the CA: --tls-ca ca.crt. Existing files
    /// are not overwritten.
    Generate {
        /// A DNS name or IP address clients will reach the server by
        /// (repeat for more); the first names the certificate.
        #[arg(long = "host", value_name = "NAME", required = true)]
        hosts: Vec<String>,
        /// Directory to write the four files to (created if missing).
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
    },
}

/// Why `spool tls generate` failed; [`TlsGenError::code`] is its stable
/// name on the `error:` line.
#[derive(Debug, thiserror::Error)]
pub enum TlsGenError {
    #[error("--host {host:?} is neither a DNS name nor an IP address")]
    BadHost { host: String },
    #[error("{} already exists; not overwriting it (remove it or choose another --out)", .path.display())]
    Exists { path: PathBuf },
    #[error("cannot write {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make the certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("certificate dates out of range: {0}")]
    Date(#[from] jiff::Error),
}

impl TlsGenError {
    pub fn code(&self) -> &'static str {
        match self {
            TlsGenError::BadHost { .. } => "INVALID_REQUEST",
            TlsGenError::Exists { .. } => "ALREADY_EXISTS",
            TlsGenError::Io { .. } => "IO_ERROR",
            TlsGenError::Certificate(_) | TlsGenError::Date(_) => "INTERNAL",
        }
    }
}

impl From<TlsGenError> for Failure {
    fn from(e: TlsGenError) -> Failure {
        Failure::new(e.code(), e.to_string())
    }
}

pub fn run(args: TlsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        TlsCommand::Generate { hosts, out } => {
            let written = generate(&hosts, &out).map_err(Failure::from)?;
            print_next_steps(&written)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `generate` wrote (PEM files all) and the names the server's
/// certificate is valid for, `--host`s first.
struct Written {
    ca_cert: PathBuf,
    ca_key: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    names: Vec<String>,
}

/// Writes the CA and the server certificate for `hosts` under `out`.
fn generate(hosts: &[String], out: &Path) -> Result<Written, TlsGenError> {
    let names = server_names(hosts)?;
    let files = [CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE].map(|f| out.join(f));
    // All or nothing: refuse before writing any of them.
    if let Some(path) = files.iter().find(|p| p.exists()) {
        return Err(TlsGenError::Exists { path: path.clone() });
    }
    let (ca_params, ca_key) = ca(&names[0])?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let server_key = KeyPair::generate()?;
    let issuer = Issuer::new(ca_params, ca_key);
    let server_cert = server_params(&names)?.signed_by(&server_key, &issuer)?;
    std::fs::create_dir_all(out).map_err(|source| TlsGenError::Io {
        path: out.to_owned(),
        source,
    })?;
    let [ca_cert_path, ca_key_path, server_cert_path, server_key_path] = files;
    write_new(&ca_cert_path, &ca_cert.pem(), CERT_FILE_MODE)?;
    write_new(&ca_key_path, &issuer.key().serialize_pem(), KEY_FILE_MODE)?;
    write_new(&server_cert_path, &server_cert.pem(), CERT_FILE_MODE)?;
    write_new(&server_key_path, &server_key.serialize_pem(), KEY_FILE_MODE)?;
    Ok(Written {
        ca_cert: ca_cert_path,
        ca_key: ca_key_path,
        server_cert: server_cert_path,
        server_key: server_key_path,
        names,
    })
}

/// `hosts` checked as TLS clients check a server name, then the local
/// names, without repeats.
fn server_names(hosts: &[String]) -> Result<Vec<String>, TlsGenError> {
    let mut names: Vec<String> = Vec::new();
    for host in hosts {
        if rustls_pki_types::ServerName::try_from(host.as_str()).is_err() {
            return Err(TlsGenError::BadHost { host: host.clone() });
        }
        names.push(host.to_ascii_lowercase());
    }
    names.extend(LOCAL_NAMES.map(str::to_owned));
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    Ok(names)
}

/// The CA: may sign server certificates (and no intermediate CAs).
fn ca(host: &str) -> Result<(CertificateParams, KeyPair), TlsGenError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("Spool CA for {host}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_VALIDITY_DAYS)?;
    Ok((params, KeyPair::generate()?))
}

/// The server's certificate: an end entity for TLS servers, valid for `names`.
fn server_params(names: &[String]) -> Result<CertificateParams, TlsGenError> {
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, names[0].clone());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, SERVER_VALIDITY_DAYS)?;
    Ok(params)
}

/// Valid from yesterday for `days`.
fn set_validity(params: &mut CertificateParams, days: i64) -> Result<(), TlsGenError> {
    let today = jiff::tz::Offset::UTC
        .to_datetime(jiff::Timestamp::now())
        .date();
    let from = today.checked_sub(jiff::Span::new().days(BACKDATE_DAYS))?;
    let until = today.checked_add(jiff::Span::new().days(days))?;
    let ymd = |d: jiff::civil::Date| {
        rcgen::date_time_ymd(i32::from(d.year()), d.month() as u8, d.day() as u8)
    };
    params.not_before = ymd(from);
    params.not_after = ymd(until);
    Ok(())
}

/// Creates `path` with `mode` (never replacing a file) and writes `text`.
fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), TlsGenError> {
    let io = |source| TlsGenError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => TlsGenError::Exists {
                path: path.to_owned(),
            },
            _ => io(e),
        })?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

fn print_next_steps(w: &Written) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "wrote {} (CA certificate: clients trust it) and {} (its key: keep it private)",
        w.ca_cert.display(),
        w.ca_key.display()
    )?;
    writeln!(
        out,
        "wrote {} and {} (the server's certificate and key, for {})",
        w.server_cert.display(),
        w.server_key.display(),
        w.names.join(", ")
    )?;
    writeln!(out, "start the server:")?;
    writeln!(
        out,
        "  spool server --tls-cert-file {} --tls-key-file {}",
        w.server_cert.display(),
        w.server_key.display()
    )?;
    writeln!(out, "connect:")?;
    let port = crate::config::LISTEN_DEFAULT
        .rsplit_once(':')
        .map_or("7420", |(_, port)| port);
    writeln!(
        out,
        "  spool --addr {}:{port} --tls-ca {} topic list",
        bracketed(&w.names[0]),
        w.ca_cert.display()
    )
}

/// An IPv6 address in brackets, as `host:port` needs it.
fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}
