//! A seeded fault schedule against three replicas of one partition, in one
//! process: links cut and healed, replicas stopped and restarted from their
//! directories (vote, log and committed state recovered from disk), while
//! a writer keeps proposing. Then a checker: every acknowledged batch is in
//! every replica exactly once, at the offset it was acknowledged with;
//! nothing is stored twice; no term had two leaders.
//!
//! The schedule is replayable from its seed (`SPOOL_FAULT_SEEDS=1,2,3`);
//! the timing of the threads is not, so a failure names its seed and the
//! schedule it ran. Stopping a replica here is graceful (its page cache
//! survives); losing unsynced writes is the real-process harness's part.

use crate::router::{PartitionGroup, Router, RouterNet};
use crate::{batch, open_group_storage, test_config};
use openraft::async_runtime::WatchReceiver;
use openraft::ServerState;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use spool_cluster::types::{NodeAddr, NodeId};
use spool_log::{Log, Syncer};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tempfile::TempDir;

const NODES: u64 = 3;
/// Fault steps per seed, each followed by a pause of 150–600 ms.
const STEPS: usize = 14;

#[derive(Debug, Clone, Copy)]
enum Fault {
    Isolate(NodeId),
    Heal,
    Stop(NodeId),
    Restart,
    Nothing,
}

struct Replica {
    dir: PathBuf,
    raft: Option<PartitionGroup>,
    log: Arc<Log>,
}

struct Cluster {
    router: Arc<Router>,
    syncer: Arc<Syncer>,
    replicas: Mutex<BTreeMap<NodeId, Replica>>,
}

impl Cluster {
    async fn start(&self, id: NodeId) {
        let dir = self.replicas.lock().unwrap()[&id].dir.clone();
        let (store, machine) = open_group_storage(&dir, &self.syncer);
        let log = store.log().clone();
        let net = RouterNet {
            router: self.router.clone(),
            from: id,
        };
        let raft = PartitionGroup::new(id, test_config(), net, store, machine)
            .await
            .expect("replica starts");
        self.router.add(id, raft.clone());
        let mut replicas = self.replicas.lock().unwrap();
        let replica = replicas.get_mut(&id).expect("known replica");
        replica.raft = Some(raft);
        replica.log = log;
    }

    async fn stop(&self, id: NodeId) {
        let raft = self
            .replicas
            .lock()
            .unwrap()
            .get_mut(&id)
            .and_then(|r| r.raft.take());
        if let Some(raft) = raft {
            self.router.remove(id);
            raft.shutdown().await.ok();
        }
    }

    fn running(&self) -> Vec<PartitionGroup> {
        self.replicas
            .lock()
            .unwrap()
            .values()
            .filter_map(|r| r.raft.clone())
            .collect()
    }

    fn stopped(&self) -> Vec<NodeId> {
        let replicas = self.replicas.lock().unwrap();
        replicas
            .iter()
            .filter(|(_, r)| r.raft.is_none())
            .map(|(id, _)| *id)
            .collect()
    }
}

/// Picks the next fault: at most one replica stopped or cut off at a time,
/// so a majority can always make progress once the fault is over.
fn next_fault(rng: &mut StdRng, impaired: &mut Option<NodeId>, stopped: bool) -> Fault {
    match *impaired {
        Some(_) => {
            if rng.random_bool(0.6) {
                *impaired = None;
                if stopped {
                    Fault::Restart
                } else {
                    Fault::Heal
                }
            } else {
                Fault::Nothing
            }
        }
        None => {
            let node = rng.random_range(1..=NODES);
            match rng.random_range(0..3) {
                0 => {
                    *impaired = Some(node);
                    Fault::Isolate(node)
                }
                1 => {
                    *impaired = Some(node);
                    Fault::Stop(node)
                }
                _ => Fault::Nothing,
            }
        }
    }
}

