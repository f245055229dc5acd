//! The HTTP API's JSON bodies from arbitrary bytes, through the real axum
//! router and a real broker (in a temporary directory on /dev/shm when it
//! exists, so fdatasyncs cost nothing). The first input byte picks the
//! endpoint, the rest is the request body. No request may panic (a panic in
//! any thread aborts the process: libfuzzer-sys installs that hook), answer
//! `INTERNAL` or `CORRUPT_DATA`, take longer than the time limit without
//! having asked to wait, or answer an error that is not a problem document.
//!
//! To reach past "unknown receipt" and "unknown member", a body may name
//! live things with placeholders the harness fills in before sending:
//! `@receipt` (a receipt leased just now from subscription `w` of topic `t`),
//! `@member` and `@generation` (a member of group `g`, rejoined after an
//! input made it leave, and its generation); the request endpoints act on a
//! request record submitted and leased just now. Topic `dlq` exists for
//! dead-letter settings.
//!
//! The broker persists between inputs (as a server's would) and is replaced
//! every `ROTATE_EVERY` inputs so that topics created by inputs do not pile
//! up; a crash that needs earlier inputs may therefore not replay alone.
#![no_main]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use spool_broker::subscription::SubscriptionSpec;
use spool_broker::{Broker, TopicConfig};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt;

const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/topics"),
    ("PATCH", "/v1/topics/t"),
    ("POST", "/v1/topics/t/messages"),
    ("POST", "/v1/topics/t/subscriptions"),
    ("POST", "/v1/topics/t/subscriptions/w/receive"),
    ("POST", "/v1/topics/t/subscriptions/w/ack"),
    ("POST", "/v1/topics/t/subscriptions/w/nack"),
    ("POST", "/v1/topics/t/subscriptions/w/extend"),
    ("POST", "/v1/groups/g/join"),
    ("POST", "/v1/groups/g/heartbeat"),
    ("POST", "/v1/groups/g/commit"),
    ("POST", "/v1/groups/g/leave"),
    ("POST", "/v1/requests"),
    ("POST", "/v1/requests/@request/complete"),
    ("POST", "/v1/requests/@request/fail"),
];

/// Inputs served by one broker before a fresh one replaces it.
const ROTATE_EVERY: u64 = 2_000;
/// How long a request may take. Receives may be asked to wait (long poll);
/// they are cut off here, which is not a finding.
const REQUEST_TIME_LIMIT: Duration = Duration::from_secs(5);
const WAIT_CUTOFF: Duration = Duration::from_millis(50);

struct World {
    _dir: tempfile::TempDir,
    router: axum::Router,
    member: String,
    generation: u64,
    served: u64,
}

struct Harness {
    rt: tokio::runtime::Runtime,
    world: Option<World>,
}

static HARNESS: Mutex<Option<Harness>> = Mutex::new(None);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn call(
    router: &axum::Router,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    let req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("method"))
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("request");
    let response = router.clone().oneshot(req).await.expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, bytes.to_vec())
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("a JSON answer")
}

impl World {
    async fn new() -> World {
        let base = std::path::Path::new("/dev/shm");
        let dir = if base.is_dir() {
            tempfile::tempdir_in(base)
        } else {
            tempfile::tempdir()
        }
        .expect("temporary directory");
        let (broker, _) = Broker::open(dir.path(), now_ms()).expect("open broker");
        broker
            .create_topic("t", 2, TopicConfig::default(), now_ms())
            .expect("topic");
        broker
            .create_topic("dlq", 1, TopicConfig::default(), now_ms())
            .expect("topic");
        broker
            .create_subscription(SubscriptionSpec::new("t", "w"), now_ms())
            .expect("subscription");
        let router = spool_server::http::in_process(Arc::new(broker));
        let mut world = World {
            _dir: dir,
            router,
            member: String::new(),
            generation: 0,
            served: 0,
        };
        world.join().await;
        world
    }

