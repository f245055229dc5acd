//! `http::in_process`: the HTTP API as a plain tower service over a broker,
//! with no sockets (what the `http_json` fuzz target drives).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use spool_broker::queue::QueueSpec;
use spool_broker::{Broker, TopicConfig};
use std::sync::Arc;
use tower::ServiceExt;

async fn call(router: &axum::Router, path: &str, body: &str) -> (StatusCode, Value) {
    let req = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let response = router.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_router_publishes_receives_and_refuses_bad_json() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _) = Broker::open(dir.path(), 1).unwrap();
    broker
        .create_topic("t", 1, TopicConfig::default(), 1)
        .unwrap();
    broker.create_queue(QueueSpec::new("t", "w"), 1).unwrap();
    let router = spool_server::http::in_process(Arc::new(broker));

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
    let dir = tempfile::tempdir().unwrap();
    let (broker, _) = Broker::open(dir.path(), 1).unwrap();
    broker
        .create_topic("t", 1, TopicConfig::default(), 1)
        .unwrap();
    let router = spool_server::http::in_process(Arc::new(broker));
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
}
