//! Deterministic simulation of the broker's pure state machines: the
//! per-partition work queue ([`PartitionQueue`], restarted through
//! [`Replay`] from a simulated state log) and the consumer-group
//! [`Coordinator`]. A seeded PRNG picks every event and every clock step;
//! each step is checked against a small model of what the documentation
//! promises (docs/queues.md, ARCHITECTURE.md), and each run ends with a
//! drain that must finish every message (so the checks cannot pass by
//! delivering nothing).
//!
//! ```text
//! cargo test -p spool-broker --test it sim                      # CI: fixed seeds, a few seconds
//! SPOOL_SIM_SEEDS=20000 cargo test -p spool-broker --test it sim --release
//! SPOOL_SIM_FIRST_SEED=1000000 SPOOL_SIM_SEEDS=5000 …         # other seeds
//! SPOOL_SIM_SEED=1234 cargo test -p spool-broker --test it sim  # replay one seed, printing every step
//! ```
//!
//! A failure names its seed and prints the last steps; the same seed replays
//! the same run exactly (the PRNG is our own SplitMix64, so a dependency
//! upgrade cannot change the schedule).

use spool_broker::group::{Catalog, Coordinator, GroupView, StartFrom, TopicPartition};
use spool_broker::subscription::state::{
    Admit, Backoff, Change, DeliveryMode, Lease, PartitionQueue, Replay, Rules,
};
use spool_types::{ErrorCode, TopicPattern};
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::fmt::Write as _;

/// Seeds run by default: enough to cover every event kind many times while
/// staying well under the 20 s CI budget in a debug build.
const DEFAULT_SEEDS: u64 = 300;
const QUEUE_STEPS: usize = 700;
const GROUP_STEPS: usize = 400;
/// Steps printed when a seed fails.
const TRACE_TAIL: usize = 40;

// ---- PRNG -------------------------------------------------------------------

/// SplitMix64: tiny, fast, and fixed forever, so a seed means the same run
/// on every machine and toolchain.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is irrelevant here.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }
}

// ---- driver -----------------------------------------------------------------

/// Why a step broke the model.
type Check = Result<(), String>;
/// One seed's run: on failure, why and the last steps.
type SeedRun = fn(u64, bool, &mut Stats) -> Result<(), (String, String)>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// The recent steps of a run, printed when it fails.
struct Trace {
    tail: VecDeque<String>,
    echo: bool,
    step: usize,
}

impl Trace {
    fn new(echo: bool) -> Trace {
        Trace {
            tail: VecDeque::new(),
            echo,
            step: 0,
        }
    }

    fn log(&mut self, line: String) {
        let line = format!("#{} {line}", self.step);
        if self.echo {
            eprintln!("{line}");
        }
        if self.tail.len() == TRACE_TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }

    fn dump(&self) -> String {
        self.tail.iter().fold(String::new(), |mut s, l| {
            let _ = writeln!(s, "    {l}");
            s
        })
    }
}

/// Counters summed over all seeds: printed, and checked so that a change
/// that stops the simulation from reaching some event fails loudly.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    queue_steps: u64,
    published: u64,
    deliveries: u64,
    redeliveries: u64,
    acks: u64,
    refused_receipts: u64,
    nacks: u64,
    extends: u64,
    dead_letters: u64,
    redriven: u64,
    restarts: u64,
    power_losses: u64,
    records_lost: u64,
    in_flight_at_crash: u64,
    snapshots: u64,
    retention_drops: u64,
    key_blocked_checks: u64,
    group_steps: u64,
    group_views: u64,
    group_settles: u64,
    group_expired: u64,
    group_restarts: u64,
    commits_checked: u64,
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

/// Runs `one` for every seed the environment asks for; a failing seed (a
/// broken check or a panic inside the product) is reported with the command
/// that replays it.
fn run_seeds(name: &str, one: SeedRun) -> Stats {
    let (seeds, echo): (Vec<u64>, bool) = match env_u64("SPOOL_SIM_SEED") {
        Some(seed) => (vec![seed], true),
        None => {
            let first = env_u64("SPOOL_SIM_FIRST_SEED").unwrap_or(0);
            let n = env_u64("SPOOL_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
            ((first..first + n).collect(), false)
        }
    };
    let mut stats = Stats::default();
    let started = std::time::Instant::now();
    for &seed in &seeds {
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| one(seed, echo, &mut stats)));
        let failure = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err((why, trace))) => format!("{why}\n  last steps:\n{trace}"),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                format!("panicked: {msg}")
            }
        };
        panic!(
            "{name} simulation failed for seed {seed}: {failure}\n  replay: SPOOL_SIM_SEED={seed} cargo test -p spool-broker --test it sim {name}"
        );
    }
    eprintln!(
        "{name}: {} seeds ({}..={}) in {:.1?}: {stats:?}",
        seeds.len(),
        seeds.first().copied().unwrap_or(0),
        seeds.last().copied().unwrap_or(0),
        started.elapsed()
    );
    stats
}

// ---- work queue -------------------------------------------------------------

const PARTITIONS: usize = 2;
const KEYS: u64 = 4;
/// Wall-clock-like start, so `now << 16` lease counters look like production.
const T0: i64 = 1_700_000_000_000;

/// One record of the simulated per-subscription state log.
#[derive(Debug, Clone, Copy)]
enum Rec {
    Change(Change),
    Floor(i64),
}

/// The state log: whole batches (a crash keeps or loses a batch as a unit,
/// as the real log does) and how many of them an fdatasync covered.
#[derive(Default)]
struct StateLog {
    batches: Vec<Vec<(usize, Rec)>>,
    synced: usize,
}

/// A published message.
#[derive(Debug, Clone, Copy)]
struct Msg {
    key: Option<u64>,
    /// From the `spool-deliver-at` header.
    not_before_ms: i64,
}

/// What the model knows about one message.
#[derive(Debug, Default, Clone)]
struct Fate {
    /// The lease a worker holds now: (lease id, deadline).
    lease: Option<(u64, i64)>,
    /// Why it will never be delivered again.
    finished: Option<&'static str>,
    /// Deliveries that really happened.
    delivered: u32,
    /// The delivery count the product should have reported last.
    count: u32,
    /// Delivered records lost to power losses: how far `delivered` may run
    /// ahead of the count (docs/queues.md: "a delivery count may be lower
    /// after a crash").
    counts_lost: u32,
    /// Not to be delivered before (nack delay, backoff), while the product
    /// still remembers it.
    hold_until: i64,
    /// Failed `max_deliveries` times: only a dead-letter copy may follow.
    dead: bool,
    /// The lease ran out, and the product has not processed that yet (it
    /// does so lazily, in `expire`; a restart forgets it).
    expired: bool,
}

/// A receipt a worker got: it may be stale by the time it is used.
#[derive(Debug, Clone, Copy)]
struct Held {
    partition: usize,
    offset: i64,
    lease: u64,
}

