//! The in-app queue: a job pipeline that runs on Spool's broker inside this
//! process. The application code (`run`) is written against `impl
//! Connect`; pass `--remote 127.0.0.1:7420` to run the very same code
//! against a `spool server` instead — only the connector line differs.
//!
//! ```sh
//! cargo run -p spool-embedded --example in_app              # in memory
//! cargo run -p spool-embedded --example in_app -- ./jobs    # on a directory
//! cargo run -p spool-embedded --example in_app -- --remote 127.0.0.1:7420
//! ```

use spool_embedded::{
    ClientError, Connect, Embedded, ErrorCode, Message, Producer, ProducerOptions, Remote,
    SubscriptionOptions, TopicConfig,
};
use std::time::Duration;

/// Enqueues some jobs and works them off with two workers.
async fn run(spool: &impl Connect) -> Result<(), ClientError> {
    let admin = spool.connect().await?;
    match admin.create_topic("jobs", 2, TopicConfig::default()).await {
        Err(e) if e.code() == Some(ErrorCode::TopicExists) => {}
        other => other?,
    }
    match admin
        .create_subscription("jobs", "workers", SubscriptionOptions::default())
        .await
    {
        Err(e) if e.code() == Some(ErrorCode::GroupExists) => {}
        other => other?,
    }

    let producer = Producer::new(spool.connect().await?, ProducerOptions::default());
    for i in 0..10 {
        let job = Message::new(format!("resize image-{i}.png")).with_key(format!("user-{}", i % 4));
        producer.send("jobs", job).await?.await?;
    }
    println!("enqueued 10 jobs");

    let mut workers = Vec::new();
    for w in 0..2 {
        let client = spool.connect().await?;
        workers.push(tokio::spawn(async move {
            let mut done = 0;
            loop {
                let leased = client
                    .receive("jobs", "workers", 4, Duration::from_millis(500))
                    .await?;
                if leased.is_empty() {
                    return Ok::<_, ClientError>(done);
                }
                for job in &leased {
                    let text = String::from_utf8_lossy(job.value.as_deref().unwrap_or_default());
                    println!("worker {w}: {text}");
                }
                let receipts: Vec<String> = leased.iter().map(|m| m.receipt.clone()).collect();
                client.ack("jobs", "workers", &receipts).await?;
                done += leased.len();
            }
        }));
    }
    let mut total = 0;
    for w in workers {
        total += w
            .await
            .map_err(|e| ClientError::Disconnected(e.to_string()))??;
    }
    println!("{total} jobs done");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, addr] if flag == "--remote" => run(&Remote::new(addr.clone())).await,
        [dir] => {
            let spool = Embedded::open(dir.clone()).await?;
            run(&spool).await?;
            spool.close().await
        }
        _ => {
            let spool = Embedded::in_memory().await?;
            run(&spool).await?;
            spool.close().await
        }
    }
}
