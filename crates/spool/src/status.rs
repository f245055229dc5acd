//! `spool status`: one screen for a person at a terminal — the server
//! (reachable, version, round trip), each topic (depth, bytes, publish
//! rate, fill against its limit), each queue subscription (backlog,
//! leases in flight, redeliveries, dead letters) and each consumer group
//! on each partition (committed offset, end, lag, members). The publish
//! rate comes from two samples of the end offsets `--interval-ms` apart.

use crate::cli::StatusArgs;
use crate::connect;
use serde_json::{json, Value};
use spool_client::{Client, GroupDescription, SubscriptionInfo, TopicDescription};
use spool_proto::CONFIG_TAG_WARN_DEPTH;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

struct TopicRow {
    name: String,
    partitions: usize,
    messages: u64,
    bytes: u64,
    end_offset: u64,
    rate_per_s: f64,
    max_messages: Option<u64>,
    /// The depth at which the server warns (none: no warning level).
    warn_depth: Option<u64>,
}

impl TopicRow {
    /// Whether the depth is at or above `warn_depth` (as the server's
    /// warning and `spool_topic_over_warn_depth` count it).
    fn over_warn_depth(&self) -> bool {
        self.warn_depth.is_some_and(|w| self.messages >= w)
    }
}

async fn describe_all(client: &Client) -> anyhow::Result<Vec<TopicDescription>> {
    let mut out = Vec::new();
    for t in client.list_topics(None).await? {
        // Deleted between the list and the describe: leave it out.
        if let Ok(d) = client.describe_topic(&t.name).await {
            out.push(d);
        }
    }
    Ok(out)
}

fn end_offsets(d: &TopicDescription) -> u64 {
    d.partitions.iter().map(|p| p.end_offset).sum()
}

pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = connect(&args.conn.addr).await?;
    let round_trip = client.ping().await?;
    let first = describe_all(&client).await?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
    let second = describe_all(&client).await?;
    let elapsed_s = started.elapsed().as_secs_f64().max(0.001);
    let topics: Vec<TopicRow> = second
        .iter()
        .map(|d| {
            let before = first
                .iter()
                .find(|f| f.name == d.name)
                .map_or(end_offsets(d), end_offsets);
            TopicRow {
                name: d.name.clone(),
                partitions: d.partitions.len(),
                messages: d.partitions.iter().map(|p| p.messages).sum(),
                bytes: d.partitions.iter().map(|p| p.bytes).sum(),
                end_offset: end_offsets(d),
                rate_per_s: end_offsets(d).saturating_sub(before) as f64 / elapsed_s,
                max_messages: d.config.max_messages,
                warn_depth: crate::topic::extension_u64(&d.config, CONFIG_TAG_WARN_DEPTH)
                    .filter(|w| *w > 0),
            }
        })
        .collect();
    let subs = client.list_subscriptions(None).await?;
    let groups = client.list_groups().await?;
    // A cluster node: the cluster as its nodes describe it (a single node
    // answers that it is not one).
    let cluster = match client.cluster_status().await {
        Ok(first) => Some(crate::cluster::view_from(first).await),
        Err(_) => None,
    };
    let out = if args.json {
        let mut report = json_report(&client, round_trip, &topics, &subs, &groups);
        if let Some(cluster) = &cluster {
            report["cluster"] = serde_json::to_value(cluster)?;
            report["cluster"]["under_replicated"] = json!(cluster.under_replicated());
        }
        report.to_string() + "\n"
    } else {
        let mut out = text_report(&client, &args.conn.addr, round_trip, &topics, &subs);
        if let Some(cluster) = &cluster {
            // Right under the server line.
            let at = out.find('\n').map_or(out.len(), |i| i + 1);
            out.insert_str(at, &format!("cluster   {}\n", cluster.summary()));
        }
        groups_text(&mut out, &groups);
        out
    };
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// `1.2 MiB`-style sizes.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn text_report(
    client: &Client,
    addr: &str,
    round_trip: Duration,
    topics: &[TopicRow],
    subs: &[SubscriptionInfo],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "server    {addr}  {}  up, round trip {:.2} ms",
        client.server_id(),
        round_trip.as_secs_f64() * 1000.0
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<32} {:>5} {:>12} {:>11} {:>12} {:>10} {:>6}  WARN AT",
        "TOPIC", "PARTS", "DEPTH", "BYTES", "END OFFSET", "MSG/S", "FULL"
    );
    if topics.is_empty() {
        let _ = writeln!(out, "(no topics)");
    }
    for t in topics {
        let full = t
            .max_messages
            .filter(|m| *m > 0)
            .map_or("-".to_owned(), |m| {
                format!("{:.0}%", t.messages as f64 * 100.0 / m as f64)
            });
        let warn = match t.warn_depth {
            None => "-".to_owned(),
            Some(w) if t.over_warn_depth() => format!("{w} OVER"),
            Some(w) => w.to_string(),
        };
        let _ = writeln!(
            out,
            "{:<32} {:>5} {:>12} {:>11} {:>12} {:>10.1} {:>6}  {}",
            t.name,
            t.partitions,
            t.messages,
            size(t.bytes),
            t.end_offset,
            t.rate_per_s,
            full,
            warn
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<40} {:>10} {:>9} {:>12} {:>12}",
        "SUBSCRIPTION (TOPIC/NAME)", "LAG", "IN FLIGHT", "REDELIVERED", "DEAD LETTERS"
    );
    if subs.is_empty() {
        let _ = writeln!(out, "(no queue subscriptions)");
    }
    for s in subs {
        let _ = writeln!(
            out,
            "{:<40} {:>10} {:>9} {:>12} {:>12}",
            format!("{}/{}", s.topic, s.name),
            s.lag,
            s.leased,
            s.redeliveries,
            s.dead_letters
        );
    }
    out
}

