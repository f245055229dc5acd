//! Requests the server sends out (request callbacks, HTTP push): which URLs
//! it accepts, what a record tells of a failed delivery, and the signature
//! a push carries.

use serde_json::{json, Value};
use spool_testkit::http::{get, post};
use spool_testkit::receiver::signature_valid;
use spool_testkit::server::CALLBACK_SECRET;
use spool_testkit::{Receiver, TestServer};
use std::net::SocketAddr;
use std::time::Duration;

/// Submits a request with `callback_url`, answering the HTTP reply.
async fn submit(addr: SocketAddr, queue: &str, callback_url: &str) -> spool_testkit::Reply {
    let body = json!({"queue": queue, "payload": "x", "callback_url": callback_url});
    post(addr, "/v1/requests", &body.to_string()).await
}

/// Takes the next request of `queue` as a worker and completes it.
async fn complete_next(addr: SocketAddr, queue: &str) {
    let path = format!("/v1/topics/{queue}/subscriptions/workers/receive");
    let w = post(addr, &path, r#"{"max":1,"wait_ms":2000}"#).await;
    let id = w.body["messages"][0]["headers"]["spool-request-id"]
        .as_str()
        .unwrap_or_else(|| panic!("no request on {queue}: {}", w.body))
        .to_owned();
    let done = post(
        addr,
        &format!("/v1/requests/{id}/complete"),
        r#"{"result":1}"#,
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.body);
}

/// The record's `callback.last_error`, once its first attempt is recorded.
async fn first_error(addr: SocketAddr, id: &str) -> String {
    for _ in 0..100 {
        let r = get(addr, &format!("/v1/requests/{id}")).await;
        if let Some(e) = r.body["callback"]["last_error"].as_str() {
            return e.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no callback attempt recorded for {id}");
}

/// Callbacks must not work as a port scanner of the server's network: a
/// closed port and an open one that does not speak HTTP read the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_record_does_not_tell_an_open_port_from_a_closed_one() {
    let server = TestServer::start_http().await;
    let addr = server.http();
    // Closed: bound, then let go. Open: accepts, then hangs up unanswered.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open_addr = open.local_addr().unwrap();
    std::thread::spawn(move || open.incoming().for_each(drop));

    let mut errors = Vec::new();
    for (queue, target) in [("to.closed", closed), ("to.open", open_addr)] {
        let r = submit(addr, queue, &format!("http://{target}/cb")).await;
        assert_eq!(r.status, 202, "{}", r.body);
        let id = r.body["id"].as_str().unwrap().to_owned();
        complete_next(addr, queue).await;
        errors.push(first_error(addr, &id).await);
    }
    assert_eq!(errors[0], errors[1], "the records differ: {errors:?}");
    assert_eq!(errors[0], spool_server::outbound::UNREACHABLE);
    let lower = errors[0].to_lowercase();
    assert!(
        !lower.contains("refused") && !lower.contains("connect") && !lower.contains("os error"),
        "{errors:?}"
    );
}

/// The documented default allows `::1`, so `[::1]` is accepted; a URL with
/// credentials is refused whatever its host, with a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_urls_are_checked_in_their_canonical_form() {
    let server = TestServer::start_http().await;
    let addr = server.http();
    for url in [
        "http://[::1]:9/cb",
        "http://LOCALHOST:9/cb",
        "http://2130706433:9/cb",
    ] {
        let r = submit(addr, "forms", url).await;
        assert_eq!(r.status, 202, "{url}: {}", r.body);
    }
    for url in [
        "http://user:pw@127.0.0.1:9/cb",
        "http://user@localhost:9/cb",
    ] {
        let r = submit(addr, "forms", url).await;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (400, Some("INVALID_REQUEST")),
            "{url}: {}",
            r.body
        );
        let detail = r.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("user name or password"), "{}", r.body);
    }
    let r = submit(addr, "forms", "http://[::ffff:127.0.0.1]:9/cb").await;
    assert_eq!(r.status, 400, "{}", r.body);
}

/// A push delivery is signed like a request callback, with the same secret
/// and header; the check here follows the documented recipe, not the
/// server's code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_delivery_carries_a_valid_signature() {
    let server = TestServer::start_http().await;
    let addr = server.http();
    let receiver = Receiver::start(200);
    let r = post(addr, "/v1/topics", r#"{"name":"signed"}"#).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let sub = json!({"name": "pusher", "kind": "queue",
                     "push_endpoint": format!("http://{}/in", receiver.addr)});
    let r = post(addr, "/v1/topics/signed/subscriptions", &sub.to_string()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = post(
        addr,
        "/v1/topics/signed/messages",
        r#"{"messages":[{"value":"hello"}]}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for _ in 0..100 {
        if !receiver.got.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (body, sig) = receiver.got.lock().unwrap()[0].clone();
    let pushed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(pushed["value"], "hello", "{body}");
    assert!(
        signature_valid(CALLBACK_SECRET.as_bytes(), &body, &sig),
        "bad signature {sig:?} for {body}"
    );
    // Not valid under another key, nor for another body.
    assert!(!signature_valid(b"another-secret-of-length", &body, &sig));
    assert!(!signature_valid(
        CALLBACK_SECRET.as_bytes(),
        &body.replace("hello", "HELLO"),
        &sig
    ));
}
