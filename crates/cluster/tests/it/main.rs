//! Partition groups on real openraft over Spool's entry-mode log.

mod faults;
mod meta;
mod nodes;
mod router;
mod sim;
mod tcp;

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{Config, StorageError};
use router::{PartitionGroup, Router, RouterNet};
use spool_batch::{BatchBuilder, BatchHeader, NewRecord};
use spool_cluster::partition::{PartitionLogStore, PartitionStateMachine};
use spool_cluster::raft_files::RaftFiles;
use spool_cluster::types::{BatchData, NodeAddr, NodeId, PartitionRaft};
use spool_log::{Durability, Log, LogConfig, Syncer};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn entry_log_config() -> LogConfig {
    LogConfig {
        durability: Durability::Always,
        entry_mode: true,
        segment_bytes: 64 << 10,
        ..LogConfig::default()
    }
}

fn open_group_storage(
    dir: &Path,
    syncer: &Arc<Syncer>,
) -> (PartitionLogStore, PartitionStateMachine) {
    let (log, _report) = Log::open(dir, entry_log_config()).expect("open entry-mode log");
    let log = Arc::new(log);
    let files = RaftFiles::open(dir).expect("raft files");
    let machine = PartitionStateMachine::open(log.clone(), dir).expect("state machine");
    let store = PartitionLogStore::new(log, files, syncer.clone(), now_ms);
    (store, machine)
}

struct FreshStore {
    syncer: Arc<Syncer>,
}

impl StoreBuilder<PartitionRaft, PartitionLogStore, PartitionStateMachine, TempDir> for FreshStore {
    async fn build(
        &self,
    ) -> Result<(TempDir, PartitionLogStore, PartitionStateMachine), StorageError<PartitionRaft>>
    {
        let dir = TempDir::new().expect("temp dir");
        let (store, machine) = open_group_storage(dir.path(), &self.syncer);
        Ok((dir, store, machine))
    }
}

/// openraft's own storage conformance suite, against the entry-mode log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_entry_mode_log_passes_openrafts_storage_suite() {
    let syncer = Arc::new(Syncer::new(2).expect("syncer"));
    Suite::test_all(FreshStore { syncer })
        .await
        .expect("storage suite");
}

fn test_config() -> Arc<Config> {
    let config = Config {
        heartbeat_interval: 50,
        election_timeout_min: 300,
        election_timeout_max: 600,
        snapshot_policy: openraft::SnapshotPolicy::Never,
        ..Config::default()
    };
    Arc::new(config.validate().expect("valid raft config"))
}

async fn start_node(
    id: NodeId,
    dir: &Path,
    router: &Arc<Router>,
    syncer: &Arc<Syncer>,
) -> (PartitionGroup, Arc<Log>) {
    let (store, machine) = open_group_storage(dir, syncer);
    let log = store.log().clone();
    let net = RouterNet {
        router: router.clone(),
        from: id,
    };
    let raft = PartitionGroup::new(id, test_config(), net, store, machine)
        .await
        .expect("raft starts");
    router.add(id, raft.clone());
    (raft, log)
}

fn batch(values: &[&str]) -> BatchData {
    let mut builder = BatchBuilder::new();
    for value in values {
        builder
            .push(&NewRecord {
                key: None,
                value: Some(value.as_bytes().to_vec()),
                headers: vec![],
                timestamp_ms: now_ms(),
            })
            .expect("record fits");
    }
    BatchData(builder.finish().expect("batch").into())
}

async fn wait_for_leader(rafts: &[PartitionGroup]) -> NodeId {
    for _ in 0..100 {
        for raft in rafts {
            if let Some(leader) = raft.current_leader().await {
                return leader;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no leader elected");
}

struct Group {
    _dirs: Vec<TempDir>,
    router: Arc<Router>,
    rafts: Vec<PartitionGroup>,
    logs: Vec<Arc<Log>>,
}

/// Three replicas of one partition, initialised, with a leader.
async fn three_replicas() -> Group {
    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new().unwrap()).collect();
    let router = Arc::new(Router::default());
    let syncer = Arc::new(Syncer::new(2).unwrap());
    let mut rafts = Vec::new();
    let mut logs = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let (raft, log) = start_node(i as NodeId + 1, dir.path(), &router, &syncer).await;
        rafts.push(raft);
        logs.push(log);
    }
    let members: BTreeMap<NodeId, NodeAddr> = (1..=3).map(|id| (id, NodeAddr::default())).collect();
    rafts[0].initialize(members).await.expect("initialize");
    wait_for_leader(&rafts).await;
    Group {
        _dirs: dirs,
        router,
        rafts,
        logs,
    }
}

/// The values of the stored records of `log`, in offset order, with their
/// offsets (control entries skipped).
pub(crate) fn stored_values(log: &Log) -> Vec<(i64, String)> {
    let bytes = crate::read_everything(log);
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let header = BatchHeader::parse_with_control(&bytes[pos..]).expect("stored batch");
        let batch = &bytes[pos..pos + header.total_len()];
        if !header.is_control() {
            for (i, record) in spool_batch::records(batch, &header).enumerate() {
                let record = record.expect("stored record");
                let value = String::from_utf8_lossy(record.value.unwrap_or_default()).into_owned();
                out.push((header.base_offset + i as i64, value));
            }
        }
        pos += header.total_len();
    }
    out
}

/// Every readable batch of `log` from its start, in order (a read stops
/// at a segment's end, so read on from where each stopped).
fn read_everything(log: &Log) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = log.stats().start_offset;
    loop {
        let read = log.read(offset, 1 << 20).expect("read");
        if read.bytes.is_empty() || read.next_offset <= offset {
            return out;
        }
        out.extend_from_slice(&read.bytes);
        offset = read.next_offset;
    }
}

