//! Broker behaviour against real files: topics, routing, back pressure,
//! groups, persistence across reopen, push cursors.

use spool_batch::{BatchBuilder, NewRecord};
use spool_broker::push::{PushCursor, PushStart};
use spool_broker::*;
use spool_types::{ErrorCode, TopicPattern};

fn batch(values: &[&str]) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for v in values {
        b.push(&NewRecord::value(v.as_bytes().to_vec(), 1)).unwrap();
    }
    b.finish().unwrap()
}

/// A broker over a fresh directory.
fn fresh() -> (tempfile::TempDir, Broker) {
    let dir = tempfile::tempdir().unwrap();
    let (b, _) = Broker::open(dir.path(), 0).unwrap();
    (dir, b)
}

/// Produces `values` as one batch, spread over the partitions.
fn spread(b: &Broker, topic: &str, values: &[&str]) -> Produced {
    b.produce(topic, &Routing::Spread, &batch(values), 0)
        .unwrap()
}

/// Member "c" (10 s sessions) joins `group` reading `topic`.
fn join(b: &Broker, group: &str, topic: &str, start: StartFrom) -> Assignment {
    b.join_group(group, None, "c", None, &[topic.into()], 10_000, start, 0)
        .unwrap()
}

fn values(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for b in spool_batch::split_batches(bytes) {
        let b = b.unwrap();
        let h = spool_batch::validate(b).unwrap();
        for r in spool_batch::records(b, &h) {
            out.push(String::from_utf8(r.unwrap().value.unwrap().to_vec()).unwrap());
        }
    }
    out
}

#[test]
fn topics_persist_and_names_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (b, _) = Broker::open(dir.path(), 0).unwrap();
        b.create_topic("orders", 3, TopicConfig::default(), 0)
            .unwrap();
        assert_eq!(
            b.create_topic("orders", 1, TopicConfig::default(), 0)
                .unwrap_err()
                .code,
            ErrorCode::TopicExists
        );
        assert_eq!(
            b.create_topic("spool.x", 1, TopicConfig::default(), 0)
                .unwrap_err()
                .code,
            ErrorCode::ReservedTopicName
        );
        assert_eq!(
            b.create_topic("a/b", 1, TopicConfig::default(), 0)
                .unwrap_err()
                .code,
            ErrorCode::InvalidTopicName
        );
        assert_eq!(
            b.create_topic("ok", 0, TopicConfig::default(), 0)
                .unwrap_err()
                .code,
            ErrorCode::InvalidConfig
        );
        b.create_topic("gone", 1, TopicConfig::default(), 0)
            .unwrap();
        b.produce("orders", &Routing::Key(b"k".to_vec()), &batch(&["x"]), 0)
            .unwrap();
        b.delete_topic("gone", 0).unwrap();
        let patch = TopicConfigPatch {
            max_messages: Some(10),
            ..Default::default()
        };
        b.alter_topic("orders", &patch, 0).unwrap();
    }
    let (b, notes) = Broker::open(dir.path(), 0).unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(
        b.list_topics(None).unwrap(),
        vec![("orders".to_string(), 3)]
    );
    let d = b.describe_topic("orders").unwrap();
    assert_eq!(d.config.max_messages, Some(10));
    assert_eq!(d.partitions.iter().map(|p| p.messages).sum::<u64>(), 1);
    assert_eq!(
        b.produce("nope", &Routing::Spread, &batch(&["x"]), 0)
            .unwrap_err()
            .code,
        ErrorCode::UnknownTopic
    );
    assert_eq!(
        b.produce("orders", &Routing::Partition(3), &batch(&["x"]), 0)
            .unwrap_err()
            .code,
        ErrorCode::UnknownPartition
    );
}

