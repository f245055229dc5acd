//! Consumer groups: join, heartbeat, leave, commit and committed offsets,
//! and lag for metrics.

use super::*;
use crate::error::{name_error, BrokerError, Result};
use crate::group::{
    is_system_group, Catalog, Coordinator, GroupView, MemberHolding, StartFrom, TopicPartition,
};
use crate::offsets::OffsetStore;
use spool_types::limits::{CLIENT_ID_LEN_MAX, SUBSCRIPTION_TOPICS_MAX};
use spool_types::TopicPattern;

/// A member's current assignment with resolved start offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub member_id: String,
    pub generation: u32,
    pub partitions: Vec<(String, u32, i64)>,
}

pub(super) fn check_group_name(group: &str) -> Result<()> {
    spool_types::check_group_name(group)
        .map_err(|e| BrokerError::invalid(format!("group name {e}")))
}

/// One consumer group's position on one partition, for metrics and
/// descriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLag {
    pub group: String,
    pub topic: String,
    pub partition: u32,
    pub committed: i64,
    /// The partition's end offset when the lag was taken.
    pub end_offset: i64,
    pub lag: u64,
}

impl OffsetReset {
    /// Parses the spelling the CLI and the HTTP API share: `earliest`,
    /// `latest`, an offset (digits), a time as RFC 3339
    /// (`2024-05-01T12:00:00Z`) or `@` and ms since the Unix epoch
    /// (`@1714564800000`, like GNU `date`'s `@seconds`).
    pub fn parse(s: &str) -> Result<OffsetReset> {
        let bad = || {
            BrokerError::invalid(format!(
                "reset to {s:?}: use earliest, latest, an offset, an RFC 3339 time or @MS (ms since the Unix epoch)"
            ))
        };
        Ok(match s {
            "earliest" => OffsetReset::Earliest,
            "latest" => OffsetReset::Latest,
            _ if s.bytes().all(|b| b.is_ascii_digit()) => {
                OffsetReset::Offset(s.parse().map_err(|_| bad())?)
            }
            _ => match s.strip_prefix('@') {
                Some(ms) => OffsetReset::Timestamp(ms.parse().map_err(|_| bad())?),
                None => {
                    let t: jiff::Timestamp = s.parse().map_err(|_| bad())?;
                    OffsetReset::Timestamp(t.as_millisecond())
                }
            },
        })
    }
}

/// A consumer group as described: its members with the partitions each
/// holds, and its committed offsets with their lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub group: String,
    pub generation: u32,
    pub members: Vec<MemberHolding>,
    pub partitions: Vec<GroupLag>,
}

/// Where [`Broker::reset_group_offsets`] moves a group on each partition
/// of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// The log start.
    Earliest,
    /// The log end: only messages written from now on.
    Latest,
    /// This offset, clamped into each partition's range.
    Offset(i64),
    /// The first stored batch with a message at or after this time (ms
    /// since the Unix epoch); the end where there is none.
    Timestamp(i64),
}

/// How long an empty consumer group keeps its committed offsets before it
/// is deleted (7 days, Kafka's `offsets.retention.minutes` default): a
/// consumer fleet down for a weekend resumes where it was, and groups
/// nobody uses any more do not pile up (in memory and in `/metrics`).
pub const EMPTY_GROUP_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

/// Consumer groups: the coordinator (members, generations, assignments,
/// committed offsets in memory) and the offsets log that makes commits
/// durable. A commit is durable in the log before the coordinator shows it.
pub(super) struct Groups {
    coordinator: Arc<Mutex<Coordinator>>,
    offsets: Arc<OffsetStore>,
}

/// What a commit's caller is told once it is durable (or cannot be).
pub type CommitDone = Box<dyn FnOnce(Result<()>) + Send>;