/// `p<partition>@<offset> lease <hex>`, as the trace and the checks name a
/// receipt.
impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p{}@{} lease {:x}",
            self.partition, self.offset, self.lease
        )
    }
}

/// What the trace adds to an answer that a crash kept from the client.
fn crash_note(crash: bool) -> &'static str {
    if crash {
        " (crash before the answer)"
    } else {
        ""
    }
}

/// How a check names the answer the model expected.
fn expected(expect: bool) -> &'static str {
    if expect {
        "success"
    } else {
        "a refusal"
    }
}

struct QueueSim {
    rng: Rng,
    trace: Trace,
    rules: Rules,
    now: i64,
    /// Messages admitted per scan step at most (the log read size).
    scan_chunk: i64,
    /// Messages a partition keeps admitted (QUEUE_WINDOW_MESSAGES, scaled down).
    window: usize,
    retention: bool,
    // The product.
    queues: Vec<PartitionQueue>,
    next_lease: u64,
    rotate: usize,
    log: StateLog,
    // The partition logs and the model.
    topic: Vec<Vec<Msg>>,
    start: Vec<i64>,
    fates: Vec<Vec<Fate>>,
    held: Vec<Held>,
    lease_ids: HashSet<u64>,
    dlq: Vec<(usize, i64)>,
    stats: Stats,
}

impl QueueSim {
    fn new(seed: u64, echo: bool) -> QueueSim {
        let mut rng = Rng::new(seed);
        let backoff = match rng.below(3) {
            0 => Backoff::Fixed { delay_ms: 0 },
            1 => Backoff::Fixed {
                delay_ms: rng.below(500),
            },
            _ => {
                let initial_ms = 1 + rng.below(200);
                Backoff::Exponential {
                    initial_ms,
                    max_ms: initial_ms * (1 + rng.below(16)),
                }
            }
        };
        let rules = Rules {
            ack_timeout_ms: 20 + rng.below(2_000),
            max_deliveries: if rng.percent(20) {
                0
            } else {
                1 + rng.below(5) as u32
            },
            backoff,
            mode: if rng.percent(15) {
                DeliveryMode::AtMostOnce
            } else {
                DeliveryMode::AtLeastOnce
            },
            ordered: rng.percent(40),
        };
        let window = 3 + rng.index(30);
        let scan_chunk = rng.range(1, 8);
        let retention = rng.percent(25);
        let mut trace = Trace::new(echo);
        trace.log(format!(
            "seed {seed}: {rules:?}, window {window}, scan {scan_chunk}, retention {retention}"
        ));
        QueueSim {
            rng,
            trace,
            rules,
            now: T0,
            scan_chunk,
            window,
            retention,
            queues: (0..PARTITIONS).map(|_| Replay::new().finish(0)).collect(),
            next_lease: (T0 as u64) << 16,
            rotate: 0,
            log: StateLog::default(),
            topic: vec![Vec::new(); PARTITIONS],
            start: vec![0; PARTITIONS],
            fates: vec![Vec::new(); PARTITIONS],
            held: Vec::new(),
            lease_ids: HashSet::new(),
            dlq: Vec::new(),
            stats: Stats::default(),
        }
    }

    fn max(&self) -> u32 {
        self.rules.max_deliveries
    }

    /// Appends one batch of changes, like `Subscription::persist`.
    fn persist(&mut self, partition: usize, changes: &[Change], durable: bool) {
        if !changes.is_empty() {
            self.log.batches.push(
                changes
                    .iter()
                    .map(|c| (partition, Rec::Change(*c)))
                    .collect(),
            );
        }
        if durable {
            self.log.synced = self.log.batches.len();
        }
    }

    /// Leases past their deadline are failures: the worker's receipt is no
    /// longer good, and a message out of deliveries is dead.
    fn settle_expired(&mut self) {
        let max = self.max();
        for fates in &mut self.fates {
            for f in fates.iter_mut() {
                if let Some((_, deadline)) = f.lease {
                    if deadline <= self.now {
                        f.lease = None;
                        if max > 0 && f.count >= max {
                            f.dead = true;
                        } else {
                            f.expired = true;
                        }
                    }
                }
            }
        }
    }

    /// The product processes expiries of partition `p` now (it is about to
    /// call `expire`, directly or through `lease`): the backoff runs from now.
    fn product_expires(&mut self, p: usize) {
        let (backoff, now) = (self.rules.backoff, self.now);
        for f in self.fates[p].iter_mut().filter(|f| f.expired) {
            f.expired = false;
            f.hold_until = f.hold_until.max(now + backoff.delay_ms(f.count) as i64);
        }
    }

    fn publish(&mut self, partition: usize, msg: Msg) {
        self.topic[partition].push(msg);
        self.fates[partition].push(Fate::default());
        self.stats.published += 1;
    }

    fn step(&mut self) -> Check {
        self.settle_expired();
        match self.rng.below(100) {
            0..=17 => {
                let p = self.rng.index(PARTITIONS);
                let n = self.rng.range(1, 5);
                for _ in 0..n {
                    let key = (!self.rng.percent(40)).then(|| self.rng.below(KEYS));
                    let not_before_ms = if self.rng.percent(20) {
                        self.now + self.rng.range(-1_000, 5 * self.rules.ack_timeout_ms as i64)
                    } else {
                        0
                    };
                    self.publish(p, Msg { key, not_before_ms });
                }
                self.trace.log(format!("publish {n} to p{p}"));
            }
            18..=39 | 99 => {
                let max = self.rng.range(1, 6) as usize;
                self.receive(max)?;
            }
            40..=55 => self.ack(false)?,
            56..=62 => self.nack(false)?,
            63..=66 => self.extend()?,
            67..=79 => {
                let ms = match self.rng.below(20) {
                    0..=11 => self.rng.range(1, 50),
                    12..=16 => self.rng.range(1, 2 * self.rules.ack_timeout_ms as i64),
                    17..=18 => self.rng.range(1, 10 * self.rules.ack_timeout_ms as i64),
                    _ => self.rng.range(1, 36 * 3_600_000),
                };
                self.now += ms;
                self.trace.log(format!("clock +{ms} ms"));
            }
            80..=86 => {
                let copy = self.rng.percent(80);
                self.housekeeping(copy)?;
            }
            87..=88 => self.redrive(),
            89..=90 => self.snapshot(),
            91..=92 if self.retention => self.retention_step(),
            91..=92 => self.extend()?,
            93..=95 => {
                let power_loss = self.rng.percent(40);
                self.restart(power_loss)?;
            }
            96..=97 => self.ack(true)?,
            _ => self.nack(true)?,
        }
        Ok(())
    }

