//! Queue subscriptions (work queues): competing consumers over a stored
//! topic, each message leased to one worker at a time and done only when
//! acknowledged. One [`Subscription`] per subscription; each partition has its
//! own lock and its own [`state::PartitionQueue`], so leasing and acking on
//! different partitions never contend. Acks, leases and retries are recorded
//! in a per-subscription state log (our own [`Log`]) and replayed on open.
//!
//! Durability bound: an ack is as durable as the topic's messages. Under
//! `always` it is answered only after its state-log record is fdatasync'd;
//! under `interval` the record is written (page cache) before the answer and
//! fdatasync'd within the interval by housekeeping; under `never` the OS
//! writes it back. Either way a message whose ack was answered is never
//! delivered again after a process crash; after a power loss, only acks of
//! the last interval (or, under `never`, since the last writeback) can be
//! lost, and those messages are delivered again, never lost. A message whose
//! ack was in flight when the server died may be delivered once more. A
//! lease (and its delivery count) is written but not waited for, so after a
//! crash a delivery count may be one lower than it was.

mod read;
use read::{read_messages, RecentRead};
mod spec;
pub mod state;

pub use spec::{
    BackoffSpec, ModeSpec, SubscriptionKey, SubscriptionPatch, SubscriptionSpec,
    PUSH_IN_FLIGHT_DEFAULT, PUSH_IN_FLIGHT_MAX,
};

use crate::error::{BrokerError, Result};
use crate::records::{walk_records, Walk, WALK_READ_BYTES};
use bytes::Bytes;
use spool_batch::{BatchBuilder, NewRecord};
use spool_log::{Durability, Log, LogConfig};
use spool_types::ErrorCode;
use state::{Admit, Change, DeliveryMode, PartitionQueue, ReceiptError, Replay};
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Most messages a partition keeps admitted (ready, leased or awaiting
/// compaction) in memory; the log is scanned further as they finish.
pub const QUEUE_WINDOW_MESSAGES: usize = 10_000;
/// Bytes read from the log per scan step.
const SCAN_BYTES: usize = 512 * 1024;
/// State-log records between snapshots.
const SNAPSHOT_EVERY_RECORDS: u64 = 50_000;
pub use spool_types::headers::DELIVER_AT_HEADER;
pub use spool_types::limits::DELAY_MS_MAX;
pub use spool_types::limits::LEASE_MS_MAX;
pub use spool_types::limits::RECEIVE_MAX;

/// A leased message as handed to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedMessage {
    pub receipt: String,
    pub partition: u32,
    pub offset: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    pub timestamp_ms: i64,
    pub deliveries: u32,
    pub lease_deadline_ms: i64,
}

/// Longest receipt [`make_receipt`] writes: a u32, an i64 and a u64 in hex,
/// with two dashes.
const RECEIPT_BYTES_MAX: usize = 10 + 1 + 20 + 1 + 16;

/// A receipt names one lease: `partition-offset-lease` (lease in hex).
pub fn make_receipt(partition: u32, offset: i64, lease: u64) -> String {
    use std::fmt::Write;
    // Sized once: `format!` grew it step by step, a visible share of a
    // receive's cost (hundreds of receipts per receive).
    let mut receipt = String::with_capacity(RECEIPT_BYTES_MAX);
    let _ = write!(receipt, "{partition}-{offset}-{lease:x}");
    receipt
}

pub fn parse_receipt(receipt: &str) -> Option<(u32, i64, u64)> {
    let mut parts = receipt.splitn(3, '-');
    let p = parts.next()?.parse().ok()?;
    let o = parts.next()?.parse().ok()?;
    let l = u64::from_str_radix(parts.next()?, 16).ok()?;
    Some((p, o, l))
}

fn receipt_error(receipt: &str, e: ReceiptError) -> BrokerError {
    match e {
        ReceiptError::Unknown => BrokerError::new(ErrorCode::UnknownReceipt, format!("receipt {receipt:?} does not name a lease of this subscription")),
        ReceiptError::Expired => BrokerError::new(
            ErrorCode::LeaseExpired,
            format!("the lease behind receipt {receipt:?} expired (or the message was acknowledged or redelivered); nothing changed"),
        ),
    }
}

