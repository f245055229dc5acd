//! Asynchronous requests against the real binary: HTTP submit → 202, a
//! `spool worker` running a shell command, status and wait, a signed
//! callback to a real HTTP receiver, worker crash → retry, permanent
//! failure → failed record + side-channel event, records surviving SIGKILL.

use crate::support::*;
use serde_json::{json, Value};
use spool_testkit::http::blocking::{get, post};
use spool_testkit::receiver::signature_valid;
use spool_testkit::Receiver;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn worker(server: &ServerProc, queue: &str, command: &[&str]) -> Child {
    Command::new(BIN)
        .args([
            "worker",
            queue,
            "--concurrency",
            "2",
            "--addr",
            &server.addr,
            "--",
        ])
        .args(command)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn record(server: &ServerProc, id: &str) -> Value {
    serde_json::from_str(&ok(&server.cli(&["request", "status", id], b""))).unwrap()
}

fn wait_status(server: &ServerProc, id: &str, status: &str) -> Value {
    for _ in 0..200 {
        let r = record(server, id);
        if r["status"] == status {
            return r;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("request {id} never became {status}: {}", record(server, id));
}

/// Submits a request with `payload` to `queue`; its id.
fn submit(server: &ServerProc, queue: &str, payload: &[u8]) -> String {
    ok(&server.cli(&["request", "submit", queue], payload))
        .trim()
        .to_owned()
}

/// A server with the topic `queue` and its queue subscription `workers`
/// (1.5 s leases, two deliveries at most).
fn start_with_short_leases(queue: &str) -> (tempfile::TempDir, ServerProc) {
    let topic = format!("topic create {queue}");
    let sub = format!(
        "subscription create {queue} workers --kind queue --ack-timeout-ms 1500 --max-deliveries 2"
    );
    start_after(&[&topic, &sub])
}

/// Stops a worker process (whatever state it is in).
fn stop(mut worker: Child) {
    let _ = worker.kill();
    let _ = worker.wait();
}

#[test]
fn a_request_from_submit_to_signed_callback() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path());
    let receiver = Receiver::start(200);
    let body = json!({"queue": "resize", "payload": {"w": 10}, "callback_url": format!("http://{}/done", receiver.addr)});
    let r = post(&server.http, "/v1/requests", &body.to_string());
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/requests/{id}").as_str())
    );
    assert_eq!(r.body["status"], "pending");
    let w = worker(
        &server,
        "resize",
        &["sh", "-c", r#"read x; echo "{\"got\": $x}""#],
    );
    let out = server.cli(&["request", "wait", &id, "--timeout-ms", "15000"], b"");
    stop(w);
    let rec: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(rec["status"], "succeeded", "{rec}");
    assert_eq!(rec["result"], json!({"got": {"w": 10}}));
    assert_eq!(rec["attempts"], 1);
    // The callback arrives, signed with the configured secret.
    for _ in 0..100 {
        if !receiver.got.lock().unwrap().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (body, sig) = receiver.got.lock().unwrap()[0].clone();
    assert!(
        signature_valid(CALLBACK_SECRET.as_bytes(), &body, &sig),
        "bad signature {sig:?} for {body}"
    );
    let cb: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (cb["id"].as_str(), cb["status"].as_str()),
        (Some(id.as_str()), Some("succeeded"))
    );
    // The receiver has the body; the server records the outcome just after.
    let mut status = get(&server.http, &format!("/v1/requests/{id}"));
    for _ in 0..50 {
        if status.body["callback"]["status"] == "delivered" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        status = get(&server.http, &format!("/v1/requests/{id}"));
    }
    assert_eq!(
        status.body["callback"]["status"], "delivered",
        "{}",
        status.body
    );
    // Completing twice is refused and changes nothing.
    let again = post(
        &server.http,
        &format!("/v1/requests/{id}/complete"),
        r#"{"result":0}"#,
    );
    assert_eq!(
        (again.status, again.body["code"].as_str()),
        (409, Some("REQUEST_FINISHED"))
    );
}

#[test]
fn a_crashed_worker_means_a_retry() {
    let (_dir, server) = start_with_short_leases("jobs");
    let id = submit(&server, "jobs", b"raw bytes\n");
    let mut stuck = worker(&server, "jobs", &["sleep", "30"]);
    wait_status(&server, &id, "running");
    stuck.kill().unwrap(); // the worker dies mid-request
    stuck.wait().unwrap();
    let healthy = worker(&server, "jobs", &["cat"]);
    let out = server.cli(&["request", "wait", &id, "--timeout-ms", "15000"], b"");
    stop(healthy);
    let rec: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(rec["status"], "succeeded", "{rec}");
    assert_eq!(
        rec["result"], "raw bytes\n",
        "the worker got exactly the submitted bytes"
    );
    assert_eq!(rec["attempts"], 2);
}

#[test]
fn a_permanent_failure_fails_the_record_and_writes_an_event() {
    let (_dir, server) = start_with_short_leases("bad");
    let id = submit(&server, "bad", b"{}");
    let w = worker(
        &server,
        "bad",
        &["sh", "-c", "echo broken input >&2; exit 3"],
    );
    let out = server.cli(&["request", "wait", &id, "--timeout-ms", "20000"], b"");
    stop(w);
    assert!(!out.status.success(), "wait must fail for a failed request");
    let rec = record(&server, &id);
    assert_eq!(rec["status"], "failed", "{rec}");
    assert!(
        rec["error"]
            .as_str()
            .unwrap_or_default()
            .contains("broken input"),
        "{rec}"
    );
    let events = server.cli(&["consume", "spool.errors", "--timeout-ms", "1500"], b"");
    let events: Vec<Value> = lines(&events)
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "request_failed" && e["id"] == id.as_str()),
        "{events:?}"
    );
}

