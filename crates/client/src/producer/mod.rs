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
//! A full topic refuses a whole batch (`QUEUE_FULL`, nothing written). Once
//! the partition's other requests are answered (and were refused too), the
//! producer retries the batch in halves, in order, so exactly the messages
//! that fit are stored and the first that does not, and every later message
//! of its partition until the next flush, fail with `QUEUE_FULL`.
//!
//! Modules: [`message`] (what a caller sends and gets back), [`delivery`]
//! (the futures that resolve to outcomes, and who is answered), [`batch`]
//! (queued records, batches and the re-splitting of a refused one) and
//! [`worker`] (the background task: the open batches per slot, and in
//! `worker::dispatch` the window of requests in flight and their answers).

mod batch;
mod delivery;
mod message;
mod worker;

pub use delivery::{BatchDeliveryFuture, DeliveryFuture};
pub use message::{Delivered, Message, DELIVER_AT_HEADER, MESSAGE_ID_HEADER};

use crate::client::Client;
use crate::error::ClientError;
use batch::{Queued, QueuedRecord, Slot};
use delivery::{Gather, GatherState, Reply};
use spool_batch::BatchBuilder;
use spool_types::limits::{
    BATCH_BYTES_MAX, BATCH_RECORDS_MAX, RECORD_BYTES_MAX, RECORD_HEADERS_MAX,
};
use spool_types::partitioner::partition_for_key;
use spool_types::ErrorCode;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};
use worker::{Command, Worker};

/// [`ProducerOptions::cluster_linger`]'s default: none for now. With 1 ms
/// the fault harness's producers stalled: mostly on a leader left without
/// a majority (now answered `TIMEOUT` within 10 s), but once, after that
/// fix, for over a minute with no cause found yet, so the measured latency
/// gain waits.
pub const CLUSTER_LINGER_MS_DEFAULT: u64 = 0;

/// Batching and pipelining settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerOptions {
    /// How long a batch waits for more messages before it is sent. If its
    /// partition's requests are all in flight then, the batch keeps taking
    /// messages until an answer makes room (or it is full).
    ///
    /// The default, 0, lets the producer decide by itself: a message to a
    /// partition with nothing in flight leaves at once (the latency of an
    /// unbatched send), and messages sent while a request is in flight
    /// gather in one batch that leaves when its answer comes (batches as
    /// large as the load makes them, as a long linger would). A linger
    /// above 0 holds even a lone message that long, for larger batches
    /// when traffic is light.
    pub linger: Duration,
    /// The least linger on a cluster node (one that hands this producer an
    /// id): there each batch is a Raft entry written and fdatasync'd on a
    /// majority, a round trip of milliseconds, so holding a message a
    /// moment costs little and cuts the batches, and with them the work,
    /// several times. Measured with 1 ms and `spool bench end-to-end` at
    /// 5,000 msgs/s of 1 KiB over 3 partitions on a 3-node `cluster dev`:
    /// p50 ~6 → 2.1–2.5 ms, p99 27–44 → 4.9–8.2 ms (BENCHMARKS.md). Off by
    /// default for now ([`CLUSTER_LINGER_MS_DEFAULT`]); a larger `linger`
    /// wins.
    pub cluster_linger: Duration,
    /// Most records in one batch (capped at the protocol's 100,000).
    pub max_batch_records: usize,
    /// Most bytes in one batch (capped at the protocol's 8 MiB). A single
    /// message larger than this still goes, alone in its batch.
    pub max_batch_bytes: usize,
    /// Most produce requests in flight at once, over all partitions.
    pub max_in_flight: usize,
    /// Most produce requests in flight per partition (and per topic for
    /// unkeyed messages, which the server spreads); 1 by default.
    ///
    /// With 1, what a partition stores is always a prefix of what was sent
    /// to it: after a refused batch nothing later is stored (until the next
    /// [`Producer::flush`]). More than one lets a message leave while its
    /// partition's last batch waits for its fdatasync, and the server makes
    /// both durable with one (more throughput for a producer that keeps a
    /// window of messages unacknowledged, whose batches otherwise take
    /// turns), but a later batch already in flight may be stored after an
    /// earlier one failed (`STORAGE_FULL`, say): a gap. (Kafka's producer
    /// has the same trade-off without idempotence.)
    ///
    /// A batch refused with `QUEUE_FULL` is held, with its partition's
    /// later batches, until every request of the partition is answered;
    /// if none of them was stored, they go again in order, the first in
    /// halves, so that exactly the messages that fit are stored, in order,
    /// and the rest fail. (If a later one was stored meanwhile, being
    /// smaller or finding space freed, the held ones fail: storing them
    /// now would reorder the partition.)
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
            linger: Duration::ZERO,
            cluster_linger: Duration::from_millis(CLUSTER_LINGER_MS_DEFAULT),
            max_batch_records: 1000,
            max_batch_bytes: 1024 * 1024,
            max_in_flight: 16,
            max_in_flight_per_partition: 1,
            buffer_bytes: 32 * 1024 * 1024,
        }
    }
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
            cluster_linger: options.cluster_linger,
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
            .map_err(|_| closed())?;
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
            .map_err(|_| closed())?;
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
            .map_err(|_| closed())?;
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
            .map_err(|_| closed())?;
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
            .map_err(|_| closed())?;
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

/// The error of a call on a producer whose background task has stopped.
fn closed() -> ClientError {
    ClientError::Closed("the producer is closed".to_owned())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
