//! Consumer groups as a pure state machine: membership, partition assignment
//! with a safe hand-off, and committed offsets. No I/O and no clock: every
//! call takes `now_ms`, and the caller persists commits before applying them.
//!
//! Hand-off rule: a partition has a *target* member (the balanced assignment
//! for the current generation) and a *holder* (the member allowed to consume
//! it). A partition moves to its new target only once its old holder has
//! heartbeated with the new generation — that is, has seen that it lost the
//! partition and committed what it processed — or has left or expired. So two
//! live members never hold one partition at the same time.

use crate::error::{BrokerError, Result};
use spool_types::{ErrorCode, TopicPattern};
use std::collections::{BTreeMap, BTreeSet};

/// A (topic, partition) pair.
pub type TopicPartition = (String, u32);

/// Where a group starts reading a partition it has no committed offset for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    Earliest,
    Latest,
}

/// What a member may consume now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub member_id: String,
    pub generation: u32,
    /// Held partitions with their committed offset, if any.
    pub partitions: Vec<(TopicPartition, Option<i64>)>,
    /// How the member asked to start partitions without a committed offset.
    pub start: StartFrom,
}

#[derive(Debug, Clone)]
struct Member {
    /// Who joined: the authenticated name (none without authentication).
    /// Only the same owner may heartbeat, commit, leave or rejoin as this
    /// member, so another tenant cannot take it over with its id.
    owner: Option<String>,
    patterns: Vec<TopicPattern>,
    session_timeout_ms: u64,
    deadline_ms: i64,
    start: StartFrom,
}

#[derive(Debug, Default, Clone)]
struct Group {
    /// Since when the group has had no members (none: it has some, or
    /// nobody has looked since it was loaded).
    empty_since_ms: Option<i64>,
    generation: u32,
    members: BTreeMap<String, Member>,
    target: BTreeMap<TopicPartition, String>,
    holder: BTreeMap<TopicPartition, String>,
    committed: BTreeMap<TopicPartition, i64>,
}

/// All consumer groups of a broker.
#[derive(Debug, Default)]
pub struct Coordinator {
    groups: BTreeMap<String, Group>,
}

/// A member's id and the partitions it holds.
pub type MemberHolding = (String, Vec<TopicPartition>);

/// Topic name → partition count, the catalogue assignments are made from.
pub type Catalog = BTreeMap<String, u32>;

fn unknown_member(group: &str, member: &str) -> BrokerError {
    BrokerError::new(
        ErrorCode::UnknownMember,
        format!("member {member:?} is not in group {group:?} (it left or missed its session timeout); join again"),
    )
}

/// Whether `group` is the server's own (`spool.…`, e.g. redrive cursors):
/// never listed, deleted or reset by clients.
pub fn is_system_group(group: &str) -> bool {
    group.starts_with(spool_types::names::SYSTEM_TOPIC_PREFIX)
}

impl Group {
    /// `member` if it is in the group and `owner` joined it; otherwise the
    /// same answer as for an id nobody has (nothing tells a guesser that an
    /// id exists).
    fn member_of(&mut self, group: &str, member: &str, owner: Option<&str>) -> Result<&mut Member> {
        match self.members.get_mut(member) {
            Some(m) if m.owner.as_deref() == owner => Ok(m),
            _ => Err(unknown_member(group, member)),
        }
    }

    fn matches(&self, member: &Member, topic: &str) -> bool {
        let _ = self;
        member.patterns.iter().any(|p| p.matches(topic))
    }