#[test]
fn one_key_always_lands_on_one_partition() {
    let (_dir, b) = fresh();
    b.create_topic("t", 4, TopicConfig::default(), 0).unwrap();
    let p = b
        .produce("t", &Routing::Key(b"alice".to_vec()), &batch(&["1"]), 0)
        .unwrap()
        .partition;
    for i in 0..10 {
        let r = b
            .produce(
                "t",
                &Routing::Key(b"alice".to_vec()),
                &batch(&[&i.to_string()]),
                0,
            )
            .unwrap();
        assert_eq!(r.partition, p);
    }
    let spread: std::collections::BTreeSet<u32> =
        (0..8).map(|_| spread(&b, "t", &["s"]).partition).collect();
    assert_eq!(spread.len(), 4);
}

#[test]
fn full_topic_rejects_and_work_queue_accepts_again_after_consumption() {
    let (_dir, b) = fresh();
    let config = TopicConfig {
        max_messages: Some(5),
        retention: Retention::WorkQueue,
        ..TopicConfig::default()
    };
    b.create_topic("q", 1, config, 0).unwrap();
    let a = join(&b, "g", "q", StartFrom::Earliest);
    spread(&b, "q", &["1", "2", "3"]);
    spread(&b, "q", &["4", "5"]);
    let err = b
        .produce("q", &Routing::Spread, &batch(&["6"]), 0)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::QueueFull);
    assert!(err.retry_after_ms.is_some());
    assert_eq!(
        b.describe_topic("q").unwrap().partitions[0].end_offset,
        5,
        "nothing of the rejected batch was written"
    );
    b.commit("g", &a.member_id, None, &[("q".into(), 0, 3)], 0)
        .unwrap();
    spread(&b, "q", &["6", "7"]);
    spread(&b, "q", &["8"]);
    assert_eq!(
        b.produce("q", &Routing::Spread, &batch(&["9"]), 0)
            .unwrap_err()
            .code,
        ErrorCode::QueueFull
    );
}

#[test]
fn drop_oldest_keeps_the_newest() {
    let (_dir, b) = fresh();
    let config = TopicConfig {
        max_messages: Some(4),
        on_full: OnFull::DropOldest,
        ..TopicConfig::default()
    };
    b.create_topic("d", 1, config, 0).unwrap();
    for i in 0..10 {
        spread(&b, "d", &[&i.to_string()]);
    }
    let (start, end) = b.offsets("d", 0).unwrap();
    assert_eq!((start, end), (6, 10));
    assert_eq!(
        values(&b.fetch("d", 0, start, 1 << 20).unwrap().bytes),
        ["6", "7", "8", "9"]
    );
}

#[test]
fn committed_offsets_survive_reopen_and_latest_is_pinned() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (b, _) = Broker::open(dir.path(), 0).unwrap();
        b.create_topic("t", 2, TopicConfig::default(), 0).unwrap();
        b.produce("t", &Routing::Partition(0), &batch(&["a", "b"]), 0)
            .unwrap();
        let a = join(&b, "g", "t", StartFrom::Earliest);
        assert_eq!(a.partitions, vec![("t".into(), 0, 0), ("t".into(), 1, 0)]);
        b.commit("g", &a.member_id, None, &[("t".into(), 0, 2)], 0)
            .unwrap();
        let l = join(&b, "late", "t", StartFrom::Latest);
        assert_eq!(l.partitions[0].2, 2);
    }
    let (b, _) = Broker::open(dir.path(), 0).unwrap();
    b.produce("t", &Routing::Partition(0), &batch(&["c"]), 0)
        .unwrap();
    let a = join(&b, "g", "t", StartFrom::Latest);
    assert_eq!(a.partitions[0], ("t".into(), 0, 2));
    let l = join(&b, "late", "t", StartFrom::Latest);
    assert_eq!(
        l.partitions[0].2, 2,
        "a `latest` group continues where it was pinned"
    );
    assert_eq!(
        b.heartbeat("g", "nobody", None, 1, 0).unwrap_err().code,
        ErrorCode::UnknownMember
    );
}

