//! Work queues and request records through the client API, against the
//! real server in process.

use crate::support::{
    connect, create_topic, default_producer, start_with_client, start_with_topic,
};
use serde_json::{json, Value};
use spool_client::{
    Backoff, Client, ClientError, DeliveryMode, ErrorCode, LeasedMessage, Message,
    QueueSubscribeOptions, QueueSubscriber, RequestStatus, SubscriptionKind, SubscriptionOptions,
    CONTENT_TYPE_HEADER, REQUEST_ID_HEADER, WORKERS_SUBSCRIPTION,
};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn value(m: &LeasedMessage) -> String {
    String::from_utf8_lossy(m.value.as_deref().unwrap_or_default()).into_owned()
}

fn header<'a>(m: &'a LeasedMessage, key: &str) -> Option<&'a [u8]> {
    m.headers
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.as_deref())
}

async fn produce(client: &Client, topic: &str, messages: Vec<Message>) -> Vec<(u32, u64)> {
    let producer = default_producer(client);
    let mut pending = Vec::new();
    for m in messages {
        pending.push(producer.send(topic, m).await.expect("queued"));
    }
    let mut out = Vec::new();
    for p in pending {
        let d = p.await.expect("stored");
        out.push((d.partition, d.offset));
    }
    out
}

fn codes(results: &[Result<(), ClientError>]) -> Vec<Option<ErrorCode>> {
    results
        .iter()
        .map(|r| r.as_ref().err().and_then(ClientError::code))
        .collect()
}