// State-log record encoding: one record per change, value =
// kind u8 | partition u32 | offset i64 | arg i64.
const REC_DELIVERED: u8 = 1;
const REC_DONE: u8 = 2;
const REC_RETRY: u8 = 3;
const REC_FLOOR: u8 = 4;
const REC_BYTES: usize = 1 + 4 + 8 + 8;

fn encode_change(partition: u32, change: &Change) -> [u8; REC_BYTES] {
    let (kind, offset, arg) = match *change {
        Change::Delivered { offset, deliveries } => (REC_DELIVERED, offset, deliveries as i64),
        Change::Done { offset } => (REC_DONE, offset, 0),
        Change::Retry {
            offset,
            not_before_ms,
        } => (REC_RETRY, offset, not_before_ms),
    };
    encode_record(kind, partition, offset, arg)
}

fn encode_record(kind: u8, partition: u32, offset: i64, arg: i64) -> [u8; REC_BYTES] {
    let mut out = [0u8; REC_BYTES];
    out[0] = kind;
    out[1..5].copy_from_slice(&partition.to_be_bytes());
    out[5..13].copy_from_slice(&offset.to_be_bytes());
    out[13..21].copy_from_slice(&arg.to_be_bytes());
    out
}

fn decode_record(v: &[u8]) -> Option<(u8, u32, i64, i64)> {
    if v.len() != REC_BYTES {
        return None;
    }
    let p = u32::from_be_bytes([v[1], v[2], v[3], v[4]]);
    let mut o = [0u8; 8];
    o.copy_from_slice(&v[5..13]);
    let mut a = [0u8; 8];
    a.copy_from_slice(&v[13..21]);
    Some((v[0], p, i64::from_be_bytes(o), i64::from_be_bytes(a)))
}

/// A state log and the offset below which it must be fdatasync'd before
/// acks written to it may be answered.
pub struct ToSync {
    pub log: Arc<Log>,
    pub next_offset: i64,
}

/// State changes per partition, to be written to the state log.
type ChangesByPartition = Vec<(u32, Vec<Change>)>;

/// One queue subscription at runtime.
pub struct Subscription {
    spec: Mutex<SubscriptionSpec>,
    partitions: Vec<Mutex<PartitionQueue>>,
    /// Per partition, the last bytes read from its log for a receive.
    recent: Vec<Mutex<Option<RecentRead>>>,
    state: Arc<Log>,
    next_lease: AtomicU64,
    rotate: AtomicUsize,
    records_since_snapshot: AtomicU64,
    /// When housekeeping last fdatasync'd the state log for an `interval`
    /// topic's acks.
    last_sync_ms: AtomicI64,
    pub redeliveries: AtomicU64,
    pub dead_letters: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a scanned record tells the queue.
fn admit_from(partition_log: &Log, from: i64) -> Result<(Vec<Admit>, i64)> {
    let read = partition_log.read(from, SCAN_BYTES)?;
    let mut out = Vec::new();
    for batch in spool_batch::split_batches(&read.bytes) {
        let batch = batch?;
        let h = spool_batch::BatchHeader::parse(batch)?;
        let mut iter = spool_batch::records(batch, &h);
        // The read starts at the batch holding `from`: pass over the records
        // before it without decoding them (record `k` has offset base + k).
        if h.base_offset < from {
            let skip = (from - h.base_offset).clamp(0, i64::from(h.record_count).max(0)) as usize;
            iter.skip_records(skip)?;
        }
        for r in iter {
            let r = r?;
            let offset = h.base_offset + r.offset_delta as i64;
            if offset < from {
                continue;
            }
            let ts = h.base_timestamp + r.timestamp_delta;
            let not_before_ms = r
                .header(DELIVER_AT_HEADER)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.trim().parse::<i64>().ok())
                .map(|at| at.min(ts.saturating_add(DELAY_MS_MAX)))
                .unwrap_or(0);
            let key = r.key.map(|k| {
                // FNV-1a: a cheap stable hash for per-key blocking.
                k.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ *b as u64).wrapping_mul(0x1000_0000_01b3)
                })
            });
            out.push(Admit {
                offset,
                key,
                not_before_ms,
            });
        }
    }
    Ok((out, read.next_offset.max(from)))
}