#[test]
fn push_cursor_respects_credit_and_finds_new_topics() {
    let (_dir, b) = fresh();
    b.create_topic("orders.eu", 1, TopicConfig::default(), 0)
        .unwrap();
    spread(&b, "orders.eu", &["e1", "e2"]);
    let mut c = PushCursor::new(
        &b,
        vec![TopicPattern::new("orders.*").unwrap()],
        PushStart::Earliest,
        3,
        1 << 20,
    )
    .unwrap();
    let d = c.next(&b).unwrap().unwrap();
    assert_eq!((d.topic.as_str(), d.records), ("orders.eu", 2));
    assert!(c.next(&b).unwrap().is_none());
    b.create_topic("orders.us", 1, TopicConfig::default(), 0)
        .unwrap();
    spread(&b, "orders.us", &["u1", "u2"]);
    let d = c.next(&b).unwrap().unwrap();
    assert_eq!(values(&d.batches), ["u1", "u2"]);
    // Credit is now overdrawn (3 - 4): nothing more until granted.
    spread(&b, "orders.eu", &["e3"]);
    assert!(c.next(&b).unwrap().is_none());
    c.grant(2, 0);
    assert!(c.next(&b).unwrap().is_some());
}

fn keyed(records: &[(&str, &str)], headers: &[(&str, &str)]) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for (k, v) in records {
        b.push(&NewRecord {
            key: Some(k.as_bytes().to_vec()),
            value: Some(v.as_bytes().to_vec()),
            headers: headers
                .iter()
                .map(|(hk, hv)| (hk.to_string(), Some(hv.as_bytes().to_vec())))
                .collect(),
            timestamp_ms: 1,
        })
        .unwrap();
    }
    b.finish().unwrap()
}

fn texts(msgs: &[spool_broker::subscription::LeasedMessage]) -> Vec<String> {
    msgs.iter()
        .map(|m| String::from_utf8(m.value.clone().unwrap().to_vec()).unwrap())
        .collect()
}