impl Groups {
    pub(super) fn new(coordinator: Coordinator, offsets: OffsetStore) -> Groups {
        Groups {
            coordinator: Arc::new(Mutex::new(coordinator)),
            offsets: Arc::new(offsets),
        }
    }

    /// The coordinator, for one decision (held briefly, never across I/O).
    pub(super) fn coordinator(&self) -> MutexGuard<'_, Coordinator> {
        lock(&self.coordinator)
    }

    /// Makes a commit durable in the offsets log, then visible. Commits do
    /// not take the metadata lock, and concurrent ones share an fdatasync.
    pub(super) fn commit(
        &self,
        group: &str,
        offsets: &[(TopicPartition, i64)],
        now_ms: i64,
    ) -> Result<()> {
        self.offsets.commit(group, offsets, now_ms)?;
        show_durable(&self.offsets, &self.coordinator);
        Ok(())
    }

    /// [`Groups::commit`] without blocking: the fdatasync is waited for by
    /// `syncer`'s threads (shared with every produce and ack), which then
    /// show the commit and call `done`.
    pub(super) fn commit_then(
        &self,
        group: &str,
        offsets: &[(TopicPartition, i64)],
        now_ms: i64,
        syncer: &Syncer,
        done: CommitDone,
    ) {
        let unsynced = match self.offsets.write_commit(group, offsets, now_ms) {
            Ok(unsynced) => unsynced,
            Err(e) => return done(Err(e)),
        };
        let (store, coordinator) = (Arc::clone(&self.offsets), Arc::clone(&self.coordinator));
        syncer.sync(
            &unsynced.log,
            unsynced.next_offset,
            Box::new(move |r| {
                if r.is_ok() {
                    show_durable(&store, &coordinator);
                }
                done(r.map_err(BrokerError::from));
            }),
        );
    }

    /// The committed offset of `group` on a partition.
    pub(super) fn committed(&self, group: &str, tp: &TopicPartition) -> Option<i64> {
        self.coordinator().committed(group, tp)
    }

    /// The topic set changed: assignments follow.
    pub(super) fn topics_changed(&self, catalog: &Catalog) {
        self.coordinator().topics_changed(catalog);
    }

    /// A deleted topic's committed offsets go (a topic created again under
    /// its name starts with none), and assignments follow.
    pub(super) fn topic_deleted(&self, topic: &str, catalog: &Catalog, now_ms: i64) -> Result<()> {
        let deleted = self.offsets.topic_deleted(topic, now_ms);
        self.topics_changed(catalog);
        deleted
    }

    pub(super) fn snapshot_if_due(&self, now_ms: i64) -> Result<()> {
        self.offsets.snapshot_if_due(now_ms)
    }

    /// Deletes groups empty for [`EMPTY_GROUP_RETENTION_MS`] (or empty with
    /// no offsets): their offsets durably first, then the groups. Held
    /// under the coordinator's lock so nobody joins in between. Answers
    /// the groups deleted.
    pub(super) fn expire_empty(&self, now_ms: i64) -> Result<Vec<String>> {
        let mut c = self.coordinator();
        let gone = c.empty_groups_past(now_ms, EMPTY_GROUP_RETENTION_MS);
        let with_offsets: Vec<String> = gone
            .iter()
            .filter(|g| c.has_committed(g))
            .cloned()
            .collect();
        if !with_offsets.is_empty() {
            self.offsets.groups_deleted(&with_offsets, now_ms)?;
        }
        for g in &gone {
            c.remove_group(g);
        }
        Ok(gone)
    }

    /// Deletes a group without members, with its committed offsets.
    pub(super) fn delete(&self, group: &str, now_ms: i64) -> Result<()> {
        let mut c = self.coordinator();
        c.check_deletable(group)?;
        if c.has_committed(group) {
            self.offsets.groups_deleted(&[group.to_owned()], now_ms)?;
        }
        c.remove_group(group);
        Ok(())
    }

    /// Sets the committed offsets of a group without members (durably
    /// first), under the coordinator's lock so nobody joins in between.
    pub(super) fn reset(
        &self,
        group: &str,
        offsets: &[(TopicPartition, i64)],
        now_ms: i64,
    ) -> Result<()> {
        let mut c = self.coordinator();
        c.check_empty(group, "reset")?;
        self.offsets.commit(group, offsets, now_ms)?;
        c.apply_commit(group, offsets);
        Ok(())
    }

    pub(super) fn flush(&self) -> Result<()> {
        self.offsets.flush()
    }
}

