//! The CLI contract: topic admin, produce and consume, graceful shutdown.

use crate::support::*;

#[test]
fn topic_lifecycle_produce_consume_and_graceful_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProc::start(dir.path());
    ok(&server.cli(&["topic", "create", "orders", "--partitions", "3"], b""));
    let out = server.cli(&["topic", "create", "orders"], b"");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("TOPIC_EXISTS"),
        "{}",
        text(&out.stderr)
    );
    assert!(ok(&server.cli(&["topic", "list"], b"")).contains("orders"));

    let out = server.cli(&["produce", "orders", "--key", "k1"], b"one\ntwo\nthree\n");
    ok(&out);
    assert_eq!(acknowledged(&out), 3);
    let out = server.cli(
        &["consume", "orders", "--count", "3", "--timeout-ms", "5000"],
        b"",
    );
    ok(&out);
    assert_eq!(lines(&out), ["one", "two", "three"]);

    // A group continues where it committed.
    let first = server.cli(
        &[
            "consume",
            "orders",
            "--group",
            "g",
            "--count",
            "2",
            "--timeout-ms",
            "5000",
        ],
        b"",
    );
    assert_eq!(lines(&first), ["one", "two"]);
    let rest = server.cli(
        &["consume", "orders", "--group", "g", "--timeout-ms", "1000"],
        b"",
    );
    assert_eq!(lines(&rest), ["three"]);

    let described = ok(&server.cli(&["topic", "describe", "orders"], b""));
    assert!(described.contains("orders"), "{described}");

    let out = server.cli(&["produce", "nope"], b"x\n");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("UNKNOWN_TOPIC"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(acknowledged(&out), 0);

    ok(&server.cli(&["topic", "delete", "orders"], b""));
    assert!(!ok(&server.cli(&["topic", "list"], b"")).contains("orders"));
    assert_eq!(
        server.terminate(),
        Some(0),
        "SIGTERM must end in a clean exit"
    );
}

#[test]
fn data_survives_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProc::start(dir.path());
    ok(&server.cli(&["topic", "create", "t"], b""));
    ok(&server.cli(&["produce", "t"], b"a\nb\n"));
    assert_eq!(server.terminate(), Some(0));
    let server = ServerProc::start(dir.path());
    let out = server.cli(
        &["consume", "t", "--count", "2", "--timeout-ms", "5000"],
        b"",
    );
    assert_eq!(lines(&out), ["a", "b"]);
}

#[test]
fn status_shows_depth_rate_and_subscription_load_on_one_screen() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path());
    ok(&server.cli(&["topic", "create", "jobs", "--partitions", "2"], b""));
    ok(&server.cli(
        &[
            "subscription",
            "create",
            "jobs",
            "workers",
            "--max-deliveries",
            "1",
        ],
        b"",
    ));
    // All in one partition, so which messages the receives below lease,
    // and so the lag, does not depend on how the producer's batches were
    // spread (which depends on timing).
    ok(&server.cli(&["produce", "jobs", "--partition", "0"], b"a\nb\nc\nd\ne\n"));
    // Lease two and keep them; fail one more into the dead letters.
    ok(&server.cli(&["receive", "jobs", "workers", "--max", "2"], b""));
    let leased = ok(&server.cli(&["receive", "jobs", "workers", "--max", "1", "--json"], b""));
    let receipt = serde_json::from_str::<serde_json::Value>(leased.lines().next().unwrap())
        .unwrap()["receipt"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(&server.cli(&["nack", "jobs", "workers", &receipt], b""));

    let out = ok(&server.cli(&["status", "--interval-ms", "200"], b""));
    let topic = out
        .lines()
        .find(|l| l.starts_with("jobs "))
        .unwrap_or_else(|| panic!("{out}"));
    let cols: Vec<&str> = topic.split_whitespace().collect();
    assert_eq!(cols[1], "2", "partitions: {out}");
    assert_eq!(cols[2], "5", "depth: {out}");
    let sub = out
        .lines()
        .find(|l| l.starts_with("jobs/workers"))
        .unwrap_or_else(|| panic!("{out}"));
    let cols: Vec<&str> = sub.split_whitespace().collect();
    // Lag counts from the oldest message not done (leased ones at the
    // front): all 5; 2 leased; 1 dead-lettered.
    assert_eq!(&cols[1..], ["5", "2", "0", "1"], "{out}");

    let json = ok(&server.cli(&["status", "--interval-ms", "100", "--json"], b""));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["topics"][0]["messages"], 5, "{v}");
    assert_eq!(v["subscriptions"][0]["dead_letters"], 1, "{v}");
}

