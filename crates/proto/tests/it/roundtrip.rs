//! Every message survives encode → decode_frame → decode unchanged.

use crate::support::{push, request, response};
use bytes::BytesMut;
use proptest::prelude::*;
use spool_proto::*;

/// Takes exactly one frame out of `buf`, checking nothing is left over.
fn one_frame(buf: &mut BytesMut) -> Frame {
    let frame = decode_frame(buf)
        .expect("valid frame")
        .expect("whole frame buffered");
    assert!(buf.is_empty(), "decode_frame left {} bytes", buf.len());
    frame
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn requests_round_trip(req in request(), correlation_id in any::<u32>()) {
        let mut buf = BytesMut::new();
        req.encode(correlation_id, &mut buf).expect("encodes");
        let frame = one_frame(&mut buf);
        prop_assert_eq!(frame.kind, FrameKind::Request);
        prop_assert_eq!(frame.op, req.op().as_u16());
        prop_assert_eq!(frame.correlation_id, correlation_id);
        prop_assert_eq!(Request::decode(frame.op, frame.body)?, req);
    }

    #[test]
    fn responses_round_trip(resp in response(), correlation_id in any::<u32>()) {
        let mut buf = BytesMut::new();
        resp.encode(correlation_id, &mut buf).expect("encodes");
        let frame = one_frame(&mut buf);
        prop_assert_eq!(frame.kind, FrameKind::Response);
        prop_assert_eq!(frame.op, resp.op());
        prop_assert_eq!(frame.correlation_id, correlation_id);
        prop_assert_eq!(Response::decode(frame.op, frame.body)?, resp);
    }

    #[test]
    fn pushes_round_trip(p in push(), subscription_id in any::<u32>()) {
        let mut buf = BytesMut::new();
        p.encode(subscription_id, &mut buf).expect("encodes");
        let frame = one_frame(&mut buf);
        prop_assert_eq!(frame.kind, FrameKind::Push);
        prop_assert_eq!(frame.op, p.op().as_u16());
        prop_assert_eq!(frame.correlation_id, subscription_id);
        prop_assert_eq!(Push::decode(frame.op, frame.body)?, p);
    }

    /// `encode_parts` writes exactly the bytes `encode` does.
    #[test]
    fn response_parts_are_the_encoded_frame(resp in response(), correlation_id in any::<u32>()) {
        let mut buf = BytesMut::new();
        resp.encode(correlation_id, &mut buf).expect("encodes");
        let parts = resp.encode_parts(correlation_id).expect("encodes");
        prop_assert_eq!(parts.concat(), buf.to_vec());
    }

    /// A request's `encode_parts` writes exactly the bytes `encode` does.
    #[test]
    fn request_parts_are_the_encoded_frame(req in request(), correlation_id in any::<u32>()) {
        let mut buf = BytesMut::new();
        req.encode(correlation_id, &mut buf).expect("encodes");
        let parts = req.encode_parts(correlation_id).expect("encodes");
        prop_assert_eq!(parts.concat(), buf.to_vec());
    }

    /// A large produced batch goes out as the producer's own buffer, not a
    /// copy, and the frame decodes to the same request.
    #[test]
    fn large_produced_batches_are_shared_not_copied(
        size in 0usize..200_000,
        correlation_id in any::<u32>(),
    ) {
        let batch = bytes::Bytes::from(vec![7u8; size]);
        let req = Request::Produce(Produce {
            topic: "t".to_owned(),
            routing: Routing::Spread,
            batch: batch.clone(),
        });
        let parts = req.encode_parts(correlation_id).expect("encodes");
        if size >= 16 * 1024 {
            prop_assert!(
                parts.iter().any(|part| part.as_ptr() == batch.as_ptr() && part.len() == size),
                "a {}-byte batch was copied", size
            );
        }
        let mut buf = BytesMut::from(&parts.concat()[..]);
        let frame = one_frame(&mut buf);
        prop_assert_eq!(frame.correlation_id, correlation_id);
        prop_assert_eq!(Request::decode(frame.op, frame.body)?, req);
    }

    /// Gathered parts come out as the same bytes in the same order, large
    /// ones as the very buffers given, small ones copied together.
    #[test]
    fn gathered_parts_keep_bytes_order_and_large_buffers(
        sizes in proptest::collection::vec(0usize..40_000, 0..12),
    ) {
        let parts: Vec<bytes::Bytes> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| bytes::Bytes::from(vec![i as u8; n]))
            .collect();
        let mut gather = WriteGather::default();
        for part in &parts {
            gather.push(part);
        }
        prop_assert_eq!(gather.len(), sizes.iter().sum::<usize>());
        let segments = gather.take();
        prop_assert!(gather.is_empty());
        prop_assert_eq!(segments.concat(), parts.concat());
        for part in parts.iter().filter(|p| p.len() >= SHARED_BYTES_MIN) {
            prop_assert!(segments.iter().any(|s| s.as_ptr() == part.as_ptr()));
        }
        prop_assert!(segments.len() <= 2 * parts.len() + 1);
    }

    /// A fetch answer's large stored batches are parts of their own, the
    /// very buffers the server read (not copies), and the frame decodes to
    /// the same answer.
    #[test]
    fn large_fetched_batches_are_shared_not_copied(
        sizes in proptest::collection::vec(0usize..200_000, 1..4),
        correlation_id in any::<u32>(),
    ) {
        let partitions: Vec<FetchedPartition> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| FetchedPartition {
                topic: format!("t{i}"),
                partition: i as u32,
                error: None,
                start_offset: 0,
                end_offset: n as u64,
                batches: bytes::Bytes::from(vec![i as u8; n]),
            })
            .collect();
        let resp = Response::ok(ResponseBody::Fetched(Fetched { partitions: partitions.clone() }));
        let parts = resp.encode_parts(correlation_id).expect("encodes");
        for p in partitions.iter().filter(|p| p.batches.len() >= 16 * 1024) {
            prop_assert!(
                parts.iter().any(|part| part.as_ptr() == p.batches.as_ptr() && part.len() == p.batches.len()),
                "a {}-byte batch was copied", p.batches.len()
            );
        }
        let mut buf = BytesMut::from(&parts.concat()[..]);
        let frame = one_frame(&mut buf);
        prop_assert_eq!(frame.correlation_id, correlation_id);
        prop_assert_eq!(Response::decode(frame.op, frame.body)?, resp);
    }

    /// Pipelined frames in one buffer come out one at a time, in order.
    #[test]
    fn pipelined_frames_decode_in_order(reqs in proptest::collection::vec(request(), 1..8)) {
        let mut buf = BytesMut::new();
        for (i, req) in reqs.iter().enumerate() {
            req.encode(i as u32, &mut buf).expect("encodes");
        }
        for (i, req) in reqs.iter().enumerate() {
            let frame = decode_frame(&mut buf).expect("valid").expect("whole");
            prop_assert_eq!(frame.correlation_id, i as u32);
            prop_assert_eq!(&Request::decode(frame.op, frame.body)?, req);
        }
        prop_assert!(buf.is_empty());
    }
}