    /// `Subscription::receive`: per partition, catch up with retention, admit
    /// from the log up to the window, lease.
    fn receive(&mut self, max: usize) -> Check {
        let first = self.rotate;
        self.rotate += 1;
        let mut got = 0;
        for i in 0..PARTITIONS {
            if got >= max {
                break;
            }
            let p = (first + i) % PARTITIONS;
            self.admit(p);
            self.product_expires(p);
            let mut changes = Vec::new();
            let leases = self.queues[p].lease(
                max - got,
                self.now,
                &self.rules,
                &mut self.next_lease,
                &mut changes,
            );
            // At-most-once hands out only what is durably marked done.
            self.persist(p, &changes, self.rules.mode == DeliveryMode::AtMostOnce);
            got += leases.len();
            for l in leases {
                self.check_lease(p, &l)?;
            }
        }
        Ok(())
    }

    fn admit(&mut self, p: usize) {
        let q = &mut self.queues[p];
        q.skip_to(self.start[p]);
        let end = self.topic[p].len() as i64;
        while q.outstanding() < self.window && q.scanned() < end {
            let from = q.scanned();
            let to = (from + self.scan_chunk).min(end);
            let admits: Vec<Admit> = (from..to)
                .map(|offset| {
                    let m = self.topic[p][offset as usize];
                    Admit {
                        offset,
                        key: m.key,
                        not_before_ms: m.not_before_ms,
                    }
                })
                .collect();
            q.admit(admits, to);
        }
    }

    /// Every promise about one delivery.
    fn check_lease(&mut self, p: usize, l: &Lease) -> Check {
        let now = self.now;
        let max = self.max();
        self.trace.log(format!(
            "  leased p{p}@{} lease {:x} delivery {}",
            l.offset, l.lease, l.deliveries
        ));
        let o = l.offset;
        ensure!(
            o >= self.start[p] && (o as usize) < self.topic[p].len(),
            "p{p}@{o} delivered but the log holds {}..{}",
            self.start[p],
            self.topic[p].len()
        );
        let msg = self.topic[p][o as usize];
        ensure!(
            self.lease_ids.insert(l.lease),
            "lease id {:x} handed out twice",
            l.lease
        );
        let ordered = self.rules.ordered;
        if ordered {
            if let Some(k) = msg.key {
                self.stats.key_blocked_checks += 1;
                for earlier in self.start[p]..o {
                    let e = &self.fates[p][earlier as usize];
                    ensure!(
                        self.topic[p][earlier as usize].key != Some(k) || e.finished.is_some(),
                        "p{p}@{o} (key {k}) delivered before p{p}@{earlier} of the same key finished ({e:?})"
                    );
                }
            }
        }
        let f = &mut self.fates[p][o as usize];
        ensure!(
            f.finished.is_none(),
            "p{p}@{o} delivered again after it was {}",
            f.finished.unwrap_or_default()
        );
        ensure!(
            f.lease.is_none(),
            "p{p}@{o} delivered while leased ({:?}) at {now}",
            f.lease
        );
        ensure!(
            !f.dead,
            "p{p}@{o} delivered again after failing its {max} deliveries"
        );
        ensure!(
            now >= msg.not_before_ms,
            "p{p}@{o} delivered at {now}, before its delivery time {}",
            msg.not_before_ms
        );
        ensure!(
            now >= f.hold_until,
            "p{p}@{o} delivered at {now}, before its nack delay or backoff ended at {}",
            f.hold_until
        );
        ensure!(
            l.deliveries == f.count + 1,
            "p{p}@{o} reported delivery {} but {} deliveries were recorded",
            l.deliveries,
            f.count
        );
        ensure!(
            max == 0 || l.deliveries <= max,
            "p{p}@{o} delivered a {}th time, max_deliveries is {max}",
            l.deliveries
        );
        ensure!(
            l.deadline_ms == now + self.rules.ack_timeout_ms as i64,
            "p{p}@{o} lease deadline {} is not now + ack timeout",
            l.deadline_ms
        );
        f.delivered += 1;
        f.count = l.deliveries;
        ensure!(
            max == 0 || f.delivered <= max + f.counts_lost,
            "p{p}@{o} really delivered {} times: more than max_deliveries {max} plus {} counts lost in crashes",
            f.delivered,
            f.counts_lost
        );
        self.stats.deliveries += 1;
        if f.delivered > 1 {
            self.stats.redeliveries += 1;
        }
        if self.rules.mode == DeliveryMode::AtMostOnce {
            f.finished = Some("handed out at most once");
        } else {
            f.lease = Some((l.lease, l.deadline_ms));
        }
        self.held.push(Held {
            partition: p,
            offset: o,
            lease: l.lease,
        });
        if self.held.len() > 64 {
            self.held.remove(0);
        }
        Ok(())
    }

    /// Picks up to four receipts, fresh ones more often than stale ones.
    fn pick_receipts(&mut self) -> Vec<Held> {
        let n = self.rng.range(1, 4) as usize;
        let mut out = Vec::new();
        for _ in 0..n {
            if self.held.is_empty() {
                break;
            }
            let i = if self.rng.percent(70) {
                self.held.len() - 1 - self.rng.index(self.held.len().min(6))
            } else {
                self.rng.index(self.held.len())
            };
            let h = self.held[i];
            if !out
                .iter()
                .any(|o: &Held| o.partition == h.partition && o.offset == h.offset)
            {
                out.push(h);
            }
        }
        out
    }

    /// Whether the model expects the product to honour `h` now.
    fn current(&self, h: &Held) -> bool {
        self.fates[h.partition][h.offset as usize]
            .lease
            .is_some_and(|(lease, deadline)| lease == h.lease && self.now < deadline)
    }

    /// Acks a few receipts. `crash`: the server dies before answering (the
    /// ack's record may or may not have reached the state log).
    fn ack(&mut self, crash: bool) -> Check {
        let picked = self.pick_receipts();
        if picked.is_empty() {
            return Ok(());
        }
        let mut by_partition: BTreeMap<usize, Vec<Change>> = BTreeMap::new();
        let mut accepted = Vec::new();
        for h in &picked {
            let expect = self.current(h);
            let changes = by_partition.entry(h.partition).or_default();
            let got = self.queues[h.partition].ack(h.offset, h.lease, self.now, changes);
            let note = crash_note(crash);
            self.trace.log(format!("ack {h}: {got:?}{note}"));
            ensure!(
                got.is_ok() == expect,
                "ack of {h} answered {got:?}, the model expected {}",
                expected(expect)
            );
            if got.is_ok() {
                accepted.push(*h);
            } else {
                self.stats.refused_receipts += 1;
            }
        }
        if crash {
            return self.crash_in_flight(
                by_partition,
                &accepted,
                "acked (its ack was in flight at a crash)",
            );
        }
        let last = by_partition.len();
        for (i, (p, changes)) in by_partition.into_iter().enumerate() {
            // One fdatasync after the last partition's records, as Subscription::ack.
            self.persist(p, &changes, i + 1 == last);
        }
        for h in accepted {
            let f = &mut self.fates[h.partition][h.offset as usize];
            f.lease = None;
            f.finished = Some("acked");
            self.stats.acks += 1;
        }
        Ok(())
    }

