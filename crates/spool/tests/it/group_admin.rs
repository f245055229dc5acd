//! `spool group list|describe|reset-offsets|delete` through the real
//! binary: committed offsets and lag per partition, resets to earliest,
//! latest, an offset and a time, refused (GROUP_NOT_EMPTY) while a member
//! is in the group.

use crate::raw::Raw;
use crate::support::*;
use serde_json::Value;
use spool_proto::{self as p, Request};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `spool group describe G --json`, parsed.
fn describe(server: &ServerProc, group: &str) -> Value {
    let out = ok(&server.cli(&["group", "describe", group, "--json"], b""));
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// (committed, end offset, lag) of each partition, in partition order.
fn positions(group: &Value) -> Vec<(u64, u64, u64)> {
    let mut parts: Vec<&Value> = group["partitions"].as_array().unwrap().iter().collect();
    parts.sort_by_key(|p| p["partition"].as_u64());
    parts
        .iter()
        .map(|p| {
            let n = |k: &str| p[k].as_u64().unwrap();
            (n("committed"), n("end_offset"), n("lag"))
        })
        .collect()
}

fn reset(server: &ServerProc, to: &str) -> std::process::Output {
    server.cli(
        &[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "orders",
            "--to",
            to,
        ],
        b"",
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn group_commands_show_lag_and_move_offsets_only_without_members() {
    let (_dir, server) = start_after(&["topic create orders --partitions 2"]);
    ok(&server.cli(&["produce", "orders", "--partition", "0"], b"a\nb\nc\n"));
    ok(&server.cli(&["produce", "orders", "--partition", "1"], b"d\ne\n"));
    let args = [
        "consume",
        "orders",
        "--group",
        "g",
        "--count",
        "5",
        "--timeout-ms",
        "5000",
    ];
    assert_eq!(lines(&server.cli(&args, b"")).len(), 5);
    ok(&server.cli(&["produce", "orders", "--partition", "0"], b"f\ng\n"));

    let listed = ok(&server.cli(&["group", "list"], b""));
    let row = listed
        .lines()
        .find(|l| l.starts_with("g "))
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(
        words(row),
        ["g", "0", "2", "2"],
        "members, partitions, lag: {listed}"
    );
    let g = describe(&server, "g");
    assert_eq!(positions(&g), [(3, 5, 2), (2, 2, 0)], "{g}");
    assert_eq!(g["members"].as_array().unwrap().len(), 0, "{g}");

    assert_eq!(
        lines(&ok_out(reset(&server, "earliest"))),
        ["orders/0\t0", "orders/1\t0"]
    );
    assert_eq!(positions(&describe(&server, "g")), [(0, 5, 5), (0, 2, 2)]);
    ok_out(reset(&server, "latest"));
    assert_eq!(positions(&describe(&server, "g")), [(5, 5, 0), (2, 2, 0)]);
    // An offset is clamped into each partition's range.
    ok_out(reset(&server, "4"));
    assert_eq!(positions(&describe(&server, "g")), [(4, 5, 1), (2, 2, 0)]);

    // A time: the first message at or after it; the end where none is.
    std::thread::sleep(Duration::from_millis(20));
    let t = now_ms();
    std::thread::sleep(Duration::from_millis(20));
    ok(&server.cli(&["produce", "orders", "--partition", "0"], b"h\n"));
    ok_out(reset(&server, &format!("@{t}")));
    assert_eq!(positions(&describe(&server, "g")), [(5, 6, 1), (2, 2, 0)]);
    ok_out(reset(&server, "earliest"));
    let rfc3339 = jiff::Timestamp::from_millisecond(t as i64)
        .unwrap()
        .to_string();
    ok_out(reset(&server, &rfc3339));
    assert_eq!(positions(&describe(&server, "g")), [(5, 6, 1), (2, 2, 0)]);
    let bad = reset(&server, "yesterday");
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("INVALID_REQUEST"),
        "{}",
        text(&bad.stderr)
    );

    // A member in the group: nothing moves under it.
    let mut member = Raw::connect(&server.addr);
    let joined = member.call(&Request::JoinGroup(p::JoinGroup {
        group: "g".into(),
        member_id: None,
        topics: vec!["orders".into()],
        session_timeout_ms: 60_000,
        start: p::GroupStart::Earliest,
    }));
    let Ok(p::ResponseBody::Joined(joined)) = joined.into_result() else {
        panic!("join failed");
    };
    for refused in [
        reset(&server, "earliest"),
        server.cli(&["group", "delete", "g"], b""),
    ] {
        assert!(!refused.status.success());
        let stderr = text(&refused.stderr);
        assert!(stderr.contains("GROUP_NOT_EMPTY"), "{stderr}");
    }
    let g = describe(&server, "g");
    assert_eq!(positions(&g), [(5, 6, 1), (2, 2, 0)], "{g}");
    assert_eq!(
        g["members"][0]["member_id"],
        joined.member_id.as_str(),
        "{g}"
    );
    assert_eq!(
        g["members"][0]["assignment"].as_array().unwrap().len(),
        2,
        "{g}"
    );
    assert_eq!(
        g["partitions"][0]["member"],
        joined.member_id.as_str(),
        "{g}"
    );
    let text_view = ok(&server.cli(&["group", "describe", "g"], b""));
    assert!(text_view.contains(&joined.member_id), "{text_view}");

    let left = member.call(&Request::LeaveGroup(p::LeaveGroup {
        group: "g".into(),
        member_id: joined.member_id,
    }));
    assert!(left.result().is_ok(), "{left:?}");
    ok(&server.cli(&["group", "delete", "g"], b""));
    let gone = server.cli(&["group", "describe", "g"], b"");
    assert!(
        text(&gone.stderr).contains("UNKNOWN_GROUP"),
        "{}",
        text(&gone.stderr)
    );
    assert!(!ok(&server.cli(&["group", "list"], b"")).contains("\ng "));
}

/// [`ok`] for an owned output.
fn ok_out(out: std::process::Output) -> std::process::Output {
    ok(&out);
    out
}
