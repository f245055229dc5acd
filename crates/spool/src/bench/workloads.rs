//! The stream workloads: produce, consume and end-to-end.

use super::progress::{Goal, Progress};
use super::read::Reader;
use super::report::{self, Latency, Report};
use super::send::{self, SendSpec, Sent};
use super::settings::{Settings, Stop};
use super::{join_all, stamp, Bench};
use hdrhistogram::Histogram;
use serde_json::json;
use spool_client::Client;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Long-poll wait of consumers.
const FETCH_WAIT: Duration = Duration::from_millis(100);
/// How long end-to-end waits, after the last send, for the rest to arrive.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

pub fn goal(stop: Stop) -> Goal {
    match stop {
        Stop::Count(n) => Goal::Count(n),
        Stop::Time(d) => Goal::Time(d),
    }
}

/// Starts one producer task per client, sharing `stop` among them.
pub fn spawn_producers(
    bench: &Bench,
    clients: Vec<Client>,
    stop: Stop,
    stamp: bool,
    start: Instant,
    acked: &Arc<AtomicU64>,
) -> Vec<JoinHandle<anyhow::Result<Sent>>> {
    let s = &bench.settings;
    let n = u32::try_from(clients.len()).unwrap_or(u32::MAX);
    let shares = match stop {
        Stop::Count(total) => Settings::shares(total, n).into_iter().map(Some).collect(),
        Stop::Time(_) => vec![None; clients.len()],
    };
    let until = match stop {
        Stop::Count(_) => None,
        Stop::Time(d) => Some(start + d),
    };
    let rate = s.rate.map(|r| r as f64 / f64::from(n.max(1)));
    clients
        .into_iter()
        .zip(shares)
        .map(|(client, count)| {
            let spec = SendSpec {
                topic: bench.topic.clone(),
                count,
                until,
                rate,
                size: s.size,
                stamp,
                options: send::producer_options(s.batch, s.window, s.linger),
            };
            tokio::spawn(send::run(
                client,
                spec,
                bench.epoch,
                start,
                Arc::clone(acked),
            ))
        })
        .collect()
}

/// Sum of acknowledgements and the last one's time.
/// Runs the producers of a workload whose messages carry their send time,
/// until the settings' stop; answers what each sent.
pub async fn publish_stamped(
    bench: &Bench,
    producers: Vec<Client>,
    start: Instant,
) -> anyhow::Result<Vec<Sent>> {
    let acked = Arc::new(AtomicU64::new(0));
    let stop = bench.settings.stop;
    join_all(spawn_producers(bench, producers, stop, true, start, &acked)).await
}

pub fn totals(sent: &[Sent]) -> (u64, Option<Instant>) {
    let acked = sent.iter().map(|s| s.acked).sum();
    let last = sent.iter().filter_map(|s| s.last_ack).max();
    (acked, last)
}

fn since(start: Instant, end: Option<Instant>) -> Duration {
    end.map_or(Duration::ZERO, |e| e.saturating_duration_since(start))
}

pub async fn produce(bench: &Bench, mut report: Report) -> anyhow::Result<Report> {
    let s = &bench.settings;
    let clients = bench.connect_n(s.producers).await?;
    let acked = Arc::new(AtomicU64::new(0));
    let progress = Progress::start("produce", goal(s.stop), Arc::clone(&acked));
    let start = Instant::now();
    let tasks = spawn_producers(bench, clients, s.stop, false, start, &acked);
    let sent = join_all(tasks).await;
    progress.finish();
    let (messages, last) = totals(&sent?);
    report.messages = messages;
    report.bytes = messages * s.size as u64;
    report.elapsed = since(start, last);
    Ok(report)
}

/// What one consumer read.
struct Read {
    messages: u64,
    bytes: u64,
    last: Option<Instant>,
    latency: Option<Histogram<u64>>,
}

