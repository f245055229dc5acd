//! [`Producer`]: batches messages per (topic, partition), keeps a window of
//! pipelined produce requests in flight, and reports each message's own
//! offset (or the error that stopped it).
//!
//! A background task owns the open batches. A batch is sent when it reaches
//! its record or byte limit, when it has lingered long enough, or on
//! [`Producer::flush`]; a batch that has lingered long enough while its
//! partition's requests are all in flight stays open, taking more messages,
//! until an answer makes room. Batches of one partition leave in the order they
//! were opened, over one connection whose server appends produces in
//! arrival order, so messages to one partition (and so one key) keep the
//! order they were sent in.
//!
//! Routing: a message with an explicit partition goes there; a keyed one to
//! `partition_for_key(key, partition_count)` (Kafka's murmur2, computed
//! here with the topic's partition count from `describe_topic`, cached);
//! an unkeyed one into a per-topic batch routed `Spread`, so the server
//! picks a partition for the whole batch.
//!
//! A full topic refuses a whole batch (`QUEUE_FULL`, nothing written). With
//! one request in flight per partition (the default) the producer then
//! retries the batch in halves, in order, so exactly the messages that fit
//! are stored and the first that does not, and every later message of its
//! batch, fail with `QUEUE_FULL`.

use crate::client::Client;
use crate::error::ClientError;
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use spool_batch::{BatchBuilder, NewRecord, RecordParts};
use spool_proto::{self as p, Request, ResponseBody, Routing};
use spool_types::limits::{
    BATCH_BYTES_MAX, BATCH_RECORDS_MAX, RECORD_BYTES_MAX, RECORD_HEADERS_MAX,
};
use spool_types::partitioner::partition_for_key;
use spool_types::ErrorCode;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Most commands the background task takes in one go before it looks at
/// timers and responses again.
const COMMANDS_PER_TURN: usize = 1024;

/// Record header carrying a message ID for duplicate suppression: within
/// the topic's window a second message with the same ID is not stored.
pub const MESSAGE_ID_HEADER: &str = "spool-msg-id";
/// Record header holding the earliest delivery time to queue subscriptions
/// (ms since the Unix epoch, decimal ASCII).
pub const DELIVER_AT_HEADER: &str = "spool-deliver-at";

/// A message to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Decides the partition unless `partition` is set.
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// An explicit partition, overriding the key.
    pub partition: Option<u32>,
    /// Sent as the `spool-msg-id` header: the server stores a message with
    /// an ID it has seen on the topic within its window (2 minutes by
    /// default) only once, and answers a repeat with the original offset.
    pub message_id: Option<String>,
    /// Sent as the `spool-deliver-at` header: queue subscriptions do not
    /// deliver the message before this time (ms since the Unix epoch; the
    /// server cuts delays beyond 30 days).
    pub deliver_at_ms: Option<i64>,
}

impl Message {
    pub fn new(value: impl Into<Bytes>) -> Message {
        Message {
            value: value.into(),
            ..Message::default()
        }
    }

    pub fn with_key(mut self, key: impl Into<Bytes>) -> Message {
        self.key = Some(key.into());
        self
    }

    pub fn with_partition(mut self, partition: u32) -> Message {
        self.partition = Some(partition);
        self
    }

    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Message {
        self.headers.push((key.into(), Some(value.into())));
        self
    }

    pub fn with_message_id(mut self, id: impl Into<String>) -> Message {
        self.message_id = Some(id.into());
        self
    }

    pub fn with_deliver_at_ms(mut self, at_ms: i64) -> Message {
        self.deliver_at_ms = Some(at_ms);
        self
    }

    /// Not delivered to queue subscriptions before `delay` from now.
    pub fn with_delay(self, delay: Duration) -> Message {
        let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        self.with_deliver_at_ms(now_ms().saturating_add(delay_ms))
    }

    /// The record headers: the caller's, then the ones standing for
    /// `message_id` and `deliver_at_ms`.
    fn record_headers(&self) -> Vec<(String, Option<Vec<u8>>)> {
        let mut headers: Vec<(String, Option<Vec<u8>>)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.as_ref().map(|v| v.to_vec())))
            .collect();
        if let Some(id) = &self.message_id {
            headers.push((MESSAGE_ID_HEADER.to_owned(), Some(id.clone().into_bytes())));
        }
        if let Some(at) = self.deliver_at_ms {
            headers.push((
                DELIVER_AT_HEADER.to_owned(),
                Some(at.to_string().into_bytes()),
            ));
        }
        headers
    }
}

