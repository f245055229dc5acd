//! The comparison table (Markdown) from the result lines: values, the
//! Spool / peer ratios, what each acknowledgement promises, and the
//! targets of the performance issue.

use crate::System;
use serde_json::Value;
use std::fmt::Write;

pub(crate) const PEERS: [System; 3] = [System::Redis, System::Nats, System::RabbitMq];
pub(crate) const TIERS: [&str; 2] = ["durable", "default"];

/// Which of a workload's result lines: those whose field (`size`, or
/// `rate` for the plain end-to-end runs) has this value; `None`: all.
pub(crate) type Key = Option<(&'static str, u64)>;

pub(crate) fn size(bytes: u64) -> Key {
    Some(("size", bytes))
}

/// One measured row of the table.
pub(crate) struct Row {
    pub label: String,
    pub workload: &'static str,
    pub key: Key,
    pub field: &'static str,
    /// Latency: lower is better.
    pub lower_better: bool,
}

fn rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for workload in ["publish", "consume"] {
        for size in [100, 1024] {
            rows.push(Row {
                label: format!("{workload} {} (msgs/s)", size_name(size)),
                workload,
                key: self::size(size),
                field: "msgs_per_s",
                lower_better: false,
            });
        }
    }
    rows.push(Row {
        label: "end-to-end p99 at 10k/s (µs)".into(),
        workload: "end-to-end",
        key: None,
        field: "p99_us",
        lower_better: true,
    });
    rows.push(Row {
        label: "end-to-end p50 at 10k/s (µs)".into(),
        workload: "end-to-end",
        key: None,
        field: "p50_us",
        lower_better: true,
    });
    rows.push(Row {
        label: "queue round trip, 16 workers (msgs/s)".into(),
        workload: "queue",
        key: None,
        field: "msgs_per_s",
        lower_better: false,
    });
    rows
}

pub(crate) fn size_name(size: u64) -> &'static str {
    if size == 100 {
        "100 B"
    } else {
        "1 KiB"
    }
}

/// The result line of a system, tier and workload (and key). When the
/// file holds several (run.sh's rounds, or passes appended to one file),
/// the median one: by p99 for end-to-end, by throughput otherwise. The
/// machine's stalls come and go, so one line can be far off either way.
pub(crate) fn find<'a>(
    lines: &'a [Value],
    system: System,
    tier: &str,
    workload: &str,
    key: Key,
) -> Option<&'a Value> {
    let mut matching = all(lines, system, tier, workload, key);
    let latency = workload.ends_with("end-to-end");
    let field = if latency { "p99_us" } else { "msgs_per_s" };
    matching.sort_by(|a, b| metric(a, field).total_cmp(&metric(b, field)));
    // Ascending, so of an even number the worse of the middle two is the
    // upper one for a latency and the lower one for a rate.
    let n = matching.len();
    let middle = if latency {
        n / 2
    } else {
        n.saturating_sub(1) / 2
    };
    matching.get(middle).copied()
}

/// Every successful result line of a system, tier and workload (and key),
/// in file order.
pub(crate) fn all<'a>(
    lines: &'a [Value],
    system: System,
    tier: &str,
    workload: &str,
    key: Key,
) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| {
            l["system"] == system.name()
                && l["tier"] == tier
                && l["workload"] == workload
                && l.get("error").is_none()
                && key.is_none_or(|(field, v)| l[field].as_u64() == Some(v))
        })
        .collect()
}

fn metric(line: &Value, field: &str) -> f64 {
    line[field].as_f64().unwrap_or(f64::NAN)
}

/// The median of the disk measurements in the file.
fn disk(lines: &[Value]) -> Option<f64> {
    let mut all: Vec<f64> = lines
        .iter()
        .filter(|l| l["workload"] == "disk")
        .filter_map(|l| l["mb_per_s"].as_f64())
        .collect();
    all.sort_by(f64::total_cmp);
    all.get(all.len() / 2).copied()
}

fn value(lines: &[Value], system: System, tier: &str, row: &Row) -> Option<f64> {
    find(lines, system, tier, row.workload, row.key)?[row.field].as_f64()
}