impl Subscription {
    /// Opens (or creates) the subscription's state in `dir`, replaying it.
    /// Also returns what recovering the state log repaired, if anything (a
    /// cut tail loses the acknowledgements in it: those messages are
    /// delivered again).
    pub fn open(
        dir: &Path,
        spec: SubscriptionSpec,
        partition_starts: &[i64],
        now_ms: i64,
    ) -> Result<(Subscription, Option<String>)> {
        let (state, report) = Log::open(
            dir,
            LogConfig {
                segment_bytes: 16 * 1024 * 1024,
                ..LogConfig::default()
            },
        )?;
        let mut replays: Vec<Replay> = partition_starts.iter().map(|_| Replay::new()).collect();
        let mut records = 0u64;
        let start = state.stats().start_offset;
        walk_records(&state, start, WALK_READ_BYTES, |at| {
            records += 1;
            let Some((kind, p, o, arg)) = at.record.value.and_then(decode_record) else {
                return Ok(Walk::Continue);
            };
            let Some(replay) = replays.get_mut(p as usize) else {
                return Ok(Walk::Continue);
            };
            match kind {
                REC_FLOOR => replay.floor(o),
                REC_DELIVERED => replay.change(&Change::Delivered {
                    offset: o,
                    deliveries: arg as u32,
                }),
                REC_DONE => replay.change(&Change::Done { offset: o }),
                REC_RETRY => replay.change(&Change::Retry {
                    offset: o,
                    not_before_ms: arg,
                }),
                _ => {}
            }
            Ok(Walk::Continue)
        })?;
        let partitions = replays
            .into_iter()
            .zip(partition_starts)
            .map(|(replay, start)| Mutex::new(replay.finish(*start)))
            .collect();
        let recent = (0..partition_starts.len())
            .map(|_| Mutex::new(None))
            .collect();
        let note = (!report.is_clean()).then(|| {
            format!(
                "subscription {}/{}: {report} (acknowledgements in a cut tail are lost: \
                 those messages will be delivered again)",
                spec.topic, spec.name
            )
        });
        let sub = Subscription {
            spec: Mutex::new(spec),
            partitions,
            recent,
            state: Arc::new(state),
            // Leases are unique across restarts: the counter starts from the clock.
            next_lease: AtomicU64::new((now_ms.max(0) as u64) << 16),
            rotate: AtomicUsize::new(0),
            records_since_snapshot: AtomicU64::new(records),
            last_sync_ms: AtomicI64::new(now_ms),
            redeliveries: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
        };
        Ok((sub, note))
    }

    pub fn spec(&self) -> SubscriptionSpec {
        lock(&self.spec).clone()
    }

    /// Descriptors its state log holds open.
    pub fn open_files(&self) -> usize {
        self.state.open_files()
    }

    pub fn mode(&self) -> ModeSpec {
        lock(&self.spec).mode
    }

    pub fn set_spec(&self, spec: SubscriptionSpec) {
        *lock(&self.spec) = spec;
    }

    /// Per-partition floors: everything below is done.
    pub fn floors(&self) -> Vec<i64> {
        self.partitions.iter().map(|p| lock(p).floor()).collect()
    }

    /// (outstanding admitted, leased) summed over partitions.
    pub fn counts(&self) -> (usize, usize) {
        self.partitions.iter().fold((0, 0), |(o, l), p| {
            let p = lock(p);
            (o + p.outstanding(), l + p.leased())
        })
    }

    /// Writes changes to the state log; waits for fdatasync when `durable`.
    fn persist(
        &self,
        partition: u32,
        changes: &[Change],
        durable: bool,
        now_ms: i64,
    ) -> Result<()> {
        if let Some(next_offset) = self.write_changes(partition, changes, now_ms)? {
            if durable {
                self.state.sync_to(next_offset)?;
            }
        }
        Ok(())
    }

    /// Writes changes to the state log (page cache); returns the offset after
    /// them, to sync to, or `None` if there were none.
    fn write_changes(
        &self,
        partition: u32,
        changes: &[Change],
        now_ms: i64,
    ) -> Result<Option<i64>> {
        if changes.is_empty() {
            return Ok(None);
        }
        let mut b = BatchBuilder::new();
        for c in changes {
            b.push(&NewRecord::value(
                encode_change(partition, c).to_vec(),
                now_ms,
            ))?;
        }
        let batch = b.finish()?;
        // Built just now, so well-formed: no second walk over its records
        // (the state log takes a batch per receive and per ack).
        let header = spool_batch::BatchHeader::parse(&batch)?;
        let (appended, _) = self.state.write_validated(&batch, header, now_ms)?;
        self.records_since_snapshot
            .fetch_add(changes.len() as u64, Ordering::Relaxed);
        Ok(Some(appended.next_offset()))
    }