/// Shows the coordinator every commit that has become durable, in log order.
fn show_durable(store: &OffsetStore, coordinator: &Mutex<Coordinator>) {
    store.durable_commits(|group, offsets| lock(coordinator).apply_commit(group, offsets));
}

impl Broker {
    // ---- consumer groups ----------------------------------------------------

    pub fn parse_patterns(topics: &[String]) -> Result<Vec<TopicPattern>> {
        if topics.is_empty() || topics.len() > SUBSCRIPTION_TOPICS_MAX {
            return Err(BrokerError::invalid(format!(
                "name 1 to {SUBSCRIPTION_TOPICS_MAX} topics or patterns to subscribe to"
            )));
        }
        topics
            .iter()
            .map(|t| TopicPattern::new(t).map_err(|e| name_error("topic pattern", t, e)))
            .collect()
    }

    /// Joins `group` as `owner` (the authenticated name; none without
    /// authentication). A new member's id is the client id and 122 random
    /// bits, so nobody guesses another's; only `owner` may use it.
    #[allow(clippy::too_many_arguments)]
    pub fn join_group(
        &self,
        group: &str,
        member_id: Option<&str>,
        client_id: &str,
        owner: Option<&str>,
        topics: &[String],
        session_timeout_ms: u64,
        start: StartFrom,
        now_ms: i64,
    ) -> Result<Assignment> {
        check_group_name(group)?;
        if client_id.len() > CLIENT_ID_LEN_MAX {
            return Err(BrokerError::invalid("client id is too long"));
        }
        let patterns = Self::parse_patterns(topics)?;
        let session_timeout_ms = session_timeout_ms.clamp(1_000, 300_000);
        let catalog = self.topics.catalog();
        let fresh_id = format!("{client_id}-{}", uuid::Uuid::new_v4().simple());
        let view = self.groups.coordinator().join(
            group,
            member_id,
            fresh_id,
            owner,
            patterns,
            session_timeout_ms,
            start,
            &catalog,
            now_ms,
        );
        self.resolve(group, view, now_ms)
    }

    pub fn heartbeat(
        &self,
        group: &str,
        member_id: &str,
        owner: Option<&str>,
        generation: u32,
        now_ms: i64,
    ) -> Result<Assignment> {
        let view = self
            .groups
            .coordinator()
            .heartbeat(group, member_id, owner, generation, now_ms)?;
        self.resolve(group, view, now_ms)
    }

    pub fn leave_group(&self, group: &str, member_id: &str, owner: Option<&str>) -> Result<()> {
        let catalog = self.topics.catalog();
        self.groups
            .coordinator()
            .leave(group, member_id, owner, &catalog)
    }

    /// Turns a view into offsets: the committed offset (clamped into the
    /// log's range), or the start position the member asked for, which is
    /// then committed so later owners continue from the same place.
    pub(super) fn resolve(&self, group: &str, view: GroupView, now_ms: i64) -> Result<Assignment> {
        let mut partitions = Vec::with_capacity(view.partitions.len());
        let mut initial = Vec::new();
        for ((topic, partition), committed) in view.partitions {
            let Ok((start, end)) = self.offsets(&topic, partition) else {
                continue; // deleted meanwhile
            };
            let offset = match committed {
                Some(o) => o.clamp(start, end.max(start)),
                None => {
                    let o = match view.start {
                        StartFrom::Earliest => start,
                        StartFrom::Latest => end,
                    };
                    initial.push(((topic.clone(), partition), o));
                    o
                }
            };
            partitions.push((topic, partition, offset));
        }
        if !initial.is_empty() {
            self.groups.commit(group, &initial, now_ms)?;
        }
        Ok(Assignment {
            member_id: view.member_id,
            generation: view.generation,
            partitions,
        })
    }