pub(crate) fn number(v: Option<f64>) -> String {
    let Some(v) = v else {
        return "—".into();
    };
    let digits = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ratio(spool: Option<f64>, peer: Option<f64>) -> String {
    match (spool, peer) {
        (Some(s), Some(p)) if p > 0.0 => format!("{:.2}×", s / p),
        _ => "—".into(),
    }
}

/// The values of `rows` in both tiers, with the Spool / peer ratios.
pub(crate) fn measured(lines: &[Value], rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| Workload | Tier | Spool | Redis Streams | NATS JetStream | RabbitMQ | Spool/Redis | Spool/NATS | Spool/RabbitMQ |"
    );
    let _ = writeln!(out, "|---|---|--:|--:|--:|--:|--:|--:|--:|");
    for tier in TIERS {
        for row in rows {
            let spool = value(lines, System::Spool, tier, row);
            let peers: Vec<Option<f64>> =
                PEERS.iter().map(|p| value(lines, *p, tier, row)).collect();
            let label = if row.lower_better {
                format!("{} ¹", row.label)
            } else {
                row.label.clone()
            };
            let _ = writeln!(
                out,
                "| {label} | {tier} | {} | {} | {} | {} | {} | {} | {} |",
                number(spool),
                number(peers[0]),
                number(peers[1]),
                number(peers[2]),
                ratio(spool, peers[0]),
                ratio(spool, peers[1]),
                ratio(spool, peers[2]),
            );
        }
    }
    out
}

pub fn table(lines: &[Value]) -> String {
    let mut out = String::from("Tuned clients (batches, pipelines, deep windows):\n\n");
    out.push_str(&measured(lines, &rows()));
    let _ = writeln!(
        out,
        "\n¹ latency: a ratio below 1 means Spool is faster.\n\nWhere the results hold \
         several rounds of a workload, the table shows the median round (end-to-end: by p99); \
         each round below.\n"
    );
    out.push_str(&rounds(lines));
    out.push_str(&crate::plain::report::table(lines));

    let _ = writeln!(
        out,
        "| Tier | System | Setting | An acknowledged publish is |"
    );
    let _ = writeln!(out, "|---|---|---|---|");
    for tier in TIERS {
        for system in System::ALL {
            if let Some(l) = lines
                .iter()
                .find(|l| l["system"] == system.name() && l["tier"] == tier)
            {
                let _ = writeln!(
                    out,
                    "| {tier} | {} | {} | {} |",
                    system.title(),
                    l["setting"].as_str().unwrap_or(""),
                    l["promise"].as_str().unwrap_or("")
                );
            }
        }
    }

    let errors: Vec<&Value> = lines.iter().filter(|l| l.get("error").is_some()).collect();
    if !errors.is_empty() {
        let _ = writeln!(out, "\nFailed runs:");
        for e in errors {
            let _ = writeln!(
                out,
                "- {} {} {}: {}",
                e["system"].as_str().unwrap_or("?"),
                e["tier"].as_str().unwrap_or("?"),
                e["workload"].as_str().unwrap_or("?"),
                e["error"].as_str().unwrap_or("?")
            );
        }
    }
    let _ = writeln!(out, "\n{}", targets(lines));
    let _ = writeln!(out, "{}", crate::plain::report::targets(lines));
    out
}

/// Every round of the end-to-end and queue workloads: the end-to-end p99,
/// how long a hiccup probe saw the machine stalled meanwhile (a stall
/// delays any system's messages alike), and the queue's rate.
fn rounds(lines: &[Value]) -> String {
    let mut out = String::new();
    for tier in TIERS {
        for system in System::ALL {
            let e2e = all(lines, system, tier, "end-to-end", None);
            let queue = all(lines, system, tier, "queue", None);
            if e2e.len() < 2 && queue.len() < 2 {
                continue; // one run each: the main table says it all
            }
            if out.is_empty() {
                let _ = writeln!(
                    out,
                    "| Tier | System | end-to-end p99, each round (µs) | machine stalled, each round (ms) ² | queue, each round (msgs/s) |"
                );
                let _ = writeln!(out, "|---|---|---|---|---|");
            }
            let list = |ls: &[&Value], k: &str, digits: usize| {
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
                "| {tier} | {} | {} | {} | {} |",
                system.title(),
                list(&e2e, "p99_us", 0),
                list(&e2e, "hiccup_stalled_ms", 1),
                list(&queue, "msgs_per_s", 0),
            );
        }
    }
    if !out.is_empty() {
        out.push_str(
            "\n² a thread in the harness that sleeps 1 ms at a time: the sum of its \
             wake-ups that came more than 1 ms late.\n\n",
        );
    }
    out
}