#[test]
fn queue_leases_acks_redelivers_and_dead_letters() {
    use spool_broker::subscription::SubscriptionSpec;
    let (_dir, b) = fresh();
    b.create_topic("jobs", 2, TopicConfig::default(), 0)
        .unwrap();
    b.create_topic("jobs.dlq", 1, TopicConfig::default(), 0)
        .unwrap();
    let spec = SubscriptionSpec {
        ack_timeout_ms: 1_000,
        max_deliveries: 2,
        dead_letter_topic: Some("jobs.dlq".into()),
        ..SubscriptionSpec::new("jobs", "w")
    };
    b.create_subscription(spec, 0).unwrap();
    b.produce("jobs", &Routing::Partition(0), &batch(&["a", "b"]), 0)
        .unwrap();
    b.produce("jobs", &Routing::Partition(1), &batch(&["c"]), 0)
        .unwrap();
    let got = b.receive("jobs", "w", 10, 0).unwrap();
    let mut names = texts(&got);
    names.sort();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(
        b.receive("jobs", "w", 10, 10).unwrap().is_empty(),
        "all leased"
    );
    // Ack one, nack one with a delay, let one expire.
    let by = |v: &str| {
        got.iter()
            .find(|m| m.value.as_deref() == Some(v.as_bytes()))
            .unwrap()
            .receipt
            .clone()
    };
    b.ack("jobs", "w", &[by("a")], 10).unwrap()[0]
        .clone()
        .unwrap();
    assert_eq!(
        b.ack("jobs", "w", &[by("a")], 11).unwrap()[0]
            .clone()
            .unwrap_err()
            .code,
        ErrorCode::LeaseExpired
    );
    assert_eq!(
        b.ack("jobs", "w", &["0-99-1".into()], 11).unwrap()[0]
            .clone()
            .unwrap_err()
            .code,
        ErrorCode::UnknownReceipt
    );
    assert_eq!(
        b.ack("jobs", "w", &["garbage".into()], 11).unwrap()[0]
            .clone()
            .unwrap_err()
            .code,
        ErrorCode::UnknownReceipt
    );
    b.nack("jobs", "w", &[by("b")], 500, Some("busy"), 20)
        .unwrap()[0]
        .clone()
        .unwrap();
    assert!(
        b.receive("jobs", "w", 10, 100).unwrap().is_empty(),
        "b waits for its delay, c is leased"
    );
    let again = b.receive("jobs", "w", 10, 1_001).unwrap();
    let mut names = texts(&again);
    names.sort();
    assert_eq!(
        names,
        ["b", "c"],
        "b after its delay, c after its lease expired"
    );
    assert!(again.iter().all(|m| m.deliveries == 2));
    // Both fail a second time: max deliveries reached → dead letters + events.
    let receipts: Vec<String> = again.iter().map(|m| m.receipt.clone()).collect();
    b.nack("jobs", "w", &receipts, 0, Some("still broken"), 1_002)
        .unwrap();
    b.tick(1_003).unwrap();
    let dlq = b.fetch("jobs.dlq", 0, 0, 1 << 20).unwrap();
    let mut dead = values(&dlq.bytes);
    dead.sort();
    assert_eq!(dead, ["b", "c"]);
    let events = b.fetch(spool_broker::EVENTS_TOPIC, 0, 0, 1 << 20).unwrap();
    let events = values(&events.bytes);
    assert_eq!(events.len(), 2);
    assert!(
        events[0].contains("\"dead_letter\"") && events[0].contains("still broken"),
        "{}",
        events[0]
    );
    assert!(b.receive("jobs", "w", 10, 5_000).unwrap().is_empty());
    // Redrive puts them back on the source topic, once.
    assert_eq!(b.redrive("jobs", "w", 5_000).unwrap(), 2);
    assert_eq!(b.redrive("jobs", "w", 5_001).unwrap(), 0);
    let back = b.receive("jobs", "w", 10, 5_002).unwrap();
    let mut names = texts(&back);
    names.sort();
    assert_eq!(names, ["b", "c"]);
    assert!(back
        .iter()
        .all(|m| m.headers.iter().all(|(k, _)| !k.starts_with("spool-dlq-"))));
}

#[test]
fn queue_state_survives_reopen_and_ordering_keys_hold() {
    use spool_broker::subscription::SubscriptionSpec;
    let dir = tempfile::tempdir().unwrap();
    {
        let (b, _) = Broker::open(dir.path(), 0).unwrap();
        b.create_topic("o", 1, TopicConfig::default(), 0).unwrap();
        b.create_subscription(
            SubscriptionSpec {
                ordered: true,
                ..SubscriptionSpec::new("o", "w")
            },
            0,
        )
        .unwrap();
        b.produce(
            "o",
            &Routing::Partition(0),
            &keyed(
                &[
                    ("A", "a1"),
                    ("A", "a2"),
                    ("B", "b1"),
                    ("A", "a3"),
                    ("B", "b2"),
                ],
                &[],
            ),
            0,
        )
        .unwrap();
        let got = b.receive("o", "w", 10, 0).unwrap();
        assert_eq!(texts(&got), ["a1", "b1"], "one in flight per key");
        let r: Vec<String> = got.iter().map(|m| m.receipt.clone()).collect();
        b.ack("o", "w", &r, 1).unwrap();
        let got = b.receive("o", "w", 10, 2).unwrap();
        assert_eq!(texts(&got), ["a2", "b2"]);
        b.ack("o", "w", &[got[0].receipt.clone()], 3).unwrap();
        // b2 stays leased (unacknowledged) across the restart.
    }
    let (b, _) = Broker::open(dir.path(), 10_000).unwrap();
    let got = b.receive("o", "w", 10, 10_000).unwrap();
    assert_eq!(
        texts(&got),
        ["a3", "b2"],
        "acked messages never come back; unacked ones do"
    );
    assert_eq!(
        got.iter()
            .find(|m| m.value.as_deref() == Some(&b"b2"[..]))
            .unwrap()
            .deliveries,
        2
    );
}

