//! A fetch that names partitions this node holds no replica of: those are
//! read from a replica over the cluster link (`cluster::reads`), the others
//! here, and the answer is put together in the asked order under one byte
//! budget, as a fetch on one node would be. The long poll waits for the
//! first of: an append here, a replica's long poll answering with records,
//! the deadline; then everything is read again, except the partition whose
//! long poll brought records: those are used as they came (not fetched a
//! second time over the link).

use super::{check_consume_all, FetchPartition, Fetched, FetchedPartition, Ops};
use crate::auth::Caller;
use futures::stream::{FuturesUnordered, StreamExt};
use spool_broker::BrokerError;
use spool_types::limits::FETCH_WAIT_MS_MAX;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::time::Instant;

/// A replica's long poll answer with records, and the index of its
/// partition in the fetch.
type Polled = (usize, FetchedPartition);

impl Ops {
    /// [`Ops::fetch`] when `elsewhere[i]` says partition `i` is read from
    /// another node.
    pub(super) async fn fetch_through_replicas(
        &self,
        caller: &Caller,
        partitions: Vec<FetchPartition>,
        elsewhere: &[bool],
        max_bytes: usize,
        wait_ms: u64,
    ) -> Result<Fetched, BrokerError> {
        let deadline = Instant::now() + Duration::from_millis(wait_ms.min(FETCH_WAIT_MS_MAX));
        let notifies: Vec<_> = partitions
            .iter()
            .zip(elsewhere)
            .filter(|(_, remote)| !**remote)
            .map(|(fp, _)| self.notifier.partition(&fp.topic, fp.partition))
            .collect();
        // A replica's long poll answer with records, by partition index.
        let mut polled: Option<Polled> = None;
        loop {
            check_consume_all(caller, partitions.iter().map(|p| p.topic.as_str()))?;
            // Listening before reading: an append in between still wakes.
            let mut appended: Vec<_> = notifies.iter().map(|n| Box::pin(n.notified())).collect();
            for wait in &mut appended {
                wait.as_mut().enable();
            }
            let fetched = self
                .read_through_replicas(&partitions, elsewhere, max_bytes, polled.take())
                .await;
            let now = Instant::now();
            if fetched.has_data() || now >= deadline || self.stopping() {
                return Ok(fetched);
            }
            let wait_ms = deadline.duration_since(now).as_millis() as u64;
            let polls = self.replica_polls(&partitions, elsewhere, wait_ms);
            let appended_here = async {
                if appended.is_empty() {
                    std::future::pending::<()>().await;
                }
                futures::future::select_all(appended).await;
            };
            let woken = async {
                tokio::select! {
                    _ = appended_here => None,
                    answer = polls => Some(answer),
                    _ = tokio::time::sleep_until(deadline) => None,
                }
            };
            polled = self
                .wait_unless_ended(caller, woken)
                .await
                .flatten()
                .flatten();
        }
    }

    /// Reads every asked partition once, without waiting: remote ones all
    /// at once, each within the budget left by the local ones.
    async fn read_through_replicas(
        &self,
        partitions: &[FetchPartition],
        elsewhere: &[bool],
        max_bytes: usize,
        mut polled: Option<Polled>,
    ) -> Fetched {
        let local: Vec<FetchPartition> = partitions
            .iter()
            .zip(elsewhere)
            .filter(|(_, remote)| !**remote)
            .map(|(fp, _)| fp.clone())
            .collect();
        let mut local = if local.is_empty() {
            Vec::new()
        } else {
            tokio::task::block_in_place(|| self.read_partitions(&local, max_bytes)).partitions
        }
        .into_iter();
        let remote = futures::future::join_all(
            partitions
                .iter()
                .enumerate()
                .zip(elsewhere)
                .filter(|(_, remote)| **remote)
                .map(|((i, fp), _)| {
                    let ready = polled.take_if(|(at, _)| *at == i).map(|(_, read)| read);
                    async move {
                        match ready {
                            Some(read) => read,
                            None => self.read_replica(fp, fp.max_bytes.min(max_bytes), 0).await,
                        }
                    }
                }),
        )
        .await;
        let mut remote = remote.into_iter();
        let mut budget = max_bytes;
        let mut out = Vec::with_capacity(partitions.len());
        for remote_here in elsewhere {
            let next = if *remote_here {
                remote.next()
            } else {
                local.next()
            };
            let Some(mut read) = next else { continue };
            // One budget for the whole answer, local and remote parts
            // alike (each was read against the whole of it): the first
            // batch with data goes whole, later ones only within what is
            // left, as `read_partitions` does on one node.
            let first_with_data = budget == max_bytes;
            if read.batches.len() > budget && !first_with_data {
                read.batches = bytes::Bytes::new();
                read.next_offset = read_offset(partitions, out.len());
            }
            budget = budget.saturating_sub(read.batches.len());
            out.push(read);
        }
        Fetched { partitions: out }
    }

    /// One read of `fp` on a replica elsewhere, as a fetched partition.
    async fn read_replica(
        &self,
        fp: &FetchPartition,
        max_bytes: usize,
        wait_ms: u64,
    ) -> FetchedPartition {
        let mut entry = FetchedPartition::nothing_of(fp);
        let Some(cluster) = self.cluster.as_ref() else {
            return entry;
        };
        match cluster
            .read_remote(&fp.topic, fp.partition, fp.offset, max_bytes, wait_ms)
            .await
        {
            Ok(records) => {
                entry.start_offset = records.start_offset;
                entry.end_offset = records.end_offset;
                entry.next_offset = records.next_offset;
                entry.batches = records.batches;
            }
            Err(e) => entry.error = Some(e),
        }
        entry
    }

    /// Long polls on the replicas of the remote partitions: resolves when
    /// one answers with records (with its partition's index and the read,
    /// used as it is) or an error (`None`: everything is read again);
    /// never, if all answer empty.
    fn replica_polls<'a>(
        &'a self,
        partitions: &'a [FetchPartition],
        elsewhere: &'a [bool],
        wait_ms: u64,
    ) -> Pin<Box<dyn Future<Output = Option<Polled>> + Send + 'a>> {
        let mut polls: FuturesUnordered<_> =
            partitions
                .iter()
                .enumerate()
                .zip(elsewhere)
                .filter(|(_, remote)| **remote)
                .map(|((i, fp), _)| async move {
                    (i, self.read_replica(fp, fp.max_bytes, wait_ms).await)
                })
                .collect();
        Box::pin(async move {
            while let Some((i, read)) = polls.next().await {
                if read.error.is_some() {
                    return None;
                }
                if !read.batches.is_empty() {
                    return Some((i, read));
                }
            }
            std::future::pending().await
        })
    }
}

/// The offset asked of the `i`th partition.
fn read_offset(partitions: &[FetchPartition], i: usize) -> i64 {
    partitions.get(i).map_or(0, |fp| fp.offset)
}