#[test]
fn batches_are_decoded_without_copying() {
    let batch = bytes::Bytes::from(vec![7u8; 4096]);
    let mut buf = BytesMut::new();
    Request::Produce(Produce {
        topic: "orders".into(),
        routing: Routing::Spread,
        batch: batch.clone(),
    })
    .encode(1, &mut buf)
    .unwrap();
    let frame = one_frame(&mut buf);
    let body_range = frame.body.as_ptr_range();
    let Request::Produce(produce) = Request::decode(frame.op, frame.body.clone()).unwrap() else {
        panic!("not a produce");
    };
    assert_eq!(produce.batch, batch);
    // The decoded batch must point into the frame body, not a fresh copy.
    let batch_range = produce.batch.as_ptr_range();
    assert!(body_range.start <= batch_range.start && batch_range.end <= body_range.end);
}

#[test]
fn fetched_batches_and_deliveries_are_zero_copy() {
    let batches = bytes::Bytes::from(vec![9u8; 1000]);
    let mut buf = BytesMut::new();
    Response::ok(ResponseBody::Fetched(Fetched {
        partitions: vec![FetchedPartition {
            topic: "t".into(),
            partition: 0,
            error: None,
            start_offset: 0,
            end_offset: 1,
            batches: batches.clone(),
        }],
    }))
    .encode(1, &mut buf)
    .unwrap();
    Push::Deliver(Deliver {
        topic: "t".into(),
        partition: 0,
        batches: batches.clone(),
    })
    .encode(5, &mut buf)
    .unwrap();

    let frame = decode_frame(&mut buf).unwrap().unwrap();
    let range = frame.body.as_ptr_range();
    let Ok(ResponseBody::Fetched(fetched)) = Response::decode(frame.op, frame.body.clone())
        .unwrap()
        .into_result()
    else {
        panic!("not fetched");
    };
    let got = fetched.partitions[0].batches.as_ptr_range();
    assert!(range.start <= got.start && got.end <= range.end);

    let frame = one_frame(&mut buf);
    let range = frame.body.as_ptr_range();
    let Push::Deliver(deliver) = Push::decode(frame.op, frame.body.clone()).unwrap() else {
        panic!("not deliver");
    };
    let got = deliver.batches.as_ptr_range();
    assert!(range.start <= got.start && got.end <= range.end);
}

