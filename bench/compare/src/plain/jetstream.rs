//! NATS JetStream, plain: a JetStream context with the client's defaults
//! (`async_nats::jetstream::new`) and one `publish` per message, at most
//! `plain_window` publish acks outstanding; a durable pull consumer with
//! `AckPolicy::All`, after each "poll" of which the last message is
//! acknowledged with `double_ack` (awaits the server's confirmation; with
//! `AckPolicy::All` it covers the poll's messages). In plain consume a
//! poll is one `fetch` of up to `plain_poll` messages (a pull request
//! answered with what is stored now). In end-to-end, where messages have
//! to be waited for, the consumer's continuous pull stream (`messages()`,
//! pull requests of up to `plain_poll`) is polled as RabbitMQ's consumer
//! is: wait up to 100 ms for a message, then take the ones the client
//! already holds. Why not `batch()` with an expiry: nats-server 2.9.10
//! ends an expired pull request without the 408 the client waits for, so
//! every batch that did not fill hung for the client's fallback of
//! expiry + 5 s (p99 ≈ 5 s at 5,000/s). Streams as in `crate::jetstream`.

use crate::common::{self, Expect, Latencies, Rate};
use crate::jetstream::{create_stream, send, subject};
use crate::Ctx;
use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use async_nats::jetstream::{Context, Message};
use futures::{FutureExt, StreamExt};
use serde_json::Value;
use std::time::Instant;

const CONSUMER: &str = "plain";

async fn connect(ctx: &Ctx) -> anyhow::Result<Context> {
    let client = async_nats::connect(ctx.addr.as_str()).await?;
    Ok(async_nats::jetstream::new(client))
}

async fn durable(js: &Context, name: &str) -> anyhow::Result<PullConsumer> {
    let config = pull::Config {
        durable_name: Some(CONSUMER.to_owned()),
        ack_policy: AckPolicy::All,
        ..pull::Config::default()
    };
    Ok(js.get_stream(name).await?.create_consumer(config).await?)
}

pub async fn publish(ctx: &Ctx, name: &str, size: usize, count: u64) -> anyhow::Result<Rate> {
    let js = connect(ctx).await?;
    create_stream(&js, name).await?;
    let (subject, payload) = (subject(name), bytes::Bytes::from(vec![b'x'; size]));
    let acks = super::window(ctx);
    let start = Instant::now();
    let mut sent = 0;
    while sent < count && start.elapsed() < ctx.plan.publish_cap {
        acks.push(send(&js, &subject, payload.clone()).await?)
            .await?;
        sent += 1;
    }
    let (acked, last) = acks.finish().await?;
    Ok(Rate::between(acked, size, start, last))
}

async fn ack(last: Option<Message>) -> anyhow::Result<()> {
    if let Some(message) = last {
        message
            .double_ack()
            .await
            .map_err(|e| anyhow::anyhow!("ack: {e}"))?;
    }
    Ok(())
}

/// One poll of plain consume: a `fetch` of up to `max` messages, then
/// `double_ack` of the last. Returns how many arrived.
async fn fetch(consumer: &PullConsumer, max: usize) -> anyhow::Result<u64> {
    let mut batch = consumer.fetch().max_messages(max).messages().await?;
    let (mut n, mut last) = (0, None);
    while let Some(message) = batch.next().await {
        last = Some(message.map_err(|e| anyhow::anyhow!("pull: {e}"))?);
        n += 1;
    }
    ack(last).await?;
    Ok(n)
}

/// One poll of plain end-to-end (see the module's comment); `each` is
/// called with every payload as it is taken.
async fn poll(
    messages: &mut pull::Stream,
    max: usize,
    mut each: impl FnMut(&[u8]),
) -> anyhow::Result<()> {
    let Ok(first) = tokio::time::timeout(common::POLL, messages.next()).await else {
        return Ok(());
    };
    let mut last = first.ok_or_else(|| anyhow::anyhow!("the consumer ended"))??;
    each(&last.payload);
    for _ in 1..max {
        // `now_or_never`: only what the client already holds.
        let Some(next) = messages.next().now_or_never() else {
            break;
        };
        last = next.ok_or_else(|| anyhow::anyhow!("the consumer ended"))??;
        each(&last.payload);
    }
    ack(Some(last)).await
}

pub async fn consume(ctx: &Ctx, name: &str, size: usize, count: u64) -> anyhow::Result<Rate> {
    let js = connect(ctx).await?;
    let consumer = durable(&js, name).await?;
    let start = Instant::now();
    let (mut read, mut last) = (0, None);
    while read < count {
        let got = fetch(&consumer, ctx.plan.plain_poll).await?;
        anyhow::ensure!(got > 0, "the stream ended after {read} of {count}");
        read += got;
        last = Some(Instant::now());
    }
    js.delete_stream(name).await?;
    Ok(Rate::between(read, size, start, last))
}

pub async fn end_to_end(ctx: &Ctx, rate: u64) -> anyhow::Result<Value> {
    let (name, size) = ("plain-e2e", ctx.plan.e2e_size);
    let js = connect(ctx).await?;
    create_stream(&js, name).await?;
    let max = ctx.plan.plain_poll;
    let consumer = durable(&connect(ctx).await?, name).await?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(max)
        .messages()
        .await?;
    let expect = Expect::new();
    let until = expect.clone();
    let receiver = tokio::spawn(async move {
        let mut lat = Latencies::new();
        while lat.received < until.get() {
            poll(&mut messages, max, |p| lat.record(p, Instant::now())).await?;
        }
        anyhow::Ok(lat)
    });
    let acks = super::window(ctx);
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
