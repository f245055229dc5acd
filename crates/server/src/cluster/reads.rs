//! Reads through any node: a partition this node holds no replica of (a
//! topic with fewer replicas than the cluster has nodes) is read from a
//! node that holds one, over the cluster link, and the records go back to
//! the client as if read here. The other way round, this node answers
//! such reads for the partitions it hosts through the operations layer's
//! own fetch (committed records only, with its long poll).

use super::Cluster;
use crate::auth::Caller;
use crate::ops::{FetchPartition, Ops};
use futures::future::BoxFuture;
use spool_broker::BrokerError;
use spool_cluster::groups::ReadsHere;
use spool_cluster::types::NodeId;
use spool_cluster::wire::{GroupId, RaftResponse, RemoteRecords};
use spool_types::ErrorCode;
use std::sync::Weak;

/// The most one read from another node carries (the first batch goes
/// whole even past it; a batch always fits a cluster frame). Kept to the
/// client's usual per-partition size: the answer shares the node link
/// with the liveness pings, which must not wait long behind it.
pub const REMOTE_READ_BYTES_MAX: usize = 1 << 20;

impl Cluster {
    /// Reads `topic` `partition` from `offset` on a node holding a replica
    /// of it, waiting there up to `wait_ms` for records: the replicas this
    /// node believes serve the partition first (alive, not stopped on a
    /// storage error), in placement order, then the others. A replica
    /// that answers `OFFSET_OUT_OF_RANGE` may only lag the others, so the
    /// next is asked; the refusal goes to the client only if all agree.
    pub async fn read_remote(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        max_bytes: usize,
        wait_ms: u64,
    ) -> Result<RemoteRecords, BrokerError> {
        let group = GroupId::Partition {
            topic: topic.to_owned(),
            partition,
        };
        let max_bytes = max_bytes.min(REMOTE_READ_BYTES_MAX) as u32;
        let wait_ms = u32::try_from(wait_ms).unwrap_or(u32::MAX);
        let mut tried = Vec::new();
        let mut out_of_range = None;
        for (id, addr) in self.replicas_to_read(&group) {
            let answer = self
                .node
                .read_from(id, &addr, &group, offset, max_bytes, wait_ms)
                .await;
            match answer {
                Ok(RaftResponse::Records(records)) => return Ok(records),
                Ok(RaftResponse::ReadFailed { code, message }) => {
                    let code = ErrorCode::from_u16(code).unwrap_or(ErrorCode::Internal);
                    match code {
                        ErrorCode::OffsetOutOfRange => {
                            out_of_range = Some(BrokerError::new(code, message));
                        }
                        // Its replica is not set up there yet (or any more).
                        ErrorCode::NotLeader => tried.push(format!("node {id}: {message}")),
                        _ => return Err(BrokerError::new(code, message)),
                    }
                }
                Ok(other) => tried.push(format!("node {id}: {other:?}")),
                Err(e) => tried.push(format!("node {id}: {e}")),
            }
        }
        if let Some(refused) = out_of_range {
            return Err(refused);
        }
        let mut refused = self.not_leader(topic, partition, None);
        refused.message = format!(
            "no replica of topic {topic:?} partition {partition} answered a read through \
             node {} ({}): retry",
            self.node.id(),
            tried.join("; ")
        );
        Err(refused)
    }

    /// The partition's replicas with their node-to-node addresses, those
    /// this node believes serve it first.
    fn replicas_to_read(&self, group: &GroupId) -> Vec<(NodeId, String)> {
        let GroupId::Partition { topic, partition } = group else {
            return Vec::new();
        };
        let replicas = {
            let state = self.meta.read();
            state
                .topic(topic)
                .and_then(|t| t.replicas.get(*partition as usize).cloned())
                .unwrap_or_default()
        };
        let mut ordered: Vec<(NodeId, String)> = replicas
            .iter()
            .filter(|id| **id != self.node.id())
            .filter_map(|id| Some((*id, self.peers.get(id)?.clone())))
            .collect();
        // Stable: placement order within those serving and the others.
        ordered.sort_by_key(|(id, _)| !self.node.serves(*id, group));
        ordered
    }

    /// Answers other nodes' reads of partitions hosted here through `ops`.
    pub fn serve_reads(&self, ops: Weak<Ops>) {
        self.node
            .groups()
            .serve_reads(std::sync::Arc::new(ReadsThroughOps { ops }));
    }
}

struct ReadsThroughOps {
    ops: Weak<Ops>,
}

impl ReadsHere for ReadsThroughOps {
    fn read(
        &self,
        topic: String,
        partition: u32,
        offset: i64,
        max_bytes: usize,
        wait_ms: u64,
    ) -> BoxFuture<'static, RaftResponse> {
        let ops = self.ops.clone();
        Box::pin(async move {
            let Some(ops) = ops.upgrade() else {
                return RaftResponse::Refused("this node is stopping".into());
            };
            let asked = FetchPartition {
                topic,
                partition,
                offset,
                max_bytes,
            };
            // The asking node checked its client's token; the node link is
            // authenticated. Read here only, never forwarded again.
            let fetched = ops
                .fetch_here(&Caller::Open, vec![asked], max_bytes, wait_ms)
                .await;
            let read = fetched.and_then(|mut f| {
                f.partitions
                    .pop()
                    .ok_or_else(|| BrokerError::new(ErrorCode::Internal, "an empty fetch"))
            });
            match read {
                Ok(p) => match p.error {
                    Some(e) => failed(e),
                    None => RaftResponse::Records(RemoteRecords {
                        start_offset: p.start_offset,
                        end_offset: p.end_offset,
                        next_offset: p.next_offset,
                        batches: p.batches,
                    }),
                },
                Err(e) => failed(e),
            }
        })
    }
}

fn failed(e: BrokerError) -> RaftResponse {
    RaftResponse::ReadFailed {
        code: e.code as u16,
        message: e.message,
    }
}