async fn run_seed(seed: u64) {
    let dirs: Vec<TempDir> = (0..NODES).map(|_| TempDir::new().unwrap()).collect();
    let cluster = Arc::new(Cluster {
        router: Arc::new(Router::default()),
        syncer: Arc::new(Syncer::new(2).unwrap()),
        replicas: Mutex::new(BTreeMap::new()),
    });
    for (i, dir) in dirs.iter().enumerate() {
        let id = i as NodeId + 1;
        let (store, _) = open_group_storage(dir.path(), &cluster.syncer);
        let log = store.log().clone();
        drop(store);
        cluster.replicas.lock().unwrap().insert(
            id,
            Replica {
                dir: dir.path().to_path_buf(),
                raft: None,
                log,
            },
        );
        cluster.start(id).await;
    }
    let members: BTreeMap<NodeId, NodeAddr> =
        (1..=NODES).map(|id| (id, NodeAddr::default())).collect();
    cluster.running()[0]
        .initialize(members)
        .await
        .expect("initialize");

    let done = Arc::new(AtomicBool::new(false));
    // Who led each term, as seen by the replicas' own metrics.
    let leaders: Arc<Mutex<BTreeMap<u64, BTreeSet<NodeId>>>> = Arc::default();
    let watcher = tokio::spawn({
        let (cluster, done, leaders) = (cluster.clone(), done.clone(), leaders.clone());
        async move {
            while !done.load(Ordering::Relaxed) {
                for raft in cluster.running() {
                    let m = raft.metrics().borrow_watched().clone();
                    if m.state == ServerState::Leader {
                        leaders
                            .lock()
                            .unwrap()
                            .entry(m.current_term)
                            .or_default()
                            .insert(m.id);
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    // Acknowledged writes: value → (base offset).
    let acked: Arc<Mutex<BTreeMap<String, i64>>> = Arc::default();
    let writer = tokio::spawn({
        let (cluster, done, acked) = (cluster.clone(), done.clone(), acked.clone());
        async move {
            let mut n = 0u64;
            while !done.load(Ordering::Relaxed) {
                n += 1;
                let value = format!("w{n}");
                let target = cluster
                    .running()
                    .into_iter()
                    .find(|r| r.metrics().borrow_watched().state == ServerState::Leader);
                let Some(raft) = target else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let write = raft.client_write(batch(&[&value]));
                if let Ok(Ok(answer)) = tokio::time::timeout(Duration::from_secs(2), write).await {
                    acked.lock().unwrap().insert(value, answer.data.base_offset);
                }
            }
        }
    });

    let mut rng = StdRng::seed_from_u64(seed);
    let mut impaired = None;
    let mut schedule = Vec::new();
    for _ in 0..STEPS {
        let fault = next_fault(&mut rng, &mut impaired, !cluster.stopped().is_empty());
        schedule.push(fault);
        match fault {
            Fault::Isolate(id) => cluster.router.isolate(id),
            Fault::Heal => cluster.router.heal(),
            Fault::Stop(id) => cluster.stop(id).await,
            Fault::Restart => {
                for id in cluster.stopped() {
                    cluster.start(id).await;
                }
            }
            Fault::Nothing => {}
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..600))).await;
    }
    cluster.router.heal();
    for id in cluster.stopped() {
        cluster.start(id).await;
    }
    done.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    watcher.await.unwrap();

    // One last write through the leader commits everything before it.
    let mut next = None;
    for _ in 0..200 {
        let leader = cluster
            .running()
            .into_iter()
            .find(|r| r.metrics().borrow_watched().state == ServerState::Leader);
        if let Some(raft) = leader {
            if let Ok(Ok(answer)) =
                tokio::time::timeout(Duration::from_secs(2), raft.client_write(batch(&["final"])))
                    .await
            {
                next = Some(answer.data.next_offset);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let next = next
        .unwrap_or_else(|| panic!("seed {seed}: no leader after healing; schedule {schedule:?}"));
    let logs: Vec<Arc<Log>> = cluster
        .replicas
        .lock()
        .unwrap()
        .values()
        .map(|r| r.log.clone())
        .collect();
    crate::wait_until_replicas_agree(&logs, next).await;

    let stored = crate::stored_values(&logs[0]);
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 10,
        "seed {seed}: only {} writes acknowledged; schedule {schedule:?}",
        acked.len()
    );
    let mut seen = BTreeSet::new();
    for (i, (offset, value)) in stored.iter().enumerate() {
        assert_eq!(*offset, i as i64, "seed {seed}: offsets not dense");
        assert!(
            seen.insert(value.clone()),
            "seed {seed}: {value} stored twice; schedule {schedule:?}"
        );
    }
    let at: BTreeMap<&str, i64> = stored.iter().map(|(o, v)| (v.as_str(), *o)).collect();
    for (value, offset) in &acked {
        if at.get(value.as_str()) != Some(offset) {
            let near: Vec<_> = stored
                .iter()
                .filter(|(o, _)| (*o - offset).abs() < 6)
                .collect();
            let acked_near: Vec<_> = acked
                .iter()
                .filter(|(_, o)| (**o - offset).abs() < 6)
                .collect();
            eprintln!("{value} acked at {offset}, stored at {:?}; stored near: {near:?}; acked near: {acked_near:?}", at.get(value.as_str()));
            for (i, log) in logs.iter().enumerate() {
                let mine: Vec<_> = crate::stored_values(log)
                    .into_iter()
                    .filter(|(o, _)| (*o - offset).abs() < 6)
                    .collect();
                eprintln!("replica {i}: {mine:?}");
            }
        }
        assert_eq!(
            at.get(value.as_str()),
            Some(offset),
            "seed {seed}: acknowledged {value} not at {offset}; schedule {schedule:?}"
        );
    }
    for (term, ids) in leaders.lock().unwrap().iter() {
        assert_eq!(ids.len(), 1, "seed {seed}: term {term} had leaders {ids:?}");
    }
    for raft in cluster.running() {
        raft.shutdown().await.ok();
    }
    eprintln!(
        "seed {seed}: {} acknowledged, {} stored, schedule {schedule:?}",
        acked.len(),
        stored.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_partitions_and_restarts() {
    let seeds: Vec<u64> = std::env::var("SPOOL_FAULT_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2]);
    for seed in seeds {
        run_seed(seed).await;
    }
}
