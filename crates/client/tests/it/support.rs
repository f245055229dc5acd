//! The in-process server the client tests run against, and the set-up
//! steps many tests share.

use spool_client::{Client, ClientOptions, Producer, ProducerOptions, TopicConfig};
use spool_server::{Server, ServerConfig};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::oneshot;

pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::bind(ServerConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            http_listen: None,
            data_dir: dir.path().to_owned(),
            max_connections: 1000,
            ..ServerConfig::default()
        })
        .await
        .expect("bind");
        let addr = server.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            stop: Some(tx),
            task,
            _dir: dir,
        }
    }

    /// A started server and a client connected to it: how most tests begin.
    pub async fn start_with_client() -> (TestServer, Client) {
        let server = TestServer::start().await;
        let client = server.client().await;
        (server, client)
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr, ClientOptions::default())
            .await
            .expect("connect")
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Creates a topic with the server's default settings.
pub async fn create_topic(client: &Client, name: &str, partitions: u32) {
    client
        .create_topic(name, partitions, TopicConfig::default())
        .await
        .expect("create topic");
}

/// Settings of a topic that fills up: at most `max_messages`.
pub fn capped(max_messages: u64) -> TopicConfig {
    TopicConfig {
        max_messages: Some(max_messages),
        ..TopicConfig::default()
    }
}

/// A producer with a long linger: what is sent before a `flush` travels
/// as one batch (flush sends it).
pub fn lingering_producer(client: &Client) -> Producer {
    Producer::new(
        client.clone(),
        ProducerOptions {
            linger: Duration::from_secs(5),
            ..ProducerOptions::default()
        },
    )
}

/// A producer with the default options.
pub fn default_producer(client: &Client) -> Producer {
    Producer::new(client.clone(), ProducerOptions::default())
}
