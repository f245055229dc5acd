//! The in-process server the client tests run against, and the set-up
//! steps many tests share.

use spool_client::{Client, ClientOptions, Message, Producer, ProducerOptions, TopicConfig};
pub use spool_testkit::TestServer;
use std::time::Duration;

/// A started server and a client connected to it: how most tests begin.
pub async fn start_with_client() -> (TestServer, Client) {
    let server = TestServer::start().await;
    let client = connect(&server).await;
    (server, client)
}

/// [`start_with_client`] with a topic `name` of `partitions` created.
pub async fn start_with_topic(name: &str, partitions: u32) -> (TestServer, Client) {
    let (server, client) = start_with_client().await;
    create_topic(&client, name, partitions).await;
    (server, client)
}

/// [`start_with_topic`] and a producer with the default options.
pub async fn start_with_producer(topic: &str, partitions: u32) -> (TestServer, Client, Producer) {
    let (server, client) = start_with_topic(topic, partitions).await;
    let producer = default_producer(&client);
    (server, client, producer)
}

/// Another client of `server`.
pub async fn connect(server: &TestServer) -> Client {
    Client::connect(server.addr, ClientOptions::default())
        .await
        .expect("connect")
}

/// Creates a topic with the server's default settings.
pub async fn create_topic(client: &Client, name: &str, partitions: u32) {
    client
        .create_topic(name, partitions, TopicConfig::default())
        .await
        .expect("create topic");
}

/// Hands `message` for `topic` to `producer`, not waiting for its delivery.
pub async fn send(producer: &Producer, topic: &str, message: Message) {
    let _delivery = producer.send(topic, message).await.expect("send");
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