/// The best peer value of a workload, over the given (system, tier) lines
/// whose durability level is at most `level`.
pub(crate) fn best_peer(
    lines: &[Value],
    workload: &str,
    key: Key,
    field: &str,
    tiers: &[&str],
    level: Option<u64>,
    lower_better: bool,
) -> Option<(f64, String)> {
    let mut best: Option<(f64, String)> = None;
    for peer in PEERS {
        for tier in tiers {
            let Some(l) = find(lines, peer, tier, workload, key) else {
                continue;
            };
            if level.is_some_and(|max| l["level"].as_u64().unwrap_or(u64::MAX) > max) {
                continue;
            }
            let Some(v) = l[field].as_f64() else { continue };
            let better = best
                .as_ref()
                .is_none_or(|(b, _)| if lower_better { v < *b } else { v > *b });
            if better {
                best = Some((v, format!("{} {tier}", peer.title())));
            }
        }
    }
    best
}

pub(crate) fn verdict(ok: bool) -> &'static str {
    if ok {
        "**met**"
    } else {
        "**not met**"
    }
}

fn targets(lines: &[Value]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| Target | Spool | Best comparable peer | Ratio | Verdict |"
    );
    let _ = writeln!(out, "|---|--:|---|--:|---|");
    // Publish: against every peer configuration whose acknowledgement
    // promises no more than Spool's.
    for tier in TIERS {
        for size in [100, 1024] {
            let Some(s) = find(lines, System::Spool, tier, "publish", self::size(size)) else {
                continue;
            };
            let (Some(v), level) = (s["msgs_per_s"].as_f64(), s["level"].as_u64()) else {
                continue;
            };
            if let Some((p, who)) = best_peer(
                lines,
                "publish",
                self::size(size),
                "msgs_per_s",
                &TIERS,
                level,
                false,
            ) {
                let r = v / p;
                let _ = writeln!(
                    out,
                    "| publish {} ≥ 5× best peer at equal or weaker durability (Spool {tier}) | {} | {} ({who}) | {r:.2}× | {} |",
                    size_name(size),
                    number(Some(v)),
                    number(Some(p)),
                    verdict(r >= 5.0)
                );
            }
        }
    }
    for tier in TIERS {
        for size in [100, 1024] {
            let Some(v) = find(lines, System::Spool, tier, "consume", self::size(size))
                .and_then(|l| l["msgs_per_s"].as_f64())
            else {
                continue;
            };
            if let Some((p, who)) = best_peer(
                lines,
                "consume",
                self::size(size),
                "msgs_per_s",
                &[tier],
                None,
                false,
            ) {
                let r = v / p;
                let _ = writeln!(
                    out,
                    "| consume {} ≥ 5× best peer ({tier}) | {} | {} ({who}) | {r:.2}× | {} |",
                    size_name(size),
                    number(Some(v)),
                    number(Some(p)),
                    verdict(r >= 5.0)
                );
            }
        }
    }
    for tier in TIERS {
        let Some(v) =
            find(lines, System::Spool, tier, "end-to-end", None).and_then(|l| l["p99_us"].as_f64())
        else {
            continue;
        };
        if let Some((p, who)) = best_peer(lines, "end-to-end", None, "p99_us", &[tier], None, true)
        {
            let _ = writeln!(
                out,
                "| end-to-end p99 at 10k/s ≤ best peer's ({tier}) | {} µs | {} µs ({who}) | {:.2}× | {} |",
                number(Some(v)),
                number(Some(p)),
                v / p,
                verdict(v <= p)
            );
        }
    }
    for tier in TIERS {
        let Some(v) =
            find(lines, System::Spool, tier, "queue", None).and_then(|l| l["msgs_per_s"].as_f64())
        else {
            continue;
        };
        if let Some((p, who)) = best_peer(lines, "queue", None, "msgs_per_s", &[tier], None, false)
        {
            let r = v / p;
            let _ = writeln!(
                out,
                "| queue round trip, 16 workers ≥ 3× best peer ({tier}) | {} | {} ({who}) | {r:.2}× | {} |",
                number(Some(v)),
                number(Some(p)),
                verdict(r >= 3.0)
            );
        }
    }
    let disk = disk(lines);
    let durable = find(lines, System::Spool, "durable", "publish", self::size(1024))
        .and_then(|l| l["mb_per_s"].as_f64());
    if let (Some(d), Some(s)) = (disk, durable) {
        let r = s / d;
        let _ = writeln!(
            out,
            "| durable publish 1 KiB ≥ 50 % of sequential disk write | {s:.1} MB/s | disk {d:.1} MB/s | {:.0} % | {} |",
            r * 100.0,
            verdict(r >= 0.5)
        );
    }
    out
}
