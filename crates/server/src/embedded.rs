//! The broker in-process (the design note's *in-app queue*): the same
//! broker, housekeeping, callbacks and push delivery as `spool server`,
//! without listeners. Each client "connection" is an in-memory pipe served
//! by the same connection handler as a TCP connection, so an application
//! gets exactly the network client's behaviour — long polls, push
//! subscriptions, groups, limits, errors — with no socket and no port.
//! `spool-embedded` wraps this behind the client's `Connect` trait.

use crate::{auth, connection, open_broker, Runtime, ServerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::DuplexStream;

/// Bytes buffered in each direction of an in-process connection (a write
/// larger than this waits for the other side to read, as on a socket).
pub const PIPE_BUFFER_BYTES: usize = 1024 * 1024;

/// The address in-process connections report as their peer.
pub const EMBEDDED_PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// A broker running inside this process.
pub struct EmbeddedServer {
    runtime: Runtime,
    connections: AtomicU64,
    /// Where the data is; for [`EmbeddedServer::in_memory`], a private
    /// directory removed on drop.
    data_dir: PathBuf,
    _scratch: Option<tempfile::TempDir>,
}

impl EmbeddedServer {
    /// Opens (or creates) a data directory, recovering it like `spool
    /// server` would. The directory must not be open in another process.
    pub async fn open(data_dir: impl Into<PathBuf>) -> anyhow::Result<EmbeddedServer> {
        let config = ServerConfig {
            data_dir: data_dir.into(),
            ..ServerConfig::default()
        };
        Self::start(config, None).await
    }

    /// A broker whose data lives in memory: a private directory on tmpfs
    /// (`/dev/shm`, where the system has it; else the temporary directory)
    /// removed when the broker is dropped. Nothing survives the process.
    pub async fn in_memory() -> anyhow::Result<EmbeddedServer> {
        let shm = std::path::Path::new("/dev/shm");
        let scratch = if shm.is_dir() {
            tempfile::Builder::new().prefix("spool-").tempdir_in(shm)?
        } else {
            tempfile::Builder::new().prefix("spool-").tempdir()?
        };
        let config = ServerConfig {
            data_dir: scratch.path().to_owned(),
            ..ServerConfig::default()
        };
        Self::start(config, Some(scratch)).await
    }

    /// [`EmbeddedServer::open`] with settings (callback allow-list, request
    /// TTL, …); listener settings are ignored and nothing is authenticated.
    pub async fn open_with(config: ServerConfig) -> anyhow::Result<EmbeddedServer> {
        Self::start(config, None).await
    }

    async fn start(
        config: ServerConfig,
        scratch: Option<tempfile::TempDir>,
    ) -> anyhow::Result<EmbeddedServer> {
        let broker = Arc::new(open_broker(&config).await?);
        // In-process callers are the application itself: nothing to check.
        let auth = Arc::new(auth::Auth::disabled());
        let runtime = Runtime::start(broker, auth, &config, None)?;
        Ok(EmbeddedServer {
            runtime,
            connections: AtomicU64::new(0),
            data_dir: config.data_dir,
            _scratch: scratch,
        })
    }

    /// Where the data is.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// A new in-process connection: the returned end speaks the binary
    /// protocol (give it to `spool_client::Client::connect_stream`); the
    /// other end is served by a task of this broker.
    pub fn connect(&self) -> DuplexStream {
        let (client_end, server_end) = tokio::io::duplex(PIPE_BUFFER_BYTES);
        let ops = Arc::clone(&self.runtime.ops);
        let id = self.connections.fetch_add(1, Ordering::Relaxed) + 1;
        let span = tracing::info_span!("conn", id, peer = "in-process");
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let (rd, wr) = tokio::io::split(server_end);
                connection::handle(rd, wr, EMBEDDED_PEER, ops).await;
            },
            span,
        ));
        client_end
    }

    /// Stops background work, answers pending long polls, flushes every log.
    pub async fn close(self) -> anyhow::Result<()> {
        self.runtime.finish().await
    }
}
