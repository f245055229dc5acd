//! A full topic refuses with QUEUE_FULL; a work queue accepts again once
//! its consumers catch up.

use crate::support::*;

#[test]
fn full_topic_rejects_then_work_queue_accepts_after_consumption() {
    let (_dir, server) =
        start_after(&["topic create jobs --max-messages 5 --retention work-queue"]);
    let input: String = (0..8).map(|i| format!("job{i}\n")).collect();
    let out = server.cli(&["produce", "jobs"], input.as_bytes());
    assert!(
        !out.status.success(),
        "producing 8 into a 5-message queue must fail"
    );
    assert!(
        text(&out.stderr).contains("QUEUE_FULL"),
        "stderr: {}",
        text(&out.stderr)
    );
    let acked = acknowledged(&out);
    assert_eq!(acked, 5, "exactly the first five fit");
    // The rejected messages were not written.
    let described = ok(&server.cli(&["topic", "describe", "jobs"], b""));
    assert!(described.contains('5'), "{described}");

    // A group consumes (and commits) three; room for three more.
    let got = server.cli(
        &words("consume jobs --group workers --count 3 --timeout-ms 5000"),
        b"",
    );
    assert_eq!(lines(&got), ["job0", "job1", "job2"]);
    let out = server.cli(&["produce", "jobs"], b"x1\nx2\nx3\n");
    ok(&out);
    assert_eq!(acknowledged(&out), 3);
    let out = server.cli(&["produce", "jobs"], b"x4\n");
    // The frame's retry hint is printed too.
    let stderr = text(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: QUEUE_FULL: "))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.ends_with(" (retry after 1000 ms)"), "{line}");
}

#[test]
fn limits_retention_drop_oldest_keeps_newest() {
    let (_dir, server) =
        start_after(&["topic create ticks --max-messages 3 --on-full drop-oldest"]);
    ok(&server.cli(&["produce", "ticks"], b"1\n2\n3\n4\n5\n"));
    let out = server.cli(&["consume", "ticks", "--timeout-ms", "1000"], b"");
    assert_eq!(lines(&out), ["3", "4", "5"]);
}
