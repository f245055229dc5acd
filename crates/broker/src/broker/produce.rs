//! Produce: validation, duplicate suppression, back pressure (`make_room`,
//! `drop_oldest`, work-queue release) and the wait for durability.

use super::*;
use crate::config::{OnFull, Retention, TopicConfig};
use crate::error::{BrokerError, Result};
use spool_log::{Appended, Log, LogError, SyncDone};
use spool_types::headers::{is_server_only, CLIENT_SET_HEADERS};
use spool_types::partitioner::partition_for_key;
use spool_types::ErrorCode;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// A batch written to the OS but perhaps not yet durable; finish it with
/// [`Broker::finish_produce`] (which may block on fdatasync).
pub struct PendingProduce {
    pub topic: Arc<Topic>,
    pub partition: u32,
    pub appended: Appended,
    pub must_sync: bool,
    /// See [`Produced::placed`].
    pub placed: Option<Vec<(u32, i64)>>,
    /// See [`Produced::duplicates`].
    pub duplicates: Option<Vec<bool>>,
}

/// The answer to a produce: where the batch landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produced {
    pub partition: u32,
    pub base_offset: i64,
    pub last_offset: i64,
    /// When duplicates were suppressed (`spool-msg-id`): where each record
    /// of the batch is, in batch order, (partition, offset). The range above
    /// then names only the new records, or the originals if they are
    /// consecutive, so it cannot be read as "record i is at base + i".
    pub placed: Option<Vec<(u32, i64)>>,
    /// With `placed`: which records of the batch, in batch order, were
    /// suppressed duplicates (stored before, not stored again).
    pub duplicates: Option<Vec<bool>>,
}

/// What must be on disk before a produce is acknowledged: the batch's own
/// partition to its end, and the partitions holding the originals of any
/// suppressed duplicates (unkeyed batches are spread), which may still be on
/// their way to disk.
pub(super) fn sync_targets(pending: &PendingProduce) -> Vec<(Arc<Log>, i64)> {
    let mut ends: BTreeMap<u32, i64> = BTreeMap::new();
    ends.insert(pending.partition, pending.appended.next_offset());
    for &(p, o) in pending.placed.iter().flatten() {
        let end = ends.entry(p).or_default();
        *end = (*end).max(o + 1);
    }
    ends.into_iter()
        .filter_map(|(p, end)| Some((Arc::clone(pending.topic.partitions.get(p as usize)?), end)))
        .collect()
}

/// Several partitions synced for one produce: the last to finish answers.
pub(super) struct SyncJoin {
    remaining: usize,
    error: Option<LogError>,
    finish: Option<SyncDone>,
}

impl SyncJoin {
    pub(super) fn arrive(join: &Mutex<SyncJoin>, result: std::result::Result<(), LogError>) {
        let finish = {
            let mut j = lock(join);
            if let Err(e) = result {
                j.error.get_or_insert(e);
            }
            j.remaining -= 1;
            if j.remaining > 0 {
                return;
            }
            j.finish.take().map(|f| (f, j.error.take()))
        };
        if let Some((finish, error)) = finish {
            finish(error.map_or(Ok(()), Err));
        }
    }
}

/// Who writes a batch: a client, held to the rules for clients, or the
/// broker itself (dead-letter copies, redrive, request payloads, events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Writer {
    /// Refused system topics (`spool.…`) and server-only `spool-` headers.
    Client,
    /// A client whose batches were admitted together, under the topic's
    /// admission lock its caller holds (see [`Broker::produce_together`]).
    ClientAdmitted,
    Server,
}

impl Writer {
    fn is_client(self) -> bool {
        self != Writer::Server
    }
}

/// Refuses a client's write to a system topic: the server alone writes
/// them (a client writing `spool.errors` could forge side-channel events).
fn check_client_topic(topic: &str) -> Result<()> {
    if topic.starts_with(spool_types::names::SYSTEM_TOPIC_PREFIX) {
        return Err(BrokerError::new(
            ErrorCode::ReservedTopicName,
            format!("topic {topic:?} is written by the server only (names beginning \"spool.\" are reserved)"),
        ));
    }
    Ok(())
}

/// The first header of `r` only the server may set, if any.
fn server_only_header(r: &spool_batch::Record<'_>) -> Option<String> {
    let name = r.headers.iter().map(|h| h.key).find(|k| is_server_only(k));
    name.map(str::to_owned)
}