    /// The server dies while answering a request whose changes were applied
    /// in memory: the records are written or not (a process crash), and
    /// maybe not fdatasync'd (a power loss). The model learns from the log
    /// which happened.
    fn crash_in_flight(
        &mut self,
        by_partition: BTreeMap<usize, Vec<Change>>,
        accepted: &[Held],
        done_reason: &'static str,
    ) -> Check {
        self.stats.in_flight_at_crash += 1;
        let first = self.log.batches.len();
        if self.rng.percent(50) {
            for (p, changes) in &by_partition {
                self.persist(*p, changes, false);
            }
        }
        let power_loss = self.rng.percent(30);
        let kept = self.restart(power_loss)?;
        let kept_batches = &self.log.batches[first.min(kept)..kept];
        for h in accepted {
            let done = kept_batches.iter().flatten().any(|(p, r)| {
                *p == h.partition
                    && matches!(r, Rec::Change(Change::Done { offset }) if *offset == h.offset)
            });
            if done {
                let f = &mut self.fates[h.partition][h.offset as usize];
                f.finished = Some(done_reason);
            }
        }
        Ok(())
    }

    fn nack(&mut self, crash: bool) -> Check {
        let picked = self.pick_receipts();
        if picked.is_empty() {
            return Ok(());
        }
        let delay = match self.rng.below(4) {
            0 => 0,
            1 => self.rng.below(100),
            2 => self.rng.below(5 * self.rules.ack_timeout_ms),
            _ => self.rng.below(3_600_000),
        };
        let mut by_partition: BTreeMap<usize, Vec<Change>> = BTreeMap::new();
        for h in &picked {
            let expect = self.current(h);
            let got = self.queues[h.partition].nack(
                h.offset,
                h.lease,
                delay,
                Some(format!("sim error {}", self.trace.step)),
                self.now,
                &self.rules,
                by_partition.entry(h.partition).or_default(),
            );
            let note = crash_note(crash);
            self.trace
                .log(format!("nack {h} delay {delay}: {got:?}{note}"));
            ensure!(
                got.is_ok() == expect,
                "nack of {h} answered {got:?}, the model expected {}",
                expected(expect)
            );
            if got.is_ok() {
                self.stats.nacks += 1;
                let (max, backoff, now) = (self.max(), self.rules.backoff, self.now);
                let f = &mut self.fates[h.partition][h.offset as usize];
                f.lease = None;
                if max > 0 && f.count >= max {
                    f.dead = true;
                } else if !crash {
                    f.hold_until = now + delay.max(backoff.delay_ms(f.count)) as i64;
                }
            } else {
                self.stats.refused_receipts += 1;
            }
        }
        if crash {
            // A nack lost in a crash is a lease lost in a crash: the
            // message is simply available again. Nacks write no done records.
            return self.crash_in_flight(by_partition, &[], "");
        }
        for (p, changes) in by_partition {
            self.persist(p, &changes, false);
        }
        Ok(())
    }

    fn extend(&mut self) -> Check {
        let Some(h) = self.pick_receipts().pop() else {
            return Ok(());
        };
        let ms = self.rng.range(1, 3 * self.rules.ack_timeout_ms as i64) as u64;
        let expect = self.current(&h);
        let got = self.queues[h.partition].extend(h.offset, h.lease, ms, self.now);
        self.trace.log(format!("extend {h} by {ms}: {got:?}"));
        ensure!(
            got.is_ok() == expect,
            "extend of {h} answered {got:?}, the model expected {}",
            expected(expect)
        );
        if let Ok(deadline) = got {
            ensure!(
                deadline == self.now + ms as i64,
                "extend returned deadline {deadline}, not now + {ms}"
            );
            self.fates[h.partition][h.offset as usize].lease = Some((h.lease, deadline));
            self.stats.extends += 1;
        } else {
            self.stats.refused_receipts += 1;
        }
        Ok(())
    }

    /// `Broker::tick` for queues: expire leases, copy dead letters (the
    /// copy may fail, leaving the message waiting), mark them done.
    fn housekeeping(&mut self, copy: bool) -> Result<u64, String> {
        let copied = self.stats.dead_letters;
        for p in 0..PARTITIONS {
            let mut changes = Vec::new();
            self.product_expires(p);
            self.queues[p].expire(self.now, &self.rules, &mut changes);
            self.persist(p, &changes, false);
            let dead = self.queues[p].dead_letters();
            let listed: BTreeSet<i64> = dead.iter().map(|d| d.offset).collect();
            for d in &dead {
                let f = &self.fates[p][d.offset as usize];
                self.trace.log(format!(
                    "dead letter p{p}@{} after {} deliveries ({:?}){}",
                    d.offset,
                    d.deliveries,
                    d.last_error,
                    if copy { "" } else { ", copy fails" }
                ));
                ensure!(
                    f.dead && f.finished.is_none(),
                    "p{p}@{} offered as a dead letter but the model has {f:?}",
                    d.offset
                );
                ensure!(
                    self.max() > 0 && d.deliveries == f.count && d.deliveries >= self.max(),
                    "p{p}@{} dead-lettered with count {} (model {f:?}, max {})",
                    d.offset,
                    d.deliveries,
                    self.max()
                );
                if copy {
                    let mut changes = Vec::new();
                    self.queues[p].dead_lettered(d.offset, &mut changes);
                    self.persist(p, &changes, true);
                    self.fates[p][d.offset as usize].finished = Some("dead-lettered");
                    self.dlq.push((p, d.offset));
                    self.stats.dead_letters += 1;
                }
            }
            // The converse: whatever the model holds dead (and the product
            // has admitted) must be on its way to the dead-letter topic.
            let scanned = self.queues[p].scanned();
            for (o, f) in self.fates[p].iter().enumerate() {
                let o = o as i64;
                if f.dead && f.finished.is_none() && o >= self.start[p] && o < scanned {
                    ensure!(
                        listed.contains(&o),
                        "p{p}@{o} failed its {} deliveries but is not a dead letter ({f:?})",
                        self.max()
                    );
                }
            }
        }
        Ok(self.stats.dead_letters - copied)
    }

    /// `spool dlq redrive`: the copies come back as new messages.
    fn redrive(&mut self) {
        let copies = std::mem::take(&mut self.dlq);
        for (p, o) in &copies {
            let key = self.topic[*p][*o as usize].key;
            self.publish(
                *p,
                Msg {
                    key,
                    not_before_ms: 0,
                },
            );
        }
        self.stats.redriven += copies.len() as u64;
        self.trace.log(format!("redrive {} copies", copies.len()));
    }

    /// `Subscription::maybe_snapshot`: the state log becomes one synced snapshot.
    fn snapshot(&mut self) {
        let mut batch = Vec::new();
        for (p, q) in self.queues.iter().enumerate() {
            batch.push((p, Rec::Floor(q.floor())));
            batch.extend(q.snapshot().into_iter().map(|c| (p, Rec::Change(c))));
        }
        self.trace.log(format!("snapshot: {} records", batch.len()));
        self.log.batches = vec![batch];
        self.log.synced = 1;
        self.stats.snapshots += 1;
    }

