//! `spool consume TOPIC_OR_PATTERN [--group G | --push] [--from …]
//! [--count N] [--timeout-ms T]`: prints one message value per line.
//!
//! With `--group` it is a consumer-group member: after printing a poll's
//! records it commits them, so the next run continues after them; on exit
//! it commits and leaves. Without, it reads every partition of the matching
//! topics directly from `--from`, picking up topics created later (from
//! their beginning); with `--push` the same, but the server pushes what is
//! appended to this connection (a [`Subscriber`], bounded by credit)
//! instead of it polling. It stops after `--count` messages (exactly that many
//! printed), after `--timeout-ms` without a new message, or on SIGINT /
//! SIGTERM.

use crate::cli::{ConsumeArgs, From};
use crate::{connect, Failure};
use spool_client::{
    ConsumedRecord, ErrorCode, GroupConsumer, GroupOptions, GroupStart, ReadStart,
    SubscribeOptions, SubscribeStart, Subscriber, TopicReader,
};
use spool_types::TopicPattern;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest single wait, so an interrupt is noticed promptly.
const POLL_SLICE: Duration = Duration::from_millis(250);

enum Source {
    Group(GroupConsumer),
    Reader(TopicReader),
    /// `--push`: the server pushes what is appended, within credit.
    Push(Subscriber),
}

impl Source {
    async fn poll(
        &mut self,
        wait: Duration,
    ) -> Result<Vec<ConsumedRecord>, spool_client::ClientError> {
        match self {
            Source::Group(g) => g.poll(wait).await,
            Source::Reader(r) => r.poll(wait).await,
            Source::Push(sub) => match tokio::time::timeout(wait, sub.recv()).await {
                Err(_) => Ok(Vec::new()),
                Ok(Some(delivery)) => delivery.map(|d| d.records),
                Ok(None) => Err(spool_client::ClientError::Closed(
                    "the server ended the push subscription".into(),
                )),
            },
        }
    }
}

pub async fn run(args: ConsumeArgs) -> anyhow::Result<ExitCode> {
    let client = connect(&args.conn.addr).await?;
    let wildcard = TopicPattern::new(&args.topic).is_ok_and(|p| p.is_wildcard());
    if !wildcard {
        // A plain name must exist: UNKNOWN_TOPIC otherwise.
        let topic = client.describe_topic(&args.topic).await?;
        if let From::Offset(offset) = args.from {
            check_offset_in_range(&topic, offset)?;
        }
    }
    let mut source = match &args.group {
        Some(group) => {
            let start = match args.from {
                From::Earliest => GroupStart::Earliest,
                From::Latest => GroupStart::Latest,
                From::Offset(_) => {
                    return Err(Failure::new(
                        "INVALID_REQUEST",
                        "--from OFFSET cannot be used with --group (use earliest or latest)",
                    )
                    .into())
                }
            };
            let options = GroupOptions {
                session_timeout: Duration::from_millis(args.session_timeout_ms),
                start,
                ..GroupOptions::default()
            };
            Source::Group(
                GroupConsumer::join(client, group, vec![args.topic.clone()], options).await?,
            )
        }
        None if args.push => {
            let start = match args.from {
                From::Earliest => SubscribeStart::Earliest,
                From::Latest => SubscribeStart::Latest,
                From::Offset(o) => SubscribeStart::Offset(o),
            };
            let options = SubscribeOptions {
                start,
                ..SubscribeOptions::default()
            };
            Source::Push(Subscriber::subscribe(&client, vec![args.topic.clone()], options).await?)
        }
        None => {
            let start = match args.from {
                From::Earliest => ReadStart::Earliest,
                From::Latest => ReadStart::Latest,
                From::Offset(o) => ReadStart::Offset(o),
            };
            Source::Reader(TopicReader::new(client, &args.topic, start).await?)
        }
    };

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            spool_server::shutdown_signal().await;
            stop.store(true, Ordering::SeqCst);
        });
    }

    let result = consume_loop(&mut source, &args, &stop).await;
    // Leave the group whatever happened, so the partitions move on at once.
    let closed = match source {
        Source::Group(g) => match g.close().await {
            Err(e) if e.code() == Some(ErrorCode::UnknownMember) => {
                tracing::warn!("the group no longer knew this member: {e}");
                Ok(())
            }
            other => other,
        },
        Source::Reader(_) => Ok(()),
        Source::Push(sub) => {
            // Best effort: the connection closes right after anyway.
            if let Err(e) = sub.unsubscribe().await {
                tracing::debug!("unsubscribe: {e}");
            }
            Ok(())
        }
    };
    result?;
    closed?;
    Ok(ExitCode::SUCCESS)
}

