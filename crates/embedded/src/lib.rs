//! The in-app queue: Spool's broker running inside your process, on a data
//! directory or entirely in memory, reached through exactly the API of the
//! network client (`spool-client`).
//!
//! [`Embedded`] implements [`Connect`], like [`Remote`] does for a server,
//! so application code written against `impl Connect` does not change when
//! the queue moves out of the process — only the line that builds the
//! connector:
//!
//! ```no_run
//! # async fn demo() -> Result<(), spool_embedded::ClientError> {
//! use spool_embedded::{Connect, Embedded, Message, Producer, ProducerOptions, TopicConfig};
//! let spool = Embedded::open("./app-queue").await?; // or: Remote::new("127.0.0.1:7420")
//! let client = spool.connect().await?;
//! client.create_topic("jobs", 1, TopicConfig::default()).await?;
//! let producer = Producer::new(client, ProducerOptions::default());
//! producer.send("jobs", Message::new("resize 42.png")).await?.await?;
//! spool.close().await?;
//! # Ok(()) }
//! ```
//!
//! How it works: the broker, its housekeeping, callbacks and HTTP push
//! delivery run as tokio tasks of this process
//! ([`spool_server::EmbeddedServer`]); each connection is an in-memory pipe
//! served by the same connection handler as a TCP connection. Requests are
//! still framed and decoded (one copy each way, no system call), which is
//! what makes the behaviour identical: long polls, push subscriptions,
//! consumer groups, back pressure and error codes all work the same.
//! Nothing is authenticated (the caller is the application itself) and no
//! port is opened. It needs a multi-threaded tokio runtime (the broker
//! blocks a worker thread while it writes).

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub use spool_client::*;
use spool_server::{EmbeddedServer, EMBEDDED_PEER};
use std::future::Future;
use std::path::{Path, PathBuf};

/// A Spool broker inside this process.
pub struct Embedded {
    server: EmbeddedServer,
    options: ClientOptions,
}

fn local(code: ErrorCode, message: impl Into<String>) -> ClientError {
    ClientError::Local {
        code,
        message: message.into(),
    }
}

fn open_error(e: impl std::fmt::Display) -> ClientError {
    local(ErrorCode::StorageError, e.to_string())
}

fn check_runtime() -> Result<(), ClientError> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::CurrentThread) => Err(local(
            ErrorCode::InvalidRequest,
            "the embedded broker needs a multi-threaded tokio runtime \
             (#[tokio::main], or #[tokio::test(flavor = \"multi_thread\")])",
        )),
        Ok(_) => Ok(()),
        Err(_) => Err(local(
            ErrorCode::InvalidRequest,
            "the embedded broker must be opened inside a tokio runtime",
        )),
    }
}

impl Embedded {
    /// Opens (or creates) a data directory — the same format as `spool
    /// server`'s, recovered the same way. One process at a time.
    pub async fn open(data_dir: impl Into<PathBuf>) -> Result<Embedded, ClientError> {
        check_runtime()?;
        let server = EmbeddedServer::open(data_dir).await.map_err(open_error)?;
        Ok(Embedded::wrap(server))
    }

    /// A broker whose data lives only in memory (a private tmpfs directory,
    /// removed when the broker is closed or dropped): for tests, caches and
    /// work that need not survive the process.
    pub async fn in_memory() -> Result<Embedded, ClientError> {
        check_runtime()?;
        let server = EmbeddedServer::in_memory().await.map_err(open_error)?;
        Ok(Embedded::wrap(server))
    }

    /// [`Embedded::open`] with server settings (request TTL, callback
    /// allow-list, …); listener and authentication settings do not apply.
    pub async fn open_with(config: spool_server::ServerConfig) -> Result<Embedded, ClientError> {
        check_runtime()?;
        let server = EmbeddedServer::open_with(config)
            .await
            .map_err(open_error)?;
        Ok(Embedded::wrap(server))
    }

    fn wrap(server: EmbeddedServer) -> Embedded {
        Embedded {
            server,
            options: ClientOptions {
                client_id: "in-process".to_owned(),
                ..ClientOptions::default()
            },
        }
    }

    /// Where the data is.
    pub fn data_dir(&self) -> &Path {
        self.server.data_dir()
    }

    /// Stops the broker's background work and flushes every log. Clients
    /// still open get `connection lost` from then on.
    pub async fn close(self) -> Result<(), ClientError> {
        self.server.close().await.map_err(open_error)
    }
}

impl Connect for Embedded {
    fn connect(&self) -> impl Future<Output = Result<Client, ClientError>> + Send {
        let stream = self.server.connect();
        Client::connect_stream(stream, EMBEDDED_PEER, self.options.clone())
    }
}
