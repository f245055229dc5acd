//! Hostile and broken input: never a panic, never an allocation the input
//! cannot justify, and the right error code for each kind of breakage.

use crate::support;
use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;
use spool_proto::*;
use spool_types::ErrorCode;

fn frame_bytes(kind: u8, op: u16, correlation_id: u32, body: &[u8]) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_u32(7 + body.len() as u32);
    buf.put_u8(kind);
    buf.put_u16(op);
    buf.put_u32(correlation_id);
    buf.put_slice(body);
    buf
}

#[test]
fn every_truncation_of_every_sample_is_incomplete_not_an_error() {
    for (name, frame) in support::sample_frames() {
        for cut in 0..frame.len() {
            let mut buf = BytesMut::from(&frame[..cut]);
            assert_eq!(decode_frame(&mut buf), Ok(None), "{name} cut at {cut}");
            assert_eq!(buf.len(), cut, "{name}: incomplete input was consumed");
        }
        let mut buf = BytesMut::from(&frame[..]);
        assert!(decode_frame(&mut buf).unwrap().is_some(), "{name}");
    }
}

#[test]
fn huge_length_prefix_is_rejected_at_once_without_allocating() {
    for length in [
        0x7FFF_FFFFu32,
        0x8000_0000,
        u32::MAX,
        FRAME_BYTES_MAX as u32 + 1,
    ] {
        let mut buf = BytesMut::with_capacity(4);
        buf.put_u32(length);
        let capacity = buf.capacity();
        let err = decode_frame(&mut buf).unwrap_err();
        assert_eq!(
            err,
            FrameError::TooLarge {
                length,
                max: FRAME_BYTES_MAX
            }
        );
        assert_eq!(err.code(), ErrorCode::FrameTooLarge);
        // Nothing was reserved for the announced frame and nothing consumed.
        assert_eq!(buf.capacity(), capacity);
        assert_eq!(buf.len(), 4);
        assert_eq!(peek_frame_size(&buf), Err(err));
    }
}

#[test]
fn a_tls_record_is_recognised_as_such_not_as_a_huge_frame() {
    // A ClientHello (to a plain server) and an alert (from a TLS server).
    let client_hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01];
    let alert = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32];
    for (record, content_type) in [(&client_hello[..], 0x16), (&alert[..], 0x15)] {
        assert!(starts_like_tls(record));
        let mut buf = BytesMut::from(record);
        let err = decode_frame(&mut buf).unwrap_err();
        assert_eq!(err, FrameError::TlsRecord { content_type });
        assert!(err.to_string().contains("speaks TLS"), "{err}");
        assert_eq!(buf.len(), record.len());
    }
    // Only TLS's content types with major version 3.
    assert!(!starts_like_tls(&[0x16, 0x02, 0, 0]));
    assert!(!starts_like_tls(&[0x18, 0x03, 0, 0]));
    assert!(!starts_like_tls(&[0x16]));
}

#[test]
fn largest_legal_length_is_accepted_but_waits_for_data() {
    let mut buf = BytesMut::new();
    buf.put_u32(FRAME_BYTES_MAX as u32);
    assert_eq!(peek_frame_size(&buf), Ok(Some(4 + FRAME_BYTES_MAX)));
    assert_eq!(decode_frame(&mut buf), Ok(None));
}

#[test]
fn length_shorter_than_header_is_rejected() {
    for length in 0..7u32 {
        let mut buf = BytesMut::new();
        buf.put_u32(length);
        let err = decode_frame(&mut buf).unwrap_err();
        assert_eq!(err, FrameError::TooShort { length, min: 7 });
        assert_eq!(err.code(), ErrorCode::MalformedFrame);
    }
    // Exactly a header and no body is a whole (empty-bodied) frame.
    let mut buf = frame_bytes(0, Op::Ping.as_u16(), 5, &[]);
    let frame = decode_frame(&mut buf).unwrap().unwrap();
    assert_eq!(Request::decode(frame.op, frame.body), Ok(Request::Ping));
}

