//! Streams: produce, fetch (long poll) and consumer groups.

use super::{check_consume_all, synced, Ops};
use crate::auth::{Caller, Need};
use crate::notify::wait_any;
use crate::now_ms;
use bytes::Bytes;
use spool_batch::{BatchBuilder, NewRecord};
use spool_broker::{Assignment, BrokerError, PendingProduce, Produced, Routing, StartFrom};
use spool_cluster::proposer::{ProposalAnswer, ProposalError};
use spool_types::limits::FETCH_WAIT_MS_MAX;
use spool_types::partitioner::partition_for_key;
use spool_types::ErrorCode;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// One partition a fetch reads, from `offset`, at most `max_bytes`.
#[derive(Debug, Clone)]
pub struct FetchPartition {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub max_bytes: usize,
}

/// What a fetch read from one partition: whole stored batches (the first may
/// begin before the asked offset) and the partition's offsets.
pub struct FetchedPartition {
    pub topic: String,
    pub partition: u32,
    pub error: Option<BrokerError>,
    pub start_offset: i64,
    pub end_offset: i64,
    pub batches: Bytes,
    /// Where the next read of this partition starts: after `batches`, or
    /// the asked offset when nothing was read.
    pub next_offset: i64,
}

impl FetchedPartition {
    /// Nothing read yet of `fp`: no records, offsets unknown, the next
    /// read where this one was asked to start.
    pub(super) fn nothing_of(fp: &FetchPartition) -> FetchedPartition {
        FetchedPartition {
            topic: fp.topic.clone(),
            partition: fp.partition,
            error: None,
            start_offset: 0,
            end_offset: 0,
            batches: Bytes::new(),
            next_offset: fp.offset,
        }
    }
}

/// Where one published message is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    pub partition: u32,
    pub offset: i64,
    /// Its `spool-msg-id` was stored before, within the topic's dedup
    /// window: this is the original's place, and nothing new was stored.
    pub duplicate: bool,
}

/// How long an HTTP publish to a replicated topic waits for a partition's
/// leader (an election takes about a second).
const PUBLISH_LEADER_WAIT_MS: u64 = 5_000;
/// How often it sends a batch again meanwhile.
const PUBLISH_LEADER_RETRY_MS: u64 = 100;
/// How long a produce to a replicated partition waits for its batch to be
/// stored on a majority before it is answered `TIMEOUT` (outcome unknown;
/// an idempotent producer sends it again, safely). A majority write takes
/// milliseconds; a leader that cannot reach a majority (two of three
/// replicas down) would otherwise hold the request, and with it the
/// producer's partition, until they return. Kafka's produce `timeout_ms`
/// (30 s by default) plays this part.
const REPLICATED_ANSWER_MS: u64 = 10_000;