fn refuse_forged(forged: Option<String>) -> Result<()> {
    match forged {
        None => Ok(()),
        Some(name) => Err(BrokerError::new(
            ErrorCode::ReservedHeader,
            format!("header {name:?} is set by the server only; producers may set {CLIENT_SET_HEADERS:?} of the \"spool-\" headers"),
        )),
    }
}

/// The partition a batch for `t` goes to.
fn route(t: &Topic, routing: &Routing) -> Result<u32> {
    let n = t.partitions.len() as u32;
    Ok(match routing {
        Routing::Partition(p) if *p < n => *p,
        Routing::Partition(p) => {
            return Err(BrokerError::new(
                ErrorCode::UnknownPartition,
                format!(
                    "topic {:?} has {n} partition(s); there is no partition {p}",
                    t.name
                ),
            ))
        }
        Routing::Key(key) => partition_for_key(key, n),
        Routing::Spread => t.spread.fetch_add(1, Ordering::Relaxed) % n,
    })
}

impl Broker {
    /// Checks a client's batch for a replicated topic as
    /// [`Broker::start_produce`] checks one (system topics, server-only
    /// headers, the batch itself) and picks its partition, for the
    /// replication layer to propose it there. (Message-ID duplicate
    /// suppression and `max_messages`/`max_bytes` admission are
    /// single-node features for now: docs/cluster.md.)
    pub fn check_replicated_produce(
        &self,
        topic: &str,
        routing: &Routing,
        batch: &[u8],
    ) -> Result<u32> {
        check_client_topic(topic)?;
        let t = self.topic(topic)?;
        let mut forged: Option<String> = None;
        spool_batch::validate_each(batch, |r| {
            if forged.is_none() {
                forged = server_only_header(r);
            }
        })?;
        refuse_forged(forged)?;
        route(&t, routing)
    }

    /// Tells waiters that a replicated partition's committed end moved (the
    /// replication layer applied an entry).
    pub fn replicated_appended(&self, topic: &str, partition: u32) {
        if let Some(l) = self.listener() {
            l.appended(topic, partition);
        }
    }

    /// Validates and writes a client's batch; the result must be finished
    /// with [`Broker::finish_produce`] before it is acknowledged.
    pub fn start_produce(
        &self,
        topic: &str,
        routing: &Routing,
        batch: &[u8],
        now_ms: i64,
    ) -> Result<PendingProduce> {
        self.write_batch(topic, routing, batch, Writer::Client, now_ms)
    }