/// The consumer groups' lag, one row per group and partition, as the
/// subscriptions' is shown.
fn groups_text(out: &mut String, groups: &[GroupDescription]) {
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<40} {:>10} {:>12} {:>12} {:>7}",
        "GROUP (TOPIC/PARTITION)", "LAG", "COMMITTED", "END OFFSET", "MEMBERS"
    );
    if groups.is_empty() {
        let _ = writeln!(out, "(no consumer groups)");
    }
    for g in groups {
        for p in &g.partitions {
            let _ = writeln!(
                out,
                "{:<40} {:>10} {:>12} {:>12} {:>7}",
                format!("{} ({}/{})", g.group, p.topic, p.partition),
                p.lag,
                p.committed,
                p.end_offset,
                g.members.len()
            );
        }
    }
}

fn json_report(
    client: &Client,
    round_trip: Duration,
    topics: &[TopicRow],
    subs: &[SubscriptionInfo],
    groups: &[GroupDescription],
) -> Value {
    json!({
        "server": {
            "server_id": client.server_id(),
            "round_trip_us": round_trip.as_micros() as u64,
        },
        "topics": topics.iter().map(|t| json!({
            "name": t.name,
            "partitions": t.partitions,
            "messages": t.messages,
            "bytes": t.bytes,
            "end_offset": t.end_offset,
            "publish_per_s": t.rate_per_s,
            "max_messages": t.max_messages,
            "warn_depth": t.warn_depth,
            "over_warn_depth": t.over_warn_depth(),
        })).collect::<Vec<_>>(),
        "subscriptions": subs.iter().map(|s| json!({
            "topic": s.topic,
            "name": s.name,
            "lag": s.lag,
            "in_flight": s.leased,
            "redeliveries": s.redeliveries,
            "dead_letters": s.dead_letters,
        })).collect::<Vec<_>>(),
        "groups": groups.iter().flat_map(|g| g.partitions.iter().map(|p| json!({
            "group": g.group,
            "topic": p.topic,
            "partition": p.partition,
            "lag": p.lag,
            "committed": p.committed,
            "end_offset": p.end_offset,
            "members": g.members.len(),
        }))).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::size;

    #[test]
    fn sizes_read_like_a_person_writes_them() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
