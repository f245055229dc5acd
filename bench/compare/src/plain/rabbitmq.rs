//! RabbitMQ, plain: one persistent `basic_publish` per message on a
//! channel with publisher confirms, at most `plain_window` unconfirmed; a
//! consumer with prefetch `plain_poll` and manual acks, whose "poll" is:
//! wait (up to 100 ms) for a delivery, take every further one the client
//! has already received without waiting (at most `plain_poll` in all),
//! then `basic_ack` the last with `multiple = true`, which covers the
//! poll's deliveries. Queues as in `crate::rabbitmq` (quorum in the
//! durable tier, classic durable in the default one).

use crate::common::{self, Expect, Latencies, Rate};
use crate::rabbitmq::{consumer, declare, delete, publisher, send};
use crate::Ctx;
use futures::{FutureExt, StreamExt};
use lapin::options::BasicAckOptions;
use lapin::Consumer;
use serde_json::Value;
use std::time::Instant;

pub async fn publish(ctx: &Ctx, queue: &str, size: usize, count: u64) -> anyhow::Result<Rate> {
    declare(ctx, queue).await?;
    let ch = publisher(ctx).await?;
    let payload = vec![b'x'; size];
    let acks = super::window(ctx);
    let start = Instant::now();
    let mut sent = 0;
    while sent < count && start.elapsed() < ctx.plan.publish_cap {
        acks.push(send(&ch, queue, &payload).await?).await?;
        sent += 1;
    }
    let (acked, last) = acks.finish().await?;
    Ok(Rate::between(acked, size, start, last))
}

/// One poll (see the module's comment); `each` is called with every
/// payload as it is taken. Returns how many were taken (0: none came).
async fn poll(
    deliveries: &mut Consumer,
    max: usize,
    mut each: impl FnMut(&[u8]),
) -> anyhow::Result<u64> {
    let Ok(first) = tokio::time::timeout(common::POLL, deliveries.next()).await else {
        return Ok(0);
    };
    let mut last = first.ok_or_else(|| anyhow::anyhow!("the consumer ended"))??;
    each(&last.data);
    let mut n = 1;
    while n < max as u64 {
        // `now_or_never`: only what the client has already received.
        let Some(next) = deliveries.next().now_or_never() else {
            break;
        };
        last = next.ok_or_else(|| anyhow::anyhow!("the consumer ended"))??;
        each(&last.data);
        n += 1;
    }
    last.ack(BasicAckOptions { multiple: true }).await?;
    Ok(n)
}

pub async fn consume(ctx: &Ctx, queue: &str, size: usize, count: u64) -> anyhow::Result<Rate> {
    let max = ctx.plan.plain_poll;
    let mut deliveries = consumer(ctx, queue, false, max as u16).await?;
    let start = Instant::now();
    let (mut read, mut last) = (0, None);
    while read < count {
        let got = poll(&mut deliveries, max, |_| ()).await?;
        if got == 0 {
            anyhow::ensure!(start.elapsed() < common::DRAIN, "read {read} of {count}");
            continue;
        }
        read += got;
        last = Some(Instant::now());
    }
    delete(ctx, queue).await?;
    Ok(Rate::between(read, size, start, last))
}

pub async fn end_to_end(ctx: &Ctx, rate: u64) -> anyhow::Result<Value> {
    let (queue, size, max) = ("plain-e2e", ctx.plan.e2e_size, ctx.plan.plain_poll);
    declare(ctx, queue).await?;
    let mut deliveries = consumer(ctx, queue, false, max as u16).await?;
    let expect = Expect::new();
    let until = expect.clone();
    let receiver = tokio::spawn(async move {
        let mut lat = Latencies::new();
        while lat.received < until.get() {
            poll(&mut deliveries, max, |p| lat.record(p, Instant::now())).await?;
        }
        anyhow::Ok(lat)
    });
    let ch = publisher(ctx).await?;
    let acks = super::window(ctx);
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
