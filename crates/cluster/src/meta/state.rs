//! The cluster's metadata as the metadata group's log builds it: which
//! nodes exist (and under which incarnation), which topics exist and where
//! their partitions' replicas are, and the next free producer id.
//!
//! [`ClusterState::apply`] is the whole of the group's state machine: a
//! pure function of the state and the command, with no clock and no
//! randomness, so that every node that applies the same log holds the same
//! state, and a node that replays its log after a restart gets it back.

use super::incarnation::is_incarnation;
use super::MetaCommand;
use crate::types::{member_id, NodeId};
use spool_types::limits::PARTITIONS_MAX;
use spool_types::TopicName;
use std::collections::{BTreeMap, BTreeSet};

/// The most producer ids one command hands out. Servers ask for a block at
/// a time (Kafka's brokers: 1000); a far larger block is a proposer's bug,
/// and refusing it keeps the id space from being spent by one.
pub const PRODUCER_ID_BLOCK_MAX: u64 = 1_000_000;

/// Producer ids are below this: a batch carries its producer id as Kafka's
/// `int64` `producerId`, where negative means none.
pub const PRODUCER_ID_END: u64 = i64::MAX as u64;

/// A node as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: NodeId,
    pub client_addr: String,
    pub http_addr: Option<String>,
    pub cluster_addr: String,
    /// The incarnation it last joined with.
    pub incarnation: String,
    /// The incarnation this id had before its data directory was wiped, if
    /// it rejoined with a new one.
    pub replaced_incarnation: Option<String>,
    /// How many times the node was replaced after losing its data: its
    /// Raft groups know it as [`member_id`]`(id, generation)`, and group
    /// leaders swap an older generation for this one.
    pub generation: u64,
    /// The state's version when its incarnation joined: topics created
    /// before that are groups it joins as a new member (added by their
    /// leaders), never ones it initialises.
    pub joined_version: u64,
}

/// A topic as the cluster knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: u32,
    /// Per partition, its replicas; the first is the preferred leader.
    pub replicas: Vec<Vec<NodeId>>,
    /// Per partition, its replicas' Raft member ids when the topic was
    /// created: the membership its group is initialised with, on every
    /// replica alike, whatever generations the nodes have reached since.
    pub initial_members: Vec<Vec<u64>>,
    /// The topic's settings as the server's JSON.
    pub config: serde_json::Value,
    pub created_ms: i64,
    /// The state's version that created it: tells a topic from an earlier
    /// one of the same name that was deleted (whose partition groups must
    /// not be taken for this one's).
    pub created_version: u64,
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaApplied {
    /// The state's version after the command.
    pub version: u64,
    pub effect: MetaEffect,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaEffect {
    /// A node id seen for the first time.
    NodeAdded,
    /// A known node came back with its incarnation (addresses updated).
    NodeRejoined,
    /// A known node id came back with a new incarnation: its data
    /// directory was wiped.
    NodeReplaced {
        old_incarnation: String,
    },
    TopicCreated,
    TopicDeleted,
    ProducerIdsAllocated {
        first: u64,
        count: u64,
    },
}

/// Why a command was refused. Every replica refuses the same command for
/// the same reason, and the state is left as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaRefusal {
    #[error("incarnation {0:?} is not 32 lowercase hex digits")]
    BadIncarnation(String),
    #[error("node {node}: {field} is empty")]
    MissingAddress { node: NodeId, field: &'static str },
    #[error("incarnation {incarnation} belongs to node {holder} (a copied data directory?)")]
    IncarnationInUse { incarnation: String, holder: NodeId },
    #[error(
        "node {node} comes back with a new data directory as generation {given:?}; its next \
         generation is {expected}"
    )]
    GenerationMismatch {
        node: NodeId,
        given: Option<u64>,
        expected: u64,
    },
    #[error(
        "node {node} was replaced after losing its data as many times as member ids allow; \
         give the node a new id"
    )]
    GenerationsUsedUp { node: NodeId },
    #[error("incarnation {incarnation} was replaced (it was node {node}'s) and cannot come back")]
    IncarnationRetired { incarnation: String, node: NodeId },
    #[error("bad topic name {name:?}: {why}")]
    BadTopicName { name: String, why: String },
    #[error("topic {0} exists")]
    TopicExists(String),
    #[error("no topic {0}")]
    UnknownTopic(String),
    #[error("{partitions} partitions; a topic has 1 to {PARTITIONS_MAX}")]
    BadPartitionCount { partitions: u32 },
    #[error("{partitions} partitions but {lists} replica lists")]
    ReplicaListCount { partitions: u32, lists: usize },
    #[error("a partition needs at least one replica")]
    NoReplicas,
    #[error("partition {partition} has {replicas} replicas; partition 0 has {expected}")]
    UnevenReplicas {
        partition: u32,
        replicas: usize,
        expected: usize,
    },
    #[error("partition {partition} names node {node}, which has not joined")]
    UnknownNode { partition: u32, node: NodeId },
    #[error("partition {partition} names node {node} twice")]
    DuplicateReplica { partition: u32, node: NodeId },
    #[error("{replicas} replicas asked for, but the cluster has {nodes} nodes")]
    NotEnoughNodes { replicas: usize, nodes: usize },
    #[error("producer ids from {first} asked for, but the next free one is {next}")]
    ProducerIdsTaken { first: u64, next: u64 },
    #[error("a block of {count} producer ids; 1 to {PRODUCER_ID_BLOCK_MAX}")]
    BadProducerIdCount { count: u64 },
    #[error("producer ids are used up ({first} + {count} passes {PRODUCER_ID_END})")]
    ProducerIdsExhausted { first: u64, count: u64 },
}

