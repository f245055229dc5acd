//! Keeps the Raft groups this node leads at the members the metadata
//! names: a node whose data was lost comes back in a new generation
//! (docs/cluster.md, "A wiped data directory"), and each group that had
//! its old self as a voter swaps it for the new member, through
//! openraft's own membership changes: the new member is added as a
//! learner and caught up, then one joint change replaces the old voter
//! with it. The old member's votes and acknowledgements stay counted only
//! in configurations that name it, so nothing it promised before the loss
//! is used again.
//!
//! Generations only grow: a leader whose metadata lags the group's
//! membership (a change made by an earlier leader) never swaps a member
//! back to an older one; and the voters are replaced only if the group's
//! membership is still the one the swap was worked out from (openraft's
//! `change_membership_if`), so a swap decided before a leader change is
//! not applied over another leader's.

use super::Cluster;
use spool_cluster::groups::PartitionGroup;
use spool_cluster::meta::ClusterState;
use spool_cluster::openraft::async_runtime::WatchReceiver;
use spool_cluster::openraft::{ChangeMembers, Precondition, ServerState};
use spool_cluster::types::{generation_of, member_id, node_of, NodeAddr, NodeId, PartitionRaft};
use spool_cluster::wire::GroupId;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often this node looks at the groups it leads.
const MEMBERSHIP_CHECK_MS: u64 = 1_000;
/// How long a new member may take to catch up before the change is given
/// up (and tried again on a later pass): a replica of a large partition
/// copies its whole retained log.
const CATCH_UP_WAIT_MS: u64 = 120_000;
/// Membership changes this node runs at once: each catches a member up
/// (a copy of a log), and a node that lost its data is in many groups.
const CHANGES_AT_ONCE_MAX: usize = 4;

/// One swap a group needs: its voters now and the voters it should have,
/// with the new members' addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Swap {
    /// The voters the swap was worked out against.
    from_voters: BTreeSet<u64>,
    /// The voters it leads to.
    voters: BTreeSet<u64>,
    learners_to_add: BTreeMap<u64, NodeAddr>,
    stale_learners: BTreeSet<u64>,
}

pub(super) async fn run(cluster: Arc<Cluster>) {
    let changing: Arc<Mutex<HashSet<GroupId>>> = Arc::default();
    let mut tick = tokio::time::interval(Duration::from_millis(MEMBERSHIP_CHECK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (group, raft) in led_groups(&cluster) {
            let swap = {
                let state = cluster.meta.read();
                swap_needed(&raft, &state)
            };
            let Some(swap) = swap else { continue };
            {
                let mut busy = changing.lock().unwrap_or_else(|p| p.into_inner());
                if busy.len() >= CHANGES_AT_ONCE_MAX || !busy.insert(group.clone()) {
                    continue;
                }
            }
            let changing = changing.clone();
            tokio::spawn(async move {
                change(&group, &raft, swap).await;
                changing
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&group);
            });
        }
    }
}

/// The groups this node leads now: the metadata group and partitions.
fn led_groups(cluster: &Cluster) -> Vec<(GroupId, PartitionGroup)> {
    let groups = cluster.node.groups();
    // The metadata group first: a replaced node hosts no partition until
    // its metadata replica has caught up.
    let mut led = vec![(GroupId::Meta, cluster.node.meta().clone())];
    led.extend(
        groups
            .partitions()
            .into_iter()
            .map(|(id, raft, _)| (id, raft)),
    );
    led.retain(|(_, raft)| raft.metrics().borrow_watched().state == ServerState::Leader);
    led
}

