//! The producer's background task: takes queued messages into the open
//! batch of their slot (topic and partition), closes batches, and answers
//! flushes. Sending batches and handling their answers is in [`dispatch`].

mod dispatch;

use super::batch::{push, Batch, Queued, Sent, Slot, SlotKey};
use super::{PartitionCounts, ProducerOptions};
use crate::client::Client;
use crate::error::ClientError;
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use spool_batch::BatchBuilder;
use spool_proto::ResponseBody;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Most commands the background task takes in one go before it looks at
/// timers and responses again.
const COMMANDS_PER_TURN: usize = 1024;

/// How long after a `NOT_LEADER` a partition's batches go again: an
/// election takes about a second, and a forwarding node learns the new
/// leader from its first heartbeat.
const LEADER_RETRY_MS: u64 = 100;
/// How long a partition may go without a leader before its batches fail:
/// longer than any election; a cluster that has lost its majority does not
/// come back by waiting.
pub const LEADER_WAIT_MS: u64 = 30_000;

/// A slot waiting for its partition's new leader.
pub(super) struct Moved {
    /// When to send the held batches again; `None` while requests of the
    /// slot are still in flight.
    pub(super) retry_at: Option<Instant>,
    pub(super) give_up_at: Instant,
}

pub(super) enum Command {
    Send(Queued),
    /// Messages of one `send_batch` call, all to one topic (named once).
    SendMany(String, Vec<Queued>),
    Flush(oneshot::Sender<()>),
}

type InFlight = Pin<Box<dyn Future<Output = (Sent, Result<ResponseBody, ClientError>)> + Send>>;

pub(super) struct Worker {
    client: Client,
    partition_counts: PartitionCounts,
    open: HashMap<SlotKey, Batch>,
    /// Closed batches in the order they must be sent (per slot).
    ready: VecDeque<Batch>,
    in_flight: FuturesUnordered<InFlight>,
    /// Produce requests in flight per slot.
    slot_in_flight: HashMap<SlotKey, usize>,
    /// Batch numbers not yet fully answered, with how many parts each has
    /// outstanding (more than one after a split).
    incomplete: BTreeMap<u64, usize>,
    next_seq: u64,
    /// The next request's `Sent::sent_order`.
    next_sent_order: u64,
    /// Flush waiters: done once every batch numbered below theirs is answered.
    flushes: Vec<(u64, oneshot::Sender<()>)>,
    /// Slots whose last batch failed: later sends fail with the same error
    /// until the next `flush`, so a partition never stores a message after
    /// a gap (what is stored is a prefix of what was sent).
    poisoned: HashMap<SlotKey, ClientError>,
    /// Per slot, batches refused with `QUEUE_FULL` while later batches of
    /// the slot were in flight, with the first refusal: held (and the slot
    /// paused) until the slot has nothing in flight, then retried in order
    /// (see `dispatch::Worker::complete`).
    held: HashMap<SlotKey, (ClientError, Vec<Sent>)>,
    /// Per slot whose held batches were refused with `NOT_LEADER` (a
    /// cluster's partition changing leaders: nothing was stored), when to
    /// send them again and when to give up.
    moved: HashMap<SlotKey, Moved>,
    /// This producer's id when the server is a cluster node
    /// (INIT_PRODUCER_ID, asked once at the start): its batches then carry
    /// it and per-topic sequence numbers, so a batch sent again after a
    /// leader change is never stored twice. `None` on a single-node server.
    pub(super) producer_id: Option<i64>,
    /// Per topic, the sequence number of the next record.
    next_sequence: HashMap<String, i32>,
    /// Why every send fails: a cluster node could not hand this producer
    /// an id (sending without one would give up the cluster's duplicate
    /// suppression without saying so).
    refused: Option<ClientError>,
    options: ProducerOptions,
    /// Per slot, the size of its last batch sent: its next batch starts
    /// with that much room, so filling one does not grow (and copy) its
    /// buffer step by step. Per slot, so a slot of small batches never
    /// reserves the size of another's large ones.
    batch_bytes_hints: HashMap<SlotKey, usize>,
    /// Buffers of acknowledged batches, reused for new ones; their
    /// capacities add up to at most `options.buffer_bytes`.
    spare_buffers: Vec<Vec<u8>>,
    spare_bytes: usize,
}

