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
