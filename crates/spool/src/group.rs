//! `spool group list|describe|reset-offsets|delete`: consumer groups as an
//! operator meets them: who is in a group, what each member holds, where
//! the group is on each partition and how far behind.

use crate::cli::{GroupArgs, GroupCommand};
use crate::connect;
use serde_json::{json, Value};
use spool_broker::OffsetReset;
use spool_client::{GroupDescription, OffsetTarget};
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

pub async fn run(args: GroupArgs) -> anyhow::Result<ExitCode> {
    let client = connect(&args.conn.addr).await?;
    let out = match args.command {
        GroupCommand::List { json } => {
            let groups = client.list_groups().await?;
            let mut out = String::new();
            if !json {
                let _ = writeln!(
                    out,
                    "{:<40} {:>7} {:>10} {:>12}",
                    "GROUP", "MEMBERS", "PARTITIONS", "LAG"
                );
            }
            for g in &groups {
                if json {
                    let _ = writeln!(out, "{}", group_json(g));
                } else {
                    let _ = writeln!(
                        out,
                        "{:<40} {:>7} {:>10} {:>12}",
                        g.group,
                        g.members.len(),
                        g.partitions.len(),
                        total_lag(g)
                    );
                }
            }
            out
        }
        GroupCommand::Describe { group, json } => {
            let g = client.describe_group(&group).await?;
            if json {
                format!("{}\n", group_json(&g))
            } else {
                describe_text(&g)
            }
        }
        GroupCommand::ResetOffsets { group, topic, to } => {
            let to = offset_target(&to)?;
            let mut out = String::new();
            for o in client.reset_offsets(&group, &topic, to).await? {
                let _ = writeln!(out, "{}/{}\t{}", o.topic, o.partition, o.offset);
            }
            out
        }
        GroupCommand::Delete { group } => {
            client.delete_group(&group).await?;
            format!("deleted group {group}\n")
        }
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `--to` as the wire names it (the spelling is the HTTP API's too).
fn offset_target(to: &str) -> anyhow::Result<OffsetTarget> {
    let parsed =
        OffsetReset::parse(to).map_err(|e| crate::Failure::new(e.code.name(), e.message))?;
    Ok(match parsed {
        OffsetReset::Earliest => OffsetTarget::Earliest,
        OffsetReset::Latest => OffsetTarget::Latest,
        OffsetReset::Offset(o) => OffsetTarget::Offset(o.max(0) as u64),
        OffsetReset::Timestamp(ms) => OffsetTarget::Timestamp(ms),
    })
}

pub fn total_lag(g: &GroupDescription) -> u64 {
    g.partitions.iter().map(|p| p.lag).sum()
}

/// Who holds `topic`/`partition` in `g`, or `-`.
fn holder<'a>(g: &'a GroupDescription, topic: &str, partition: u32) -> &'a str {
    g.members
        .iter()
        .find(|m| {
            m.assignment
                .iter()
                .any(|tp| tp.topic == topic && tp.partition == partition)
        })
        .map_or("-", |m| m.member_id.as_str())
}

fn describe_text(g: &GroupDescription) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "group {}  generation {}  members {}  lag {}",
        g.group,
        g.generation,
        g.members.len(),
        total_lag(g)
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<32} {:>9} {:>12} {:>12} {:>10}  MEMBER",
        "TOPIC", "PARTITION", "COMMITTED", "END OFFSET", "LAG"
    );
    for p in &g.partitions {
        let _ = writeln!(
            out,
            "{:<32} {:>9} {:>12} {:>12} {:>10}  {}",
            p.topic,
            p.partition,
            p.committed,
            p.end_offset,
            p.lag,
            holder(g, &p.topic, p.partition)
        );
    }
    out
}

fn group_json(g: &GroupDescription) -> Value {
    json!({
        "group": g.group,
        "generation": g.generation,
        "lag": total_lag(g),
        "members": g.members.iter().map(|m| json!({
            "member_id": m.member_id,
            "assignment": m.assignment.iter().map(|tp| json!({
                "topic": tp.topic, "partition": tp.partition,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "partitions": g.partitions.iter().map(|p| json!({
            "topic": p.topic,
            "partition": p.partition,
            "committed": p.committed,
            "end_offset": p.end_offset,
            "lag": p.lag,
            "member": holder(g, &p.topic, p.partition),
        })).collect::<Vec<_>>(),
    })
}