    /// Leases up to `max` messages across partitions, reading their contents.
    pub fn receive(
        &self,
        logs: &[Arc<Log>],
        max: usize,
        now_ms: i64,
    ) -> Result<Vec<LeasedMessage>> {
        let max = max.clamp(1, RECEIVE_MAX);
        let spec = self.spec();
        let rules = spec.rules();
        let n = self.partitions.len().min(logs.len());
        let first = self.rotate.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::new();
        for i in 0..n {
            if out.len() >= max {
                break;
            }
            let p = (first + i) % n;
            let log = &logs[p];
            let (leases, changes) = {
                let mut q = lock(&self.partitions[p]);
                let start = log.stats().start_offset;
                q.skip_to(start);
                let end = log.stats().end_offset;
                while q.outstanding() < QUEUE_WINDOW_MESSAGES && q.scanned() < end {
                    let (admits, next) = admit_from(log, q.scanned())?;
                    if next <= q.scanned() {
                        break;
                    }
                    q.admit(admits, next);
                }
                let mut changes = Vec::new();
                let mut next = self.next_lease.load(Ordering::Relaxed);
                let leases = q.lease(max - out.len(), now_ms, &rules, &mut next, &mut changes);
                self.next_lease.fetch_max(next, Ordering::Relaxed);
                (leases, changes)
            };
            if leases.is_empty() && changes.is_empty() {
                continue;
            }
            // At-most-once hands out only what is durably marked done.
            self.persist(
                p as u32,
                &changes,
                rules.mode == DeliveryMode::AtMostOnce,
                now_ms,
            )?;
            let redelivered = leases.iter().filter(|l| l.deliveries > 1).count() as u64;
            self.redeliveries.fetch_add(redelivered, Ordering::Relaxed);
            out.extend(read_messages(log, &self.recent[p], p as u32, &leases)?);
        }
        Ok(out)
    }

    /// The deadline of the lease a receipt names, if that lease is current
    /// (extensions included).
    pub fn lease_deadline(&self, receipt: &str) -> Option<i64> {
        let (p, offset, lease) = parse_receipt(receipt)?;
        lock(self.partitions.get(p as usize)?).lease_deadline(offset, lease)
    }

    /// Applies `f` to the lease each receipt names, locking each partition
    /// once per request rather than once per receipt (workers acking and
    /// receiving contended on those locks); within a partition in request
    /// order. Returns one result per receipt, in request order, and the
    /// state changes `f` made, per partition, for the state log.
    fn settle<T>(
        &self,
        receipts: &[String],
        mut f: impl FnMut(
            &mut PartitionQueue,
            i64,
            u64,
            &mut Vec<Change>,
        ) -> std::result::Result<T, ReceiptError>,
    ) -> (Vec<Result<T>>, ChangesByPartition) {
        let unknown = |r: &String| Err(receipt_error(r, ReceiptError::Unknown));
        let mut results: Vec<Option<Result<T>>> = Vec::with_capacity(receipts.len());
        // (partition, index, offset, lease)
        let mut parsed = Vec::with_capacity(receipts.len());
        for (i, r) in receipts.iter().enumerate() {
            match parse_receipt(r) {
                Some((p, offset, lease)) if (p as usize) < self.partitions.len() => {
                    parsed.push((p, i, offset, lease));
                    results.push(None);
                }
                _ => results.push(Some(unknown(r))),
            }
        }
        // Stable: a partition's receipts keep their request order.
        parsed.sort_by_key(|&(p, ..)| p);
        let mut changed = Vec::new();
        for group in parsed.chunk_by(|a, b| a.0 == b.0) {
            let p = group[0].0;
            let mut changes = Vec::new();
            {
                let mut q = lock(&self.partitions[p as usize]);
                for &(_, i, offset, lease) in group {
                    let result = f(&mut q, offset, lease, &mut changes);
                    results[i] = Some(result.map_err(|e| receipt_error(&receipts[i], e)));
                }
            }
            if !changes.is_empty() {
                changed.push((p, changes));
            }
        }
        // Every slot was filled above; `unknown` only keeps this total.
        let results = results
            .into_iter()
            .zip(receipts)
            .map(|(r, receipt)| r.unwrap_or_else(|| unknown(receipt)))
            .collect();
        (results, changed)
    }