#[test]
fn unknown_frame_kind_is_rejected_as_soon_as_it_is_seen() {
    let buf = frame_bytes(3, 1, 0, &[]);
    assert_eq!(
        peek_frame_size(&buf[..5]),
        Err(FrameError::UnknownKind { kind: 3 })
    );
    let mut buf = buf;
    let err = decode_frame(&mut buf).unwrap_err();
    assert_eq!(err.code(), ErrorCode::MalformedFrame);
}

#[test]
fn invalid_utf8_is_rejected() {
    // DeleteTopic { name: [0xC3, 0x28] } — an invalid two-byte sequence.
    let mut buf = frame_bytes(0, Op::DeleteTopic.as_u16(), 1, &[0, 2, 0xC3, 0x28]);
    let frame = decode_frame(&mut buf).unwrap().unwrap();
    let err = Request::decode(frame.op, frame.body).unwrap_err();
    assert_eq!(
        err,
        DecodeError::InvalidUtf8 {
            what: "delete_topic.name",
            offset: 2
        }
    );
    assert_eq!(err.code(), ErrorCode::MalformedFrame);
}

#[test]
fn array_count_beyond_the_body_is_rejected_before_allocating() {
    // Fetch: max_wait_ms, max_bytes, then a partition count of 4 billion
    // with no partitions behind it. Trusting the count would try to
    // allocate ~200 GB and abort the test.
    let mut body = Vec::new();
    body.extend_from_slice(&100u32.to_be_bytes());
    body.extend_from_slice(&1000u32.to_be_bytes());
    body.extend_from_slice(&u32::MAX.to_be_bytes());
    let err = Request::decode(Op::Fetch.as_u16(), Bytes::from(body)).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Truncated {
                what: "fetch.partitions",
                offset: 8,
                have: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), ErrorCode::MalformedFrame);

    // Same for a response array and a string array.
    let err = Response::decode(
        Op::ListTopics.as_u16(),
        Bytes::from_static(&[0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0]),
    )
    .unwrap_err();
    assert!(matches!(err, DecodeError::Truncated { what: "topics", .. }));
}

#[test]
fn topic_lists_above_the_subscription_limit_are_invalid_requests() {
    let limit = spool_types::limits::SUBSCRIPTION_TOPICS_MAX;
    let mut body = Vec::new();
    body.extend_from_slice(&1u32.to_be_bytes()); // subscription_id
    body.extend_from_slice(&(limit as u32 + 1).to_be_bytes());
    for _ in 0..=limit {
        body.extend_from_slice(&[0, 1, b'x']);
    }
    let err = Request::decode(Op::Subscribe.as_u16(), Bytes::from(body)).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::TooMany {
            what: "subscribe.topics",
            ..
        }
    ));
    assert_eq!(err.code(), ErrorCode::InvalidRequest);

    // The encoder refuses the same, so nothing it writes is undecodable.
    let mut buf = BytesMut::new();
    let err = Request::Subscribe(Subscribe {
        subscription_id: 1,
        topics: vec!["x".into(); limit + 1],
        group: None,
        start: SubscribeStart::Latest,
        credit_messages: 1,
        credit_bytes: 1,
    })
    .encode(1, &mut buf)
    .unwrap_err();
    assert!(matches!(err, EncodeError::TooMany { .. }));
    assert!(buf.is_empty());
}