/// What `raft`'s membership must change for every voter to be its node's
/// latest generation, if anything.
fn swap_needed(raft: &PartitionGroup, state: &ClusterState) -> Option<Swap> {
    let membership = raft.metrics().borrow_watched().membership_config.clone();
    let membership = membership.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let nodes: BTreeSet<u64> = membership.nodes().map(|(id, _)| *id).collect();
    let mut swap = Swap {
        from_voters: voters.clone(),
        voters: BTreeSet::new(),
        learners_to_add: BTreeMap::new(),
        stale_learners: BTreeSet::new(),
    };
    let latest = |node: NodeId| state.node(node).map(|n| (n.generation, n));
    for &voter in &voters {
        let node = node_of(voter);
        match latest(node) {
            Some((generation, info)) if generation > generation_of(voter) => {
                let member = member_id(node, generation);
                swap.voters.insert(member);
                if !nodes.contains(&member) {
                    let addr = NodeAddr {
                        client_addr: info.client_addr.clone(),
                        cluster_addr: info.cluster_addr.clone(),
                    };
                    swap.learners_to_add.insert(member, addr);
                }
            }
            _ => {
                swap.voters.insert(voter);
            }
        }
    }
    // Learners of an older generation than their node's (added for a
    // replacement that was itself replaced before it caught up).
    for &member in nodes.difference(&voters) {
        let stale = latest(node_of(member)).is_some_and(|(g, _)| g > generation_of(member));
        if stale {
            swap.stale_learners.insert(member);
        }
    }
    (swap.voters != voters || !swap.stale_learners.is_empty()).then_some(swap)
}

/// Adds the new members as learners, waits until they hold every
/// committed entry, then replaces the voters if the membership is still
/// the one the swap was worked out from; drops stale learners. Logged,
/// not retried here: the next pass sees what is left to do.
async fn change(group: &GroupId, raft: &PartitionGroup, swap: Swap) {
    // A partition group's leader holds no lease between writes (no
    // heartbeats): openraft refuses a change without one.
    spool_cluster::proposer::renew_lease(raft).await;
    for (member, addr) in &swap.learners_to_add {
        tracing::info!(
            ?group,
            node = node_of(*member),
            generation = generation_of(*member),
            "adding a replaced node's new member as a learner"
        );
        if let Err(e) = raft.add_learner(*member, addr.clone(), false).await {
            tracing::info!(?group, "adding a learner: {e}; trying again later");
            return;
        }
    }
    let newcomers: Vec<u64> = swap.voters.difference(&swap.from_voters).copied().collect();
    if !caught_up(raft, &newcomers).await {
        tracing::info!(
            ?group,
            "the new member has not caught up yet; trying again later"
        );
        return;
    }
    let voters_now: BTreeSet<u64> = raft
        .metrics()
        .borrow_watched()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    if voters_now != swap.from_voters {
        // Another leader changed them meanwhile: worked out again next pass.
        return;
    }
    if voters_now != swap.voters {
        spool_cluster::proposer::renew_lease(raft).await;
        let replace = ChangeMembers::ReplaceAllVoters(swap.voters.clone());
        match raft
            .change_membership_if(replace, false, [unchanged_membership(raft)])
            .await
        {
            Ok(_) => tracing::info!(
                ?group,
                voters = ?swap.voters,
                "voters changed: a replaced node's old member is out"
            ),
            Err(e) => {
                tracing::info!(?group, "changing the voters: {e}; trying again later");
                return;
            }
        }
    }
    if !swap.stale_learners.is_empty() {
        spool_cluster::proposer::renew_lease(raft).await;
        let stale = ChangeMembers::RemoveNodes(swap.stale_learners.clone());
        let changed = raft
            .change_membership_if(stale, false, [unchanged_membership(raft)])
            .await;
        if let Err(e) = changed {
            tracing::info!(?group, "removing stale learners: {e}; trying again later");
        }
    }
}

/// The condition that the group's membership is still the one it has now
/// (the one holding the learners just added, and the voters the swap was
/// worked out against, as `change` checked just before): a change made in
/// between by another leader makes openraft refuse this one.
fn unchanged_membership(raft: &PartitionGroup) -> Precondition<PartitionRaft> {
    let based_on = *raft.metrics().borrow_watched().membership_config.log_id();
    Precondition::LastMembershipLogId {
        last_membership_log_id: based_on,
    }
}

/// Waits (up to [`CATCH_UP_WAIT_MS`]) until each of `members` holds every
/// entry this leader has committed; `false` if one has not by then.
async fn caught_up(raft: &PartitionGroup, members: &[u64]) -> bool {
    let mut metrics = raft.metrics();
    let all_there = metrics.wait_until(|m| {
        let committed = m.cluster_committed.as_ref().map(|c| c.index);
        members.iter().all(|member| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(member))
                .is_some_and(|matched| matched.as_ref().map(|l| l.index) >= committed)
        })
    });
    let wait = Duration::from_millis(CATCH_UP_WAIT_MS);
    matches!(tokio::time::timeout(wait, all_there).await, Ok(Ok(_)))
}