    /// Time or size retention moves a partition log's start; what it passes
    /// is gone, delivered or not.
    fn retention_step(&mut self) {
        let p = self.rng.index(PARTITIONS);
        let end = self.topic[p].len() as i64;
        let to = self.rng.range(self.start[p], end);
        for o in self.start[p]..to {
            let f = &mut self.fates[p][o as usize];
            f.lease = None;
            if f.finished.is_none() {
                f.finished = Some("removed by retention");
                self.stats.retention_drops += 1;
            }
        }
        self.start[p] = self.start[p].max(to);
        // The broker moves the queue with the log (Subscription::receive calls
        // skip_to); the model applies it at once.
        self.queues[p].skip_to(self.start[p]);
        self.trace.log(format!("retention: p{p} starts at {to}"));
    }

    /// Restarts from the state log: all of it after a process crash, the
    /// synced batches and any prefix of the rest after a power loss. Returns
    /// how many batches survived.
    fn restart(&mut self, power_loss: bool) -> Result<usize, String> {
        let total = self.log.batches.len();
        let kept = if power_loss {
            self.log.synced + self.rng.index(total - self.log.synced + 1)
        } else {
            total
        };
        let lost: Vec<(usize, Rec)> = self.log.batches[kept..].iter().flatten().copied().collect();
        self.trace.log(format!(
            "restart ({}): {kept} of {total} state-log batches survive, {} records lost",
            if power_loss {
                "power loss"
            } else {
                "process crash"
            },
            lost.len()
        ));
        self.stats.restarts += 1;
        if power_loss {
            self.stats.power_losses += 1;
        }
        self.stats.records_lost += lost.len() as u64;
        for (p, rec) in &lost {
            match rec {
                Rec::Change(Change::Delivered { offset, .. }) => {
                    let f = &mut self.fates[*p][*offset as usize];
                    f.count -= 1;
                    f.counts_lost += 1;
                }
                Rec::Change(Change::Retry { offset, .. }) => {
                    self.fates[*p][*offset as usize].hold_until = 0;
                }
                Rec::Change(Change::Done { offset }) => {
                    let f = &mut self.fates[*p][*offset as usize];
                    ensure!(
                        f.finished.is_none() || f.finished == Some("removed by retention"),
                        "an unsynced done record of p{p}@{offset} was lost but the model has {f:?}"
                    );
                }
                Rec::Floor(_) => return Err("a snapshot record was lost".into()),
            }
        }
        self.log.batches.truncate(kept);
        // Log::open fdatasyncs what recovery kept: from here on it survives
        // power losses too.
        self.log.synced = kept;
        let mut replays: Vec<Replay> = (0..PARTITIONS).map(|_| Replay::new()).collect();
        for (p, rec) in self.log.batches.iter().flatten() {
            match rec {
                Rec::Change(c) => replays[*p].change(c),
                Rec::Floor(o) => replays[*p].floor(*o),
            }
        }
        self.queues = replays
            .into_iter()
            .zip(&self.start)
            .map(|(r, s)| r.finish(*s))
            .collect();
        // A restart takes time; leases restart from the clock (Subscription::open).
        self.now += self.rng.range(1, 3_000);
        self.next_lease = (self.now as u64) << 16;
        let max = self.max();
        for fates in &mut self.fates {
            for f in fates.iter_mut() {
                // Leases are not durable: every leased message is free again,
                // and one that used up its deliveries is dead (its last
                // delivery failed with the server).
                f.lease = None;
                f.expired = false;
                f.dead = f.finished.is_none() && max > 0 && f.count >= max;
            }
        }
        Ok(kept)
    }

    /// Stops the chaos, then works until nothing is left: every message must
    /// end acknowledged, dead-lettered or handed out, and the queue empty.
    fn drain(&mut self) -> Check {
        self.trace.log("drain".into());
        let mut idle_rounds = 0;
        for _ in 0..100_000 {
            self.settle_expired();
            let copied = self.housekeeping(true)?;
            let deliveries = self.stats.deliveries;
            self.receive(50)?;
            let leased = self.stats.deliveries - deliveries;
            if self.rules.mode == DeliveryMode::AtLeastOnce && leased > 0 {
                let fresh: Vec<Held> = self.held[self.held.len() - leased as usize..].to_vec();
                let mut by_partition: BTreeMap<usize, Vec<Change>> = BTreeMap::new();
                for h in &fresh {
                    let got = self.queues[h.partition].ack(
                        h.offset,
                        h.lease,
                        self.now,
                        by_partition.entry(h.partition).or_default(),
                    );
                    ensure!(
                        got.is_ok(),
                        "drain: ack of a fresh lease p{}@{} answered {got:?}",
                        h.partition,
                        h.offset
                    );
                    let f = &mut self.fates[h.partition][h.offset as usize];
                    f.lease = None;
                    f.finished = Some("acked");
                    self.stats.acks += 1;
                }
                for (p, changes) in by_partition {
                    self.persist(p, &changes, true);
                }
            }
            if leased > 0 || copied > 0 {
                idle_rounds = 0;
                continue;
            }
            let wake = self.queues.iter().filter_map(|q| q.next_wakeup()).min();
            for (p, q) in self.queues.iter().enumerate() {
                self.trace.log(format!(
                    "  p{p}: floor {} scanned {} outstanding {} leased {} wake {:?}",
                    q.floor(),
                    q.scanned(),
                    q.outstanding(),
                    q.leased(),
                    q.next_wakeup()
                ));
            }
            match wake {
                // Dead letters found while leasing wait for the next tick.
                None if self.queues.iter().any(|q| !q.dead_letters().is_empty()) => {}
                None => break,
                Some(t) if t > self.now => self.now = t,
                Some(t) => {
                    idle_rounds += 1;
                    ensure!(
                        idle_rounds < 3,
                        "drain is stuck: next wake-up {t} is not after now {} yet nothing is delivered",
                        self.now
                    );
                    self.now += 1;
                }
            }
        }
        for p in 0..PARTITIONS {
            for (o, f) in self.fates[p].iter().enumerate() {
                ensure!(
                    f.finished.is_some(),
                    "after the drain p{p}@{o} was never finished: {f:?}"
                );
            }
            let q = &self.queues[p];
            ensure!(
                q.floor() == self.topic[p].len() as i64 && q.outstanding() == 0 && q.leased() == 0,
                "after the drain p{p} has floor {}, {} outstanding, {} leased (log end {})",
                q.floor(),
                q.outstanding(),
                q.leased(),
                self.topic[p].len()
            );
        }
        Ok(())
    }
}

