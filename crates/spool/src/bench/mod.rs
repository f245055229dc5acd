//! `spool bench produce|consume|end-to-end|queue|requests`: drives a
//! server (`--addr`) with one workload on a topic of its own
//! (`bench-<workload>-<random>`, created with `--fsync` durability and
//! deleted at the end, also after an error or Ctrl-C) and reports
//! throughput and, for the latency workloads, HdrHistogram percentiles —
//! as a table, or with `--json` as one JSON object on one line of stdout.
//!
//! - `produce`: `--producers` × (Client + Producer) send `--count` messages
//!   in all (or for `--duration-s`); throughput of acknowledged messages.
//! - `consume`: fills the topic (not timed), then `--consumers` read it all.
//! - `end-to-end`: producers at `--rate` (default 10,000/s in all), the
//!   consumers long-polling; latency = receive time − *scheduled* send time.
//! - `queue`: a queue subscription; producers publish, `--consumers`
//!   workers (default 16) receive (long poll, up to `--receive-max`) and
//!   ack; round trips/s and publish → ack latency.
//! - `requests`: `--producers` submit requests (`--window` in flight each)
//!   to the bench topic as a request queue, `--consumers` workers receive
//!   from its `workers` subscription and complete each by its
//!   `spool-request-id`; then status reads of random known IDs for
//!   `--status-duration-s`. (Request records stay in the server's store
//!   until their TTL: deleting the topic does not remove them.)
//!
//! Connections are made before the clock starts. Progress goes to stderr
//! (a bar on a terminal); stdout carries only the result.

pub mod args;
mod progress;
mod queue;
mod read;
mod report;
mod send;
mod settings;
mod workloads;

use crate::cli::{BenchArgs, BenchWorkload};
use crate::connect;
use report::Report;
use settings::{workload_name, Settings};
use spool_client::Client;
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;
use tokio::task::JoinHandle;

/// Send times written into payloads: nanoseconds since the run's epoch (an
/// `Instant` of this process), little-endian, in the first 8 bytes.
mod stamp {
    use super::settings::STAMP_BYTES;
    use std::time::{Duration, Instant};

    pub fn write(buf: &mut [u8], at: Instant, epoch: Instant) {
        let ns = u64::try_from(at.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX);
        if let Some(head) = buf.get_mut(..STAMP_BYTES) {
            head.copy_from_slice(&ns.to_le_bytes());
        }
    }

    pub fn read(value: &[u8], epoch: Instant) -> Option<Instant> {
        let head: [u8; STAMP_BYTES] = value.get(..STAMP_BYTES)?.try_into().ok()?;
        epoch.checked_add(Duration::from_nanos(u64::from_le_bytes(head)))
    }
}

/// One run: where and on what.
pub struct Bench {
    pub settings: Settings,
    pub addr: String,
    pub topic: String,
    /// The origin of payload time stamps.
    pub epoch: Instant,
}

impl Bench {
    /// A new connection of its own (each producer, consumer and worker has
    /// one, as separate processes would).
    pub async fn connect(&self) -> anyhow::Result<Client> {
        connect(&self.addr).await
    }

    /// `n` connections, made before the clock starts.
    pub async fn connect_n(&self, n: u32) -> anyhow::Result<Vec<Client>> {
        let mut clients = Vec::with_capacity(n as usize);
        for _ in 0..n {
            clients.push(self.connect().await?);
        }
        Ok(clients)
    }

    fn report(&self) -> Report {
        Report {
            settings: self.settings.clone(),
            addr: self.addr.clone(),
            topic: self.topic.clone(),
            messages: 0,
            bytes: 0,
            elapsed: std::time::Duration::ZERO,
            latency: None,
            extra: Vec::new(),
        }
    }
}

/// Waits for every task; the first error (or panic) is the result.
pub async fn join_all<T>(handles: Vec<JoinHandle<anyhow::Result<T>>>) -> anyhow::Result<Vec<T>> {
    let mut out = Vec::with_capacity(handles.len());
    let mut first_error = None;
    for h in handles {
        match h.await {
            Ok(Ok(v)) => out.push(v),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(anyhow::anyhow!("a bench task failed: {e}"));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

async fn run_workload(bench: &Bench) -> anyhow::Result<Report> {
    let report = bench.report();
    match bench.settings.workload {
        BenchWorkload::Produce => workloads::produce(bench, report).await,
        BenchWorkload::Consume => workloads::consume(bench, report).await,
        BenchWorkload::EndToEnd => workloads::end_to_end(bench, report).await,
        BenchWorkload::Queue => queue::queue(bench, report).await,
        BenchWorkload::Requests => queue::requests(bench, report).await,
    }
}

/// Runs one bench against an existing server and deletes its topic.
pub async fn bench(settings: Settings, addr: &str) -> anyhow::Result<Report> {
    let admin = connect(addr).await?;
    let topic = format!(
        "bench-{}-{:08x}",
        workload_name(settings.workload),
        rand::random::<u32>()
    );
    admin
        .create_topic(&topic, settings.partitions, settings.topic_config())
        .await?;
    let bench = Bench {
        settings,
        addr: addr.to_owned(),
        topic,
        epoch: Instant::now(),
    };
    let outcome = tokio::select! {
        r = run_workload(&bench) => r,
        _ = tokio::signal::ctrl_c() => Err(crate::Failure::new("INTERRUPTED", "interrupted").into()),
    };
    // Best effort: a lost connection gets one new try.
    let admin = if admin.is_closed() {
        connect(addr).await.ok()
    } else {
        Some(admin)
    };
    let deleted = match &admin {
        Some(a) => a
            .delete_topic(&bench.topic)
            .await
            .map_err(anyhow::Error::from),
        None => Err(anyhow::anyhow!("no connection")),
    };
    if let Err(e) = deleted {
        tracing::warn!(topic = %bench.topic, "could not delete the bench topic: {e:#}");
    }
    outcome
}

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_args(&args)?;
    let json = settings.json;
    let report = bench(settings, &args.conn.addr).await?;
    let out = if json {
        format!("{}\n", report.to_json())
    } else {
        report.to_table()
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests;