    /// Commits offsets for partitions the member holds; durable on return.
    /// Blocking: [`Broker::commit_then`] is the same without a thread
    /// waiting.
    pub fn commit(
        &self,
        group: &str,
        member_id: &str,
        owner: Option<&str>,
        offsets: &[(String, u32, i64)],
        now_ms: i64,
    ) -> Result<()> {
        let (tx, rx) = std::sync::mpsc::channel();
        let done: CommitDone = Box::new(move |r| {
            let _ = tx.send(r);
        });
        self.commit_then(group, member_id, owner, offsets, now_ms, done);
        rx.recv().unwrap_or_else(|_| {
            Err(BrokerError::new(
                ErrorCode::Internal,
                "the commit was dropped before it was synced",
            ))
        })
    }

    /// Commits offsets for partitions the member holds; calls `done` once
    /// they are durable (from a sync thread: `done` must be short), or with
    /// the error that refused or failed them.
    pub fn commit_then(
        &self,
        group: &str,
        member_id: &str,
        owner: Option<&str>,
        offsets: &[(String, u32, i64)],
        now_ms: i64,
        done: CommitDone,
    ) {
        let offsets: Vec<(TopicPartition, i64)> = offsets
            .iter()
            .map(|(t, p, o)| ((t.clone(), *p), *o))
            .collect();
        let checked = self
            .groups
            .coordinator()
            .check_commit(group, member_id, owner, &offsets);
        match checked {
            Ok(()) => self
                .groups
                .commit_then(group, &offsets, now_ms, &self.syncer, done),
            Err(e) => done(Err(e)),
        }
    }

    /// Deletes a consumer group that has no members, and its committed
    /// offsets (`GROUP_NOT_EMPTY` while it has members, `UNKNOWN_GROUP` for
    /// none or a system group).
    pub fn delete_group(&self, group: &str, now_ms: i64) -> Result<()> {
        self.groups.delete(group, now_ms)
    }

    /// The topics a group has committed offsets on (who may delete it).
    pub fn group_topics(&self, group: &str) -> Vec<String> {
        self.groups.coordinator().committed_topics(group)
    }

    pub fn committed(&self, group: &str, partitions: &[(String, u32)]) -> Vec<Option<i64>> {
        let coordinator = self.groups.coordinator();
        partitions
            .iter()
            .map(|tp| coordinator.committed(group, tp))
            .collect()
    }

    /// Lag (end offset − committed offset) of every group on every partition it committed.
    pub fn group_lags(&self) -> Vec<GroupLag> {
        let committed: Vec<(String, TopicPartition, i64)> = self
            .groups
            .coordinator()
            .all_committed()
            .filter(|(g, _, _)| !is_system_group(g))
            .map(|(g, tp, o)| (g.to_owned(), tp.clone(), o))
            .collect();
        self.lags(committed)
    }

    /// The lag of each committed offset (partitions deleted meanwhile left out).
    fn lags(&self, committed: Vec<(String, TopicPartition, i64)>) -> Vec<GroupLag> {
        committed
            .into_iter()
            .filter_map(|(group, (topic, partition), committed)| {
                let (_, end) = self.offsets(&topic, partition).ok()?;
                Some(GroupLag {
                    group,
                    topic,
                    partition,
                    committed,
                    end_offset: end,
                    lag: (end - committed).max(0) as u64,
                })
            })
            .collect()
    }