    /// Recomputes the balanced target assignment, keeping current targets
    /// where fair, and starts a new generation.
    fn rebalance(&mut self, catalog: &Catalog) {
        let mut tps: Vec<TopicPartition> = Vec::new();
        for (topic, &count) in catalog {
            if self.members.values().any(|m| self.matches(m, topic)) {
                tps.extend((0..count).map(|p| (topic.clone(), p)));
            }
        }
        // A fair share is `base` partitions, and `extra` members get one
        // more. Members keep current targets up to that share (sticky), so
        // a joining member always has something left to take: with a
        // `ceil(n/m)` cap for everyone, 4 partitions over 3 members stayed
        // 2, 2, 0 and the newest member idled.
        let (base, mut extra) = match self.members.len() {
            0 => (0, 0),
            m => (tps.len() / m, tps.len() % m),
        };
        let mut counts: BTreeMap<String, usize> =
            self.members.keys().map(|m| (m.clone(), 0)).collect();
        let mut target = BTreeMap::new();
        let current_owner = |tp: &TopicPartition| {
            self.target
                .get(tp)
                .filter(|owner| {
                    self.members
                        .get(*owner)
                        .is_some_and(|m| self.matches(m, &tp.0))
                })
                .cloned()
        };
        for tp in &tps {
            if let Some(owner) = current_owner(tp) {
                if counts[&owner] < base {
                    *counts.entry(owner.clone()).or_default() += 1;
                    target.insert(tp.clone(), owner);
                }
            }
        }
        for tp in &tps {
            if target.contains_key(tp) || extra == 0 {
                continue;
            }
            if let Some(owner) = current_owner(tp) {
                if counts[&owner] == base {
                    extra -= 1;
                    *counts.entry(owner.clone()).or_default() += 1;
                    target.insert(tp.clone(), owner);
                }
            }
        }
        for tp in &tps {
            if target.contains_key(tp) {
                continue;
            }
            let choice = self
                .members
                .iter()
                .filter(|(_, m)| self.matches(m, &tp.0))
                .map(|(id, _)| id)
                .min_by_key(|id| (counts[*id], (*id).clone()));
            if let Some(id) = choice {
                *counts.entry(id.clone()).or_default() += 1;
                target.insert(tp.clone(), id.clone());
            }
        }
        let live: BTreeSet<&TopicPartition> = tps.iter().collect();
        self.holder
            .retain(|tp, m| live.contains(tp) && self.members.contains_key(m));
        self.target = target;
        self.generation += 1;
    }

    /// Releases partitions the member no longer targets (if it has seen the
    /// current generation) and grants it free partitions it targets.
    fn settle(&mut self, member: &str, seen_generation: u32) {
        if seen_generation == self.generation {
            let target = &self.target;
            self.holder.retain(|tp, h| {
                !(h == member && target.get(tp).map(String::as_str) != Some(member))
            });
        }
        let free: Vec<TopicPartition> = self
            .target
            .iter()
            .filter(|(tp, m)| m.as_str() == member && !self.holder.contains_key(*tp))
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in free {
            self.holder.insert(tp, member.to_owned());
        }
    }

    fn view(&self, member: &str) -> GroupView {
        let partitions = self
            .holder
            .iter()
            .filter(|(tp, h)| {
                h.as_str() == member && self.target.get(*tp).map(String::as_str) == Some(member)
            })
            .map(|(tp, _)| (tp.clone(), self.committed.get(tp).copied()))
            .collect();
        let start = self
            .members
            .get(member)
            .map_or(StartFrom::Earliest, |m| m.start);
        GroupView {
            member_id: member.to_owned(),
            generation: self.generation,
            partitions,
            start,
        }
    }
}

impl Coordinator {
    pub fn new() -> Coordinator {
        Coordinator::default()
    }

    /// Adds a member (or refreshes one that rejoins with its id, if `owner`
    /// joined it) and rebalances. A new member gets `fresh_id`, which the
    /// caller makes unguessable (the state machine draws no randomness).
    #[allow(clippy::too_many_arguments)]
    pub fn join(
        &mut self,
        group: &str,
        member_id: Option<&str>,
        fresh_id: String,
        owner: Option<&str>,
        patterns: Vec<TopicPattern>,
        session_timeout_ms: u64,
        start: StartFrom,
        catalog: &Catalog,
        now_ms: i64,
    ) -> GroupView {
        let g = self.groups.entry(group.to_owned()).or_default();
        let rejoins = |id: &str| {
            g.members
                .get(id)
                .is_some_and(|m| m.owner.as_deref() == owner)
        };
        let id = match member_id {
            Some(id) if rejoins(id) => id.to_owned(),
            _ => fresh_id,
        };
        let member = Member {
            owner: owner.map(str::to_owned),
            patterns,
            session_timeout_ms,
            deadline_ms: now_ms + session_timeout_ms as i64,
            start,
        };
        g.members.insert(id.clone(), member);
        g.rebalance(catalog);
        let generation = g.generation;
        g.settle(&id, generation);
        g.view(&id)
    }