    /// Acknowledges each receipt; returns once the acks are as durable as
    /// `durability` (the topic's) promises, with one result per receipt (a
    /// bad receipt does not fail the others).
    pub fn ack(
        &self,
        receipts: &[String],
        durability: Durability,
        now_ms: i64,
    ) -> Result<Vec<Result<()>>> {
        let (results, sync) = self.start_ack(receipts, durability, now_ms)?;
        if let Some(ToSync { log, next_offset }) = sync {
            log.sync_to(next_offset)?;
        }
        Ok(results)
    }

    /// [`Subscription::ack`] up to the wait: applies the acks and writes their
    /// records (page cache). Also returns what must be fdatasync'd before
    /// answering, under `always`, so that a caller can wait elsewhere.
    pub fn start_ack(
        &self,
        receipts: &[String],
        durability: Durability,
        now_ms: i64,
    ) -> Result<(Vec<Result<()>>, Option<ToSync>)> {
        if self.spec().mode == ModeSpec::AtMostOnce {
            // Handed out as done already: acking is a harmless no-op.
            let results = receipts
                .iter()
                .map(|r| match parse_receipt(r) {
                    Some((p, _, _)) if (p as usize) < self.partitions.len() => Ok(()),
                    _ => Err(receipt_error(r, ReceiptError::Unknown)),
                })
                .collect();
            return Ok((results, None));
        }
        let (results, changed) = self.settle(receipts, |q, offset, lease, changes| {
            q.ack(offset, lease, now_ms, changes)
        });
        let mut written_to = None;
        for (p, changes) in &changed {
            written_to = self.write_changes(*p, changes, now_ms)?.or(written_to);
        }
        // One fdatasync covers every partition's records (same log).
        let sync = match (written_to, durability) {
            (Some(next_offset), Durability::Always) => Some(ToSync {
                log: Arc::clone(&self.state),
                next_offset,
            }),
            _ => None,
        };
        Ok((results, sync))
    }

