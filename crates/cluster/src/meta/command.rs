//! The metadata group's commands and how one is stored: a record batch of
//! exactly one record whose value is the command as JSON.
//!
//! The JSON is stored in the metadata log and replayed at every start, by
//! every later version of Spool: its shape (the `type` tag, the field names)
//! is a storage format. Unknown fields are refused rather than ignored — a
//! node that does not understand a command must stop, not apply part of it
//! and drift from the nodes that understood all of it.

use crate::types::NodeId;
use serde::{Deserialize, Serialize};
use spool_batch::{BatchBuilder, BatchError, NewRecord};
use spool_types::limits::RECORD_BYTES_MAX;

/// Records in a command's batch: one command per Raft entry, so an entry
/// is applied or refused as a whole and answers its proposer alone.
pub const COMMAND_RECORDS: usize = 1;

/// The largest command, as JSON: a command is one record, so at most a
/// record's size (a topic of `PARTITIONS_MAX` partitions with five replicas
/// of 20-digit node ids is about 110 KiB).
pub const COMMAND_BYTES_MAX: usize = RECORD_BYTES_MAX;

/// A change to the cluster's metadata, as proposed to and stored in the
/// metadata group's log. Applied by [`ClusterState::apply`](super::ClusterState::apply).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum MetaCommand {
    /// A node announces itself: at its first start, and at every start
    /// after (its addresses may have changed). The same id with another
    /// incarnation is a node whose data directory was wiped.
    NodeJoined {
        id: NodeId,
        /// The binary protocol listener clients use (`--listen`).
        client_addr: String,
        /// The HTTP listener, if the node serves HTTP.
        http_addr: Option<String>,
        /// The node-to-node listener (`--cluster-listen`).
        cluster_addr: String,
        /// A random 128-bit id as 32 lowercase hex digits, made with the
        /// node's data directory ([`super::incarnation`]).
        incarnation: String,
        /// With a new incarnation of a known id (a node whose data was lost,
        /// replacing its old self): the generation it asks for, one above
        /// the recorded one. Absent in every other announcement (and in
        /// logs written before generations existed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        generation: Option<u64>,
    },
    /// A topic and where its partitions live.
    TopicCreated {
        name: String,
        partitions: u32,
        /// Per partition, its replicas; the first is the preferred leader.
        replicas: Vec<Vec<NodeId>>,
        /// The topic's settings as the server's JSON; opaque here, so this
        /// crate knows nothing of the broker.
        config: serde_json::Value,
        /// When the topic was created, by the proposer's clock (chosen
        /// once, before proposing, so every replica stores the same).
        created_ms: i64,
    },
    TopicDeleted {
        name: String,
    },
    /// Producer ids `first..first + count` are handed out; `first` must be
    /// the state's next free id (two proposers racing: the second is
    /// refused and asks again).
    ProducerIdsAllocated {
        first: u64,
        count: u64,
    },
}

/// Why a batch is not a metadata command.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("not a valid record batch: {0}")]
    Batch(#[from] BatchError),
    #[error("a command batch holds {COMMAND_RECORDS} record; this one holds {0}")]
    RecordCount(i32),
    #[error("the command record has no value")]
    NoValue,
    #[error("the command is {len} bytes; the maximum is {COMMAND_BYTES_MAX}")]
    TooLarge { len: usize },
    #[error("the command is not valid JSON of a known command: {0}")]
    Json(#[from] serde_json::Error),
}

impl MetaCommand {
    /// The command as the batch to propose: one record, timestamped
    /// `now_ms` (the record's timestamp is informative; applying a command
    /// never reads it).
    pub fn to_batch(&self, now_ms: i64) -> Result<Vec<u8>, CommandError> {
        let json = serde_json::to_vec(self)?;
        if json.len() > COMMAND_BYTES_MAX {
            return Err(CommandError::TooLarge { len: json.len() });
        }
        let mut builder = BatchBuilder::with_capacity(json.len() + 128);
        builder.push(&NewRecord::value(json, now_ms))?;
        Ok(builder.finish()?)
    }

    /// The command a batch holds. The batch is checked whole (framing,
    /// CRC, records) before its record is read: it comes from disk or from
    /// a peer.
    pub fn from_batch(batch: &[u8]) -> Result<MetaCommand, CommandError> {
        let header = spool_batch::validate(batch)?;
        if header.record_count != COMMAND_RECORDS as i32 {
            return Err(CommandError::RecordCount(header.record_count));
        }
        let record = spool_batch::records(batch, &header)
            .next()
            .ok_or(CommandError::RecordCount(0))??;
        let value = record.value.ok_or(CommandError::NoValue)?;
        if value.len() > COMMAND_BYTES_MAX {
            return Err(CommandError::TooLarge { len: value.len() });
        }
        Ok(serde_json::from_slice(value)?)
    }
}