/// Where a message was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Delivered {
    pub partition: u32,
    pub offset: u64,
}

/// Batching and pipelining settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerOptions {
    /// How long a batch waits for more messages before it is sent. If the
    /// window is full then, the batch keeps taking messages until it has
    /// room (or is full).
    pub linger: Duration,
    /// Most records in one batch (capped at the protocol's 100,000).
    pub max_batch_records: usize,
    /// Most bytes in one batch (capped at the protocol's 8 MiB). A single
    /// message larger than this still goes, alone in its batch.
    pub max_batch_bytes: usize,
    /// Most produce requests in flight at once, over all partitions.
    pub max_in_flight: usize,
    /// Most produce requests in flight per partition (and per topic for
    /// unkeyed messages, which the server spreads). With 1, a batch refused
    /// with `QUEUE_FULL` is retried in halves so that exactly the messages
    /// that fit are stored, in order, and the rest fail; with more, a
    /// refused batch fails whole whenever a later batch of its partition is
    /// already in flight (retrying it then could reorder messages).
    pub max_in_flight_per_partition: usize,
    /// Most bytes of messages held (queued or in flight) before
    /// [`Producer::send`] waits for acknowledgements to free room. The
    /// buffers of acknowledged batches are kept for reuse up to this many
    /// bytes too, so a producer that was busy holds them while idle.
    pub buffer_bytes: usize,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        ProducerOptions {
            linger: Duration::from_millis(5),
            max_batch_records: 1000,
            max_batch_bytes: 1024 * 1024,
            max_in_flight: 16,
            max_in_flight_per_partition: 1,
            buffer_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Resolves to where the message went, or why it was not stored.
#[derive(Debug)]
pub struct DeliveryFuture {
    rx: oneshot::Receiver<Result<Delivered, ClientError>>,
}

impl Future for DeliveryFuture {
    type Output = Result<Delivered, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| {
            r.unwrap_or_else(|_| {
                Err(ClientError::Closed(
                    "the producer stopped before the message was acknowledged".to_owned(),
                ))
            })
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Slot {
    Partition(u32),
    Spread,
}

/// Who waits for a queued message's outcome.
enum Reply {
    /// A [`Producer::send`] caller, and the buffer room its message holds.
    One(
        oneshot::Sender<Result<Delivered, ClientError>>,
        OwnedSemaphorePermit,
    ),
    /// Message `index` of a [`Producer::send_batch`] call.
    Many(Arc<Gather>, usize),
}

impl Reply {
    fn send(self, outcome: Result<Delivered, ClientError>) {
        match self {
            Reply::One(tx, _permit) => {
                let _ = tx.send(outcome);
            }
            Reply::Many(gather, index) => gather.set(index, outcome),
        }
    }
}

/// Collects the outcomes of one `send_batch` call and answers once all are in.
struct Gather {
    state: Mutex<GatherState>,
}

struct GatherState {
    outcomes: Vec<Option<Result<Delivered, ClientError>>>,
    left: usize,
    tx: Option<oneshot::Sender<Vec<Result<Delivered, ClientError>>>>,
    /// The buffer room the call's messages hold, released with the answer.
    permit: Option<OwnedSemaphorePermit>,
}

impl Gather {
    fn set(&self, index: usize, outcome: Result<Delivered, ClientError>) {
        let mut state = lock(&self.state);
        self.set_locked(&mut state, index, outcome);
    }

    fn set_locked(
        &self,
        state: &mut GatherState,
        index: usize,
        outcome: Result<Delivered, ClientError>,
    ) {
        let Some(slot) = state.outcomes.get_mut(index) else {
            return;
        };
        if slot.replace(outcome).is_none() {
            state.left -= 1;
        }
        if state.left == 0 {
            let outcomes = std::mem::take(&mut state.outcomes)
                .into_iter()
                .map(|o| o.unwrap_or_else(|| Err(stopped())))
                .collect();
            state.permit = None;
            if let Some(tx) = state.tx.take() {
                let _ = tx.send(outcomes);
            }
        }
    }
}

fn stopped() -> ClientError {
    ClientError::Closed("the producer stopped before the message was acknowledged".to_owned())
}

/// Resolves, once every message of a [`Producer::send_batch`] call is
/// acknowledged or has failed, to each one's outcome, in the order given.
#[derive(Debug)]
pub struct BatchDeliveryFuture {
    rx: oneshot::Receiver<Vec<Result<Delivered, ClientError>>>,
    count: usize,
}

impl Future for BatchDeliveryFuture {
    type Output = Vec<Result<Delivered, ClientError>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let count = self.count;
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| (0..count).map(|_| Err(stopped())).collect()))
    }
}