#[test]
fn delayed_messages_wait_and_duplicates_are_suppressed() {
    use spool_broker::subscription::SubscriptionSpec;
    let dir = tempfile::tempdir().unwrap();
    {
        let (b, _) = Broker::open(dir.path(), 0).unwrap();
        b.create_topic("d", 1, TopicConfig::default(), 0).unwrap();
        b.create_subscription(SubscriptionSpec::new("d", "w"), 0)
            .unwrap();
        b.produce(
            "d",
            &Routing::Spread,
            &keyed(&[("k", "later")], &[("spool-deliver-at", "5000")]),
            0,
        )
        .unwrap();
        b.produce("d", &Routing::Spread, &keyed(&[("k", "now")], &[]), 0)
            .unwrap();
        assert_eq!(texts(&b.receive("d", "w", 10, 100).unwrap()), ["now"]);
        // Duplicate suppression: same ID → original offset, nothing stored.
        let first = b
            .produce(
                "d",
                &Routing::Spread,
                &keyed(&[("k", "x")], &[("spool-msg-id", "m1")]),
                100,
            )
            .unwrap();
        let dup = b
            .produce(
                "d",
                &Routing::Spread,
                &keyed(&[("k", "x")], &[("spool-msg-id", "m1")]),
                200,
            )
            .unwrap();
        assert_eq!(
            (dup.partition, dup.base_offset),
            (first.partition, first.base_offset)
        );
        assert_eq!(b.offsets("d", 0).unwrap().1, 3);
    }
    // After a restart the delay still holds, and so does the dedup window.
    let (b, _) = Broker::open(dir.path(), 1_000).unwrap();
    let dup = b
        .produce(
            "d",
            &Routing::Spread,
            &keyed(&[("k", "x")], &[("spool-msg-id", "m1")]),
            1_000,
        )
        .unwrap();
    assert_eq!(dup.base_offset, 2);
    let early = b.receive("d", "w", 10, 1_000).unwrap();
    assert_eq!(
        texts(&early),
        ["now", "x"],
        "`now` was never acked; `later` must wait"
    );
    assert_eq!(texts(&b.receive("d", "w", 10, 5_000).unwrap()), ["later"]);
}

/// A batch of messages each carrying its own value as `spool-msg-id`.
fn with_ids(ids: &[&str]) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for id in ids {
        b.push(&NewRecord {
            key: None,
            value: Some(id.as_bytes().to_vec()),
            headers: vec![("spool-msg-id".into(), Some(id.as_bytes().to_vec()))],
            timestamp_ms: 1,
        })
        .unwrap();
    }
    b.finish().unwrap()
}