fn queue_seed(seed: u64, echo: bool, stats: &mut Stats) -> Result<(), (String, String)> {
    let mut sim = QueueSim::new(seed, echo);
    let mut result = Ok(());
    for step in 0..QUEUE_STEPS {
        sim.trace.step = step;
        result = sim.step();
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        sim.trace.step = QUEUE_STEPS;
        if sim.rng.percent(50) {
            result = sim.restart(false).map(|_| ());
        }
    }
    if result.is_ok() {
        result = sim.drain();
    }
    sim.stats.queue_steps = QUEUE_STEPS as u64;
    add(stats, &sim.stats);
    result.map_err(|why| (why, sim.trace.dump()))
}

// ---- consumer groups ----------------------------------------------------------

const GROUP: &str = "g";
const TOPICS: [&str; 4] = ["a.x", "a.y", "b.x", "b.y"];
const PATTERNS: [&str; 5] = ["a.*", "*.x", ">", "a.x", "b.>"];

struct MemberModel {
    patterns: Vec<&'static str>,
    session_timeout_ms: u64,
    deadline_ms: i64,
    /// The latest view the member received.
    view: GroupView,
    /// Partitions an earlier view held and a later one dropped: the member
    /// is still finishing and committing them, until it heartbeats with the
    /// generation that took them away (the safe hand-off).
    releasing: BTreeSet<TopicPartition>,
}

impl MemberModel {
    /// What the member may be consuming now.
    fn holds(&self) -> impl Iterator<Item = &TopicPartition> {
        self.view
            .partitions
            .iter()
            .map(|(tp, _)| tp)
            .chain(self.releasing.iter())
    }
}

struct GroupSim {
    rng: Rng,
    trace: Trace,
    now: i64,
    coord: Coordinator,
    catalog: Catalog,
    live: BTreeMap<String, MemberModel>,
    /// Members that left, expired or lost their server.
    zombies: Vec<String>,
    /// Committed offsets as persisted (what a restart restores).
    commits: BTreeMap<TopicPartition, i64>,
    /// Per generation of this coordinator: which member each partition was
    /// handed to.
    handed: BTreeMap<u32, BTreeMap<TopicPartition, String>>,
    clients: u64,
    stats: Stats,
}

fn patterns(names: &[&str]) -> Vec<TopicPattern> {
    names
        .iter()
        .map(|p| TopicPattern::new(p).expect("valid pattern"))
        .collect()
}

fn held_set(v: &GroupView) -> BTreeSet<TopicPartition> {
    v.partitions.iter().map(|(tp, _)| tp.clone()).collect()
}

impl GroupSim {
    fn new(seed: u64, echo: bool) -> GroupSim {
        // A different stream than the queue simulation's for the same seed.
        let mut rng = Rng::new(seed ^ 0x6a09_e667_f3bc_c908);
        let mut catalog = Catalog::new();
        for t in TOPICS {
            if rng.percent(60) {
                catalog.insert(t.to_owned(), rng.range(1, 4) as u32);
            }
        }
        let mut trace = Trace::new(echo);
        trace.log(format!("seed {seed}: catalog {catalog:?}"));
        GroupSim {
            rng,
            trace,
            now: T0,
            coord: Coordinator::new(),
            catalog,
            live: BTreeMap::new(),
            zombies: Vec::new(),
            commits: BTreeMap::new(),
            handed: BTreeMap::new(),
            clients: 0,
            stats: Stats::default(),
        }
    }

    fn generation(&self) -> u32 {
        self.coord
            .describe()
            .into_iter()
            .find(|(name, _, _)| name == GROUP)
            .map_or(0, |(_, generation, _)| generation)
    }

    /// Checks a view as it is handed out and records it. `acknowledged`:
    /// the request carried the generation the group was at, so the member
    /// has let go of what it was releasing.
    fn take_view(&mut self, id: &str, view: GroupView, acknowledged: bool) -> Check {
        let generation = self.generation();
        self.trace.log(format!(
            "  view {id} gen {}: {:?}",
            view.generation,
            held_set(&view)
        ));
        ensure!(
            view.generation == generation,
            "{id} got generation {} while the group is at {generation}",
            view.generation
        );
        ensure!(
            view.member_id == id,
            "view for {id} names {}",
            view.member_id
        );
        let m = self.live.get(id).ok_or(format!("view for unknown {id}"))?;
        let pats = patterns(&m.patterns);
        for ((topic, partition), committed) in &view.partitions {
            ensure!(
                self.catalog.get(topic).is_some_and(|&n| *partition < n),
                "{id} was given {topic}/{partition}, which does not exist"
            );
            ensure!(
                pats.iter().any(|p| p.matches(topic)),
                "{id} was given {topic}/{partition}, which its patterns {:?} do not match",
                m.patterns
            );
            let tp = (topic.clone(), *partition);
            ensure!(
                *committed == self.commits.get(&tp).copied(),
                "{id} was told {topic}/{partition} is committed at {committed:?}, but {:?} was",
                self.commits.get(&tp)
            );
            let owners = self.handed.entry(view.generation).or_default();
            if let Some(other) = owners.get(&tp) {
                ensure!(
                    other == id,
                    "generation {}: {topic}/{partition} handed to both {other} and {id}",
                    view.generation
                );
            }
            owners.insert(tp, id.to_owned());
        }
        self.stats.group_views += 1;
        if let Some(m) = self.live.get_mut(id) {
            m.deadline_ms = self.now + m.session_timeout_ms as i64;
            let now_held = held_set(&view);
            if acknowledged {
                m.releasing.clear();
            } else {
                let dropped: Vec<TopicPartition> =
                    held_set(&m.view).difference(&now_held).cloned().collect();
                m.releasing.extend(dropped);
                m.releasing.retain(|tp| !now_held.contains(tp));
            }
            m.view = view;
        }
        Ok(())
    }

    /// No two live members believe they hold the same partition.
    fn check_exclusive(&self) -> Check {
        let mut seen: BTreeMap<&TopicPartition, &str> = BTreeMap::new();
        for (id, m) in &self.live {
            for tp in m.holds() {
                if let Some(other) = seen.insert(tp, id) {
                    return Err(format!(
                        "{}/{} held by both {other} (gen {}) and {id} (gen {})",
                        tp.0, tp.1, self.live[other].view.generation, m.view.generation
                    ));
                }
            }
        }
        Ok(())
    }

