//! Work queues over the binary protocol, against an in-process server:
//! subscriptions, receive with long poll, ack/nack/extend by receipt, and
//! push delivery of leased messages within credit.

use bytes::{Bytes, BytesMut};
use spool_batch::{BatchBuilder, NewRecord};
use spool_proto::{self as p, Push, Request, Response, ResponseBody, WireCode, WireError};
use spool_testkit::TestServer;
use spool_types::ErrorCode;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any single frame may take to arrive before a test fails.
pub(crate) const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// A server with a topic `jobs` of `partitions` and its queue subscription
/// `workers`, and a connection that made them.
async fn start_with_queue(partitions: u32) -> (TestServer, Conn) {
    let server = TestServer::start().await;
    let mut c = Conn::open(server.addr).await;
    c.create_topic("jobs", partitions).await;
    c.create_queue("jobs", "workers").await.unwrap();
    (server, c)
}

/// A raw protocol connection: requests out, responses matched by
/// correlation id, pushes kept in arrival order.
pub(crate) struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    next_id: u32,
    responses: HashMap<u32, Response>,
    pushes: VecDeque<(u32, Push)>,
    /// The protocol version its Hello asks for (the oldest, unless a test
    /// says otherwise), and reads responses in.
    version: u16,
}

impl Conn {
    pub(crate) async fn open(addr: SocketAddr) -> Conn {
        Conn::open_as(addr, None).await
    }

    /// A connection whose handshake presented `token`.
    pub(crate) async fn open_as(addr: SocketAddr, token: Option<&str>) -> Conn {
        let mut conn = Conn::connect(addr).await;
        let hello = conn.hello("queue-test", token).await.unwrap();
        assert!(matches!(hello, ResponseBody::HelloOk(_)));
        conn
    }

    /// A connection that has not made its handshake yet.
    pub(crate) async fn connect(addr: SocketAddr) -> Conn {
        Conn {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
            next_id: 1,
            responses: HashMap::new(),
            pushes: VecDeque::new(),
            version: p::PROTOCOL_VERSION_MIN,
        }
    }

    pub(crate) async fn hello(
        &mut self,
        client_id: &str,
        token: Option<&str>,
    ) -> Result<ResponseBody, WireError> {
        self.call(Request::Hello(p::Hello {
            min_version: self.version,
            max_version: self.version,
            client_id: client_id.into(),
            token: token.map(str::to_owned),
        }))
        .await
    }