/// A message's record, kept as the caller's buffers until it is encoded
/// into its batch (one copy, not two).
struct QueuedRecord {
    key: Option<Bytes>,
    value: Bytes,
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp_ms: i64,
}

impl QueuedRecord {
    fn parts(&self) -> RecordParts<'_> {
        RecordParts {
            key: self.key.as_deref(),
            value: Some(&self.value),
            headers: &self.headers,
            timestamp_ms: self.timestamp_ms,
        }
    }
}

struct Queued {
    topic: String,
    slot: Slot,
    record: QueuedRecord,
    /// Encoded size of `record` first in a batch; later in a batch its
    /// offset and timestamp deltas take a few bytes more.
    size: usize,
    reply: Reply,
}

enum Command {
    Send(Queued),
    /// Messages of one `send_batch` call, all to one topic (named once).
    SendMany(String, Vec<Queued>),
    Flush(oneshot::Sender<()>),
}

type PartitionCounts = Arc<Mutex<HashMap<String, u32>>>;

struct ProducerInner {
    client: Client,
    commands: mpsc::UnboundedSender<Command>,
    partition_counts: PartitionCounts,
    buffer: Arc<Semaphore>,
    buffer_bytes: usize,
    /// An empty builder, only to size records.
    sizer: BatchBuilder,
}