impl Worker {
    pub(super) fn new(
        client: Client,
        partition_counts: PartitionCounts,
        options: ProducerOptions,
    ) -> Worker {
        Worker {
            client,
            partition_counts,
            open: HashMap::new(),
            ready: VecDeque::new(),
            in_flight: FuturesUnordered::new(),
            slot_in_flight: HashMap::new(),
            incomplete: BTreeMap::new(),
            spare_buffers: Vec::new(),
            spare_bytes: 0,
            next_seq: 0,
            next_sent_order: 0,
            flushes: Vec::new(),
            poisoned: HashMap::new(),
            held: HashMap::new(),
            moved: HashMap::new(),
            producer_id: None,
            next_sequence: HashMap::new(),
            refused: None,
            options,
            batch_bytes_hints: HashMap::new(),
        }
    }

    pub(super) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        match init_producer_id(self.client.clone()).await {
            Ok(id) => self.producer_id = id,
            Err(e) => self.refused = Some(e),
        }
        if self.producer_id.is_some() {
            // A cluster node: see `ProducerOptions::cluster_linger`.
            self.options.linger = self.options.linger.max(self.options.cluster_linger);
        }
        let mut commands_open = true;
        loop {
            // Batches whose linger is over go now (if the window has room),
            // without a timer: the timer's 1 ms granularity would otherwise
            // delay every batch by up to a millisecond even with `linger` 0.
            self.dispatch();
            self.finish_flushes();
            if !commands_open
                && self.open.is_empty()
                && self.ready.is_empty()
                && self.in_flight.is_empty()
            {
                return;
            }
            // A batch whose linger is over but that waits for room in the
            // window needs no timer: an answer makes the room.
            let now = Instant::now();
            let next_deadline = self
                .open
                .values()
                .map(|b| b.deadline)
                .filter(|d| *d > now)
                .chain(self.moved.values().filter_map(|m| m.retry_at))
                .min();
            tokio::select! {
                command = commands.recv(), if commands_open => {
                    match command {
                        Some(c) => {
                            self.handle(c);
                            for _ in 1..COMMANDS_PER_TURN {
                                match commands.try_recv() {
                                    Ok(c) => self.handle(c),
                                    Err(_) => break,
                                }
                            }
                        }
                        None => {
                            commands_open = false;
                            self.close_all();
                        }
                    }
                }
                Some((sent, result)) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.complete(sent, result);
                }
                _ = tokio::time::sleep_until(next_deadline.unwrap_or_else(Instant::now)),
                    if next_deadline.is_some() => self.retry_moved_due(),
            }
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Send(q) => self.add(q),
            Command::SendMany(topic, queued) => {
                // One key for the whole call: its slot changes only between
                // keyed messages of different partitions.
                let mut key: SlotKey = (topic, Slot::Spread);
                for q in queued {
                    key.1 = q.slot;
                    self.add_to(&key, q);
                }
            }
            Command::Flush(done) => {
                // The caller now waits for (and sees) every outcome so far.
                self.poisoned.clear();
                self.close_all();
                self.flushes.push((self.next_seq, done));
            }
        }
    }

    fn new_batch(&mut self, key: &SlotKey) -> Batch {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.incomplete.insert(seq, 1);
        let hint = self.batch_bytes_hints.get(key).copied().unwrap_or(0);
        Batch {
            topic: key.0.clone(),
            slot: key.1,
            builder: match self.spare_buffers.pop() {
                Some(buf) => {
                    self.spare_bytes -= buf.capacity();
                    BatchBuilder::in_buffer(buf, hint)
                }
                None => BatchBuilder::with_capacity(hint),
            },
            replies: Vec::new(),
            deadline: Instant::now() + self.options.linger,
            seq,
            resend: None,
        }
    }

    /// Marks `builder` with this producer's id and the topic's next
    /// sequence numbers, if it is an idempotent producer. Sequences that
    /// would pass `i32::MAX` fail the batch (two billion records per topic
    /// and producer; a new producer starts again at 0).
    pub(super) fn number(
        &mut self,
        topic: &str,
        builder: &mut BatchBuilder,
    ) -> Result<(), ClientError> {
        let Some(producer_id) = self.producer_id else {
            return Ok(());
        };
        // Looked up before inserting: no String per batch.
        if !self.next_sequence.contains_key(topic) {
            self.next_sequence.insert(topic.to_owned(), 0);
        }
        let Some(next) = self.next_sequence.get_mut(topic) else {
            return Ok(());
        };
        let count = i32::try_from(builder.len()).unwrap_or(i32::MAX);
        let Some(after) = next.checked_add(count) else {
            return Err(ClientError::local(
                spool_types::ErrorCode::OutOfOrderSequence,
                "this producer numbered 2^31 records for the topic: start a new producer",
            ));
        };
        builder.set_producer(producer_id, 0, *next);
        *next = after;
        Ok(())
    }

    /// One part of batch `seq` is answered.
    fn part_done(&mut self, seq: u64) {
        if let Some(parts) = self.incomplete.get_mut(&seq) {
            *parts -= 1;
            if *parts == 0 {
                self.incomplete.remove(&seq);
            }
        }
    }

    fn add(&mut self, mut q: Queued) {
        // The key owns the topic; it is copied only for a new batch.
        let key = (std::mem::take(&mut q.topic), q.slot);
        self.add_to(&key, q);
    }

    /// Adds a queued message to the open batch of `key` (its topic and slot).
    fn add_to(&mut self, key: &SlotKey, q: Queued) {
        if let Some(e) = &self.refused {
            q.reply.send(Err(e.clone()));
            return;
        }
        if let Some(e) = (!self.poisoned.is_empty())
            .then(|| self.poisoned.get(key))
            .flatten()
        {
            q.reply.send(Err(e.clone()));
            return;
        }
        // Room for the larger deltas of a record later in the batch.
        let size = q.size + 16;
        let (max_records, max_bytes) =
            (self.options.max_batch_records, self.options.max_batch_bytes);
        let fits =
            |b: &Batch| b.builder.len() < max_records && b.builder.size_bytes() + size <= max_bytes;
        // The common case, one lookup: the open batch has room.
        match self.open.get_mut(key) {
            Some(batch) if fits(batch) => {
                if push(batch, q, max_records, max_bytes) {
                    if let Some(batch) = self.open.remove(key) {
                        self.ready.push_back(batch);
                    }
                }
                return;
            }
            // Full: it goes, and this record starts the next one.
            Some(_) => {
                if let Some(batch) = self.open.remove(key) {
                    self.ready.push_back(batch);
                }
            }
            None => {}
        }
        let mut batch = self.new_batch(key);
        if push(&mut batch, q, max_records, max_bytes) {
            self.ready.push_back(batch);
        } else {
            self.open.insert(key.clone(), batch);
        }
    }

    fn close_all(&mut self) {
        let mut batches: Vec<Batch> = self.open.drain().map(|(_, b)| b).collect();
        batches.sort_by_key(|b| b.seq);
        self.ready.extend(batches);
    }

    /// Keeps an acknowledged batch's buffer for a later batch, if nothing
    /// else holds it (the connection's writer let go once it was sent) and
    /// the spare buffers stay within the producer's memory budget
    /// (`buffer_bytes`, which they would fill again anyway under load).
    /// Acknowledgements and new batches both come in bursts (one fdatasync
    /// answers many batches), so the pool must hold about a window's worth:
    /// with 4 buffers, 40 % of the batches of a 1 KiB publish still got a
    /// fresh megabyte, whose page faults cost ~10 % of the client's CPU
    /// (BENCHMARKS.md, seventh session).
    fn recycle(&mut self, batch: Bytes) {
        let Ok(buffer) = batch.try_into_mut() else {
            return;
        };
        let buffer: Vec<u8> = buffer.into();
        if self.spare_bytes + buffer.capacity() <= self.options.buffer_bytes {
            self.spare_bytes += buffer.capacity();
            self.spare_buffers.push(buffer);
        }
    }

    fn finish_flushes(&mut self) {
        let lowest = self.incomplete.keys().next().copied().unwrap_or(u64::MAX);
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.flushes)
            .into_iter()
            .partition(|(target, _)| lowest >= *target);
        self.flushes = waiting;
        for (_, tx) in done {
            let _ = tx.send(());
        }
    }
}

/// Asks the server for a producer id. A cluster node hands one out;
/// a server that is not a cluster node (or is older than producer
/// ids) answers that it does not, and the producer goes on without
/// one. `TIMEOUT` or `NOT_LEADER` (no metadata leader during an
/// election, say) is asked again for up to [`LEADER_WAIT_MS`]; any other
/// refusal fails every send; a lost connection fails them on its own.
async fn init_producer_id(client: Client) -> Result<Option<i64>, ClientError> {
    use spool_types::ErrorCode;
    let give_up_at = Instant::now() + std::time::Duration::from_millis(LEADER_WAIT_MS);
    loop {
        match client.init_producer_id().await {
            Ok(id) => return Ok(i64::try_from(id).ok()),
            Err(e) => match e.code() {
                None | Some(ErrorCode::InvalidRequest | ErrorCode::UnknownRequestType) => {
                    return Ok(None)
                }
                Some(ErrorCode::Timeout | ErrorCode::NotLeader) if Instant::now() < give_up_at => {
                    tokio::time::sleep(std::time::Duration::from_millis(LEADER_RETRY_MS)).await
                }
                Some(_) => return Err(e),
            },
        }
    }
}