    /// Validates and writes a batch for `writer`: see [`Broker::start_produce`].
    pub(super) fn write_batch(
        &self,
        topic: &str,
        routing: &Routing,
        batch: &[u8],
        writer: Writer,
        now_ms: i64,
    ) -> Result<PendingProduce> {
        if writer.is_client() {
            check_client_topic(topic)?;
        }
        let t = self.topic(topic)?;
        // Message IDs, if the producer gave any, for duplicate suppression,
        // and a client's server-only header, if any: read in the validating
        // walk over the records.
        let mut ids: Vec<Option<Vec<u8>>> = Vec::new();
        let mut forged: Option<String> = None;
        let header = spool_batch::validate_each(batch, |r| {
            ids.push(r.header(MESSAGE_ID_HEADER).map(<[u8]>::to_vec));
            if writer.is_client() && forged.is_none() {
                forged = server_only_header(r);
            }
        })?;
        refuse_forged(forged)?;
        if t.replicated {
            return Err(BrokerError::new(
                ErrorCode::Internal,
                format!(
                    "topic {topic:?} is replicated: its batches are written through the cluster"
                ),
            ));
        }
        let partition = route(&t, routing)?;
        let log = Arc::clone(&t.partitions[partition as usize]);
        let config = t.config();
        let limited = config.max_messages.is_some() || config.max_bytes.is_some();
        let dedup = ids.iter().any(Option::is_some);
        let mut dedup_guard = dedup.then(|| lock(&t.dedup));
        let mut rebuilt: Option<Vec<u8>> = None;
        // Per record of the batch: where its original is, if it has one.
        let mut originals: Vec<Option<(u32, i64)>> = Vec::new();
        // The IDs of the records actually written (all of them unless some
        // were duplicates and the batch is rebuilt without them).
        let mut kept_ids: Vec<Option<Vec<u8>>> = Vec::new();
        if let Some(d) = dedup_guard.as_mut() {
            d.purge(now_ms);
            let known: Vec<Option<(u32, i64)>> = ids
                .iter()
                .map(|id| id.as_ref().and_then(|id| d.ids.get(id).copied()))
                .collect();
            if known.iter().all(Option::is_some) {
                // Every message was stored before: answer with the originals.
                let placed: Vec<(u32, i64)> = known.iter().flatten().copied().collect();
                let first = placed.first().copied().unwrap_or((partition, 0));
                // The range claims "record i is at first + i" only when that
                // is true; otherwise it names the first original alone, so a
                // client sees the count differ from its batch's and asks again
                // in parts (docs/protocol.md, `spool-msg-id`).
                let consecutive = placed
                    .iter()
                    .enumerate()
                    .all(|(i, &(p, o))| p == first.0 && o == first.1 + i as i64);
                let last = if consecutive {
                    placed.last().map_or(first.1, |l| l.1)
                } else {
                    first.1
                };
                // The originals may still be on their way to disk.
                let must_sync = placed.iter().any(|&(p, o)| {
                    t.partitions
                        .get(p as usize)
                        .is_some_and(|log| log.stats().durable_offset <= o)
                });
                let pending = PendingProduce {
                    topic: Arc::clone(&t),
                    partition: first.0,
                    appended: Appended {
                        base_offset: first.1,
                        last_offset: last,
                    },
                    must_sync,
                    duplicates: Some(vec![true; placed.len()]),
                    placed: Some(placed),
                };
                return Ok(pending);
            }
            if known.iter().any(Option::is_some) {
                // Some were stored before: store only the new ones.
                let mut b = spool_batch::BatchBuilder::new();
                for (r, (id, k)) in spool_batch::records(batch, &header).zip(ids.iter().zip(&known))
                {
                    let r = r?;
                    if k.is_some() {
                        continue;
                    }
                    let timestamp_ms = header.base_timestamp + r.timestamp_delta;
                    b.push(&spool_batch::NewRecord::copy_of(&r, timestamp_ms))?;
                    kept_ids.push(id.clone());
                }
                rebuilt = Some(b.finish()?);
                originals = known;
            }
        }
        if rebuilt.is_none() {
            kept_ids = ids;
        }
        // The producer's batch was validated above; a rebuilt one is new.
        let validated = rebuilt.is_none();
        let batch: &[u8] = rebuilt.as_deref().unwrap_or(batch);
        let records = kept_ids.len() as u64;
        let admit_here = limited && writer != Writer::ClientAdmitted;
        let (appended, must_sync) = {
            let _admit = admit_here.then(|| lock(&t.admit));
            if admit_here {
                self.make_room(&t, &config, records, batch.len() as u64)?;
            }
            let written = if validated {
                log.write_validated(batch, header, now_ms)?
            } else {
                log.write(batch, now_ms)?
            };
            if limited && config.on_full == OnFull::DropOldest {
                self.drop_oldest(&t, &config, &log)?;
            }
            written
        };
        if let Some(d) = dedup_guard.as_mut() {
            let expires = now_ms + config.dedup_window_ms as i64;
            for (i, id) in kept_ids.iter().enumerate() {
                if let Some(id) = id {
                    d.insert(id, partition, appended.base_offset + i as i64, expires);
                }
            }
        }
        drop(dedup_guard);
        // Some records were duplicates: say where every record is, the new
        // ones in order after the base offset.
        let placed = (!originals.is_empty()).then(|| {
            let mut next = appended.base_offset;
            originals
                .iter()
                .map(|o| {
                    o.unwrap_or_else(|| {
                        next += 1;
                        (partition, next - 1)
                    })
                })
                .collect()
        });
        let duplicates = placed
            .is_some()
            .then(|| originals.iter().map(Option::is_some).collect());
        Ok(PendingProduce {
            topic: t,
            partition,
            appended,
            must_sync,
            placed,
            duplicates,
        })
    }

    /// Waits until the batch is as durable as the topic promises (shared
    /// fdatasync under `always`) and announces it to readers. Blocking.
    pub fn finish_produce(&self, pending: PendingProduce) -> Result<Produced> {
        if pending.must_sync {
            for (log, end) in sync_targets(&pending) {
                log.sync_to(end)?;
            }
        }
        self.announce_produced(pending)
    }

