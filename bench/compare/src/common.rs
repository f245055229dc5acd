//! What every system's module shares: the plan of a run, payloads with send
//! time stamps, the window of unacknowledged publishes, paced sending, the
//! latency histogram and the result lines.

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Which durability a run compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Spool `always` against each peer's most durable setting.
    Durable,
    /// Spool `interval` (1 s) against each peer's default.
    Default,
}

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::Durable => "durable",
            Tier::Default => "default",
        }
    }
}

/// What an acknowledged publish promises in one system and tier.
pub struct Durability {
    /// The setting, as configured.
    pub setting: &'static str,
    /// What the acknowledgement means.
    pub promise: &'static str,
    /// 2: on disk (fsync) before the ack; 1: fsync'd within about a second;
    /// 0: fsync'd within minutes. Used to pick comparable peers.
    pub level: u8,
}

/// The sizes, counts and limits of one run (`--quick` shrinks them).
#[derive(Debug, Clone)]
pub struct Plan {
    /// Publish/consume: (payload bytes, messages), 100 B then 1 KiB.
    pub streams: [(usize, u64); 2],
    /// A publish stops after this long even if not all were sent (slow
    /// peers); consume then reads what was published.
    pub publish_cap: Duration,
    /// Messages in flight unacknowledged, the same for every system.
    pub window: usize,
    /// Messages per request where the client batches (Spool's producer
    /// batch, a Redis pipeline).
    pub batch: usize,
    pub e2e_rate: u64,
    pub e2e_duration: Duration,
    pub e2e_size: usize,
    /// Messages of a queue run, unless `queue_cap` ends it first.
    pub queue_count: u64,
    /// A queue run's publishing and round trips stop after this long (slow
    /// peers); its rate is of the round trips done by then.
    pub queue_cap: Duration,
    pub queue_size: usize,
    pub workers: usize,
    /// Messages per receive/fetch/prefetch of a queue worker.
    pub receive_max: usize,
    /// The plain pattern (`plain.rs`): (payload bytes, messages) of plain
    /// publish and plain consume; `publish_cap` applies too.
    pub plain_streams: [(usize, u64); 2],
    /// Messages unacknowledged at most in the plain pattern: one call per
    /// message, each with its own acknowledgement.
    pub plain_window: usize,
    /// Messages per poll of the plain group consumer where the client
    /// takes a limit (Redis `COUNT`, a JetStream pull, RabbitMQ prefetch).
    pub plain_poll: usize,
    /// Offered rates of the plain end-to-end runs (1 KiB, `e2e_duration`).
    pub plain_rates: [u64; 2],
}

impl Plan {
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                streams: [(100, 50_000), (1024, 20_000)],
                publish_cap: Duration::from_secs(10),
                window: 16_000,
                batch: 1000,
                e2e_rate: 10_000,
                e2e_duration: Duration::from_secs(3),
                e2e_size: 1024,
                queue_count: 5_000,
                queue_cap: Duration::from_secs(3),
                queue_size: 1024,
                workers: 16,
                receive_max: 100,
                plain_streams: [(100, 50_000), (1024, 20_000)],
                plain_window: 1000,
                plain_poll: 1000,
                plain_rates: [5_000, 10_000],
            }
        } else {
            Plan {
                streams: [(100, 1_000_000), (1024, 200_000)],
                publish_cap: Duration::from_secs(60),
                window: 16_000,
                batch: 1000,
                e2e_rate: 10_000,
                e2e_duration: Duration::from_secs(10),
                e2e_size: 1024,
                // Long enough that a machine stall of 100 ms is not most of
                // a fast system's run (50,000 took Spool 0.2 s).
                queue_count: 200_000,
                queue_cap: Duration::from_secs(10),
                queue_size: 1024,
                workers: 16,
                receive_max: 100,
                // As the tuned publish; a slow peer's run ends at `publish_cap`.
                plain_streams: [(100, 1_000_000), (1024, 200_000)],
                plain_window: 1000,
                plain_poll: 1000,
                plain_rates: [5_000, 10_000],
            }
        }
    }
}

/// How long receivers may take, after the last send, for the rest.
pub const DRAIN: Duration = Duration::from_secs(60);
/// How often a waiting receiver looks whether it is done.
pub const POLL: Duration = Duration::from_millis(100);

/// The origin of the send times written into payloads.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// A payload of `size` bytes whose first 8 hold `at` (ns since the epoch).
pub fn stamped(size: usize, at: Instant) -> Vec<u8> {
    let mut v = vec![b'x'; size.max(8)];
    let ns = at.saturating_duration_since(epoch()).as_nanos() as u64;
    v[..8].copy_from_slice(&ns.to_le_bytes());
    v
}

/// The send time in a stamped payload.
pub fn stamp_of(payload: &[u8]) -> Option<Instant> {
    let head: [u8; 8] = payload.get(..8)?.try_into().ok()?;
    epoch().checked_add(Duration::from_nanos(u64::from_le_bytes(head)))
}