#[test]
fn fetched_partition_encoded_len_is_exact() {
    let partition = FetchedPartition {
        topic: "orders.eu".into(),
        partition: 3,
        error: None,
        start_offset: 0,
        end_offset: 1,
        batches: bytes::Bytes::from(vec![0u8; 123]),
    };
    let mut buf = BytesMut::new();
    Response::ok(ResponseBody::Fetched(Fetched {
        partitions: vec![partition.clone()],
    }))
    .encode(1, &mut buf)
    .unwrap();
    assert_eq!(buf.len(), 4 + 7 + 2 + 4 + partition.encoded_len());
}

#[test]
fn hello_negotiates_the_highest_common_version() {
    let hello = Hello {
        min_version: 1,
        max_version: 3,
        client_id: "c".into(),
        token: Some("secret".into()),
    };
    assert_eq!(hello.negotiate(1, 1), Some(1));
    assert_eq!(
        hello.negotiate(PROTOCOL_VERSION_MIN, PROTOCOL_VERSION),
        Some(PROTOCOL_VERSION)
    );
    assert_eq!(hello.negotiate(2, 5), Some(3));
    assert_eq!(hello.negotiate(4, 5), None);
    // The token must never show up in logs.
    assert!(!format!("{hello:?}").contains("secret"));
}

/// Version 2 added the push settings to SubscriptionInfo: a version-1
/// connection gets (and reads) the version-1 layout, without them.
#[test]
fn subscriptions_are_listed_in_the_layout_of_the_connections_version() {
    let info = SubscriptionInfo {
        topic: "jobs".into(),
        name: "w".into(),
        ack_timeout_ms: 1_000,
        max_deliveries: 2,
        dead_letter_topic: Some("jobs.dlq".into()),
        backoff: Backoff::Fixed { delay_ms: 0 },
        mode: DeliveryMode::AtLeastOnce,
        ordered: false,
        leased: 1,
        outstanding: 2,
        lag: 3,
        redeliveries: 4,
        dead_letters: 5,
        push: Some(SubscriptionPush {
            endpoint: Some("http://127.0.0.1:9/in".into()),
            max_in_flight: 16,
        }),
    };
    let current = Response::ok(ResponseBody::Subscriptions(vec![info.clone()]));
    assert_eq!(current.clone().for_version(PROTOCOL_VERSION), current);
    let old = current.clone().for_version(1);
    let without_push = SubscriptionInfo { push: None, ..info };
    assert_eq!(
        old,
        Response::ok(ResponseBody::Subscriptions(vec![without_push]))
    );

    let encode = |r: &Response| {
        let mut buf = BytesMut::new();
        r.encode(5, &mut buf).unwrap();
        one_frame(&mut buf).body
    };
    let (new_body, old_body) = (encode(&current), encode(&old));
    // presence byte, u16 length and the URL, u32 max_in_flight
    assert_eq!(new_body.len() - old_body.len(), 1 + 2 + 21 + 4);
    let op = Op::ListSubscriptions.as_u16();
    assert_eq!(Response::decode(op, new_body.clone()).unwrap(), current);
    assert_eq!(Response::decode_at(1, op, old_body.clone()).unwrap(), old);
    // Read in the wrong version, each is malformed, never misread.
    assert!(Response::decode_at(1, op, new_body).is_err());
    assert!(Response::decode(op, old_body).is_err());
}

