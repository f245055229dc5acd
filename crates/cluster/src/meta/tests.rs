//! Unit tests of the metadata group's pieces: the state machine, the
//! placement, the stored form of commands and the hook.

use super::*;
use crate::partition::AppliedHook;
use crate::types::{log_id, NodeId};
use bytes::Bytes;
use spool_batch::{BatchBuilder, NewRecord};
use spool_types::limits::PARTITIONS_MAX;
use std::collections::BTreeMap;

const INC_A: &str = "0123456789abcdef0123456789abcdef";
const INC_B: &str = "fedcba9876543210fedcba9876543210";
const INC_C: &str = "00000000000000000000000000000001";

fn incarnation_of(id: NodeId) -> String {
    format!("{id:032x}")
}

fn joined(id: NodeId, incarnation: &str) -> MetaCommand {
    MetaCommand::NodeJoined {
        id,
        client_addr: format!("10.0.0.{id}:7070"),
        http_addr: Some(format!("10.0.0.{id}:8080")),
        cluster_addr: format!("10.0.0.{id}:7171"),
        incarnation: incarnation.to_owned(),
        generation: None,
    }
}

/// `joined` naming a generation, as a replacement does.
fn replacing(id: NodeId, incarnation: &str, generation: Option<u64>) -> MetaCommand {
    let mut command = joined(id, incarnation);
    if let MetaCommand::NodeJoined { generation: g, .. } = &mut command {
        *g = generation;
    }
    command
}

fn created(name: &str, replicas: Vec<Vec<NodeId>>) -> MetaCommand {
    MetaCommand::TopicCreated {
        name: name.to_owned(),
        partitions: replicas.len() as u32,
        replicas,
        config: serde_json::json!({"retention_ms": 1000}),
        created_ms: 1_700_000_000_000,
    }
}

/// A state with nodes 1..=n joined.
fn with_nodes(n: NodeId) -> ClusterState {
    let mut state = ClusterState::default();
    for id in 1..=n {
        state.apply(&joined(id, &incarnation_of(id))).unwrap();
    }
    state
}

/// Applies `command`, expects `refusal`, and checks nothing changed.
fn assert_refused(state: &mut ClusterState, command: &MetaCommand, refusal: MetaRefusal) {
    let before = state.clone();
    assert_eq!(state.apply(command), Err(refusal), "{command:?}");
    assert_eq!(*state, before, "a refused command changed the state");
}

#[test]
fn a_node_joins_and_rejoins_with_its_incarnation() {
    let mut state = ClusterState::default();
    let applied = state.apply(&joined(1, INC_A)).unwrap();
    assert_eq!(applied.effect, MetaEffect::NodeAdded);
    assert_eq!(applied.version, 1);
    let moved = MetaCommand::NodeJoined {
        id: 1,
        client_addr: "10.9.9.9:7070".into(),
        http_addr: None,
        cluster_addr: "10.9.9.9:7171".into(),
        incarnation: INC_A.into(),
        generation: None,
    };
    let applied = state.apply(&moved).unwrap();
    assert_eq!(applied.effect, MetaEffect::NodeRejoined);
    assert_eq!(applied.version, 2);
    let node = state.node(1).unwrap();
    assert_eq!(node.client_addr, "10.9.9.9:7070", "addresses are updated");
    assert_eq!(node.http_addr, None);
    assert_eq!(node.replaced_incarnation, None);
    assert_eq!(state.nodes().len(), 1);
}

