//! The harness's group consumers: members of one consumer group, each
//! through whichever node is up, polling and committing after every poll,
//! moving to another node on any error or stall. (A node keeps its own
//! group state until issue 19 replicates it: a member that moves joins the
//! group on its new node, starting from that node's committed offsets.)
//! What a member is shown must be the healed cluster's record at that
//! offset, and within one membership generation a partition's records
//! reach it dense and in order.

use super::{Stored, TOPIC};
use spool_client::{Client, ClientOptions, GroupConsumer, GroupOptions};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Per (partition, offset), the value a group member was shown.
pub type GroupSeen = Arc<Mutex<BTreeMap<(u32, u64), String>>>;

/// The consumer group the members join.
const GROUP: &str = "harness";
/// How long a join, poll or commit may take before the member moves on
/// (a paused node answers nothing).
const CALL_STALL_MS: u64 = 3_000;

pub async fn consume_in_group(
    k: usize,
    addrs: Arc<Mutex<Vec<String>>>,
    seen: GroupSeen,
    stop: watch::Receiver<bool>,
) {
    let stall = Duration::from_millis(CALL_STALL_MS);
    let mut round = 0;
    while !*stop.borrow() {
        round += 1;
        let Some(addr) = super::pick_node(&addrs, k, round) else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let joined = async {
            let client = Client::connect(addr.as_str(), ClientOptions::default()).await?;
            GroupConsumer::join(client, GROUP, vec![TOPIC.into()], GroupOptions::default()).await
        };
        let Ok(Ok(mut member)) = tokio::time::timeout(stall, joined).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // Per (generation, partition), the next offset this member expects.
        let mut next: HashMap<(u32, u32), u64> = HashMap::new();
        while !*stop.borrow() {
            let polled = tokio::time::timeout(stall, member.poll(Duration::from_millis(200)));
            let Ok(Ok(records)) = polled.await else { break };
            let generation = member.generation();
            for r in &records {
                let expected = next.entry((generation, r.partition)).or_insert(r.offset);
                assert_eq!(
                    r.offset, *expected,
                    "group member {k} through {addr}, generation {generation}: partition {} \
                     skipped from {} to {}",
                    r.partition, *expected, r.offset
                );
                *expected += 1;
                let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default());
                let mut seen = seen.lock().expect("seen");
                let before = seen.insert((r.partition, r.offset), value.clone().into_owned());
                if let Some(before) = before {
                    assert_eq!(
                        before, value,
                        "partition {} offset {}: group members were shown two records",
                        r.partition, r.offset
                    );
                }
            }
            if !matches!(
                tokio::time::timeout(stall, member.commit()).await,
                Ok(Ok(()))
            ) {
                break;
            }
        }
        let _ = tokio::time::timeout(stall, member.close()).await;
    }
}

/// Every record a group member saw is the healed cluster's record at that
/// offset; how many records they saw.
pub fn check_seen(agreed: &BTreeMap<u32, Vec<Stored>>, seen: &GroupSeen) -> usize {
    let seen = seen.lock().expect("seen");
    for ((partition, offset), value) in seen.iter() {
        let held = agreed
            .get(partition)
            .and_then(|records| records.get(*offset as usize))
            .map(|r| &r.value);
        assert_eq!(
            held,
            Some(value),
            "partition {partition} offset {offset}: a group member was shown a record the \
             cluster does not hold"
        );
    }
    seen.len()
}
