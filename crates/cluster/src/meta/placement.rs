//! Where a new topic's partitions go (docs/cluster.md, "Shape"): each
//! partition on the least-loaded nodes, and its preferred leader (the first
//! replica) spread so that no node leads more of the topic's partitions
//! than it must.

use super::MetaRefusal;
use crate::types::NodeId;
use spool_types::limits::PARTITIONS_MAX;
use std::collections::{BTreeMap, BTreeSet};

/// The replicas of each of `partitions` partitions, `replicas` nodes each,
/// chosen from `nodes` (duplicates ignored) given each node's current
/// `load` in partition replicas (a node missing from it has none: see
/// `ClusterState::replica_load`).
///
/// Deterministic: the same arguments give the same placement, whatever the
/// order of `nodes`. Each partition takes the least-loaded nodes, ties by
/// id, counting the partitions placed before it; its preferred leader is
/// the one of them that leads the fewest of this topic's partitions so
/// far (ties: the least loaded, then the lowest id), so leaders rotate.
pub fn place_replicas(
    nodes: &[NodeId],
    load: &BTreeMap<NodeId, usize>,
    partitions: u32,
    replicas: u32,
) -> Result<Vec<Vec<NodeId>>, MetaRefusal> {
    let nodes: BTreeSet<NodeId> = nodes.iter().copied().collect();
    let replicas = replicas as usize;
    if replicas == 0 {
        return Err(MetaRefusal::NoReplicas);
    }
    if replicas > nodes.len() {
        return Err(MetaRefusal::NotEnoughNodes {
            replicas,
            nodes: nodes.len(),
        });
    }
    if partitions == 0 || partitions > PARTITIONS_MAX {
        return Err(MetaRefusal::BadPartitionCount { partitions });
    }
    let mut load: BTreeMap<NodeId, usize> = nodes
        .iter()
        .map(|id| (*id, load.get(id).copied().unwrap_or(0)))
        .collect();
    let mut leads: BTreeMap<NodeId, usize> = nodes.iter().map(|id| (*id, 0)).collect();
    let mut placement = Vec::with_capacity(partitions as usize);
    for _ in 0..partitions {
        let mut chosen: Vec<NodeId> = nodes.iter().copied().collect();
        // Stable: equal loads keep the ids' order.
        chosen.sort_by_key(|id| load[id]);
        chosen.truncate(replicas);
        let leader_at = (0..chosen.len())
            .min_by_key(|&i| (leads[&chosen[i]], i))
            .unwrap_or(0);
        let leader = chosen.remove(leader_at);
        chosen.insert(0, leader);
        for id in &chosen {
            *load.entry(*id).or_default() += 1;
        }
        *leads.entry(leader).or_default() += 1;
        placement.push(chosen);
    }
    Ok(placement)
}