    fn join(&mut self) -> Check {
        let rejoin = if !self.live.is_empty() && self.rng.percent(25) {
            let i = self.rng.index(self.live.len());
            self.live.keys().nth(i).cloned()
        } else if !self.zombies.is_empty() && self.rng.percent(20) {
            Some(self.zombies[self.rng.index(self.zombies.len())].clone())
        } else {
            None
        };
        let (pats, timeout) = match rejoin.as_ref().and_then(|id| self.live.get(id)) {
            Some(m) => (m.patterns.clone(), m.session_timeout_ms),
            None => {
                let n = self.rng.range(1, 2) as usize;
                let pats: Vec<&'static str> = (0..n)
                    .map(|_| PATTERNS[self.rng.index(PATTERNS.len())])
                    .collect();
                (pats, 1_000 + self.rng.below(9_000))
            }
        };
        self.clients += 1;
        let client = format!("c{}", self.clients);
        // A fresh id per join, as the broker draws one at random.
        let view = self.coord.join(
            GROUP,
            rejoin.as_deref(),
            format!("{client}-id"),
            None,
            patterns(&pats),
            timeout,
            StartFrom::Earliest,
            &self.catalog,
            self.now,
        );
        self.trace
            .log(format!("join {client} (as {rejoin:?}) {pats:?}"));
        let id = view.member_id.clone();
        match &rejoin {
            Some(old) if self.live.contains_key(old) => {
                ensure!(&id == old, "live member {old} rejoined as {id}");
            }
            _ => ensure!(
                !self.live.contains_key(&id) && !self.zombies.contains(&id),
                "a new member got the id {id}, already used"
            ),
        }
        self.live.insert(
            id.clone(),
            MemberModel {
                patterns: pats,
                session_timeout_ms: timeout,
                deadline_ms: 0,
                view: GroupView {
                    partitions: Vec::new(),
                    ..view.clone()
                },
                releasing: BTreeSet::new(),
            },
        );
        // A join settles at the new generation itself: what the member no
        // longer targets is released at once (it rejoined knowingly).
        self.take_view(&id, view, true)
    }

    fn heartbeat(&mut self, id: &str, stale: bool) -> Check {
        let seen = match self.live.get(id) {
            Some(m) if stale => m.view.generation.saturating_sub(1),
            Some(m) => m.view.generation,
            None => 0,
        };
        let acknowledged = seen == self.generation();
        let got = self.coord.heartbeat(GROUP, id, None, seen, self.now);
        self.trace
            .log(format!("heartbeat {id} seen gen {seen}: {}", got.is_ok()));
        if self.live.contains_key(id) {
            let view = got.map_err(|e| format!("live member {id} refused: {e:?}"))?;
            self.take_view(id, view, acknowledged)
        } else {
            ensure!(
                got.as_ref()
                    .is_err_and(|e| e.code == ErrorCode::UnknownMember),
                "gone member {id} heartbeated: {got:?}"
            );
            Ok(())
        }
    }

    fn leave(&mut self) -> Check {
        let id = if !self.zombies.is_empty() && self.rng.percent(20) {
            self.zombies[self.rng.index(self.zombies.len())].clone()
        } else if let Some(id) = self.live.keys().nth(self.rng.index(self.live.len())) {
            id.clone()
        } else {
            return Ok(());
        };
        let got = self.coord.leave(GROUP, &id, None, &self.catalog);
        self.trace.log(format!("leave {id}: {}", got.is_ok()));
        if self.live.remove(&id).is_some() {
            ensure!(got.is_ok(), "live member {id} could not leave: {got:?}");
            self.zombies.push(id);
        } else {
            ensure!(got.is_err(), "gone member {id} left again");
        }
        Ok(())
    }

    fn expire(&mut self) -> Check {
        let mut expect: Vec<String> = self
            .live
            .iter()
            .filter(|(_, m)| m.deadline_ms < self.now)
            .map(|(id, _)| id.clone())
            .collect();
        let mut gone: Vec<String> = self
            .coord
            .expire(self.now, &self.catalog)
            .into_iter()
            .map(|(_, m)| m)
            .collect();
        expect.sort();
        gone.sort();
        self.trace.log(format!("expire: {gone:?}"));
        ensure!(
            gone == expect,
            "expired {gone:?}, the model expected {expect:?}"
        );
        for id in gone {
            self.live.remove(&id);
            self.zombies.push(id);
            self.stats.group_expired += 1;
        }
        Ok(())
    }

    fn topics(&mut self) {
        let t = TOPICS[self.rng.index(TOPICS.len())];
        if self.catalog.remove(t).is_some() {
            // Members notice a deleted topic when their fetches fail.
            for m in self.live.values_mut() {
                m.view.partitions.retain(|((topic, _), _)| topic != t);
                m.releasing.retain(|(topic, _)| topic != t);
            }
            self.commits.retain(|(topic, _), _| topic != t);
            self.trace.log(format!("delete topic {t}"));
        } else {
            let n = self.rng.range(1, 4) as u32;
            self.catalog.insert(t.to_owned(), n);
            self.trace
                .log(format!("create topic {t} with {n} partitions"));
        }
        self.coord.topics_changed(&self.catalog);
    }

    fn all_partitions(&self) -> Vec<TopicPartition> {
        self.catalog
            .iter()
            .flat_map(|(t, n)| (0..*n).map(move |p| (t.clone(), p)))
            .collect()
    }

    /// Commits: a member may always commit what its latest view holds; a
    /// commit that is accepted never touches a partition another live
    /// member believes it holds; gone members can commit nothing.
    fn commit(&mut self) -> Check {
        let all = self.all_partitions();
        if all.is_empty() {
            return Ok(());
        }
        let zombie = !self.zombies.is_empty() && (self.live.is_empty() || self.rng.percent(15));
        let id = if zombie {
            self.zombies[self.rng.index(self.zombies.len())].clone()
        } else if let Some(id) = self.live.keys().nth(self.rng.index(self.live.len())) {
            id.clone()
        } else {
            return Ok(());
        };
        let own: Vec<TopicPartition> = self
            .live
            .get(&id)
            .map(|m| m.holds().cloned().collect())
            .unwrap_or_default();
        let tp = if !own.is_empty() && self.rng.percent(70) {
            own[self.rng.index(own.len())].clone()
        } else {
            all[self.rng.index(all.len())].clone()
        };
        let offset = self.rng.range(0, 1_000);
        let offsets = [(tp.clone(), offset)];
        let got = self.coord.check_commit(GROUP, &id, None, &offsets);
        self.trace
            .log(format!("commit {id} {}/{} = {offset}: {got:?}", tp.0, tp.1));
        self.stats.commits_checked += 1;
        if zombie {
            ensure!(
                got.as_ref()
                    .is_err_and(|e| e.code == ErrorCode::UnknownMember),
                "gone member {id} could commit: {got:?}"
            );
            return Ok(());
        }
        if own.contains(&tp) {
            ensure!(
                got.is_ok(),
                "{id} may not commit {tp:?}, which it holds or is handing off: {got:?}"
            );
        }
        if got.is_ok() {
            for (other, m) in &self.live {
                ensure!(
                    other == &id || !m.holds().any(|t| t == &tp),
                    "{id} committed {}/{} while {other} holds it",
                    tp.0,
                    tp.1
                );
            }
            self.coord.apply_commit(GROUP, &offsets);
            self.commits.insert(tp, offset);
        }
        Ok(())
    }