#[test]
fn a_node_back_with_a_new_incarnation_is_recorded_as_replaced() {
    let mut state = ClusterState::default();
    state.apply(&joined(1, INC_A)).unwrap();
    state.apply(&joined(2, INC_C)).unwrap();
    state.apply(&created("before", vec![vec![1, 2]])).unwrap();
    let first = state.node(1).unwrap().clone();
    assert_eq!((first.generation, first.joined_version), (0, 1));
    // A replacement names its next generation, and only that one.
    for wrong in [None, Some(0), Some(2)] {
        assert_refused(
            &mut state,
            &replacing(1, INC_B, wrong),
            MetaRefusal::GenerationMismatch {
                node: 1,
                given: wrong,
                expected: 1,
            },
        );
    }
    let applied = state.apply(&replacing(1, INC_B, Some(1))).unwrap();
    assert_eq!(
        applied.effect,
        MetaEffect::NodeReplaced {
            old_incarnation: INC_A.into()
        }
    );
    let node = state.node(1).unwrap();
    assert_eq!(node.incarnation, INC_B);
    assert_eq!(node.replaced_incarnation.as_deref(), Some(INC_A));
    assert_eq!((node.generation, node.joined_version), (1, applied.version));
    // A topic keeps the members it was created with; a later one has the
    // new generation's (node 1 in its low bits, generation 1 above).
    state.apply(&created("after", vec![vec![1, 2]])).unwrap();
    assert_eq!(
        state.topic("before").unwrap().initial_members,
        vec![vec![1, 2]]
    );
    let new_member = crate::types::member_id(1, 1);
    assert_eq!(crate::types::node_of(new_member), 1);
    assert_eq!(
        state.topic("after").unwrap().initial_members,
        vec![vec![new_member, 2]]
    );
    // Rejoining with the new one keeps the record of the replacement and
    // the generation.
    state.apply(&joined(1, INC_B)).unwrap();
    let node = state.node(1).unwrap();
    assert_eq!(node.replaced_incarnation.as_deref(), Some(INC_A));
    assert_eq!((node.generation, node.joined_version), (1, applied.version));
    // The old incarnation never comes back, under any id.
    let retired = MetaRefusal::IncarnationRetired {
        incarnation: INC_A.into(),
        node: 1,
    };
    assert_refused(&mut state, &joined(1, INC_A), retired.clone());
    assert_refused(&mut state, &joined(2, INC_A), retired);
}

#[test]
fn generations_end_where_member_ids_have_no_bits_left() {
    let mut state = ClusterState::default();
    state.apply(&joined(1, &incarnation_of(1 << 20))).unwrap();
    for generation in 1..crate::types::GENERATION_END {
        let incarnation = incarnation_of((1 << 20) + generation);
        state
            .apply(&replacing(1, &incarnation, Some(generation)))
            .unwrap();
    }
    let last = incarnation_of(1 << 40);
    assert_refused(
        &mut state,
        &replacing(1, &last, Some(crate::types::GENERATION_END)),
        MetaRefusal::GenerationsUsedUp { node: 1 },
    );
}

#[test]
fn node_joins_that_cannot_be_are_refused() {
    let mut state = ClusterState::default();
    state.apply(&joined(1, INC_A)).unwrap();
    assert_refused(
        &mut state,
        &joined(2, INC_A),
        MetaRefusal::IncarnationInUse {
            incarnation: INC_A.into(),
            holder: 1,
        },
    );
    for bad in ["", "0123", &INC_B.to_uppercase(), &format!("{}0", INC_B)] {
        assert_refused(
            &mut state,
            &joined(2, bad),
            MetaRefusal::BadIncarnation(bad.to_owned()),
        );
    }
    let no_client = MetaCommand::NodeJoined {
        id: 2,
        client_addr: String::new(),
        http_addr: None,
        cluster_addr: "a:1".into(),
        incarnation: INC_C.into(),
        generation: None,
    };
    assert_refused(
        &mut state,
        &no_client,
        MetaRefusal::MissingAddress {
            node: 2,
            field: "client_addr",
        },
    );
    let no_cluster = MetaCommand::NodeJoined {
        id: 2,
        client_addr: "a:1".into(),
        http_addr: None,
        cluster_addr: String::new(),
        incarnation: INC_C.into(),
        generation: None,
    };
    assert_refused(
        &mut state,
        &no_cluster,
        MetaRefusal::MissingAddress {
            node: 2,
            field: "cluster_addr",
        },
    );
    assert_eq!(state.version(), 1);
}

#[test]
fn a_created_topic_is_visible_with_its_replicas() {
    let mut state = with_nodes(3);
    let replicas = vec![vec![1, 2], vec![2, 3], vec![3, 1]];
    let applied = state.apply(&created("orders", replicas.clone())).unwrap();
    assert_eq!(applied.effect, MetaEffect::TopicCreated);
    assert_eq!(applied.version, 4);
    let topic = state.topic("orders").unwrap();
    assert_eq!(topic.partitions, 3);
    assert_eq!(topic.replicas, replicas);
    assert_eq!(topic.config, serde_json::json!({"retention_ms": 1000}));
    assert_eq!(topic.created_ms, 1_700_000_000_000);
    assert_eq!(topic.created_version, 4);
    assert_eq!(state.partitions_on(1), vec![("orders", 0), ("orders", 2)]);
    assert_eq!(state.partitions_on(3), vec![("orders", 1), ("orders", 2)]);
    assert!(state.partitions_on(4).is_empty());
    let load: BTreeMap<NodeId, usize> = [(1, 2), (2, 2), (3, 2)].into();
    assert_eq!(state.replica_load(), load);
}

