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
