//! The HTTP API against an in-process server on ephemeral ports, spoken to
//! with a deliberately tiny HTTP/1.1 client so nothing hides the wire.

use serde_json::{json, Value};
use spool_server::{Server, ServerConfig};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub(crate) struct Reply {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    pub(crate) body: Value,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) async fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(": ")
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body_text = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    let body = serde_json::from_str(&body_text).unwrap_or(Value::String(body_text));
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

async fn start(secret: &str) -> (SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::bind(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: dir.path().to_owned(),
        max_connections: 1000,
        callback_secret: Some(secret.to_owned()),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let http = server.http_addr().unwrap();
    tokio::spawn(server.serve(std::future::pending()));
    (http, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_the_real_routes() {
    let (addr, _dir) = start("s").await;
    let doc = call(addr, "GET", "/openapi.json", None).await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.body["openapi"], "3.1.0");
    let paths = doc.body["paths"].as_object().unwrap();
    assert!(paths.len() >= 15);
    for (path, methods) in paths {
        for method in methods.as_object().unwrap().keys() {
            let concrete = path
                .replace("{topic}", "t")
                .replace("{sub}", "s")
                .replace("{id}", "x")
                .replace("{group}", "g");
            let body = if method == "post" { Some("{}") } else { None };
            let r = call(addr, &method.to_uppercase(), &concrete, body).await;
            assert!(
                !(r.status == 404 && r.body["code"] == "UNKNOWN_REQUEST_TYPE") && r.status != 405,
                "{method} {path} is documented but not routed ({})",
                r.status
            );
        }
    }
    // And an undocumented path is not served.
    let r = call(addr, "GET", "/v1/nothing", None).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (404, Some("UNKNOWN_REQUEST_TYPE"))
    );
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_messages_and_queue_subscriptions_over_http() {
    let (addr, _dir) = start("s").await;
    assert_eq!(call(addr, "GET", "/healthz", None).await.status, 200);
    let r = call(
        addr,
        "POST",
        "/v1/topics",
        Some(r#"{"name":"jobs","partitions":2,"max_messages":3,"retention":"work_queue"}"#),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = call(addr, "POST", "/v1/topics", Some(r#"{"name":"jobs"}"#)).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (409, Some("TOPIC_EXISTS"))
    );
    let r = call(addr, "POST", "/v1/topics", Some(r#"{"name": "#)).await;
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
    let topics = call(addr, "GET", "/v1/topics", None).await;
    assert_eq!(topics.body["topics"][0]["name"], "jobs");

    let r = call(
        addr,
        "POST",
        "/v1/topics/jobs/subscriptions",
        Some(r#"{"name":"w","kind":"queue","ack_timeout_ms":5000,"max_deliveries":3}"#),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = call(
        addr,
        "POST",
        "/v1/topics/jobs/messages",
        Some(r#"{"messages":[{"value":"one","key":"a"},{"value_base64":"/w=="},{"value":"three","headers":{"h":"v"}}]}"#),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["offsets"].as_array().unwrap().len(), 3);
    // The queue is full: 429 with Retry-After and the stable code.
    let r = call(
        addr,
        "POST",
        "/v1/topics/jobs/messages",
        Some(r#"{"messages":[{"value":"four"}]}"#),
    )
    .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (429, Some("QUEUE_FULL"))
    );
    assert!(r.header("retry-after").is_some());
    let m = call(addr, "GET", "/metrics", None).await;
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

    let r = call(
        addr,
        "POST",
        "/v1/topics/jobs/subscriptions/w/receive",
        Some(r#"{"max":10,"wait_ms":1000}"#),
    )
    .await;
    let msgs = r.body["messages"].as_array().unwrap().clone();
    assert_eq!(msgs.len(), 3, "{}", r.body);
    assert!(msgs.iter().any(|m| m["value_base64"] == "/w=="));
    assert!(msgs
        .iter()
        .all(|m| m["deliveries"] == 1 && m["receipt"].is_string()));
    let receipts: Vec<Value> = msgs.iter().map(|m| m["receipt"].clone()).collect();
    let r = call(
        addr,
        "POST",
        "/v1/topics/jobs/subscriptions/w/ack",
        Some(&json!({"receipts": receipts[..2]}).to_string()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(
        addr,
        "POST",
        "/v1/topics/jobs/subscriptions/w/ack",
        Some(&json!({"receipts": [receipts[0]]}).to_string()),
    )
    .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (410, Some("LEASE_EXPIRED"))
    );
    let r = call(
        addr,
        "POST",
        "/v1/topics/jobs/subscriptions/w/ack",
        Some(r#"{"receipts":["nonsense"]}"#),
    )
    .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (404, Some("UNKNOWN_RECEIPT"))
    );
    let r = call(
        addr,
        "POST",
        "/v1/topics/jobs/subscriptions/w/nack",
        Some(&json!({"receipts": [receipts[2]], "delay_ms": 0}).to_string()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(
        addr,
        "POST",
        "/v1/topics/jobs/subscriptions/w/receive",
        Some(r#"{"max":10,"wait_ms":2000}"#),
    )
    .await;
    assert_eq!(r.body["messages"][0]["deliveries"], 2, "{}", r.body);

    // A long poll returns as soon as a message arrives.
    let waiter = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let r = call(
            addr,
            "POST",
            "/v1/topics/jobs/subscriptions/w/receive",
            Some(r#"{"max":1,"wait_ms":5000}"#),
        )
        .await;
        (started.elapsed(), r.body)
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let r = call(
        addr,
        "POST",
        "/v1/topics/jobs/messages",
        Some(r#"{"messages":[{"value":"late","partition":1}]}"#),
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

/// A tiny HTTP receiver: records (body, signature) and answers `status`.
async fn receiver(status: Arc<Mutex<u16>>, got: Arc<Mutex<Vec<(String, String)>>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let (status, got) = (status.clone(), got.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            let sig = head
                                .lines()
                                .find_map(|l| {
                                    l.strip_prefix("spool-signature: ")
                                        .or_else(|| l.strip_prefix("Spool-Signature: "))
                                })
                                .unwrap_or("")
                                .to_owned();
                            let code = *status.lock().unwrap();
                            if code == 200 {
                                got.lock().unwrap().push((body[..len].to_owned(), sig));
                            }
                            let reply = format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                            let _ = s.write_all(reply.as_bytes()).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_lives_and_its_signed_callback_arrives_even_after_the_receiver_was_down() {
    use hmac::{Hmac, KeyInit, Mac};
    let (addr, _dir) = start("topsecret").await;
    let status = Arc::new(Mutex::new(503u16));
    let got = Arc::new(Mutex::new(Vec::new()));
    let cb = receiver(status.clone(), got.clone()).await;

    let r = call(addr, "POST", "/v1/requests", Some(&json!({"queue": "resize", "payload": {"w": 10}, "callback_url": format!("http://{cb}/done")}).to_string())).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/requests/{id}").as_str())
    );
    let s = call(addr, "GET", &format!("/v1/requests/{id}"), None).await;
    assert_eq!(s.body["status"], "pending");
    assert!(s.header("retry-after").is_some());

    // A worker takes it over HTTP and sees the request ID header.
    let w = call(
        addr,
        "POST",
        "/v1/topics/resize/subscriptions/workers/receive",
        Some(r#"{"max":1,"wait_ms":2000}"#),
    )
    .await;
    let m = &w.body["messages"][0];
    assert_eq!(m["headers"]["spool-request-id"], id);
    assert_eq!(m["value"], r#"{"w":10}"#);
    assert_eq!(
        call(addr, "GET", &format!("/v1/requests/{id}"), None)
            .await
            .body["status"],
        "running"
    );
    let done = call(
        addr,
        "POST",
        &format!("/v1/requests/{id}/complete"),
        Some(r#"{"result":{"ok":true}}"#),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let again = call(
        addr,
        "POST",
        &format!("/v1/requests/{id}/complete"),
        Some(r#"{"result":1}"#),
    )
    .await;
    assert_eq!(
        (again.status, again.body["code"].as_str()),
        (409, Some("REQUEST_FINISHED"))
    );
    let s = call(
        addr,
        "GET",
        &format!("/v1/requests/{id}?wait_ms=1000"),
        None,
    )
    .await;
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
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"topsecret").unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let expect: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v1.strip_prefix("v1=").unwrap(), expect);
    // The receiver has the body; the server records the outcome just after.
    let mut s = call(addr, "GET", &format!("/v1/requests/{id}"), None).await;
    for _ in 0..50 {
        if s.body["callback"]["status"] == "delivered" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        s = call(addr, "GET", &format!("/v1/requests/{id}"), None).await;
    }
    assert_eq!(s.body["callback"]["status"], "delivered", "{}", s.body);
    assert!(s.body["callback"]["attempts"].as_u64().unwrap() >= 2);
    // Unknown requests are a clear 404.
    let r = call(addr, "GET", "/v1/requests/nope", None).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (404, Some("UNKNOWN_REQUEST"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_a_flaky_endpoint_dead_letters_after_max_deliveries() {
    let (addr, _dir) = start("s").await;
    let status = Arc::new(Mutex::new(500u16));
    let got = Arc::new(Mutex::new(Vec::new()));
    let hook = receiver(status.clone(), got.clone()).await;
    for t in ["hooks", "hooks.dlq"] {
        assert_eq!(
            call(
                addr,
                "POST",
                "/v1/topics",
                Some(&json!({"name": t}).to_string())
            )
            .await
            .status,
            201
        );
    }
    let sub = json!({"name": "pusher", "kind": "queue", "max_deliveries": 2, "ack_timeout_ms": 2000,
                     "dead_letter_topic": "hooks.dlq", "push_endpoint": format!("http://{hook}/in"), "max_in_flight": 4});
    let r = call(
        addr,
        "POST",
        "/v1/topics/hooks/subscriptions",
        Some(&sub.to_string()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // An endpoint off the allow-list is refused.
    let bad = json!({"name": "evil", "push_endpoint": "http://example.com/in"});
    let r = call(
        addr,
        "POST",
        "/v1/topics/hooks/subscriptions",
        Some(&bad.to_string()),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    call(
        addr,
        "POST",
        "/v1/topics/hooks/messages",
        Some(r#"{"messages":[{"value":"doomed"}]}"#),
    )
    .await;
    let mut dead = Value::Null;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        dead = call(
            addr,
            "GET",
            "/v1/topics/hooks.dlq/messages?partition=0&offset=0",
            None,
        )
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
    let events = call(addr, "GET", "/v1/events", None).await.body;
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
    call(
        addr,
        "POST",
        "/v1/topics/hooks/messages",
        Some(r#"{"messages":[{"value":"fine"}]}"#),
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
    let (addr, _dir) = start("s").await;
    call(
        addr,
        "POST",
        "/v1/topics",
        Some(r#"{"name":"g.t","partitions":2}"#),
    )
    .await;
    call(
        addr,
        "POST",
        "/v1/topics/g.t/messages",
        Some(r#"{"messages":[{"value":"a","partition":0},{"value":"b","partition":1}]}"#),
    )
    .await;
    let j = call(
        addr,
        "POST",
        "/v1/groups/billing/join",
        Some(r#"{"topics":["g.*"],"start":"earliest"}"#),
    )
    .await;
    assert_eq!(j.status, 200, "{}", j.body);
    let member = j.body["member_id"].as_str().unwrap().to_owned();
    assert_eq!(j.body["assignment"].as_array().unwrap().len(), 2);
    let c =
        json!({"member_id": member, "offsets": [{"topic": "g.t", "partition": 0, "offset": 1}]});
    assert_eq!(
        call(
            addr,
            "POST",
            "/v1/groups/billing/commit",
            Some(&c.to_string())
        )
        .await
        .status,
        200
    );
    let o = call(addr, "GET", "/v1/groups/billing/offsets?topic=g.t", None).await;
    assert_eq!(o.body["offsets"][0]["offset"], 1, "{}", o.body);
    assert!(o.body["offsets"][1]["offset"].is_number() || o.body["offsets"][1]["offset"].is_null());
    let h = json!({"member_id": member, "generation": j.body["generation"]});
    assert_eq!(
        call(
            addr,
            "POST",
            "/v1/groups/billing/heartbeat",
            Some(&h.to_string())
        )
        .await
        .status,
        200
    );
    let l = json!({"member_id": member});
    assert_eq!(
        call(
            addr,
            "POST",
            "/v1/groups/billing/leave",
            Some(&l.to_string())
        )
        .await
        .status,
        204
    );
    let again = call(
        addr,
        "POST",
        "/v1/groups/billing/heartbeat",
        Some(&h.to_string()),
    )
    .await;
    assert_eq!(
        (again.status, again.body["code"].as_str()),
        (400, Some("UNKNOWN_MEMBER"))
    );
}