#[test]
fn strict_prefixes_of_every_body_fail_and_trailing_bytes_are_refused() {
    for (name, frame) in support::sample_frames() {
        let mut buf = BytesMut::from(&frame[..]);
        let frame = decode_frame(&mut buf).unwrap().unwrap();
        let decode = |body: Bytes| -> Result<(), DecodeError> {
            match frame.kind {
                FrameKind::Request => Request::decode(frame.op, body).map(drop),
                FrameKind::Response => Response::decode(frame.op, body).map(drop),
                FrameKind::Push => Push::decode(frame.op, body).map(drop),
            }
        };
        decode(frame.body.clone()).unwrap();
        for cut in 0..frame.body.len() {
            let err = decode(frame.body.slice(..cut)).unwrap_err();
            assert_eq!(err.code(), ErrorCode::MalformedFrame, "{name} cut at {cut}");
        }
        let mut longer = frame.body.to_vec();
        longer.push(0);
        let err = decode(Bytes::from(longer)).unwrap_err();
        assert!(
            matches!(err, DecodeError::TrailingBytes { count: 1, .. }),
            "{name}: {err:?}"
        );
    }
}

#[test]
fn bad_enum_tags_and_presence_bytes_are_invalid_requests() {
    // Produce with routing tag 9.
    let err = Request::decode(
        Op::Produce.as_u16(),
        Bytes::from_static(&[0, 1, b't', 9, 0, 0, 0, 0]),
    )
    .unwrap_err();
    assert_eq!(
        err,
        DecodeError::InvalidValue {
            what: "produce.routing",
            offset: 3,
            value: 9
        }
    );
    assert_eq!(err.code(), ErrorCode::InvalidRequest);

    // ListTopics with presence byte 2.
    let err = Request::decode(Op::ListTopics.as_u16(), Bytes::from_static(&[2])).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidRequest);

    // Hello with the wrong magic.
    let err = Request::decode(
        Op::Hello.as_u16(),
        Bytes::from_static(b"HTTP\0\x01\0\x01\0\0\0"),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        DecodeError::InvalidValue {
            what: "hello.magic",
            ..
        }
    ));

    // Committed offset -2.
    let mut body = vec![0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 0];
    body.extend_from_slice(&(-2i64).to_be_bytes());
    let err = Response::decode(Op::FetchOffsets.as_u16(), Bytes::from(body)).unwrap_err();
    assert!(matches!(err, DecodeError::InvalidValue { value: -2, .. }));

    // SubscriptionClosed with error code 0.
    let err = Push::decode(
        Op::SubscriptionClosed.as_u16(),
        Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0]),
    )
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidRequest);
}

#[test]
fn bad_subscription_settings_are_invalid_requests() {
    // A well-formed CreateSubscription: kind queue, no dead-letter topic,
    // fixed backoff, at-least-once, unordered.
    let good = |kind: u8, backoff: u8, mode: u8, ordered: u8| {
        let mut body = vec![0, 1, b't', 0, 1, b's', kind];
        body.extend_from_slice(&30_000u32.to_be_bytes());
        body.extend_from_slice(&5u32.to_be_bytes());
        body.push(0); // no dead-letter topic
        body.push(backoff);
        body.extend_from_slice(&0u64.to_be_bytes());
        if backoff == 1 {
            body.extend_from_slice(&0u64.to_be_bytes());
        }
        body.push(mode);
        body.push(ordered);
        Bytes::from(body)
    };
    let op = Op::CreateSubscription.as_u16();
    // The version-1 layout (version 2 appends the push settings).
    assert!(Request::decode_at(1, op, good(0, 0, 0, 0)).is_ok());
    assert!(Request::decode_at(1, op, good(1, 1, 1, 1)).is_ok());
    for (body, what, offset, value) in [
        (good(2, 0, 0, 0), "subscription.kind", 6, 2),
        (good(0, 2, 0, 0), "subscription.backoff", 16, 2),
        (good(0, 0, 2, 0), "subscription.mode", 25, 2),
        // A bool other than 0 or 1 would not re-encode to the same bytes.
        (good(0, 0, 0, 2), "create_subscription.ordered", 26, 2),
    ] {
        let err = Request::decode(op, body).unwrap_err();
        assert_eq!(
            err,
            DecodeError::InvalidValue {
                what,
                offset,
                value
            }
        );
        assert_eq!(err.code(), ErrorCode::InvalidRequest);
    }
}

