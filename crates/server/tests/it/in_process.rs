//! `http::in_process`: the HTTP API as a plain tower service over a broker,
//! with no sockets (what the `http_json` fuzz target drives).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use spool_broker::subscription::SubscriptionSpec;
use spool_broker::{Broker, TopicConfig};
use std::sync::Arc;
use tower::ServiceExt;

async fn call(router: &axum::Router, path: &str, body: &str) -> (StatusCode, Value) {
    let req = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    send(router, req).await
}

async fn send(router: &axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let response = router.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// The router over a broker in a fresh directory with `topics` (one
/// partition each) and `queues` (topic, subscription).
fn router(topics: &[&str], queues: &[(&str, &str)]) -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _) = Broker::open(dir.path(), 1).unwrap();
    for topic in topics {
        broker
            .create_topic(topic, 1, TopicConfig::default(), 1)
            .unwrap();
    }
    for (topic, name) in queues {
        broker
            .create_subscription(SubscriptionSpec::new(topic, name), 1)
            .unwrap();
    }
    (spool_server::http::in_process(Arc::new(broker)), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_router_publishes_receives_and_refuses_bad_json() {
    let (router, _dir) = router(&["t"], &[("t", "w")]);

    let (status, doc) = call(
        &router,
        "/v1/topics/t/messages",
        r#"{"messages":[{"value":"hi"}]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["offsets"][0]["offset"], 0);

    let (status, doc) = call(&router, "/v1/topics/t/subscriptions/w/receive", "{}").await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["messages"][0]["value"], "hi");

    let (status, doc) = call(&router, "/v1/topics/t/messages", r#"{"messages":[{"valu"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{doc}");
    assert_eq!(doc["code"], "INVALID_REQUEST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_with_known_message_ids_answers_each_messages_own_offset() {
    let (router, _dir) = router(&["t"], &[]);
    let publish = |ids: &[&str]| {
        let messages: Vec<Value> = ids
            .iter()
            .map(|id| serde_json::json!({"value": id, "message_id": id, "partition": 0}))
            .collect();
        serde_json::json!({ "messages": messages }).to_string()
    };
    let offsets = |doc: &Value| -> Vec<i64> {
        doc["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["offset"].as_i64().unwrap())
            .collect()
    };
    let (_, doc) = call(&router, "/v1/topics/t/messages", &publish(&["a", "b"])).await;
    assert_eq!(offsets(&doc), [0, 1]);
    let (status, doc) = call(&router, "/v1/topics/t/messages", &publish(&["b", "c", "a"])).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(offsets(&doc), [1, 2, 0], "{doc}");
    // The suppressed duplicates are marked; the new message is not.
    let marked: Vec<&Value> = doc["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["duplicate"])
        .collect();
    assert_eq!(
        marked,
        [&Value::Bool(true), &Value::Null, &Value::Bool(true)],
        "{doc}"
    );
    // All of them duplicates: all marked.
    let (_, doc) = call(&router, "/v1/topics/t/messages", &publish(&["c"])).await;
    assert_eq!(doc["offsets"][0]["duplicate"], true, "{doc}");
    assert_eq!(doc["offsets"][0]["offset"], 2, "{doc}");
}

/// A body that never sends a byte.
fn silent_body() -> Body {
    Body::from_stream(futures::stream::pending::<
        Result<bytes::Bytes, std::io::Error>,
    >())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limits_are_per_route_and_checked_before_the_body_is_read() {
    use spool_server::http::{HTTP_BODY_BYTES_MAX, HTTP_CONTROL_BODY_BYTES_MAX};
    let (router, _dir) = router(&["t"], &[]);

    // A declared length over the limit is refused without reading a byte
    // (the body here never arrives: waiting for it would hang the test).
    let req = Request::post("/v1/topics")
        .header("content-type", "application/json")
        .header("content-length", (8 << 20).to_string())
        .body(silent_body())
        .unwrap();
    let (status, doc) = send(&router, req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{doc}");
    assert_eq!(doc["code"], "FRAME_TOO_LARGE");
    assert!(
        doc["detail"].as_str().unwrap().contains("POST /v1/topics"),
        "{doc}"
    );

    // Without a length, the limit holds as the bytes arrive.
    let chunks = (0..3).map(|_| {
        Ok::<_, std::io::Error>(bytes::Bytes::from(vec![
            b' ';
            HTTP_CONTROL_BODY_BYTES_MAX / 2
        ]))
    });
    let req = Request::post("/v1/topics")
        .header("content-type", "application/json")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    let (status, doc) = send(&router, req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{doc}");
    assert_eq!(doc["code"], "FRAME_TOO_LARGE");

    // The message routes take bodies far over the control limit...
    let value = "x".repeat(HTTP_CONTROL_BODY_BYTES_MAX / 4);
    let messages: Vec<Value> = (0..6)
        .map(|_| serde_json::json!({ "value": value }))
        .collect();
    let body = serde_json::json!({ "messages": messages }).to_string();
    assert!(body.len() > HTTP_CONTROL_BODY_BYTES_MAX);
    let (status, doc) = call(&router, "/v1/topics/t/messages", &body).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["offsets"].as_array().unwrap().len(), 6);
    // ...up to their own.
    let req = Request::post("/v1/topics/t/messages")
        .header("content-length", (HTTP_BODY_BYTES_MAX + 1).to_string())
        .body(silent_body())
        .unwrap();
    let (status, doc) = send(&router, req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{doc}");
}

#[tokio::test(start_paused = true)]
async fn a_body_that_never_arrives_is_refused_at_its_deadline() {
    use spool_server::http::HTTP_BODY_READ_TIMEOUT_MS;
    let (router, _dir) = router(&[], &[]);
    let started = tokio::time::Instant::now();
    let req = Request::post("/v1/topics")
        .header("content-type", "application/json")
        .header("content-length", "100")
        .body(silent_body())
        .unwrap();
    let (status, doc) = send(&router, req).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{doc}");
    assert_eq!(doc["code"], "TIMEOUT");
    assert_eq!(doc["status"], 408);
    // Paused time: this is the deadline itself, not a measured wait.
    assert!(started.elapsed() >= std::time::Duration::from_millis(HTTP_BODY_READ_TIMEOUT_MS));
}