/// A `name{labels} value` line of `/metrics`, its value.
fn metric(server: &ServerProc, name_and_labels: &str) -> Option<f64> {
    server.metric(name_and_labels)
}

#[test]
fn status_and_metrics_show_consumer_group_lag_per_partition() {
    let (_dir, server) = start_after(&["topic create events --partitions 2"]);
    ok(&server.cli(&["produce", "events", "--partition", "0"], b"a\nb\nc\n"));
    ok(&server.cli(&["produce", "events", "--partition", "1"], b"d\n"));
    let consume = [
        "consume",
        "events",
        "--group",
        "billing",
        "--count",
        "4",
        "--timeout-ms",
        "5000",
    ];
    assert_eq!(lines(&server.cli(&consume, b"")).len(), 4);
    ok(&server.cli(&["produce", "events", "--partition", "0"], b"e\nf\n"));

    let out = ok(&server.cli(&["status", "--interval-ms", "100"], b""));
    let row = |p: &str| {
        let row = out
            .lines()
            .find(|l| l.starts_with(&format!("billing (events/{p})")))
            .unwrap_or_else(|| panic!("{out}"));
        words(row)[2..].to_vec()
    };
    // Lag, committed, end offset, members.
    assert_eq!(row("0"), ["2", "3", "5", "0"], "{out}");
    assert_eq!(row("1"), ["0", "1", "1", "0"], "{out}");
    let json = ok(&server.cli(&["status", "--interval-ms", "100", "--json"], b""));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let g = &v["groups"][0];
    assert_eq!(
        (&g["group"], &g["partition"], &g["lag"], &g["committed"]),
        (&"billing".into(), &0.into(), &2.into(), &3.into()),
        "{v}"
    );

    let labels = |p| format!("{{group=\"billing\",topic=\"events\",partition=\"{p}\"}}");
    let lag = |p| metric(&server, &format!("spool_group_lag_messages{}", labels(p)));
    assert_eq!((lag(0), lag(1)), (Some(2.0), Some(0.0)));
}

