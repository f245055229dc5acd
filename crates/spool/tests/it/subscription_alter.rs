//! `spool subscription alter` against the real binary: the new settings
//! show in `subscription list`, survive a restart and govern the running
//! subscription; bad values are refused as at creation.

use crate::support::*;
use serde_json::Value;
use spool_testkit::Receiver;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The subscription `name` of `topic` as `subscription list --json` shows it.
fn listed(server: &ServerProc, topic: &str, name: &str) -> Value {
    let out = ok(&server.cli(&["subscription", "list", topic, "--json"], b""));
    out.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {out}"))
}

/// One message leased with `receive --json`.
fn receive_one(server: &ServerProc, topic: &str, name: &str) -> Value {
    let out = ok(&server.cli(
        &["receive", topic, name, "--wait-ms", "3000", "--json"],
        b"",
    ));
    serde_json::from_str(out.lines().next().expect("a message")).unwrap()
}

fn refused(server: &ServerProc, args: &str, code: &str) {
    let out = server.cli(&words(args), b"");
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{args}: accepted");
    assert!(stderr.contains(code), "{args}: {stderr}");
}

#[test]
fn altered_settings_are_listed_survive_a_restart_and_apply() {
    let (dir, mut server) = start_after(&[
        "topic create jobs",
        "topic create jobs.dlq",
        "subscription create jobs w --max-deliveries 5",
    ]);
    ok(&server.cli(&["produce", "jobs"], b"a\n"));
    let first = receive_one(&server, "jobs", "w");
    assert_eq!(first["deliveries"], 1);
    ok(&server.cli(
        &["nack", "jobs", "w", first["receipt"].as_str().unwrap()],
        b"",
    ));

    let out = ok(&server.cli(
        &words("subscription alter jobs w --max-deliveries 2 --dead-letter jobs.dlq --ack-timeout-ms 700 --backoff-ms 10"),
        b"",
    ));
    assert!(out.starts_with("altered subscription w on jobs\n"), "{out}");
    for field in [
        "ack_timeout_ms=700",
        "max_deliveries=2",
        "dead_letter=jobs.dlq",
        "backoff=fixed:10",
        "push_endpoint=-",
        "max_in_flight=16",
    ] {
        assert!(out.contains(field), "{field} in {out}");
    }
    let check = |s: &Value| {
        assert_eq!(
            (
                &s["ack_timeout_ms"],
                &s["max_deliveries"],
                &s["dead_letter_topic"],
                &s["backoff"],
            ),
            (
                &Value::from(700),
                &Value::from(2),
                &Value::from("jobs.dlq"),
                &Value::from("fixed:10"),
            ),
            "{s}"
        );
    };
    check(&listed(&server, "jobs", "w"));

    assert_eq!(server.terminate(), Some(0));
    let server = ServerProc::start(dir.path());
    check(&listed(&server, "jobs", "w"));

    // The new ack timeout for the new lease, and the lowered limit: this
    // second delivery is the last, so the lapsed lease dead-letters it.
    let second = receive_one(&server, "jobs", "w");
    assert_eq!(second["deliveries"], 2);
    let lease_ms = second["lease_deadline_ms"].as_i64().unwrap() - now_ms();
    assert!(lease_ms <= 700, "a lease of {lease_ms} ms");
    let dead = server.cli(&words("consume jobs.dlq --count 1 --timeout-ms 5000"), b"");
    assert_eq!(lines(&dead), ["a"]);
    // Counted once the copy is durable, just after it became readable.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while listed(&server, "jobs", "w")["dead_letters"] != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "no dead letter counted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A push endpoint set later is pushed to; removed, it is not.
    let endpoint = Receiver::start(200);
    let url = format!("http://{}/in", endpoint.addr);
    let out = ok(&server.cli(
        &[
            "subscription",
            "alter",
            "jobs",
            "w",
            "--push-endpoint",
            &url,
            "--max-in-flight",
            "2",
        ],
        b"",
    ));
    assert!(
        out.contains(&format!("push_endpoint={url}\tmax_in_flight=2")),
        "{out}"
    );
    ok(&server.cli(&["produce", "jobs"], b"pushed\n"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while endpoint.got.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "nothing was pushed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(endpoint.got.lock().unwrap()[0].0.contains("pushed"));
    ok(&server.cli(
        &words("subscription alter jobs w --no-push-endpoint --no-dead-letter"),
        b"",
    ));
    let s = listed(&server, "jobs", "w");
    assert_eq!(
        (&s["push_endpoint"], &s["dead_letter_topic"]),
        (&Value::Null, &Value::Null),
        "{s}"
    );
}

#[test]
fn bad_alterations_are_refused_as_at_creation_and_change_nothing() {
    let (_dir, server) = start_after(&[
        "topic create jobs",
        "subscription create jobs w --max-deliveries 3",
    ]);
    let before = listed(&server, "jobs", "w");
    refused(
        &server,
        "subscription alter jobs w --ack-timeout-ms 0",
        "INVALID_CONFIG",
    );
    refused(
        &server,
        "subscription alter jobs w --ack-timeout-ms 43200001",
        "INVALID_CONFIG",
    );
    refused(
        &server,
        "subscription alter jobs w --dead-letter jobs",
        "INVALID_CONFIG",
    );
    refused(
        &server,
        "subscription alter jobs w --dead-letter nowhere",
        "UNKNOWN_TOPIC",
    );
    refused(
        &server,
        "subscription alter jobs w --dead-letter spool.errors",
        "RESERVED_TOPIC_NAME",
    );
    refused(
        &server,
        "subscription alter jobs w --backoff-ms 100 --backoff-max-ms 10",
        "INVALID_CONFIG",
    );
    refused(
        &server,
        "subscription alter jobs w --max-in-flight 0",
        "INVALID_CONFIG",
    );
    refused(
        &server,
        "subscription alter jobs w --push-endpoint http://example.com/in",
        "INVALID_REQUEST",
    );
    refused(
        &server,
        "subscription alter jobs nobody --max-deliveries 1",
        "UNKNOWN_SUBSCRIPTION",
    );
    refused(
        &server,
        "subscription alter nowhere w --max-deliveries 1",
        "UNKNOWN_SUBSCRIPTION",
    );
    refused(&server, "subscription alter jobs w", "nothing to change");
    assert_eq!(listed(&server, "jobs", "w"), before);
}
