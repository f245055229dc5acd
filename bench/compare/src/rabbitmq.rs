//! RabbitMQ through `lapin` (AMQP 0-9-1): persistent messages
//! (delivery mode 2) published to the default exchange with publisher
//! confirms, `window` unconfirmed; a quorum queue in the durable tier, a
//! classic durable queue in the default tier. Reading is a consumer
//! without acks (the fastest way to drain a queue; it removes what it
//! reads); the queue workers consume with prefetch `receive_max` and ack
//! each delivery. Every connection has one channel.
//!
//! In cluster mode (`crate::cluster`) every connection goes to the first
//! node of `--addr` that answers (lapin takes one URI), and the quorum
//! queue, declared there, has a member on every node
//! (`x-quorum-initial-group-size`); its leader is the declaring node
//! (RabbitMQ's default `client-local` leader locator).

use crate::common::{self, Acks, Done, Durability, Expect, Latencies, Rate, Tier};
use crate::Ctx;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use serde_json::Value;
use std::time::{Duration, Instant};

pub fn durability(tier: Tier) -> Durability {
    match tier {
        Tier::Durable => Durability {
            setting: "quorum queue, persistent messages, publisher confirms",
            promise: "confirmed once the Raft log entry is fsync'd (batched)",
            level: 2,
        },
        Tier::Default => Durability {
            setting: "classic durable queue, persistent messages, publisher confirms",
            promise: "confirmed once the message store has fsync'd it (batched)",
            level: 2,
        },
    }
}

/// The durable tier on a cluster (`--cluster` with several nodes).
pub fn cluster_durability() -> Durability {
    Durability {
        setting:
            "quorum queue with a member on every node, persistent messages, publisher confirms",
        promise:
            "confirmed once a majority of the members have fsync'd the Raft log entry (batched)",
        level: 2,
    }
}

/// A channel on a connection of its own, to the first address of `--addr`
/// that answers.
async fn channel(ctx: &Ctx) -> anyhow::Result<Channel> {
    let mut last = None;
    for addr in ctx.addrs() {
        let uri = format!("amqp://guest:guest@{addr}/%2f");
        match Connection::connect(&uri, ConnectionProperties::default()).await {
            Ok(conn) => return Ok(conn.create_channel().await?),
            Err(e) => last = Some(anyhow::Error::from(e).context(format!("connecting to {addr}"))),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("--addr names no address")))
}

pub(crate) async fn declare(ctx: &Ctx, queue: &str) -> anyhow::Result<Channel> {
    let ch = channel(ctx).await?;
    let _ = ch
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await;
    let ch = channel(ctx).await?; // a failed delete may have closed the last one
    let mut args = FieldTable::default();
    if ctx.tier == Tier::Durable {
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
    }
    if ctx.replicas() > 1 {
        args.insert(
            "x-quorum-initial-group-size".into(),
            AMQPValue::LongInt(ctx.replicas() as i32),
        );
    }
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare(queue.into(), options, args).await?;
    Ok(ch)
}

pub(crate) async fn delete(ctx: &Ctx, queue: &str) -> anyhow::Result<()> {
    channel(ctx)
        .await?
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await?;
    Ok(())
}

/// A publishing channel (confirms on).
pub(crate) async fn publisher(ctx: &Ctx) -> anyhow::Result<Channel> {
    let ch = channel(ctx).await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok(ch)
}

pub(crate) async fn send(ch: &Channel, queue: &str, payload: &[u8]) -> anyhow::Result<common::Ack> {
    let properties = BasicProperties::default().with_delivery_mode(2);
    let confirm = ch
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            payload,
            properties,
        )
        .await?;
    Ok(Box::pin(async move {
        let confirmation = confirm.await?;
        anyhow::ensure!(confirmation.is_ack(), "the broker refused a message (nack)");
        Ok(1)
    }))
}

async fn publish_n(
    ctx: &Ctx,
    queue: &str,
    size: usize,
    count: u64,
    cap: Duration,
) -> anyhow::Result<(Rate, Instant)> {
    let ch = publisher(ctx).await?;
    let payload = vec![b'x'; size];
    let acks = Acks::new(ctx.plan.window);
    let start = Instant::now();
    let mut sent = 0;
    while sent < count && start.elapsed() < cap {
        acks.push(send(&ch, queue, &payload).await?).await?;
        sent += 1;
    }
    let (acked, last) = acks.finish().await?;
    Ok((Rate::between(acked, size, start, last), start))
}

