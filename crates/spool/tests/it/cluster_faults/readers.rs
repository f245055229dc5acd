//! The harness's readers: each reads every partition from the start
//! through whichever node is up, moving to another on any error or stall,
//! and records what it was shown. The checker then asks that every record
//! a reader saw is the one the healed cluster holds at that offset, with
//! the same term: a node never serves a record that is not committed (one
//! a later leader could still replace), and offsets reach a reader dense
//! and in order, through any node and across moves.

use super::{stored_records, Stored, PARTITIONS, TOPIC};
use spool_client::{Client, ClientOptions};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Per (partition, offset), the record a reader was shown.
pub type Observed = Arc<Mutex<BTreeMap<(u32, u64), Stored>>>;

/// How long one fetch may take before the reader moves on (a paused
/// node answers nothing).
const FETCH_STALL_MS: u64 = 3_000;

pub async fn read_continuously(
    k: usize,
    addrs: Arc<Mutex<Vec<String>>>,
    observed: Observed,
    stop: watch::Receiver<bool>,
) {
    let mut positions = [0u64; PARTITIONS as usize];
    let mut round = 0;
    while !*stop.borrow() {
        round += 1;
        let Some(addr) = super::pick_node(&addrs, k, round) else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let connect = Client::connect(addr.as_str(), ClientOptions::default());
        let Ok(Ok(client)) = tokio::time::timeout(Duration::from_secs(2), connect).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        while !*stop.borrow() {
            let fetch = client.fetch(spool_proto::Fetch {
                max_wait_ms: 200,
                max_bytes: 1 << 20,
                partitions: (0..PARTITIONS)
                    .map(|partition| spool_proto::FetchPartition {
                        topic: TOPIC.into(),
                        partition,
                        offset: positions[partition as usize],
                        max_bytes: 256 << 10,
                    })
                    .collect(),
            });
            let stall = Duration::from_millis(FETCH_STALL_MS);
            let Ok(Ok(fetched)) = tokio::time::timeout(stall, fetch).await else {
                break;
            };
            for p in &fetched.partitions {
                if p.error.is_some() {
                    continue;
                }
                let at = &mut positions[p.partition as usize];
                for record in stored_records(&p.batches, *at) {
                    assert_eq!(
                        record.offset, *at,
                        "reader {k} through {addr}: partition {} skipped from {} to {}",
                        p.partition, *at, record.offset
                    );
                    *at += 1;
                    let mut observed = observed.lock().expect("observed");
                    match observed.get(&(p.partition, record.offset)) {
                        Some(before) => assert_eq!(
                            before, &record,
                            "partition {} offset {}: readers were shown two records",
                            p.partition, record.offset
                        ),
                        None => {
                            observed.insert((p.partition, record.offset), record);
                        }
                    }
                }
            }
        }
    }
}

/// Every record a reader saw is the healed cluster's record at that
/// offset, term included.
pub fn check_observed(agreed: &BTreeMap<u32, Vec<Stored>>, observed: &Observed) -> usize {
    let observed = observed.lock().expect("observed");
    for ((partition, offset), seen) in observed.iter() {
        let held = agreed
            .get(partition)
            .and_then(|records| records.get(*offset as usize));
        assert_eq!(
            held,
            Some(seen),
            "partition {partition} offset {offset}: a reader was shown a record the cluster \
             does not hold"
        );
    }
    observed.len()
}
