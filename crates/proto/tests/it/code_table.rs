//! The op table is a published contract: pin it.

use spool_proto::{DecodeError, FrameKind, Op, Push, Request, Response};
use spool_types::ErrorCode;
use std::collections::HashSet;

#[test]
fn every_op_is_listed_once_with_unique_number_and_name() {
    let mut numbers = HashSet::new();
    let mut names = HashSet::new();
    let mut previous = 0;
    for &op in Op::ALL {
        assert!(op.as_u16() > previous, "{op} out of order");
        previous = op.as_u16();
        assert!(
            numbers.insert(op.as_u16()),
            "duplicate number {}",
            op.as_u16()
        );
        assert!(names.insert(op.name()), "duplicate name {}", op.name());
        assert_eq!(Op::from_u16(op.as_u16()), Ok(op));
        assert!(op
            .name()
            .chars()
            .all(|c| c.is_ascii_uppercase() || c == '_'));
    }
}

#[test]
fn published_numbers_never_change() {
    let table = [
        (Op::Hello, 1),
        (Op::CreateTopic, 10),
        (Op::DeleteTopic, 11),
        (Op::ListTopics, 12),
        (Op::DescribeTopic, 13),
        (Op::AlterTopic, 14),
        (Op::Produce, 20),
        (Op::Fetch, 21),
        (Op::InitProducerId, 22),
        (Op::JoinGroup, 30),
        (Op::Heartbeat, 31),
        (Op::LeaveGroup, 32),
        (Op::CommitOffsets, 33),
        (Op::FetchOffsets, 34),
        (Op::ListGroups, 35),
        (Op::DescribeGroup, 36),
        (Op::ResetOffsets, 37),
        (Op::DeleteGroup, 38),
        (Op::Subscribe, 40),
        (Op::Credit, 41),
        (Op::Unsubscribe, 42),
        (Op::Deliver, 45),
        (Op::SubscriptionClosed, 46),
        (Op::QueueDeliver, 47),
        (Op::CreateSubscription, 50),
        (Op::DeleteSubscription, 51),
        (Op::ListSubscriptions, 52),
        (Op::Receive, 53),
        (Op::Ack, 54),
        (Op::Nack, 55),
        (Op::ExtendLease, 56),
        (Op::Redrive, 57),
        (Op::SubscribeQueue, 58),
        (Op::AlterSubscription, 59),
        (Op::SubmitRequest, 60),
        (Op::GetRequest, 61),
        (Op::CompleteRequest, 62),
        (Op::FailRequest, 63),
        (Op::CreateToken, 70),
        (Op::ListTokens, 71),
        (Op::RevokeToken, 72),
        (Op::ClusterStatus, 80),
        (Op::Ping, 90),
    ];
    assert_eq!(table.len(), Op::ALL.len());
    for (op, number) in table {
        assert_eq!(op.as_u16(), number, "{op}");
    }
}

#[test]
fn unknown_numbers_are_unknown_request_type() {
    let known: HashSet<u16> = Op::ALL.iter().map(|op| op.as_u16()).collect();
    for number in 0..=u16::MAX {
        if known.contains(&number) {
            continue;
        }
        let err = Op::from_u16(number).unwrap_err();
        assert_eq!(err.code(), ErrorCode::UnknownRequestType);
        let err = Request::decode(number, bytes::Bytes::new()).unwrap_err();
        assert_eq!(err.code(), ErrorCode::UnknownRequestType, "op {number}");
    }
}

#[test]
fn push_ops_are_not_requests_and_request_ops_are_not_pushes() {
    for &op in Op::ALL {
        let body = bytes::Bytes::new();
        let as_request = Request::decode(op.as_u16(), body.clone());
        let as_push = Push::decode(op.as_u16(), body.clone());
        let unknown = |kind| DecodeError::UnknownOp {
            op: op.as_u16(),
            kind,
        };
        if op.is_push() {
            assert_eq!(as_request, Err(unknown(FrameKind::Request)));
            // Pushes are never answers, so a success response is meaningless.
            let ok_body = bytes::Bytes::from_static(&[0, 0]);
            assert_eq!(
                Response::decode(op.as_u16(), ok_body),
                Err(unknown(FrameKind::Response))
            );
        } else {
            assert_eq!(as_push, Err(unknown(FrameKind::Push)));
        }
    }
}

#[test]
fn success_response_for_unknown_op_is_refused_but_error_decodes() {
    let ok = bytes::Bytes::from_static(&[0, 0]);
    assert_eq!(
        Response::decode(77, ok).unwrap_err().code(),
        ErrorCode::UnknownRequestType
    );
    // UNKNOWN_REQUEST_TYPE (104), empty message, no retry hint.
    let err = bytes::Bytes::from_static(&[0, 104, 0, 0, 0, 0, 0, 0]);
    let resp = Response::decode(77, err).unwrap();
    assert_eq!(resp.op(), 77);
    assert_eq!(
        resp.result().unwrap_err().code,
        ErrorCode::UnknownRequestType
    );
}