    /// [`Broker::finish_produce`] without blocking: `done` runs once the
    /// batch is as durable as the topic promises — at once on this thread
    /// when nothing needs syncing, otherwise on a sync thread shared by every
    /// partition (so thousands of produces in flight park no thread each).
    /// `done` must be short: wake a task or send on a channel.
    pub fn finish_produce_then(
        &self,
        pending: PendingProduce,
        done: Box<dyn FnOnce(Result<Produced>) + Send>,
    ) {
        if !pending.must_sync {
            done(self.announce_produced(pending));
            return;
        }
        let logs = sync_targets(&pending);
        let listener = self.listener();
        let join = Arc::new(Mutex::new(SyncJoin {
            remaining: logs.len(),
            error: None,
            finish: Some(Box::new(
                move |result: std::result::Result<(), LogError>| {
                    done(
                        result
                            .map_err(BrokerError::from)
                            .map(|()| Broker::announce(listener.as_deref(), pending)),
                    )
                },
            )),
        }));
        for (log, end) in logs {
            let join = Arc::clone(&join);
            self.syncer
                .sync(&log, end, Box::new(move |r| SyncJoin::arrive(&join, r)));
        }
    }

    /// Tells readers and metrics about a durable produce; its answer.
    pub(super) fn announce_produced(&self, pending: PendingProduce) -> Result<Produced> {
        Ok(Broker::announce(self.listener().as_deref(), pending))
    }

    pub(super) fn announce(
        listener: Option<&dyn AppendListener>,
        pending: PendingProduce,
    ) -> Produced {
        if let Some(l) = listener {
            l.appended(&pending.topic.name, pending.partition);
        }
        let records =
            (pending.appended.last_offset - pending.appended.base_offset + 1).max(0) as u64;
        metrics::counter!("spool_messages_published_total", "topic" => pending.topic.name.clone())
            .increment(records);
        Produced {
            partition: pending.partition,
            base_offset: pending.appended.base_offset,
            last_offset: pending.appended.last_offset,
            placed: pending.placed,
            duplicates: pending.duplicates,
        }
    }

    /// A client's produce in one blocking call.
    pub fn produce(
        &self,
        topic: &str,
        routing: &Routing,
        batch: &[u8],
        now_ms: i64,
    ) -> Result<Produced> {
        let pending = self.start_produce(topic, routing, batch, now_ms)?;
        self.finish_produce(pending)
    }

    /// A client's batches for several partitions of one topic, all or
    /// nothing as far as the client can cause: every batch is validated and
    /// every partition checked, and room is made for all of them at once,
    /// before any is written — so a full topic, an unknown partition or a
    /// bad record refuses the whole request and a retry stores nothing
    /// twice. (A storage failure between two writes can still leave the
    /// first; it is reported.) Blocking; one answer per batch.
    pub fn produce_together(
        &self,
        topic: &str,
        batches: &[(Routing, Vec<u8>)],
        now_ms: i64,
    ) -> Result<Vec<Produced>> {
        check_client_topic(topic)?;
        let t = self.topic(topic)?;
        let n = t.partitions.len() as u32;
        let (mut records, mut bytes) = (0u64, 0u64);
        for (routing, batch) in batches {
            if let Routing::Partition(p) = routing {
                if *p >= n {
                    return Err(BrokerError::new(
                        ErrorCode::UnknownPartition,
                        format!("topic {topic:?} has {n} partition(s); there is no partition {p}; nothing was stored"),
                    ));
                }
            }
            let mut forged = None;
            let header = spool_batch::validate_each(batch, |r| {
                forged = forged.take().or_else(|| server_only_header(r));
            })?;
            refuse_forged(forged)?;
            records += header.record_count as u64;
            bytes += batch.len() as u64;
        }
        let config = t.config();
        let limited = config.max_messages.is_some() || config.max_bytes.is_some();
        let _admit = limited.then(|| lock(&t.admit));
        if limited {
            self.make_room(&t, &config, records, bytes)?;
        }
        let mut out = Vec::with_capacity(batches.len());
        for (routing, batch) in batches {
            let pending =
                self.write_batch(topic, routing, batch, Writer::ClientAdmitted, now_ms)?;
            out.push(pending);
        }
        drop(_admit);
        out.into_iter().map(|p| self.finish_produce(p)).collect()
    }

    /// A produce for `writer` in one blocking call: the broker's own
    /// (`Writer::Server`: system topics and server headers allowed).
    pub(super) fn produce_as(
        &self,
        writer: Writer,
        (topic, routing, batch): (&str, &Routing, &[u8]),
        now_ms: i64,
    ) -> Result<Produced> {
        let pending = self.write_batch(topic, routing, batch, writer, now_ms)?;
        self.finish_produce(pending)
    }

