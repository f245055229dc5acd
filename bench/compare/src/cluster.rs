//! Cluster mode (`run --cluster`, run.sh `--cluster`; issue 18): the same
//! tuned publish, consume and end-to-end workloads against 3-node
//! clusters — Spool with 3 replicas, a NATS JetStream stream with 3
//! replicas, a RabbitMQ quorum queue on 3 nodes — and against one Spool
//! node with the same topic shape, so that the table shows what
//! replication costs. Durable tier only; end-to-end at
//! [`E2E_RATE`]. Its result lines carry `"mode": "cluster"` and `nodes`;
//! `table` prints them as their own table.

use crate::report::{all, find, number, size, size_name, verdict, Key};
use crate::System;
use serde_json::Value;
use std::fmt::Write;

/// Offered rate of the cluster end-to-end run (msgs/s, 1 KiB).
pub const E2E_RATE: u64 = 5_000;

/// Spool's partitions per topic in cluster mode, on the cluster and on the
/// single node alike (a cluster spreads their leaders over its nodes).
pub const PARTITIONS: u32 = 3;

/// The shape of a cluster-mode run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Nodes named by `--addr`; every partition, stream or queue has a
    /// replica on each.
    pub nodes: usize,
    /// Spool's partitions per topic.
    pub partitions: u32,
}

const PEERS: [System; 2] = [System::Nats, System::RabbitMq];

/// The cluster-mode lines of the results: (3-node and peer lines, the
/// single-node Spool lines).
fn split(lines: &[Value]) -> (Vec<Value>, Vec<Value>) {
    let cluster = |l: &&Value| l["mode"] == "cluster";
    let many = lines
        .iter()
        .filter(cluster)
        .filter(|l| l["nodes"].as_u64().unwrap_or(0) > 1)
        .cloned()
        .collect();
    let single = lines
        .iter()
        .filter(cluster)
        .filter(|l| l["nodes"].as_u64() == Some(1) && l["system"] == "spool")
        .cloned()
        .collect();
    (many, single)
}

struct Row {
    label: String,
    workload: &'static str,
    key: Key,
    field: &'static str,
    lower_better: bool,
}

fn rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for workload in ["publish", "consume"] {
        for bytes in [100, 1024] {
            rows.push(Row {
                label: format!("{workload} {} (msgs/s)", size_name(bytes)),
                workload,
                key: size(bytes),
                field: "msgs_per_s",
                lower_better: false,
            });
        }
    }
    for (field, what) in [("p50_us", "p50"), ("p99_us", "p99")] {
        rows.push(Row {
            label: format!("end-to-end {what} at {}k/s, 1 KiB (µs) ¹", E2E_RATE / 1000),
            workload: "end-to-end",
            key: Some(("rate", E2E_RATE)),
            field,
            lower_better: true,
        });
    }
    rows
}

fn value(lines: &[Value], system: System, row: &Row) -> Option<f64> {
    find(lines, system, "durable", row.workload, row.key)?[row.field].as_f64()
}

/// The best peer cluster's value of a row, and which peer it is.
fn best(lines: &[Value], row: &Row) -> Option<(f64, System)> {
    PEERS
        .iter()
        .filter_map(|p| value(lines, *p, row).map(|v| (v, *p)))
        .reduce(|a, b| {
            let b_better = if row.lower_better {
                b.0 < a.0
            } else {
                b.0 > a.0
            };
            if b_better {
                b
            } else {
                a
            }
        })
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".into(),
    }
}

/// The cluster table, each end-to-end round, what each acknowledgement
/// promises, failures, and the targets.
pub fn table(lines: &[Value]) -> String {
    let (many, single) = split(lines);
    let mut out = String::new();
    let nodes = many
        .iter()
        .find_map(|l| l["nodes"].as_u64())
        .map_or("3".to_owned(), |n| n.to_string());
    let _ = writeln!(
        out,
        "Clusters of {nodes} nodes on loopback, every message on each node (durable tier):\n"
    );
    let _ = writeln!(
        out,
        "| Workload | Spool | NATS JetStream | RabbitMQ | Spool / best peer | Spool, 1 node | cluster / 1 node ² |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|");
    for row in rows() {
        let spool = value(&many, System::Spool, &row);
        let peers: Vec<Option<f64>> = PEERS.iter().map(|p| value(&many, *p, &row)).collect();
        let one = value(&single, System::Spool, &row);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.label,
            number(spool),
            number(peers[0]),
            number(peers[1]),
            ratio(spool, best(&many, &row).map(|b| b.0)),
            number(one),
            ratio(spool, one),
        );
    }
    let _ = writeln!(
        out,
        "\n¹ latency: a ratio below 1 means Spool is faster. ² what replication costs: the \
         3-node Spool cluster's value over one Spool node's with the same topics, in the same \
         run (throughput below 1 and latency above 1 are the cost).\n"
    );
    out.push_str(&rounds(&many, &single));
    out.push_str(&settings(&many, &single));
    let errors: Vec<&Value> = lines
        .iter()
        .filter(|l| l["mode"] == "cluster" && l.get("error").is_some())
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(out, "\nFailed runs:");
        for e in errors {
            let _ = writeln!(
                out,
                "- {} ({} node(s)) {}: {}",
                e["system"].as_str().unwrap_or("?"),
                e["nodes"].as_u64().unwrap_or(0),
                e["workload"].as_str().unwrap_or("?"),
                e["error"].as_str().unwrap_or("?")
            );
        }
    }
    let _ = writeln!(out, "\n{}", targets(&many));
    out
}

