//! `spool topic create|list|describe|alter|delete`.

use crate::cli::{ConfigArgs, DurabilityArg, OnFullArg, RetentionArg, TopicArgs, TopicCommand};
use crate::{connect, Failure};
use spool_client::{Durability, OnFull, Retention, TopicConfig, TopicDescription};
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

/// Default flush interval when `--durability interval` comes without
/// `--interval-ms`.
const INTERVAL_MS_DEFAULT: u32 = 1000;

pub async fn run(args: TopicArgs) -> anyhow::Result<ExitCode> {
    let out = match args.command {
        TopicCommand::Create {
            name,
            partitions,
            replicas,
            config,
        } => {
            let mut config = to_wire(&config)?;
            if let Some(replicas) = replicas {
                config.extensions.push(spool_proto::ConfigExtension {
                    tag: spool_proto::CONFIG_TAG_REPLICAS,
                    value: u64::from(replicas).to_be_bytes().to_vec().into(),
                });
            }
            let client = connect(&args.conn.addr).await?;
            client.create_topic(&name, partitions, config).await?;
            match replicas {
                Some(r) => format!(
                    "created topic {name} with {partitions} partition(s), {r} replica(s) each\n"
                ),
                None => format!("created topic {name} with {partitions} partition(s)\n"),
            }
        }
        TopicCommand::List { pattern } => {
            let client = connect(&args.conn.addr).await?;
            let mut topics = client.list_topics(pattern.as_deref()).await?;
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            let mut out = String::new();
            for t in topics {
                let _ = writeln!(out, "{}\t{}", t.name, t.partitions);
            }
            out
        }
        TopicCommand::Describe { name } => {
            let client = connect(&args.conn.addr).await?;
            describe_text(&client.describe_topic(&name).await?)
        }
        TopicCommand::Alter { name, config } => {
            let config = to_wire(&config)?;
            let client = connect(&args.conn.addr).await?;
            client.alter_topic(&name, config).await?;
            format!("altered topic {name}\n")
        }
        TopicCommand::Delete { name } => {
            let client = connect(&args.conn.addr).await?;
            client.delete_topic(&name).await?;
            format!("deleted topic {name}\n")
        }
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Turns the flags into a wire config (absent flags stay absent).
fn to_wire(c: &ConfigArgs) -> Result<TopicConfig, Failure> {
    let durability = match (c.durability, c.interval_ms) {
        (None, None) => None,
        (Some(DurabilityArg::Always), None) => Some(Durability::Always),
        (Some(DurabilityArg::Never), None) => Some(Durability::Never),
        (Some(DurabilityArg::Interval), ms) => Some(Durability::Interval {
            interval_ms: ms.unwrap_or(INTERVAL_MS_DEFAULT),
        }),
        (None, Some(ms)) => Some(Durability::Interval { interval_ms: ms }),
        (Some(_), Some(_)) => {
            return Err(Failure::new(
                "INVALID_CONFIG",
                "--interval-ms applies only to --durability interval",
            ))
        }
    };
    Ok(TopicConfig {
        max_messages: c.max_messages,
        max_bytes: c.max_bytes,
        on_full: c.on_full.map(|o| match o {
            OnFullArg::Reject => OnFull::Reject,
            OnFullArg::DropOldest => OnFull::DropOldest,
        }),
        retention: c.retention.map(|r| match r {
            RetentionArg::Limits => Retention::Limits,
            RetentionArg::WorkQueue => Retention::WorkQueue,
        }),
        retention_bytes: c.retention_bytes,
        retention_ms: c.retention_ms,
        durability,
        segment_bytes: c.segment_bytes,
        extensions: [
            (spool_proto::CONFIG_TAG_DEDUP_WINDOW_MS, c.dedup_window_ms),
            (spool_proto::CONFIG_TAG_WARN_DEPTH, c.warn_depth),
        ]
        .into_iter()
        .filter_map(|(tag, v)| {
            v.map(|v| spool_proto::ConfigExtension {
                tag,
                value: v.to_be_bytes().to_vec().into(),
            })
        })
        .collect(),
    })
}

/// The value of a `u64` config extension (`spool_proto::CONFIG_TAG_…`),
/// if the config carries it.
pub fn extension_u64(c: &TopicConfig, tag: u16) -> Option<u64> {
    let ext = c.extensions.iter().find(|e| e.tag == tag)?;
    <[u8; 8]>::try_from(ext.value.as_ref())
        .ok()
        .map(u64::from_be_bytes)
}

/// A limit as shown: the server reports "no limit" as 0.
fn limit(v: Option<u64>) -> String {
    match v {
        None | Some(0) => "none".to_owned(),
        Some(v) => v.to_string(),
    }
}

fn describe_text(d: &TopicDescription) -> String {
    let c = &d.config;
    let mut s = String::new();
    let total_messages: u64 = d.partitions.iter().map(|p| p.messages).sum();
    let total_bytes: u64 = d.partitions.iter().map(|p| p.bytes).sum();
    let _ = writeln!(s, "topic: {}", d.name);
    let _ = writeln!(s, "partitions: {}", d.partitions.len());
    let _ = writeln!(s, "messages: {total_messages}");
    let _ = writeln!(s, "bytes: {total_bytes}");
    let _ = writeln!(s, "max_messages: {}", limit(c.max_messages));
    let _ = writeln!(s, "max_bytes: {}", limit(c.max_bytes));
    let on_full = match c.on_full {
        Some(OnFull::Reject) => "reject",
        Some(OnFull::DropOldest) => "drop-oldest",
        None => "default",
    };
    let _ = writeln!(s, "on_full: {on_full}");
    let retention = match c.retention {
        Some(Retention::Limits) => "limits",
        Some(Retention::WorkQueue) => "work-queue",
        None => "default",
    };
    let _ = writeln!(s, "retention: {retention}");
    let _ = writeln!(s, "retention_bytes: {}", limit(c.retention_bytes));
    let _ = writeln!(s, "retention_ms: {}", limit(c.retention_ms));
    let durability = match c.durability {
        Some(Durability::Always) => "always".to_owned(),
        Some(Durability::Interval { interval_ms }) => format!("interval ({interval_ms} ms)"),
        Some(Durability::Never) => "never".to_owned(),
        None => "default".to_owned(),
    };
    let _ = writeln!(s, "durability: {durability}");
    for (name, tag) in [
        ("dedup_window_ms", spool_proto::CONFIG_TAG_DEDUP_WINDOW_MS),
        ("warn_depth", spool_proto::CONFIG_TAG_WARN_DEPTH),
    ] {
        if let Some(v) = extension_u64(c, tag) {
            let _ = writeln!(s, "{name}: {v}");
        }
    }
    if let Some(b) = c.segment_bytes {
        let _ = writeln!(s, "segment_bytes: {b}");
    }
    let rows: Vec<[String; 5]> = d
        .partitions
        .iter()
        .map(|p| {
            [
                p.partition.to_string(),
                p.start_offset.to_string(),
                p.end_offset.to_string(),
                p.messages.to_string(),
                p.bytes.to_string(),
            ]
        })
        .collect();
    let header = ["PARTITION", "START", "END", "MESSAGES", "BYTES"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            let _ = write!(l, "{cell:>w$}");
        }
        let _ = writeln!(s, "{}", l.trim_end());
    };
    line(&header);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use spool_client::PartitionInfo;

    #[test]
    fn describe_shows_config_and_partitions() {
        let d = TopicDescription {
            name: "orders".into(),
            config: TopicConfig {
                max_messages: Some(0),
                max_bytes: Some(1000),
                on_full: Some(OnFull::Reject),
                retention: Some(Retention::WorkQueue),
                retention_bytes: Some(0),
                retention_ms: Some(0),
                durability: Some(Durability::Interval { interval_ms: 50 }),
                segment_bytes: Some(1 << 20),
                extensions: vec![],
            },
            partitions: vec![PartitionInfo {
                partition: 0,
                start_offset: 3,
                end_offset: 10,
                messages: 7,
                bytes: 700,
            }],
        };
        let text = describe_text(&d);
        assert!(text.contains("max_messages: none\n"), "{text}");
        assert!(text.contains("max_bytes: 1000\n"), "{text}");
        assert!(text.contains("retention: work-queue\n"), "{text}");
        assert!(text.contains("durability: interval (50 ms)\n"), "{text}");
        assert!(text.contains("messages: 7\n"), "{text}");
        assert!(
            text.contains("PARTITION  START  END  MESSAGES  BYTES\n"),
            "{text}"
        );
        assert!(
            text.contains("        0      3   10         7    700\n"),
            "{text}"
        );
    }

    #[test]
    fn interval_flags_combine() {
        let mut c = ConfigArgs {
            max_messages: None,
            max_bytes: None,
            on_full: None,
            retention: None,
            retention_bytes: None,
            retention_ms: None,
            durability: Some(DurabilityArg::Interval),
            interval_ms: None,
            segment_bytes: None,
            dedup_window_ms: None,
            warn_depth: None,
        };
        assert_eq!(
            to_wire(&c).map(|w| w.durability).ok().flatten(),
            Some(Durability::Interval {
                interval_ms: INTERVAL_MS_DEFAULT
            })
        );
        c.durability = Some(DurabilityArg::Always);
        c.interval_ms = Some(5);
        assert!(to_wire(&c).is_err());
    }
}