/// A batching, pipelining producer. Cheap to clone; clones share batches.
/// Dropping the last clone still sends what was queued (await
/// [`Producer::flush`] first to know the outcome).
#[derive(Clone)]
pub struct Producer {
    inner: Arc<ProducerInner>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Producer {
    /// Starts a producer on `client`'s connection.
    pub fn new(client: Client, options: ProducerOptions) -> Producer {
        let options = ProducerOptions {
            linger: options.linger,
            max_batch_records: options.max_batch_records.clamp(1, BATCH_RECORDS_MAX),
            max_batch_bytes: options.max_batch_bytes.clamp(1, BATCH_BYTES_MAX),
            max_in_flight: options.max_in_flight.max(1),
            max_in_flight_per_partition: options.max_in_flight_per_partition.max(1),
            // Room for at least one largest message; u32 permits.
            buffer_bytes: options
                .buffer_bytes
                .clamp(2 * RECORD_BYTES_MAX, u32::MAX as usize),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let partition_counts = PartitionCounts::default();
        let worker = Worker::new(
            client.clone(),
            Arc::clone(&partition_counts),
            options.clone(),
        );
        tokio::spawn(worker.run(rx));
        Producer {
            inner: Arc::new(ProducerInner {
                client,
                commands: tx,
                partition_counts,
                buffer: Arc::new(Semaphore::new(options.buffer_bytes)),
                buffer_bytes: options.buffer_bytes,
                sizer: BatchBuilder::new(),
            }),
        }
    }

    /// Queues a message. Returns once it is queued (waiting first if the
    /// buffer is full); the returned future resolves when the server has
    /// acknowledged it, with its partition and offset, or with the error of
    /// its batch.
    ///
    /// Errors returned here (before queuing): the topic's partition count
    /// could not be learnt for a keyed message (`UNKNOWN_TOPIC`, …), the
    /// message is too large (`MESSAGE_TOO_LARGE`), or it has too many
    /// headers. Messages queued by sequential `send` calls keep their order
    /// within a partition.
    pub async fn send(&self, topic: &str, message: Message) -> Result<DeliveryFuture, ClientError> {
        let (slot, record, size) = self.prepare(topic, message, now_ms()).await?;
        let cost = (size + 64).min(self.inner.buffer_bytes) as u32;
        let permit = Arc::clone(&self.inner.buffer)
            .acquire_many_owned(cost)
            .await
            .map_err(|_| ClientError::Closed("the producer is closed".to_owned()))?;
        let (reply, rx) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Send(Queued {
                topic: topic.to_owned(),
                slot,
                record,
                size,
                reply: Reply::One(reply, permit),
            }))
            .map_err(|_| ClientError::Closed("the producer is closed".to_owned()))?;
        Ok(DeliveryFuture { rx })
    }

    /// Queues many messages at once: the same batching, ordering and
    /// outcomes as calling [`Producer::send`] for each in turn, but one call
    /// and one future for all (as a Redis pipeline answers its commands
    /// together), so a caller sending in bulk pays the per-message waiting
    /// machinery once. Not atomic: the messages may go in several batches,
    /// and each has its own outcome, in the order given.
    ///
    /// Waits for buffer room for all of the call's messages at once; a call
    /// larger than [`ProducerOptions::buffer_bytes`] waits for the whole
    /// buffer to be free and then holds more than it, until answered.
    ///
    /// Errors returned here (before anything is queued) are those of
    /// `send`, for the first message that has one.
    pub async fn send_batch(
        &self,
        topic: &str,
        messages: impl IntoIterator<Item = Message>,
    ) -> Result<BatchDeliveryFuture, ClientError> {
        let mut prepared = Vec::new();
        let mut cost = 0usize;
        // The messages of one call are sent at one time.
        let timestamp_ms = now_ms();
        for message in messages {
            let (slot, record, size) = self.prepare(topic, message, timestamp_ms).await?;
            cost = cost.saturating_add(size + 64);
            prepared.push((slot, record, size));
        }
        let count = prepared.len();
        let (tx, rx) = oneshot::channel();
        if count == 0 {
            let _ = tx.send(Vec::new());
            return Ok(BatchDeliveryFuture { rx, count });
        }
        let cost = cost.min(self.inner.buffer_bytes) as u32;
        let permit = Arc::clone(&self.inner.buffer)
            .acquire_many_owned(cost)
            .await
            .map_err(|_| ClientError::Closed("the producer is closed".to_owned()))?;
        let gather = Arc::new(Gather {
            state: Mutex::new(GatherState {
                outcomes: (0..count).map(|_| None).collect(),
                left: count,
                tx: Some(tx),
                permit: Some(permit),
            }),
        });
        let queued = prepared
            .into_iter()
            .enumerate()
            .map(|(index, (slot, record, size))| Queued {
                topic: String::new(),
                slot,
                record,
                size,
                reply: Reply::Many(Arc::clone(&gather), index),
            })
            .collect();
        self.inner
            .commands
            .send(Command::SendMany(topic.to_owned(), queued))
            .map_err(|_| ClientError::Closed("the producer is closed".to_owned()))?;
        Ok(BatchDeliveryFuture { rx, count })
    }

    /// Routes and checks one message: its slot, its record and the bytes
    /// it adds to a batch.
    async fn prepare(
        &self,
        topic: &str,
        message: Message,
        timestamp_ms: i64,
    ) -> Result<(Slot, QueuedRecord, usize), ClientError> {
        let slot = match (message.partition, &message.key) {
            (Some(p), _) => Slot::Partition(p),
            (None, Some(key)) => {
                let count = self.partition_count(topic).await?;
                Slot::Partition(partition_for_key(key, count))
            }
            (None, None) => Slot::Spread,
        };
        let headers = message.record_headers();
        if headers.len() > RECORD_HEADERS_MAX {
            return Err(ClientError::local(
                ErrorCode::InvalidRequest,
                format!(
                    "a message has {} headers; at most {RECORD_HEADERS_MAX} are allowed",
                    headers.len()
                ),
            ));
        }
        let record = QueuedRecord {
            key: message.key,
            value: message.value,
            headers,
            timestamp_ms,
        };
        let size = self.inner.sizer.record_size_of(&record.parts());
        if size > RECORD_BYTES_MAX {
            return Err(ClientError::local(
                ErrorCode::MessageTooLarge,
                format!("the message encodes to {size} bytes; the maximum is {RECORD_BYTES_MAX}"),
            ));
        }
        Ok((slot, record, size))
    }

    /// Waits until every message queued before this call has been
    /// acknowledged or has failed (the outcome of each is in its
    /// [`DeliveryFuture`]). Open batches are sent at once, without lingering.
    ///
    /// After a failed batch, later sends to the same partition fail with the
    /// same error until `flush` is called, so a partition never stores a
    /// message after a gap; `flush` is where the caller takes note and resumes.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Flush(tx))
            .map_err(|_| ClientError::Closed("the producer is closed".to_owned()))?;
        rx.await
            .map_err(|_| ClientError::Closed("the producer stopped while flushing".to_owned()))
    }

