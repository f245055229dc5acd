//! The HTTP API against an in-process server on ephemeral ports, spoken to
//! with a deliberately tiny HTTP/1.1 client so nothing hides the wire.

use serde_json::{json, Value};
use spool_testkit::http::{call, get, post};
use spool_testkit::receiver::sign;
use spool_testkit::server::CALLBACK_SECRET;
use spool_testkit::{Receiver, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_messages_and_queue_subscriptions_over_http() {
    let server = TestServer::start_http().await;
    let addr = server.http();
    assert_eq!(get(addr, "/healthz").await.status, 200);
    let r = post(
        addr,
        "/v1/topics",
        r#"{"name":"jobs","partitions":2,"max_messages":3,"retention":"work_queue"}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = post(addr, "/v1/topics", r#"{"name":"jobs"}"#).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (409, Some("TOPIC_EXISTS"))
    );
    let r = post(addr, "/v1/topics", r#"{"name": "#).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (400, Some("INVALID_REQUEST"))
    );
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let r = call(
        addr,
        "PATCH",
        "/v1/topics/jobs",
        Some(r#"{"warn_depth":2,"retention_ms":86400000}"#),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (
            r.body["config"]["warn_depth"].as_u64(),
            r.body["config"]["retention_ms"].as_u64()
        ),
        (Some(2), Some(86_400_000))
    );
    let r = call(
        addr,
        "PATCH",
        "/v1/topics/jobs",
        Some(r#"{"colour":"red"}"#),
    )
    .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (400, Some("INVALID_REQUEST"))
    );
    let topics = get(addr, "/v1/topics").await;
    assert_eq!(topics.body["topics"][0]["name"], "jobs");

    let r = post(
        addr,
        "/v1/topics/jobs/subscriptions",
        r#"{"name":"w","kind":"queue","ack_timeout_ms":5000,"max_deliveries":3}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = post(addr, "/v1/topics/jobs/messages", r#"{"messages":[{"value":"one","key":"a"},{"value_base64":"/w=="},{"value":"three","headers":{"h":"v"}}]}"#)
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["offsets"].as_array().unwrap().len(), 3);
    // The queue is full: 429 with Retry-After and the stable code.
    let r = post(
        addr,
        "/v1/topics/jobs/messages",
        r#"{"messages":[{"value":"four"}]}"#,
    )
    .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (429, Some("QUEUE_FULL"))
    );
    assert!(r.header("retry-after").is_some());
    // The list shows each subscription's load beside its settings.
    let subs = get(addr, "/v1/topics/jobs/subscriptions").await;
    let w = &subs.body["subscriptions"][0];
    assert_eq!(
        (&w["max_deliveries"], &w["lag"]),
        (&json!(3), &json!(3)),
        "{}",
        subs.body
    );
    for field in ["leased", "outstanding", "redeliveries", "dead_letters"] {
        assert!(w[field].is_u64(), "{field}: {}", subs.body);
    }
    let m = get(addr, "/metrics").await;
    let text = m.body.as_str().unwrap_or_default().to_owned();
    assert!(
        text.contains("spool_queue_full_rejections_total{topic=\"jobs\"}"),
        "{text}"
    );
    assert!(
        text.contains("spool_topic_messages{topic=\"jobs\"} 3"),
        "{text}"
    );
    // Produces under `always` waited for timed fdatasyncs.
    assert!(
        text.contains("spool_fsync_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains("spool_messages_published_total{topic=\"jobs\"}"),
        "{text}"
    );

    let r = post(
        addr,
        "/v1/topics/jobs/subscriptions/w/receive",
        r#"{"max":10,"wait_ms":1000}"#,
    )
    .await;
    let msgs = r.body["messages"].as_array().unwrap().clone();
    assert_eq!(msgs.len(), 3, "{}", r.body);
    assert!(msgs.iter().any(|m| m["value_base64"] == "/w=="));
    assert!(msgs
        .iter()
        .all(|m| m["deliveries"] == 1 && m["receipt"].is_string()));
    let receipts: Vec<Value> = msgs.iter().map(|m| m["receipt"].clone()).collect();
    let r = post(
        addr,
        "/v1/topics/jobs/subscriptions/w/ack",
        &json!({"receipts": receipts[..2]}).to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = post(
        addr,
        "/v1/topics/jobs/subscriptions/w/ack",
        &json!({"receipts": [receipts[0]]}).to_string(),
    )
    .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (410, Some("LEASE_EXPIRED"))
    );
    let r = post(
        addr,
        "/v1/topics/jobs/subscriptions/w/ack",
        r#"{"receipts":["nonsense"]}"#,
    )
    .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (404, Some("UNKNOWN_RECEIPT"))
    );
    let r = post(
        addr,
        "/v1/topics/jobs/subscriptions/w/nack",
        &json!({"receipts": [receipts[2]], "delay_ms": 0}).to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = post(
        addr,
        "/v1/topics/jobs/subscriptions/w/receive",
        r#"{"max":10,"wait_ms":2000}"#,
    )
    .await;
    assert_eq!(r.body["messages"][0]["deliveries"], 2, "{}", r.body);

    // A long poll returns as soon as a message arrives.
    let waiter = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let r = post(
            addr,
            "/v1/topics/jobs/subscriptions/w/receive",
            r#"{"max":1,"wait_ms":5000}"#,
        )
        .await;
        (started.elapsed(), r.body)
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let r = post(
        addr,
        "/v1/topics/jobs/messages",
        r#"{"messages":[{"value":"late","partition":1}]}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (elapsed, body) = waiter.await.unwrap();
    assert_eq!(body["messages"][0]["value"], "late", "{body}");
    assert!(
        elapsed < std::time::Duration::from_millis(4000),
        "{elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_lives_and_its_signed_callback_arrives_even_after_the_receiver_was_down() {
    let server = TestServer::start_http().await;
    let addr = server.http();
    let receiver = Receiver::start(503);
    let (status, got, cb) = (receiver.status, receiver.got, receiver.addr);

    let r = post(addr, "/v1/requests", &json!({"queue": "resize", "payload": {"w": 10}, "callback_url": format!("http://{cb}/done")}).to_string()).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/requests/{id}").as_str())
    );
    // When to look at the record first, as for a GET of an unfinished one.
    assert_eq!(r.header("retry-after"), Some("1"));
    let s = get(addr, &format!("/v1/requests/{id}")).await;
    assert_eq!(s.body["status"], "pending");
    assert!(s.header("retry-after").is_some());

    // A worker takes it over HTTP and sees the request ID header.
    let w = post(
        addr,
        "/v1/topics/resize/subscriptions/workers/receive",
        r#"{"max":1,"wait_ms":2000}"#,
    )
    .await;
    let m = &w.body["messages"][0];
    assert_eq!(m["headers"]["spool-request-id"], id);
    assert_eq!(m["value"], r#"{"w":10}"#);
    assert_eq!(
        get(addr, &format!("/v1/requests/{id}")).await.body["status"],
        "running"
    );
    let done = post(
        addr,
        &format!("/v1/requests/{id}/complete"),
        r#"{"result":{"ok":true}}"#,
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let again = post(
        addr,
        &format!("/v1/requests/{id}/complete"),
        r#"{"result":1}"#,
    )
    .await;
    assert_eq!(
        (again.status, again.body["code"].as_str()),
        (409, Some("REQUEST_FINISHED"))
    );
    let s = get(addr, &format!("/v1/requests/{id}?wait_ms=1000")).await;
    assert_eq!(s.body["status"], "succeeded");
    assert_eq!(s.body["result"]["ok"], true);

    // The receiver is down for the first attempt(s); then it comes back.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(got.lock().unwrap().is_empty());
    *status.lock().unwrap() = 200;
    let mut waited = 0;
    while got.lock().unwrap().is_empty() && waited < 100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        waited += 1;
    }
    let (body, sig) = got.lock().unwrap()[0].clone();
    let record: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(record["id"], id);
    assert_eq!(record["status"], "succeeded");
    // Verify the signature as a receiver would.
    let (t, v1) = sig.split_once(',').unwrap();
    let t = t.strip_prefix("t=").unwrap();
    let expect = sign(CALLBACK_SECRET.as_bytes(), t, &body);
    assert_eq!(v1.strip_prefix("v1=").unwrap(), expect);
    // The receiver has the body; the server records the outcome just after.
    let mut s = get(addr, &format!("/v1/requests/{id}")).await;
    for _ in 0..50 {
        if s.body["callback"]["status"] == "delivered" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        s = get(addr, &format!("/v1/requests/{id}")).await;
    }
    assert_eq!(s.body["callback"]["status"], "delivered", "{}", s.body);
    assert!(s.body["callback"]["attempts"].as_u64().unwrap() >= 2);
    // Unknown requests are a clear 404.
    let r = get(addr, "/v1/requests/nope").await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (404, Some("UNKNOWN_REQUEST"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_a_flaky_endpoint_dead_letters_after_max_deliveries() {
    let server = TestServer::start_http().await;
    let addr = server.http();
    let receiver = Receiver::start(500);
    let (status, got, hook) = (receiver.status, receiver.got, receiver.addr);
    for t in ["hooks", "hooks.dlq"] {
        assert_eq!(
            post(addr, "/v1/topics", &json!({"name": t}).to_string())
                .await
                .status,
            201
        );
    }
    let sub = json!({"name": "pusher", "kind": "queue", "max_deliveries": 2, "ack_timeout_ms": 2000,
                     "dead_letter_topic": "hooks.dlq", "push_endpoint": format!("http://{hook}/in"), "max_in_flight": 4});
    let r = post(addr, "/v1/topics/hooks/subscriptions", &sub.to_string()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    // An endpoint off the allow-list is refused.
    let bad = json!({"name": "evil", "push_endpoint": "http://example.com/in"});
    let r = post(addr, "/v1/topics/hooks/subscriptions", &bad.to_string()).await;
    assert_eq!(r.status, 400, "{}", r.body);
    post(
        addr,
        "/v1/topics/hooks/messages",
        r#"{"messages":[{"value":"doomed"}]}"#,
    )
    .await;
    let mut dead = Value::Null;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        dead = get(addr, "/v1/topics/hooks.dlq/messages?partition=0&offset=0")
            .await
            .body;
        if !dead["messages"].as_array().unwrap().is_empty() {
            break;
        }
    }
    let copy = &dead["messages"][0];
    assert_eq!(copy["value"], "doomed", "{dead}");
    assert_eq!(copy["headers"]["spool-dlq-topic"], "hooks");
    assert_eq!(copy["headers"]["spool-dlq-deliveries"], "2");
    assert!(copy["headers"]["spool-dlq-error"]
        .as_str()
        .unwrap()
        .contains("500"));
    let events = get(addr, "/v1/events").await.body;
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"]["kind"] == "dead_letter"),
        "{events}"
    );
    // A healthy endpoint gets the next message once, and it is acknowledged.
    *status.lock().unwrap() = 200;
    post(
        addr,
        "/v1/topics/hooks/messages",
        r#"{"messages":[{"value":"fine"}]}"#,
    )
    .await;
    for _ in 0..100 {
        if !got.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let received = got.lock().unwrap().clone();
    assert_eq!(
        received.len(),
        1,
        "delivered once, acknowledged by the 200: {received:?}"
    );
    let pushed: Value = serde_json::from_str(&received[0].0).unwrap();
    assert_eq!(
        (pushed["value"].as_str(), pushed["deliveries"].as_u64()),
        (Some("fine"), Some(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_groups_over_http() {
    let server = TestServer::start_http().await;
    let addr = server.http();
    post(addr, "/v1/topics", r#"{"name":"g.t","partitions":2}"#).await;
    post(
        addr,
        "/v1/topics/g.t/messages",
        r#"{"messages":[{"value":"a","partition":0},{"value":"b","partition":1}]}"#,
    )
    .await;
    let j = post(
        addr,
        "/v1/groups/billing/join",
        r#"{"topics":["g.*"],"start":"earliest"}"#,
    )
    .await;
    assert_eq!(j.status, 200, "{}", j.body);
    let member = j.body["member_id"].as_str().unwrap().to_owned();
    assert_eq!(j.body["assignment"].as_array().unwrap().len(), 2);
    let c =
        json!({"member_id": member, "offsets": [{"topic": "g.t", "partition": 0, "offset": 1}]});
    assert_eq!(
        post(addr, "/v1/groups/billing/commit", &c.to_string())
            .await
            .status,
        200
    );
    let o = get(addr, "/v1/groups/billing/offsets?topic=g.t").await;
    assert_eq!(o.body["offsets"][0]["offset"], 1, "{}", o.body);
    assert!(o.body["offsets"][1]["offset"].is_number() || o.body["offsets"][1]["offset"].is_null());
    let g = get(addr, "/v1/groups/billing").await;
    assert_eq!(
        g.body["members"][0]["member_id"],
        member.as_str(),
        "{}",
        g.body
    );
    assert_eq!(
        g.body["members"][0]["assignment"].as_array().unwrap().len(),
        2
    );
    let p0 = &g.body["partitions"][0];
    assert_eq!(
        (&p0["committed"], &p0["end_offset"], &p0["lag"]),
        (&json!(1), &json!(1), &json!(0)),
        "{}",
        g.body
    );
    let reset = r#"{"topic":"g.t","to":"earliest"}"#;
    let busy = post(addr, "/v1/groups/billing/reset-offsets", reset).await;
    assert_eq!(
        (busy.status, busy.body["code"].as_str()),
        (409, Some("GROUP_NOT_EMPTY"))
    );
    let h = json!({"member_id": member, "generation": j.body["generation"]});
    assert_eq!(
        post(addr, "/v1/groups/billing/heartbeat", &h.to_string())
            .await
            .status,
        200
    );
    let l = json!({"member_id": member});
    assert_eq!(
        post(addr, "/v1/groups/billing/leave", &l.to_string())
            .await
            .status,
        204
    );
    let again = post(addr, "/v1/groups/billing/heartbeat", &h.to_string()).await;
    assert_eq!(
        (again.status, again.body["code"].as_str()),
        (400, Some("UNKNOWN_MEMBER"))
    );
    let r = post(addr, "/v1/groups/billing/reset-offsets", reset).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["offsets"][0]["offset"], 0, "{}", r.body);
    let r = post(
        addr,
        "/v1/groups/billing/reset-offsets",
        r#"{"topic":"g.t","to":1}"#,
    )
    .await;
    assert_eq!(r.body["offsets"][1]["offset"], 1, "{}", r.body);
    let listed = get(addr, "/v1/groups").await;
    let groups = listed.body["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{}", listed.body);
    assert_eq!(groups[0]["group"], "billing");
    assert_eq!(groups[0]["members"].as_array().unwrap().len(), 0);
    assert_eq!(groups[0]["partitions"][0]["lag"], 0, "{}", listed.body);
}

/// Before: a publish spanning partitions stored the batches of the
/// partitions that came first and then answered 429 (or 404) for the whole
/// request, so the client's retry stored them twice. Now it is refused
/// whole, and a forged server header or a system topic is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_is_stored_whole_or_not_at_all() {
    let (server, _) = with_topic(r#"{"name":"t","partitions":2,"max_messages":3}"#).await;
    let addr = server.http();
    let stored = |addr| async move {
        let d = get(addr, "/v1/topics/t").await;
        let parts = d.body["partitions"].as_array().unwrap().clone();
        parts
            .iter()
            .map(|p| p["messages"].as_u64().unwrap())
            .sum::<u64>()
    };
    let four = json!({"messages": [
        {"value": "a", "partition": 0}, {"value": "b", "partition": 0},
        {"value": "c", "partition": 1}, {"value": "d", "partition": 1},
    ]});
    let r = post(addr, "/v1/topics/t/messages", &four.to_string()).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (429, Some("QUEUE_FULL"))
    );
    assert_eq!(stored(addr).await, 0, "nothing of a refused publish");

    let missing = json!({"messages": [
        {"value": "a", "partition": 0}, {"value": "b", "partition": 9},
    ]});
    let r = post(addr, "/v1/topics/t/messages", &missing.to_string()).await;
    assert_eq!(r.body["code"], "UNKNOWN_PARTITION", "{}", r.body);
    assert_eq!(stored(addr).await, 0);

    let forged = json!({"messages": [
        {"value": "a", "partition": 0},
        {"value": "b", "partition": 1, "headers": {"spool-request-id": "x"}},
    ]});
    let r = post(addr, "/v1/topics/t/messages", &forged.to_string()).await;
    assert_eq!(r.body["code"], "RESERVED_HEADER", "{}", r.body);
    assert_eq!(stored(addr).await, 0);

    let r = post(
        addr,
        "/v1/topics/spool.errors/messages",
        r#"{"messages":[{"value":"{\"kind\":\"dead_letter\"}"}]}"#,
    )
    .await;
    assert_eq!(r.body["code"], "RESERVED_TOPIC_NAME", "{}", r.body);
    let r = call(addr, "DELETE", "/v1/topics/spool.errors", None).await;
    assert_eq!(r.body["code"], "RESERVED_TOPIC_NAME", "{}", r.body);

    let three = json!({"messages": [
        {"value": "a", "partition": 0}, {"value": "b", "partition": 1},
        {"value": "c", "partition": 1},
    ]});
    let r = post(addr, "/v1/topics/t/messages", &three.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(stored(addr).await, 3);
}

/// Before: `max_messages: 0` meant "no limit" over the binary protocol and
/// the CLI but "always full" over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_limit_means_no_limit_over_http_too() {
    let (server, created) = with_topic(r#"{"name":"t","max_messages":0,"max_bytes":0}"#).await;
    assert_eq!(created["config"]["max_messages"], Value::Null, "{created}");
    let one = r#"{"messages":[{"value":"a"}]}"#;
    let r = post(server.http(), "/v1/topics/t/messages", one).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// A server with one topic made from `create` (its JSON); the answer's body.
async fn with_topic(create: &str) -> (TestServer, Value) {
    let server = TestServer::start_http().await;
    let r = post(server.http(), "/v1/topics", create).await;
    assert_eq!(r.status, 201, "{}", r.body);
    (server, r.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_subscription_is_altered_with_patch() {
    let server = TestServer::start_http().await;
    let addr = server.http();
    for t in ["jobs", "jobs.dlq"] {
        let r = post(addr, "/v1/topics", &json!({"name": t}).to_string()).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = post(
        addr,
        "/v1/topics/jobs/subscriptions",
        r#"{"name": "w", "max_deliveries": 5}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let path = "/v1/topics/jobs/subscriptions/w";
    let patch =
        |body: Value| async move { call(addr, "PATCH", path, Some(&body.to_string())).await };

    let r = patch(
        json!({"max_deliveries": 2, "dead_letter_topic": "jobs.dlq", "ack_timeout_ms": 1000,
                         "backoff_ms": 10, "backoff_max_ms": 100,
                         "push_endpoint": "http://127.0.0.1:9/in", "max_in_flight": 3}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let expected = json!({"max_deliveries": 2, "dead_letter_topic": "jobs.dlq", "ack_timeout_ms": 1000,
                          "backoff": {"kind": "exponential", "initial_ms": 10, "max_ms": 100},
                          "push_endpoint": "http://127.0.0.1:9/in", "max_in_flight": 3});
    let listed = get(addr, "/v1/topics/jobs/subscriptions").await.body;
    for shown in [&r.body, &listed["subscriptions"][0]] {
        for (k, v) in expected.as_object().unwrap() {
            assert_eq!(&shown[k], v, "{k} in {shown}");
        }
    }

    // null removes; what is not named stays.
    let r = patch(json!({"dead_letter_topic": null, "push_endpoint": null})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (
            &r.body["dead_letter_topic"],
            &r.body["push_endpoint"],
            &r.body["max_deliveries"]
        ),
        (&Value::Null, &Value::Null, &json!(2)),
        "{}",
        r.body
    );

    // Refused as at creation, and nothing changes.
    for (body, status, code) in [
        (json!({"ack_timeout_ms": 0}), 400, "INVALID_CONFIG"),
        (json!({"dead_letter_topic": "jobs"}), 400, "INVALID_CONFIG"),
        (
            json!({"dead_letter_topic": "nowhere"}),
            404,
            "UNKNOWN_TOPIC",
        ),
        (
            json!({"push_endpoint": "http://example.com/in"}),
            400,
            "INVALID_REQUEST",
        ),
        (json!({"backoff_max_ms": 100}), 400, "INVALID_REQUEST"),
        (json!({"mode": "at_most_once"}), 400, "INVALID_REQUEST"),
    ] {
        let r = patch(body.clone()).await;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (status, Some(code)),
            "{body}: {}",
            r.body
        );
    }
    let r = call(
        addr,
        "PATCH",
        "/v1/topics/jobs/subscriptions/nobody",
        Some("{}"),
    )
    .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (404, Some("UNKNOWN_SUBSCRIPTION"))
    );
    let listed = get(addr, "/v1/topics/jobs/subscriptions").await.body;
    assert_eq!(listed["subscriptions"][0]["max_deliveries"], 2, "{listed}");
    assert_eq!(
        listed["subscriptions"][0]["ack_timeout_ms"], 1000,
        "{listed}"
    );
}