/// Version 2 added the push settings to CreateSubscription too: a client
/// of a version-1 server sends (and that server reads) the version-1
/// layout, without them; a version-2 request always carries them.
#[test]
fn subscriptions_are_created_in_the_layout_of_the_connections_version() {
    let create = CreateSubscription {
        topic: "jobs".into(),
        name: "w".into(),
        kind: SubscriptionKind::Queue,
        ack_timeout_ms: 1_000,
        max_deliveries: 2,
        dead_letter_topic: None,
        backoff: Backoff::Fixed { delay_ms: 0 },
        mode: DeliveryMode::AtLeastOnce,
        ordered: false,
        push: Some(SubscriptionPush {
            endpoint: Some("http://127.0.0.1:9/in".into()),
            max_in_flight: 16,
        }),
    };
    let current = Request::CreateSubscription(create.clone());
    assert_eq!(current.clone().for_version(PROTOCOL_VERSION), current);
    let old = current.clone().for_version(1);
    assert_eq!(
        old,
        Request::CreateSubscription(CreateSubscription {
            push: None,
            ..create.clone()
        })
    );
    // Without push settings, the current version sends the defaults.
    assert_eq!(
        old.clone().for_version(PROTOCOL_VERSION),
        Request::CreateSubscription(CreateSubscription {
            push: Some(SubscriptionPush {
                endpoint: None,
                max_in_flight: 0,
            }),
            ..create
        })
    );

    let encode = |r: &Request| {
        let mut buf = BytesMut::new();
        r.encode(5, &mut buf).unwrap();
        one_frame(&mut buf).body
    };
    let (new_body, old_body) = (encode(&current), encode(&old));
    // presence byte, u16 length and the URL, u32 max_in_flight
    assert_eq!(new_body.len() - old_body.len(), 1 + 2 + 21 + 4);
    let op = Op::CreateSubscription.as_u16();
    assert_eq!(Request::decode(op, new_body.clone()).unwrap(), current);
    assert_eq!(Request::decode_at(1, op, old_body.clone()).unwrap(), old);
    // Read in the wrong version, each is malformed, never misread.
    assert!(Request::decode_at(1, op, new_body).is_err());
    assert!(Request::decode(op, old_body).is_err());
}

#[test]
fn hello_starts_with_the_magic() {
    let mut buf = BytesMut::new();
    Request::Hello(Hello {
        min_version: 1,
        max_version: 1,
        client_id: String::new(),
        token: None,
    })
    .encode(0, &mut buf)
    .unwrap();
    assert_eq!(&buf[11..15], b"SPOL");
    assert_eq!(MAGIC.to_be_bytes(), *b"SPOL");
}

#[test]
fn wire_error_with_unknown_code_survives() {
    let error = WireError {
        code: WireCode::new(4242).unwrap(),
        message: "from the future".into(),
        retry_after_ms: None,
    };
    assert_eq!(error.code.known(), None);
    assert!(!error.code.is_retriable());
    let mut buf = BytesMut::new();
    Response::error(Op::Produce.as_u16(), error.clone())
        .encode(3, &mut buf)
        .unwrap();
    let frame = one_frame(&mut buf);
    let resp = Response::decode(frame.op, frame.body).unwrap();
    assert_eq!(resp.result(), Err(&error));
    assert_eq!(error.to_string(), "error 4242: from the future");
}

#[test]
fn overlong_error_message_is_cut_at_a_char_boundary() {
    // 'é' is two bytes, so 40_000 of them straddle the 65_535-byte limit.
    let error = WireError::new(spool_types::ErrorCode::Internal, "é".repeat(40_000));
    let mut buf = BytesMut::new();
    Response::error(Op::Ping.as_u16(), error)
        .encode(1, &mut buf)
        .unwrap();
    let frame = one_frame(&mut buf);
    let resp = Response::decode(frame.op, frame.body).unwrap();
    let message = &resp.result().unwrap_err().message;
    assert_eq!(message.len(), 65_534);
}