    /// A broker restart: members are not persisted, committed offsets are.
    fn restart(&mut self) -> Check {
        self.coord = Coordinator::new();
        let commits: Vec<(TopicPartition, i64)> = self
            .commits
            .iter()
            .map(|(tp, o)| (tp.clone(), *o))
            .collect();
        self.coord.apply_commit(GROUP, &commits);
        self.coord.topics_changed(&self.catalog);
        for tp in self.commits.keys() {
            ensure!(
                self.coord.committed(GROUP, tp) == self.commits.get(tp).copied(),
                "commit of {tp:?} not restored"
            );
        }
        let ids: Vec<String> = self.live.keys().cloned().collect();
        self.zombies.extend(ids);
        self.live.clear();
        // Generations start again; so does the record of hand-outs.
        self.handed.clear();
        self.now += self.rng.range(1, 3_000);
        self.stats.group_restarts += 1;
        self.trace.log("restart".into());
        Ok(())
    }

    /// Every live member heartbeats until the hand-offs are done; then every
    /// partition some member subscribes to is held, by exactly one member
    /// that matches it, and members with the same subscriptions hold
    /// numbers of partitions that differ by at most one.
    fn settle(&mut self) -> Check {
        self.trace.log("settle".into());
        for _round in 0..4 {
            let ids: Vec<String> = self.live.keys().cloned().collect();
            for id in ids {
                self.heartbeat(&id, false)?;
                self.check_exclusive()?;
            }
        }
        self.stats.group_settles += 1;
        let generation = self.generation();
        let mut held: BTreeMap<TopicPartition, String> = BTreeMap::new();
        for (id, m) in &self.live {
            ensure!(
                m.view.generation == generation,
                "{id} still at generation {} after settling ({generation})",
                m.view.generation
            );
            for (tp, _) in &m.view.partitions {
                held.insert(tp.clone(), id.clone());
            }
        }
        for tp in self.all_partitions() {
            let wanted = self
                .live
                .values()
                .any(|m| patterns(&m.patterns).iter().any(|p| p.matches(&tp.0)));
            ensure!(
                wanted == held.contains_key(&tp),
                "after settling {}/{} is {} though {} member subscribes to it",
                tp.0,
                tp.1,
                if held.contains_key(&tp) {
                    "held"
                } else {
                    "not held"
                },
                if wanted { "a" } else { "no" }
            );
        }
        let mut by_patterns: BTreeMap<Vec<&str>, Vec<usize>> = BTreeMap::new();
        for m in self.live.values() {
            let mut key = m.patterns.clone();
            key.sort();
            key.dedup();
            by_patterns
                .entry(key)
                .or_default()
                .push(m.view.partitions.len());
        }
        if by_patterns.len() == 1 {
            let counts = by_patterns.values().next().cloned().unwrap_or_default();
            let (lo, hi) = (counts.iter().min(), counts.iter().max());
            if let (Some(lo), Some(hi)) = (lo, hi) {
                ensure!(
                    hi - lo <= 1,
                    "members with the same subscriptions hold {counts:?} partitions: not balanced"
                );
            }
        }
        Ok(())
    }

    fn step(&mut self) -> Check {
        match self.rng.below(100) {
            0..=14 if self.live.len() < 6 => self.join()?,
            0..=39 => {
                let stale = self.rng.percent(20);
                let id = if !self.zombies.is_empty() && self.rng.percent(10) {
                    self.zombies[self.rng.index(self.zombies.len())].clone()
                } else if let Some(id) = self.live.keys().nth(self.rng.index(self.live.len())) {
                    id.clone()
                } else {
                    return Ok(());
                };
                self.heartbeat(&id, stale)?;
            }
            40..=46 => self.leave()?,
            47..=59 => {
                let deadlines: Vec<i64> = self
                    .live
                    .values()
                    .map(|m| m.deadline_ms)
                    .filter(|d| *d >= self.now)
                    .collect();
                let ms = match self.rng.below(10) {
                    // Exactly on a session deadline, or one past it: expiry
                    // boundaries are where off-by-ones live.
                    0..=1 if !deadlines.is_empty() => {
                        deadlines[self.rng.index(deadlines.len())] - self.now + self.rng.range(0, 1)
                    }
                    0..=6 => self.rng.range(1, 500),
                    _ => self.rng.range(1, 12_000),
                };
                self.now += ms;
                self.trace.log(format!("clock +{ms} ms"));
            }
            60..=67 => self.expire()?,
            68..=73 => self.topics(),
            74..=88 => self.commit()?,
            89..=90 => self.restart()?,
            _ => self.settle()?,
        }
        self.check_exclusive()
    }
}

fn group_seed(seed: u64, echo: bool, stats: &mut Stats) -> Result<(), (String, String)> {
    let mut sim = GroupSim::new(seed, echo);
    let mut result = Ok(());
    for step in 0..GROUP_STEPS {
        sim.trace.step = step;
        result = sim.step();
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        result = sim.settle();
    }
    sim.stats.group_steps = GROUP_STEPS as u64;
    add(stats, &sim.stats);
    result.map_err(|why| (why, sim.trace.dump()))
}

fn add(total: &mut Stats, s: &Stats) {
    macro_rules! sum {
        ($($f:ident),*) => { $( total.$f += s.$f; )* };
    }
    sum!(
        queue_steps,
        published,
        deliveries,
        redeliveries,
        acks,
        refused_receipts,
        nacks,
        extends,
        dead_letters,
        redriven,
        restarts,
        power_losses,
        records_lost,
        in_flight_at_crash,
        snapshots,
        retention_drops,
        key_blocked_checks,
        group_steps,
        group_views,
        group_settles,
        group_expired,
        group_restarts,
        commits_checked
    );
}

// ---- tests ----------------------------------------------------------------------

#[test]
fn queue_state_machine_matches_the_model_under_random_schedules() {
    let s = run_seeds("queue", queue_seed);
    if env_u64("SPOOL_SIM_SEED").is_none() {
        // Every kind of event must actually have happened, or the checks
        // above prove less than they claim.
        for (what, n) in [
            ("deliveries", s.deliveries),
            ("redeliveries", s.redeliveries),
            ("acks", s.acks),
            ("refused receipts", s.refused_receipts),
            ("nacks", s.nacks),
            ("extends", s.extends),
            ("dead letters", s.dead_letters),
            ("redriven", s.redriven),
            ("power losses", s.power_losses),
            ("records lost", s.records_lost),
            ("crashes with a request in flight", s.in_flight_at_crash),
            ("snapshots", s.snapshots),
            ("retention drops", s.retention_drops),
            ("ordering-key checks", s.key_blocked_checks),
        ] {
            assert!(n > 0, "the simulation never produced {what}: {s:?}");
        }
    }
}

#[test]
fn group_coordinator_matches_the_model_under_random_schedules() {
    let s = run_seeds("group", group_seed);
    if env_u64("SPOOL_SIM_SEED").is_none() {
        for (what, n) in [
            ("views", s.group_views),
            ("settles", s.group_settles),
            ("expiries", s.group_expired),
            ("restarts", s.group_restarts),
            ("commit checks", s.commits_checked),
        ] {
            assert!(n > 0, "the simulation never produced {what}: {s:?}");
        }
    }
}