#[test]
fn suppressed_duplicates_report_where_every_record_is() {
    let (_dir, b) = fresh();
    b.create_topic("d", 1, TopicConfig::default(), 0).unwrap();
    let p0 = Routing::Partition(0);
    let fresh = b.produce("d", &p0, &with_ids(&["a", "b"]), 10).unwrap();
    assert_eq!(
        (fresh.base_offset, fresh.last_offset, fresh.placed),
        (0, 1, None)
    );
    b.produce("d", &p0, &with_ids(&["x"]), 10).unwrap();

    // Partly duplicates: only c is stored; the range names it alone and
    // `placed` says where each record is.
    let mixed = b
        .produce("d", &p0, &with_ids(&["a", "c", "b"]), 20)
        .unwrap();
    assert_eq!((mixed.base_offset, mixed.last_offset), (3, 3));
    assert_eq!(mixed.placed, Some(vec![(0, 0), (0, 3), (0, 1)]));

    // All duplicates, originals consecutive and in order: the range is exact.
    let again = b.produce("d", &p0, &with_ids(&["a", "b"]), 30).unwrap();
    assert_eq!((again.base_offset, again.last_offset), (0, 1));
    // Not consecutive (x sits between b and c), or not in order: the range
    // names the first original only, so that its length differs from the
    // batch's and a client knows to ask per record.
    let gap = b.produce("d", &p0, &with_ids(&["b", "c"]), 40).unwrap();
    assert_eq!((gap.base_offset, gap.last_offset), (1, 1));
    assert_eq!(gap.placed, Some(vec![(0, 1), (0, 3)]));
    let reversed = b.produce("d", &p0, &with_ids(&["b", "a"]), 40).unwrap();
    assert_eq!((reversed.base_offset, reversed.last_offset), (1, 1));
    // A single record's answer is always exact.
    let one = b.produce("d", &p0, &with_ids(&["c"]), 50).unwrap();
    assert_eq!((one.base_offset, one.last_offset), (3, 3));
    assert_eq!(
        b.offsets("d", 0).unwrap().1,
        4,
        "a, b, x, c stored once each"
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_finished_requests_message_that_comes_back_is_dropped_not_worked_on() {
    use spool_broker::requests::RequestStatus;
    let dir = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    let queue_state = dir.path().join("queues").join("work").join("workers");
    let id = {
        let (b, _) = Broker::open(dir.path(), 0).unwrap();
        let id = b
            .submit_request("work", b"job".to_vec(), false, None, 0)
            .unwrap()
            .id;
        assert_eq!(b.receive("work", "workers", 10, 1).unwrap().len(), 1);
        b.flush().unwrap();
        // The queue state as it was before the completion's ack.
        copy_dir(&queue_state, saved.path());
        let done = b
            .complete_request(&id, serde_json::json!({"ok": true}), 2)
            .unwrap();
        assert_eq!(done.status, RequestStatus::Succeeded);
        id
    };
    // A crash after the record was finished but before the message's ack
    // reached the disk: put the queue state back as it was.
    std::fs::remove_dir_all(&queue_state).unwrap();
    copy_dir(saved.path(), &queue_state);
    let (b, _) = Broker::open(dir.path(), 10).unwrap();
    assert!(
        b.receive("work", "workers", 10, 11).unwrap().is_empty(),
        "the finished request's message must not be handed to a worker again"
    );
    assert!(b.receive("work", "workers", 10, 12).unwrap().is_empty());
    assert_eq!(
        b.get_request(&id, 13).unwrap().status,
        RequestStatus::Succeeded
    );
    assert_eq!(b.subscription("work", "workers").unwrap().counts(), (0, 0));
}

/// Creates request queue `queue` with a `workers` subscription that
/// retries at once (no backoff, unlike the one a first submission
/// creates), so a test can receive a retried request without moving its
/// clock by the backoff.
fn request_queue_without_backoff(b: &Broker, queue: &str) {
    b.create_topic(queue, 1, TopicConfig::default(), 0).unwrap();
    let spec = spool_broker::subscription::SubscriptionSpec::new(queue, "workers");
    b.create_subscription(spec, 0).unwrap();
}

#[test]
fn request_records_follow_their_messages() {
    use spool_broker::requests::{CallbackStatus, RequestStatus, REQUEST_ID_HEADER};
    let dir = tempfile::tempdir().unwrap();
    let id;
    {
        let (b, _) = Broker::open(dir.path(), 0).unwrap();
        request_queue_without_backoff(&b, "work");
        let r = b
            .submit_request(
                "work",
                b"{\"n\":1}".to_vec(),
                true,
                Some("http://127.0.0.1:9/cb".into()),
                0,
            )
            .unwrap();
        id = r.id.clone();
        assert_eq!(r.status, RequestStatus::Pending);
        let msgs = b.receive("work", "workers", 10, 1).unwrap();
        assert_eq!(msgs.len(), 1);
        let header = msgs[0]
            .headers
            .iter()
            .find(|(k, _)| k == REQUEST_ID_HEADER)
            .unwrap()
            .1
            .clone()
            .unwrap();
        assert_eq!(&header[..], id.as_bytes());
        assert_eq!(
            b.get_request(&id, 2).unwrap().status,
            RequestStatus::Running
        );
        // A retryable failure puts it back; the next worker completes it.
        b.fail_request(&id, "flaky", true, 3).unwrap();
        assert_eq!(
            b.get_request(&id, 3).unwrap().status,
            RequestStatus::Pending
        );
        let again = b.receive("work", "workers", 10, 4).unwrap();
        assert_eq!(again[0].deliveries, 2);
        let done = b
            .complete_request(&id, serde_json::json!({"ok": true}), 5)
            .unwrap();
        assert_eq!(done.status, RequestStatus::Succeeded);
        assert_eq!(
            b.complete_request(&id, serde_json::json!(1), 6)
                .unwrap_err()
                .code,
            ErrorCode::RequestFinished
        );
        assert_eq!(
            b.complete_request("nope", serde_json::json!(1), 6)
                .unwrap_err()
                .code,
            ErrorCode::UnknownRequest
        );
        let due = b.due_callbacks(10).unwrap();
        assert_eq!(due.len(), 1);
        b.callback_outcome(&id, Err("connection refused".into()), 100, false, 10)
            .unwrap();
        assert!(b.due_callbacks(50).unwrap().is_empty());
        assert_eq!(b.due_callbacks(100).unwrap().len(), 1);
        b.callback_outcome(&id, Ok(()), 0, false, 100).unwrap();
    }
    // Records survive a restart.
    let (b, _) = Broker::open(dir.path(), 1_000).unwrap();
    let r = b.get_request(&id, 1_000).unwrap();
    assert_eq!(r.status, RequestStatus::Succeeded);
    assert_eq!(r.result, Some(serde_json::json!({"ok": true})));
    assert_eq!(r.callback.unwrap().status, CallbackStatus::Delivered);
    // A permanent failure fails the record and writes a side-channel event.
    let r = b
        .submit_request("work", b"x".to_vec(), false, None, 2_000)
        .unwrap();
    b.receive("work", "workers", 10, 2_001).unwrap();
    let failed = b.fail_request(&r.id, "bad input", false, 2_002).unwrap();
    assert_eq!(failed.status, RequestStatus::Failed);
    let events = values(
        &b.fetch(spool_broker::EVENTS_TOPIC, 0, 0, 1 << 20)
            .unwrap()
            .bytes,
    );
    assert!(
        events
            .iter()
            .any(|e| e.contains("request_failed") && e.contains("bad input")),
        "{events:?}"
    );
}

/// Offsets committed by a version that kept them in the metadata log are
/// still found after an upgrade, newer commits (in the offsets log) win,
/// and a topic deleted and created again starts with none.
#[test]
fn offsets_from_the_metadata_log_carry_over_and_die_with_their_topic() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (b, _) = Broker::open(dir.path(), 0).unwrap();
        b.create_topic("t", 1, TopicConfig::default(), 0).unwrap();
        b.create_topic("u", 1, TopicConfig::default(), 0).unwrap();
    }
    {
        // As an older version wrote them.
        let (mut store, _, _) = meta::MetaStore::open(&dir.path().join("meta")).unwrap();
        let old = meta::MetaEvent::OffsetsCommitted {
            group: "g".into(),
            offsets: vec![("t".into(), 0, 4), ("u".into(), 0, 6)],
        };
        store.append(&[old], 1).unwrap();
    }
    let tps = [("t".to_owned(), 0), ("u".to_owned(), 0)];
    {
        let (b, _) = Broker::open(dir.path(), 2).unwrap();
        assert_eq!(b.committed("g", &tps), vec![Some(4), Some(6)]);
        let a = b
            .join_group(
                "g",
                None,
                "c",
                None,
                &["t".into()],
                10_000,
                StartFrom::Earliest,
                2,
            )
            .unwrap();
        b.commit("g", &a.member_id, None, &[("t".into(), 0, 5)], 2)
            .unwrap();
        b.delete_topic("u", 3).unwrap();
        b.create_topic("u", 1, TopicConfig::default(), 3).unwrap();
        assert_eq!(b.committed("g", &tps), vec![Some(5), None]);
    }
    let (b, _) = Broker::open(dir.path(), 4).unwrap();
    assert_eq!(b.committed("g", &tps), vec![Some(5), None]);
}