/// Where an unkeyed batch of an idempotent producer goes: the partition its
/// producer id and first sequence pick, so that the batch sent again after
/// a leader change lands where the first try did (and is recognised
/// there). Any other routing is kept.
fn idempotent_routing(
    routing: &Routing,
    batch: &[u8],
    broker: &spool_broker::Broker,
    topic: &str,
) -> Routing {
    let Routing::Spread = routing else {
        return routing.clone();
    };
    let Some((producer_id, first_seq, _)) = spool_cluster::producers::producer_of(batch) else {
        return Routing::Spread;
    };
    let Ok(t) = broker.topic(topic) else {
        return Routing::Spread;
    };
    let partitions = t.partitions.len().max(1) as u64;
    // A batch's first sequence differs from the last batch's by its record
    // count; mixing both spreads consecutive batches over the partitions.
    let mixed = (producer_id as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(first_seq as u64)
        .wrapping_mul(0xBF58_476D_1CE4_E5B9);
    Routing::Partition(((mixed >> 32) % partitions) as u32)
}

/// A produce written locally or handed to its partition's Raft group;
/// finish it with [`Ops::finish_produce`].
pub enum StartedProduce {
    Local(PendingProduce),
    Replicated {
        topic: String,
        partition: u32,
        answer: tokio::sync::oneshot::Receiver<ProposalAnswer>,
    },
}

pub struct Fetched {
    pub partitions: Vec<FetchedPartition>,
}

impl Fetched {
    pub(super) fn has_data(&self) -> bool {
        self.partitions
            .iter()
            .any(|p| !p.batches.is_empty() || p.error.is_some())
    }
}

impl Ops {
    /// Validates and writes a produced batch, on the caller's task: the
    /// write is a `pwrite` into the page cache (microseconds), and handing
    /// the worker off around it churned hundreds of threads under load for
    /// no gain (BENCHMARKS.md). Finish with [`Ops::finish_produce`].
    ///
    /// On a cluster node, a batch for a replicated topic is validated the
    /// same way and handed to its partition's Raft group instead (in call
    /// order, so a connection's batches keep their order).
    pub fn start_produce(
        &self,
        caller: &Caller,
        topic: &str,
        routing: &Routing,
        batch: &Bytes,
    ) -> Result<StartedProduce, BrokerError> {
        caller.check(Need::Produce(topic))?;
        if let Some(cluster) = &self.cluster {
            if self.broker.topic(topic).is_ok_and(|t| t.replicated) {
                let routing = idempotent_routing(routing, batch, &self.broker, topic);
                let partition = self
                    .broker
                    .check_replicated_produce(topic, &routing, batch)?;
                let answer = cluster.propose(topic, partition, batch.clone())?;
                return Ok(StartedProduce::Replicated {
                    topic: topic.to_owned(),
                    partition,
                    answer,
                });
            }
        }
        let pending = self.broker.start_produce(topic, routing, batch, now_ms())?;
        Ok(StartedProduce::Local(pending))
    }

    /// Waits until a started produce is as durable as its topic promises:
    /// the fdatasync is waited for by the broker's sync threads; a
    /// replicated batch is answered once a majority of its replicas
    /// stored it and it is committed.
    pub async fn finish_produce(&self, started: StartedProduce) -> Result<Produced, BrokerError> {
        match started {
            StartedProduce::Local(pending) => {
                let broker = Arc::clone(&self.broker);
                synced("produce", |done| broker.finish_produce_then(pending, done)).await
            }
            StartedProduce::Replicated {
                topic,
                partition,
                answer,
            } => self.finish_replicated(&topic, partition, answer).await,
        }
    }

    /// Writes one batch through its partition's group, sending it again
    /// while the answer is `NOT_LEADER` (nothing stored; a leader is being
    /// elected), for up to [`PUBLISH_LEADER_WAIT_MS`]: an HTTP client gets
    /// its answer without retry logic of its own.
    async fn propose_waiting_for_leader(
        &self,
        topic: &str,
        partition: u32,
        batch: Bytes,
    ) -> Result<Produced, BrokerError> {
        let cluster = self.cluster.as_ref().ok_or_else(|| {
            BrokerError::new(ErrorCode::Internal, "a replicated topic without a cluster")
        })?;
        let deadline = Instant::now() + Duration::from_millis(PUBLISH_LEADER_WAIT_MS);
        loop {
            let answer = cluster.propose(topic, partition, batch.clone())?;
            match self.finish_replicated(topic, partition, answer).await {
                Err(e) if e.code == ErrorCode::NotLeader && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(PUBLISH_LEADER_RETRY_MS)).await;
                }
                done => return done,
            }
        }
    }

    async fn finish_replicated(
        &self,
        topic: &str,
        partition: u32,
        answer: tokio::sync::oneshot::Receiver<ProposalAnswer>,
    ) -> Result<Produced, BrokerError> {
        let unknown = |why: String| {
            BrokerError::new(
                ErrorCode::Timeout,
                format!(
                    "the batch for topic {topic:?} partition {partition} may or may not have \
                     been stored ({why}); retry it"
                ),
            )
        };
        let waited = Duration::from_millis(REPLICATED_ANSWER_MS);
        let Ok(answer) = tokio::time::timeout(waited, answer).await else {
            return Err(unknown(format!(
                "a majority of its replicas did not store it within {REPLICATED_ANSWER_MS} ms"
            )));
        };
        match answer {
            Ok(Ok(placed)) => Ok(Produced {
                partition,
                base_offset: placed.base_offset,
                last_offset: placed.next_offset - 1,
                placed: None,
                duplicates: None,
            }),
            Ok(Err(ProposalError::NotLeader { leader, .. })) => Err(self
                .cluster
                .as_ref()
                .map(|c| c.not_leader(topic, partition, leader))
                .unwrap_or_else(|| unknown("no cluster".into()))),
            Ok(Err(ProposalError::Unavailable(why))) => Err(unknown(why)),
            Ok(Err(ProposalError::StaleSequence(why))) => {
                Err(BrokerError::new(ErrorCode::OutOfOrderSequence, why))
            }
            Err(_) => Err(unknown("the partition's group stopped".into())),
        }
    }

    /// Publishes records given one by one (the HTTP API): one atomic batch
    /// per partition, in the given order per partition. Answers each
    /// record's (partition, offset), in the given order. A record's own
    /// partition wins over its key's.
    pub async fn publish(
        &self,
        caller: &Caller,
        topic: String,
        records: Vec<(Option<u32>, NewRecord)>,
    ) -> Result<Vec<Published>, BrokerError> {
        caller.check(Need::Produce(&topic))?;
        if records.is_empty() {
            return Err(BrokerError::invalid("at least one message is needed"));
        }
        if self.cluster.is_some() && self.broker.topic(&topic).is_ok_and(|t| t.replicated) {
            return self.publish_replicated(&topic, records).await;
        }
        self.on_broker(move |b, now| publish_blocking(b, &topic, records, now))
            .await
    }

    /// [`Ops::publish`] to a replicated topic: one batch per partition,
    /// each written through its partition's group (forwarded to its leader
    /// from any node). Each batch is atomic; unlike a single-node publish,
    /// the batches of different partitions are not written together, so a
    /// failure may leave some stored (the error says which is unknown).
    async fn publish_replicated(
        &self,
        topic: &str,
        records: Vec<(Option<u32>, NewRecord)>,
    ) -> Result<Vec<Published>, BrokerError> {
        let partitions = self.broker.topic(topic)?.partitions.len() as u32;
        let mut groups: BTreeMap<Option<u32>, Vec<(usize, NewRecord)>> = BTreeMap::new();
        for (i, (partition, record)) in records.into_iter().enumerate() {
            let target = partition.or_else(|| {
                let key = record.key.as_ref()?;
                Some(partition_for_key(key, partitions))
            });
            groups.entry(target).or_default().push((i, record));
        }
        let total: usize = groups.values().map(Vec::len).sum();
        let mut started = Vec::with_capacity(groups.len());
        for (target, records) in groups {
            let mut b = BatchBuilder::new();
            for (_, r) in &records {
                b.push(r)?;
            }
            let batch = Bytes::from(b.finish()?);
            let routing = target.map_or(Routing::Spread, Routing::Partition);
            let partition = self
                .broker
                .check_replicated_produce(topic, &routing, &batch)?;
            let indexes: Vec<usize> = records.into_iter().map(|(i, _)| i).collect();
            started.push((partition, batch, indexes));
        }
        let mut out = vec![Published::default(); total];
        for (partition, batch, indexes) in started {
            let produced = self
                .propose_waiting_for_leader(topic, partition, batch)
                .await?;
            for (n, i) in indexes.iter().enumerate() {
                out[*i] = Published {
                    partition,
                    offset: produced.base_offset + n as i64,
                    duplicate: false,
                };
            }
        }
        Ok(out)
    }

    /// Reads every asked partition; if nothing is there, waits for appends
    /// up to `wait_ms` (capped at [`FETCH_WAIT_MS_MAX`]) and reads again.
    /// `max_bytes` bounds the whole answer, except that the first batch
    /// with data always goes whole (a consumer never stalls on a big batch).
    /// A caller whose token is revoked meanwhile is refused at once.
    /// Partitions of a replicated topic this node holds no replica of are
    /// read from a node that does (`fetch_remote`).
    pub async fn fetch(
        &self,
        caller: &Caller,
        partitions: Vec<FetchPartition>,
        max_bytes: usize,
        wait_ms: u64,
    ) -> Result<Fetched, BrokerError> {
        let elsewhere: Vec<bool> = partitions
            .iter()
            .map(|fp| self.read_elsewhere(&fp.topic, fp.partition))
            .collect();
        if elsewhere.contains(&true) {
            return self
                .fetch_through_replicas(caller, partitions, &elsewhere, max_bytes, wait_ms)
                .await;
        }
        self.fetch_here(caller, partitions, max_bytes, wait_ms)
            .await
    }

    /// [`Ops::fetch`] of partitions read on this node only: one this node
    /// holds no replica of answers `NOT_LEADER`.
    pub async fn fetch_here(
        &self,
        caller: &Caller,
        partitions: Vec<FetchPartition>,
        max_bytes: usize,
        wait_ms: u64,
    ) -> Result<Fetched, BrokerError> {
        let deadline = Instant::now() + Duration::from_millis(wait_ms.min(FETCH_WAIT_MS_MAX));
        let notifies: Vec<Arc<Notify>> = partitions
            .iter()
            .map(|fp| self.notifier.partition(&fp.topic, fp.partition))
            .collect();
        loop {
            check_consume_all(caller, partitions.iter().map(|p| p.topic.as_str()))?;
            let mut result = None;
            let stopping = self.stopping();
            let waited = wait_any(&notifies, None, deadline, || {
                let r = if self.reads_no_file(&partitions) {
                    // A caught-up long poll: answered from memory, without
                    // handing the worker off (`block_in_place` wakes a
                    // thread each time: 14 % of the server's samples in a
                    // 10,000 msgs/s end-to-end run).
                    self.read_partitions(&partitions, max_bytes)
                } else {
                    tokio::task::block_in_place(|| self.read_partitions(&partitions, max_bytes))
                };
                let ready = r.has_data() || stopping || Instant::now() >= deadline;
                result = Some(r);
                ready
            });
            self.wait_unless_ended(caller, waited).await;
            let Some(r) = result else { continue };
            if r.has_data() || Instant::now() >= deadline || self.stopping() {
                return Ok(r);
            }
        }
    }

    /// Whether reading `partitions` would touch no file: every partition is
    /// read up to its end (or is out of range, or unknown), so the answer
    /// comes from the logs' in-memory state. Data that arrives after this
    /// check is read inline then; a read of fresh data is from the page
    /// cache anyway.
    fn reads_no_file(&self, partitions: &[FetchPartition]) -> bool {
        partitions
            .iter()
            .all(|fp| match self.broker.offsets(&fp.topic, fp.partition) {
                Ok((start, end)) => fp.offset >= end || fp.offset < start,
                Err(_) => true,
            })
    }

    /// Whether the partition belongs to a replicated topic this node
    /// holds no replica of (its log here stays empty).
    pub(super) fn read_elsewhere(&self, topic: &str, partition: u32) -> bool {
        let Some(cluster) = self.cluster.as_ref() else {
            return false;
        };
        !cluster.hosts(topic, partition) && self.broker.topic(topic).is_ok_and(|t| t.replicated)
    }

    /// `NOT_LEADER` for a partition of a replicated topic this node holds
    /// no replica of (its log here stays empty); `None` where it is read.
    fn replica_elsewhere(&self, topic: &str, partition: u32) -> Option<BrokerError> {
        if !self.read_elsewhere(topic, partition) {
            return None;
        }
        Some(self.cluster.as_ref()?.not_leader(topic, partition, None))
    }

    pub(super) fn read_partitions(
        &self,
        partitions: &[FetchPartition],
        max_bytes: usize,
    ) -> Fetched {
        let mut budget = max_bytes;
        let mut out = Vec::with_capacity(partitions.len());
        for fp in partitions {
            let mut entry = FetchedPartition::nothing_of(fp);
            if let Some(elsewhere) = self.replica_elsewhere(&fp.topic, fp.partition) {
                entry.error = Some(elsewhere);
                out.push(entry);
                continue;
            }
            if let Ok((start, end)) = self.broker.offsets(&fp.topic, fp.partition) {
                entry.start_offset = start;
                entry.end_offset = end;
            }
            let want = fp.max_bytes.min(budget);
            let read = if want == 0 {
                Ok(None)
            } else {
                self.broker
                    .fetch(&fp.topic, fp.partition, fp.offset, want)
                    .map(Some)
            };
            match read {
                Ok(Some(r)) => {
                    // The first batch with data is always sent whole, even
                    // past `max_bytes` (a batch is at most BATCH_BYTES_MAX,
                    // which fits a frame); later partitions only within
                    // what is left of the budget.
                    let first_with_data = budget == max_bytes;
                    if r.bytes.len() <= budget || first_with_data {
                        budget = budget.saturating_sub(r.bytes.len());
                        if !r.bytes.is_empty() {
                            entry.next_offset = r.next_offset;
                        }
                        entry.batches = r.bytes;
                    }
                    entry.start_offset = r.start_offset;
                    entry.end_offset = r.end_offset;
                }
                Ok(None) => {}
                Err(e) if self.behind_here(fp, &e, entry.start_offset) => {}
                Err(e) => entry.error = Some(e),
            }
            out.push(entry);
        }
        Fetched { partitions: out }
    }

    /// Whether `error` is an offset past the end of a replicated
    /// partition's replica that does not lead it: such a replica may only
    /// be behind (a node catching up, say after it lost its data), and a
    /// consumer told "out of range" would start over from its reset
    /// position. It answers nothing yet instead (a long poll waits for it
    /// to catch up); only the leader, which holds every committed record,
    /// says an offset is past the end.
    fn behind_here(&self, fp: &FetchPartition, error: &BrokerError, start: i64) -> bool {
        let Some(cluster) = self.cluster.as_ref() else {
            return false;
        };
        error.code == spool_types::ErrorCode::OffsetOutOfRange
            && fp.offset >= start
            && self.broker.topic(&fp.topic).is_ok_and(|t| t.replicated)
            && !cluster.leads(&fp.topic, fp.partition)
    }

    /// Joins (or rejoins) a consumer group; answers the member's assignment.
    #[allow(clippy::too_many_arguments)]
    pub async fn join_group(
        &self,
        caller: &Caller,
        group: String,
        member_id: Option<String>,
        client_id: String,
        topics: Vec<String>,
        session_timeout_ms: u64,
        start: StartFrom,
    ) -> Result<Assignment, BrokerError> {
        check_consume_all(caller, topics.iter().map(String::as_str))?;
        let owner = caller.name().map(str::to_owned);
        self.on_broker(move |b, now| {
            b.join_group(
                &group,
                member_id.as_deref(),
                &client_id,
                owner.as_deref(),
                &topics,
                session_timeout_ms,
                start,
                now,
            )
        })
        .await
    }

    pub async fn heartbeat(
        &self,
        caller: &Caller,
        group: String,
        member_id: String,
        generation: u32,
    ) -> Result<Assignment, BrokerError> {
        caller.check(Need::ConsumeSomething)?;
        let owner = caller.name().map(str::to_owned);
        self.on_broker(move |b, now| {
            b.heartbeat(&group, &member_id, owner.as_deref(), generation, now)
        })
        .await
    }

    pub async fn leave_group(
        &self,
        caller: &Caller,
        group: String,
        member_id: String,
    ) -> Result<(), BrokerError> {
        caller.check(Need::ConsumeSomething)?;
        let owner = caller.name().map(str::to_owned);
        self.on_broker(move |b, _| b.leave_group(&group, &member_id, owner.as_deref()))
            .await
    }

    /// Commits offsets, each (topic, partition, next offset to read).
    pub async fn commit(
        &self,
        caller: &Caller,
        group: String,
        member_id: String,
        offsets: Vec<(String, u32, i64)>,
    ) -> Result<(), BrokerError> {
        check_consume_all(caller, offsets.iter().map(|(t, _, _)| t.as_str()))?;
        // Written here (microseconds); the fdatasync is waited for by the
        // broker's sync threads, shared with produces and acks, so a
        // commit parks no thread of the blocking pool.
        let owner = caller.name();
        let now = crate::now_ms();
        super::synced("commit", |done| {
            self.broker
                .commit_then(&group, &member_id, owner, &offsets, now, done)
        })
        .await
    }

    /// A group's committed offsets for the given partitions.
    pub fn committed(
        &self,
        caller: &Caller,
        group: &str,
        partitions: &[(String, u32)],
    ) -> Result<Vec<Option<i64>>, BrokerError> {
        check_consume_all(caller, partitions.iter().map(|(t, _)| t.as_str()))?;
        Ok(self.broker.committed(group, partitions))
    }
}