    /// Every consumer group but the server's own, described, by name.
    pub fn list_groups(&self) -> Vec<GroupInfo> {
        let names: Vec<String> = self
            .groups
            .coordinator()
            .describe()
            .into_iter()
            .map(|(name, _, _)| name)
            .filter(|name| !is_system_group(name))
            .collect();
        names
            .iter()
            .filter_map(|g| self.describe_group(g).ok())
            .collect()
    }

    /// A consumer group's members and committed offsets with their lag
    /// (`UNKNOWN_GROUP` for none, or a system group).
    pub fn describe_group(&self, group: &str) -> Result<GroupInfo> {
        let (generation, members, committed) = {
            let c = self.groups.coordinator();
            let found = c.members(group).filter(|_| !is_system_group(group));
            let Some((generation, members)) = found else {
                return Err(BrokerError::new(
                    ErrorCode::UnknownGroup,
                    format!("no consumer group {group:?}"),
                ));
            };
            let committed: Vec<(String, TopicPartition, i64)> = c
                .all_committed()
                .filter(|(g, _, _)| *g == group)
                .map(|(g, tp, o)| (g.to_owned(), tp.clone(), o))
                .collect();
            (generation, members, committed)
        };
        Ok(GroupInfo {
            group: group.to_owned(),
            generation,
            members,
            partitions: self.lags(committed),
        })
    }

    /// Moves a group without members to `to` on every partition of
    /// `topic` (`GROUP_NOT_EMPTY` while it has members); a group that does
    /// not exist yet is created with these offsets. Answers the new
    /// offsets, by partition.
    pub fn reset_group_offsets(
        &self,
        group: &str,
        topic: &str,
        to: OffsetReset,
        now_ms: i64,
    ) -> Result<Vec<(u32, i64)>> {
        check_group_name(group)?;
        if is_system_group(group) {
            return Err(BrokerError::new(
                ErrorCode::UnknownGroup,
                format!("{group:?} is the server's own group; its offsets are not reset"),
            ));
        }
        // Refused early, before any log is read; checked again under the
        // coordinator's lock.
        self.groups.coordinator().check_empty(group, "reset")?;
        let t = self.topic(topic)?;
        let mut offsets = Vec::with_capacity(t.partitions.len());
        for (p, log) in t.partitions.iter().enumerate() {
            let s = log.stats();
            let offset = match to {
                OffsetReset::Earliest => s.start_offset,
                OffsetReset::Latest => s.end_offset,
                OffsetReset::Offset(o) => o.clamp(s.start_offset, s.end_offset.max(s.start_offset)),
                OffsetReset::Timestamp(ms) => log.offset_for_timestamp(ms)?.unwrap_or(s.end_offset),
            };
            offsets.push(((topic.to_owned(), p as u32), offset));
        }
        self.groups.reset(group, &offsets, now_ms)?;
        Ok(offsets.into_iter().map(|((_, p), o)| (p, o)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::OffsetReset;

    #[test]
    fn reset_targets_parse_as_the_cli_and_http_spell_them() {
        assert_eq!(
            OffsetReset::parse("earliest").unwrap(),
            OffsetReset::Earliest
        );
        assert_eq!(OffsetReset::parse("latest").unwrap(), OffsetReset::Latest);
        assert_eq!(OffsetReset::parse("42").unwrap(), OffsetReset::Offset(42));
        assert_eq!(
            OffsetReset::parse("@1714564800000").unwrap(),
            OffsetReset::Timestamp(1_714_564_800_000)
        );
        assert_eq!(
            OffsetReset::parse("2024-05-01T12:00:00Z").unwrap(),
            OffsetReset::Timestamp(1_714_564_800_000)
        );
        for bad in ["", "soon", "@x", "-1", "99999999999999999999"] {
            let e = OffsetReset::parse(bad).unwrap_err();
            assert_eq!(e.code, spool_types::ErrorCode::InvalidRequest, "{bad:?}");
        }
    }
}
