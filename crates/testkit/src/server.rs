//! A [`Server`] in-process on ephemeral loopback ports over a temporary
//! data directory.

use spool_server::auth::Secret;
use spool_server::{Server, ServerConfig};
use std::net::SocketAddr;
use std::path::Path;
use tokio::sync::oneshot;

/// The secret [`TestServer::start_http`] signs callbacks and pushes with.
pub const CALLBACK_SECRET: &str = "testkit-callback-secret";

/// A serving in-process server; its data directory lives as long as it.
pub struct TestServer {
    /// The binary protocol's address.
    pub addr: SocketAddr,
    http: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    // Dropped last: the server writes here until the test ends.
    dir: tempfile::TempDir,
}

impl TestServer {
    /// The binary protocol only.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// The HTTP API too, signing callbacks and pushes with
    /// [`CALLBACK_SECRET`].
    pub async fn start_http() -> TestServer {
        Self::start_with(|c| {
            c.http_listen = Some("127.0.0.1:0".parse().unwrap());
            c.callback_secret = Some(Secret::new(CALLBACK_SECRET));
        })
        .await
    }

    /// With the settings `configure` makes on top of the test defaults (no
    /// HTTP, room for 1000 connections).
    pub async fn start_with(configure: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = ServerConfig {
            // Tests run in parallel, so nothing may bind a fixed port.
            listen: "127.0.0.1:0".parse().unwrap(),
            http_listen: None,
            data_dir: dir.path().to_owned(),
            max_connections: 1000,
            ..ServerConfig::default()
        };
        configure(&mut config);
        let server = Server::bind(config).await.expect("bind");
        let addr = server.local_addr().expect("local addr");
        let http = server.http_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            http,
            stop: Some(tx),
            task,
            dir,
        }
    }

    /// The HTTP API's address; panics if it was not started.
    pub fn http(&self) -> SocketAddr {
        self.http.expect("the server was started without HTTP")
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Begins the graceful shutdown, without waiting for it.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down and waits until the server has stopped.
    pub async fn shutdown(mut self) {
        self.stop();
        let _ = (&mut self.task).await;
    }
}