pub async fn consume(bench: &Bench, mut report: Report) -> anyhow::Result<Report> {
    let s = &bench.settings;
    let Stop::Count(count) = s.stop else {
        anyhow::bail!("consume needs a count");
    };
    // Fill (not timed).
    let clients = bench.connect_n(s.producers).await?;
    let acked = Arc::new(AtomicU64::new(0));
    let progress = Progress::start("fill", Goal::Count(count), Arc::clone(&acked));
    let tasks = spawn_producers(bench, clients, s.stop, false, Instant::now(), &acked);
    let filled = join_all(tasks).await;
    progress.finish();
    let (filled, _) = totals(&filled?);
    let admin = bench.connect().await?;
    let description = admin.describe_topic(&bench.topic).await?;
    let stored: u64 = description
        .partitions
        .iter()
        .map(|p| p.end_offset.saturating_sub(p.start_offset))
        .sum();
    if stored != filled {
        anyhow::bail!("the topic holds {stored} messages after {filled} were acknowledged");
    }

    // Read (timed).
    let clients = bench.connect_n(s.consumers).await?;
    let n = clients.len();
    let read = Arc::new(AtomicU64::new(0));
    let progress = Progress::start("consume", Goal::Count(stored), Arc::clone(&read));
    let start = Instant::now();
    let tasks: Vec<JoinHandle<anyhow::Result<Read>>> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let parts = description
                .partitions
                .iter()
                .filter(|p| p.partition as usize % n == i)
                .map(|p| (p.partition, p.start_offset, Some(p.end_offset)))
                .collect();
            let mut reader = Reader::new(client, &bench.topic, parts);
            let read = Arc::clone(&read);
            tokio::spawn(async move {
                let mut out = Read {
                    messages: 0,
                    bytes: 0,
                    last: None,
                    latency: None,
                };
                while !reader.done() {
                    let (records, at) = reader.next(FETCH_WAIT).await?;
                    let k = records.len() as u64;
                    out.messages += k;
                    out.bytes += records
                        .iter()
                        .map(|r| r.value.as_ref().map_or(0, |v| v.len() as u64))
                        .sum::<u64>();
                    if k > 0 {
                        out.last = Some(at);
                        read.fetch_add(k, Ordering::Relaxed);
                    }
                }
                Ok(out)
            })
        })
        .collect();
    let reads = join_all(tasks).await;
    progress.finish();
    let reads = reads?;
    report.messages = reads.iter().map(|r| r.messages).sum();
    report.bytes = reads.iter().map(|r| r.bytes).sum();
    report.elapsed = since(start, reads.iter().filter_map(|r| r.last).max());
    if report.messages != stored {
        anyhow::bail!("read {} messages of the {stored} stored", report.messages);
    }
    Ok(report)
}

pub async fn end_to_end(bench: &Bench, mut report: Report) -> anyhow::Result<Report> {
    let s = &bench.settings;
    let consumers = bench.connect_n(s.consumers).await?;
    let producers = bench.connect_n(s.producers).await?;
    let n = consumers.len();
    let partitions = s.partitions;
    let received = Arc::new(AtomicU64::new(0));
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Progress::start("end-to-end", goal(s.stop), Arc::clone(&received));
    let epoch = bench.epoch;
    let readers: Vec<JoinHandle<anyhow::Result<Read>>> = consumers
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let parts = (0..partitions)
                .filter(|p| *p as usize % n == i)
                .map(|p| (p, 0, None))
                .collect();
            let mut reader = Reader::new(client, &bench.topic, parts);
            let (received, target, stop) = (
                Arc::clone(&received),
                Arc::clone(&target),
                Arc::clone(&stop),
            );
            tokio::spawn(async move {
                let mut out = Read {
                    messages: 0,
                    bytes: 0,
                    last: None,
                    latency: Some(report::histogram()),
                };
                while !stop.load(Ordering::Relaxed)
                    && received.load(Ordering::Relaxed) < target.load(Ordering::Relaxed)
                {
                    let (records, at) = reader.next(FETCH_WAIT).await?;
                    if records.is_empty() {
                        continue;
                    }
                    for r in &records {
                        let value = r.value.as_deref().unwrap_or_default();
                        out.bytes += value.len() as u64;
                        if let (Some(sent), Some(h)) = (stamp::read(value, epoch), &mut out.latency)
                        {
                            report::record(h, at.saturating_duration_since(sent));
                        }
                    }
                    let k = records.len() as u64;
                    out.messages += k;
                    out.last = Some(at);
                    received.fetch_add(k, Ordering::Relaxed);
                }
                Ok(out)
            })
        })
        .collect();
    let start = Instant::now();
    let sent = match publish_stamped(bench, producers, start).await {
        Ok(sent) => sent,
        Err(e) => {
            stop.store(true, Ordering::Relaxed);
            progress.finish();
            return Err(e);
        }
    };
    let (total, last_ack) = totals(&sent);
    target.store(total, Ordering::Relaxed);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while received.load(Ordering::Relaxed) < total {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let reads = join_all(readers).await;
    progress.finish();
    let reads = reads?;
    let messages: u64 = reads.iter().map(|r| r.messages).sum();
    if drained.is_err() || messages < total {
        anyhow::bail!(
            "end-to-end: {messages} of {total} acknowledged messages arrived within {} s of the last send",
            DRAIN_TIMEOUT.as_secs()
        );
    }
    let mut h = report::histogram();
    for r in &reads {
        if let Some(l) = &r.latency {
            h.add(l)?;
        }
    }
    report.messages = messages;
    report.bytes = reads.iter().map(|r| r.bytes).sum();
    report.elapsed = since(start, reads.iter().filter_map(|r| r.last).max());
    report.latency = Some((
        Latency::of(&h),
        "publish (scheduled send time) → delivery to the consumer",
    ));
    report.extra.push((
        "acked_msgs_per_s",
        json!((report::per_s(total, since(start, last_ack)) * 10.0).round() / 10.0),
    ));
    Ok(report)
}
