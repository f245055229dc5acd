//! Spool through its own client (`spool-client`): a `Producer` (batches of
//! up to 1,000 records, 16 produce requests in flight; the publish workload
//! queues 1,000 messages per `send_batch` call, as Redis sends pipelines of
//! 1,000 XADDs, and so does the queue workload's publisher; end-to-end
//! sends one `send` per message), a `TopicReader`
//! (long-poll fetch, 1 MiB per partition), and a queue subscription worked
//! with `receive` + `ack`. One partition per topic.
//!
//! In cluster mode (`crate::cluster`) a topic has `cluster::PARTITIONS`
//! partitions, each with a replica on every node; every connection goes
//! to the first node of `--addr` that answers (as the CLI does with an
//! address list), which forwards produces for the partitions it does not
//! lead and serves reads from its own replicas.

use crate::common::{self, Ack, Acks, Done, Durability, Expect, Latencies, Rate, Tier};
use crate::Ctx;
use serde_json::Value;
use spool_client::{
    Client, ClientOptions, Durability as SpoolDurability, ErrorCode, Message, Producer,
    ProducerOptions, ReadStart, SubscriptionOptions, TopicConfig, TopicReader,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// `--fsync interval` of the default tier, matching Redis `everysec`.
const INTERVAL_MS: u32 = 1000;
const SUBSCRIPTION: &str = "work";

pub fn durability(tier: Tier) -> Durability {
    match tier {
        Tier::Durable => Durability {
            setting: "topic durability `always`",
            promise: "fdatasync'd before the ack (group commit)",
            level: 2,
        },
        Tier::Default => Durability {
            setting: "topic durability `interval`, 1000 ms",
            promise: "written to the page cache; fdatasync'd within 1 s",
            level: 1,
        },
    }
}

/// The durable tier on a cluster (`--cluster` with several nodes).
pub fn cluster_durability() -> Durability {
    Durability {
        setting: "topic durability `always`, 3 partitions, a replica of each on every node",
        promise: "committed: fdatasync'd on a majority of the replicas before the ack",
        level: 2,
    }
}

/// A connection to the first address of `--addr` that answers.
pub(crate) async fn connect(ctx: &Ctx) -> anyhow::Result<Client> {
    let mut last = None;
    for addr in ctx.addrs() {
        match Client::connect(addr, ClientOptions::default()).await {
            Ok(client) => return Ok(client),
            Err(e) => last = Some(anyhow::Error::from(e).context(format!("connecting to {addr}"))),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("--addr names no address")))
}

/// How long a new cluster may take to elect its leaders.
const SETTLE: Duration = Duration::from_secs(60);

pub(crate) async fn create_topic(ctx: &Ctx, name: &str) -> anyhow::Result<Client> {
    let admin = connect(ctx).await?;
    let durability = match ctx.tier {
        Tier::Durable => SpoolDurability::Always,
        Tier::Default => SpoolDurability::Interval {
            interval_ms: INTERVAL_MS,
        },
    };
    let mut config = TopicConfig {
        durability: Some(durability),
        ..TopicConfig::default()
    };
    if ctx.replicas() > 1 {
        config.extensions.push(spool_proto::ConfigExtension {
            tag: spool_proto::CONFIG_TAG_REPLICAS,
            value: (ctx.replicas() as u64).to_be_bytes().to_vec().into(),
        });
    }
    // Left over from an interrupted run?
    let _ = admin.delete_topic(name).await;
    if ctx.cluster.is_none() {
        admin.create_topic(name, 1, config).await?;
        return Ok(admin);
    }
    // A cluster that just started may not have elected its metadata
    // leader yet.
    let deadline = Instant::now() + SETTLE;
    loop {
        match admin
            .create_topic(name, ctx.partitions(), config.clone())
            .await
        {
            Ok(()) => break,
            // An earlier try that went through after all.
            Err(e) if e.code() == Some(ErrorCode::TopicExists) => break,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => return Err(anyhow::Error::from(e).context("creating the topic")),
        }
    }
    if ctx.replicas() > 1 {
        await_leaders(ctx, name).await?;
    }
    Ok(admin)
}

/// Waits until each partition of a new replicated topic has a leader that
/// counts every replica in sync (each node answers for the partitions it
/// leads), so that no workload's clock runs during the topic's elections,
/// and says which node leads which partition.
async fn await_leaders(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    let mut nodes = Vec::new();
    for addr in ctx.addrs() {
        nodes.push(Client::connect(addr, ClientOptions::default()).await?);
    }
    let deadline = Instant::now() + SETTLE;
    loop {
        let mut leaders = BTreeMap::new();
        for node in &nodes {
            let status = node.cluster_status().await?;
            for p in &status.partitions {
                if p.topic == name
                    && p.leader == Some(status.node_id)
                    && p.in_sync.len() >= ctx.replicas()
                {
                    leaders.insert(p.partition, status.node_id);
                }
            }
        }
        if leaders.len() >= ctx.partitions() as usize {
            let list: Vec<String> = leaders
                .iter()
                .map(|(p, node)| format!("{p} on node {node}"))
                .collect();
            common::note(&format!("{name}: partition leaders {}", list.join(", ")));
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{name}: {} of {} partitions have a leader with every replica in sync after {} s",
            leaders.len(),
            ctx.partitions(),
            SETTLE.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn producer(client: Client, ctx: &Ctx, linger: Duration) -> Producer {
    let options = ProducerOptions {
        linger,
        max_batch_records: ctx.plan.batch,
        // The protocol's limit, so that the record count decides.
        max_batch_bytes: 8 * 1024 * 1024,
        max_in_flight: ctx.plan.window / ctx.plan.batch,
        max_in_flight_per_partition: ctx.plan.window / ctx.plan.batch,
        ..ProducerOptions::default()
    };
    Producer::new(client, options)
}

pub(crate) async fn send(
    producer: &Producer,
    topic: &str,
    payload: bytes::Bytes,
) -> anyhow::Result<Ack> {
    let delivery = producer.send(topic, Message::new(payload)).await?;
    Ok(Box::pin(async move {
        delivery.await?;
        Ok(1)
    }))
}

/// Queues `n` messages with one `send_batch` call (one future for all, as a
/// Redis pipeline answers its commands together); resolves when all are
/// acknowledged.
async fn send_many(
    producer: &Producer,
    topic: &str,
    payload: &bytes::Bytes,
    n: u64,
) -> anyhow::Result<Ack> {
    let messages = (0..n).map(|_| Message::new(payload.clone()));
    let delivery = producer.send_batch(topic, messages).await?;
    Ok(Box::pin(async move {
        for outcome in delivery.await {
            outcome?;
        }
        Ok(n)
    }))
}

pub async fn publish(ctx: &Ctx, name: &str, size: usize, count: u64) -> anyhow::Result<Rate> {
    create_topic(ctx, name).await?;
    let producer = producer(connect(ctx).await?, ctx, Duration::from_millis(5));
    // Static, so the harness's copies of it cost no reference counting
    // (Redis's pipeline borrows its payload the same way).
    let payload = bytes::Bytes::from_static(vec![b'x'; size].leak());
    // The window counts calls, as Redis's counts pipelines: the same
    // number of messages unacknowledged at most.
    let batch = ctx.plan.batch as u64;
    let acks = Acks::new(ctx.plan.window / ctx.plan.batch);
    let start = Instant::now();
    let mut sent = 0;
    while sent < count && start.elapsed() < ctx.plan.publish_cap {
        let n = batch.min(count - sent);
        acks.push(send_many(&producer, name, &payload, n).await?)
            .await?;
        sent += n;
    }
    producer.flush().await?;
    let (acked, last) = acks.finish().await?;
    Ok(Rate::between(acked, size, start, last))
}

pub async fn consume(ctx: &Ctx, name: &str, size: usize, count: u64) -> anyhow::Result<Rate> {
    let mut reader = TopicReader::new(connect(ctx).await?, name, ReadStart::Earliest).await?;
    let start = Instant::now();
    let (mut read, mut last) = (0, None);
    while read < count {
        let records = reader.poll(Duration::from_millis(100)).await?;
        if records.is_empty() {
            anyhow::ensure!(start.elapsed() < common::DRAIN, "read {read} of {count}");
            continue;
        }
        read += records.len() as u64;
        last = Some(Instant::now());
    }
    connect(ctx).await?.delete_topic(name).await?;
    Ok(Rate::between(read, size, start, last))
}

pub async fn end_to_end(ctx: &Ctx) -> anyhow::Result<Value> {
    let (name, size, rate) = ("cmp-e2e", ctx.plan.e2e_size, ctx.plan.e2e_rate);
    create_topic(ctx, name).await?;
    let mut reader = TopicReader::new(connect(ctx).await?, name, ReadStart::Earliest).await?;
    let expect = Expect::new();
    let until = expect.clone();
    let receiver = tokio::spawn(async move {
        let mut lat = Latencies::new();
        while lat.received < until.get() {
            for r in reader.poll(common::POLL).await? {
                lat.record(r.value.as_deref().unwrap_or_default(), Instant::now());
            }
        }
        anyhow::Ok(lat)
    });
    // Linger 0: a batch goes as soon as the window has room.
    let producer = producer(connect(ctx).await?, ctx, Duration::ZERO);
    let acks = Acks::new(ctx.plan.window);
    let (handle, tx, p) = (
        tokio::runtime::Handle::current(),
        acks.sender(),
        producer.clone(),
    );
    let sender = move |due: Instant| {
        let payload = bytes::Bytes::from(common::stamped(size, due));
        tx.push_blocking(handle.block_on(send(&p, name, payload))?)
    };
    let (sent, send_s) = common::paced(rate, ctx.plan.e2e_duration, sender).await?;
    producer.flush().await?;
    acks.finish().await?;
    expect.set(sent);
    let lat = tokio::time::timeout(common::DRAIN, receiver).await???;
    connect(ctx).await?.delete_topic(name).await?;
    Ok(lat.json(sent, rate, size, send_s))
}

pub async fn queue(ctx: &Ctx) -> anyhow::Result<Rate> {
    let (name, size, plan) = ("cmp-queue", ctx.plan.queue_size, &ctx.plan);
    let admin = create_topic(ctx, name).await?;
    let options = SubscriptionOptions {
        // Never dead-letter in a benchmark.
        max_deliveries: 0,
        ..SubscriptionOptions::default()
    };
    admin
        .create_subscription(name, SUBSCRIPTION, options)
        .await?;
    let done = Done::new();
    let mut workers = Vec::new();
    for _ in 0..plan.workers {
        let client = connect(ctx).await?;
        let (done, max) = (done.clone(), plan.receive_max as u32);
        workers.push(tokio::spawn(async move {
            while !done.finished() {
                let leased = client
                    .receive(name, SUBSCRIPTION, max, Duration::from_millis(500))
                    .await?;
                if leased.is_empty() {
                    continue;
                }
                let receipts: Vec<String> = leased.iter().map(|m| m.receipt.clone()).collect();
                for r in client.ack(name, SUBSCRIPTION, &receipts).await? {
                    r?;
                }
                done.add(receipts.len() as u64);
            }
            anyhow::Ok(())
        }));
    }
    let producer = producer(connect(ctx).await?, ctx, Duration::ZERO);
    let payload = bytes::Bytes::from(vec![b'x'; size]);
    // Published as in the publish workload (Redis's queue run uses its
    // pipelines too).
    let batch = plan.batch as u64;
    let acks = Acks::new(plan.window / plan.batch);
    let start = Instant::now();
    done.stop_at(start + plan.queue_cap);
    let mut sent = 0;
    while sent < plan.queue_count && start.elapsed() < plan.queue_cap {
        let n = batch.min(plan.queue_count - sent);
        acks.push(send_many(&producer, name, &payload, n).await?)
            .await?;
        sent += n;
    }
    producer.flush().await?;
    let (published, _) = acks.finish().await?;
    done.target.set(published);
    common::join_workers(&done, workers).await?;
    admin.delete_topic(name).await?;
    Ok(Rate::between(done.count(), size, start, done.last()))
}
