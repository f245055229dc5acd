//! Consumer groups: 100,000 keyed messages over 3 partitions consumed by a
//! group of 3 — each message exactly once, per-key order kept; and a
//! consumer killed midway whose partitions move to the others.

use crate::raw::{batch, Raw};
use crate::support::*;
use spool_proto::{self as p, Request};
use spool_types::partitioner::partition_for_key;
use std::collections::{BTreeMap, HashSet};
use std::process::{Child, Command, Stdio};

const MESSAGES: usize = 100_000;
const KEYS: usize = 100;

/// Produces `key{k}:{seq}` values, routed by key, in batches per partition.
fn produce_keyed(addr: &str, topic: &str) {
    let mut raw = Raw::connect(addr);
    let mut pending: BTreeMap<u32, Vec<(String, String)>> = BTreeMap::new();
    let mut seq = vec![0usize; KEYS];
    let mut in_flight = 0;
    let flush = |raw: &mut Raw,
                 partition: u32,
                 records: &mut Vec<(String, String)>,
                 in_flight: &mut usize| {
        let b = batch(records);
        records.clear();
        raw.send(&Request::Produce(p::Produce {
            topic: topic.into(),
            routing: p::Routing::Partition(partition),
            batch: b,
        }));
        *in_flight += 1;
        while *in_flight > 16 {
            let (_, r) = raw.receive().unwrap();
            assert!(r.result().is_ok(), "{r:?}");
            *in_flight -= 1;
        }
    };
    for i in 0..MESSAGES {
        let k = (i * 7919) % KEYS;
        let key = format!("key{k}");
        let value = format!("{key}:{}", seq[k]);
        seq[k] += 1;
        let partition = partition_for_key(key.as_bytes(), 3);
        let records = pending.entry(partition).or_default();
        records.push((key, value));
        if records.len() == 1000 {
            let mut full = std::mem::take(records);
            flush(&mut raw, partition, &mut full, &mut in_flight);
        }
    }
    for (partition, mut records) in std::mem::take(&mut pending) {
        if !records.is_empty() {
            flush(&mut raw, partition, &mut records, &mut in_flight);
        }
    }
    while in_flight > 0 {
        let (_, r) = raw.receive().unwrap();
        assert!(r.result().is_ok(), "{r:?}");
        in_flight -= 1;
    }
}

fn consumer(addr: &str, group: &str, timeout_ms: u32) -> Child {
    Command::new(BIN)
        .args([
            "consume",
            "orders",
            "--group",
            group,
            "--timeout-ms",
            &timeout_ms.to_string(),
            "--addr",
            addr,
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Checks per-key order within one consumer's output.
fn assert_key_order(values: &[String]) {
    let mut last: BTreeMap<&str, i64> = BTreeMap::new();
    for v in values {
        let (key, seq) = v.split_once(':').unwrap();
        let seq: i64 = seq.parse().unwrap();
        let prev = last.insert(key, seq).unwrap_or(-1);
        assert!(seq > prev, "key {key}: {seq} after {prev}");
    }
}

#[test]
fn a_group_of_three_gets_every_message_exactly_once_in_key_order() {
    let (_dir, server) = start_after(&["topic create orders --partitions 3"]);
    produce_keyed(&server.addr, "orders");
    let consumers: Vec<Child> = (0..3).map(|_| consumer(&server.addr, "g", 4000)).collect();
    let mut seen = HashSet::new();
    let mut per_consumer = Vec::new();
    for c in consumers {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let values = lines(&out);
        assert_key_order(&values);
        per_consumer.push(values.len());
        for v in values {
            assert!(
                seen.insert(v.clone()),
                "{v} delivered twice within the group"
            );
        }
    }
    assert_eq!(seen.len(), MESSAGES, "per consumer: {per_consumer:?}");
}

#[test]
fn a_killed_consumers_partitions_move_to_the_others_and_nothing_is_lost() {
    let (_dir, server) = start_after(&["topic create orders --partitions 3"]);
    produce_keyed(&server.addr, "orders");
    let mut victim = consumer(&server.addr, "h", 20_000);
    let survivors: Vec<Child> = (0..2)
        .map(|_| consumer(&server.addr, "h", 15_000))
        .collect();
    // Let the victim read part of its share, then kill it without warning.
    let mut victim_out = victim.stdout.take().unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while got.iter().filter(|b| **b == b'\n').count() < 100 {
        use std::io::Read;
        let n = victim_out.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
    }
    victim.kill().unwrap();
    victim.wait().unwrap();
    let mut seen: HashSet<String> = text(&got)
        .lines()
        .filter(|l| l.contains(':'))
        .map(str::to_owned)
        .collect();
    for c in survivors {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        seen.extend(lines(&out));
    }
    let missing = MESSAGES - seen.len().min(MESSAGES);
    assert_eq!(
        missing, 0,
        "{missing} messages were never delivered after the consumer died"
    );
}