fn publish_blocking(
    broker: &spool_broker::Broker,
    topic: &str,
    records: Vec<(Option<u32>, NewRecord)>,
    now: i64,
) -> Result<Vec<Published>, BrokerError> {
    let partitions = broker.topic(topic)?.partitions.len() as u32;
    let mut groups: BTreeMap<Option<u32>, Vec<(usize, NewRecord)>> = BTreeMap::new();
    for (i, (partition, record)) in records.into_iter().enumerate() {
        let target = partition.or_else(|| {
            record
                .key
                .as_ref()
                .map(|k| partition_for_key(k, partitions))
        });
        groups.entry(target).or_default().push((i, record));
    }
    let total: usize = groups.values().map(Vec::len).sum();
    // Every batch built before any is written, and written together: a
    // full topic or a bad partition refuses the whole request, so a retry
    // stores nothing twice.
    let mut batches = Vec::with_capacity(groups.len());
    let mut indexes = Vec::with_capacity(groups.len());
    for (target, records) in groups {
        let mut b = BatchBuilder::new();
        for (_, r) in &records {
            b.push(r)?;
        }
        batches.push((
            target.map_or(Routing::Spread, Routing::Partition),
            b.finish()?,
        ));
        indexes.push(records.into_iter().map(|(i, _)| i).collect::<Vec<usize>>());
    }
    let mut out = vec![Published::default(); total];
    let all = broker.produce_together(topic, &batches, now)?;
    for (produced, indexes) in all.into_iter().zip(indexes) {
        for (n, i) in indexes.iter().enumerate() {
            // With suppressed duplicates (message IDs) the broker names each
            // record's place; the range covers only the new ones.
            let (partition, offset) = match produced.placed.as_ref().and_then(|p| p.get(n)) {
                Some(&at) => at,
                None => (
                    produced.partition,
                    (produced.base_offset + n as i64).min(produced.last_offset),
                ),
            };
            let duplicate = produced
                .duplicates
                .as_ref()
                .and_then(|d| d.get(n).copied())
                .unwrap_or(false);
            out[*i] = Published {
                partition,
                offset,
                duplicate,
            };
        }
    }
    Ok(out)
}