    /// The topic's partition count, from the cache or `describe_topic`.
    async fn partition_count(&self, topic: &str) -> Result<u32, ClientError> {
        let cached = lock(&self.inner.partition_counts).get(topic).copied();
        if let Some(n) = cached {
            return Ok(n);
        }
        let description = self.inner.client.describe_topic(topic).await?;
        let n = u32::try_from(description.partitions.len()).unwrap_or(u32::MAX);
        if n == 0 {
            return Err(ClientError::Protocol(format!(
                "the server described topic {topic:?} with no partitions"
            )));
        }
        lock(&self.inner.partition_counts).insert(topic.to_owned(), n);
        Ok(n)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A batch being filled or waiting to go.
struct Batch {
    topic: String,
    slot: Slot,
    builder: BatchBuilder,
    replies: Vec<Reply>,
    deadline: Instant,
    /// The batch's number; the halves of a split batch keep it.
    seq: u64,
}

/// A sent batch's waiters and its answer.
struct Sent {
    topic: String,
    slot: Slot,
    seq: u64,
    replies: Vec<Reply>,
    /// The encoded batch (shared with the request, not copied), kept to
    /// split it if the topic is full.
    batch: Bytes,
}

type InFlight = Pin<Box<dyn Future<Output = (Sent, Result<ResponseBody, ClientError>)> + Send>>;
type SlotKey = (String, Slot);

struct Worker {
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
    /// Flush waiters: done once every batch numbered below theirs is answered.
    flushes: Vec<(u64, oneshot::Sender<()>)>,
    /// Slots whose last batch failed: later sends fail with the same error
    /// until the next `flush`, so a partition never stores a message after
    /// a gap (what is stored is a prefix of what was sent).
    poisoned: HashMap<SlotKey, ClientError>,
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
    fn new(client: Client, partition_counts: PartitionCounts, options: ProducerOptions) -> Worker {
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
            flushes: Vec::new(),
            poisoned: HashMap::new(),
            options,
            batch_bytes_hints: HashMap::new(),
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
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
                    if next_deadline.is_some() => {}
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
        }
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

    /// Sends ready batches while the window has room, oldest first, each
    /// only while its slot is below its own in-flight limit (a slot's later
    /// batches wait behind its earlier ones); then open batches whose linger
    /// is over, oldest first, if their slot can send now.
    ///
    /// An open batch whose linger is over but whose slot is busy stays open
    /// and keeps taking messages until it can go (as Kafka's accumulator
    /// does): messages that pile up while requests are slow (a stalled
    /// fdatasync, say) then leave in one batch when an answer frees the
    /// slot, instead of one small batch per message, each waiting its turn.
    fn dispatch(&mut self) {
        let mut index = 0;
        // Slots with a ready batch left behind: their open batches wait too.
        let mut held_back: Vec<SlotKey> = Vec::new();
        while self.in_flight.len() < self.options.max_in_flight && index < self.ready.len() {
            let Some(batch) = self.ready.get(index) else {
                return;
            };
            let key = (batch.topic.clone(), batch.slot);
            if self.slot_busy(&key) {
                if !held_back.contains(&key) {
                    held_back.push(key);
                }
                index += 1;
                continue;
            }
            let Some(batch) = self.ready.remove(index) else {
                return;
            };
            self.send_batch(key, batch);
        }
        if self.in_flight.len() >= self.options.max_in_flight || self.open.is_empty() {
            return;
        }
        let now = Instant::now();
        // Only batches that can go now are collected (so a batch waiting for
        // its slot costs no allocation per turn); sending one does not make
        // another's slot busy (one open batch per slot).
        let mut due: Vec<(u64, SlotKey)> = self
            .open
            .iter()
            .filter(|(key, b)| {
                b.deadline <= now && !held_back.contains(key) && !self.slot_busy(key)
            })
            .map(|(key, b)| (b.seq, key.clone()))
            .collect();
        due.sort_unstable_by_key(|(seq, _)| *seq);
        for (_, key) in due {
            if self.in_flight.len() >= self.options.max_in_flight {
                return;
            }
            if let Some(batch) = self.open.remove(&key) {
                self.send_batch(key, batch);
            }
        }
    }

    /// Whether `key`'s slot has as many requests in flight as it may.
    fn slot_busy(&self, key: &SlotKey) -> bool {
        self.slot_in_flight.get(key).copied().unwrap_or(0)
            >= self.options.max_in_flight_per_partition
    }

    fn send_batch(&mut self, key: SlotKey, batch: Batch) {
        let Batch {
            topic,
            slot,
            builder,
            replies,
            seq,
            ..
        } = batch;
        if replies.is_empty() {
            self.part_done(seq);
            return;
        }
        let size = builder.size_bytes().min(self.options.max_batch_bytes);
        match self.batch_bytes_hints.get_mut(&key) {
            Some(hint) => *hint = size,
            None => {
                self.batch_bytes_hints.insert(key.clone(), size);
            }
        }
        let bytes = match builder.finish() {
            Ok(bytes) => Bytes::from(bytes),
            Err(e) => {
                let e = ClientError::local(e.code(), e.to_string());
                self.fail(replies, &e);
                self.part_done(seq);
                return;
            }
        };
        let request = Request::Produce(p::Produce {
            topic: topic.clone(),
            routing: match slot {
                Slot::Partition(n) => Routing::Partition(n),
                Slot::Spread => Routing::Spread,
            },
            batch: bytes.clone(),
        });
        match self.client.start(&request) {
            Ok(response) => {
                *self.slot_in_flight.entry(key).or_default() += 1;
                self.in_flight.push(
                    response
                        .map(move |result| {
                            let sent = Sent {
                                topic,
                                slot,
                                seq,
                                replies,
                                batch: bytes,
                            };
                            (sent, result)
                        })
                        .boxed(),
                );
            }
            Err(e) => {
                self.fail(replies, &e);
                self.part_done(seq);
            }
        }
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

    fn fail(&mut self, replies: Vec<Reply>, e: &ClientError) {
        for reply in replies {
            reply.send(Err(e.clone()));
        }
    }

    fn complete(&mut self, sent: Sent, result: Result<ResponseBody, ClientError>) {
        let key = (sent.topic.clone(), sent.slot);
        let still_busy = match self.slot_in_flight.get_mut(&key) {
            Some(n) => {
                *n = n.saturating_sub(1);
                let busy = *n;
                if busy == 0 {
                    self.slot_in_flight.remove(&key);
                }
                busy > 0
            }
            None => false,
        };
        let result = match result {
            Ok(ResponseBody::Produced(produced)) => Ok(produced),
            Ok(other) => Err(ClientError::Protocol(format!(
                "expected a PRODUCE response, got {}",
                other.op()
            ))),
            Err(e) => Err(e),
        };
        let e = match result {
            Ok(produced) if answered(&produced) != Some(sent.replies.len() as u64) => {
                // Duplicate suppression (`spool-msg-id`): some records were
                // stored before, so the answer names only the new ones (or
                // the first original), not one offset per record. Everything
                // is stored now, so the halves, sent again, are duplicates
                // throughout; the server names consecutive originals exactly,
                // and a single record always. (Only a dedup window shorter
                // than this round trip could store a record twice here.)
                match split(sent, self.options.linger) {
                    Ok((first, second)) => {
                        if let Some(parts) = self.incomplete.get_mut(&first.seq) {
                            *parts += 1;
                        }
                        self.ready.push_front(second);
                        self.ready.push_front(first);
                    }
                    Err(sent) => {
                        let e = ClientError::Protocol(format!(
                            "the server stored a batch of {} records as offsets {}..={}",
                            sent.replies.len(),
                            produced.base_offset,
                            produced.last_offset
                        ));
                        self.fail(sent.replies, &e);
                        self.part_done(sent.seq);
                    }
                }
                return;
            }
            Ok(produced) => {
                let delivered = |index: usize| Delivered {
                    partition: produced.partition,
                    offset: produced.base_offset.saturating_add(index as u64),
                };
                let mut replies = sent.replies.into_iter().enumerate().peekable();
                while let Some((index, reply)) = replies.next() {
                    match reply {
                        // A run of one `send_batch` call's messages is
                        // answered under one lock.
                        Reply::Many(gather, first) => {
                            let mut state = lock(&gather.state);
                            gather.set_locked(&mut state, first, Ok(delivered(index)));
                            while let Some((i, Reply::Many(g, at))) = replies.peek() {
                                if !Arc::ptr_eq(g, &gather) {
                                    break;
                                }
                                gather.set_locked(&mut state, *at, Ok(delivered(*i)));
                                replies.next();
                            }
                        }
                        one => one.send(Ok(delivered(index))),
                    }
                }
                self.part_done(sent.seq);
                self.recycle(sent.batch);
                return;
            }
            Err(e) => e,
        };
        if matches!(
            e.code(),
            Some(ErrorCode::UnknownTopic | ErrorCode::UnknownPartition)
        ) {
            // The topic may have been recreated with another count.
            lock(&self.partition_counts).remove(&sent.topic);
        }
        let full = e.code() == Some(ErrorCode::QueueFull);
        if full && sent.replies.len() > 1 && !still_busy {
            // Nothing of the batch was written. Retry it in halves, in order,
            // so that exactly the messages that fit are stored.
            match split(sent, self.options.linger) {
                Ok((first, second)) => {
                    if let Some(parts) = self.incomplete.get_mut(&first.seq) {
                        *parts += 1;
                    }
                    self.ready.push_front(second);
                    self.ready.push_front(first);
                }
                Err(sent) => {
                    self.fail(sent.replies, &e);
                    self.part_done(sent.seq);
                }
            }
            return;
        }
        self.fail(sent.replies, &e);
        self.part_done(sent.seq);
        // What is stored must stay a prefix of what was sent, per partition:
        // everything queued behind the failed batch for its slot (the rest
        // of a split batch, later batches, the batch being filled) fails
        // too, instead of being appended after a gap.
        let key: SlotKey = (sent.topic.clone(), sent.slot);
        self.poisoned.insert(key.clone(), e.clone());
        let (mut doomed, rest): (VecDeque<Batch>, VecDeque<Batch>) =
            std::mem::take(&mut self.ready)
                .into_iter()
                .partition(|b| b.seq == sent.seq || (b.topic.clone(), b.slot) == key);
        self.ready = rest;
        if let Some(open) = self.open.remove(&key) {
            doomed.push_back(open);
        }
        for b in doomed {
            self.fail(b.replies, &e);
            self.part_done(b.seq);
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

/// Encodes a queued message into `batch` and keeps its waiter (or answers
/// it with the error). Returns whether the batch is now full.
fn push(batch: &mut Batch, q: Queued, max_records: usize, max_bytes: usize) -> bool {
    match batch.builder.push_parts(&q.record.parts()) {
        Ok(()) => batch.replies.push(q.reply),
        Err(e) => q
            .reply
            .send(Err(ClientError::local(e.code(), e.to_string()))),
    }
    batch.builder.len() >= max_records || batch.builder.size_bytes() >= max_bytes
}

/// Splits a sent batch into two batches of its records (first half, second
/// half), each with its messages' waiters. Gives the batch back if it cannot
/// be re-read.
fn split(mut sent: Sent, linger: Duration) -> Result<(Batch, Batch), Sent> {
    let Some(records) = reread(&sent.batch) else {
        return Err(sent);
    };
    if records.len() != sent.replies.len() || records.len() < 2 {
        return Err(sent);
    }
    let mid = records.len() / 2;
    let build = |part: &[NewRecord]| -> Option<BatchBuilder> {
        let mut builder = BatchBuilder::new();
        for r in part {
            builder.push(r).ok()?;
        }
        Some(builder)
    };
    let (Some(first), Some(second)) = (build(&records[..mid]), build(&records[mid..])) else {
        return Err(sent);
    };
    let second_replies = sent.replies.split_off(mid);
    let deadline = Instant::now() + linger;
    let half = |builder, replies| Batch {
        topic: sent.topic.clone(),
        slot: sent.slot,
        builder,
        replies,
        deadline,
        seq: sent.seq,
    };
    let first = half(first, std::mem::take(&mut sent.replies));
    let second = half(second, second_replies);
    Ok((first, second))
}

/// How many records a produce answer's offset range covers.
fn answered(produced: &p::Produced) -> Option<u64> {
    produced
        .last_offset
        .checked_sub(produced.base_offset)
        .map(|d| d.saturating_add(1))
}

/// The records of one encoded batch, as they were queued.
fn reread(batch: &[u8]) -> Option<Vec<NewRecord>> {
    let header = spool_batch::validate(batch).ok()?;
    let mut records = Vec::new();
    for record in spool_batch::records(batch, &header) {
        let r = record.ok()?;
        records.push(NewRecord {
            key: r.key.map(<[u8]>::to_vec),
            value: r.value.map(<[u8]>::to_vec),
            headers: r
                .headers
                .iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect(),
            timestamp_ms: header.base_timestamp.saturating_add(r.timestamp_delta),
        });
    }
    Some(records)
}