#[test]
fn topics_that_cannot_be_created_are_refused() {
    let mut state = with_nodes(3);
    state.apply(&created("orders", vec![vec![1, 2]])).unwrap();
    let cases = [
        (
            created("orders", vec![vec![1]]),
            MetaRefusal::TopicExists("orders".into()),
        ),
        (
            created("a/b", vec![vec![1]]),
            MetaRefusal::BadTopicName {
                name: "a/b".into(),
                why: spool_types::TopicName::new_system("a/b")
                    .unwrap_err()
                    .to_string(),
            },
        ),
        (
            created("t", vec![]),
            MetaRefusal::BadPartitionCount { partitions: 0 },
        ),
        (
            created("t", vec![vec![1]; PARTITIONS_MAX as usize + 1]),
            MetaRefusal::BadPartitionCount {
                partitions: PARTITIONS_MAX + 1,
            },
        ),
        (created("t", vec![vec![]]), MetaRefusal::NoReplicas),
        (
            created("t", vec![vec![1, 2], vec![3]]),
            MetaRefusal::UnevenReplicas {
                partition: 1,
                replicas: 1,
                expected: 2,
            },
        ),
        (
            created("t", vec![vec![1], vec![4]]),
            MetaRefusal::UnknownNode {
                partition: 1,
                node: 4,
            },
        ),
        (
            created("t", vec![vec![1, 2], vec![3, 3]]),
            MetaRefusal::DuplicateReplica {
                partition: 1,
                node: 3,
            },
        ),
    ];
    for (command, refusal) in cases {
        assert_refused(&mut state, &command, refusal);
    }
    let mismatched = MetaCommand::TopicCreated {
        name: "t".into(),
        partitions: 2,
        replicas: vec![vec![1]],
        config: serde_json::Value::Null,
        created_ms: 0,
    };
    assert_refused(
        &mut state,
        &mismatched,
        MetaRefusal::ReplicaListCount {
            partitions: 2,
            lists: 1,
        },
    );
}

#[test]
fn a_deleted_topic_is_gone_and_can_be_created_again() {
    let mut state = with_nodes(2);
    state.apply(&created("orders", vec![vec![1, 2]])).unwrap();
    let first_version = state.topic("orders").unwrap().created_version;
    let delete = MetaCommand::TopicDeleted {
        name: "orders".into(),
    };
    assert_eq!(
        state.apply(&delete).unwrap().effect,
        MetaEffect::TopicDeleted
    );
    assert!(state.topic("orders").is_none());
    assert_eq!(state.replica_load()[&1], 0, "its replicas are no load");
    assert_refused(
        &mut state,
        &delete,
        MetaRefusal::UnknownTopic("orders".into()),
    );
    state.apply(&created("orders", vec![vec![2, 1]])).unwrap();
    let again = state.topic("orders").unwrap();
    assert!(again.created_version > first_version, "told apart");
    assert_eq!(again.replicas, vec![vec![2, 1]]);
}

#[test]
fn producer_ids_are_handed_out_in_blocks_once() {
    let mut state = ClusterState::default();
    assert_eq!(state.next_producer_id(), 0);
    let block = |first, count| MetaCommand::ProducerIdsAllocated { first, count };
    let applied = state.apply(&block(0, 1000)).unwrap();
    assert_eq!(
        applied.effect,
        MetaEffect::ProducerIdsAllocated {
            first: 0,
            count: 1000
        }
    );
    assert_eq!(state.next_producer_id(), 1000);
    state.apply(&block(1000, 5)).unwrap();
    assert_eq!(state.next_producer_id(), 1005);
    // A second proposer that read the same next id loses the race.
    assert_refused(
        &mut state,
        &block(1000, 5),
        MetaRefusal::ProducerIdsTaken {
            first: 1000,
            next: 1005,
        },
    );
    assert_refused(
        &mut state,
        &block(1005, 0),
        MetaRefusal::BadProducerIdCount { count: 0 },
    );
    assert_refused(
        &mut state,
        &block(1005, PRODUCER_ID_BLOCK_MAX + 1),
        MetaRefusal::BadProducerIdCount {
            count: PRODUCER_ID_BLOCK_MAX + 1,
        },
    );
    assert_eq!(state.version(), 2);
}

