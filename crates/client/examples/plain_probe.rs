//! Throwaway probe (not committed): the plain pattern against a running server.
use spool_client::*;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let addr: std::net::SocketAddr = std::env::args().nth(1).unwrap().parse().unwrap();
    let what = std::env::args().nth(2).unwrap();
    let size: usize = std::env::args()
        .nth(3)
        .map(|s| s.parse().unwrap())
        .unwrap_or(1024);
    let client = Client::connect(addr, ClientOptions::default())
        .await
        .unwrap();
    let topic = format!("p{}", std::process::id());
    client
        .create_topic(&topic, 1, TopicConfig::default())
        .await
        .unwrap();
    let count: u64 = if size <= 100 { 1_000_000 } else { 200_000 };
    let mut po = ProducerOptions::default();
    if let Ok(v) = std::env::var("LINGER_US") {
        po.linger = Duration::from_micros(v.parse().unwrap());
    }
    if let Ok(v) = std::env::var("PER_PART") {
        po.max_in_flight_per_partition = v.parse().unwrap();
    }
    eprintln!("{po:?}");
    let producer = Producer::new(client.clone(), po);
    let payload = bytes::Bytes::from(vec![b'x'; size]);
    let count = if what == "e2e" || what == "pingpong" {
        0
    } else {
        count
    };
    let start = Instant::now();
    let mut window = VecDeque::new();
    for _ in 0..count {
        if window.len() >= 1000 {
            let d: DeliveryFuture = window.pop_front().unwrap();
            d.await.unwrap();
        }
        window.push_back(
            producer
                .send(&topic, Message::new(payload.clone()))
                .await
                .unwrap(),
        );
    }
    for d in window {
        d.await.unwrap();
    }
    let el = start.elapsed();
    let d = client.describe_topic(&topic).await.unwrap();
    println!(
        "plain publish {size} B: {:.0} msgs/s; {:?}",
        count as f64 / el.as_secs_f64(),
        d.partitions[0]
    );
    if what == "pingpong" {
        let mut v = Vec::new();
        for _ in 0..3000 {
            let t = Instant::now();
            producer
                .send(&topic, Message::new(payload.clone()))
                .await
                .unwrap()
                .await
                .unwrap();
            v.push(t.elapsed().as_micros() as u64);
        }
        v.sort();
        println!(
            "pingpong {size} B: p10 {} p50 {} p90 {} p99 {} us",
            v[v.len() / 10],
            v[v.len() / 2],
            v[v.len() * 9 / 10],
            v[v.len() * 99 / 100]
        );
    }
    if what == "consume" || what == "all" {
        let c2 = Client::connect(addr, ClientOptions::default())
            .await
            .unwrap();
        let mut g = GroupConsumer::join(c2, "g", vec![topic.clone()], GroupOptions::default())
            .await
            .unwrap();
        let start = Instant::now();
        let mut n = 0u64;
        let mut polls = 0u64;
        let mut ct = Duration::ZERO;
        let mut pt = Duration::ZERO;
        while n < count {
            let t = Instant::now();
            let r = g.poll(Duration::from_millis(500)).await.unwrap();
            pt += t.elapsed();
            n += r.len() as u64;
            polls += 1;
            let t = Instant::now();
            g.commit().await.unwrap();
            ct += t.elapsed();
        }
        let el = start.elapsed();
        println!("plain group consume {size} B: {:.0} msgs/s ({polls} polls, poll avg {:?}, commit avg {:?})", n as f64 / el.as_secs_f64(), pt / polls as u32, ct / polls as u32);
    }
    if what == "e2e" || what == "all" {
        for rate in [5000u64, 10000] {
            let t = format!("{topic}-e{rate}");
            client
                .create_topic(&t, 1, TopicConfig::default())
                .await
                .unwrap();
            let c2 = Client::connect(addr, ClientOptions::default())
                .await
                .unwrap();
            let mut g = GroupConsumer::join(c2, "ge", vec![t.clone()], GroupOptions::default())
                .await
                .unwrap();
            let total = rate * 5;
            let p2 = producer.clone();
            let t2 = t.clone();
            let base = Instant::now() + Duration::from_millis(50);
            let sender = tokio::spawn(async move {
                let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
                let mut acks = VecDeque::new();
                for i in 0..total {
                    let at = base + Duration::from_nanos(i * 1_000_000_000 / rate);
                    tokio::time::sleep_until(at.into()).await;
                    let mut v = vec![0u8; 1024];
                    v[..8].copy_from_slice(&i.to_le_bytes());
                    let d = p2.send(&t2, Message::new(v)).await.unwrap();
                    let acked = acked.clone();
                    acks.push_back(tokio::spawn(async move {
                        d.await.unwrap();
                        acked
                            .lock()
                            .unwrap()
                            .push(Instant::now().saturating_duration_since(at).as_micros() as u64);
                    }));
                    if acks.len() > 1000 {
                        acks.pop_front().unwrap().await.unwrap();
                    }
                }
                for a in acks {
                    a.await.unwrap();
                }
                let mut v = acked.lock().unwrap().clone();
                v.sort();
                println!(
                    "  acks: p50 {} us p99 {} us",
                    v[v.len() / 2],
                    v[v.len() * 99 / 100]
                );
            });
            let mut lat = Vec::new();
            let mut commits = Vec::new();
            if std::env::var("NOCONSUME").is_ok() {
                sender.await.unwrap();
                continue;
            }
            while (lat.len() as u64) < total {
                let r = g.poll(Duration::from_millis(500)).await.unwrap();
                let now = Instant::now();
                for rec in &r {
                    let v = rec.value.as_ref().unwrap();
                    let i = u64::from_le_bytes(v[..8].try_into().unwrap());
                    let at = base + Duration::from_nanos(i * 1_000_000_000 / rate);
                    lat.push(now.saturating_duration_since(at).as_micros() as u64);
                }
                let t = Instant::now();
                if std::env::var("NOCOMMIT").is_err() {
                    g.commit().await.unwrap();
                }
                commits.push(t.elapsed().as_micros() as u64);
            }
            sender.await.unwrap();
            commits.sort();
            println!(
                "  commits {}: p50 {} us p99 {} us",
                commits.len(),
                commits[commits.len() / 2],
                commits[commits.len() * 99 / 100]
            );
            lat.sort();
            let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
            println!(
                "plain e2e {rate}/s: p50 {} us p99 {} us p999 {} us max {} us",
                q(0.5),
                q(0.99),
                q(0.999),
                lat[lat.len() - 1]
            );
        }
    }
}
