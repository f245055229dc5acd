use super::*;
use crate::types::{Membership, NodeAddr};
use std::collections::{BTreeMap, BTreeSet};

fn membership() -> Membership {
    let nodes: BTreeMap<u64, NodeAddr> = (1..=3)
        .map(|id| {
            let addr = NodeAddr {
                client_addr: format!("127.0.0.1:{}", 9000 + id),
                cluster_addr: format!("127.0.0.1:{}", 9100 + id),
            };
            (id, addr)
        })
        .collect();
    Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes).unwrap()
}

fn group() -> GroupId {
    GroupId::Partition {
        topic: "orders".into(),
        partition: 7,
    }
}

fn append_request() -> RaftRequest {
    let mut vote = Vote::new(5, 2);
    vote.committed = true;
    RaftRequest::AppendEntries(AppendEntriesRequest {
        vote,
        prev_log_id: Some(log_id(4, 10)),
        leader_commit: Some(log_id(4, 9)),
        entries: vec![
            Entry {
                log_id: log_id(5, 11),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: log_id(5, 12),
                payload: EntryPayload::Normal(BatchData(Bytes::from_static(b"a stored batch"))),
            },
            Entry {
                log_id: log_id(5, 13),
                payload: EntryPayload::Membership(membership()),
            },
        ],
    })
}

fn encoded_request(request: &RaftRequest) -> Bytes {
    let mut out = BytesMut::new();
    encode_request(&group(), (2 << 48) | 3, request, &mut out);
    out.freeze()
}

#[test]
fn an_append_request_round_trips() {
    let bytes = encoded_request(&append_request());
    let (decoded_group, to_member, decoded) = decode_request(bytes).unwrap();
    assert_eq!(decoded_group, group());
    assert_eq!(to_member, (2 << 48) | 3, "member 3 of generation 2");
    let (RaftRequest::AppendEntries(got), RaftRequest::AppendEntries(want)) =
        (decoded, append_request())
    else {
        panic!("not an append");
    };
    assert_eq!(got.vote, want.vote);
    assert_eq!(got.prev_log_id, want.prev_log_id);
    assert_eq!(got.leader_commit, want.leader_commit);
    assert_eq!(got.entries, want.entries);
}

#[test]
fn a_leadership_handover_round_trips() {
    let request = TransferLeaderRequest::new(Vote::new(7, 1), (1 << 48) | 2, Some(log_id(7, 41)));
    let bytes = encoded_request(&RaftRequest::TransferLeader(request.clone()));
    let Ok((_, _, RaftRequest::TransferLeader(got))) = decode_request(bytes) else {
        panic!("not a handover");
    };
    assert_eq!(got.from_leader(), request.from_leader());
    assert_eq!(got.to_node_id(), request.to_node_id());
    assert_eq!(got.last_log_id(), request.last_log_id());
    let mut out = BytesMut::new();
    encode_response(&RaftResponse::Transferred, &mut out);
    assert!(matches!(
        decode_response(out.freeze()),
        Ok(RaftResponse::Transferred)
    ));
}

