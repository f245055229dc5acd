//! Spool, plain: a `Producer` with `ProducerOptions::default()` (whatever
//! the client's defaults are when this is built) and one `send` per
//! message, whose `DeliveryFuture` resolves on the ack; a `GroupConsumer`
//! with `GroupOptions::default()` (fetches up to 1 MiB per partition) that
//! commits after every non-empty `poll`. Topics as in `crate::spool` (one
//! partition, the tier's durability).

use crate::common::{self, Expect, Latencies, Rate};
use crate::spool::{connect, create_topic, send};
use crate::Ctx;
use serde_json::Value;
use spool_client::{GroupConsumer, GroupOptions, Producer, ProducerOptions};
use std::time::Instant;

async fn producer(ctx: &Ctx) -> anyhow::Result<Producer> {
    Ok(Producer::new(
        connect(ctx).await?,
        ProducerOptions::default(),
    ))
}

/// Joins a group named after the topic (a group per topic: nothing
/// committed for one topic touches another's run).
async fn join(ctx: &Ctx, topic: &str) -> anyhow::Result<GroupConsumer> {
    let client = connect(ctx).await?;
    let topics = vec![topic.to_owned()];
    Ok(GroupConsumer::join(client, topic, topics, GroupOptions::default()).await?)
}

pub async fn publish(ctx: &Ctx, name: &str, size: usize, count: u64) -> anyhow::Result<Rate> {
    create_topic(ctx, name).await?;
    let producer = producer(ctx).await?;
    let payload = bytes::Bytes::from(vec![b'x'; size]);
    let acks = super::window(ctx);
    let start = Instant::now();
    let mut sent = 0;
    while sent < count && start.elapsed() < ctx.plan.publish_cap {
        acks.push(send(&producer, name, payload.clone()).await?)
            .await?;
        sent += 1;
    }
    let (acked, last) = acks.finish().await?;
    Ok(Rate::between(acked, size, start, last))
}

pub async fn consume(ctx: &Ctx, name: &str, size: usize, count: u64) -> anyhow::Result<Rate> {
    let mut group = join(ctx, name).await?;
    let start = Instant::now();
    let (mut read, mut last) = (0, None);
    while read < count {
        let records = group.poll(common::POLL).await?;
        if records.is_empty() {
            anyhow::ensure!(start.elapsed() < common::DRAIN, "read {read} of {count}");
            continue;
        }
        read += records.len() as u64;
        group.commit().await?;
        last = Some(Instant::now());
    }
    group.close().await?;
    connect(ctx).await?.delete_topic(name).await?;
    Ok(Rate::between(read, size, start, last))
}

/// Receives until `until` many arrived, committing after every poll.
async fn receive(mut group: GroupConsumer, until: Expect) -> anyhow::Result<Latencies> {
    let mut lat = Latencies::new();
    while lat.received < until.get() {
        let records = group.poll(common::POLL).await?;
        let at = Instant::now();
        for r in &records {
            lat.record(r.value.as_deref().unwrap_or_default(), at);
        }
        if !records.is_empty() {
            group.commit().await?;
        }
    }
    group.close().await?;
    Ok(lat)
}

pub async fn end_to_end(ctx: &Ctx, rate: u64) -> anyhow::Result<Value> {
    // A topic (and group) per rate.
    let (name, size) = (format!("plain-e2e-{rate}"), ctx.plan.e2e_size);
    create_topic(ctx, &name).await?;
    // Joined before the first send: the join (a rebalance) is not measured.
    let group = join(ctx, &name).await?;
    let expect = Expect::new();
    let receiver = tokio::spawn(receive(group, expect.clone()));
    let producer = producer(ctx).await?;
    let acks = super::window(ctx);
    let (handle, tx, p, topic) = (
        tokio::runtime::Handle::current(),
        acks.sender(),
        producer.clone(),
        name.clone(),
    );
    let sender = move |due: Instant| {
        let payload = bytes::Bytes::from(common::stamped(size, due));
        tx.push_blocking(handle.block_on(send(&p, &topic, payload))?)
    };
    let (sent, send_s) = common::paced(rate, ctx.plan.e2e_duration, sender).await?;
    acks.finish().await?;
    expect.set(sent);
    let lat = tokio::time::timeout(common::DRAIN, receiver).await???;
    connect(ctx).await?.delete_topic(&name).await?;
    Ok(lat.json(sent, rate, size, send_s))
}