pub async fn publish(ctx: &Ctx, queue: &str, size: usize, count: u64) -> anyhow::Result<Rate> {
    declare(ctx, queue).await?;
    Ok(publish_n(ctx, queue, size, count, ctx.plan.publish_cap)
        .await?
        .0)
}

pub(crate) async fn consumer(
    ctx: &Ctx,
    queue: &str,
    no_ack: bool,
    prefetch: u16,
) -> anyhow::Result<Consumer> {
    let ch = channel(ctx).await?;
    if prefetch > 0 {
        ch.basic_qos(prefetch, BasicQosOptions::default()).await?;
    }
    let options = BasicConsumeOptions {
        no_ack,
        ..BasicConsumeOptions::default()
    };
    Ok(ch
        .basic_consume(queue.into(), "".into(), options, FieldTable::default())
        .await?)
}

pub async fn consume(ctx: &Ctx, queue: &str, size: usize, count: u64) -> anyhow::Result<Rate> {
    let mut deliveries = consumer(ctx, queue, true, 0).await?;
    let start = Instant::now();
    let (mut read, mut last) = (0, None);
    while read < count {
        let next = tokio::time::timeout(common::DRAIN, deliveries.next()).await;
        let Ok(Some(delivery)) = next else {
            anyhow::bail!("the queue ended after {read} of {count}");
        };
        delivery?;
        read += 1;
        last = Some(Instant::now());
    }
    delete(ctx, queue).await?;
    Ok(Rate::between(read, size, start, last))
}

pub async fn end_to_end(ctx: &Ctx) -> anyhow::Result<Value> {
    let (queue, size, rate) = ("cmp-e2e", ctx.plan.e2e_size, ctx.plan.e2e_rate);
    declare(ctx, queue).await?;
    let mut deliveries = consumer(ctx, queue, true, 0).await?;
    let expect = Expect::new();
    let until = expect.clone();
    let receiver = tokio::spawn(async move {
        let mut lat = Latencies::new();
        while lat.received < until.get() {
            if let Ok(next) = tokio::time::timeout(common::POLL, deliveries.next()).await {
                let delivery = next.ok_or_else(|| anyhow::anyhow!("the consumer ended"))??;
                lat.record(&delivery.data, Instant::now());
            }
        }
        anyhow::Ok(lat)
    });
    let ch = publisher(ctx).await?;
    let acks = Acks::new(ctx.plan.window);
    let (handle, tx, publishing) = (tokio::runtime::Handle::current(), acks.sender(), ch.clone());
    let sender = move |due: Instant| {
        let payload = common::stamped(size, due);
        tx.push_blocking(handle.block_on(send(&publishing, queue, &payload))?)
    };
    let (sent, send_s) = common::paced(rate, ctx.plan.e2e_duration, sender).await?;
    // The channel stays open until every confirm is in.
    acks.finish().await?;
    drop(ch);
    expect.set(sent);
    let lat = tokio::time::timeout(common::DRAIN, receiver).await???;
    delete(ctx, queue).await?;
    Ok(lat.json(sent, rate, size, send_s))
}

pub async fn queue(ctx: &Ctx) -> anyhow::Result<Rate> {
    let (queue, size, plan) = ("cmp-queue", ctx.plan.queue_size, &ctx.plan);
    declare(ctx, queue).await?;
    let done = Done::new();
    let mut workers = Vec::new();
    for _ in 0..plan.workers {
        let mut deliveries = consumer(ctx, queue, false, plan.receive_max as u16).await?;
        let done = done.clone();
        workers.push(tokio::spawn(async move {
            while !done.finished() {
                let Ok(next) = tokio::time::timeout(common::POLL, deliveries.next()).await else {
                    continue;
                };
                let delivery = next.ok_or_else(|| anyhow::anyhow!("the consumer ended"))??;
                delivery.ack(BasicAckOptions::default()).await?;
                done.add(1);
            }
            anyhow::Ok(())
        }));
    }
    done.stop_at(Instant::now() + plan.queue_cap);
    let (published, start) = publish_n(ctx, queue, size, plan.queue_count, plan.queue_cap).await?;
    done.target.set(published.messages);
    common::join_workers(&done, workers).await?;
    delete(ctx, queue).await?;
    Ok(Rate::between(done.count(), size, start, done.last()))
}
