//! Connection rules over the binary protocol, against an in-process
//! server: the handshake's refusals, the limits one connection lives
//! within, and what a revoked token ends.

use crate::queues::{receive_request, Conn, FRAME_TIMEOUT};
use spool_proto::{self as p, Push, Request, ResponseBody};
use spool_server::auth::Secret;
use spool_testkit::TestServer;
use spool_types::limits::{CLIENT_ID_LEN_MAX, CONNECTION_SUBSCRIPTIONS_MAX};
use spool_types::ErrorCode;
use std::collections::BTreeMap;
use std::time::Duration;

/// A second Hello is answered `HANDSHAKE_REQUIRED`, as documented, and
/// the connection goes on (it was `INVALID_REQUEST`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_hello_is_refused_and_the_connection_goes_on() {
    let server = TestServer::start().await;
    let mut c = Conn::open(server.addr).await;
    let err = c.hello("again", None).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::HandshakeRequired, "{err:?}");
    assert!(err.message.contains("already"), "{}", err.message);
    assert_eq!(c.call(Request::Ping).await.unwrap(), ResponseBody::Pong);
}

/// A `client_id` over `CLIENT_ID_LEN_MAX` bytes is refused at the
/// handshake with a message naming the limit (a 5,000-byte one was
/// accepted); one of exactly the limit is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_over_its_limit_is_refused_at_the_handshake() {
    let server = TestServer::start().await;
    let mut c = Conn::connect(server.addr).await;
    let err = c.hello(&"x".repeat(5_000), None).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidRequest, "{err:?}");
    let limit = CLIENT_ID_LEN_MAX.to_string();
    assert!(
        err.message.contains("client_id") && err.message.contains(&limit),
        "{}",
        err.message
    );

    let mut c = Conn::connect(server.addr).await;
    let id = "x".repeat(CLIENT_ID_LEN_MAX);
    assert!(c.hello(&id, None).await.is_ok());
    assert_eq!(c.call(Request::Ping).await.unwrap(), ResponseBody::Pong);
}

/// A stream push subscription of `jobs` with `credit` messages (and 1 MiB).
fn subscribe_with(id: u32, credit: u32) -> Request {
    Request::Subscribe(p::Subscribe {
        subscription_id: id,
        topics: vec!["jobs".into()],
        group: None,
        start: p::SubscribeStart::Latest,
        credit_messages: credit,
        credit_bytes: if credit > 0 { 1 << 20 } else { 0 },
    })
}

/// A queue push subscription of `jobs`/`workers` with `credit` messages.
fn subscribe_queue_with(id: u32, credit: u32) -> Request {
    Request::SubscribeQueue(p::SubscribeQueue {
        subscription_id: id,
        topic: "jobs".into(),
        name: "workers".into(),
        credit_messages: credit,
        credit_bytes: if credit > 0 { 1 << 20 } else { 0 },
    })
}

fn subscribe(id: u32) -> Request {
    subscribe_with(id, 0)
}

fn subscribe_queue(id: u32) -> Request {
    subscribe_queue_with(id, 0)
}

/// Push subscriptions of both kinds count against one limit per
/// connection; the next is refused `TOO_MANY_IN_FLIGHT`, the connection
/// goes on, and an unsubscribe makes room again. (There was no limit:
/// 20,000 subscriptions without credit held 77 MB.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_subscriptions_per_connection_are_limited() {
    let server = TestServer::start().await;
    let mut c = Conn::open(server.addr).await;
    c.create_topic("jobs", 1).await;
    c.create_queue("jobs", "workers").await.unwrap();
    let max = CONNECTION_SUBSCRIPTIONS_MAX as u32;
    let mut sent = Vec::new();
    for id in 0..max - 1 {
        sent.push(c.send(subscribe(id)).await);
    }
    sent.push(c.send(subscribe_queue(max - 1)).await);
    for cid in sent {
        c.response(cid).await.unwrap();
    }

    for refused in [subscribe(max), subscribe_queue(max)] {
        let err = c.call(refused).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::TooManyInFlight, "{err:?}");
        assert!(err.message.contains(&max.to_string()), "{}", err.message);
    }
    assert_eq!(c.call(Request::Ping).await.unwrap(), ResponseBody::Pong);

    let unsubscribe = Request::Unsubscribe(p::Unsubscribe { subscription_id: 0 });
    assert_eq!(
        c.call(unsubscribe).await.unwrap(),
        ResponseBody::Unsubscribed
    );
    assert_eq!(
        c.call(subscribe_queue(max)).await.unwrap(),
        ResponseBody::QueueSubscribed {
            subscription_id: max
        }
    );
}

