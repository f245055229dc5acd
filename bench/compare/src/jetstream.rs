//! NATS JetStream through `async-nats`: file-storage streams with one
//! subject; publishing awaits each publish ack, with `window` of them
//! outstanding; reading is an ordered pull consumer; the queue is a durable
//! pull consumer with explicit acks, each worker a pull stream of its own.
//!
//! nats-server syncs JetStream files every 2 minutes by default
//! (`sync_interval`); run.sh sets `sync_interval: always` for the durable
//! tier when the installed server knows the setting and says so with
//! `--nats-sync-always`.
//!
//! In cluster mode (`crate::cluster`) the client is given every node's
//! address (it picks one, shuffled, as it does by default, and the server
//! routes to the stream's leader), and each stream has a replica on every
//! node (`num_replicas`).

use crate::common::{self, Acks, Done, Durability, Expect, Latencies, Rate, Tier};
use crate::Ctx;
use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::context::ContextBuilder;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use async_nats::jetstream::Context;
use futures::StreamExt;
use serde_json::Value;
use std::time::{Duration, Instant};

const CONSUMER: &str = "work";

pub fn durability(tier: Tier, sync_always: bool) -> Durability {
    match (tier, sync_always) {
        (Tier::Durable, true) => Durability {
            setting: "file storage, `sync_interval: always`",
            promise: "stored and fsync'd before the publish ack",
            level: 2,
        },
        (Tier::Durable, false) => Durability {
            setting: "file storage, default sync (this nats-server has no `sync_interval`)",
            promise: "written to the page cache before the publish ack; fsync'd every 2 min",
            level: 0,
        },
        (Tier::Default, _) => Durability {
            setting: "file storage, default sync",
            promise: "written to the page cache before the publish ack; fsync'd every 2 min",
            level: 0,
        },
    }
}

/// The durable tier on a cluster (`--cluster` with several nodes).
pub fn cluster_durability(sync_always: bool) -> Durability {
    if sync_always {
        Durability {
            setting: "file storage, `sync_interval: always`, a replica on every node",
            promise: "stored and fsync'd on a majority of the replicas before the publish ack",
            level: 2,
        }
    } else {
        Durability {
            setting: "file storage, default sync (this nats-server has no `sync_interval`), a replica on every node",
            promise: "written to the page cache of a majority of the replicas before the publish ack; fsync'd every 2 min",
            level: 0,
        }
    }
}

/// How long a new cluster may take to elect its leaders.
const SETTLE: Duration = Duration::from_secs(60);

async fn connect(ctx: &Ctx) -> anyhow::Result<Context> {
    let client = async_nats::connect(ctx.addrs().as_slice()).await?;
    Ok(ContextBuilder::new()
        .timeout(Duration::from_secs(30))
        .max_ack_inflight(ctx.plan.window)
        .backpressure_on_inflight(true)
        .build(client))
}

pub(crate) fn subject(stream: &str) -> String {
    format!("{stream}.in")
}

pub(crate) async fn create_stream(
    js: &Context,
    name: &str,
) -> anyhow::Result<async_nats::jetstream::stream::Stream> {
    let _ = js.delete_stream(name).await;
    Ok(js
        .create_stream(StreamConfig {
            name: name.to_owned(),
            subjects: vec![subject(name)],
            storage: StorageType::File,
            ..StreamConfig::default()
        })
        .await?)
}

pub(crate) async fn send(
    js: &Context,
    subject: &str,
    payload: bytes::Bytes,
) -> anyhow::Result<common::Ack> {
    let ack = js.publish(subject.to_owned(), payload).await?;
    Ok(Box::pin(async move {
        ack.await?;
        Ok(1)
    }))
}

async fn publish_n(
    js: &Context,
    name: &str,
    size: usize,
    count: u64,
    ctx: &Ctx,
    cap: Duration,
) -> anyhow::Result<(Rate, Instant)> {
    let (subject, payload) = (subject(name), bytes::Bytes::from(vec![b'x'; size]));
    let acks = Acks::new(ctx.plan.window);
    let start = Instant::now();
    let mut sent = 0;
    while sent < count && start.elapsed() < cap {
        acks.push(send(js, &subject, payload.clone()).await?)
            .await?;
        sent += 1;
    }
    let (acked, last) = acks.finish().await?;
    Ok((Rate::between(acked, size, start, last), start))
}

