//! The plain-pattern table (same layout as the tuned one, `crate::report`)
//! and the targets for the plain pattern.

use crate::common::Plan;
use crate::report::{
    all, best_peer, find, measured, number, size, size_name, verdict, Key, Row, TIERS,
};
use crate::System;
use serde_json::Value;
use std::fmt::Write;

/// The rates of the plain end-to-end runs (the same in quick and full
/// plans).
fn rates() -> [u64; 2] {
    Plan::new(false).plain_rates
}

fn rate(r: u64) -> Key {
    Some(("rate", r))
}

fn rate_name(r: u64) -> String {
    format!("{}k/s", r / 1000)
}

fn rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for (workload, what) in [("plain-publish", "publish"), ("plain-consume", "consume")] {
        for bytes in [100, 1024] {
            rows.push(Row {
                label: format!("plain {what} {} (msgs/s)", size_name(bytes)),
                workload,
                key: size(bytes),
                field: "msgs_per_s",
                lower_better: false,
            });
        }
    }
    for r in rates() {
        for (field, what) in [("p99_us", "p99"), ("p50_us", "p50")] {
            rows.push(Row {
                label: format!("plain end-to-end {what} at {} (µs)", rate_name(r)),
                workload: "plain-end-to-end",
                key: rate(r),
                field,
                lower_better: true,
            });
        }
    }
    rows
}

pub fn table(lines: &[Value]) -> String {
    let mut out = String::from(
        "The plain pattern (one call per message, ≤ 1,000 unacknowledged; a group consumer \
         committing after every poll; each client's default options):\n\n",
    );
    out.push_str(&measured(lines, &rows()));
    let _ = writeln!(
        out,
        "\n¹ latency: a ratio below 1 means Spool is faster. Median round as above.\n"
    );
    out.push_str(&rounds(lines));
    out
}

/// Every round of the plain end-to-end runs (p99, and the machine's stalls
/// meanwhile), for systems with more than one.
fn rounds(lines: &[Value]) -> String {
    let mut out = String::new();
    let [slow, fast] = rates();
    for tier in TIERS {
        for system in System::ALL {
            let runs = |r| all(lines, system, tier, "plain-end-to-end", rate(r));
            let (a, b) = (runs(slow), runs(fast));
            if a.len() < 2 && b.len() < 2 {
                continue;
            }
            if out.is_empty() {
                let (s, f) = (rate_name(slow), rate_name(fast));
                let _ = writeln!(
                    out,
                    "| Tier | System | plain p99 at {s}, each round (µs) | stalled (ms) ² | plain p99 at {f}, each round (µs) | stalled (ms) ² |"
                );
                let _ = writeln!(out, "|---|---|---|---|---|---|");
            }
            let list = |ls: &[&Value], k: &str| {
                ls.iter()
                    .map(|l| match l[k].as_f64() {
                        Some(v) if k == "hiccup_stalled_ms" => format!("{v:.1}"),
                        v => number(v),
                    })
                    .collect::<Vec<_>>()
                    .join(" / ")
            };
            let _ = writeln!(
                out,
                "| {tier} | {} | {} | {} | {} | {} |",
                system.title(),
                list(&a, "p99_us"),
                list(&a, "hiccup_stalled_ms"),
                list(&b, "p99_us"),
                list(&b, "hiccup_stalled_ms"),
            );
        }
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// The targets for the plain pattern.
pub fn targets(lines: &[Value]) -> String {
    let mut out = String::from("Targets of the plain pattern:\n\n");
    let _ = writeln!(out, "| Target | Spool | Peer | Ratio | Verdict |");
    let _ = writeln!(out, "|---|--:|---|--:|---|");
    end_to_end(lines, &mut out);
    publish(lines, &mut out);
    consume(lines, &mut out);
    out
}

/// p99 ≤ Redis Streams with `appendfsync always` (the durable tier's
/// Redis) doing the same pattern, and p50 < 1 ms; Spool `always`.
fn end_to_end(lines: &[Value], out: &mut String) {
    for r in rates() {
        let Some(spool) = find(lines, System::Spool, "durable", "plain-end-to-end", rate(r)) else {
            continue;
        };
        let at = rate_name(r);
        let redis = find(lines, System::Redis, "durable", "plain-end-to-end", rate(r))
            .and_then(|l| l["p99_us"].as_f64());
        if let (Some(v), Some(p)) = (spool["p99_us"].as_f64(), redis) {
            let _ = writeln!(
                out,
                "| plain end-to-end p99 at {at} ≤ Redis Streams `appendfsync always` (durable) | {} µs | {} µs | {:.2}× | {} |",
                number(Some(v)),
                number(Some(p)),
                v / p,
                verdict(v <= p)
            );
        }
        if let Some(v) = spool["p50_us"].as_f64() {
            let _ = writeln!(
                out,
                "| plain end-to-end p50 at {at} < 1 ms (durable) | {} µs | — | — | {} |",
                number(Some(v)),
                verdict(v < 1000.0)
            );
        }
    }
}

/// ≥ 5× the best peer at 100 B and ≥ 3× at 1 KiB, Spool `always` against
/// every peer configuration (any durability, either tier).
fn publish(lines: &[Value], out: &mut String) {
    for (bytes, factor) in [(100, 5.0), (1024, 3.0)] {
        let Some(v) = find(
            lines,
            System::Spool,
            "durable",
            "plain-publish",
            size(bytes),
        )
        .and_then(|l| l["msgs_per_s"].as_f64()) else {
            continue;
        };
        let best = best_peer(
            lines,
            "plain-publish",
            size(bytes),
            "msgs_per_s",
            &TIERS,
            None,
            false,
        );
        if let Some((p, who)) = best {
            let r = v / p;
            let _ = writeln!(
                out,
                "| plain publish {} ≥ {factor}× best peer, any durability (Spool durable) | {} | {} ({who}) | {r:.2}× | {} |",
                size_name(bytes),
                number(Some(v)),
                number(Some(p)),
                verdict(r >= factor)
            );
        }
    }
}

/// ≥ 5× the best peer at both sizes, each tier against its own peers (a
/// commit costs an fsync in some durable configurations).
fn consume(lines: &[Value], out: &mut String) {
    for tier in TIERS {
        for bytes in [100, 1024] {
            let Some(v) = find(lines, System::Spool, tier, "plain-consume", size(bytes))
                .and_then(|l| l["msgs_per_s"].as_f64())
            else {
                continue;
            };
            let best = best_peer(
                lines,
                "plain-consume",
                size(bytes),
                "msgs_per_s",
                &[tier],
                None,
                false,
            );
            if let Some((p, who)) = best {
                let r = v / p;
                let _ = writeln!(
                    out,
                    "| plain consume {}, commit after every poll, ≥ 5× best peer ({tier}) | {} | {} ({who}) | {r:.2}× | {} |",
                    size_name(bytes),
                    number(Some(v)),
                    number(Some(p)),
                    verdict(r >= 5.0)
                );
            }
        }
    }
}
