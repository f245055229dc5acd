//! Redis Streams through the `redis` crate (tokio, multiplexed
//! connections, which pipeline concurrent commands). Publishing sends
//! pipelines of `batch` XADDs, `window / batch` of them in flight; reading
//! is XREAD (COUNT 1000); the queue is a consumer group worked with
//! XREADGROUP (COUNT `receive_max`, BLOCK 500) + XACK.
//!
//! The server's `appendfsync` is set by run.sh when it starts redis-server
//! (`always` for the durable tier, `everysec` for the default one).

use crate::common::{self, Acks, Done, Durability, Expect, Latencies, Rate, Tier};
use crate::Ctx;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, AsyncConnectionConfig};
use serde_json::Value;
use std::time::{Duration, Instant};

pub(crate) const FIELD: &str = "p";
const GROUP: &str = "work";

pub fn durability(tier: Tier) -> Durability {
    match tier {
        Tier::Durable => Durability {
            setting: "AOF, `appendfsync always`",
            promise: "AOF written and fsync'd before the reply (per event-loop round)",
            level: 2,
        },
        Tier::Default => Durability {
            setting: "AOF, `appendfsync everysec`",
            promise: "AOF written (page cache) before the reply; fsync'd about every second",
            level: 1,
        },
    }
}

pub(crate) async fn connect(ctx: &Ctx) -> anyhow::Result<MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://{}/", ctx.addr))?;
    // The default 500 ms response timeout is shorter than a blocking read
    // or a big pipeline under `appendfsync always` may take.
    let config = AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)));
    Ok(client
        .get_multiplexed_async_connection_with_config(&config)
        .await?)
}

pub(crate) async fn delete(ctx: &Ctx, key: &str) -> anyhow::Result<()> {
    let _: () = connect(ctx).await?.del(key).await?;
    Ok(())
}

/// Sends `n` XADDs as one pipeline; resolves when all are answered.
fn pipeline(conn: &MultiplexedConnection, key: &str, payload: &[u8], n: usize) -> common::Ack {
    let mut pipe = redis::pipe();
    for _ in 0..n {
        pipe.xadd(key, "*", &[(FIELD, payload)]).ignore();
    }
    let mut conn = conn.clone();
    // Spawned so that it is sent now, not when the window awaits it.
    let sent = tokio::spawn(async move { pipe.query_async::<()>(&mut conn).await });
    Box::pin(async move {
        sent.await??;
        Ok(n as u64)
    })
}

/// Publishes `count` messages (or for `cap`), pipelined.
async fn publish_n(
    ctx: &Ctx,
    key: &str,
    size: usize,
    count: u64,
    cap: Duration,
) -> anyhow::Result<(Rate, Instant)> {
    let conn = connect(ctx).await?;
    let payload = vec![b'x'; size];
    let batch = ctx.plan.batch as u64;
    let acks = Acks::new(ctx.plan.window / ctx.plan.batch);
    let start = Instant::now();
    let mut sent = 0;
    while sent < count && start.elapsed() < cap {
        let n = batch.min(count - sent);
        acks.push(pipeline(&conn, key, &payload, n as usize))
            .await?;
        sent += n;
    }
    let (acked, last) = acks.finish().await?;
    Ok((Rate::between(acked, size, start, last), start))
}

pub async fn publish(ctx: &Ctx, key: &str, size: usize, count: u64) -> anyhow::Result<Rate> {
    delete(ctx, key).await?;
    Ok(publish_n(ctx, key, size, count, ctx.plan.publish_cap)
        .await?
        .0)
}

/// Entries of an XREAD/XREADGROUP reply: (id, payload).
pub(crate) fn entries(reply: Option<StreamReadReply>) -> Vec<(String, Vec<u8>)> {
    reply
        .into_iter()
        .flat_map(|r| r.keys)
        .flat_map(|k| k.ids)
        .map(|e| {
            let payload = e.get::<Vec<u8>>(FIELD).unwrap_or_default();
            (e.id, payload)
        })
        .collect()
}