    pub fn nack(
        &self,
        receipts: &[String],
        delay_ms: u64,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<Vec<Result<()>>> {
        let rules = self.spec().rules();
        let delay_ms = delay_ms.min(DELAY_MS_MAX as u64);
        let (results, changed) = self.settle(receipts, |q, offset, lease, changes| {
            q.nack(
                offset,
                lease,
                delay_ms,
                error.map(str::to_owned),
                now_ms,
                &rules,
                changes,
            )
        });
        for (p, changes) in &changed {
            self.persist(*p, changes, false, now_ms)?;
        }
        Ok(results)
    }

    /// Extends leases to `now + extend_ms`; returns the new deadlines.
    pub fn extend(&self, receipts: &[String], extend_ms: u64, now_ms: i64) -> Vec<Result<i64>> {
        let extend_ms = extend_ms.clamp(1, LEASE_MS_MAX);
        self.settle(receipts, |q, offset, lease, _| {
            q.extend(offset, lease, extend_ms, now_ms)
        })
        .0
    }

    /// Expires leases and returns dead letters to copy, per partition; under
    /// `interval` (the topic's `durability`), fdatasyncs acks once due.
    pub fn housekeeping(
        &self,
        durability: Durability,
        now_ms: i64,
    ) -> Result<Vec<(u32, state::DeadLetter)>> {
        // First, so that an error below cannot hold back acks already
        // answered.
        if let Durability::Interval { interval_ms } = durability {
            let next = self.state.stats().next_offset;
            let since_ms = now_ms - self.last_sync_ms.load(Ordering::Relaxed);
            if since_ms >= interval_ms as i64 && !self.state.is_durable_to(next) {
                self.last_sync_ms.store(now_ms, Ordering::Relaxed);
                self.state.sync_to(next)?;
            }
        }
        let rules = self.spec().rules();
        let mut dead = Vec::new();
        for (p, q) in self.partitions.iter().enumerate() {
            let mut changes = Vec::new();
            let letters = {
                let mut q = lock(q);
                q.expire(now_ms, &rules, &mut changes);
                q.dead_letters()
            };
            self.persist(p as u32, &changes, false, now_ms)?;
            dead.extend(letters.into_iter().map(|d| (p as u32, d)));
        }
        Ok(dead)
    }

    /// Marks a dead letter done after its copy (and event) are durable.
    pub fn dead_lettered(&self, partition: u32, offset: i64, now_ms: i64) -> Result<()> {
        let mut changes = Vec::new();
        if let Some(q) = self.partitions.get(partition as usize) {
            lock(q).dead_lettered(offset, &mut changes);
        }
        self.dead_letters.fetch_add(1, Ordering::Relaxed);
        self.persist(partition, &changes, true, now_ms)
    }

    /// The soonest time a delayed or backed-off message becomes ready or a
    /// lease expires, so a long poll knows when to look again.
    pub fn next_wakeup(&self) -> Option<i64> {
        self.partitions
            .iter()
            .filter_map(|q| lock(q).next_wakeup())
            .min()
    }

    /// Rewrites the state log as one snapshot when it has grown.
    pub fn maybe_snapshot(&self, now_ms: i64) -> Result<()> {
        if self.records_since_snapshot.load(Ordering::Relaxed) < SNAPSHOT_EVERY_RECORDS {
            return Ok(());
        }
        let start = self.state.stats().next_offset;
        let mut b = BatchBuilder::new();
        let mut count = 0usize;
        for (p, q) in self.partitions.iter().enumerate() {
            let (floor, facts) = {
                let q = lock(q);
                (q.floor(), q.snapshot())
            };
            let records = std::iter::once(encode_record(REC_FLOOR, p as u32, floor, 0))
                .chain(facts.iter().map(|c| encode_change(p as u32, c)));
            for record in records {
                if count >= spool_types::limits::BATCH_RECORDS_MAX {
                    let batch = std::mem::take(&mut b).finish()?;
                    self.state.write(&batch, now_ms)?;
                    count = 0;
                }
                b.push(&NewRecord::value(record.to_vec(), now_ms))?;
                count += 1;
            }
        }
        if !b.is_empty() {
            let batch = b.finish()?;
            self.state.write(&batch, now_ms)?;
        }
        // Written, then synced once: with `append` (a group commit) acks
        // and receives writing meanwhile on the server's async threads
        // waited for each of the snapshot's fdatasyncs.
        self.state.sync_to(self.state.stats().next_offset)?;
        self.state.advance_start_offset(start)?;
        self.records_since_snapshot.store(0, Ordering::Relaxed);
        Ok(())
    }

    pub fn flush(&self) -> Result<()> {
        Ok(self.state.flush()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A topic partition of `n` messages and a subscription over it.
    fn setup(dir: &Path, n: usize) -> (Vec<Arc<Log>>, Subscription) {
        let (log, _) = Log::open(&dir.join("p0"), LogConfig::default()).unwrap();
        let mut b = BatchBuilder::new();
        for i in 0..n {
            b.push(&NewRecord::value(format!("m{i}").into_bytes(), 1))
                .unwrap();
        }
        log.write_durable(&b.finish().unwrap(), 1).unwrap();
        let (sub, _) =
            Subscription::open(&dir.join("sub"), SubscriptionSpec::new("t", "w"), &[0], 1).unwrap();
        (vec![Arc::new(log)], sub)
    }

    fn acks_are_durable(sub: &Subscription) -> bool {
        sub.state.is_durable_to(sub.state.stats().next_offset)
    }

    #[test]
    fn acks_are_as_durable_as_the_topic() {
        let dir = tempfile::tempdir().unwrap();
        let (logs, sub) = setup(dir.path(), 10);
        let receipts = |got: Vec<LeasedMessage>| -> Vec<String> {
            got.into_iter().map(|m| m.receipt).collect()
        };

        // `always`: fdatasync'd before the answer.
        let first = receipts(sub.receive(&logs, 2, 10).unwrap());
        let done = sub.ack(&first, Durability::Always, 10).unwrap();
        assert!(done.iter().all(Result::is_ok));
        assert!(acks_are_durable(&sub));

        // `interval`: written, not yet synced; housekeeping syncs once the
        // interval since the last sync has passed.
        let interval = Durability::Interval { interval_ms: 1000 };
        let second = receipts(sub.receive(&logs, 2, 20).unwrap());
        let done = sub.ack(&second, interval, 20).unwrap();
        assert!(done.iter().all(Result::is_ok));
        assert!(!acks_are_durable(&sub));
        sub.housekeeping(interval, 500).unwrap();
        assert!(!acks_are_durable(&sub));
        sub.housekeeping(interval, 1001).unwrap();
        assert!(acks_are_durable(&sub));

        // `never`: left to the OS, even by housekeeping.
        let third = receipts(sub.receive(&logs, 2, 30).unwrap());
        sub.ack(&third, Durability::Never, 30).unwrap();
        sub.housekeeping(Durability::Never, 1_000_000).unwrap();
        assert!(!acks_are_durable(&sub));

        // Acknowledged messages are done whatever the durability: the
        // remaining four are the only ones handed out again.
        let rest = sub.receive(&logs, 100, 40).unwrap();
        let offsets: Vec<i64> = rest.iter().map(|m| m.offset).collect();
        assert_eq!(offsets, vec![6, 7, 8, 9]);
    }

    #[test]
    fn one_request_acks_many_receipts_and_reports_each_one() {
        let dir = tempfile::tempdir().unwrap();
        let (logs, sub) = setup(dir.path(), 3);
        let got = sub.receive(&logs, 3, 10).unwrap();
        let receipts = vec![
            got[2].receipt.clone(),
            "garbage".to_owned(),
            got[0].receipt.clone(),
            make_receipt(7, 0, 1),  // no partition 7
            got[0].receipt.clone(), // acked just before, in this request
            got[1].receipt.clone(),
        ];
        let results = sub.ack(&receipts, Durability::Always, 11).unwrap();
        let codes: Vec<Option<ErrorCode>> = results
            .iter()
            .map(|r| r.as_ref().err().map(|e| e.code))
            .collect();
        assert_eq!(
            codes,
            vec![
                None,
                Some(ErrorCode::UnknownReceipt),
                None,
                Some(ErrorCode::UnknownReceipt),
                Some(ErrorCode::LeaseExpired),
                None,
            ]
        );
        assert!(sub.receive(&logs, 10, 12).unwrap().is_empty());
    }

    /// Receives that go on where the last one stopped in a batch (resumed
    /// decoding) and one that goes back (a nacked message) all get the
    /// contents of their own offsets.
    #[test]
    fn small_receives_over_one_batch_get_their_own_messages() {
        let dir = tempfile::tempdir().unwrap();
        let (logs, sub) = setup(dir.path(), 40);
        let value =
            |m: &LeasedMessage| String::from_utf8(m.value.as_deref().unwrap().to_vec()).unwrap();
        let first = sub.receive(&logs, 7, 10).unwrap();
        let second = sub.receive(&logs, 7, 10).unwrap();
        for m in first.iter().chain(&second) {
            assert_eq!(value(m), format!("m{}", m.offset));
        }
        assert_eq!(second[0].offset, 7);
        // Back to offset 2, behind where decoding stopped.
        sub.nack(&[first[2].receipt.clone()], 0, None, 11).unwrap();
        let mut seen = vec![];
        loop {
            let got = sub.receive(&logs, 5, 12).unwrap();
            if got.is_empty() {
                break;
            }
            for m in &got {
                assert_eq!(value(m), format!("m{}", m.offset));
                seen.push(m.offset);
            }
        }
        seen.sort_unstable();
        let expected: Vec<i64> = std::iter::once(2).chain(14..40).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn receipts_parse_back_at_their_longest() {
        let receipt = make_receipt(u32::MAX, i64::MIN, u64::MAX);
        assert_eq!(receipt.len(), RECEIPT_BYTES_MAX);
        // A negative offset is never handed out; the longest real one is.
        let receipt = make_receipt(u32::MAX, i64::MAX, u64::MAX);
        assert_eq!(
            parse_receipt(&receipt),
            Some((u32::MAX, i64::MAX, u64::MAX))
        );
    }
}