/// An acknowledgement to wait for: resolves to the messages it covers.
pub type Ack = Pin<Box<dyn Future<Output = anyhow::Result<u64>> + Send>>;

/// The window of unacknowledged publishes: a task awaits acknowledgements
/// in publishing order; `push` waits while `capacity` are outstanding.
pub struct Acks {
    tx: AckSender,
    task: JoinHandle<anyhow::Result<(u64, Option<Instant>)>>,
}

/// Where acknowledgements to wait for go (clone it for another thread).
#[derive(Clone)]
pub struct AckSender(mpsc::Sender<Ack>);

impl AckSender {
    pub async fn push(&self, ack: Ack) -> anyhow::Result<()> {
        self.0
            .send(ack)
            .await
            .map_err(|_| anyhow::anyhow!("the acknowledgement task stopped"))
    }

    /// From a thread outside the runtime (the paced sender).
    pub fn push_blocking(&self, ack: Ack) -> anyhow::Result<()> {
        self.0
            .blocking_send(ack)
            .map_err(|_| anyhow::anyhow!("the acknowledgement task stopped"))
    }
}

impl Acks {
    pub fn new(capacity: usize) -> Acks {
        let (tx, mut rx) = mpsc::channel::<Ack>(capacity.max(1));
        let task = tokio::spawn(async move {
            let (mut acked, mut last) = (0, None);
            while let Some(ack) = rx.recv().await {
                acked += ack.await?;
                last = Some(Instant::now());
            }
            Ok((acked, last))
        });
        Acks {
            tx: AckSender(tx),
            task,
        }
    }

    pub async fn push(&self, ack: Ack) -> anyhow::Result<()> {
        self.tx.push(ack).await
    }

    pub fn sender(&self) -> AckSender {
        self.tx.clone()
    }

    /// Waits for the outstanding ones (once every sender is gone): messages
    /// acknowledged, and when the last acknowledgement arrived.
    pub async fn finish(self) -> anyhow::Result<(u64, Option<Instant>)> {
        drop(self.tx);
        self.task.await.context("the acknowledgement task failed")?
    }
}

/// A throughput result.
pub struct Rate {
    pub messages: u64,
    pub size: usize,
    pub elapsed: Duration,
}

impl Rate {
    pub fn between(messages: u64, size: usize, start: Instant, end: Option<Instant>) -> Rate {
        let elapsed = end.map_or(Duration::ZERO, |e| e.saturating_duration_since(start));
        Rate {
            messages,
            size,
            elapsed,
        }
    }

    pub fn per_s(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn json(&self) -> Value {
        let mps = self.per_s();
        json!({
            "messages": self.messages,
            "size": self.size,
            "seconds": round(self.elapsed.as_secs_f64(), 4),
            "msgs_per_s": round(mps, 1),
            "mb_per_s": round(mps * self.size as f64 / 1e6, 2),
        })
    }
}

pub fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// Latencies in microseconds, 1 µs to 1 h, 3 significant digits.
pub struct Latencies {
    pub hist: Histogram<u64>,
    pub received: u64,
}

impl Latencies {
    pub fn new() -> Latencies {
        Latencies {
            hist: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            received: 0,
        }
    }

    /// One message received at `at`: latency from its stamped send time.
    pub fn record(&mut self, payload: &[u8], at: Instant) {
        self.received += 1;
        if let Some(sent) = stamp_of(payload) {
            let us = at.saturating_duration_since(sent).as_micros() as u64;
            self.hist.saturating_record(us.max(1));
        }
    }

    /// `sent` messages, offered at `rate`/s, whose sending took
    /// `send_seconds` (more than planned: the sender fell behind).
    pub fn json(&self, sent: u64, rate: u64, size: usize, send_seconds: f64) -> Value {
        let h = &self.hist;
        json!({
            "messages": self.received,
            "sent": sent,
            "send_seconds": round(send_seconds, 3),
            "rate": rate,
            "size": size,
            "p50_us": h.value_at_quantile(0.50),
            "p99_us": h.value_at_quantile(0.99),
            "p999_us": h.value_at_quantile(0.999),
            "max_us": h.max(),
        })
    }
}

/// Shared between a sender and its receivers: how many were sent (unknown,
/// `u64::MAX`, while sending).
#[derive(Clone)]
pub struct Expect(Arc<AtomicU64>);

impl Expect {
    pub fn new() -> Expect {
        Expect(Arc::new(AtomicU64::new(u64::MAX)))
    }
    pub fn set(&self, n: u64) {
        self.0.store(n, Ordering::SeqCst);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Sends at `rate` messages/s for `duration` on a thread of its own
/// (`std::thread::sleep` is accurate to tens of µs; tokio's timer has 1 ms
/// granularity). Message `k` is due at `start + k / rate`, and `send` gets
/// that *scheduled* time to stamp into the payload, so a sender held up by
/// a slow publish does not hide the delay (coordinated omission). Returns
/// how many were sent, and in how many seconds.
pub async fn paced<F>(rate: u64, duration: Duration, mut send: F) -> anyhow::Result<(u64, f64)>
where
    F: FnMut(Instant) -> anyhow::Result<()> + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        let start = Instant::now();
        let mut k: u32 = 0;
        loop {
            let due = start + interval * k;
            if due >= start + duration {
                return Ok((u64::from(k), start.elapsed().as_secs_f64()));
            }
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            send(due)?;
            k += 1;
        }
    })
    .await
    .context("the paced sender failed")?
}

