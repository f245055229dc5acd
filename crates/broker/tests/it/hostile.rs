//! What a hostile or unlucky client must not be able to do to the broker
//! (issue 24): grow a dead-letter topic without bound, write the side
//! channel, forge the server's headers, delete a system topic.

use spool_batch::{BatchBuilder, NewRecord};
use spool_broker::subscription::SubscriptionSpec;
use spool_broker::*;
use spool_types::limits::ERROR_TEXT_BYTES_MAX;
use spool_types::ErrorCode;

fn fresh() -> (tempfile::TempDir, Broker) {
    let dir = tempfile::tempdir().unwrap();
    let (b, _) = Broker::open(dir.path(), 0).unwrap();
    (dir, b)
}

fn record(value: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    let mut r = NewRecord::value(value.as_bytes().to_vec(), 1);
    r.headers = headers
        .iter()
        .map(|(k, v)| (k.to_string(), Some(v.as_bytes().to_vec())))
        .collect();
    b.push(&r).unwrap();
    b.finish().unwrap()
}

fn count(b: &Broker, topic: &str) -> i64 {
    let (start, end) = b.offsets(topic, 0).unwrap();
    end - start
}

/// A topic "jobs" whose subscription "w" dead-letters at the first nack
/// into "jobs.dlq", with one message leased and nacked with `error`.
fn one_nacked_message(b: &Broker, error: &str) {
    for topic in ["jobs", "jobs.dlq"] {
        b.create_topic(topic, 1, TopicConfig::default(), 0).unwrap();
    }
    let spec = SubscriptionSpec {
        max_deliveries: 1,
        dead_letter_topic: Some("jobs.dlq".into()),
        ..SubscriptionSpec::new("jobs", "w")
    };
    b.create_subscription(spec, 0).unwrap();
    b.produce("jobs", &Routing::Partition(0), &record("m", &[]), 0)
        .unwrap();
    let leased = b.receive("jobs", "w", 1, 1).unwrap();
    b.nack("jobs", "w", &[leased[0].receipt.clone()], 0, Some(error), 2)
        .unwrap()[0]
        .clone()
        .unwrap();
}

/// Before: a huge nack error made the copy fit but its `spool.errors` event
/// not, and since the lease was marked only after both, every tick wrote
/// another copy. Now the text is cut, and the lease is marked once the
/// copy is stored whatever fails after.
#[test]
fn a_dead_letter_is_copied_once_whatever_fails_after_the_copy() {
    let (_dir, b) = fresh();
    one_nacked_message(&b, "boom");
    // The side channel refuses every event from now on.
    let full = TopicConfigPatch {
        max_messages: Some(1),
        ..TopicConfigPatch::default()
    };
    b.alter_topic(EVENTS_TOPIC, &full, 3).unwrap();
    b.publish_event("filler", &serde_json::json!({}), 3)
        .unwrap();
    assert!(b.publish_event("more", &serde_json::json!({}), 3).is_err());
    for tick in 0..5 {
        let _ = b.tick(10 + tick);
    }
    assert_eq!(count(&b, "jobs.dlq"), 1, "one copy, not one per tick");
}

#[test]
fn a_huge_error_text_is_cut_and_its_event_is_written() {
    let (_dir, b) = fresh();
    let huge = "e".repeat(1024 * 1024);
    one_nacked_message(&b, &huge);
    for tick in 0..3 {
        b.tick(10 + tick).unwrap();
    }
    assert_eq!(count(&b, "jobs.dlq"), 1);
    let events = b.fetch(EVENTS_TOPIC, 0, 0, 4 << 20).unwrap();
    assert!(events.bytes.len() < 2 * ERROR_TEXT_BYTES_MAX + 4096);
    let text = String::from_utf8_lossy(&events.bytes);
    assert!(text.contains("dead_letter"), "the event is there");
}