pub async fn consume(ctx: &Ctx, key: &str, size: usize, count: u64) -> anyhow::Result<Rate> {
    let mut conn = connect(ctx).await?;
    let options = StreamReadOptions::default().count(1000);
    let start = Instant::now();
    let (mut read, mut last, mut last_id) = (0, None, "0-0".to_owned());
    while read < count {
        let reply = conn.xread_options(&[key], &[&last_id], &options).await?;
        let got = entries(reply);
        anyhow::ensure!(!got.is_empty(), "the stream ended after {read} of {count}");
        read += got.len() as u64;
        last = Some(Instant::now());
        if let Some((id, _)) = got.into_iter().last() {
            last_id = id;
        }
    }
    delete(ctx, key).await?;
    Ok(Rate::between(read, size, start, last))
}

pub async fn end_to_end(ctx: &Ctx) -> anyhow::Result<Value> {
    let (key, size, rate) = ("cmp-e2e", ctx.plan.e2e_size, ctx.plan.e2e_rate);
    delete(ctx, key).await?;
    let mut reader = connect(ctx).await?;
    let expect = Expect::new();
    let until = expect.clone();
    let receiver = tokio::spawn(async move {
        let options = StreamReadOptions::default().count(1000).block(100);
        let (mut lat, mut last_id) = (Latencies::new(), "0-0".to_owned());
        while lat.received < until.get() {
            let reply = reader.xread_options(&[key], &[&last_id], &options).await?;
            let at = Instant::now();
            for (id, payload) in entries(reply) {
                lat.record(&payload, at);
                last_id = id;
            }
        }
        anyhow::Ok(lat)
    });
    let conn = connect(ctx).await?;
    let acks = Acks::new(ctx.plan.window);
    let (handle, tx) = (tokio::runtime::Handle::current(), acks.sender());
    let sender = move |due: Instant| {
        let payload = common::stamped(size, due);
        // Enter the runtime so that the pipeline's task can be spawned.
        let _guard = handle.enter();
        tx.push_blocking(pipeline(&conn, key, &payload, 1))
    };
    let (sent, send_s) = common::paced(rate, ctx.plan.e2e_duration, sender).await?;
    acks.finish().await?;
    expect.set(sent);
    let lat = tokio::time::timeout(common::DRAIN, receiver).await???;
    delete(ctx, key).await?;
    Ok(lat.json(sent, rate, size, send_s))
}

pub async fn queue(ctx: &Ctx) -> anyhow::Result<Rate> {
    let (key, size, plan) = ("cmp-queue", ctx.plan.queue_size, &ctx.plan);
    delete(ctx, key).await?;
    let _: () = connect(ctx)
        .await?
        .xgroup_create_mkstream(key, GROUP, "0")
        .await?;
    let done = Done::new();
    let mut workers = Vec::new();
    for i in 0..plan.workers {
        let mut conn = connect(ctx).await?;
        let done = done.clone();
        let options = StreamReadOptions::default()
            .group(GROUP, format!("worker-{i}"))
            .count(plan.receive_max)
            .block(500);
        workers.push(tokio::spawn(async move {
            while !done.finished() {
                let reply = conn.xread_options(&[key], &[">"], &options).await?;
                let ids: Vec<String> = entries(reply).into_iter().map(|(id, _)| id).collect();
                if ids.is_empty() {
                    continue;
                }
                let acked: usize = conn.xack(key, GROUP, &ids).await?;
                anyhow::ensure!(acked == ids.len(), "XACK took {acked} of {}", ids.len());
                done.add(ids.len() as u64);
            }
            anyhow::Ok(())
        }));
    }
    done.stop_at(Instant::now() + plan.queue_cap);
    let (published, start) = publish_n(ctx, key, size, plan.queue_count, plan.queue_cap).await?;
    done.target.set(published.messages);
    common::join_workers(&done, workers).await?;
    delete(ctx, key).await?;
    Ok(Rate::between(done.count(), size, start, done.last()))
}
