//! Committed offsets in a log of their own, as Kafka keeps
//! `__consumer_offsets` apart from its metadata. A commit is written under
//! a short lock and made durable by group commit: concurrent commits, of any
//! groups, share one fdatasync, and none waits behind the metadata lock or
//! another commit's fdatasync. The server hands that wait to the broker's
//! `Syncer` ([`OffsetStore::write_commit`]), as it does for produces, so a
//! commit parks no thread. Commits become visible (to `durable_commits`'
//! caller, the coordinator) only once durable, and in log order, whichever
//! fdatasync made them so. The log is replayed at open; when it has
//! grown, a snapshot record of every latest offset is written and the log's
//! start moves past the records before it.
//!
//! Records are JSON documents, one per commit ([`OffsetRecord`]); see
//! `docs/storage-format.md`.

use crate::error::{BrokerError, Result};
use crate::group::TopicPartition;
use crate::records::walk_json;
use serde::{Deserialize, Serialize};
use spool_batch::{BatchBuilder, NewRecord};
use spool_log::{Log, LogConfig, RecoveryReport};
use spool_types::ErrorCode;
use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// Records after the last snapshot before a new snapshot is written.
pub const OFFSETS_SNAPSHOT_EVERY_RECORDS: u64 = 50_000;

/// Segment size of the offsets log: small, so snapshots free space soon.
pub const OFFSETS_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

/// The latest committed offset of every group on every partition.
pub type Committed = BTreeMap<String, BTreeMap<TopicPartition, i64>>;

/// One group's offsets as a record lists them: (topic, partition, offset).
pub type GroupOffsets = Vec<(String, u32, i64)>;

/// A commit written and not yet seen durable: its group and offsets, and
/// the offset after its record (durable once the log is durable to there).
pub type WrittenCommit = (i64, String, Vec<(TopicPartition, i64)>);

/// A commit written to the offsets log but perhaps not yet durable: sync
/// `log` to `next_offset` (with the broker's `Syncer`), then take the
/// durable commits with [`OffsetStore::durable_commits`].
pub struct UnsyncedCommit {
    pub log: Arc<Log>,
    pub next_offset: i64,
}

/// One record of the offsets log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum OffsetRecord {
    /// A group's commit: (topic, partition, next offset to consume).
    Committed {
        group: String,
        offsets: GroupOffsets,
    },
    /// A topic was deleted: every offset on it is forgotten (a topic
    /// created again under the name starts with none).
    TopicDeleted { topic: String },
    /// Groups were deleted (by a client, or empty for too long): their
    /// offsets are forgotten.
    GroupsDeleted { groups: Vec<String> },
    /// Every latest offset; records before it are no longer needed.
    Snapshot {
        offsets: Vec<(String, GroupOffsets)>,
    },
}

impl OffsetRecord {
    fn apply(self, committed: &mut Committed) {
        match self {
            OffsetRecord::Committed { group, offsets } => {
                let g = committed.entry(group).or_default();
                for (topic, partition, offset) in offsets {
                    g.insert((topic, partition), offset);
                }
            }
            OffsetRecord::TopicDeleted { topic } => {
                for g in committed.values_mut() {
                    g.retain(|(t, _), _| *t != topic);
                }
                committed.retain(|_, g| !g.is_empty());
            }
            OffsetRecord::GroupsDeleted { groups } => {
                for group in groups {
                    committed.remove(&group);
                }
            }
            OffsetRecord::Snapshot { offsets } => {
                committed.clear();
                for (group, offsets) in offsets {
                    OffsetRecord::Committed { group, offsets }.apply(committed);
                }
            }
        }
    }
}

/// What the store keeps in memory, in log order: changed only by whoever
/// holds the lock and has just written the matching record.
struct State {
    committed: Committed,
    records_since_snapshot: u64,
    /// [`OFFSETS_SNAPSHOT_EVERY_RECORDS`], smaller in tests.
    snapshot_every_records: u64,
    /// Commits written and not yet taken by `durable_commits`, in log order.
    unseen: VecDeque<WrittenCommit>,
}