    pub(crate) async fn send(&mut self, request: Request) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        let mut out = BytesMut::new();
        // In the layout of its version, as the client sends it.
        request
            .for_version(self.version)
            .encode(id, &mut out)
            .unwrap();
        self.stream.write_all(&out).await.unwrap();
        id
    }

    /// Reads one frame and files it; false if none arrived within `wait`.
    pub(crate) async fn read_one(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(frame) = p::decode_frame(&mut self.buf).unwrap() {
                match frame.kind {
                    p::FrameKind::Response => {
                        let response =
                            Response::decode_at(self.version, frame.op, frame.body).unwrap();
                        self.responses.insert(frame.correlation_id, response);
                    }
                    p::FrameKind::Push => {
                        let push = Push::decode(frame.op, frame.body).unwrap();
                        self.pushes.push_back((frame.correlation_id, push));
                    }
                    p::FrameKind::Request => panic!("the server sent a request frame"),
                }
                return true;
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await;
            match read {
                Err(_) => return false,
                Ok(Ok(0)) => panic!("the server closed the connection"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("read failed: {e}"),
            }
        }
    }

    pub(crate) async fn response(&mut self, id: u32) -> Result<ResponseBody, WireError> {
        loop {
            if let Some(r) = self.responses.remove(&id) {
                return r.into_result();
            }
            assert!(
                self.read_one(FRAME_TIMEOUT).await,
                "no response to request {id}"
            );
        }
    }

    pub(crate) async fn call(&mut self, request: Request) -> Result<ResponseBody, WireError> {
        let id = self.send(request).await;
        self.response(id).await
    }

    /// The next push, if one arrives within `wait`.
    pub(crate) async fn push(&mut self, wait: Duration) -> Option<(u32, Push)> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(push) = self.pushes.pop_front() {
                return Some(push);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.read_one(left).await {
                return None;
            }
        }
    }

    pub(crate) async fn create_topic(&mut self, name: &str, partitions: u32) {
        let body = self
            .call(Request::CreateTopic(p::CreateTopic {
                name: name.into(),
                partitions,
                config: p::TopicConfig::default(),
            }))
            .await
            .unwrap();
        assert_eq!(body, ResponseBody::TopicCreated { name: name.into() });
    }

    pub(crate) async fn create_queue(&mut self, topic: &str, name: &str) -> Result<(), WireError> {
        self.call(Request::CreateSubscription(queue_settings(topic, name)))
            .await
            .map(|body| assert_eq!(body, ResponseBody::SubscriptionCreated))
    }

    pub(crate) async fn produce(&mut self, topic: &str, values: &[&str]) {
        let mut b = BatchBuilder::new();
        for v in values {
            b.push(&NewRecord::value(v.as_bytes().to_vec(), now_ms()))
                .unwrap();
        }
        let body = self
            .call(Request::Produce(p::Produce {
                topic: topic.into(),
                routing: p::Routing::Partition(0),
                batch: Bytes::from(b.finish().unwrap()),
            }))
            .await
            .unwrap();
        assert!(matches!(body, ResponseBody::Produced(_)), "{body:?}");
    }

    pub(crate) async fn receive(
        &mut self,
        topic: &str,
        name: &str,
        max: u32,
        wait_ms: u32,
    ) -> Vec<p::LeasedMessage> {
        let body = self
            .call(receive_request(topic, name, max, wait_ms))
            .await
            .unwrap();
        messages(body)
    }

    pub(crate) async fn ack(
        &mut self,
        topic: &str,
        name: &str,
        receipts: &[&str],
    ) -> Vec<Option<WireCode>> {
        let body = self
            .call(Request::Ack(p::Ack {
                topic: topic.into(),
                name: name.into(),
                receipts: receipts.iter().map(|r| r.to_string()).collect(),
            }))
            .await
            .unwrap();
        let ResponseBody::Acked(codes) = body else {
            panic!("not acked: {body:?}");
        };
        codes
    }
}

pub(crate) fn queue_settings(topic: &str, name: &str) -> p::CreateSubscription {
    p::CreateSubscription {
        topic: topic.into(),
        name: name.into(),
        kind: p::SubscriptionKind::Queue,
        ack_timeout_ms: 30_000,
        max_deliveries: 5,
        dead_letter_topic: None,
        backoff: p::Backoff::Fixed { delay_ms: 0 },
        mode: p::DeliveryMode::AtLeastOnce,
        ordered: false,
        // Sent in the layout of the connection's version (`Conn::send`).
        push: None,
    }
}

pub(crate) fn receive_request(topic: &str, name: &str, max: u32, wait_ms: u32) -> Request {
    Request::Receive(p::Receive {
        topic: topic.into(),
        name: name.into(),
        max,
        wait_ms,
    })
}

fn delete_subscription(topic: &str, name: &str) -> Request {
    Request::DeleteSubscription(p::DeleteSubscription {
        topic: topic.into(),
        name: name.into(),
    })
}

