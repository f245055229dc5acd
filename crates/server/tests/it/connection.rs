//! Connection rules over the binary protocol, against an in-process
//! server: the handshake's refusals and the limits one connection lives
//! within.

use crate::queues::Conn;
use spool_proto::{self as p, Request, ResponseBody};
use spool_testkit::TestServer;
use spool_types::limits::{CLIENT_ID_LEN_MAX, CONNECTION_SUBSCRIPTIONS_MAX};
use spool_types::ErrorCode;

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

/// A stream push subscription of `jobs` without credit.
fn subscribe(id: u32) -> Request {
    Request::Subscribe(p::Subscribe {
        subscription_id: id,
        topics: vec!["jobs".into()],
        group: None,
        start: p::SubscribeStart::Latest,
        credit_messages: 0,
        credit_bytes: 0,
    })
}

/// A queue push subscription of `jobs`/`workers` without credit.
fn subscribe_queue(id: u32) -> Request {
    Request::SubscribeQueue(p::SubscribeQueue {
        subscription_id: id,
        topic: "jobs".into(),
        name: "workers".into(),
        credit_messages: 0,
        credit_bytes: 0,
    })
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