#[test]
fn clients_cannot_write_or_delete_system_topics() {
    let (_dir, b) = fresh();
    let forged = record(r#"{"kind":"dead_letter"}"#, &[]);
    let e = b
        .produce(EVENTS_TOPIC, &Routing::Partition(0), &forged, 1)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::ReservedTopicName);
    let e = b.delete_topic(EVENTS_TOPIC, 1).unwrap_err();
    assert_eq!(e.code, ErrorCode::ReservedTopicName);
    assert!(b.topic(EVENTS_TOPIC).is_ok(), "still there");
    b.create_topic("jobs", 1, TopicConfig::default(), 0)
        .unwrap();
    let spec = SubscriptionSpec {
        dead_letter_topic: Some(EVENTS_TOPIC.into()),
        ..SubscriptionSpec::new("jobs", "w")
    };
    let e = b.create_subscription(spec, 1).unwrap_err();
    assert_eq!(e.code, ErrorCode::ReservedTopicName);
}

/// Before: a produce-only client could publish a message carrying another
/// client's request ID; the worker then completed the victim's record
/// with the attacker's result.
#[test]
fn clients_cannot_set_the_servers_headers() {
    let (_dir, b) = fresh();
    let victim = b
        .submit_request("jobs", b"{}".to_vec(), true, None, 1)
        .unwrap();
    for name in ["spool-request-id", "Spool-Request-Id", "spool-dlq-topic"] {
        let forged = record("evil", &[(name, &victim.id)]);
        let e = b
            .produce("jobs", &Routing::Partition(0), &forged, 2)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::ReservedHeader, "{name}");
        assert!(e.message.contains(name), "{}", e.message);
    }
    assert_eq!(count(&b, "jobs"), 1, "only the victim's own message");
    // The headers producers are meant to set still work.
    let fine = record("ok", &[("spool-msg-id", "1"), ("spool-deliver-at", "0")]);
    b.produce("jobs", &Routing::Partition(0), &fine, 3).unwrap();
}

/// Issue 24: consumer groups lived forever (3,000 groups made `/metrics`
/// 3.6 MB). An empty group keeps its offsets for a week, then goes; a group
/// without members can be deleted; both durably. Redrive cursors stay.
#[test]
fn empty_groups_expire_and_can_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let day_ms = 24 * 3600 * 1000;
    {
        let (b, _) = Broker::open(dir.path(), 0).unwrap();
        b.create_topic("t", 1, TopicConfig::default(), 0).unwrap();
        for group in ["old", "kept", "busy"] {
            let topics = ["t".to_owned()];
            let start = StartFrom::Earliest;
            let joined = b.join_group(group, None, "c", None, &topics, 10_000, start, 0);
            let a = joined.unwrap();
            b.commit(group, &a.member_id, None, &[("t".into(), 0, 0)], 0)
                .unwrap();
            if group != "busy" {
                b.leave_group(group, &a.member_id, None).unwrap();
            }
        }
        let e = b.delete_group("busy", 1).unwrap_err();
        assert_eq!(e.code, ErrorCode::GroupNotEmpty);
        assert_eq!(
            b.delete_group("nobody", 1).unwrap_err().code,
            ErrorCode::UnknownGroup
        );
        b.delete_group("kept", 1).unwrap();
        assert_eq!(b.committed("kept", &[("t".into(), 0)]), vec![None]);
        b.tick(2).unwrap();
        assert_eq!(
            b.committed("old", &[("t".into(), 0)]),
            vec![Some(0)],
            "kept a while"
        );
    }
    let (b, _) = Broker::open(dir.path(), 3).unwrap();
    assert_eq!(
        b.committed("kept", &[("t".into(), 0)]),
        vec![None],
        "deleted for good"
    );
    b.tick(4).unwrap();
    b.tick(3 + EMPTY_GROUP_RETENTION_MS).unwrap();
    assert_eq!(
        b.committed("old", &[("t".into(), 0)]),
        vec![Some(0)],
        "not yet a week"
    );
    b.tick(4 + EMPTY_GROUP_RETENTION_MS).unwrap();
    assert_eq!(
        b.committed("old", &[("t".into(), 0)]),
        vec![None],
        "expired"
    );
    drop(b);
    let (b, _) = Broker::open(dir.path(), 8 * day_ms).unwrap();
    assert_eq!(
        b.committed("old", &[("t".into(), 0)]),
        vec![None],
        "durably"
    );
    // "busy" lost its member with the restart (members are not kept), so
    // its week began at the first tick after it, like "old"'s.
    assert_eq!(b.committed("busy", &[("t".into(), 0)]), vec![None]);
}