const ADMIN: &str = "connection-test-admin-token";

/// A token revoked while its connection has push subscriptions of both
/// kinds and a RECEIVE waiting ends all three at once, with
/// `UNAUTHENTICATED`, although the client sends nothing more; a message
/// produced afterwards is neither pushed nor leased to it. (Both kinds of
/// subscription went on delivering, and leasing, to the revoked token.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_ends_its_subscriptions_and_waits_at_once() {
    let server = TestServer::start_with(|c| c.admin_token = Some(Secret::new(ADMIN))).await;
    let mut admin = Conn::open_as(server.addr, Some(ADMIN)).await;
    admin.create_topic("jobs", 1).await;
    admin.create_queue("jobs", "workers").await.unwrap();
    let created = admin
        .call(Request::CreateToken(p::CreateToken {
            name: "worker".into(),
            produce: vec![],
            consume: vec!["jobs".into()],
            admin: false,
        }))
        .await
        .unwrap();
    let ResponseBody::TokenCreated(created) = created else {
        panic!("{created:?}");
    };

    let mut worker = Conn::open_as(server.addr, Some(&created.token)).await;
    worker.call(subscribe_with(1, 100)).await.unwrap();
    worker.call(subscribe_queue_with(2, 100)).await.unwrap();
    // Both subscriptions deliver while the token is good.
    admin.produce("jobs", &["before"]).await;
    let mut delivered = BTreeMap::new();
    while delivered.len() < 2 {
        let (id, push) = worker.push(FRAME_TIMEOUT).await.expect("a delivery");
        delivered.insert(id, push);
    }
    assert!(matches!(delivered[&1], Push::Deliver(_)), "{delivered:?}");
    assert!(
        matches!(delivered[&2], Push::QueueDeliver(_)),
        "{delivered:?}"
    );
    // A RECEIVE, admitted (the PING after it is answered) and waiting.
    let waiting = worker
        .send(receive_request("jobs", "workers", 1, 30_000))
        .await;
    assert_eq!(
        worker.call(Request::Ping).await.unwrap(),
        ResponseBody::Pong
    );

    let revoke = Request::RevokeToken(p::RevokeToken {
        name: "worker".into(),
    });
    assert_eq!(
        admin.call(revoke).await.unwrap(),
        ResponseBody::TokenRevoked
    );

    let err = worker.response(waiting).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Unauthenticated, "{err:?}");
    let mut closed = BTreeMap::new();
    while closed.len() < 2 {
        let (id, push) = worker
            .push(Duration::from_secs(3))
            .await
            .expect("SubscriptionClosed for both subscriptions");
        let Push::SubscriptionClosed(e) = push else {
            panic!("subscription {id} delivered after the revocation: {push:?}");
        };
        closed.insert(id, e.code);
    }
    let unauthenticated = ErrorCode::Unauthenticated.into();
    assert_eq!(
        closed,
        BTreeMap::from([(1, unauthenticated), (2, unauthenticated)])
    );

    admin.produce("jobs", &["after"]).await;
    let after = admin.receive("jobs", "workers", 10, 2_000).await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].value.as_deref(), Some(&b"after"[..]));
    assert_eq!(after[0].deliveries, 1);
    assert!(worker.push(Duration::from_millis(200)).await.is_none());
}