/// The cluster's metadata. Changed only by [`ClusterState::apply`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterState {
    version: u64,
    nodes: BTreeMap<NodeId, NodeInfo>,
    topics: BTreeMap<String, TopicInfo>,
    next_producer_id: u64,
    /// Incarnations that were replaced, and whose node they were: they
    /// never come back (a restored backup of a wiped directory would be an
    /// old self voting again).
    retired_incarnations: BTreeMap<String, NodeId>,
}

impl ClusterState {
    /// Applies `command`, or refuses it and changes nothing.
    pub fn apply(&mut self, command: &MetaCommand) -> Result<MetaApplied, MetaRefusal> {
        let effect = match command {
            MetaCommand::NodeJoined {
                id,
                client_addr,
                http_addr,
                cluster_addr,
                incarnation,
                generation,
            } => self.node_joined(
                NodeInfo {
                    id: *id,
                    client_addr: client_addr.clone(),
                    http_addr: http_addr.clone(),
                    cluster_addr: cluster_addr.clone(),
                    incarnation: incarnation.clone(),
                    replaced_incarnation: None,
                    generation: 0,
                    joined_version: self.version + 1,
                },
                *generation,
            )?,
            MetaCommand::TopicCreated {
                name,
                partitions,
                replicas,
                config,
                created_ms,
            } => {
                self.check_new_topic(name, *partitions, replicas)?;
                let initial_members = replicas.iter().map(|list| self.members_of(list)).collect();
                let topic = TopicInfo {
                    name: name.clone(),
                    partitions: *partitions,
                    replicas: replicas.clone(),
                    initial_members,
                    config: config.clone(),
                    created_ms: *created_ms,
                    created_version: self.version + 1,
                };
                self.topics.insert(name.clone(), topic);
                MetaEffect::TopicCreated
            }
            MetaCommand::TopicDeleted { name } => {
                self.topics
                    .remove(name)
                    .ok_or_else(|| MetaRefusal::UnknownTopic(name.clone()))?;
                MetaEffect::TopicDeleted
            }
            MetaCommand::ProducerIdsAllocated { first, count } => {
                self.allocate_producer_ids(*first, *count)?
            }
        };
        self.version += 1;
        Ok(MetaApplied {
            version: self.version,
            effect,
        })
    }

    fn node_joined(
        &mut self,
        mut node: NodeInfo,
        generation: Option<u64>,
    ) -> Result<MetaEffect, MetaRefusal> {
        if !is_incarnation(&node.incarnation) {
            return Err(MetaRefusal::BadIncarnation(node.incarnation));
        }
        for (field, addr) in [
            ("client_addr", &node.client_addr),
            ("cluster_addr", &node.cluster_addr),
        ] {
            if addr.is_empty() {
                return Err(MetaRefusal::MissingAddress {
                    node: node.id,
                    field,
                });
            }
        }
        if let Some(&was) = self.retired_incarnations.get(&node.incarnation) {
            return Err(MetaRefusal::IncarnationRetired {
                incarnation: node.incarnation,
                node: was,
            });
        }
        if let Some(holder) = self
            .nodes
            .values()
            .find(|n| n.id != node.id && n.incarnation == node.incarnation)
        {
            return Err(MetaRefusal::IncarnationInUse {
                incarnation: node.incarnation,
                holder: holder.id,
            });
        }
        let effect = match self.nodes.get(&node.id) {
            None => {
                node.generation = generation.unwrap_or(0);
                MetaEffect::NodeAdded
            }
            Some(old) if old.incarnation == node.incarnation => {
                node.replaced_incarnation = old.replaced_incarnation.clone();
                node.generation = old.generation;
                node.joined_version = old.joined_version;
                MetaEffect::NodeRejoined
            }
            Some(old) => {
                // The replacement names the generation it will run as, so
                // it knows its member id before this is applied.
                let expected = old.generation + 1;
                if expected >= crate::types::GENERATION_END {
                    return Err(MetaRefusal::GenerationsUsedUp { node: node.id });
                }
                if generation != Some(expected) {
                    return Err(MetaRefusal::GenerationMismatch {
                        node: node.id,
                        given: generation,
                        expected,
                    });
                }
                node.generation = expected;
                let old_incarnation = old.incarnation.clone();
                self.retired_incarnations
                    .insert(old_incarnation.clone(), node.id);
                node.replaced_incarnation = Some(old_incarnation.clone());
                MetaEffect::NodeReplaced { old_incarnation }
            }
        };
        self.nodes.insert(node.id, node);
        Ok(effect)
    }

