//! Work queues through the CLI contract of issue 4, against the real binary.

use crate::support::*;
use serde_json::Value;
use std::time::{Duration, Instant};

fn received(out: &std::process::Output) -> Vec<Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn receive(server: &ServerProc, topic: &str, sub: &str, max: u32, wait_ms: u32) -> Vec<Value> {
    let out = server.cli(
        &[
            "receive",
            topic,
            sub,
            "--max",
            &max.to_string(),
            "--wait-ms",
            &wait_ms.to_string(),
            "--json",
        ],
        b"",
    );
    ok(&out);
    received(&out)
}

fn values(msgs: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = msgs
        .iter()
        .map(|m| m["value"].as_str().unwrap_or_default().to_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn redelivery_nack_delay_dead_letters_events_and_redrive() {
    let (_dir, server) = start_after(&["topic create jobs", "topic create jobs.dlq", "subscription create jobs w --kind queue --ack-timeout-ms 1000 --max-deliveries 2 --dead-letter jobs.dlq"]);
    assert!(ok(&server.cli(&["subscription", "list", "jobs"], b"")).contains('w'));
    ok(&server.cli(&["produce", "jobs"], b"a\nb\n"));

    // Lease both; let a's lease expire, nack b with a delay.
    let first = receive(&server, "jobs", "w", 10, 2000);
    assert_eq!(values(&first), ["a", "b"]);
    let b = first.iter().find(|m| m["value"] == "b").unwrap();
    ok(&server.cli(
        &[
            "nack",
            "jobs",
            "w",
            "--delay-ms",
            "1500",
            b["receipt"].as_str().unwrap(),
        ],
        b"",
    ));
    let started = Instant::now();
    let again = receive(&server, "jobs", "w", 10, 3000);
    assert_eq!(
        values(&again),
        ["a"],
        "a after its ack timeout (b still delayed)"
    );
    assert_eq!(again[0]["deliveries"], 2);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "a came back before its lease expired"
    );
    let b_again = receive(&server, "jobs", "w", 10, 3000);
    assert_eq!(values(&b_again), ["b"]);
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "b came back before its nack delay"
    );
    // An old receipt is refused and changes nothing.
    let out = server.cli(
        &["ack", "jobs", "w", first[0]["receipt"].as_str().unwrap()],
        b"",
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("LEASE_EXPIRED"),
        "{}",
        text(&out.stderr)
    );
    let out = server.cli(&["ack", "jobs", "w", "0-0-ffff"], b"");
    assert!(
        text(&out.stderr).contains("UNKNOWN_RECEIPT")
            || text(&out.stderr).contains("LEASE_EXPIRED"),
        "{}",
        text(&out.stderr)
    );

    // Both fail a second time: max deliveries → dead letters + side-channel events.
    for m in again.iter().chain(&b_again) {
        ok(&server.cli(&["nack", "jobs", "w", m["receipt"].as_str().unwrap()], b""));
    }
    let dead = server.cli(&words("consume jobs.dlq --count 2 --timeout-ms 5000"), b"");
    let mut dead = lines(&dead);
    dead.sort();
    assert_eq!(dead, ["a", "b"]);
    let events = server.cli(
        &words("consume spool.errors --count 2 --timeout-ms 5000"),
        b"",
    );
    let events: Vec<Value> = lines(&events)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    for e in &events {
        assert_eq!(e["kind"], "dead_letter");
        assert_eq!(
            (
                e["topic"].as_str(),
                e["subscription"].as_str(),
                e["deliveries"].as_u64()
            ),
            (Some("jobs"), Some("w"), Some(2))
        );
        assert!(
            e["time"].is_string()
                && e["offset"].is_number()
                && e["partition"].is_number()
                && e["error"].is_string(),
            "{e}"
        );
    }
    assert!(receive(&server, "jobs", "w", 10, 200).is_empty());

    // Redrive moves them back; they are delivered afresh.
    let out = ok(&server.cli(&["dlq", "redrive", "jobs", "w"], b""));
    assert!(out.contains('2'), "{out}");
    let back = receive(&server, "jobs", "w", 10, 3000);
    assert_eq!(values(&back), ["a", "b"]);
    assert!(back.iter().all(|m| m["deliveries"] == 1));
}

#[test]
fn ordering_keys_keep_order_per_key_and_run_keys_in_parallel() {
    let (_dir, server) = start_after(&[
        "topic create o",
        "subscription create o w --kind queue --ordering-key",
    ]);
    ok(&server.cli(&["produce", "o", "--key", "A"], b"a1\na2\na3\n"));
    ok(&server.cli(&["produce", "o", "--key", "B"], b"b1\nb2\n"));
    let mut seen: Vec<String> = Vec::new();
    for round in 0..3 {
        let got = receive(&server, "o", "w", 10, 1000);
        let v = values(&got);
        // Never two of one key at once; both keys progress together.
        assert!(
            v.iter().filter(|x| x.starts_with('a')).count() <= 1,
            "round {round}: {v:?}"
        );
        assert!(
            v.iter().filter(|x| x.starts_with('b')).count() <= 1,
            "round {round}: {v:?}"
        );
        seen.extend(v);
        let receipts: Vec<&str> = got.iter().map(|m| m["receipt"].as_str().unwrap()).collect();
        if !receipts.is_empty() {
            let mut args = vec!["ack", "o", "w"];
            args.extend(receipts);
            ok(&server.cli(&args, b""));
        }
    }
    let a: Vec<&String> = seen.iter().filter(|x| x.starts_with('a')).collect();
    let b: Vec<&String> = seen.iter().filter(|x| x.starts_with('b')).collect();
    assert_eq!(a, ["a1", "a2", "a3"]);
    assert_eq!(b, ["b1", "b2"]);
}

