//! The client against the real server, in process.

use crate::support::{
    capped, connect, create_topic, default_producer, lingering_producer, send, start_with_client,
    start_with_producer, start_with_topic, TestServer,
};
use spool_client::{
    ConsumedRecord, ErrorCode, GroupConsumer, GroupOptions, Message, OnFull, Producer,
    ProducerOptions, ReadStart, SubscribeOptions, SubscribeStart, Subscriber, TopicConfig,
    TopicReader,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn text(r: &ConsumedRecord) -> String {
    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()
}

/// A new member of `group` on a connection of its own, reading `topic`;
/// `what` names it if joining fails.
async fn join(
    server: &TestServer,
    group: &str,
    topic: &str,
    options: GroupOptions,
    what: &str,
) -> GroupConsumer {
    GroupConsumer::join(connect(server).await, group, vec![topic.into()], options)
        .await
        .expect(what)
}

/// Polls until `n` records arrived or `limit` passed.
async fn poll_until(c: &mut GroupConsumer, n: usize, limit: Duration) -> Vec<ConsumedRecord> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut all = Vec::new();
    while all.len() < n && tokio::time::Instant::now() < deadline {
        all.extend(c.poll(Duration::from_millis(200)).await.expect("poll"));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_round_trip_keeps_order_per_key_and_reports_offsets() {
    let (server, client) = start_with_topic("orders", 3).await;
    let producer = Producer::new(
        client.clone(),
        ProducerOptions {
            max_batch_records: 50,
            ..ProducerOptions::default()
        },
    );
    let mut deliveries = Vec::new();
    for i in 0..3000u32 {
        let key = format!("key-{}", i % 37);
        let value = format!("{key}:{i}");
        let d = producer
            .send("orders", Message::new(value.clone()).with_key(key.clone()))
            .await
            .expect("send");
        deliveries.push((key, value, d));
    }
    producer.flush().await.expect("flush");
    let mut sent_at: HashMap<(u32, u64), String> = HashMap::new();
    for (key, value, d) in deliveries {
        let delivered = d.await.expect("delivered");
        assert_eq!(
            delivered.partition,
            spool_types::partitioner::partition_for_key(key.as_bytes(), 3)
        );
        assert!(
            sent_at
                .insert((delivered.partition, delivered.offset), value)
                .is_none(),
            "two messages reported at one offset"
        );
    }

    // Members of the group `readers` of `orders`.
    let reader = || {
        join(
            &server,
            "readers",
            "orders",
            GroupOptions::default(),
            "join",
        )
    };
    let mut consumer = reader().await;
    assert_eq!(consumer.assignment().len(), 3);
    let records = poll_until(&mut consumer, 3000, Duration::from_secs(20)).await;
    assert_eq!(records.len(), 3000);
    let mut last_seq: HashMap<String, u32> = HashMap::new();
    for r in &records {
        let value = text(r);
        assert_eq!(sent_at.get(&(r.partition, r.offset)), Some(&value));
        let (key, seq) = value.split_once(':').expect("key:seq");
        let seq: u32 = seq.parse().expect("seq");
        assert_eq!(r.key.as_deref(), Some(key.as_bytes()));
        if let Some(prev) = last_seq.insert(key.to_owned(), seq) {
            assert!(prev < seq, "key {key}: {seq} after {prev}");
        }
        assert!(r.timestamp > 0);
    }
    consumer.commit().await.expect("commit");
    consumer.close().await.expect("close");

    // A new member of the same group continues after the commit.
    producer
        .send("orders", Message::new("late").with_partition(1))
        .await
        .expect("send")
        .await
        .expect("delivered");
    let mut again = reader().await;
    let records = poll_until(&mut again, 1, Duration::from_secs(10)).await;
    assert_eq!(records.iter().map(text).collect::<Vec<_>>(), ["late"]);
    again.close().await.expect("close");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_group_members_split_partitions_without_duplicates() {
    let (server, _admin, producer) = start_with_producer("jobs", 4).await;
    let produce = |from: u32, to: u32| {
        let producer = producer.clone();
        async move {
            for i in from..to {
                send(
                    &producer,
                    "jobs",
                    Message::new(format!("{i}")).with_key(format!("k{i}")),
                )
                .await;
            }
            producer.flush().await.expect("flush");
        }
    };
    produce(0, 1000).await;

    let options = GroupOptions {
        session_timeout: Duration::from_secs(5),
        ..GroupOptions::default()
    };
    let mut a = join(&server, "g", "jobs", options.clone(), "join a").await;
    // A takes some records before B arrives.
    let mut seen_a: Vec<String> = a
        .poll(Duration::from_secs(2))
        .await
        .expect("poll")
        .iter()
        .map(text)
        .collect();
    a.commit().await.expect("commit");
    let b = join(&server, "g", "jobs", options, "join b").await;

    // Both poll until everything of phase one is read and the split settled.
    let total = Arc::new(AtomicUsize::new(seen_a.len()));
    let run = |mut c: GroupConsumer, total: Arc<AtomicUsize>, target: usize| async move {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::time::Instant::now() < deadline {
            let records = c.poll(Duration::from_millis(100)).await.expect("poll");
            total.fetch_add(records.len(), Ordering::SeqCst);
            seen.extend(records.iter().map(text));
            c.commit().await.expect("commit");
            if total.load(Ordering::SeqCst) >= target && c.assignment().len() == 2 {
                break;
            }
        }
        (c, seen)
    };
    let (ra, rb) = tokio::join!(
        run(a, Arc::clone(&total), 1000),
        run(b, Arc::clone(&total), 1000)
    );
    let (a, more_a) = ra;
    let (b, mut seen_b) = rb;
    seen_a.extend(more_a);
    let held_a: BTreeSet<u32> = a.assignment().iter().map(|p| p.partition).collect();
    let held_b: BTreeSet<u32> = b.assignment().iter().map(|p| p.partition).collect();
    assert_eq!(held_a.len(), 2, "{held_a:?} / {held_b:?}");
    assert!(held_a.is_disjoint(&held_b), "{held_a:?} / {held_b:?}");

    // Phase two: both members get a share.
    produce(1000, 2000).await;
    let total = Arc::new(AtomicUsize::new(0));
    let (ra, rb) = tokio::join!(
        run(a, Arc::clone(&total), 1000),
        run(b, Arc::clone(&total), 1000)
    );
    let (a, phase2_a) = ra;
    let (b, phase2_b) = rb;
    assert!(!phase2_a.is_empty() && !phase2_b.is_empty());
    seen_a.extend(phase2_a);
    seen_b.extend(phase2_b);

    let mut all: Vec<u32> = seen_a
        .iter()
        .chain(&seen_b)
        .map(|v| v.parse().expect("number"))
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..2000).collect::<Vec<_>>(), "lost or duplicated");
    a.close().await.expect("close a");
    b.close().await.expect("close b");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_subscriber_follows_a_pattern_including_later_topics() {
    let (server, client) = start_with_topic("orders.eu", 2).await;
    create_topic(&client, "billing", 1).await;
    // Small credit: the subscriber must keep granting for all 60 to arrive.
    let mut sub = Subscriber::subscribe(
        &connect(&server).await,
        vec!["orders.*".into()],
        SubscribeOptions {
            start: SubscribeStart::Earliest,
            credit_messages: 3,
            credit_bytes: 64 * 1024,
        },
    )
    .await
    .expect("subscribe");
    let producer = Producer::new(
        client.clone(),
        ProducerOptions {
            max_batch_records: 2,
            ..ProducerOptions::default()
        },
    );
    for i in 0..30 {
        send(
            &producer,
            "orders.eu",
            Message::new(format!("eu-{i}")).with_partition(i % 2),
        )
        .await;
        send(&producer, "billing", Message::new(format!("bill-{i}"))).await;
    }
    producer.flush().await.expect("flush");
    create_topic(&client, "orders.us", 1).await;
    for i in 0..30 {
        send(&producer, "orders.us", Message::new(format!("us-{i}"))).await;
    }
    producer.flush().await.expect("flush");

    let mut got: BTreeMap<(String, u32), Vec<u64>> = BTreeMap::new();
    let mut values = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while values.len() < 60 && tokio::time::Instant::now() < deadline {
        let delivery = tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .expect("a delivery in time")
            .expect("open")
            .expect("delivery");
        for r in delivery.records {
            assert_eq!(
                (r.topic.as_str(), r.partition),
                (delivery.topic.as_str(), delivery.partition)
            );
            got.entry((r.topic.clone(), r.partition))
                .or_default()
                .push(r.offset);
            assert!(values.insert(text(&r)), "duplicate {}", text(&r));
        }
    }
    assert_eq!(values.len(), 60);
    assert!(values.iter().all(|v| !v.starts_with("bill")));
    assert!(values.contains("us-29"));
    for offsets in got.values() {
        assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "{offsets:?}");
    }
    sub.unsubscribe().await.expect("unsubscribe");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_reader_reads_a_pattern_and_later_topics() {
    let (server, client, producer) = start_with_producer("logs.a", 2).await;
    for i in 0..10 {
        send(
            &producer,
            "logs.a",
            Message::new(format!("a{i}")).with_partition(i % 2),
        )
        .await;
    }
    producer.flush().await.expect("flush");
    let mut reader = TopicReader::new(client.clone(), "logs.*", ReadStart::Offset(2))
        .await
        .expect("reader");
    create_topic(&client, "logs.b", 1).await;
    send(&producer, "logs.b", Message::new("b0")).await;
    producer.flush().await.expect("flush");
    let mut values = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !values.contains("b0") && tokio::time::Instant::now() < deadline {
        for r in reader.poll(Duration::from_millis(300)).await.expect("poll") {
            assert!(r.offset >= 2 || r.topic == "logs.b");
            values.insert(text(&r));
        }
    }
    // Five per partition; offsets 0 and 1 of each were skipped.
    assert_eq!(values.len(), 10 - 4 + 1, "{values:?}");
    assert!(values.contains("b0"));
    server.shutdown().await;
}

/// A reader keeps a fetch on the way while there is data to read; it must
/// still read every record exactly once and in order, and a topic created
/// meanwhile must not wait until the backlog is drained (the fetch sent
/// ahead does not cover it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_reader_with_a_fetch_ahead_reads_everything_once_and_new_topics_at_once() {
    let (server, client) = start_with_topic("flow.a", 3).await;
    // 4 MiB per partition: four fetches' worth (1 MiB per partition each).
    let producer = default_producer(&client);
    let total = 3 * 4096u32;
    for i in 0..total {
        let mut value = format!("a{i}-").into_bytes();
        value.resize(1024, b'.');
        send(
            &producer,
            "flow.a",
            Message::new(value).with_partition(i % 3),
        )
        .await;
    }
    producer.flush().await.expect("flush");
    let mut reader = TopicReader::new(client.clone(), "flow.*", ReadStart::Earliest)
        .await
        .expect("reader");
    let mut got: BTreeMap<(String, u32), Vec<u64>> = BTreeMap::new();
    let read = |records: Vec<ConsumedRecord>, got: &mut BTreeMap<(String, u32), Vec<u64>>| {
        for r in records {
            got.entry((r.topic.clone(), r.partition))
                .or_default()
                .push(r.offset);
        }
    };
    let a_read = |got: &BTreeMap<(String, u32), Vec<u64>>| {
        got.iter()
            .filter(|((t, _), _)| t == "flow.a")
            .map(|(_, v)| v.len())
            .sum::<usize>()
    };
    // The first answer sends the next fetch ahead.
    read(
        reader.poll(Duration::from_secs(2)).await.expect("poll"),
        &mut got,
    );
    assert!(a_read(&got) > 0);
    create_topic(&client, "flow.b", 1).await;
    producer
        .send("flow.b", Message::new("b0"))
        .await
        .expect("send")
        .await
        .expect("delivered");
    // Past the reader's pattern refresh.
    tokio::time::sleep(TopicReader::REFRESH + Duration::from_millis(100)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !got.contains_key(&("flow.b".to_owned(), 0)) {
        assert!(tokio::time::Instant::now() < deadline, "flow.b never read");
        read(
            reader.poll(Duration::from_millis(200)).await.expect("poll"),
            &mut got,
        );
    }
    assert!(
        a_read(&got) < total as usize,
        "flow.b was read only after all of flow.a's backlog"
    );
    while a_read(&got) < total as usize && tokio::time::Instant::now() < deadline {
        read(
            reader.poll(Duration::from_millis(200)).await.expect("poll"),
            &mut got,
        );
    }
    assert_eq!(a_read(&got), total as usize, "every record of flow.a");
    for ((topic, partition), offsets) in &got {
        let expected: Vec<u64> = (0..offsets.len() as u64).collect();
        assert_eq!(
            offsets, &expected,
            "{topic}/{partition}: in order, once each"
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_codes_surface() {
    let (server, client) = start_with_client().await;

    let e = client.describe_topic("nope").await.expect_err("unknown");
    assert_eq!(e.code(), Some(ErrorCode::UnknownTopic));
    assert_eq!(e.code_name(), "UNKNOWN_TOPIC");

    client
        .create_topic(
            "small",
            1,
            TopicConfig {
                on_full: Some(OnFull::Reject),
                ..capped(5)
            },
        )
        .await
        .expect("create");
    let e = client
        .create_topic("small", 1, TopicConfig::default())
        .await
        .expect_err("exists");
    assert_eq!(e.code(), Some(ErrorCode::TopicExists));

    let producer = default_producer(&client);
    // Keyed: the partition count lookup fails before queuing.
    let e = producer
        .send("nope", Message::new("x").with_key("k"))
        .await
        .expect_err("unknown topic");
    assert_eq!(e.code(), Some(ErrorCode::UnknownTopic));
    // Unkeyed: the batch fails.
    let e = producer
        .send("nope", Message::new("x"))
        .await
        .expect("queued")
        .await
        .expect_err("unknown topic");
    assert_eq!(e.code(), Some(ErrorCode::UnknownTopic));

    let e = producer
        .send("small", Message::new(vec![b'x'; 2 * 1024 * 1024]))
        .await
        .expect_err("too large");
    assert_eq!(e.code(), Some(ErrorCode::MessageTooLarge));

    let mut ok = Vec::new();
    for i in 0..5 {
        ok.push(
            producer
                .send("small", Message::new(format!("{i}")))
                .await
                .expect("send"),
        );
    }
    for d in ok {
        d.await.expect("fits");
    }
    let e = producer
        .send("small", Message::new("six"))
        .await
        .expect("queued")
        .await
        .expect_err("full");
    assert_eq!(e.code(), Some(ErrorCode::QueueFull));
    assert_eq!(e.code_name(), "QUEUE_FULL");
    assert!(e.is_retriable());
    assert!(e.retry_after_ms().is_some(), "{e:?}");

    let e = producer
        .send("small", Message::new("x").with_partition(7))
        .await
        .expect("queued")
        .await
        .expect_err("no such partition");
    assert_eq!(e.code(), Some(ErrorCode::UnknownPartition));

    server.shutdown().await;
    // The connection is gone: calls fail with a clear error, not a hang.
    let e = tokio::time::timeout(Duration::from_secs(5), client.ping())
        .await
        .expect("no hang")
        .expect_err("closed");
    assert_eq!(e.code_name(), "CONNECTION_ERROR", "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_matched_out_of_order() {
    let (server, client) = start_with_topic("quiet", 1).await;
    // A long poll on an empty partition stays unanswered while pings pass it.
    let mut reader = TopicReader::new(client.clone(), "quiet", ReadStart::Earliest)
        .await
        .expect("reader");
    let long_poll = tokio::spawn(async move { reader.poll(Duration::from_secs(2)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..5 {
        let rtt = client.ping().await.expect("ping");
        assert!(rtt < Duration::from_secs(1), "{rtt:?}");
    }
    assert!(!long_poll.is_finished());
    let records = long_poll.await.expect("join").expect("poll");
    assert!(records.is_empty());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_topic_stores_exactly_the_messages_that_fit() {
    let (server, client) = start_with_client().await;
    client
        .create_topic("jobs", 1, capped(5))
        .await
        .expect("create");
    // A long linger puts all eight in one batch, which the server refuses
    // whole; the producer retries in halves.
    let producer = lingering_producer(&client);
    let mut futures = Vec::new();
    for i in 0..8 {
        futures.push(
            producer
                .send("jobs", Message::new(format!("job{i}")))
                .await
                .expect("send"),
        );
    }
    producer.flush().await.expect("flush");
    let mut outcomes = Vec::new();
    for f in futures {
        outcomes.push(f.await.map(|d| d.offset).map_err(|e| e.code()));
    }
    assert_eq!(
        outcomes,
        [
            Ok(0),
            Ok(1),
            Ok(2),
            Ok(3),
            Ok(4),
            Err(Some(ErrorCode::QueueFull)),
            Err(Some(ErrorCode::QueueFull)),
            Err(Some(ErrorCode::QueueFull)),
        ]
    );
    let d = client.describe_topic("jobs").await.expect("describe");
    assert_eq!(d.partitions[0].messages, 5);
    server.shutdown().await;
}

/// `send_batch` has `send`'s outcomes, in the order given, with one future:
/// across batches and partitions, into a topic that fills up, and nothing
/// queued when a message is refused up front.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_batch_reports_each_message_in_order() {
    let (server, client, producer) = start_with_producer("bulk", 3).await;
    let messages: Vec<Message> = (0..2500)
        .map(|i| Message::new(format!("m{i}")).with_key(format!("k{}", i % 7)))
        .collect();
    let outcomes = producer
        .send_batch("bulk", messages)
        .await
        .expect("queued")
        .await;
    assert_eq!(outcomes.len(), 2500);
    let mut per_partition: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut where_key: HashMap<String, u32> = HashMap::new();
    for (i, o) in outcomes.iter().enumerate() {
        let d = o.as_ref().expect("stored");
        per_partition.entry(d.partition).or_default().push(d.offset);
        let p = *where_key
            .entry(format!("k{}", i % 7))
            .or_insert(d.partition);
        assert_eq!(p, d.partition, "one key, one partition");
    }
    for offsets in per_partition.values() {
        let expected: Vec<u64> = (0..offsets.len() as u64).collect();
        assert_eq!(offsets, &expected, "dense offsets in sending order");
    }

    client
        .create_topic("small", 1, capped(5))
        .await
        .expect("create");
    let slow = lingering_producer(&client);
    let batch = slow
        .send_batch("small", (0..8).map(|i| Message::new(format!("job{i}"))))
        .await
        .expect("queued");
    slow.flush().await.expect("flush");
    let outcomes: Vec<_> = batch
        .await
        .into_iter()
        .map(|o| o.map(|d| d.offset).map_err(|e| e.code()))
        .collect();
    let full = Err(Some(ErrorCode::QueueFull));
    assert_eq!(
        outcomes,
        [Ok(0), Ok(1), Ok(2), Ok(3), Ok(4), full, full, full]
    );

    let huge = Message::new(vec![b'x'; 2 * 1024 * 1024]);
    let refused = producer
        .send_batch("bulk", vec![Message::new("fine"), huge])
        .await
        .expect_err("too large");
    assert_eq!(refused.code(), Some(ErrorCode::MessageTooLarge));
    producer.flush().await.expect("flush");
    let d = client.describe_topic("bulk").await.expect("describe");
    let stored: u64 = d.partitions.iter().map(|p| p.messages).sum();
    assert_eq!(stored, 2500, "nothing of the refused call was queued");
    assert!(producer
        .send_batch("bulk", Vec::new())
        .await
        .expect("empty")
        .await
        .is_empty());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_messages_with_ids_report_their_original_offsets() {
    let (server, client) = start_with_topic("events", 1).await;
    // A long linger: each round's messages travel as one batch (flush sends).
    let producer = lingering_producer(&client);
    let round = |values: &'static [&'static str]| {
        let producer = producer.clone();
        async move {
            let mut futures = Vec::new();
            for v in values {
                let m = Message::new(*v).with_message_id(*v);
                futures.push(producer.send("events", m).await.expect("send"));
            }
            producer.flush().await.expect("flush");
            let mut offsets = Vec::new();
            for f in futures {
                offsets.push(f.await.expect("delivered").offset);
            }
            offsets
        }
    };
    assert_eq!(round(&["a", "b"]).await, [0, 1]);
    assert_eq!(round(&["x"]).await, [2]);
    // What a producer retrying after a lost answer sends: some of these were
    // stored already. Each must learn its own offset, not base + index.
    assert_eq!(round(&["a", "c", "b", "d"]).await, [0, 3, 1, 4]);
    assert_eq!(round(&["b", "x", "a"]).await, [1, 2, 0]);
    assert_eq!(round(&["c", "d"]).await, [3, 4]);
    let d = client.describe_topic("events").await.expect("describe");
    assert_eq!(d.partitions[0].messages, 5, "a, b, x, c, d once each");
    server.shutdown().await;
}

/// A client whose connection to `server` goes through a relay that holds
/// back everything the server sends while the returned flag is true.
async fn client_with_held_answers(
    server: &TestServer,
) -> (spool_client::Client, tokio::sync::watch::Sender<bool>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let (mut up_rd, mut up_wr) = upstream.into_split();
    let (near, far) = tokio::io::duplex(1 << 20);
    let (mut far_rd, mut far_wr) = tokio::io::split(far);
    let (hold, held) = tokio::sync::watch::channel(false);
    tokio::spawn(async move { tokio::io::copy(&mut far_rd, &mut up_wr).await });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut held = held;
        loop {
            let n = match up_rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if held.wait_for(|h| !*h).await.is_err() {
                return;
            }
            if far_wr.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    let client = spool_client::Client::connect_stream(
        near,
        server.addr,
        spool_client::ClientOptions::default(),
    )
    .await
    .expect("handshake through the relay");
    (client, hold)
}

/// With the default options the producer decides by itself: a message to a
/// partition with nothing in flight leaves at once, alone (no linger), and
/// messages sent while its request is in flight wait in one batch: when the
/// answer comes they leave together, instead of one request per message,
/// each waiting for the one before (what made a producer slow to catch up
/// after a stalled fdatasync). With the old default, a 5 ms linger, the
/// batches were [2, 19].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_while_the_window_is_full_leave_in_one_batch() {
    let (server, admin) = start_with_topic("t", 1).await;
    let (client, hold) = client_with_held_answers(&server).await;
    let producer = Producer::new(client, ProducerOptions::default());
    // A producer's first round trip asks for a producer id (a single-node
    // server has none to give): done before the answers are held.
    producer
        .send("t", Message::new("warm-up"))
        .await
        .expect("send")
        .await
        .expect("delivered");
    hold.send_replace(true);
    let mut waiting = vec![producer
        .send("t", Message::new("first"))
        .await
        .expect("send")];
    for i in 0..20 {
        // Each in a turn of its own: the producer sees them one by one.
        tokio::time::sleep(Duration::from_millis(2)).await;
        waiting.push(
            producer
                .send("t", Message::new(format!("m{i}")))
                .await
                .expect("send"),
        );
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    hold.send_replace(false);
    let mut offsets = Vec::new();
    for w in waiting {
        offsets.push(w.await.expect("delivered").offset);
    }
    assert_eq!(offsets, (1..22).collect::<Vec<u64>>());
    let fetched = admin
        .fetch(spool_proto::Fetch {
            max_wait_ms: 0,
            max_bytes: 1 << 20,
            partitions: vec![spool_proto::FetchPartition {
                topic: "t".to_owned(),
                partition: 0,
                offset: 0,
                max_bytes: 1 << 20,
            }],
        })
        .await
        .expect("fetch");
    let mut counts = Vec::new();
    for p in &fetched.partitions {
        for batch in spool_batch::split_batches(&p.batches) {
            let header = spool_batch::validate(batch.expect("a whole batch")).expect("valid");
            counts.push(header.record_count);
        }
    }
    assert_eq!(counts, [1, 1, 20], "the first alone, the rest together");
    drop(producer);
    server.shutdown().await;
}

/// After a poll that returned records, the reader's next fetch is already
/// on its way as a long poll. A later poll with a shorter wait still
/// returns on time (the fetch is kept, not waited out), and the next
/// message arrives through that same fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_returns_on_time_while_the_fetch_sent_ahead_waits() {
    let (server, client, producer) = start_with_producer("steady", 1).await;
    let send = |v: &'static str| {
        let producer = producer.clone();
        async move {
            producer
                .send("steady", Message::new(v))
                .await
                .expect("send")
                .await
                .expect("stored")
        }
    };
    send("one").await;
    let mut reader = TopicReader::new(client.clone(), "steady", ReadStart::Earliest)
        .await
        .expect("reader");
    let first = reader.poll(Duration::from_secs(5)).await.expect("poll");
    assert_eq!(first.iter().map(text).collect::<Vec<_>>(), ["one"]);
    // The fetch sent ahead waits up to 500 ms (`TopicReader::REFRESH`).
    let started = std::time::Instant::now();
    let none = reader.poll(Duration::from_millis(20)).await.expect("poll");
    let took = started.elapsed();
    assert!(none.is_empty());
    assert!(
        took < Duration::from_millis(300),
        "a 20 ms poll took {took:?}"
    );
    send("two").await;
    let second = reader.poll(Duration::from_secs(5)).await.expect("poll");
    assert_eq!(second.iter().map(text).collect::<Vec<_>>(), ["two"]);
    server.shutdown().await;
}

/// Two batches of a partition in flight at once (a producer allowing more
/// than one request in flight per partition), both refused by a full
/// topic: the producer holds the first until the second is answered, then
/// retries in order and in halves, so the messages that fit are stored
/// (one refused batch failing whole would lose "a", which fits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_refused_while_others_are_in_flight_still_store_what_fits() {
    let (server, admin) = start_with_client().await;
    admin
        .create_topic("jobs", 1, capped(2))
        .await
        .expect("create");
    let first = default_producer(&admin);
    let filler = first
        .send("jobs", Message::new("filler"))
        .await
        .expect("send");
    assert_eq!(filler.await.expect("stored").offset, 0);
    let (client, hold) = client_with_held_answers(&server).await;
    // Two requests of a partition may be in flight (not the default).
    let producer = Producer::new(
        client,
        ProducerOptions {
            linger: Duration::from_secs(5),
            max_in_flight_per_partition: 4,
            ..ProducerOptions::default()
        },
    );
    hold.send_replace(true);
    let mut futures = Vec::new();
    for batch in [&["a", "b", "c"][..], &["d", "e"]] {
        for m in batch {
            futures.push(producer.send("jobs", Message::new(*m)).await.expect("send"));
        }
        // Each batch leaves on its flush; both are in flight together.
        let p = producer.clone();
        tokio::spawn(async move { p.flush().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hold.send_replace(false);
    let mut outcomes = Vec::new();
    for f in futures {
        outcomes.push(f.await.map(|d| d.offset).map_err(|e| e.code()));
    }
    let full = Err(Some(ErrorCode::QueueFull));
    assert_eq!(outcomes, [Ok(1), full, full, full, full]);
    let d = admin.describe_topic("jobs").await.expect("describe");
    assert_eq!(d.partitions[0].messages, 2, "filler and a");
    server.shutdown().await;
}