    fn check_new_topic(
        &self,
        name: &str,
        partitions: u32,
        replicas: &[Vec<NodeId>],
    ) -> Result<(), MetaRefusal> {
        // `new_system`: the server also creates topics of its own
        // (`spool.…`); whether a client may is the server's check.
        TopicName::new_system(name).map_err(|e| MetaRefusal::BadTopicName {
            name: name.to_owned(),
            why: e.to_string(),
        })?;
        if self.topics.contains_key(name) {
            return Err(MetaRefusal::TopicExists(name.to_owned()));
        }
        if partitions == 0 || partitions > PARTITIONS_MAX {
            return Err(MetaRefusal::BadPartitionCount { partitions });
        }
        if replicas.len() != partitions as usize {
            return Err(MetaRefusal::ReplicaListCount {
                partitions,
                lists: replicas.len(),
            });
        }
        let expected = replicas.first().map_or(0, Vec::len);
        if expected == 0 {
            return Err(MetaRefusal::NoReplicas);
        }
        for (partition, list) in (0u32..).zip(replicas) {
            self.check_replica_list(partition, list, expected)?;
        }
        Ok(())
    }

    fn check_replica_list(
        &self,
        partition: u32,
        list: &[NodeId],
        expected: usize,
    ) -> Result<(), MetaRefusal> {
        if list.len() != expected {
            return Err(MetaRefusal::UnevenReplicas {
                partition,
                replicas: list.len(),
                expected,
            });
        }
        let mut seen = BTreeSet::new();
        for &node in list {
            if !self.nodes.contains_key(&node) {
                return Err(MetaRefusal::UnknownNode { partition, node });
            }
            if !seen.insert(node) {
                return Err(MetaRefusal::DuplicateReplica { partition, node });
            }
        }
        Ok(())
    }

    fn allocate_producer_ids(&mut self, first: u64, count: u64) -> Result<MetaEffect, MetaRefusal> {
        if count == 0 || count > PRODUCER_ID_BLOCK_MAX {
            return Err(MetaRefusal::BadProducerIdCount { count });
        }
        if first != self.next_producer_id {
            return Err(MetaRefusal::ProducerIdsTaken {
                first,
                next: self.next_producer_id,
            });
        }
        let end = first
            .checked_add(count)
            .filter(|end| *end <= PRODUCER_ID_END)
            .ok_or(MetaRefusal::ProducerIdsExhausted { first, count })?;
        self.next_producer_id = end;
        Ok(MetaEffect::ProducerIdsAllocated { first, count })
    }

    /// The Raft member ids of `nodes` in their current generations (a node
    /// not known keeps generation 0).
    pub fn members_of(&self, nodes: &[NodeId]) -> Vec<u64> {
        nodes
            .iter()
            .map(|id| member_id(*id, self.nodes.get(id).map_or(0, |n| n.generation)))
            .collect()
    }

    /// How many commands have been applied (refused ones do not count).
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn nodes(&self) -> &BTreeMap<NodeId, NodeInfo> {
        &self.nodes
    }

    pub fn node(&self, id: NodeId) -> Option<&NodeInfo> {
        self.nodes.get(&id)
    }

    pub fn topics(&self) -> &BTreeMap<String, TopicInfo> {
        &self.topics
    }

    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.get(name)
    }

    /// The partitions `node` holds a replica of, as (topic, partition), by
    /// topic name and partition.
    pub fn partitions_on(&self, node: NodeId) -> Vec<(&str, u32)> {
        self.topics
            .values()
            .flat_map(|topic| {
                (0u32..)
                    .zip(&topic.replicas)
                    .filter(move |(_, list)| list.contains(&node))
                    .map(move |(partition, _)| (topic.name.as_str(), partition))
            })
            .collect()
    }

    /// Partition replicas per node, every node listed (0 for none): the
    /// load [`place_replicas`](super::place_replicas) balances.
    pub fn replica_load(&self) -> BTreeMap<NodeId, usize> {
        let mut load: BTreeMap<NodeId, usize> = self.nodes.keys().map(|&id| (id, 0)).collect();
        for list in self.topics.values().flat_map(|t| &t.replicas) {
            for node in list {
                *load.entry(*node).or_default() += 1;
            }
        }
        load
    }

    /// The first producer id not handed out yet.
    pub fn next_producer_id(&self) -> u64 {
        self.next_producer_id
    }

    /// A state whose producer ids run out soon, which commands alone would
    /// take trillions of blocks to reach.
    #[cfg(test)]
    pub(super) fn with_next_producer_id(next_producer_id: u64) -> ClusterState {
        ClusterState {
            next_producer_id,
            ..ClusterState::default()
        }
    }
}