#[test]
fn forged_receipt_and_message_counts_are_refused_before_allocating() {
    // Ack with 4 billion receipts and none behind the count.
    let mut body = vec![0, 1, b't', 0, 1, b's'];
    body.extend_from_slice(&u32::MAX.to_be_bytes());
    let err = Request::decode(Op::Ack.as_u16(), Bytes::from(body)).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Truncated {
                what: "ack.receipts",
                offset: 6,
                ..
            }
        ),
        "{err:?}"
    );
    // Messages and QueueDeliver likewise.
    let err = Response::decode(
        Op::Receive.as_u16(),
        Bytes::from_static(&[0, 0, 0xff, 0xff, 0xff, 0xff]),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        DecodeError::Truncated {
            what: "messages",
            ..
        }
    ));
    let err = Push::decode(
        Op::QueueDeliver.as_u16(),
        Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]),
    )
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::MalformedFrame);
}

#[test]
fn leased_message_with_a_bad_optional_length_is_invalid() {
    let mut buf = BytesMut::new();
    Response::ok(ResponseBody::Messages(vec![LeasedMessage {
        receipt: String::new(),
        partition: 0,
        offset: 0,
        timestamp_ms: 0,
        deliveries: 1,
        lease_deadline_ms: 0,
        key: None,
        value: None,
        headers: vec![],
    }]))
    .encode(1, &mut buf)
    .unwrap();
    let frame = decode_frame(&mut buf).unwrap().unwrap();
    // Body: error code, count, receipt "", 4+8+8+4+8 fixed bytes, then the
    // key's i32 length (-1). Make it -2.
    let key_at = 2 + 4 + 2 + 32;
    let mut body = frame.body.to_vec();
    assert_eq!(&body[key_at..key_at + 4], &(-1i32).to_be_bytes());
    body[key_at..key_at + 4].copy_from_slice(&(-2i32).to_be_bytes());
    let err = Response::decode(frame.op, Bytes::from(body)).unwrap_err();
    assert_eq!(
        err,
        DecodeError::InvalidValue {
            what: "message.key",
            offset: key_at,
            value: -2
        }
    );
}

#[test]
fn request_record_bodies_are_checked() {
    // CompleteRequest: id "r", then a result whose u32 length claims 4 GiB
    // with two bytes behind it: truncated, nothing allocated for it.
    let mut body = vec![0, 1, b'r'];
    body.extend_from_slice(&u32::MAX.to_be_bytes());
    body.extend_from_slice(b"{}");
    let err = Request::decode(Op::CompleteRequest.as_u16(), Bytes::from(body)).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Truncated {
                what: "complete_request.result_json",
                offset: 7,
                need: 0xFFFF_FFFF,
                have: 2
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), ErrorCode::MalformedFrame);

    // FailRequest with an error that is not UTF-8.
    let mut body = vec![0, 1, b'r', 0, 0, 0, 2, b'a', 0xff, 1];
    let err = Request::decode(Op::FailRequest.as_u16(), Bytes::from(body.clone())).unwrap_err();
    assert_eq!(
        err,
        DecodeError::InvalidUtf8 {
            what: "fail_request.error",
            offset: 8
        }
    );
    // ... and, with the error fixed, a retry flag of 2.
    body[8] = b'b';
    body[9] = 2;
    let err = Request::decode(Op::FailRequest.as_u16(), Bytes::from(body)).unwrap_err();
    assert_eq!(
        err,
        DecodeError::InvalidValue {
            what: "fail_request.retry",
            offset: 9,
            value: 2
        }
    );
    assert_eq!(err.code(), ErrorCode::InvalidRequest);

    // SubmitRequest whose json flag is 7.
    let mut body = vec![0, 1, b'q', 0, 0, 0, 1, b'x', 7, 0];
    let err = Request::decode(Op::SubmitRequest.as_u16(), Bytes::from(body.clone())).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidRequest);
    body[8] = 0;
    assert_eq!(
        Request::decode(Op::SubmitRequest.as_u16(), Bytes::from(body)),
        Ok(Request::SubmitRequest(SubmitRequest {
            queue: "q".into(),
            payload: Bytes::from_static(b"x"),
            json: false,
            callback_url: None,
        }))
    );
}