#[test]
fn delayed_delivery_survives_a_restart_and_duplicates_are_suppressed() {
    let (dir, mut server) =
        start_after(&["topic create d", "subscription create d w --kind queue"]);
    let due = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 4000;
    ok(&server.cli(
        &["produce", "d", "--deliver-at-ms", &due.to_string()],
        b"later\n",
    ));
    ok(&server.cli(&["produce", "d"], b"now\n"));
    let first = ok(&server.cli(&["produce", "d", "--message-id", "order-17"], b"paid\n"));
    let second = ok(&server.cli(&["produce", "d", "--message-id", "order-17"], b"paid\n"));
    // The second is acknowledged, and marked as the duplicate it was.
    assert_eq!(first.lines().last(), Some("acknowledged: 1"), "{first}");
    assert_eq!(
        second.lines().last(),
        Some("acknowledged: 1 (1 duplicate)"),
        "{second}"
    );
    let got = receive(&server, "d", "w", 10, 500);
    assert_eq!(
        values(&got),
        ["now", "paid"],
        "the duplicate is stored once; `later` waits"
    );
    let receipts: Vec<&str> = got.iter().map(|m| m["receipt"].as_str().unwrap()).collect();
    let mut args = vec!["ack", "d", "w"];
    args.extend(receipts);
    ok(&server.cli(&args, b""));
    assert_eq!(server.terminate(), Some(0));
    let server = ServerProc::start(dir.path());
    assert!(
        receive(&server, "d", "w", 10, 300).is_empty(),
        "still delayed after the restart; acked ones stay acked"
    );
    let late = receive(&server, "d", "w", 10, 8000);
    assert_eq!(values(&late), ["later"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(now >= due, "delivered {} ms early", due - now);
}

#[test]
fn at_most_once_never_redelivers() {
    let (_dir, server) = start_after(&[
        "topic create m",
        "subscription create m w --kind queue --at-most-once --ack-timeout-ms 300",
    ]);
    ok(&server.cli(&["produce", "m"], b"x\ny\n"));
    let got = receive(&server, "m", "w", 10, 1000);
    assert_eq!(values(&got), ["x", "y"]);
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        receive(&server, "m", "w", 10, 500).is_empty(),
        "handed out at most once, even unacknowledged"
    );
    // --ack on such a subscription is harmless.
    ok(&server.cli(&["produce", "m"], b"z\n"));
    let out = server.cli(&["receive", "m", "w", "--ack"], b"");
    ok(&out);
    assert_eq!(lines(&out), ["z"]);
}

#[test]
fn the_duplicate_window_is_configurable() {
    let (_dir, server) = start_after(&["topic create w --dedup-window-ms 500"]);
    let described = ok(&server.cli(&["topic", "describe", "w"], b""));
    assert!(described.contains("500"), "{described}");
    ok(&server.cli(&["produce", "w", "--message-id", "m"], b"one\n"));
    ok(&server.cli(&["produce", "w", "--message-id", "m"], b"two\n"));
    std::thread::sleep(Duration::from_millis(700));
    let third = ok(&server.cli(&["produce", "w", "--message-id", "m"], b"three\n"));
    assert_eq!(third.lines().last(), Some("acknowledged: 1"), "{third}");
    let out = server.cli(&["consume", "w", "--timeout-ms", "700"], b"");
    assert_eq!(
        lines(&out),
        ["one", "three"],
        "the second was a duplicate; the third came after the window"
    );
}

#[test]
fn creating_a_subscription_again_with_other_settings_says_which_differ() {
    let (_dir, server) = start_after(&[
        "topic create jobs",
        "subscription create jobs w --max-deliveries 3",
    ]);
    // The same settings again: fine.
    ok(&server.cli(&words("subscription create jobs w --max-deliveries 3"), b""));
    let out = server.cli(
        &words("subscription create jobs w --max-deliveries 4 --ack-timeout-ms 1000"),
        b"",
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("GROUP_EXISTS"), "{stderr}");
    assert!(
        stderr.contains("ack_timeout_ms is 30000, not 1000"),
        "{stderr}"
    );
    assert!(stderr.contains("max_deliveries is 3, not 4"), "{stderr}");
    assert!(!stderr.contains("ordered"), "only what differs: {stderr}");
}