/// `--from OFFSET` past every partition's end would wait for messages
/// that may never come, silently: refused, saying where the partitions end
/// (at the end itself is fine: the next message is awaited there).
fn check_offset_in_range(
    topic: &spool_client::TopicDescription,
    offset: u64,
) -> Result<(), Failure> {
    if topic.partitions.iter().any(|p| offset <= p.end_offset) {
        return Ok(());
    }
    let ends: Vec<String> = topic
        .partitions
        .iter()
        .map(|p| format!("partition {} ends at {}", p.partition, p.end_offset))
        .collect();
    Err(Failure::new(
        "OFFSET_OUT_OF_RANGE",
        format!(
            "--from {offset} is past the end of every partition of {:?} ({}); use an offset up to the end, or --from latest",
            topic.name,
            ends.join(", ")
        ),
    ))
}

async fn consume_loop(
    source: &mut Source,
    args: &ConsumeArgs,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let timeout = args.timeout_ms.map(Duration::from_millis);
    let mut printed = 0u64;
    let mut last_message = Instant::now();
    loop {
        if stop.load(Ordering::SeqCst) || args.count.is_some_and(|c| printed >= c) {
            return Ok(());
        }
        let mut wait = POLL_SLICE;
        if let Some(t) = timeout {
            let left = t.saturating_sub(last_message.elapsed());
            if left.is_zero() {
                return Ok(());
            }
            wait = wait.min(left);
        }
        let records = source.poll(wait).await?;
        if records.is_empty() {
            continue;
        }
        last_message = Instant::now();
        let take = match args.count {
            Some(c) => usize::try_from(c - printed)
                .unwrap_or(usize::MAX)
                .min(records.len()),
            None => records.len(),
        };
        print_values(source, &records[..take]).await?;
        printed += take as u64;
        if let Source::Group(group) = source {
            // Only what was printed counts as processed.
            let mut first_unprinted: BTreeMap<(&str, u32), u64> = BTreeMap::new();
            for r in &records[take..] {
                let entry = first_unprinted
                    .entry((r.topic.as_str(), r.partition))
                    .or_insert(r.offset);
                *entry = (*entry).min(r.offset);
            }
            for ((topic, partition), offset) in first_unprinted {
                group.seek(topic, partition, offset);
            }
            commit(group).await?;
        }
    }
}

/// Commits; a lost membership is only a warning (the next poll rejoins, and
/// what was printed since the last commit may be printed again elsewhere).
async fn commit(group: &mut GroupConsumer) -> anyhow::Result<()> {
    match group.commit().await {
        Err(e) if e.code() == Some(ErrorCode::UnknownMember) => {
            tracing::warn!("commit refused, rejoining the group: {e}");
            Ok(())
        }
        other => Ok(other?),
    }
}

/// Writes one value per line on a blocking thread. A group member keeps its
/// session alive meanwhile, so a reader that is slow to drain standard
/// output does not cost it its partitions.
async fn print_values(source: &mut Source, records: &[ConsumedRecord]) -> anyhow::Result<()> {
    let mut data = Vec::with_capacity(
        records
            .iter()
            .map(|r| r.value.as_ref().map_or(0, |v| v.len()) + 1)
            .sum(),
    );
    for r in records {
        if let Some(v) = &r.value {
            data.extend_from_slice(v);
        }
        data.push(b'\n');
    }
    let mut write = tokio::task::spawn_blocking(move || {
        let mut out = std::io::stdout().lock();
        out.write_all(&data)?;
        out.flush()
    });
    loop {
        tokio::select! {
            written = &mut write => {
                written??;
                return Ok(());
            }
            _ = tokio::time::sleep(POLL_SLICE) => {
                if let Source::Group(group) = source {
                    group.keep_alive().await?;
                }
            }
        }
    }
}