/// The stream of a tuned workload: as `create_stream`, or in cluster mode
/// with a replica on every node, once its leader and every replica are
/// current.
async fn stream_for(
    ctx: &Ctx,
    js: &Context,
    name: &str,
) -> anyhow::Result<async_nats::jetstream::stream::Stream> {
    if ctx.cluster.is_none() {
        return create_stream(js, name).await;
    }
    let _ = js.delete_stream(name).await;
    let config = StreamConfig {
        name: name.to_owned(),
        subjects: vec![subject(name)],
        storage: StorageType::File,
        num_replicas: ctx.replicas(),
        ..StreamConfig::default()
    };
    let deadline = Instant::now() + SETTLE;
    // A cluster that just started may have no JetStream meta leader yet.
    let mut stream = loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(stream) => break stream,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => return Err(anyhow::Error::from(e).context("creating the stream")),
        }
    };
    loop {
        let info = stream.info().await?;
        if let Some(c) = &info.cluster {
            let followers = c.replicas.iter().filter(|r| r.current && !r.offline);
            if c.leader.is_some() && followers.count() + 1 >= ctx.replicas() {
                common::note(&format!(
                    "{name}: stream leader {}",
                    c.leader.as_deref().unwrap_or("?")
                ));
                return Ok(stream);
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{name}: no leader with every replica current after {} s",
            SETTLE.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn publish(ctx: &Ctx, name: &str, size: usize, count: u64) -> anyhow::Result<Rate> {
    let js = connect(ctx).await?;
    stream_for(ctx, &js, name).await?;
    Ok(publish_n(&js, name, size, count, ctx, ctx.plan.publish_cap)
        .await?
        .0)
}

/// An ordered pull consumer (no acks) from the start of the stream.
async fn ordered(js: &Context, name: &str) -> anyhow::Result<pull::Ordered> {
    let stream = js.get_stream(name).await?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig::default())
        .await?;
    Ok(consumer.messages().await?)
}

pub async fn consume(ctx: &Ctx, name: &str, size: usize, count: u64) -> anyhow::Result<Rate> {
    let js = connect(ctx).await?;
    let mut messages = ordered(&js, name).await?;
    let start = Instant::now();
    let (mut read, mut last) = (0, None);
    while read < count {
        let next = tokio::time::timeout(common::DRAIN, messages.next()).await;
        let Ok(Some(message)) = next else {
            anyhow::bail!("the stream ended after {read} of {count}");
        };
        message?;
        read += 1;
        last = Some(Instant::now());
    }
    js.delete_stream(name).await?;
    Ok(Rate::between(read, size, start, last))
}

pub async fn end_to_end(ctx: &Ctx) -> anyhow::Result<Value> {
    let (name, size, rate) = ("cmp-e2e", ctx.plan.e2e_size, ctx.plan.e2e_rate);
    let js = connect(ctx).await?;
    stream_for(ctx, &js, name).await?;
    let mut messages = ordered(&connect(ctx).await?, name).await?;
    let expect = Expect::new();
    let until = expect.clone();
    let receiver = tokio::spawn(async move {
        let mut lat = Latencies::new();
        while lat.received < until.get() {
            if let Ok(next) = tokio::time::timeout(common::POLL, messages.next()).await {
                let message = next.ok_or_else(|| anyhow::anyhow!("the consumer ended"))??;
                lat.record(&message.payload, Instant::now());
            }
        }
        anyhow::Ok(lat)
    });
    let acks = Acks::new(ctx.plan.window);
    let (handle, tx, js2, subject) = (
        tokio::runtime::Handle::current(),
        acks.sender(),
        js.clone(),
        subject(name),
    );
    let sender = move |due: Instant| {
        let payload = bytes::Bytes::from(common::stamped(size, due));
        tx.push_blocking(handle.block_on(send(&js2, &subject, payload))?)
    };
    let (sent, send_s) = common::paced(rate, ctx.plan.e2e_duration, sender).await?;
    acks.finish().await?;
    expect.set(sent);
    let lat = tokio::time::timeout(common::DRAIN, receiver).await???;
    js.delete_stream(name).await?;
    Ok(lat.json(sent, rate, size, send_s))
}

pub async fn queue(ctx: &Ctx) -> anyhow::Result<Rate> {
    let (name, size, plan) = ("cmp-queue", ctx.plan.queue_size, &ctx.plan);
    let js = connect(ctx).await?;
    let stream = stream_for(ctx, &js, name).await?;
    stream
        .create_consumer(pull::Config {
            durable_name: Some(CONSUMER.to_owned()),
            ack_policy: AckPolicy::Explicit,
            // Not the limit: every worker's batch may be out at once.
            max_ack_pending: (plan.workers * plan.receive_max * 4) as i64,
            ..pull::Config::default()
        })
        .await?;
    let done = Done::new();
    let mut workers = Vec::new();
    for _ in 0..plan.workers {
        let js = connect(ctx).await?;
        let consumer: pull::Stream = js
            .get_stream(name)
            .await?
            .get_consumer::<pull::Config>(CONSUMER)
            .await
            .map_err(|e| anyhow::anyhow!("get consumer: {e}"))?
            .stream()
            .max_messages_per_batch(plan.receive_max)
            .messages()
            .await?;
        let done = done.clone();
        workers.push(tokio::spawn(async move {
            let mut messages = consumer;
            while !done.finished() {
                let Ok(next) = tokio::time::timeout(common::POLL, messages.next()).await else {
                    continue;
                };
                let message = next.ok_or_else(|| anyhow::anyhow!("the consumer ended"))?;
                message?
                    .ack()
                    .await
                    .map_err(|e| anyhow::anyhow!("ack: {e}"))?;
                done.add(1);
            }
            anyhow::Ok(())
        }));
    }
    done.stop_at(Instant::now() + plan.queue_cap);
    let (published, start) =
        publish_n(&js, name, size, plan.queue_count, ctx, plan.queue_cap).await?;
    done.target.set(published.messages);
    common::join_workers(&done, workers).await?;
    js.delete_stream(name).await?;
    Ok(Rate::between(done.count(), size, start, done.last()))
}