#[test]
fn votes_snapshots_and_answers_round_trip() {
    let mut vote_request = VoteRequest::new(Vote::new(9, 3), Some(log_id(8, 40)));
    vote_request.leadership_transfer = true;
    let bytes = encoded_request(&RaftRequest::Vote(vote_request.clone()));
    let Ok((GroupId::Partition { .. }, _, RaftRequest::Vote(got))) = decode_request(bytes) else {
        panic!("not a vote");
    };
    assert_eq!(got, vote_request);
    let bytes = encoded_request(&RaftRequest::PreVote(vote_request.clone()));
    let Ok((_, _, RaftRequest::PreVote(got))) = decode_request(bytes) else {
        panic!("not a pre-vote");
    };
    assert_eq!(got, vote_request);

    let snapshot = Snapshot {
        meta: SnapshotMeta {
            last_log_id: Some(log_id(3, 99)),
            last_membership: StoredMembership::new(Some(log_id(1, 0)), membership()),
        },
        snapshot: PartitionSnapshot { next_offset: 12345 },
    };
    let request = RaftRequest::Snapshot {
        vote: Vote::new(3, 1),
        snapshot: snapshot.clone(),
    };
    let Ok((
        _,
        _,
        RaftRequest::Snapshot {
            vote,
            snapshot: got,
        },
    )) = decode_request(encoded_request(&request))
    else {
        panic!("not a snapshot");
    };
    assert_eq!(vote, Vote::new(3, 1));
    assert_eq!(got.meta, snapshot.meta);
    assert_eq!(got.snapshot, snapshot.snapshot);

    let answers = [
        RaftResponse::AppendEntries(AppendEntriesResponse::Success),
        RaftResponse::AppendEntries(AppendEntriesResponse::PartialSuccess(Some(log_id(2, 5)))),
        RaftResponse::AppendEntries(AppendEntriesResponse::Conflict),
        RaftResponse::AppendEntries(AppendEntriesResponse::HigherVote(Vote::new(7, 1))),
        RaftResponse::Vote(VoteResponse::new(Vote::new(7, 1), Some(log_id(6, 3)), true)),
        RaftResponse::Snapshot(SnapshotResponse::new(Vote::new(7, 1))),
        RaftResponse::Refused("no such group".into()),
        RaftResponse::Proposed(crate::types::BatchPlaced {
            base_offset: 10,
            next_offset: 13,
            answer: None,
        }),
        RaftResponse::NotLeader(Some(3)),
        RaftResponse::NotLeader(None),
        RaftResponse::Records(RemoteRecords {
            start_offset: 4,
            end_offset: 90,
            next_offset: 17,
            batches: Bytes::from_static(b"stored batches"),
        }),
        RaftResponse::ReadFailed {
            code: 301,
            message: "offset 5 is out of range".into(),
        },
        RaftResponse::Incarnation(None),
        RaftResponse::Incarnation(Some(super::Recorded {
            incarnation: "0123456789abcdef0123456789abcdef".into(),
            generation: 3,
        })),
        RaftResponse::Alive {
            stopped: vec![GroupId::Meta, group()],
            generation: 2,
        },
    ];
    let Ok((GroupId::Meta, 0, RaftRequest::Incarnation(7))) = decode_request({
        let mut out = BytesMut::new();
        encode_request(&GroupId::Meta, 0, &RaftRequest::Incarnation(7), &mut out);
        out.freeze()
    }) else {
        panic!("not the incarnation question");
    };
    let read = RaftRequest::Read {
        offset: 41,
        max_bytes: 1 << 20,
        wait_ms: 500,
    };
    let Ok((
        GroupId::Partition { .. },
        _,
        RaftRequest::Read {
            offset: 41,
            max_bytes: 1_048_576,
            wait_ms: 500,
        },
    )) = decode_request(encoded_request(&read))
    else {
        panic!("not the read");
    };
    let propose = RaftRequest::Propose(Bytes::from_static(b"a batch"));
    let Ok((_, _, RaftRequest::Propose(data))) = decode_request(encoded_request(&propose)) else {
        panic!("not a proposal");
    };
    assert_eq!(&data[..], b"a batch");
    for answer in answers {
        let mut out = BytesMut::new();
        encode_response(&answer, &mut out);
        let got = decode_response(out.freeze()).unwrap();
        assert_eq!(format!("{got:?}"), format!("{answer:?}"));
    }
}

/// Every cut-short message is refused with an error, never a panic.
#[test]
fn every_truncation_of_a_message_is_refused() {
    let bytes = encoded_request(&append_request());
    for len in 0..bytes.len() {
        assert!(
            decode_request(bytes.slice(0..len)).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
    let mut longer = BytesMut::from(&bytes[..]);
    longer.put_u8(0);
    assert!(decode_request(longer.freeze()).is_err());
}

/// Lengths that point past the frame are refused before any allocation.
#[test]
fn huge_counts_and_lengths_are_refused() {
    let mut out = BytesMut::new();
    out.put_u8(REQ_APPEND);
    put_group(&mut out, &GroupId::Meta);
    out.put_u64(ANY_MEMBER);
    put_vote(&mut out, &Vote::new(1, 1));
    put_opt_log_id(&mut out, None);
    put_opt_log_id(&mut out, None);
    out.put_u32(u32::MAX);
    assert!(decode_request(out.freeze()).is_err());

    let mut out = BytesMut::new();
    out.put_u8(RESP_REFUSED);
    out.put_u32(u32::MAX);
    assert!(decode_response(out.freeze()).is_err());
}