    /// Joins group `g` as the member placeholders name.
    async fn join(&mut self) {
        let (status, body) = call(
            &self.router,
            "POST",
            "/v1/groups/g/join",
            br#"{"topics":["t"],"session_timeout_ms":300000}"#.to_vec(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let doc = json(&body);
        self.member = doc["member_id"].as_str().expect("member id").to_owned();
        self.generation = doc["generation"].as_u64().expect("generation");
    }

    /// A receipt leased just now (publishing a message first).
    async fn receipt(&self) -> String {
        call(
            &self.router,
            "POST",
            "/v1/topics/t/messages",
            br#"{"messages":[{"value":"x"}]}"#.to_vec(),
        )
        .await;
        let (_, body) = call(
            &self.router,
            "POST",
            "/v1/topics/t/subscriptions/w/receive",
            br#"{"max":1}"#.to_vec(),
        )
        .await;
        json(&body)["messages"][0]["receipt"]
            .as_str()
            .unwrap_or("0-0-0")
            .to_owned()
    }

    /// A request record submitted and leased by a worker just now.
    async fn running_request(&self) -> String {
        let (_, body) = call(
            &self.router,
            "POST",
            "/v1/requests",
            br#"{"queue":"rq","payload":{"n":1}}"#.to_vec(),
        )
        .await;
        let id = json(&body)["id"].as_str().unwrap_or("none").to_owned();
        call(
            &self.router,
            "POST",
            "/v1/topics/rq/subscriptions/workers/receive",
            br#"{"max":100}"#.to_vec(),
        )
        .await;
        id
    }
}

fn run(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let (method, route) = ROUTES[pick as usize % ROUTES.len()];
    let mut guard = HARNESS.lock().unwrap_or_else(|p| p.into_inner());
    let h = guard.get_or_insert_with(|| Harness {
        rt: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime"),
        world: None,
    });
    h.rt.block_on(async {
        if h.world.as_ref().is_none_or(|w| w.served >= ROTATE_EVERY) {
            h.world = None; // drop the old broker (and its directory) first
            h.world = Some(World::new().await);
        }
        let w = h.world.as_mut().expect("world");
        w.served += 1;
        let mut body = body.to_vec();
        let mut path = route.to_owned();
        if contains(&body, b"@receipt") {
            let receipt = w.receipt().await;
            body = replace(&body, b"@receipt", receipt.as_bytes());
        }
        if contains(&body, b"@member") {
            body = replace(&body, b"@member", w.member.as_bytes());
        }
        if contains(&body, b"@generation") {
            body = replace(&body, b"@generation", w.generation.to_string().as_bytes());
        }
        if path.contains("@request") {
            let id = w.running_request().await;
            path = path.replace("@request", &id);
        }
        let asks_to_wait = route.ends_with("/receive") && contains(&body, b"wait_ms");
        let limit = if asks_to_wait {
            WAIT_CUTOFF
        } else {
            REQUEST_TIME_LIMIT
        };
        let Ok((status, answer)) =
            tokio::time::timeout(limit, call(&w.router, method, &path, body)).await
        else {
            assert!(asks_to_wait, "{method} {path} took longer than {limit:?}");
            return;
        };
        if route.ends_with("/leave") && status.is_success() {
            w.join().await;
        }
        if verbose() {
            eprintln!(
                "{method} {path} -> {status} {}",
                String::from_utf8_lossy(&answer)
            );
        }
        if status == StatusCode::NO_CONTENT {
            return;
        }
        let doc: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_else(|e| {
            panic!(
                "{method} {path} answered {status} with a body that is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&answer)
            )
        });
        if !status.is_success() {
            let code = doc["code"].as_str().unwrap_or_else(|| {
                panic!("{method} {path} answered {status} without a problem code: {doc}")
            });
            assert!(
                code != "INTERNAL" && code != "CORRUPT_DATA",
                "{method} {path} answered {status} {code}: {doc}"
            );
        }
    });
}

/// `SPOOL_FUZZ_VERBOSE=1` prints every request and answer (to check that
/// the seeds reach the success paths, not only the refusals).
fn verbose() -> bool {
    static VERBOSE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *VERBOSE.get_or_init(|| std::env::var_os("SPOOL_FUZZ_VERBOSE").is_some())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn replace(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len() + with.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| run(data));