fn redrive(topic: &str, name: &str) -> Request {
    Request::Redrive(p::Redrive {
        topic: topic.into(),
        name: name.into(),
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The leased messages of a Receive answer.
pub(crate) fn messages(body: ResponseBody) -> Vec<p::LeasedMessage> {
    let ResponseBody::Messages(messages) = body else {
        panic!("not messages: {body:?}");
    };
    messages
}

fn value(m: &p::LeasedMessage) -> &[u8] {
    m.value.as_deref().unwrap_or_default()
}

fn code(c: ErrorCode) -> Option<WireCode> {
    Some(c.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_ack_and_receipt_errors() {
    let (_server, mut c) = start_with_queue(2).await;
    // The same settings again are fine; different ones are refused.
    c.create_queue("jobs", "workers").await.unwrap();
    let err = c
        .call(Request::CreateSubscription(p::CreateSubscription {
            max_deliveries: 9,
            ..queue_settings("jobs", "workers")
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::GroupExists);

    c.produce("jobs", &["hello"]).await;
    let messages = c.receive("jobs", "workers", 10, 0).await;
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(value(m), b"hello");
    assert_eq!((m.partition, m.offset, m.deliveries), (0, 0, 1));
    assert!(!m.receipt.is_empty());
    assert!(m.lease_deadline_ms > now_ms());
    // Leased: nobody else gets it.
    assert!(c.receive("jobs", "workers", 10, 0).await.is_empty());

    let listed = c
        .call(Request::ListSubscriptions(p::ListSubscriptions {
            topic: Some("jobs".into()),
        }))
        .await
        .unwrap();
    let ResponseBody::Subscriptions(subs) = listed else {
        panic!("{listed:?}");
    };
    assert_eq!(subs.len(), 1);
    assert_eq!(
        (
            subs[0].name.as_str(),
            subs[0].leased,
            subs[0].max_deliveries
        ),
        ("workers", 1, 5)
    );

    let receipt = m.receipt.clone();
    assert_eq!(c.ack("jobs", "workers", &[&receipt]).await, vec![None]);
    // A second ack changes nothing and says why, per receipt.
    assert_eq!(
        c.ack("jobs", "workers", &[&receipt, "no-such-receipt", "0-999-1"])
            .await,
        vec![
            code(ErrorCode::LeaseExpired),
            code(ErrorCode::UnknownReceipt),
            code(ErrorCode::UnknownReceipt),
        ]
    );
    assert!(c.receive("jobs", "workers", 10, 0).await.is_empty());

    // Unknown subscription and topic are errors of the whole request.
    let err = c
        .call(receive_request("jobs", "nobody", 1, 0))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownSubscription);
    // Acks are answered on the connection's task: the same typed errors,
    // the subscription named first (also when the topic is missing).
    for topic in ["jobs", "missing"] {
        let err = c
            .call(Request::Ack(p::Ack {
                topic: topic.into(),
                name: "nobody".into(),
                receipts: vec!["0-0-1".into()],
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownSubscription, "topic {topic}");
    }
    let err = c.create_queue("missing", "workers").await.unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownTopic);

    // Stream subscriptions are consumer groups: creating one only validates.
    let body = c
        .call(Request::CreateSubscription(p::CreateSubscription {
            kind: p::SubscriptionKind::Stream,
            ..queue_settings("jobs", "billing")
        }))
        .await
        .unwrap();
    assert_eq!(body, ResponseBody::SubscriptionCreated);

    let body = c
        .call(delete_subscription("jobs", "workers"))
        .await
        .unwrap();
    assert_eq!(body, ResponseBody::SubscriptionDeleted);
    let err = c
        .call(delete_subscription("jobs", "workers"))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownSubscription);
}

/// ALTER_SUBSCRIPTION (a new op: any version may send it) changes the
/// settings LIST_SUBSCRIPTIONS shows; the push settings only to a client
/// of version 2, a version-1 client reading the layout it knows.
/// Version 2's CREATE_SUBSCRIPTION carries the push settings, checked as
/// over HTTP (the outbound allow-list); version 1's layout still creates
/// subscriptions, without them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_created_with_push_settings_in_version_2() {
    let (server, mut old) = start_with_queue(1).await;
    let mut new = Conn::connect(server.addr).await;
    new.version = p::PROTOCOL_VERSION;
    new.hello("v2", None).await.unwrap();
    let with_push = |name: &str, endpoint: &str| {
        Request::CreateSubscription(p::CreateSubscription {
            push: Some(p::SubscriptionPush {
                endpoint: Some(endpoint.into()),
                max_in_flight: 3,
            }),
            ..queue_settings("jobs", name)
        })
    };
    let created = new.call(with_push("pushed", "http://127.0.0.1:9/in")).await;
    assert_eq!(created, Ok(ResponseBody::SubscriptionCreated));
    let err = new
        .call(with_push("refused", "http://example.com/in"))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidRequest, "{err:?}");
    // Version 1: the old layout, no push settings.
    let created = old
        .call(Request::CreateSubscription(queue_settings("jobs", "plain")))
        .await;
    assert_eq!(created, Ok(ResponseBody::SubscriptionCreated));

    let listed = new
        .call(Request::ListSubscriptions(p::ListSubscriptions {
            topic: Some("jobs".into()),
        }))
        .await
        .unwrap();
    let ResponseBody::Subscriptions(subs) = listed else {
        panic!("{listed:?}");
    };
    let push_of = |name: &str| subs.iter().find(|s| s.name == name).map(|s| s.push.clone());
    assert_eq!(
        push_of("pushed"),
        Some(Some(p::SubscriptionPush {
            endpoint: Some("http://127.0.0.1:9/in".into()),
            max_in_flight: 3,
        }))
    );
    assert_eq!(
        push_of("plain"),
        Some(Some(p::SubscriptionPush {
            endpoint: None,
            max_in_flight: 16,
        }))
    );
    assert_eq!(push_of("refused"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_subscriptions_are_listed_in_each_connections_version() {
    let (server, mut old) = start_with_queue(1).await;
    let altered = old
        .call(Request::AlterSubscription(p::AlterSubscription {
            topic: "jobs".into(),
            name: "workers".into(),
            ack_timeout_ms: Some(1_000),
            max_deliveries: Some(2),
            dead_letter_topic: p::SettingChange::Unchanged,
            backoff: None,
            push_endpoint: p::SettingChange::Set("http://127.0.0.1:9/in".into()),
            max_in_flight: Some(3),
        }))
        .await;
    assert_eq!(altered, Ok(ResponseBody::SubscriptionAltered));
    let mut new = Conn::connect(server.addr).await;
    new.version = p::PROTOCOL_VERSION;
    let hello = new.hello("v2", None).await.unwrap();
    let ResponseBody::HelloOk(ok) = hello else {
        panic!("{hello:?}")
    };
    assert_eq!(ok.version, p::PROTOCOL_VERSION);
    for (conn, push) in [
        (&mut old, None),
        (
            &mut new,
            Some(p::SubscriptionPush {
                endpoint: Some("http://127.0.0.1:9/in".into()),
                max_in_flight: 3,
            }),
        ),
    ] {
        let listed = conn
            .call(Request::ListSubscriptions(p::ListSubscriptions {
                topic: None,
            }))
            .await
            .unwrap();
        let ResponseBody::Subscriptions(subs) = listed else {
            panic!("{listed:?}");
        };
        assert_eq!(
            (
                subs[0].ack_timeout_ms,
                subs[0].max_deliveries,
                &subs[0].push
            ),
            (1_000, 2, &push)
        );
    }
    // Refused as at creation.
    let err = old
        .call(Request::AlterSubscription(p::AlterSubscription {
            topic: "jobs".into(),
            name: "workers".into(),
            ack_timeout_ms: Some(0),
            max_deliveries: None,
            dead_letter_topic: p::SettingChange::Unchanged,
            backoff: None,
            push_endpoint: p::SettingChange::Unchanged,
            max_in_flight: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidConfig);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_extend_and_redrive() {
    let (_server, mut c) = start_with_queue(1).await;
    c.produce("jobs", &["a", "b"]).await;
    let messages = c.receive("jobs", "workers", 10, 0).await;
    assert_eq!(messages.len(), 2);
    let (a, b) = (messages[0].receipt.clone(), messages[1].receipt.clone());

    let body = c
        .call(Request::ExtendLease(p::ExtendLease {
            topic: "jobs".into(),
            name: "workers".into(),
            receipts: vec![b.clone(), "bogus".into()],
            extend_ms: 60_000,
        }))
        .await
        .unwrap();
    assert_eq!(
        body,
        ResponseBody::LeasesExtended(vec![None, code(ErrorCode::UnknownReceipt)])
    );

    let body = c
        .call(Request::Nack(p::Nack {
            topic: "jobs".into(),
            name: "workers".into(),
            receipts: vec![a.clone()],
            delay_ms: 0,
            error: Some("flaky".into()),
        }))
        .await
        .unwrap();
    assert_eq!(body, ResponseBody::Nacked(vec![None]));
    // Back at once, as its second delivery, under a new receipt.
    let again = c.receive("jobs", "workers", 10, 0).await;
    assert_eq!(again.len(), 1);
    assert_eq!(value(&again[0]), b"a");
    assert_eq!(again[0].deliveries, 2);
    assert_ne!(again[0].receipt, a);
    assert_eq!(
        c.ack("jobs", "workers", &[&a]).await,
        vec![code(ErrorCode::LeaseExpired)]
    );

    // A nack with a delay keeps it away until the delay has passed; a
    // long poll wakes up for it without any append.
    let receipt = again[0].receipt.clone();
    let body = c
        .call(Request::Nack(p::Nack {
            topic: "jobs".into(),
            name: "workers".into(),
            receipts: vec![receipt],
            delay_ms: 300,
            error: None,
        }))
        .await
        .unwrap();
    assert_eq!(body, ResponseBody::Nacked(vec![None]));
    let started = Instant::now();
    let third = c.receive("jobs", "workers", 10, 5_000).await;
    let waited = started.elapsed();
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].deliveries, 3);
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert!(waited < Duration::from_millis(2_500), "{waited:?}");

    // No dead-letter topic, nothing to redrive from.
    let err = c.call(redrive("jobs", "workers")).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidRequest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_returns_as_soon_as_a_message_arrives() {
    let (server, mut consumer) = start_with_queue(3).await;
    let mut producer = Conn::open(server.addr).await;

    // Nothing there: an empty answer after the wait.
    let started = Instant::now();
    assert!(consumer.receive("jobs", "workers", 1, 200).await.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(190));

    let wait_ms = 10_000;
    let started = Instant::now();
    let id = consumer
        .send(receive_request("jobs", "workers", 5, wait_ms))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    producer.produce("jobs", &["wake up"]).await;
    let body = consumer.response(id).await.unwrap();
    let elapsed = started.elapsed();
    let messages = messages(body);
    assert_eq!(messages.len(), 1);
    assert_eq!(value(&messages[0]), b"wake up");
    assert!(
        elapsed < Duration::from_millis(3_000),
        "took {elapsed:?} of a {wait_ms} ms wait"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_push_stays_within_credit() {
    let (_server, mut c) = start_with_queue(1).await;
    c.produce("jobs", &["1", "2", "3", "4", "5"]).await;

    let body = c
        .call(Request::SubscribeQueue(p::SubscribeQueue {
            subscription_id: 7,
            topic: "jobs".into(),
            name: "workers".into(),
            credit_messages: 2,
            credit_bytes: 1 << 20,
        }))
        .await
        .unwrap();
    assert_eq!(body, ResponseBody::QueueSubscribed { subscription_id: 7 });

    let mut got = Vec::new();
    while got.len() < 2 {
        let (id, push) = c.push(FRAME_TIMEOUT).await.expect("a delivery");
        assert_eq!(id, 7);
        let Push::QueueDeliver(d) = push else {
            panic!("{push:?}");
        };
        got.extend(d.messages);
    }
    assert_eq!(got.len(), 2, "delivered beyond the message credit");
    // Credit used up: nothing more arrives.
    assert!(c.push(Duration::from_millis(500)).await.is_none());

    let body = c
        .call(Request::Credit(p::Credit {
            subscription_id: 7,
            messages: 10,
            bytes: 1 << 20,
        }))
        .await
        .unwrap();
    assert_eq!(body, ResponseBody::CreditGranted);
    while got.len() < 5 {
        let (_, push) = c.push(FRAME_TIMEOUT).await.expect("a delivery");
        let Push::QueueDeliver(d) = push else {
            panic!("{push:?}");
        };
        got.extend(d.messages);
    }
    let values: Vec<&[u8]> = got.iter().map(value).collect();
    assert_eq!(values, [b"1", b"2", b"3", b"4", b"5"]);

    // Pushed leases are acked like received ones.
    let receipts: Vec<&str> = got.iter().map(|m| m.receipt.as_str()).collect();
    assert_eq!(c.ack("jobs", "workers", &receipts).await, vec![None; 5]);

    // A message produced now arrives while credit remains.
    c.produce("jobs", &["6"]).await;
    let (_, push) = c.push(FRAME_TIMEOUT).await.expect("a delivery");
    let Push::QueueDeliver(d) = push else {
        panic!("{push:?}");
    };
    assert_eq!(value(&d.messages[0]), b"6");

    let body = c
        .call(Request::Unsubscribe(p::Unsubscribe { subscription_id: 7 }))
        .await
        .unwrap();
    assert_eq!(body, ResponseBody::Unsubscribed);
    c.produce("jobs", &["7"]).await;
    assert!(c.push(Duration::from_millis(300)).await.is_none());
    let err = c
        .call(Request::Credit(p::Credit {
            subscription_id: 7,
            messages: 1,
            bytes: 1,
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownSubscription);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_queue_wakes_a_waiting_receiver_when_a_key_is_freed() {
    let server = TestServer::start().await;
    let mut a = Conn::open(server.addr).await;
    let mut b = Conn::open(server.addr).await;
    a.create_topic("jobs", 1).await;
    let body = a
        .call(Request::CreateSubscription(p::CreateSubscription {
            ordered: true,
            ..queue_settings("jobs", "workers")
        }))
        .await
        .unwrap();
    assert_eq!(body, ResponseBody::SubscriptionCreated);
    let mut batch = BatchBuilder::new();
    for (key, v) in [("k", "first"), ("k", "second"), ("other", "free")] {
        batch
            .push(&NewRecord {
                key: Some(key.as_bytes().to_vec()),
                value: Some(v.as_bytes().to_vec()),
                headers: vec![],
                timestamp_ms: now_ms(),
            })
            .unwrap();
    }
    a.call(Request::Produce(p::Produce {
        topic: "jobs".into(),
        routing: p::Routing::Partition(0),
        batch: Bytes::from(batch.finish().unwrap()),
    }))
    .await
    .unwrap();

    // One message per key in flight: "second" waits for "first".
    let leased = a.receive("jobs", "workers", 10, 0).await;
    let values: Vec<&[u8]> = leased.iter().map(value).collect();
    assert_eq!(values, [&b"first"[..], b"free"]);

    let id = b.send(receive_request("jobs", "workers", 10, 10_000)).await;
    // Long enough for the waiter to have backed off its polling.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let acked = Instant::now();
    let receipt = leased[0].receipt.clone();
    assert_eq!(a.ack("jobs", "workers", &[&receipt]).await, vec![None]);
    let body = b.response(id).await.unwrap();
    let elapsed = acked.elapsed();
    let messages = messages(body);
    assert_eq!(messages.len(), 1);
    assert_eq!(value(&messages[0]), b"second");
    // Woken by the ack, not by its next look (which would be over 500 ms on).
    assert!(elapsed < Duration::from_millis(400), "{elapsed:?}");
}