/// Receives until `n` messages came or `limit` passed.
async fn receive_n(
    client: &Client,
    topic: &str,
    sub: &str,
    n: usize,
    limit: Duration,
) -> Vec<LeasedMessage> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        let want = u32::try_from(n - got.len()).unwrap_or(u32::MAX);
        got.extend(
            client
                .receive(topic, sub, want, Duration::from_millis(200))
                .await
                .expect("receive"),
        );
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_ack_nack_extend_and_dead_letters() {
    let (server, client) = start_with_topic("jobs", 2).await;
    create_topic(&client, "jobs.dlq", 1).await;
    let options = SubscriptionOptions {
        ack_timeout_ms: 400,
        max_deliveries: 2,
        dead_letter_topic: Some("jobs.dlq".into()),
        ..SubscriptionOptions::default()
    };
    client
        .create_subscription("jobs", "w", options.clone())
        .await
        .expect("create");
    // The same settings again: fine. Other settings: GROUP_EXISTS.
    client
        .create_subscription("jobs", "w", options.clone())
        .await
        .expect("idempotent create");
    let other = SubscriptionOptions {
        max_deliveries: 9,
        ..options.clone()
    };
    let err = client
        .create_subscription("jobs", "w", other)
        .await
        .expect_err("different settings");
    assert_eq!(err.code(), Some(ErrorCode::GroupExists));
    let subs = client.list_subscriptions(Some("jobs")).await.expect("list");
    assert_eq!(subs.len(), 1);
    assert_eq!(
        (
            subs[0].name.as_str(),
            subs[0].ack_timeout_ms,
            subs[0].max_deliveries
        ),
        ("w", 400, 2)
    );
    assert_eq!(subs[0].dead_letter_topic.as_deref(), Some("jobs.dlq"));
    assert_eq!(subs[0].mode, DeliveryMode::AtLeastOnce);

    let messages = ["a", "b", "c", "d"]
        .map(|v| Message::new(v).with_key(v))
        .to_vec();
    produce(&client, "jobs", messages).await;
    let got = receive_n(&client, "jobs", "w", 4, Duration::from_secs(5)).await;
    let values: BTreeSet<String> = got.iter().map(value).collect();
    assert_eq!(
        values,
        BTreeSet::from(["a", "b", "c", "d"].map(String::from))
    );
    assert!(got.iter().all(|m| m.deliveries == 1));
    let by_value = |v: &str| got.iter().find(|m| value(m) == v).expect("leased");

    // a: acked — once; again it is refused, and a made-up receipt too.
    let a = by_value("a").receipt.clone();
    let results = client
        .ack("jobs", "w", std::slice::from_ref(&a))
        .await
        .expect("ack");
    assert_eq!(codes(&results), [None]);
    let results = client
        .ack("jobs", "w", &[a, "1-0-ffff".into(), "garbage".into()])
        .await
        .expect("ack again");
    let c = codes(&results);
    assert_eq!(c[0], Some(ErrorCode::LeaseExpired));
    assert!(matches!(
        c[1],
        Some(ErrorCode::UnknownReceipt | ErrorCode::LeaseExpired)
    ));
    assert_eq!(c[2], Some(ErrorCode::UnknownReceipt));

    // b: nacked with a delay — not back before it ends.
    let b = by_value("b").receipt.clone();
    let nacked = Instant::now();
    let results = client
        .nack(
            "jobs",
            "w",
            &[b],
            Duration::from_millis(700),
            Some("try later"),
        )
        .await
        .expect("nack");
    assert_eq!(codes(&results), [None]);

    // c: extended well past its ack timeout; d: left to lapse.
    let c_receipt = by_value("c").receipt.clone();
    let results = client
        .extend(
            "jobs",
            "w",
            std::slice::from_ref(&c_receipt),
            Duration::from_secs(10),
        )
        .await
        .expect("extend");
    assert_eq!(codes(&results), [None]);

    let again = receive_n(&client, "jobs", "w", 2, Duration::from_secs(5)).await;
    let mut values: Vec<String> = again.iter().map(value).collect();
    values.sort();
    assert_eq!(values, ["b", "d"], "c is still leased; a is done");
    let b_again = again.iter().find(|m| value(m) == "b").expect("b");
    assert!(
        nacked.elapsed() >= Duration::from_millis(650),
        "b came back early"
    );
    assert!(again.iter().all(|m| m.deliveries == 2));
    // The extended lease is still good.
    let results = client.ack("jobs", "w", &[c_receipt]).await.expect("ack c");
    assert_eq!(codes(&results), [None]);

    // Second failures reach max deliveries: both go to the dead-letter topic.
    let receipts: Vec<String> = again.iter().map(|m| m.receipt.clone()).collect();
    let results = client
        .nack("jobs", "w", &receipts, Duration::ZERO, Some("broken"))
        .await
        .expect("nack");
    assert_eq!(codes(&results), [None, None]);
    assert_eq!(b_again.deliveries, 2);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let d = client.describe_topic("jobs.dlq").await.expect("describe");
        if d.partitions.iter().map(|p| p.messages).sum::<u64>() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "dead letters never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(client
        .receive("jobs", "w", 10, Duration::from_millis(300))
        .await
        .expect("receive")
        .is_empty());

    // Redrive brings them back as new messages.
    assert_eq!(client.redrive("jobs", "w").await.expect("redrive"), 2);
    assert_eq!(client.redrive("jobs", "w").await.expect("redrive"), 0);
    let back = receive_n(&client, "jobs", "w", 2, Duration::from_secs(5)).await;
    let mut values: Vec<String> = back.iter().map(value).collect();
    values.sort();
    assert_eq!(values, ["b", "d"]);
    assert!(back.iter().all(|m| m.deliveries == 1));
    assert!(back
        .iter()
        .all(|m| m.headers.iter().all(|(k, _)| !k.starts_with("spool-dlq-"))));

    client
        .delete_subscription("jobs", "w")
        .await
        .expect("delete");
    let err = client
        .receive("jobs", "w", 1, Duration::ZERO)
        .await
        .expect_err("deleted");
    assert_eq!(err.code(), Some(ErrorCode::UnknownSubscription));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_ids_and_delivery_times_travel_as_headers() {
    let (server, client) = start_with_topic("d", 1).await;
    client
        .create_subscription("d", "w", SubscriptionOptions::default())
        .await
        .expect("sub");
    let first = produce(
        &client,
        "d",
        vec![Message::new("paid").with_message_id("order-17")],
    )
    .await;
    let second = produce(
        &client,
        "d",
        vec![Message::new("paid").with_message_id("order-17")],
    )
    .await;
    assert_eq!(first, second, "a repeated ID answers the original offset");
    let sent = Instant::now();
    produce(
        &client,
        "d",
        vec![Message::new("later").with_delay(Duration::from_millis(800))],
    )
    .await;
    let now = receive_n(&client, "d", "w", 5, Duration::from_millis(400)).await;
    assert_eq!(now.iter().map(value).collect::<Vec<_>>(), ["paid"]);
    assert_eq!(header(&now[0], "spool-msg-id"), Some(&b"order-17"[..]));
    let late = receive_n(&client, "d", "w", 1, Duration::from_secs(5)).await;
    assert_eq!(late.iter().map(value).collect::<Vec<_>>(), ["later"]);
    assert!(
        sent.elapsed() >= Duration::from_millis(750),
        "delivered early"
    );
    let at: i64 = std::str::from_utf8(header(&late[0], "spool-deliver-at").expect("header"))
        .expect("ascii")
        .parse()
        .expect("decimal");
    assert!(at > 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_push_delivers_every_message_once_within_credit() {
    let (server, client) = start_with_topic("p", 3).await;
    let options = SubscriptionOptions {
        kind: SubscriptionKind::Queue,
        backoff: Backoff::Fixed { delay_ms: 0 },
        ..SubscriptionOptions::default()
    };
    client
        .create_subscription("p", "w", options)
        .await
        .expect("sub");
    let n = 200;
    let messages = (0..n).map(|i| Message::new(format!("m{i}"))).collect();
    produce(&client, "p", messages).await;
    let mut sub = QueueSubscriber::subscribe(
        &client,
        "p",
        "w",
        QueueSubscribeOptions {
            credit_messages: 4,
            credit_bytes: 1 << 20,
        },
    )
    .await
    .expect("subscribe");
    let mut seen = BTreeSet::new();
    while seen.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .expect("a delivery in time")
            .expect("open")
            .expect("delivery");
        assert!(seen.insert(value(&m)), "{} delivered twice", value(&m));
        let results = client.ack("p", "w", &[m.receipt]).await.expect("ack");
        assert_eq!(codes(&results), [None]);
        // Credit bounds what is leased ahead of the application.
        let leased: u64 = client
            .list_subscriptions(Some("p"))
            .await
            .expect("list")
            .iter()
            .map(|s| s.leased)
            .sum();
        assert!(leased <= 4 + 1, "{leased} leased with a credit of 4");
    }
    let left = sub.unsubscribe().await.expect("unsubscribe");
    assert!(left.is_empty(), "nothing was left to deliver");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_from_submit_to_complete() {
    let (server, client) = start_with_client().await;
    let worker = connect(&server).await;
    let id = client
        .submit_request("resize", &b"{\"w\": 10}"[..], true, None)
        .await
        .expect("submit");
    let record = client.get_request(&id, Duration::ZERO).await.expect("get");
    assert_eq!(record["status"], "pending");
    assert_eq!(record["queue"], "resize");

    let got = worker
        .receive("resize", WORKERS_SUBSCRIPTION, 1, Duration::from_secs(5))
        .await
        .expect("receive");
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(header(m, REQUEST_ID_HEADER), Some(id.as_bytes()));
    assert_eq!(
        header(m, CONTENT_TYPE_HEADER),
        Some(&b"application/json"[..])
    );
    assert_eq!(m.value.as_deref(), Some(&b"{\"w\": 10}"[..]));
    let record = client.get_request(&id, Duration::ZERO).await.expect("get");
    assert_eq!(RequestStatus::of(&record), Some(RequestStatus::Running));

    // A waiting status read answers as soon as the worker completes.
    let waiter = {
        let client = client.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let r = client.get_request(&id, Duration::from_secs(20)).await;
            (r, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let done = worker
        .complete_request(&id, &json!({"thumbnail": "cat.png"}))
        .await
        .expect("complete");
    assert_eq!(done["status"], "succeeded");
    let (record, waited) = waiter.await.expect("join");
    let record = record.expect("get");
    assert_eq!(record["status"], "succeeded");
    assert_eq!(record["result"], json!({"thumbnail": "cat.png"}));
    assert_eq!(record["attempts"], 1);
    assert!(
        record.get("receipt").is_none(),
        "internal fields stay inside"
    );
    assert!(
        waited < Duration::from_secs(5),
        "the wait ended late: {waited:?}"
    );

    // Completing twice changes nothing.
    let err = worker
        .complete_request(&id, &json!(0))
        .await
        .expect_err("twice");
    assert_eq!(err.code(), Some(ErrorCode::RequestFinished));
    let err = client
        .get_request("no-such-id", Duration::ZERO)
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Some(ErrorCode::UnknownRequest));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_requests_retry_then_fail_and_bad_submissions_are_refused() {
    let (server, client) = start_with_client().await;
    let big = "x".repeat(100_000);
    let id = client
        .submit_request("jobs", &b"\x00\xffbinary"[..], false, None)
        .await
        .expect("submit");
    let m = receive_n(
        &client,
        "jobs",
        WORKERS_SUBSCRIPTION,
        1,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(m[0].value.as_deref(), Some(&b"\x00\xffbinary"[..]));
    assert_eq!(header(&m[0], CONTENT_TYPE_HEADER), None);
    // Retried: pending again, with the error kept; longer than a `string`.
    let record = client.fail_request(&id, &big, true).await.expect("fail");
    assert_eq!(record["status"], "pending");
    assert_eq!(record["error"].as_str().map(str::len), Some(big.len()));
    let m = receive_n(
        &client,
        "jobs",
        WORKERS_SUBSCRIPTION,
        1,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(m[0].deliveries, 2);
    let record = client
        .fail_request(&id, "no luck", false)
        .await
        .expect("fail");
    assert_eq!(record["status"], "failed");
    assert_eq!(record["error"], "no luck");
    assert_eq!(record["attempts"], 2);
    let waited = client
        .get_request(&id, Duration::from_secs(10))
        .await
        .expect("get");
    assert_eq!(waited["status"], "failed", "a final record answers at once");

    // A large result travels too (beyond a `string`'s 64 KiB).
    let id = client
        .submit_request("jobs", "x", false, None)
        .await
        .expect("submit");
    receive_n(
        &client,
        "jobs",
        WORKERS_SUBSCRIPTION,
        1,
        Duration::from_secs(5),
    )
    .await;
    let result = Value::String(big.clone());
    let record = client
        .complete_request(&id, &result)
        .await
        .expect("complete");
    assert_eq!(record["result"], result);

    for (queue, payload, json, callback, code) in [
        ("jobs", "not json", true, None, ErrorCode::InvalidRequest),
        (
            "jobs",
            "x",
            false,
            Some("http://example.com/cb"),
            ErrorCode::InvalidRequest,
        ),
        (
            "jobs",
            "x",
            false,
            Some("not a url"),
            ErrorCode::InvalidRequest,
        ),
        (
            "spool.errors",
            "x",
            false,
            None,
            ErrorCode::ReservedTopicName,
        ),
        ("bad name!", "x", false, None, ErrorCode::InvalidTopicName),
    ] {
        let err = client
            .submit_request(queue, payload, json, callback)
            .await
            .expect_err("refused");
        assert_eq!(
            err.code(),
            Some(code),
            "{queue} {payload} {callback:?}: {err}"
        );
    }
    // An allowed callback is accepted.
    client
        .submit_request("jobs", "x", false, Some("http://127.0.0.1:9/cb"))
        .await
        .expect("loopback callback");
    server.shutdown().await;
}
