//! The producer side of the workloads: one `Client` + `Producer` per
//! producer, sending as fast as acknowledgements allow or at a fixed rate.
//!
//! Paced sending runs on its own OS thread and sleeps with
//! `std::thread::sleep` (tens of µs of accuracy; tokio's timer has 1 ms
//! granularity, which would add up to a millisecond to every latency). Each
//! message's schedule is fixed in advance (`start + k / rate`), and a
//! latency workload stamps the *scheduled* time into the payload, so a
//! sender that falls behind (a slow acknowledgement, a full buffer) does
//! not hide the delay it causes: coordinated omission is corrected.

use super::stamp;
use spool_client::{Client, ClientError, DeliveryFuture, Message, Producer, ProducerOptions};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What one producer sends.
#[derive(Debug, Clone)]
pub struct SendSpec {
    pub topic: String,
    /// Stop after this many messages…
    pub count: Option<u64>,
    /// …or at this time.
    pub until: Option<Instant>,
    /// This producer's messages/s; `None`: unpaced.
    pub rate: Option<f64>,
    pub size: usize,
    /// Write the (scheduled) send time into each payload.
    pub stamp: bool,
    pub options: ProducerOptions,
}

/// What one producer achieved.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sent {
    /// Messages acknowledged by the server.
    pub acked: u64,
    /// When the last acknowledgement arrived.
    pub last_ack: Option<Instant>,
}

/// Producer options for the bench: `--batch` records per batch (the byte
/// limit raised to the protocol's, so that the record count decides),
/// `--window` requests in flight, also per partition.
pub fn producer_options(batch: usize, window: usize, linger: Duration) -> ProducerOptions {
    ProducerOptions {
        linger,
        max_batch_records: batch,
        max_batch_bytes: spool_types::limits::BATCH_BYTES_MAX,
        max_in_flight: window,
        max_in_flight_per_partition: window,
        ..ProducerOptions::default()
    }
}

/// Awaits delivery futures in sending order, counting acknowledgements.
async fn ack_loop(
    mut rx: mpsc::UnboundedReceiver<DeliveryFuture>,
    acked: Arc<AtomicU64>,
) -> Result<Sent, ClientError> {
    let mut sent = Sent::default();
    while let Some(delivery) = rx.recv().await {
        delivery.await?;
        sent.acked += 1;
        acked.fetch_add(1, Ordering::Relaxed);
        sent.last_ack = Some(Instant::now());
    }
    Ok(sent)
}

/// The payload of message number `k`: a shared template, or with the send
/// time `at` in its first bytes.
struct Payloads {
    template: bytes::Bytes,
    stamp: bool,
    epoch: Instant,
}

impl Payloads {
    fn new(size: usize, stamp: bool, epoch: Instant) -> Payloads {
        Payloads {
            template: bytes::Bytes::from(vec![b'x'; size]),
            stamp,
            epoch,
        }
    }

    fn at(&self, at: Instant) -> bytes::Bytes {
        if !self.stamp {
            return self.template.clone();
        }
        let mut v = self.template.to_vec();
        stamp::write(&mut v, at, self.epoch);
        bytes::Bytes::from(v)
    }
}

/// Runs one producer from `start` on; `acked` counts acknowledgements
/// across producers (for the progress bar).
pub async fn run(
    client: Client,
    spec: SendSpec,
    epoch: Instant,
    start: Instant,
    acked: Arc<AtomicU64>,
) -> anyhow::Result<Sent> {
    let producer = Producer::new(client, spec.options.clone());
    let (tx, rx) = mpsc::unbounded_channel();
    let acker = tokio::spawn(ack_loop(rx, acked));
    let payloads = Payloads::new(spec.size, spec.stamp, epoch);
    let sending = match spec.rate {
        None => send_unpaced(&producer, &spec, &payloads, tx).await,
        Some(rate) => {
            let handle = tokio::runtime::Handle::current();
            let producer = producer.clone();
            tokio::task::spawn_blocking(move || {
                send_paced(&handle, &producer, &spec, &payloads, rate, start, tx)
            })
            .await
            .map_err(|e| ClientError::Closed(format!("the paced sender failed: {e}")))
            .and_then(|r| r)
        }
    };
    let flushed = producer.flush().await;
    let acks = acker
        .await
        .map_err(|e| anyhow::anyhow!("the acknowledgement task failed: {e}"))?;
    // An acknowledgement error says most about what went wrong.
    let sent = acks?;
    sending?;
    flushed?;
    Ok(sent)
}

async fn send_unpaced(
    producer: &Producer,
    spec: &SendSpec,
    payloads: &Payloads,
    tx: mpsc::UnboundedSender<DeliveryFuture>,
) -> Result<(), ClientError> {
    let mut n = 0u64;
    loop {
        if spec.count.is_some_and(|c| n >= c) {
            return Ok(());
        }
        let now = Instant::now();
        if spec.until.is_some_and(|u| now >= u) {
            return Ok(());
        }
        let delivery = producer
            .send(&spec.topic, Message::new(payloads.at(now)))
            .await?;
        if tx.send(delivery).is_err() {
            // The acknowledgement task stopped on an error; it reports it.
            return Ok(());
        }
        n += 1;
    }
}

fn send_paced(
    handle: &tokio::runtime::Handle,
    producer: &Producer,
    spec: &SendSpec,
    payloads: &Payloads,
    rate: f64,
    start: Instant,
    tx: mpsc::UnboundedSender<DeliveryFuture>,
) -> Result<(), ClientError> {
    let interval = 1.0 / rate.max(f64::MIN_POSITIVE);
    let mut n = 0u64;
    loop {
        if spec.count.is_some_and(|c| n >= c) {
            return Ok(());
        }
        let scheduled = start + Duration::from_secs_f64(n as f64 * interval);
        if spec.until.is_some_and(|u| scheduled >= u) {
            return Ok(());
        }
        let now = Instant::now();
        if scheduled > now {
            std::thread::sleep(scheduled - now);
        }
        let delivery =
            handle.block_on(producer.send(&spec.topic, Message::new(payloads.at(scheduled))))?;
        if tx.send(delivery).is_err() {
            return Ok(());
        }
        n += 1;
    }
}