#[test]
fn producer_ids_stop_at_the_end_of_kafkas_range() {
    let near_end = PRODUCER_ID_END - 10;
    let mut state = ClusterState::with_next_producer_id(near_end);
    let block = |first, count| MetaCommand::ProducerIdsAllocated { first, count };
    assert_refused(
        &mut state,
        &block(near_end, 11),
        MetaRefusal::ProducerIdsExhausted {
            first: near_end,
            count: 11,
        },
    );
    state.apply(&block(near_end, 10)).unwrap();
    assert_eq!(state.next_producer_id(), PRODUCER_ID_END);
    assert!(
        i64::try_from(PRODUCER_ID_END - 1).is_ok(),
        "the last id fits"
    );
}

#[test]
fn the_same_commands_make_the_same_state() {
    let commands = [
        joined(1, INC_A),
        joined(2, INC_B),
        created("orders", vec![vec![1, 2], vec![2, 1]]),
        created("orders", vec![vec![1]]),
        MetaCommand::ProducerIdsAllocated {
            first: 0,
            count: 10,
        },
        replacing(2, INC_C, Some(1)),
        MetaCommand::TopicDeleted {
            name: "orders".into(),
        },
    ];
    let run = || {
        let mut state = ClusterState::default();
        let answers: Vec<_> = commands.iter().map(|c| state.apply(c)).collect();
        (state, answers)
    };
    let (a, answers_a) = run();
    let (b, answers_b) = run();
    assert_eq!(a, b);
    assert_eq!(answers_a, answers_b);
    assert_eq!(a.version(), 6, "one refusal among seven");
}

// ---- placement ----

fn zero_load() -> BTreeMap<NodeId, usize> {
    BTreeMap::new()
}

#[test]
fn placement_of_three_partitions_on_three_nodes_rotates_the_leader() {
    let placed = place_replicas(&[1, 2, 3], &zero_load(), 3, 3).unwrap();
    assert_eq!(placed, vec![vec![1, 2, 3], vec![2, 1, 3], vec![3, 1, 2]]);
}

/// From an empty cluster, every node holds as many replicas and leads as
/// many partitions as any other, give or take one.
#[test]
fn placement_balances_replicas_and_leaders() {
    for nodes in 1..=7u64 {
        let ids: Vec<NodeId> = (1..=nodes).collect();
        for replicas in 1..=nodes as u32 {
            for partitions in 1..=3 * nodes as u32 {
                let placed = place_replicas(&ids, &zero_load(), partitions, replicas).unwrap();
                let case = format!("{nodes} nodes, {replicas} replicas, {partitions} partitions");
                assert_eq!(placed.len(), partitions as usize, "{case}");
                let mut load: BTreeMap<NodeId, usize> = ids.iter().map(|&i| (i, 0)).collect();
                let mut leads = load.clone();
                for list in &placed {
                    assert_eq!(list.len(), replicas as usize, "{case}");
                    let distinct: std::collections::BTreeSet<_> = list.iter().collect();
                    assert_eq!(distinct.len(), list.len(), "{case}: {list:?}");
                    for id in list {
                        *load.get_mut(id).unwrap() += 1;
                    }
                    *leads.get_mut(&list[0]).unwrap() += 1;
                }
                let spread = |m: &BTreeMap<NodeId, usize>| {
                    m.values().max().unwrap() - m.values().min().unwrap()
                };
                assert!(spread(&load) <= 1, "{case}: replicas {load:?}");
                assert!(spread(&leads) <= 1, "{case}: leaders {leads:?}");
            }
        }
    }
}