/// Every end-to-end round (one too: the stalls say how far to trust it):
/// p50, p99 and how long the harness's hiccup probe saw the machine
/// stalled meanwhile.
fn rounds(many: &[Value], single: &[Value]) -> String {
    let mut out = String::new();
    let key = Some(("rate", E2E_RATE));
    let runs = [
        (
            "Spool",
            all(many, System::Spool, "durable", "end-to-end", key),
        ),
        (
            "NATS JetStream",
            all(many, System::Nats, "durable", "end-to-end", key),
        ),
        (
            "RabbitMQ",
            all(many, System::RabbitMq, "durable", "end-to-end", key),
        ),
        (
            "Spool, 1 node",
            all(single, System::Spool, "durable", "end-to-end", key),
        ),
    ];
    if runs.iter().all(|(_, r)| r.is_empty()) {
        return out;
    }
    let _ = writeln!(
        out,
        "| System | end-to-end p50, each round (µs) | p99, each round (µs) | machine stalled, each round (ms) ³ |"
    );
    let _ = writeln!(out, "|---|---|---|---|");
    for (title, ls) in runs {
        let list = |k: &str, digits: usize| {
            ls.iter()
                .map(|l| match l[k].as_f64() {
                    Some(v) if digits > 0 => format!("{v:.digits$}"),
                    v => number(v),
                })
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let _ = writeln!(
            out,
            "| {title} | {} | {} | {} |",
            list("p50_us", 0),
            list("p99_us", 0),
            list("hiccup_stalled_ms", 1)
        );
    }
    out.push_str(
        "\nThe table shows each system's median round by p99. ³ a thread in the harness that \
         sleeps 1 ms at a time: the sum of its wake-ups that came more than 1 ms late.\n\n",
    );
    out
}

fn settings(many: &[Value], single: &[Value]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| System | Nodes | Setting | An acknowledged publish is |"
    );
    let _ = writeln!(out, "|---|--:|---|---|");
    let systems = [
        (many, System::Spool),
        (many, System::Nats),
        (many, System::RabbitMq),
        (single, System::Spool),
    ];
    for (lines, system) in systems {
        if let Some(l) = lines.iter().find(|l| l["system"] == system.name()) {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                system.title(),
                l["nodes"].as_u64().unwrap_or(0),
                l["setting"].as_str().unwrap_or(""),
                l["promise"].as_str().unwrap_or("")
            );
        }
    }
    out
}

/// Issue 18: throughput ≥ 3× the best peer cluster's; end-to-end p99 no
/// higher than the best peer cluster's.
fn targets(many: &[Value]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| Target | Spool | Best peer | Ratio | Verdict |");
    let _ = writeln!(out, "|---|--:|---|--:|---|");
    for row in rows() {
        if row.field == "p50_us" {
            continue;
        }
        let (Some(s), Some((p, who))) = (value(many, System::Spool, &row), best(many, &row)) else {
            continue;
        };
        let (goal, ok) = if row.lower_better {
            ("≤ best peer's", s <= p)
        } else {
            ("≥ 3× best peer", s >= 3.0 * p)
        };
        let unit = if row.lower_better { " µs" } else { "" };
        let _ = writeln!(
            out,
            "| {} {goal} | {}{unit} | {}{unit} ({}) | {:.2}× | {} |",
            row.label.trim_end_matches(" ¹"),
            number(Some(s)),
            number(Some(p)),
            who.title(),
            s / p,
            verdict(ok)
        );
    }
    out
}
