//! One scenario, written once against `impl Connect`, run on the in-app
//! queue (the embedded broker, in memory and on a directory) and on the
//! real `spool server` binary: the API and what it observes must be the
//! same. Moving between them changes only the connector line.

use crate::support::ServerProc;
use spool_embedded::{
    ClientError, Connect, Embedded, ErrorCode, Message, Producer, ProducerOptions, ReadStart,
    Remote, RequestStatus, SubscriptionOptions, TopicConfig, TopicReader, REQUEST_ID_HEADER,
    WORKERS_SUBSCRIPTION,
};
use std::time::Duration;

/// What the scenario saw, compared across the three brokers.
#[derive(Debug, PartialEq)]
struct Observed {
    /// (partition, offset) of each produced message, in send order.
    offsets: Vec<(u32, u64)>,
    /// Values read back per key, in read order.
    read_back: Vec<(String, Vec<String>)>,
    /// (value, deliveries) of each queue delivery after the first receive.
    redelivered: Vec<(String, u32)>,
    request_status: String,
    request_result: String,
    unknown_topic: ErrorCode,
}

async fn scenario(spool: &impl Connect) -> Result<Observed, ClientError> {
    let admin = spool.connect().await?;
    admin
        .create_topic("orders", 2, TopicConfig::default())
        .await?;

    // Publish 60 keyed messages; each gets its own offset.
    let producer = Producer::new(spool.connect().await?, ProducerOptions::default());
    let mut pending = Vec::new();
    for i in 0..60 {
        let key = format!("customer-{}", i % 3);
        let message = Message::new(format!("order-{i}")).with_key(key);
        pending.push(producer.send("orders", message).await?);
    }
    let mut offsets = Vec::new();
    for delivery in pending {
        let d = delivery.await?;
        offsets.push((d.partition, d.offset));
    }

    // Read everything back: per key, in publish order.
    let mut reader =
        TopicReader::new(spool.connect().await?, "orders", ReadStart::Earliest).await?;
    let mut by_key: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut read = 0;
    while read < 60 {
        let records = reader.poll(Duration::from_secs(5)).await?;
        assert!(!records.is_empty(), "nothing more to read after {read}");
        for r in records {
            let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
            let value =
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
            by_key.entry(key).or_default().push(value);
            read += 1;
        }
    }

    // A work queue: fail one message, acknowledge the rest; the failed one
    // comes back with its delivery count.
    let worker = spool.connect().await?;
    let options = SubscriptionOptions {
        max_deliveries: 3,
        ..SubscriptionOptions::default()
    };
    worker
        .create_subscription("orders", "billing", options)
        .await?;
    let mut leased = Vec::new();
    while leased.len() < 60 {
        let batch = worker
            .receive("orders", "billing", 100, Duration::from_secs(5))
            .await?;
        assert!(!batch.is_empty(), "queue ran dry at {}", leased.len());
        leased.extend(batch);
    }
    let failed = leased
        .iter()
        .find(|m| m.value.as_deref() == Some(b"order-7".as_slice()))
        .expect("order-7 was delivered")
        .receipt
        .clone();
    let others: Vec<String> = leased
        .iter()
        .map(|m| m.receipt.clone())
        .filter(|r| *r != failed)
        .collect();
    for result in worker.ack("orders", "billing", &others).await? {
        result?;
    }
    worker
        .nack(
            "orders",
            "billing",
            &[failed],
            Duration::ZERO,
            Some("card declined"),
        )
        .await?;
    let again = worker
        .receive("orders", "billing", 100, Duration::from_secs(5))
        .await?;
    let redelivered: Vec<(String, u32)> = again
        .iter()
        .map(|m| {
            let v = String::from_utf8_lossy(m.value.as_deref().unwrap_or_default()).into_owned();
            (v, m.deliveries)
        })
        .collect();
    let receipts: Vec<String> = again.iter().map(|m| m.receipt.clone()).collect();
    worker.ack("orders", "billing", &receipts).await?;

    // An asynchronous request: submit, a worker completes it, the
    // submitter reads the result.
    let id = admin
        .submit_request("thumbnails", r#"{"image":"42.png"}"#, true, None)
        .await?;
    let work = worker
        .receive(
            "thumbnails",
            WORKERS_SUBSCRIPTION,
            1,
            Duration::from_secs(5),
        )
        .await?;
    let job = work.first().expect("the request reached a worker");
    let header = job
        .headers
        .iter()
        .find(|(k, _)| k == REQUEST_ID_HEADER)
        .and_then(|(_, v)| v.clone())
        .expect("request id header");
    assert_eq!(header.as_ref(), id.as_bytes());
    worker
        .complete_request(&id, &serde_json::json!({"thumbnail": "42-small.png"}))
        .await?;
    let record = admin.get_request(&id, Duration::from_secs(5)).await?;
    let status = RequestStatus::of(&record).expect("a status");
    assert!(status.is_final());

    // Errors carry the same stable code.
    let unknown = Producer::new(admin.clone(), ProducerOptions::default())
        .send("no-such-topic", Message::new("x"))
        .await;
    let unknown = match unknown {
        Ok(delivery) => delivery.await.err(),
        Err(e) => Some(e),
    };
    let unknown_topic = unknown
        .and_then(|e| e.code())
        .expect("publishing to a missing topic fails");

    Ok(Observed {
        offsets,
        read_back: by_key.into_iter().collect(),
        redelivered,
        request_status: record["status"].as_str().unwrap_or_default().to_owned(),
        request_result: record["result"].to_string(),
        unknown_topic,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_scenario_runs_embedded_and_against_the_real_server() {
    // In memory.
    let in_memory = Embedded::in_memory().await.unwrap();
    let embedded = scenario(&in_memory).await.unwrap();
    in_memory.close().await.unwrap();

    // On a directory, which then survives a reopen.
    let dir = tempfile::tempdir().unwrap();
    let on_disk = Embedded::open(dir.path().join("app")).await.unwrap();
    let embedded_on_disk = scenario(&on_disk).await.unwrap();
    on_disk.close().await.unwrap();
    let reopened = Embedded::open(dir.path().join("app")).await.unwrap();
    let topics = reopened
        .connect()
        .await
        .unwrap()
        .list_topics(None)
        .await
        .unwrap();
    assert!(topics.iter().any(|t| t.name == "orders"), "{topics:?}");
    reopened.close().await.unwrap();

    // The real binary: only the connector differs.
    let server = ServerProc::start(&dir.path().join("server"));
    let remote = scenario(&Remote::new(server.addr.clone())).await.unwrap();

    assert_eq!(embedded, remote);
    assert_eq!(embedded_on_disk, remote);
    assert_eq!(remote.offsets.len(), 60);
    assert_eq!(remote.redelivered, vec![("order-7".to_owned(), 2)]);
    assert_eq!(remote.request_status, "succeeded");
    assert_eq!(remote.unknown_topic, ErrorCode::UnknownTopic);
}

/// `close` returns once the broker's files are closed, even with clients
/// still connected (their connections end on close), so the directory can
/// be opened again at once — by this process or another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_directory_reopens_at_once_with_clients_still_connected() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..20 {
        let spool = Embedded::open(dir.path().join("app")).await.unwrap();
        let admin = spool.connect().await.unwrap();
        if round == 0 {
            admin
                .create_topic("idle", 1, TopicConfig::default())
                .await
                .unwrap();
            admin
                .create_subscription("idle", "w", SubscriptionOptions::default())
                .await
                .unwrap();
        }
        // Long polls in flight on every connection when the broker closes.
        let mut clients = vec![admin];
        let mut polls = Vec::new();
        for _ in 0..4 {
            let client = spool.connect().await.unwrap();
            let c = client.clone();
            polls.push(tokio::spawn(async move {
                c.receive("idle", "w", 10, Duration::from_secs(30)).await
            }));
            clients.push(client);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        spool.close().await.unwrap();
        let again = Embedded::open(dir.path().join("app")).await;
        assert!(again.is_ok(), "round {round}: {:?}", again.err());
        again.unwrap().close().await.unwrap();
        drop(clients);
        drop(polls);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_embedded_broker_refuses_a_single_threaded_runtime_clearly() {
    let err = match Embedded::in_memory().await {
        Ok(_) => panic!("opened on a current-thread runtime"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("multi-threaded"), "{err}");
}