#[test]
fn placement_prefers_the_least_loaded_nodes() {
    let load: BTreeMap<NodeId, usize> = [(1, 5), (2, 0), (3, 1), (4, 0)].into();
    let placed = place_replicas(&[1, 2, 3, 4], &load, 1, 2).unwrap();
    assert_eq!(placed, vec![vec![2, 4]]);
    // Node 1 is used only once the others have caught up with it.
    let placed = place_replicas(&[1, 2, 3, 4], &load, 4, 2).unwrap();
    assert!(placed.iter().all(|list| !list.contains(&1)), "{placed:?}");
}

#[test]
fn placement_is_deterministic_whatever_the_order_of_the_nodes() {
    let load: BTreeMap<NodeId, usize> = [(3, 2), (5, 1)].into();
    let a = place_replicas(&[5, 3, 9, 1, 7], &load, 11, 3).unwrap();
    let b = place_replicas(&[1, 3, 5, 7, 9, 9, 1], &load, 11, 3).unwrap();
    assert_eq!(a, b);
    assert_eq!(a, place_replicas(&[1, 3, 5, 7, 9], &load, 11, 3).unwrap());
}

#[test]
fn placements_that_cannot_be_are_refused() {
    let load = zero_load();
    assert_eq!(
        place_replicas(&[1, 2], &load, 1, 0),
        Err(MetaRefusal::NoReplicas)
    );
    assert_eq!(
        place_replicas(&[1, 2, 2], &load, 1, 3),
        Err(MetaRefusal::NotEnoughNodes {
            replicas: 3,
            nodes: 2
        })
    );
    assert_eq!(
        place_replicas(&[], &load, 1, 1),
        Err(MetaRefusal::NotEnoughNodes {
            replicas: 1,
            nodes: 0
        })
    );
    assert_eq!(
        place_replicas(&[1], &load, 0, 1),
        Err(MetaRefusal::BadPartitionCount { partitions: 0 })
    );
    assert_eq!(
        place_replicas(&[1], &load, PARTITIONS_MAX + 1, 1),
        Err(MetaRefusal::BadPartitionCount {
            partitions: PARTITIONS_MAX + 1
        })
    );
}

#[test]
fn a_placement_is_accepted_by_the_state() {
    let mut state = with_nodes(5);
    let ids: Vec<NodeId> = state.nodes().keys().copied().collect();
    for (name, partitions) in [("a", 3), ("b", 7), ("c", 1)] {
        let replicas = place_replicas(&ids, &state.replica_load(), partitions, 3).unwrap();
        state.apply(&created(name, replicas)).unwrap();
    }
    let load = state.replica_load();
    let spread = load.values().max().unwrap() - load.values().min().unwrap();
    assert!(spread <= 1, "across topics too: {load:?}");
}

// ---- stored form ----

fn every_command() -> Vec<MetaCommand> {
    vec![
        joined(7, INC_A),
        created("orders", vec![vec![1, 2, 3], vec![2, 3, 1]]),
        MetaCommand::TopicDeleted {
            name: "orders".into(),
        },
        MetaCommand::ProducerIdsAllocated {
            first: 1000,
            count: 1000,
        },
    ]
}

#[test]
fn commands_round_trip_through_a_stored_batch() {
    for command in every_command() {
        let mut batch = command.to_batch(1_700_000_000_123).unwrap();
        assert_eq!(MetaCommand::from_batch(&batch).unwrap(), command);
        // As the log stores it: its offset and term written, outside the CRC.
        spool_batch::set_base_offset(&mut batch, 4242);
        spool_batch::set_leader_epoch(&mut batch, 17);
        assert_eq!(MetaCommand::from_batch(&batch).unwrap(), command);
    }
}

/// The JSON is stored on disk: this is its shape, which must not change
/// by accident.
#[test]
fn the_stored_json_keeps_its_shape() {
    let json: Vec<String> = every_command()
        .iter()
        .map(|c| serde_json::to_string(c).unwrap())
        .collect();
    assert_eq!(
        json,
        [
            format!(
                r#"{{"type":"node_joined","id":7,"client_addr":"10.0.0.7:7070","http_addr":"10.0.0.7:8080","cluster_addr":"10.0.0.7:7171","incarnation":"{INC_A}"}}"#
            ),
            r#"{"type":"topic_created","name":"orders","partitions":2,"replicas":[[1,2,3],[2,3,1]],"config":{"retention_ms":1000},"created_ms":1700000000000}"#.to_owned(),
            r#"{"type":"topic_deleted","name":"orders"}"#.to_owned(),
            r#"{"type":"producer_ids_allocated","first":1000,"count":1000}"#.to_owned(),
        ]
    );
}

