//! `Broker::alter_subscription`: checked as at creation, recorded in the
//! metadata log (so a reopen replays it) and followed by the running
//! subscription.

use spool_batch::{BatchBuilder, NewRecord};
use spool_broker::subscription::{SubscriptionPatch, SubscriptionSpec};
use spool_broker::*;
use spool_types::ErrorCode;

fn one_message(value: &str) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    b.push(&NewRecord::value(value.as_bytes().to_vec(), 1))
        .unwrap();
    b.finish().unwrap()
}

#[test]
fn an_altered_subscription_keeps_its_settings_across_a_reopen_and_follows_them() {
    let dir = tempfile::tempdir().unwrap();
    let patch = SubscriptionPatch {
        ack_timeout_ms: Some(100),
        max_deliveries: Some(2),
        dead_letter_topic: Some(Some("t.dlq".into())),
        ..SubscriptionPatch::default()
    };
    let altered = {
        let (b, _) = Broker::open(dir.path(), 0).unwrap();
        for t in ["t", "t.dlq"] {
            b.create_topic(t, 1, TopicConfig::default(), 0).unwrap();
        }
        b.create_subscription(SubscriptionSpec::new("t", "w"), 0)
            .unwrap();
        b.produce("t", &Routing::Partition(0), &one_message("m"), 0)
            .unwrap();
        let got = b.receive("t", "w", 1, 10).unwrap();
        assert_eq!(got[0].deliveries, 1);
        b.nack("t", "w", &[got[0].receipt.clone()], 0, None, 11)
            .unwrap();

        let spec = b.alter_subscription("t", "w", &patch, 12).unwrap();
        assert_eq!(spec, SubscriptionSpec::new("t", "w").apply(&patch));
        assert_eq!(b.list_subscriptions(Some("t")), std::slice::from_ref(&spec));
        // Refused as at creation, and nothing changes.
        let refusals = [
            (
                SubscriptionPatch {
                    ack_timeout_ms: Some(0),
                    ..SubscriptionPatch::default()
                },
                ErrorCode::InvalidConfig,
            ),
            (
                SubscriptionPatch {
                    dead_letter_topic: Some(Some("t".into())),
                    ..SubscriptionPatch::default()
                },
                ErrorCode::InvalidConfig,
            ),
            (
                SubscriptionPatch {
                    dead_letter_topic: Some(Some("nowhere".into())),
                    ..SubscriptionPatch::default()
                },
                ErrorCode::UnknownTopic,
            ),
            (
                SubscriptionPatch {
                    push_max_in_flight: Some(0),
                    ..SubscriptionPatch::default()
                },
                ErrorCode::InvalidConfig,
            ),
        ];
        for (bad, code) in refusals {
            let e = b.alter_subscription("t", "w", &bad, 13).unwrap_err();
            assert_eq!(e.code, code, "{bad:?}: {e}");
        }
        let e = b.alter_subscription("t", "x", &patch, 13).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownSubscription);
        assert_eq!(b.list_subscriptions(Some("t")), std::slice::from_ref(&spec));
        spec
    };

    let (b, _) = Broker::open(dir.path(), 1_000).unwrap();
    assert_eq!(b.list_subscriptions(Some("t")), [altered]);
    // The new lease is 100 ms long, and its delivery the last one allowed.
    let got = b.receive("t", "w", 1, 1_000).unwrap();
    assert_eq!((got[0].deliveries, got[0].lease_deadline_ms), (2, 1_100));
    b.tick(1_200).unwrap();
    assert_eq!(b.offsets("t.dlq", 0).unwrap().1, 1, "dead-lettered");
    assert!(b.receive("t", "w", 1, 1_300).unwrap().is_empty());
}