/// Exit 65 (`EX_DATAERR`) says "failed, do not retry": the record fails at
/// its first attempt although the subscription allows two deliveries.
#[test]
fn a_command_exiting_65_fails_the_request_without_a_retry() {
    let (_dir, server) = start_with_short_leases("strict");
    let id = submit(&server, "strict", b"{}");
    let w = worker(
        &server,
        "strict",
        &["sh", "-c", "echo unparsable input >&2; exit 65"],
    );
    let out = server.cli(&["request", "wait", &id, "--timeout-ms", "10000"], b"");
    stop(w);
    assert!(!out.status.success(), "wait must fail for a failed request");
    let rec = record(&server, &id);
    assert_eq!(rec["status"], "failed", "{rec}");
    assert_eq!(rec["attempts"], 1, "not retried: {rec}");
    assert!(
        rec["error"]
            .as_str()
            .unwrap_or_default()
            .contains("unparsable input"),
        "{rec}"
    );
}

/// The `workers` subscription a first submission creates retries with an
/// exponential backoff (1 s, doubling, at most 60 s), not five attempts
/// within milliseconds.
#[test]
fn an_auto_created_workers_subscription_backs_off_exponentially() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path());
    submit(&server, "fresh", b"{}");
    let list = ok(&server.cli(&["subscription", "list", "fresh"], b""));
    assert!(
        list.contains("workers") && list.contains("backoff=exponential:1000-60000"),
        "{list}"
    );
}

#[test]
fn request_records_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProc::start(dir.path());
    let id = submit(&server, "q", b"payload");
    server.kill();
    let server = ServerProc::start(dir.path());
    assert_eq!(record(&server, &id)["status"], "pending");
    let w = worker(&server, "q", &["cat"]);
    let out = server.cli(&["request", "wait", &id, "--timeout-ms", "15000"], b"");
    stop(w);
    let rec: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(rec["result"], "payload");
}

#[test]
fn a_callback_receiver_down_for_a_while_still_gets_its_callback() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path());
    let receiver = Receiver::start(503);
    let cb = format!("http://{}/cb", receiver.addr);
    let id = ok(&server.cli(&["request", "submit", "later", "--callback", &cb], b"x"))
        .trim()
        .to_owned();
    let w = worker(&server, "later", &["cat"]);
    wait_status(&server, &id, "succeeded");
    stop(w);
    // The first attempts fail (503); the record shows it.
    std::thread::sleep(Duration::from_millis(2_500));
    let rec = record(&server, &id);
    assert_eq!(rec["callback"]["status"], "pending", "{rec}");
    assert!(rec["callback"]["attempts"].as_u64().unwrap() >= 1, "{rec}");
    assert!(
        rec["callback"]["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("503"),
        "{rec}"
    );
    *receiver.status.lock().unwrap() = 200;
    for _ in 0..200 {
        if !receiver.got.lock().unwrap().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (body, sig) = receiver.got.lock().unwrap()[0].clone();
    assert!(signature_valid(CALLBACK_SECRET.as_bytes(), &body, &sig));
    for _ in 0..40 {
        if record(&server, &id)["callback"]["status"] == "delivered" {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "callback never recorded as delivered: {}",
        record(&server, &id)
    );
}

#[test]
fn a_push_subscription_to_a_flaky_endpoint_dead_letters_after_max_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path());
    let endpoint = Receiver::start(500);
    for t in ["hooks", "hooks.dlq"] {
        ok(&server.cli(&["topic", "create", t], b""));
    }
    let sub = json!({"name": "pusher", "kind": "queue", "max_deliveries": 3, "dead_letter_topic": "hooks.dlq",
                     "push_endpoint": format!("http://{}/in", endpoint.addr), "max_in_flight": 2});
    let r = post(
        &server.http,
        "/v1/topics/hooks/subscriptions",
        &sub.to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    ok(&server.cli(&["produce", "hooks"], b"doomed\n"));
    let dead = server.cli(
        &words("consume hooks.dlq --count 1 --timeout-ms 15000"),
        b"",
    );
    assert_eq!(lines(&dead), ["doomed"]);
    let events = server.cli(
        &words("consume spool.errors --count 1 --timeout-ms 5000"),
        b"",
    );
    let e: Value = serde_json::from_str(&lines(&events)[0]).unwrap();
    assert_eq!(
        (e["kind"].as_str(), e["deliveries"].as_u64()),
        (Some("dead_letter"), Some(3))
    );
    assert!(
        e["error"].as_str().unwrap_or_default().contains("500"),
        "{e}"
    );
}
