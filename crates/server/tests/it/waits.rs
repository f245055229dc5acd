//! Waits the operations layer owns, seen through the HTTP API: a nack
//! wakes a waiting receive at once (the broker announces settled leases to
//! every front end), long polls end when the server shuts down, and a
//! request wait ends when its record is finished.

use serde_json::Value;
use spool_testkit::http::Reply;
use spool_testkit::http::{get, post};
use spool_testkit::TestServer;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A topic `jobs` with a queue subscription `w` (30 s leases) and one message.
async fn queue_with_one_message(addr: SocketAddr) {
    let r = post(addr, "/v1/topics", r#"{"name":"jobs"}"#).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let sub = r#"{"name":"w","ack_timeout_ms":30000}"#;
    let r = post(addr, "/v1/topics/jobs/subscriptions", sub).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let msg = r#"{"messages":[{"value":"one"}]}"#;
    let r = post(addr, "/v1/topics/jobs/messages", msg).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

const RECEIVE: &str = "/v1/topics/jobs/subscriptions/w/receive";
const WORK: &str = "/v1/topics/resize/subscriptions/workers/receive";

/// Submits a request to the queue `resize`; answers its ID.
async fn submit_resize(addr: SocketAddr) -> String {
    let r = post(
        addr,
        "/v1/requests",
        r#"{"queue":"resize","payload":{"w":1}}"#,
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

/// Starts a long-polling POST of `body` to `path`, lets it start waiting
/// (and make its first look), then does `act`. Answers the long poll's
/// reply and how long after `act` began it came.
async fn long_poll_around(
    addr: SocketAddr,
    path: &'static str,
    body: &'static str,
    act: impl Future<Output = ()>,
) -> (Reply, Duration) {
    let waiter = tokio::spawn(async move {
        let r = post(addr, path, body).await;
        (r, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let acted_at = Instant::now();
    act.await;
    let (reply, returned_at) = waiter.await.unwrap();
    (reply, returned_at.duration_since(acted_at))
}

/// The message is leased; a second receiver waits for it. An HTTP nack
/// gives it back, and the waiter must have it long before the 1 s backstop
/// re-check (before the broker announced settled leases, an HTTP nack woke
/// nobody and the waiter saw the message only at that re-check).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_nack_wakes_a_waiting_receive_at_once() {
    let server = TestServer::start_http().await;
    let addr = server.http();
    queue_with_one_message(addr).await;
    let first = post(addr, RECEIVE, r#"{"max":1}"#).await;
    let receipt = first.body["messages"][0]["receipt"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = format!(r#"{{"receipts":["{receipt}"]}}"#);
    let nack = async {
        let r = post(addr, "/v1/topics/jobs/subscriptions/w/nack", &body).await;
        assert_eq!(r.status, 200, "{}", r.body);
    };
    let wait = r#"{"max":1,"wait_ms":10000}"#;
    let (got, after_nack) = long_poll_around(addr, RECEIVE, wait, nack).await;
    let messages = got.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{}", got.body);
    assert_eq!(messages[0]["value"], "one");
    assert!(
        after_nack < Duration::from_millis(600),
        "the waiter got the message {after_nack:?} after the nack"
    );
}

/// Long polls over HTTP answer with what they have once the server starts
/// shutting down, instead of holding the shutdown until its grace period
/// (10 s) runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_long_polls_end_when_the_server_shuts_down() {
    let mut server = TestServer::start_http().await;
    let addr = server.http();
    queue_with_one_message(addr).await;
    // Lease the only message, so the receive below has nothing to wait for.
    let r = post(addr, RECEIVE, r#"{"max":1}"#).await;
    assert_eq!(r.body["messages"].as_array().map(Vec::len), Some(1));
    let receive =
        tokio::spawn(async move { post(addr, RECEIVE, r#"{"max":1,"wait_ms":60000}"#).await });
    let fetch =
        tokio::spawn(
            async move { get(addr, "/v1/topics/jobs/messages?offset=1&wait_ms=60000").await },
        );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped_at = Instant::now();
    server.stop();
    let (receive, fetch) = (receive.await.unwrap(), fetch.await.unwrap());
    let took = stopped_at.elapsed();
    assert_eq!(receive.status, 200, "{}", receive.body);
    assert_eq!(receive.body["messages"], Value::Array(vec![]));
    assert_eq!(fetch.status, 200, "{}", fetch.body);
    assert_eq!(fetch.body["messages"], Value::Array(vec![]));
    assert!(
        took < Duration::from_millis(500),
        "the long polls ended {took:?} after shutdown began"
    );
}

/// A status wait ends as soon as a worker completes the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_wait_ends_when_the_request_is_completed() {
    let server = TestServer::start_http().await;
    let addr = server.http();
    let id = submit_resize(addr).await;
    let worker = post(addr, WORK, r#"{"max":1}"#).await;
    assert_eq!(worker.body["messages"].as_array().map(Vec::len), Some(1));
    let path = format!("/v1/requests/{id}?wait_ms=10000");
    let waiter = tokio::spawn(async move {
        let r = get(addr, &path).await;
        (r, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let completed_at = Instant::now();
    let r = post(
        addr,
        &format!("/v1/requests/{id}/complete"),
        r#"{"result":{"ok":true}}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (status, returned_at) = waiter.await.unwrap();
    assert_eq!(status.body["status"], "succeeded", "{}", status.body);
    assert!(status.header("retry-after").is_none());
    assert!(returned_at.duration_since(completed_at) < Duration::from_secs(2));
}

/// A server whose clients have all gone stops at once: nothing of its own
/// may keep the broker (serve's handles on it once made every shutdown
/// wait out the 2 s allowed for clients still unwinding).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_server_stops_at_once() {
    let server = TestServer::start_http().await;
    queue_with_one_message(server.http()).await;
    let began = Instant::now();
    server.shutdown().await;
    let took = began.elapsed();
    assert!(
        took < Duration::from_millis(1_000),
        "shutdown took {took:?}"
    );
}

/// A worker gives a request back over HTTP (`fail` with `retry`); its
/// message is ready again at once (the queue's `workers` subscription is
/// created here without a backoff, unlike the one a first submission
/// creates) and a worker waiting for work must get it long before the 1 s
/// re-check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_fail_with_retry_wakes_a_waiting_worker_at_once() {
    let server = TestServer::start_http().await;
    let addr = server.http();
    let r = post(addr, "/v1/topics", r#"{"name":"resize"}"#).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let sub = r#"{"name":"workers","backoff_ms":0}"#;
    let r = post(addr, "/v1/topics/resize/subscriptions", sub).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = submit_resize(addr).await;
    let first = post(addr, WORK, r#"{"max":1}"#).await;
    assert_eq!(first.body["messages"].as_array().map(Vec::len), Some(1));
    let fail = format!("/v1/requests/{id}/fail");
    let give_back = async {
        let r = post(addr, &fail, r#"{"error":"try again","retry":true}"#).await;
        assert_eq!(r.status, 200, "{}", r.body);
    };
    let wait = r#"{"max":1,"wait_ms":10000}"#;
    let (got, after_fail) = long_poll_around(addr, WORK, wait, give_back).await;
    assert_eq!(
        got.body["messages"].as_array().map(Vec::len),
        Some(1),
        "{}",
        got.body
    );
    assert!(
        after_fail < Duration::from_millis(600),
        "the waiting worker got the request {after_fail:?} after the fail"
    );
}
