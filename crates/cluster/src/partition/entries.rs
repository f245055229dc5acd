//! One Raft entry ⇄ one stored batch (docs/cluster.md, "The partition log
//! as a Raft log"): a normal entry is the producer's batch; blank and
//! membership entries are control batches covering no offsets.

use crate::raft_files::{decode_membership, encode_membership};
use crate::types::{log_id, raft_index, BatchData, Entry};
use openraft::EntryPayload;
use spool_batch::BatchHeader;
use spool_log::StoredEntry;
use std::io;

/// A control entry's timestamp: none (Kafka's −1). Every replica encodes
/// blank and membership entries itself, so nothing in them may depend on
/// the replica or the moment: the stored bytes are the same everywhere.
const CONTROL_TIMESTAMP_MS: i64 = -1;

/// The bytes an entry is stored as.
pub fn encode(entry: &Entry) -> io::Result<bytes::Bytes> {
    let control = |body: &[u8]| {
        spool_batch::control_batch(body, CONTROL_TIMESTAMP_MS)
            .map(bytes::Bytes::from)
            .map_err(|e| io::Error::other(format!("control entry: {e}")))
    };
    match &entry.payload {
        EntryPayload::Normal(BatchData(batch)) => Ok(batch.clone()),
        EntryPayload::Blank => control(&[]),
        EntryPayload::Membership(membership) => control(&encode_membership(membership)),
    }
}

/// The entry a stored batch is.
pub fn decode(stored: StoredEntry) -> io::Result<Entry> {
    let id = log_id(stored.term, raft_index(stored.index));
    let header = BatchHeader::parse_with_control(&stored.batch)
        .map_err(|e| io::Error::other(format!("entry {}: unreadable batch: {e}", stored.index)))?;
    let payload = match spool_batch::control_body(&stored.batch, &header) {
        None => EntryPayload::Normal(BatchData(stored.batch)),
        Some([]) => EntryPayload::Blank,
        Some(body) => EntryPayload::Membership(decode_membership(body)?),
    };
    Ok(Entry {
        log_id: id,
        payload,
    })
}

/// `(base offset, next offset)` of a stored normal entry's records.
pub fn offsets_of(stored_batch: &[u8]) -> io::Result<(i64, i64)> {
    let header = BatchHeader::parse_with_control(stored_batch)
        .map_err(|e| io::Error::other(format!("applied batch unreadable: {e}")))?;
    let next = header.base_offset + i64::from(header.last_offset_delta) + 1;
    Ok((header.base_offset, next))
}