/// Pins the TopicConfig example in docs/protocol.md.
#[test]
fn topic_config_layout_matches_the_spec_example() {
    let mut buf = BytesMut::new();
    Request::AlterTopic(AlterTopic {
        name: String::new(),
        config: TopicConfig {
            on_full: Some(OnFull::DropOldest),
            ..TopicConfig::default()
        },
    })
    .encode(0, &mut buf)
    .unwrap();
    // Skip the 11-byte prefix and header and the empty name's length.
    assert_eq!(&buf[13..], &[0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0][..]);
}

fn sample_message(value: bytes::Bytes) -> LeasedMessage {
    LeasedMessage {
        receipt: "2-40-1f".into(),
        partition: 2,
        offset: 40,
        timestamp_ms: 1_700_000_000_000,
        deliveries: 3,
        lease_deadline_ms: 1_700_000_030_000,
        key: Some(bytes::Bytes::from_static(b"k")),
        value: Some(value),
        headers: vec![
            (
                "spool-msg-id".into(),
                Some(bytes::Bytes::from_static(b"id-1")),
            ),
            ("empty".into(), Some(bytes::Bytes::new())),
            ("absent".into(), None),
        ],
    }
}

#[test]
fn leased_messages_are_zero_copy_in_responses_and_pushes() {
    let mut buf = BytesMut::new();
    let message = sample_message(bytes::Bytes::from(vec![3u8; 500]));
    Response::ok(ResponseBody::Messages(vec![message.clone()]))
        .encode(1, &mut buf)
        .unwrap();
    Push::QueueDeliver(QueueDeliver {
        messages: vec![message.clone()],
    })
    .encode(9, &mut buf)
    .unwrap();

    let inside = |range: std::ops::Range<*const u8>, m: &LeasedMessage| {
        let mut slices = vec![m.key.clone().unwrap(), m.value.clone().unwrap()];
        slices.extend(m.headers.iter().filter_map(|h| h.1.clone()));
        for s in slices.iter().filter(|s| !s.is_empty()) {
            let got = s.as_ptr_range();
            assert!(range.start <= got.start && got.end <= range.end);
        }
    };
    let frame = decode_frame(&mut buf).unwrap().unwrap();
    let range = frame.body.as_ptr_range();
    let Ok(ResponseBody::Messages(messages)) = Response::decode(frame.op, frame.body.clone())
        .unwrap()
        .into_result()
    else {
        panic!("not messages");
    };
    assert_eq!(messages, vec![message.clone()]);
    inside(range, &messages[0]);

    let frame = one_frame(&mut buf);
    assert_eq!(frame.correlation_id, 9);
    let range = frame.body.as_ptr_range();
    let Push::QueueDeliver(deliver) = Push::decode(frame.op, frame.body.clone()).unwrap() else {
        panic!("not a queue delivery");
    };
    assert_eq!(deliver.messages, vec![message]);
    inside(range, &deliver.messages[0]);
}

#[test]
fn leased_message_encoded_len_is_exact() {
    let message = sample_message(bytes::Bytes::from(vec![0u8; 77]));
    let mut buf = BytesMut::new();
    let response = Response::ok(ResponseBody::Messages(vec![
        message.clone(),
        message.clone(),
    ]));
    response.encode(1, &mut buf).unwrap();
    assert_eq!(buf.len(), 4 + 7 + 2 + 4 + 2 * message.encoded_len());
    // What the server sizes its answer buffer by.
    assert_eq!(response.encoded_len_hint(), buf.len());
    buf.clear();
    Push::QueueDeliver(QueueDeliver {
        messages: vec![message.clone()],
    })
    .encode(1, &mut buf)
    .unwrap();
    assert_eq!(buf.len(), 4 + 7 + 4 + message.encoded_len());
}

#[test]
fn receipt_results_are_one_code_per_receipt() {
    let mut buf = BytesMut::new();
    Response::ok(ResponseBody::Acked(vec![
        None,
        Some(spool_types::ErrorCode::LeaseExpired.into()),
    ]))
    .encode(4, &mut buf)
    .unwrap();
    // Header, error code 0, count 2, then 0 and 507.
    assert_eq!(&buf[11..], &[0, 0, 0, 0, 0, 2, 0, 0, 0x01, 0xfb][..]);
}