/// A worker fails a request with `retry`: waiting workers are woken by the
/// nack and one takes the message at once, marking the record `running`.
/// That must stand — before, the record was written `pending` after the
/// nack, over the new holder's `running`, and the new holder's answer was
/// refused as not held (seen as a flaky request test under load).
#[test]
fn a_request_retried_and_taken_at_once_stays_running_for_its_new_holder() {
    use std::sync::{Arc, Mutex, Weak};

    /// Stands for a waiting worker: receives as soon as a lease is settled.
    struct EagerWorker {
        broker: Mutex<Weak<Broker>>,
        taken: Mutex<Vec<spool_broker::subscription::LeasedMessage>>,
    }
    impl AppendListener for EagerWorker {
        fn appended(&self, _topic: &str, _partition: u32) {}
        fn settled(&self, topic: &str, _partition: u32) {
            let Some(broker) = self.broker.lock().unwrap().upgrade() else {
                return;
            };
            let got = broker.receive(topic, "workers", 1, 2).unwrap();
            self.taken.lock().unwrap().extend(got);
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let (b, _) = Broker::open(dir.path(), 0).unwrap();
    request_queue_without_backoff(&b, "jobs");
    let b = Arc::new(b);
    let record = b
        .submit_request("jobs", b"{}".to_vec(), true, None, 0)
        .unwrap();
    let first = b.receive("jobs", "workers", 1, 1).unwrap();
    assert_eq!(first.len(), 1);
    let eager = Arc::new(EagerWorker {
        broker: Mutex::new(Arc::downgrade(&b)),
        taken: Mutex::new(Vec::new()),
    });
    b.set_listener(eager.clone());

    b.fail_request(&record.id, "try again", true, 2).unwrap();

    let taken = eager.taken.lock().unwrap().clone();
    assert_eq!(taken.len(), 1, "the woken worker took the message");
    let now = b.get_request(&record.id, 3).unwrap();
    assert_eq!(now.status, requests::RequestStatus::Running, "{now:?}");
    assert_eq!(now.receipt.as_deref(), Some(taken[0].receipt.as_str()));
    let done = b
        .complete_request(&record.id, serde_json::json!("ok"), 4)
        .unwrap();
    assert_eq!(done.status, requests::RequestStatus::Succeeded);
}

#[test]
fn submitting_to_an_existing_request_queue_creates_nothing() {
    let (_dir, b) = fresh();
    let submit = |queue: &str| {
        let request = NewRequest {
            queue: queue.to_owned(),
            payload: b"{}".to_vec(),
            json: true,
            callback_url: None,
        };
        b.submit_request_existing(request, 0)
    };
    assert_eq!(submit("jobs").unwrap_err().code, ErrorCode::UnknownTopic);
    assert!(b.topic("jobs").is_err());
    b.create_topic("jobs", 1, Default::default(), 0).unwrap();
    assert_eq!(
        submit("jobs").unwrap_err().code,
        ErrorCode::UnknownSubscription
    );
    assert!(b.list_subscriptions(Some("jobs")).is_empty());
    assert!(!b.is_request_queue("jobs"));
    b.submit_request("jobs", b"{}".to_vec(), true, None, 0)
        .unwrap();
    assert!(b.is_request_queue("jobs"));
    let record = submit("jobs").unwrap();
    assert_eq!(record.queue, "jobs");
}