/// Waits until every log shows the same records, up to `next_offset`.
async fn wait_until_replicas_agree(logs: &[Arc<Log>], next_offset: i64) {
    // A follower shows an applied entry once its own fdatasync of it is
    // done too (the `always` durable cap), so look until they agree.
    let read_all = |log: &Arc<Log>| read_everything(log);
    for _ in 0..250 {
        let reads: Vec<Vec<u8>> = logs.iter().map(read_all).collect();
        let ends: Vec<i64> = logs.iter().map(|log| log.stats().end_offset).collect();
        if ends.iter().all(|end| *end == next_offset) && reads.iter().all(|r| *r == reads[0]) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ends: Vec<i64> = logs.iter().map(|log| log.stats().end_offset).collect();
    panic!("replicas never agreed on {next_offset} records: ends {ends:?}");
}

/// Every replica's log holds the same batches at the same offsets, and
/// readers see only what is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_store_the_same_batches_at_the_same_offsets() {
    let Group {
        _dirs, rafts, logs, ..
    } = three_replicas().await;
    let leader = wait_for_leader(&rafts).await;
    let leader_raft = &rafts[leader as usize - 1];

    let mut next = 0;
    for round in 0..20 {
        let values: Vec<String> = (0..=round % 3).map(|i| format!("r{round}-{i}")).collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let written = leader_raft.client_write(batch(&refs)).await.expect("write");
        assert_eq!(written.data.base_offset, next, "offsets are dense");
        next = written.data.next_offset;
    }
    wait_until_replicas_agree(&logs, next).await;
    for raft in rafts {
        raft.shutdown().await.ok();
    }
}

/// A leader cut off from the others cannot commit; the others elect a new
/// leader and go on; after healing, the old leader's uncommitted entry is
/// gone from every replica and its writer was told it failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_commits_nothing_and_the_majority_goes_on() {
    let Group {
        _dirs,
        router,
        rafts,
        logs,
    } = three_replicas().await;
    let old = wait_for_leader(&rafts).await;
    let old_raft = rafts[old as usize - 1].clone();
    let mut next = 0;
    for round in 0..5 {
        next = old_raft
            .client_write(batch(&[&format!("before-{round}")]))
            .await
            .unwrap()
            .data
            .next_offset;
    }
    router.isolate(old);
    let stranded = tokio::spawn({
        let old_raft = old_raft.clone();
        async move { old_raft.client_write(batch(&["stranded"])).await }
    });
    let others: Vec<PartitionGroup> = rafts
        .iter()
        .enumerate()
        .filter(|(i, _)| *i as NodeId + 1 != old)
        .map(|(_, r)| r.clone())
        .collect();
    let mut new = None;
    for _ in 0..200 {
        for raft in &others {
            if let Some(leader) = raft.current_leader().await {
                if leader != old {
                    new = Some(leader);
                }
            }
        }
        if new.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let new = new.expect("the majority elects a new leader");
    assert!(
        !stranded.is_finished(),
        "the isolated leader answered a write it cannot commit"
    );
    let new_raft = rafts[new as usize - 1].clone();
    for round in 0..5 {
        // A leader the others name may not take writes for a moment (its
        // first entry of the term is not committed yet): try again.
        let mut tries = 0;
        let written = loop {
            match new_raft
                .client_write(batch(&[&format!("after-{round}")]))
                .await
            {
                Ok(written) => break written,
                Err(e) if tries < 40 => {
                    tries += 1;
                    tracing::debug!("the new leader did not take the write yet: {e}");
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                Err(e) => panic!("the new leader refuses writes: {e}"),
            }
        };
        assert_eq!(
            written.data.base_offset, next,
            "offsets go on densely under the new leader"
        );
        next = written.data.next_offset;
    }
    router.heal();
    let answer = tokio::time::timeout(Duration::from_secs(10), stranded)
        .await
        .expect("answered after healing")
        .unwrap();
    assert!(
        answer.is_err(),
        "the stranded write was reported written: {answer:?}"
    );
    wait_until_replicas_agree(&logs, next).await;
    let records = read_everything(&logs[old as usize - 1]);
    assert!(
        !records.windows(8).any(|w| w == b"stranded"),
        "the uncommitted entry survived"
    );
    for raft in rafts {
        raft.shutdown().await.ok();
    }
}

/// Proposals handed to a group's `Proposer` one after another enter the
/// log in that order, many in flight at once; a follower's proposer
/// answers "not the leader", naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposer_keeps_the_order_of_pipelined_proposals() {
    use spool_cluster::proposer::{ProposalError, Proposer};
    let Group {
        _dirs, rafts, logs, ..
    } = three_replicas().await;
    let leader = wait_for_leader(&rafts).await;
    let proposer = Proposer::start(rafts[leader as usize - 1].clone());
    let answers: Vec<_> = (0..300)
        .map(|i| proposer.propose(batch(&[&format!("p{i:03}")]).0))
        .collect();
    let mut next = 0;
    for answer in answers {
        let placed = answer.await.unwrap().expect("written");
        assert_eq!(placed.base_offset, next, "written in the order proposed");
        next = placed.next_offset;
    }
    wait_until_replicas_agree(&logs, next).await;
    let follower = rafts
        .iter()
        .find(|r| !std::ptr::eq(*r, &rafts[leader as usize - 1]))
        .unwrap();
    let refused = Proposer::start(follower.clone())
        .propose(batch(&["x"]).0)
        .await
        .unwrap();
    assert!(
        matches!(refused, Err(ProposalError::NotLeader { leader: Some(l), .. }) if l == leader),
        "{refused:?}"
    );
    for raft in rafts {
        raft.shutdown().await.ok();
    }
}
