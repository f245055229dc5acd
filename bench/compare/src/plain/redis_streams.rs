//! Redis Streams, plain: one `XADD` per message on the multiplexed
//! connection (each its own command and reply, no pipeline), at most
//! `plain_window` outstanding; a consumer group read with `XREADGROUP COUNT
//! plain_poll` (`BLOCK` 100 ms in end-to-end), then one `XACK` of every ID
//! read, awaited, per poll. Connections as in `crate::redis_streams` (its
//! 60 s response timeout instead of the client's 500 ms, which a blocking
//! read or an fsync'ing server can exceed).

use crate::common::{self, Expect, Latencies, Rate};
use crate::redis_streams::{connect, delete, entries, FIELD};
use crate::Ctx;
use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadOptions;
use redis::AsyncCommands;
use serde_json::Value;
use std::time::Instant;

const GROUP: &str = "plain";

/// One XADD, sent now (spawned: the multiplexed connection sends a command
/// when its future is first polled, not when the window awaits it).
fn xadd(conn: &MultiplexedConnection, key: &str, payload: &[u8]) -> common::Ack {
    let cmd = redis::Cmd::xadd(key, "*", &[(FIELD, payload)]);
    let mut conn = conn.clone();
    let reply = tokio::spawn(async move { cmd.query_async::<String>(&mut conn).await });
    Box::pin(async move {
        reply.await??;
        Ok(1)
    })
}

pub async fn publish(ctx: &Ctx, key: &str, size: usize, count: u64) -> anyhow::Result<Rate> {
    delete(ctx, key).await?;
    let conn = connect(ctx).await?;
    let payload = vec![b'x'; size];
    let acks = super::window(ctx);
    let start = Instant::now();
    let mut sent = 0;
    while sent < count && start.elapsed() < ctx.plan.publish_cap {
        acks.push(xadd(&conn, key, &payload)).await?;
        sent += 1;
    }
    let (acked, last) = acks.finish().await?;
    Ok(Rate::between(acked, size, start, last))
}

/// One poll: XREADGROUP, then XACK of every ID it returned. Returns the
/// payloads read.
async fn poll(
    conn: &mut MultiplexedConnection,
    key: &str,
    options: &StreamReadOptions,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let got = entries(conn.xread_options(&[key], &[">"], options).await?);
    if got.is_empty() {
        return Ok(Vec::new());
    }
    let (ids, payloads): (Vec<String>, Vec<Vec<u8>>) = got.into_iter().unzip();
    let acked: usize = conn.xack(key, GROUP, &ids).await?;
    anyhow::ensure!(acked == ids.len(), "XACK took {acked} of {}", ids.len());
    Ok(payloads)
}

fn read_options(ctx: &Ctx) -> StreamReadOptions {
    StreamReadOptions::default()
        .group(GROUP, "plain-1")
        .count(ctx.plan.plain_poll)
}

pub async fn consume(ctx: &Ctx, key: &str, size: usize, count: u64) -> anyhow::Result<Rate> {
    let mut conn = connect(ctx).await?;
    let _: () = conn.xgroup_create(key, GROUP, "0").await?;
    let options = read_options(ctx);
    let start = Instant::now();
    let (mut read, mut last) = (0, None);
    while read < count {
        let got = poll(&mut conn, key, &options).await?;
        anyhow::ensure!(!got.is_empty(), "the stream ended after {read} of {count}");
        read += got.len() as u64;
        last = Some(Instant::now());
    }
    delete(ctx, key).await?;
    Ok(Rate::between(read, size, start, last))
}

pub async fn end_to_end(ctx: &Ctx, rate: u64) -> anyhow::Result<Value> {
    let (key, size) = ("plain-e2e", ctx.plan.e2e_size);
    delete(ctx, key).await?;
    let mut reader = connect(ctx).await?;
    let _: () = reader.xgroup_create_mkstream(key, GROUP, "0").await?;
    let options = read_options(ctx).block(common::POLL.as_millis() as usize);
    let expect = Expect::new();
    let until = expect.clone();
    let receiver = tokio::spawn(async move {
        let mut lat = Latencies::new();
        while lat.received < until.get() {
            let got = poll(&mut reader, key, &options).await?;
            // Received when XREADGROUP answered, before the XACK.
            let at = Instant::now();
            for payload in got {
                lat.record(&payload, at);
            }
        }
        anyhow::Ok(lat)
    });
    let conn = connect(ctx).await?;
    let acks = super::window(ctx);
    let (handle, tx) = (tokio::runtime::Handle::current(), acks.sender());
    let sender = move |due: Instant| {
        // Enter the runtime so that the XADD's task can be spawned.
        let _guard = handle.enter();
        tx.push_blocking(xadd(&conn, key, &common::stamped(size, due)))
    };
    let (sent, send_s) = common::paced(rate, ctx.plan.e2e_duration, sender).await?;
    acks.finish().await?;
    expect.set(sent);
    let lat = tokio::time::timeout(common::DRAIN, receiver).await???;
    delete(ctx, key).await?;
    Ok(lat.json(sent, rate, size, send_s))
}