    /// Back pressure: refuses (`reject`) or makes space (`drop_oldest`) so the
    /// topic stays within its limits after this batch.
    pub(super) fn make_room(
        &self,
        t: &Topic,
        config: &TopicConfig,
        records: u64,
        bytes: u64,
    ) -> Result<()> {
        let over = |t: &Topic| {
            let (m, b) = t.depth();
            let m_over = config
                .max_messages
                .map_or(0, |max| (m + records).saturating_sub(max));
            let b_over = config
                .max_bytes
                .map_or(0, |max| (b + bytes).saturating_sub(max));
            (m_over, b_over)
        };
        let (mut m_over, mut b_over) = over(t);
        if (m_over > 0 || b_over > 0) && config.retention == Retention::WorkQueue {
            self.release_consumed(t)?;
            (m_over, b_over) = over(t);
        }
        if m_over == 0 && b_over == 0 {
            return Ok(());
        }
        match config.on_full {
            OnFull::Reject => {
                metrics::counter!("spool_queue_full_rejections_total", "topic" => t.name.clone())
                    .increment(1);
                let (m, b) = t.depth();
                Err(BrokerError::new(
                    ErrorCode::QueueFull,
                    format!(
                        "topic {:?} is full ({m} messages, {b} bytes; limits {} messages, {} bytes); retry later",
                        t.name,
                        config.max_messages.map_or("none".into(), |v| v.to_string()),
                        config.max_bytes.map_or("none".into(), |v| v.to_string()),
                    ),
                )
                .retry_after(QUEUE_FULL_RETRY_AFTER_MS))
            }
            // Dropping happens after the write (see `drop_oldest`), so the
            // new batch itself can be trimmed when it alone is over the limit.
            OnFull::DropOldest => Ok(()),
        }
    }

    /// `drop_oldest`: after a write, moves this partition's start forward by
    /// exactly as many messages as the topic is over `max_messages` (even
    /// into the batch just written; readers skip records below the start),
    /// then by whole batches while it is over `max_bytes`.
    pub(super) fn drop_oldest(&self, t: &Topic, config: &TopicConfig, log: &Log) -> Result<()> {
        let (messages, bytes) = t.depth();
        let stats = log.stats();
        let mut new_start = stats.start_offset;
        if let Some(max) = config.max_messages {
            let over = messages.saturating_sub(max) as i64;
            new_start = (new_start + over).min(stats.next_offset);
        }
        if let Some(max) = config.max_bytes {
            let mut over = bytes.saturating_sub(max);
            let mut at = new_start;
            while over > 0 && at < stats.next_offset {
                let read = log.read(at, 1)?;
                let Some(Ok(batch)) = spool_batch::split_batches(&read.bytes).next() else {
                    break;
                };
                let h = spool_batch::BatchHeader::parse(batch)?;
                over = over.saturating_sub(batch.len() as u64);
                at = h.next_offset();
            }
            new_start = new_start.max(at);
        }
        if new_start > stats.start_offset {
            tracing::debug!(topic = %t.name, from = stats.start_offset, to = new_start, "drop_oldest");
            log.advance_start_offset(new_start)?;
        }
        Ok(())
    }

    /// Under `work_queue` retention, moves each partition's start past what
    /// every interested group has committed.
    pub(super) fn release_consumed(&self, t: &Topic) -> Result<()> {
        let subscription_floors: Vec<Vec<i64>> = self
            .subscriptions
            .of_topic(&t.name)
            .iter()
            .map(|q| q.floors())
            .collect();
        let groups = self.groups.coordinator();
        for (p, log) in t.partitions.iter().enumerate() {
            // Interested consumers: groups on the topic and queue subscriptions.
            let mut low: Option<Option<i64>> = groups.low_water(&(t.name.clone(), p as u32));
            for floors in &subscription_floors {
                let floor = floors.get(p).copied();
                low = Some(match (low, floor) {
                    (None, f) => f,
                    (Some(None), _) | (_, None) => None,
                    (Some(Some(a)), Some(b)) => Some(a.min(b)),
                });
            }
            if let Some(Some(low)) = low {
                let s = log.stats();
                let to = low.min(s.next_offset);
                if to > s.start_offset {
                    log.advance_start_offset(to)?;
                }
            }
        }
        Ok(())
    }
}