fn batch_of(values: &[Option<&[u8]>]) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    for value in values {
        builder
            .push(&NewRecord {
                value: value.map(<[u8]>::to_vec),
                timestamp_ms: 1,
                ..NewRecord::default()
            })
            .unwrap();
    }
    builder.finish().unwrap()
}

#[test]
fn batches_that_are_not_commands_are_refused() {
    let good = every_command()[0].to_batch(1).unwrap();
    let json = serde_json::to_vec(&every_command()[0]).unwrap();
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("random bytes", (0..200u8).collect()),
        ("cut short", good[..good.len() - 3].to_vec()),
        ("a flipped bit", flipped),
        ("two records", batch_of(&[Some(&json), Some(&json)])),
        ("no value", batch_of(&[None])),
        ("not JSON", batch_of(&[Some(b"node_joined")])),
        (
            "an unknown command",
            batch_of(&[Some(br#"{"type":"node_left","id":1}"#)]),
        ),
        (
            "an unknown field",
            batch_of(&[Some(br#"{"type":"topic_deleted","name":"t","why":"x"}"#)]),
        ),
        (
            "a missing field",
            batch_of(&[Some(br#"{"type":"producer_ids_allocated","first":1}"#)]),
        ),
        (
            "a control batch",
            spool_batch::control_batch(&json, -1).unwrap(),
        ),
    ];
    for (what, batch) in cases {
        assert!(
            MetaCommand::from_batch(&batch).is_err(),
            "{what} was taken for a command"
        );
    }
}

#[test]
fn a_command_too_large_is_not_encoded() {
    let command = MetaCommand::TopicCreated {
        name: "big".into(),
        partitions: 1,
        replicas: vec![vec![1]],
        config: serde_json::Value::String("x".repeat(COMMAND_BYTES_MAX)),
        created_ms: 0,
    };
    assert!(matches!(
        command.to_batch(0),
        Err(CommandError::TooLarge { .. })
    ));
}

// ---- the hook ----

fn entry(command: &MetaCommand) -> Bytes {
    Bytes::from(command.to_batch(1).unwrap())
}

fn answer(hook: &MetaHook, index: u64, batch: &Bytes) -> Option<MetaAnswer> {
    let answer = hook.applied(&log_id(1, index), batch).unwrap()?;
    Some(answer.downcast_ref::<MetaAnswer>().unwrap().clone())
}

#[test]
fn the_hook_applies_answers_and_announces_versions() {
    let hook = MetaHook::new();
    let mut versions = hook.subscribe();
    let first = answer(&hook, 1, &entry(&joined(1, INC_A))).unwrap();
    assert_eq!(first.unwrap().version, 1);
    assert!(versions.has_changed().unwrap());
    assert_eq!(*versions.borrow_and_update(), 1);
    let topic = entry(&created("t", vec![vec![1]]));
    assert!(answer(&hook, 2, &topic).unwrap().is_ok());
    let refused = answer(&hook, 3, &topic).unwrap();
    assert_eq!(refused, Err(MetaRefusal::TopicExists("t".into())));
    assert_eq!(*versions.borrow_and_update(), 2, "a refusal is no version");
    assert_eq!(hook.read().version(), 2);
    assert_eq!(hook.applied_index(), Some(3));
}

#[test]
fn the_hook_skips_entries_it_has_applied() {
    let hook = MetaHook::new();
    let join = entry(&joined(1, INC_A));
    let topic = entry(&created("t", vec![vec![1]]));
    answer(&hook, 1, &join);
    answer(&hook, 2, &topic);
    let before = hook.read().clone();
    // A restarted Raft given the same hook replays from the start.
    assert_eq!(answer(&hook, 1, &join), None);
    assert_eq!(answer(&hook, 2, &topic), None);
    assert_eq!(*hook.read(), before);
}

#[test]
fn the_hook_stops_on_an_entry_that_is_no_command() {
    let hook = MetaHook::new();
    let garbage = Bytes::from(batch_of(&[Some(b"garbage")]));
    assert!(hook.applied(&log_id(1, 1), &garbage).is_err());
    assert_eq!(hook.applied_index(), None, "not counted as applied");
    assert_eq!(hook.read().version(), 0);
}
