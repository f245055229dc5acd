//! A hostile-load generator for the reliability benchmark
//! (`bench/hostile.sh`): while it runs, a well-behaved client's latency is
//! measured against an unloaded run. It keeps up, until `--duration-s`:
//!
//! - `--idle N` connections that connect and never send a byte;
//! - `--never-read N` clients that handshake, pipeline large fetches and
//!   never read an answer (topic `hostile`, filled with 4 MiB first);
//! - `--slowloris N` HTTP clients sending one header byte a second,
//!   reconnecting whenever the server cuts them off;
//! - `--garbage-per-s N` connections a second carrying garbage: random
//!   bytes, a 2 GiB length prefix, an undecodable frame, and on HTTP an
//!   8 MiB body and malformed JSON.
//!
//! `cargo run --release -p spool --example hostile_load -- --addr A --http H`

use bytes::BytesMut;
use rand::Rng;
use spool_client::{Client, ClientOptions, Message, Producer, ProducerOptions, TopicConfig};
use spool_proto::{self as p, Request};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Args {
    addr: String,
    http: String,
    idle: usize,
    never_read: usize,
    slowloris: usize,
    garbage_per_s: u32,
    duration: Duration,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:7420".into(),
        http: "127.0.0.1:7421".into(),
        idle: 10_000,
        never_read: 20,
        slowloris: 300,
        garbage_per_s: 50,
        duration: Duration::from_secs(60),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--addr" => args.addr = value.clone(),
            "--http" => args.http = value.clone(),
            "--idle" => args.idle = number()? as usize,
            "--never-read" => args.never_read = number()? as usize,
            "--slowloris" => args.slowloris = number()? as usize,
            "--garbage-per-s" => args.garbage_per_s = number()? as u32,
            "--duration-s" => args.duration = Duration::from_secs(number()?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

fn frame(cid: u32, request: &Request) -> BytesMut {
    let mut buf = BytesMut::new();
    // Only requests this program builds: they encode.
    let _ = request.encode(cid, &mut buf);
    buf
}

async fn prepare(addr: &str) -> Result<(), spool_client::ClientError> {
    let client = Client::connect(addr, ClientOptions::default()).await?;
    if client.describe_topic("hostile").await.is_err() {
        client
            .create_topic("hostile", 1, TopicConfig::default())
            .await?;
        let producer = Producer::new(client.clone(), ProducerOptions::default());
        let value = vec![b'x'; 60_000];
        for _ in 0..70 {
            producer
                .send("hostile", Message::new(value.clone()))
                .await?;
        }
        producer.flush().await?;
    }
    Ok(())
}

async fn never_read(addr: String) {
    let Ok(mut s) = TcpStream::connect(&addr).await else {
        return;
    };
    let hello = Request::Hello(p::Hello {
        min_version: p::PROTOCOL_VERSION,
        max_version: p::PROTOCOL_VERSION,
        client_id: "never-reads".into(),
        token: None,
    });
    let _ = s.write_all(&frame(1, &hello)).await;
    let fetch = Request::Fetch(p::Fetch {
        max_wait_ms: 0,
        max_bytes: 8 << 20,
        partitions: vec![p::FetchPartition {
            topic: "hostile".into(),
            partition: 0,
            offset: 0,
            max_bytes: 8 << 20,
        }],
    });
    // Writes block once the server stops reading us: hold the connection.
    for cid in 2..2_000u32 {
        if s.write_all(&frame(cid, &fetch)).await.is_err() {
            return;
        }
    }
    std::future::pending::<()>().await;
}

async fn slowloris(http: String) {
    loop {
        let Ok(mut s) = TcpStream::connect(&http).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        if s.write_all(b"GET /v1/topics HTTP/1.1\r\nHost: x\r\n")
            .await
            .is_err()
        {
            continue;
        }
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if s.write_all(b"X").await.is_err() {
                break; // cut off: come back
            }
        }
    }
}

async fn garbage(addr: String, http: String, which: u32) {
    let Ok(mut s) = TcpStream::connect(if which % 5 < 3 { &addr } else { &http }).await else {
        return;
    };
    let bytes: Vec<u8> = match which % 5 {
        0 => (0..4096).map(|_| rand::rng().random()).collect(),
        1 => {
            let mut b = vec![0x80, 0, 0, 0];
            b.extend_from_slice(&[0u8; 64]);
            b
        }
        2 => {
            // A Hello, then a frame with an op nobody knows.
            let mut b = frame(
                1,
                &Request::Hello(p::Hello {
                    min_version: p::PROTOCOL_VERSION,
                    max_version: p::PROTOCOL_VERSION,
                    client_id: "garbage".into(),
                    token: None,
                }),
            )
            .to_vec();
            b.extend_from_slice(&[0, 0, 0, 12, 0, 0, 0, 2, 0xff, 0xee, 0, 0, 1, 2, 3, 4]);
            b
        }
        3 => {
            let body = vec![b'['; 8 << 20];
            let mut b = format!(
                "POST /v1/topics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            b.extend_from_slice(&body);
            b
        }
        _ => b"POST /v1/topics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{\"name\":}"
            .to_vec(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), s.write_all(&bytes)).await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(1), s.read(&mut sink)).await;
}

#[tokio::main]
async fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    if let Err(e) = prepare(&args.addr).await {
        eprintln!("error: preparing the topic: {e}");
        std::process::exit(1);
    }
    let started = Instant::now();
    let mut idle = Vec::with_capacity(args.idle);
    for _ in 0..args.idle {
        match TcpStream::connect(&args.addr).await {
            Ok(s) => idle.push(s),
            Err(e) => {
                eprintln!("idle connection {} refused: {e}", idle.len());
                break;
            }
        }
    }
    for _ in 0..args.never_read {
        tokio::spawn(never_read(args.addr.clone()));
    }
    for _ in 0..args.slowloris {
        tokio::spawn(slowloris(args.http.clone()));
    }
    eprintln!(
        "hostile load up: {} idle, {} never-read, {} slowloris, {} garbage/s ({:?} to open)",
        idle.len(),
        args.never_read,
        args.slowloris,
        args.garbage_per_s,
        started.elapsed()
    );
    let mut which = 0u32;
    let period = Duration::from_secs(1) / args.garbage_per_s.max(1);
    while started.elapsed() < args.duration {
        if args.garbage_per_s > 0 {
            tokio::spawn(garbage(args.addr.clone(), args.http.clone(), which));
            which = which.wrapping_add(1);
        }
        tokio::time::sleep(period).await;
    }
    drop(idle);
}
