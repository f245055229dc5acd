//! Pattern subscriptions pick up topics created after the consumer started.

use crate::support::*;
use std::process::{Command, Stdio};

#[test]
fn pattern_consumer_sees_every_matching_topic_including_new_ones() {
    let (_dir, server) = start_after(&["topic create orders.eu", "topic create payments"]);
    ok(&server.cli(&["produce", "orders.eu"], b"eu1\n"));
    ok(&server.cli(&["produce", "payments"], b"pay1\n"));
    for group in [None, Some("pg")] {
        let mut args = vec![
            "consume".to_string(),
            "orders.*".into(),
            "--count".into(),
            "3".into(),
            "--timeout-ms".into(),
            "15000".into(),
            "--addr".into(),
            server.addr.clone(),
        ];
        if let Some(g) = group {
            args.extend(["--group".to_string(), g.to_string()]);
        }
        let consumer = Command::new(BIN)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let topic = format!("orders.us{}", group.map(|_| "2").unwrap_or(""));
        ok(&server.cli(&["topic", "create", &topic], b""));
        ok(&server.cli(&["produce", &topic], b"us1\nus2\n"));
        let out = consumer.wait_with_output().unwrap();
        let mut got = lines(&out);
        got.sort();
        assert_eq!(
            got,
            ["eu1", "us1", "us2"],
            "group {group:?}; stderr {}",
            text(&out.stderr)
        );
    }
}