#[test]
fn oversized_batch_is_refused_and_the_buffer_is_left_intact() {
    let mut buf = BytesMut::new();
    Request::Ping.encode(1, &mut buf).unwrap();
    let before = buf.clone();
    let err = Request::Produce(Produce {
        topic: "t".into(),
        routing: Routing::Spread,
        batch: Bytes::from(vec![0u8; FRAME_BYTES_MAX]),
    })
    .encode(2, &mut buf)
    .unwrap_err();
    assert!(matches!(err, EncodeError::FrameTooLarge { .. }), "{err:?}");
    assert_eq!(buf, before);

    // An offset the i64 wire field cannot carry.
    let err = Response::ok(ResponseBody::Offsets(vec![CommittedOffset {
        topic: "t".into(),
        partition: 0,
        offset: Some(u64::MAX),
    }]))
    .encode(3, &mut buf)
    .unwrap_err();
    assert!(matches!(err, EncodeError::OutOfRange { .. }));
    assert_eq!(buf, before);
}

/// Feeds arbitrary bytes through every decoder the way a server or client
/// would. Nothing may panic, and whatever decodes must re-encode to exactly
/// the bytes it came from (the encoding is canonical, so a decoder that
/// accepted something the encoder never writes would show up here).
fn decode_everything(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = decode_frame(&mut buf) {
        let mut original = BytesMut::new();
        frame
            .encode(&mut original)
            .expect("a decoded frame re-encodes");
        // Skip the length prefix and kind byte: a request body decoded as a
        // response is re-encoded with the response kind.
        let tail = |b: &BytesMut| b[5..].to_vec();
        let id = frame.correlation_id;
        let mut again = BytesMut::new();
        if let Ok(request) = Request::decode(frame.op, frame.body.clone()) {
            request.encode(id, &mut again).expect("re-encodes");
            assert_eq!(tail(&again), tail(&original), "{request:?}");
            again.clear();
        }
        if let Ok(response) = Response::decode(frame.op, frame.body.clone()) {
            response.encode(id, &mut again).expect("re-encodes");
            assert_eq!(tail(&again), tail(&original), "{response:?}");
            again.clear();
        }
        if let Ok(push) = Push::decode(frame.op, frame.body) {
            push.encode(id, &mut again).expect("re-encodes");
            assert_eq!(tail(&again), tail(&original), "{push:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        decode_everything(&data);
    }

    /// Random bodies behind a valid header, for every op number in use and
    /// a few that are not, so the body decoders see far more than the
    /// framing does.
    #[test]
    fn random_bodies_never_panic(
        op in prop_oneof![proptest::sample::select(Op::ALL).prop_map(Op::as_u16), any::<u16>()],
        body in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        let body = Bytes::from(body);
        let _ = Request::decode(op, body.clone());
        let _ = Response::decode(op, body.clone());
        let _ = Push::decode(op, body);
    }

    /// Valid frames with random single-byte corruption.
    #[test]
    fn corrupted_valid_frames_never_panic(
        req in support::request(),
        position in any::<proptest::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut buf = BytesMut::new();
        req.encode(1, &mut buf).unwrap();
        let at = position.index(buf.len());
        buf[at] = byte;
        decode_everything(&buf);
    }

    /// Truncating any valid request at any point is "incomplete", never an error.
    #[test]
    fn truncated_requests_are_incomplete(req in support::request(), cut in any::<proptest::sample::Index>()) {
        let mut full = BytesMut::new();
        req.encode(1, &mut full).unwrap();
        let cut = cut.index(full.len());
        let mut buf = BytesMut::from(&full[..cut]);
        prop_assert_eq!(decode_frame(&mut buf), Ok(None));
        prop_assert_eq!(buf.len(), cut);
    }
}