#[test]
fn status_and_metrics_show_topics_over_their_warn_depth() {
    let (_dir, server) = start_after(&[
        "topic create hot --warn-depth 3",
        "topic create calm --warn-depth 10",
        "topic create plain",
    ]);
    ok(&server.cli(&["produce", "hot"], b"a\nb\nc\n"));
    ok(&server.cli(&["produce", "calm"], b"a\n"));
    let out = ok(&server.cli(&["status", "--interval-ms", "100"], b""));
    let warn_column = |topic: &str| {
        let row = out
            .lines()
            .find(|l| l.starts_with(&format!("{topic} ")))
            .unwrap_or_else(|| panic!("{out}"));
        // The last column, after two spaces ("3 OVER" has one).
        row.rsplit("  ").next().unwrap_or_default().to_owned()
    };
    assert_eq!(warn_column("hot"), "3 OVER", "{out}");
    assert_eq!(warn_column("calm"), "10", "{out}");
    assert_eq!(warn_column("plain"), "-", "{out}");
    let json = ok(&server.cli(&["status", "--interval-ms", "100", "--json"], b""));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let hot = v["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "hot")
        .unwrap();
    assert_eq!(
        (&hot["warn_depth"], &hot["over_warn_depth"]),
        (&3.into(), &true.into())
    );

    let gauge = |name: &str, topic: &str| metric(&server, &format!("{name}{{topic=\"{topic}\"}}"));
    assert_eq!(gauge("spool_topic_over_warn_depth", "hot"), Some(1.0));
    assert_eq!(gauge("spool_topic_over_warn_depth", "calm"), Some(0.0));
    assert_eq!(gauge("spool_topic_over_warn_depth", "plain"), Some(0.0));
    assert_eq!(gauge("spool_topic_warn_depth", "hot"), Some(3.0));
    assert_eq!(gauge("spool_topic_warn_depth", "plain"), None);
}

/// Runs `spool ARGS` as given (no `--addr` appended).
fn spool(args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("SPOOL_ADDR")
        .env_remove("SPOOL_TOKEN")
        .env_remove("SPOOL_TLS_CA")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run spool")
}

#[test]
fn connection_flags_go_before_or_after_the_subcommand() {
    const ADMIN: &str = "cli-test-admin-token-0123";
    let (dir, server) = start_configured(&[], &[("SPOOL_ADMIN_TOKEN", ADMIN)]);
    let addr = server.addr.as_str();

    // Before the subcommand.
    ok(&spool(&[
        "--addr", addr, "--token", ADMIN, "topic", "create", "early",
    ]));
    // After it, and split between the two places.
    let listed = ok(&spool(&["topic", "list", "--addr", addr, "--token", ADMIN]));
    assert!(listed.contains("early"), "{listed}");
    let listed = ok(&spool(&["--token", ADMIN, "topic", "list", "--addr", addr]));
    assert!(listed.contains("early"), "{listed}");
    // Between a command and its subcommand too.
    ok(&spool(&["topic", "--addr", addr, "--token", ADMIN, "list"]));
    // The token given before really was used: without it the server refuses.
    let out = spool(&["--addr", addr, "topic", "list"]);
    assert!(
        !out.status.success() && text(&out.stderr).contains("UNAUTHENTICATED"),
        "{}",
        text(&out.stderr)
    );
    // Given twice, the later one counts.
    ok(&spool(&[
        "--addr",
        "127.0.0.1:1",
        "topic",
        "list",
        "--addr",
        addr,
        "--token",
        ADMIN,
    ]));
    // --tls-ca before the subcommand turns TLS on (this server speaks plain
    // TCP, so the missing CA file is what fails).
    let missing = dir.path().join("no-such-ca.pem");
    let missing = missing.to_str().unwrap();
    let out = spool(&["--tls-ca", missing, "--addr", addr, "topic", "list"]);
    assert!(
        !out.status.success() && text(&out.stderr).contains("no-such-ca.pem"),
        "{}",
        text(&out.stderr)
    );

    // The server has no use for them: refused, not silently ignored.
    let out = spool(&["server", "--addr", addr, "--print-config"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--addr is for client commands"),
        "{}",
        text(&out.stderr)
    );
}

/// Issue 23: `spool consume --from 99` past the end printed nothing and
/// exited 0. Now it says where the partitions end; at the end itself it
/// waits for the next message as before.
#[test]
fn consuming_from_past_the_end_says_where_the_partitions_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path());
    ok(&server.cli(&["topic", "create", "t"], b""));
    ok(&server.cli(&["produce", "t"], b"one\ntwo\n"));
    let past = ["consume", "t", "--from", "99", "--timeout-ms", "300"];
    let out = server.cli(&past, b"");
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("OFFSET_OUT_OF_RANGE"), "{err}");
    assert!(err.contains("partition 0 ends at 2"), "{err}");
    let at_end = ["consume", "t", "--from", "2", "--timeout-ms", "300"];
    assert_eq!(ok(&server.cli(&at_end, b"")), "");
    let from_one = ["consume", "t", "--from", "1", "--timeout-ms", "300"];
    assert!(ok(&server.cli(&from_one, b"")).contains("two"));
}

/// Most a graceful stop of a server with no client may take: the 2 s the
/// server allows connections still closing must not be spent when there
/// are none (the bound is loose for a busy test machine).
const IDLE_STOP_MAX: std::time::Duration = std::time::Duration::from_millis(1_500);

#[test]
fn a_server_with_no_client_stops_at_once_and_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let mut server = ServerProc::start_logging_to(&dir.path().join("data"), &log);
    // Clients came and went, on both listeners.
    ok(&server.cli(&["topic", "create", "t"], b""));
    ok(&server.cli(&["produce", "t"], b"a\n"));
    let out = server.cli(
        &["consume", "t", "--count", "1", "--timeout-ms", "5000"],
        b"",
    );
    assert_eq!(lines(&out), ["a"]);
    assert!(server.binary_connections_closed(std::time::Duration::from_secs(5)));
    let began = std::time::Instant::now();
    assert_eq!(server.terminate(), Some(0));
    let took = began.elapsed();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(took < IDLE_STOP_MAX, "the stop took {took:?}\n{logged}");
    assert!(!logged.contains("still in use"), "{logged}");
}