/// Counts round trips done by the queue workers, against a target that is
/// known once publishing ends, or until a deadline.
#[derive(Clone)]
pub struct Done {
    pub done: Arc<AtomicU64>,
    pub target: Expect,
    pub last: Arc<std::sync::Mutex<Option<Instant>>>,
    deadline: Arc<OnceLock<Instant>>,
}

impl Done {
    pub fn new() -> Done {
        Done {
            done: Arc::new(AtomicU64::new(0)),
            target: Expect::new(),
            last: Arc::new(std::sync::Mutex::new(None)),
            deadline: Arc::new(OnceLock::new()),
        }
    }

    /// The workers stop at `deadline` even if not all are done (a capped
    /// queue run: the publisher stops then too).
    pub fn stop_at(&self, deadline: Instant) {
        let _ = self.deadline.set(deadline);
    }

    pub fn add(&self, k: u64) {
        self.done.fetch_add(k, Ordering::SeqCst);
        let now = Instant::now();
        let mut last = self.last.lock().expect("not poisoned");
        if last.is_none_or(|l| l < now) {
            *last = Some(now);
        }
    }

    pub fn finished(&self) -> bool {
        self.done.load(Ordering::SeqCst) >= self.target.get()
            || self.deadline.get().is_some_and(|d| Instant::now() >= *d)
    }

    pub fn count(&self) -> u64 {
        self.done.load(Ordering::SeqCst)
    }

    pub fn last(&self) -> Option<Instant> {
        *self.last.lock().expect("not poisoned")
    }
}

/// Waits until the workers are done (or `DRAIN` passed), then for them.
pub async fn join_workers(
    done: &Done,
    workers: Vec<JoinHandle<anyhow::Result<()>>>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + DRAIN;
    while !done.finished() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if !done.finished() {
        // Stops the workers too: they look at the target.
        done.target.set(0);
    }
    for w in workers {
        w.await.context("a worker failed")??;
    }
    let (n, target) = (done.count(), done.target.get());
    anyhow::ensure!(
        target != 0,
        "only {n} round trips were done within {} s of the last publish",
        DRAIN.as_secs()
    );
    Ok(())
}

/// Progress on stderr.
pub fn note(what: &str) {
    eprintln!("  … {what}");
}

/// A jHiccup-style probe of the machine: a thread that sleeps 1 ms at a
/// time and records how much later than asked it woke up. On a shared VM
/// the machine stalls now and then (tens of ms: the host, the hypervisor,
/// memory reclaim); a stall delays every system's messages alike, and a
/// single 90 ms stall fills a 10 s run's p99 on its own. Reported with
/// each end-to-end run, so that a reader sees how much of its tail was the
/// machine's.
pub struct Hiccups {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Histogram<u64>>,
}

impl Hiccups {
    pub fn start() -> Hiccups {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut late = Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
            let nap = Duration::from_millis(1);
            while !flag.load(Ordering::Relaxed) {
                let t = Instant::now();
                std::thread::sleep(nap);
                let us = t.elapsed().saturating_sub(nap).as_micros() as u64;
                late.saturating_record(us.max(1));
            }
            late
        });
        Hiccups { stop, thread }
    }

    /// Runs an end-to-end measurement with the probe beside it; the
    /// probe's figures join its result line.
    pub async fn around<F>(measure: F) -> anyhow::Result<Value>
    where
        F: Future<Output = anyhow::Result<Value>>,
    {
        let probe = Hiccups::start();
        let result = measure.await;
        let hiccups = probe.finish();
        result.map(|mut v| {
            if let (Value::Object(fields), Value::Object(h)) = (&mut v, hiccups) {
                fields.extend(h);
            }
            v
        })
    }

    /// Stops the probe: how late its wake-ups were (p99, max) and the sum
    /// of the delays over 1 ms (time the machine was stalled, roughly).
    pub fn finish(self) -> Value {
        self.stop.store(true, Ordering::Relaxed);
        let Ok(late) = self.thread.join() else {
            return json!({});
        };
        let stalled_us: u64 = late
            .iter_recorded()
            .filter(|v| v.value_iterated_to() > 1000)
            .map(|v| v.value_iterated_to() * v.count_at_value())
            .sum();
        json!({
            "hiccup_p99_us": late.value_at_quantile(0.99),
            "hiccup_max_us": late.max(),
            "hiccup_stalled_ms": round(stalled_us as f64 / 1000.0, 1),
        })
    }
}