/// The offsets log.
pub struct OffsetStore {
    log: Arc<Log>,
    state: Mutex<State>,
    /// Held while durable commits are taken and shown, so that two callers
    /// finishing at once show them in log order.
    showing: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl OffsetStore {
    /// Opens (or creates) the offsets log in `dir` and replays it over
    /// `earlier` (offsets a data directory kept in its metadata log before
    /// offsets had a log of their own). Answers the store and every latest
    /// offset.
    pub fn open(
        dir: &Path,
        earlier: Committed,
    ) -> Result<(OffsetStore, Committed, RecoveryReport)> {
        let config = LogConfig {
            segment_bytes: OFFSETS_SEGMENT_BYTES,
            ..LogConfig::default()
        };
        let (log, report) = Log::open(dir, config)?;
        let mut committed = earlier;
        let records = walk_json(&log, "offsets record", |record: OffsetRecord| {
            record.apply(&mut committed)
        })?;
        let state = State {
            committed: committed.clone(),
            records_since_snapshot: records,
            snapshot_every_records: OFFSETS_SNAPSHOT_EVERY_RECORDS,
            unseen: VecDeque::new(),
        };
        let store = OffsetStore {
            log: Arc::new(log),
            state: Mutex::new(state),
            showing: Mutex::new(()),
        };
        Ok((store, committed, report))
    }

    /// Records a group's commit; returns once it is durable (then
    /// [`OffsetStore::durable_commits`] has it). The write is made under
    /// the store's lock (microseconds), the fdatasync outside it, shared
    /// with every commit written meanwhile.
    pub fn commit(
        &self,
        group: &str,
        offsets: &[(TopicPartition, i64)],
        now_ms: i64,
    ) -> Result<()> {
        let unsynced = self.write_commit(group, offsets, now_ms)?;
        unsynced.log.sync_to(unsynced.next_offset)?;
        Ok(())
    }

    /// Writes a group's commit without waiting for it to be durable.
    pub fn write_commit(
        &self,
        group: &str,
        offsets: &[(TopicPartition, i64)],
        now_ms: i64,
    ) -> Result<UnsyncedCommit> {
        let record = OffsetRecord::Committed {
            group: group.to_owned(),
            offsets: offsets
                .iter()
                .map(|((t, p), o)| (t.clone(), *p, *o))
                .collect(),
        };
        let batch = encode(&record, now_ms)?;
        let mut state = lock(&self.state);
        let (appended, _) = self.log.write(&batch, now_ms)?;
        record.apply(&mut state.committed);
        state.records_since_snapshot += 1;
        let next_offset = appended.next_offset();
        state
            .unseen
            .push_back((next_offset, group.to_owned(), offsets.to_vec()));
        Ok(UnsyncedCommit {
            log: Arc::clone(&self.log),
            next_offset,
        })
    }

    /// Shows the commits that have become durable since the last call, in
    /// log order, to `show` (called once per commit, under a lock of this
    /// store's own: `show` may take other locks, but must not call back).
    pub fn durable_commits(&self, mut show: impl FnMut(&str, &[(TopicPartition, i64)])) {
        let _showing = lock(&self.showing);
        let durable: Vec<WrittenCommit> = {
            let mut state = lock(&self.state);
            let n = state
                .unseen
                .iter()
                .take_while(|(next, _, _)| self.log.is_durable_to(*next))
                .count();
            state.unseen.drain(..n).collect()
        };
        for (_, group, offsets) in &durable {
            show(group, offsets);
        }
    }

    /// Forgets every offset on `topic`, durably.
    pub fn topic_deleted(&self, topic: &str, now_ms: i64) -> Result<()> {
        let record = OffsetRecord::TopicDeleted {
            topic: topic.to_owned(),
        };
        self.write_durably(record, now_ms)
    }

    /// Forgets every offset of `groups`, durably.
    pub fn groups_deleted(&self, groups: &[String], now_ms: i64) -> Result<()> {
        let record = OffsetRecord::GroupsDeleted {
            groups: groups.to_vec(),
        };
        self.write_durably(record, now_ms)
    }

    fn write_durably(&self, record: OffsetRecord, now_ms: i64) -> Result<()> {
        let batch = encode(&record, now_ms)?;
        let next = {
            let mut state = lock(&self.state);
            let (appended, _) = self.log.write(&batch, now_ms)?;
            record.apply(&mut state.committed);
            state.records_since_snapshot += 1;
            appended.next_offset()
        };
        self.log.sync_to(next)?;
        Ok(())
    }

    /// Writes a snapshot when enough records have piled up since the last,
    /// then lets the log drop what came before it.
    pub fn snapshot_if_due(&self, now_ms: i64) -> Result<()> {
        let next = {
            let mut state = lock(&self.state);
            if state.records_since_snapshot < state.snapshot_every_records {
                return Ok(());
            }
            let offsets = state
                .committed
                .iter()
                .map(|(group, g)| {
                    let offsets = g.iter().map(|((t, p), o)| (t.clone(), *p, *o)).collect();
                    (group.clone(), offsets)
                })
                .collect();
            let batch = encode(&OffsetRecord::Snapshot { offsets }, now_ms)?;
            let (appended, _) = self.log.write(&batch, now_ms)?;
            state.records_since_snapshot = 0;
            appended
        };
        self.log.sync_to(next.next_offset())?;
        // Only once the snapshot is durable may what it replaces go.
        self.log.advance_start_offset(next.base_offset)?;
        Ok(())
    }

    /// Makes every written commit durable (used at shutdown).
    pub fn flush(&self) -> Result<()> {
        self.log.flush()?;
        Ok(())
    }
}

fn encode(record: &OffsetRecord, now_ms: i64) -> Result<Vec<u8>> {
    let value = serde_json::to_vec(record)
        .map_err(|e| BrokerError::new(ErrorCode::Internal, e.to_string()))?;
    let mut b = BatchBuilder::new();
    b.push(&NewRecord::value(value, now_ms))?;
    Ok(b.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: u32) -> TopicPartition {
        (t.to_owned(), p)
    }

    #[test]
    fn commits_survive_a_reopen_and_deleted_topics_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, committed, _) = OffsetStore::open(dir.path(), Committed::new()).unwrap();
            assert!(committed.is_empty());
            store
                .commit("g", &[(tp("a", 0), 5), (tp("b", 1), 7)], 1)
                .unwrap();
            store.commit("g", &[(tp("a", 0), 9)], 2).unwrap();
            store.commit("h", &[(tp("b", 0), 3)], 3).unwrap();
            store.topic_deleted("b", 4).unwrap();
        }
        let (_, committed, report) = OffsetStore::open(dir.path(), Committed::new()).unwrap();
        assert!(report.is_clean(), "{report}");
        assert_eq!(committed.len(), 1, "{committed:?}");
        assert_eq!(committed["g"].get(&tp("a", 0)), Some(&9));
        assert_eq!(committed["g"].get(&tp("b", 1)), None);
    }

    /// Commits are shown only once durable, and in log order even when the
    /// fdatasync that made a later one durable is seen first (as when a
    /// later commit's sync finds everything already synced and completes
    /// at once, before an earlier one's completion has run).
    #[test]
    fn commits_are_shown_once_durable_in_log_order() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _, _) = OffsetStore::open(dir.path(), Committed::new()).unwrap();
        let shown = |store: &OffsetStore| {
            let mut seen = Vec::new();
            store.durable_commits(|g, offsets| seen.push((g.to_owned(), offsets.to_vec())));
            seen
        };
        let first = store.write_commit("g", &[(tp("a", 0), 5)], 1).unwrap();
        let second = store.write_commit("g", &[(tp("a", 0), 7)], 2).unwrap();
        assert!(shown(&store).is_empty(), "nothing is durable yet");
        second.log.sync_to(second.next_offset).unwrap();
        assert_eq!(
            shown(&store),
            [
                ("g".to_owned(), vec![(tp("a", 0), 5)]),
                ("g".to_owned(), vec![(tp("a", 0), 7)]),
            ]
        );
        // The earlier commit's own completion comes late: nothing again.
        first.log.sync_to(first.next_offset).unwrap();
        assert!(shown(&store).is_empty());
    }

    #[test]
    fn a_snapshot_keeps_every_latest_offset_and_drops_older_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut earlier = Committed::new();
        earlier
            .entry("old".into())
            .or_default()
            .insert(tp("a", 0), 1);
        let commits = 20i64;
        {
            let (store, _, _) = OffsetStore::open(dir.path(), earlier.clone()).unwrap();
            lock(&store.state).snapshot_every_records = 10;
            for i in 0..commits {
                store
                    .commit("g", &[(tp("a", (i % 3) as u32), i)], i)
                    .unwrap();
            }
            store.snapshot_if_due(99).unwrap();
            assert_eq!(lock(&store.state).records_since_snapshot, 0);
            assert_eq!(
                store.log.stats().start_offset,
                commits,
                "older records dropped"
            );
            store.commit("g", &[(tp("a", 0), 123_456)], 100).unwrap();
        }
        // Reopened without the earlier offsets: the snapshot carries them.
        let (_, committed, _) = OffsetStore::open(dir.path(), Committed::new()).unwrap();
        assert_eq!(committed["old"].get(&tp("a", 0)), Some(&1));
        assert_eq!(committed["g"].get(&tp("a", 0)), Some(&123_456));
        assert_eq!(committed["g"].get(&tp("a", 1)), Some(&19));
        assert_eq!(committed["g"].get(&tp("a", 2)), Some(&17));
    }
}
