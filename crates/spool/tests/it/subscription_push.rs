//! Push through the real binary: `spool subscription create
//! --push-endpoint` (HTTP push, set over the binary protocol's version-2
//! CREATE_SUBSCRIPTION) and `spool receive --push` / `spool consume
//! --push` (messages pushed to the CLI's own connection, with credit).

use crate::support::*;
use serde_json::Value;
use spool_testkit::Receiver;
use std::time::{Duration, Instant};

/// The subscription `name` of `topic` as `subscription list --json` shows it.
fn listed(server: &ServerProc, topic: &str, name: &str) -> Option<Value> {
    let out = ok(&server.cli(&["subscription", "list", topic, "--json"], b""));
    out.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|s| s["name"] == name)
}

#[test]
fn a_subscription_created_with_a_push_endpoint_is_listed_and_pushes() {
    let (_dir, server) = start_after(&["topic create jobs"]);
    let endpoint = Receiver::start(200);
    let url = format!("http://{}/in", endpoint.addr);
    let out = ok(&server.cli(
        &[
            "subscription",
            "create",
            "jobs",
            "w",
            "--push-endpoint",
            &url,
            "--max-in-flight",
            "3",
        ],
        b"",
    ));
    assert_eq!(out, "created queue subscription w on jobs\n");
    let s = listed(&server, "jobs", "w").expect("listed");
    assert_eq!(
        (&s["push_endpoint"], &s["max_in_flight"]),
        (&Value::from(url.as_str()), &Value::from(3)),
        "{s}"
    );
    let line = ok(&server.cli(&["subscription", "list", "jobs"], b""));
    assert!(
        line.contains(&format!("push_endpoint={url}\tmax_in_flight=3")),
        "{line}"
    );
    // Creating it again with the same settings is fine.
    ok(&server.cli(
        &[
            "subscription",
            "create",
            "jobs",
            "w",
            "--push-endpoint",
            &url,
            "--max-in-flight",
            "3",
        ],
        b"",
    ));

    ok(&server.cli(&["produce", "jobs"], b"pushed\n"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while endpoint.got.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "nothing was pushed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(endpoint.got.lock().unwrap()[0].0.contains("pushed"));

    // Without --max-in-flight the server's default applies.
    ok(&server.cli(
        &[
            "subscription",
            "create",
            "jobs",
            "d",
            "--push-endpoint",
            &url,
        ],
        b"",
    ));
    let s = listed(&server, "jobs", "d").expect("listed");
    assert_eq!(s["max_in_flight"], 16, "{s}");
}

#[test]
fn a_push_endpoint_outside_the_allow_list_is_refused_at_creation() {
    let (_dir, server) = start_after(&["topic create jobs"]);
    let out = server.cli(
        &words("subscription create jobs w --push-endpoint http://example.com/in"),
        b"",
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("INVALID_REQUEST"), "{stderr}");
    assert!(listed(&server, "jobs", "w").is_none());
    // A zero in-flight limit is refused by the CLI itself.
    let out = server.cli(
        &words(
            "subscription create jobs w --push-endpoint http://127.0.0.1:9/in --max-in-flight 0",
        ),
        b"",
    );
    assert!(!out.status.success());
    assert!(listed(&server, "jobs", "w").is_none());
}

#[test]
fn receive_push_prints_and_acks_pushed_leases_and_releases_the_rest() {
    let (_dir, server) = start_after(&[
        "topic create jobs --partitions 1",
        "subscription create jobs w",
    ]);
    ok(&server.cli(&["produce", "jobs"], b"a\nb\nc\n"));
    // Credit 3: all three may be pushed; two are printed and acked, the
    // third is released when the command stops.
    let out = server.cli(
        &words("receive jobs w --push --max 3 --count 2 --ack --wait-ms 10000"),
        b"",
    );
    assert_eq!(lines(&out), ["a", "b"]);
    // Released at once: the next run gets it without waiting for the
    // 30 s ack timeout; --json shows its receipt and deliveries.
    let out = server.cli(
        &words("receive jobs w --push --count 1 --json --wait-ms 5000"),
        b"",
    );
    let printed = lines(&out);
    assert_eq!(printed.len(), 1, "{printed:?}");
    let m: Value = serde_json::from_str(&printed[0]).unwrap();
    assert_eq!(m["value"], "c", "{m}");
    // Not acked (no --ack): still leased, so nothing more comes.
    let s = listed(&server, "jobs", "w").unwrap();
    assert_eq!(s["leased"], 1, "{s}");
    let started = Instant::now();
    let out = server.cli(&words("receive jobs w --push --wait-ms 300"), b"");
    assert!(lines(&out).is_empty(), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    ok(&server.cli(&["ack", "jobs", "w", m["receipt"].as_str().unwrap()], b""));
    let s = listed(&server, "jobs", "w").unwrap();
    assert_eq!(
        (&s["leased"], &s["lag"]),
        (&Value::from(0), &Value::from(0)),
        "{s}"
    );
}

#[test]
fn consume_push_prints_what_the_server_pushes() {
    let (_dir, server) = start_after(&["topic create events --partitions 1"]);
    ok(&server.cli(&["produce", "events"], b"one\ntwo\nthree\n"));
    let out = server.cli(
        &words("consume events --push --count 3 --timeout-ms 10000"),
        b"",
    );
    assert_eq!(lines(&out), ["one", "two", "three"]);
    let out = server.cli(
        &words("consume events --push --from 1 --count 5 --timeout-ms 500"),
        b"",
    );
    assert_eq!(lines(&out), ["two", "three"]);
    let out = server.cli(&words("consume events --push --group g --count 1"), b"");
    assert!(!out.status.success());

    // Appended while it waits (most likely): pushed as they come. From
    // offset 3, the end, so a slow start misses nothing.
    let out = std::thread::scope(|scope| {
        let consumer = scope.spawn(|| {
            server.cli(
                &words("consume events --push --from 3 --count 2 --timeout-ms 10000"),
                b"",
            )
        });
        std::thread::sleep(Duration::from_millis(700));
        ok(&server.cli(&["produce", "events"], b"four\nfive\n"));
        consumer.join().unwrap()
    });
    assert_eq!(lines(&out), ["four", "five"]);
}