    /// Keeps a member alive and returns what it may consume now.
    pub fn heartbeat(
        &mut self,
        group: &str,
        member: &str,
        owner: Option<&str>,
        generation: u32,
        now_ms: i64,
    ) -> Result<GroupView> {
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| unknown_member(group, member))?;
        let m = g.member_of(group, member, owner)?;
        m.deadline_ms = now_ms + m.session_timeout_ms as i64;
        g.settle(member, generation);
        Ok(g.view(member))
    }

    pub fn leave(
        &mut self,
        group: &str,
        member: &str,
        owner: Option<&str>,
        catalog: &Catalog,
    ) -> Result<()> {
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| unknown_member(group, member))?;
        g.member_of(group, member, owner)?;
        g.members.remove(member);
        g.holder.retain(|_, h| h != member);
        g.rebalance(catalog);
        Ok(())
    }

    /// Removes members whose session deadline has passed; returns (group, member) pairs.
    pub fn expire(&mut self, now_ms: i64, catalog: &Catalog) -> Vec<(String, String)> {
        let mut gone = Vec::new();
        for (name, g) in &mut self.groups {
            let dead: Vec<String> = g
                .members
                .iter()
                .filter(|(_, m)| m.deadline_ms < now_ms)
                .map(|(id, _)| id.clone())
                .collect();
            if dead.is_empty() {
                continue;
            }
            for id in &dead {
                g.members.remove(id);
                g.holder.retain(|_, h| h != id);
                gone.push((name.clone(), id.clone()));
            }
            g.rebalance(catalog);
        }
        gone
    }

    /// Groups that have had no members for `retention_ms` (their committed
    /// offsets kept that long, as Kafka keeps an empty group's offsets), or
    /// that have neither members nor offsets; system groups (`spool.…`,
    /// e.g. redrive cursors) never expire. Also notes when a group became
    /// empty. Removes nothing: see [`Coordinator::remove_group`].
    pub fn empty_groups_past(&mut self, now_ms: i64, retention_ms: i64) -> Vec<String> {
        let mut out = Vec::new();
        for (name, g) in &mut self.groups {
            if !g.members.is_empty() {
                g.empty_since_ms = None;
                continue;
            }
            let since = *g.empty_since_ms.get_or_insert(now_ms);
            let system = name.starts_with(spool_types::names::SYSTEM_TOPIC_PREFIX);
            if !system && (g.committed.is_empty() || now_ms - since >= retention_ms) {
                out.push(name.clone());
            }
        }
        out
    }

    /// Whether `group` may be deleted now: it exists, is not a system
    /// group, and has no members.
    pub fn check_deletable(&self, group: &str) -> Result<()> {
        self.groups
            .get(group)
            .filter(|_| !is_system_group(group))
            .ok_or_else(|| {
                BrokerError::new(
                    ErrorCode::UnknownGroup,
                    format!("no consumer group {group:?}"),
                )
            })?;
        self.check_empty(group, "deleted")
    }

    /// Whether `group` has no members now (none exists: it has none), so
    /// its offsets may be deleted or set from outside (`done`, as in "it
    /// can be … once they left"); its members would not notice.
    pub fn check_empty(&self, group: &str, done: &str) -> Result<()> {
        match self.groups.get(group).map(|g| g.members.len()) {
            Some(n) if n > 0 => Err(BrokerError::new(
                ErrorCode::GroupNotEmpty,
                format!(
                    "group {group:?} has {n} member(s); it can be {done} once they left (or their sessions expired)"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Whether `group` has committed offsets.
    pub fn has_committed(&self, group: &str) -> bool {
        self.groups
            .get(group)
            .is_some_and(|g| !g.committed.is_empty())
    }

    /// The topics `group` has committed offsets on.
    pub fn committed_topics(&self, group: &str) -> Vec<String> {
        let mut topics: Vec<String> = self
            .groups
            .get(group)
            .map(|g| g.committed.keys().map(|(t, _)| t.clone()).collect())
            .unwrap_or_default();
        topics.dedup();
        topics
    }

    /// Forgets a group that has no members (its offsets already deleted
    /// durably by the caller).
    pub fn remove_group(&mut self, group: &str) {
        if self.groups.get(group).is_some_and(|g| g.members.is_empty()) {
            self.groups.remove(group);
        }
    }

    /// Re-plans every group after topics were created or deleted.
    pub fn topics_changed(&mut self, catalog: &Catalog) {
        for g in self.groups.values_mut() {
            if !g.members.is_empty() {
                g.rebalance(catalog);
            }
            g.committed
                .retain(|tp, _| catalog.get(&tp.0).is_some_and(|&n| tp.1 < n));
        }
    }

    /// Checks that `member` holds every partition it commits for.
    pub fn check_commit(
        &self,
        group: &str,
        member: &str,
        owner: Option<&str>,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<()> {
        let g = self
            .groups
            .get(group)
            .ok_or_else(|| unknown_member(group, member))?;
        let owned = g.members.get(member).map(|m| m.owner.as_deref());
        if owned != Some(owner) {
            return Err(unknown_member(group, member));
        }
        for (tp, offset) in offsets {
            if *offset < 0 {
                return Err(BrokerError::invalid(format!(
                    "offset {offset} for {}/{} is negative",
                    tp.0, tp.1
                )));
            }
            if g.holder.get(tp).map(String::as_str) != Some(member) {
                return Err(BrokerError::new(
                    ErrorCode::NotAssigned,
                    format!(
                        "partition {}/{} is not assigned to member {member:?} of group {group:?}",
                        tp.0, tp.1
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Records committed offsets (already persisted by the caller).
    pub fn apply_commit(&mut self, group: &str, offsets: &[(TopicPartition, i64)]) {
        let g = self.groups.entry(group.to_owned()).or_default();
        for (tp, offset) in offsets {
            g.committed.insert(tp.clone(), *offset);
        }
    }

    pub fn committed(&self, group: &str, tp: &TopicPartition) -> Option<i64> {
        self.groups
            .get(group)
            .and_then(|g| g.committed.get(tp).copied())
    }

    /// Every committed offset, for snapshots.
    pub fn all_committed(&self) -> impl Iterator<Item = (&str, &TopicPartition, i64)> {
        self.groups.iter().flat_map(|(name, g)| {
            g.committed
                .iter()
                .map(move |(tp, o)| (name.as_str(), tp, *o))
        })
    }

    /// For work-queue release: the lowest position any interested group still
    /// needs on `tp`. `None` when no group is interested (nothing may be released);
    /// `Some(None)` when an interested group has no commit yet (nothing consumed).
    pub fn low_water(&self, tp: &TopicPartition) -> Option<Option<i64>> {
        let mut low: Option<Option<i64>> = None;
        for g in self.groups.values() {
            let interested =
                g.committed.contains_key(tp) || g.members.values().any(|m| g.matches(m, &tp.0));
            if !interested {
                continue;
            }
            let pos = g.committed.get(tp).copied();
            low = Some(match (low, pos) {
                (None, p) => p,
                (Some(None), _) | (_, None) => None,
                (Some(Some(a)), Some(b)) => Some(a.min(b)),
            });
        }
        low
    }

    /// A group's generation and members, each with the partitions it holds
    /// (`None` for no such group).
    pub fn members(&self, group: &str) -> Option<(u32, Vec<MemberHolding>)> {
        let g = self.groups.get(group)?;
        let members = g
            .members
            .keys()
            .map(|id| {
                let held = g
                    .holder
                    .iter()
                    .filter(|(_, h)| *h == id)
                    .map(|(tp, _)| tp.clone())
                    .collect();
                (id.clone(), held)
            })
            .collect();
        Some((g.generation, members))
    }

    /// Names and member counts of all groups, for listings.
    pub fn describe(&self) -> Vec<(String, u32, usize)> {
        self.groups
            .iter()
            .map(|(n, g)| (n.clone(), g.generation, g.members.len()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(entries: &[(&str, u32)]) -> Catalog {
        entries.iter().map(|(n, c)| (n.to_string(), *c)).collect()
    }
    fn pats(p: &[&str]) -> Vec<TopicPattern> {
        p.iter().map(|p| TopicPattern::new(p).unwrap()).collect()
    }
    fn held(v: &GroupView) -> Vec<u32> {
        v.partitions.iter().map(|((_, p), _)| *p).collect()
    }
    /// A new member of group "g", reading `pattern` from the earliest offset.
    fn join(
        c: &mut Coordinator,
        client_id: &str,
        pattern: &str,
        session_timeout_ms: u64,
        cat: &Catalog,
        now_ms: i64,
    ) -> GroupView {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let fresh = format!("{client_id}-{n}");
        c.join(
            "g",
            None,
            fresh,
            None,
            pats(&[pattern]),
            session_timeout_ms,
            StartFrom::Earliest,
            cat,
            now_ms,
        )
    }

    #[test]
    fn partitions_move_only_after_the_old_holder_lets_go() {
        let cat = catalog(&[("t", 3)]);
        let mut c = Coordinator::new();
        let a = join(&mut c, "a", "t", 10_000, &cat, 0);
        assert_eq!(held(&a), [0, 1, 2]);
        let b = join(&mut c, "b", "t", 10_000, &cat, 1);
        // B's target partitions are still held by A: B gets none yet.
        assert!(held(&b).is_empty(), "{b:?}");
        // A heartbeats with its old generation: learns it keeps fewer.
        let a2 = c
            .heartbeat("g", &a.member_id, None, a.generation, 2)
            .unwrap();
        assert_eq!(a2.generation, b.generation);
        let a_keeps = held(&a2);
        assert!(a_keeps.len() == 1 || a_keeps.len() == 2);
        // B still can't have them: A hasn't confirmed the new generation.
        assert!(held(
            &c.heartbeat("g", &b.member_id, None, b.generation, 3)
                .unwrap()
        )
        .is_empty());
        // A may commit only what it holds.
        assert!(c
            .check_commit("g", &a.member_id, None, &[(("t".into(), a_keeps[0]), 5)])
            .is_ok());
        c.heartbeat("g", &a.member_id, None, a2.generation, 4)
            .unwrap();
        let b2 = c
            .heartbeat("g", &b.member_id, None, b.generation, 5)
            .unwrap();
        let mut all = held(&b2);
        all.extend(a_keeps);
        all.sort();
        assert_eq!(all, [0, 1, 2]);
        let moved = ("t".to_string(), held(&b2)[0]);
        assert_eq!(
            c.check_commit("g", &a.member_id, None, &[(moved, 1)])
                .unwrap_err()
                .code,
            ErrorCode::NotAssigned
        );
    }

    #[test]
    fn members_joining_one_by_one_share_partitions_evenly() {
        let cat = catalog(&[("t", 4)]);
        let mut c = Coordinator::new();
        let mut ids = Vec::new();
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            let v = join(&mut c, name, "t", 10_000, &cat, i as i64);
            ids.push(v.member_id);
        }
        // Let every hand-off finish: each member acknowledges the generation.
        let mut counts = Vec::new();
        for round in 0..3 {
            counts.clear();
            for id in &ids {
                let g = c.heartbeat("g", id, None, u32::MAX, 10).unwrap().generation;
                let v = c.heartbeat("g", id, None, g, 10 + round).unwrap();
                counts.push(held(&v).len());
            }
        }
        counts.sort();
        // A ceil(4/3) = 2 cap for every member used to leave this at [0, 2, 2].
        assert_eq!(counts, [1, 1, 2]);
    }

    #[test]
    fn expired_members_release_at_once() {
        let cat = catalog(&[("t", 2)]);
        let mut c = Coordinator::new();
        let a = join(&mut c, "a", "t", 1_000, &cat, 0);
        let b = join(&mut c, "b", "t", 1_000, &cat, 0);
        c.heartbeat("g", &a.member_id, None, a.generation, 500)
            .unwrap();
        c.heartbeat("g", &a.member_id, None, b.generation, 600)
            .unwrap();
        c.heartbeat("g", &b.member_id, None, b.generation, 600)
            .unwrap();
        // Only A keeps heartbeating; B expires and A takes everything.
        c.heartbeat("g", &a.member_id, None, b.generation, 1_500)
            .unwrap();
        let gone = c.expire(1_700, &cat);
        assert_eq!(gone, [("g".to_string(), b.member_id.clone())]);
        let v = c
            .heartbeat("g", &a.member_id, None, b.generation, 1_800)
            .unwrap();
        let v = c
            .heartbeat("g", &a.member_id, None, v.generation, 1_801)
            .unwrap();
        assert_eq!(held(&v), [0, 1]);
        assert_eq!(
            c.heartbeat("g", &b.member_id, None, 0, 1_900)
                .unwrap_err()
                .code,
            ErrorCode::UnknownMember
        );
    }

    #[test]
    fn patterns_pick_up_new_topics_and_low_water_tracks_commits() {
        let mut cat = catalog(&[("orders.eu", 1)]);
        let mut c = Coordinator::new();
        let a = join(&mut c, "a", "orders.*", 10_000, &cat, 0);
        assert_eq!(a.partitions.len(), 1);
        cat.insert("orders.us".into(), 2);
        cat.insert("other".into(), 1);
        c.topics_changed(&cat);
        let v = c
            .heartbeat("g", &a.member_id, None, a.generation, 1)
            .unwrap();
        let topics: BTreeSet<_> = v.partitions.iter().map(|((t, _), _)| t.clone()).collect();
        assert_eq!(
            topics,
            ["orders.eu".to_string(), "orders.us".to_string()]
                .into_iter()
                .collect()
        );
        let tp = ("orders.eu".to_string(), 0);
        assert_eq!(c.low_water(&tp), Some(None));
        assert_eq!(c.low_water(&("other".into(), 0)), None);
        c.apply_commit("g", &[(tp.clone(), 7)]);
        assert_eq!(c.low_water(&tp), Some(Some(7)));
        c.apply_commit("h", &[(tp.clone(), 3)]);
        assert_eq!(c.low_water(&tp), Some(Some(3)));
    }

    /// Issue 24: a member is usable only by whoever joined it. Another
    /// owner's heartbeat, commit, leave or rejoin with its id is answered as
    /// for an id nobody has, and the rejoin gets a member of its own.
    #[test]
    fn a_member_belongs_to_whoever_joined_it() {
        let cat = catalog(&[("t", 2)]);
        let mut c = Coordinator::default();
        let join_as = |c: &mut Coordinator, member: Option<&str>, fresh: &str, owner| {
            c.join(
                "g",
                member,
                fresh.into(),
                owner,
                pats(&["t"]),
                10_000,
                StartFrom::Earliest,
                &cat,
                1,
            )
        };
        let a = join_as(&mut c, None, "a-1", Some("alice"));
        let code = |r: Result<GroupView>| r.unwrap_err().code;
        let mallory = Some("mallory");
        let unknown = ErrorCode::UnknownMember;
        assert_eq!(
            code(c.heartbeat("g", &a.member_id, mallory, a.generation, 2)),
            unknown
        );
        assert_eq!(
            code(c.heartbeat("g", &a.member_id, None, a.generation, 2)),
            unknown
        );
        let commit = c.check_commit("g", &a.member_id, mallory, &[(("t".into(), 0), 1)]);
        assert_eq!(commit.unwrap_err().code, unknown);
        assert_eq!(
            c.leave("g", &a.member_id, mallory, &cat).unwrap_err().code,
            unknown
        );
        let m = join_as(&mut c, Some(&a.member_id), "m-1", mallory);
        assert_eq!(m.member_id, "m-1", "a member of its own, not alice's");
        // Alice's member is still hers.
        let again = c.heartbeat("g", &a.member_id, Some("alice"), a.generation, 3);
        assert!(again.is_ok());
        let rejoined = join_as(&mut c, Some(&a.member_id), "a-2", Some("alice"));
        assert_eq!(rejoined.member_id, a.member_id);
        c.leave("g", &a.member_id, Some("alice"), &cat).unwrap();
    }
}
