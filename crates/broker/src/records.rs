//! Walking the records of a log: the one loop that reads a log from an
//! offset, splits what it read into batches and visits each record, for
//! everything in the broker that replays or scans a log (duplicate
//! suppression at open, orphaned requests, dead letters, redrive, the queue
//! state log and the metadata log).

use crate::error::{BrokerError, Result};
use spool_batch::{BatchHeader, Record};
use spool_log::Log;
use spool_types::ErrorCode;

/// How much of a log one read takes while walking it.
pub const WALK_READ_BYTES: usize = 4 << 20;

/// One record met on a walk.
pub struct RecordAt<'a> {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub record: Record<'a>,
}

/// Whether a walk goes on after a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    Continue,
    Stop,
}

/// Visits the records of `log` from offset `from` (records before it in the
/// first batch are passed over) to its end, in offset order, until `visit`
/// says [`Walk::Stop`]. Reads `read_bytes` at a time (at least one batch).
/// Answers the offset after the last record visited or passed over.
pub fn walk_records(
    log: &Log,
    from: i64,
    read_bytes: usize,
    mut visit: impl FnMut(RecordAt<'_>) -> Result<Walk>,
) -> Result<i64> {
    let mut offset = from;
    loop {
        let read = log.read(offset, read_bytes)?;
        if read.bytes.is_empty() || read.next_offset <= offset {
            return Ok(offset);
        }
        for batch in spool_batch::split_batches(&read.bytes) {
            let batch = batch?;
            let h = BatchHeader::parse(batch)?;
            for r in spool_batch::records(batch, &h) {
                let record = r?;
                let at = h.base_offset + i64::from(record.offset_delta);
                if at < from {
                    continue;
                }
                let timestamp_ms = h.base_timestamp + record.timestamp_delta;
                let step = visit(RecordAt {
                    offset: at,
                    timestamp_ms,
                    record,
                })?;
                if step == Walk::Stop {
                    return Ok(at + 1);
                }
            }
        }
        offset = read.next_offset;
    }
}

/// Calls `visit` with the record at `offset`, if the log still holds it
/// (retention may have removed it); answers what `visit` made of it.
pub fn record_at<T>(
    log: &Log,
    offset: i64,
    visit: impl FnOnce(RecordAt<'_>) -> T,
) -> Result<Option<T>> {
    let mut visit = Some(visit);
    let mut out = None;
    // A read takes at least the batch holding `offset`; the first record
    // visited is the one at `offset`, unless it is gone.
    walk_records(log, offset, 1, |at| {
        if at.offset == offset {
            out = visit.take().map(|visit| visit(at));
        }
        Ok(Walk::Stop)
    })?;
    Ok(out)
}

/// Visits every record of `log` from its start as a JSON document of type
/// `T` (the metadata and offsets logs). A record that does not parse is
/// damage: the walk fails with `CORRUPT_DATA`, naming `what` and the offset.
/// Answers how many records were visited.
pub fn walk_json<T: serde::de::DeserializeOwned>(
    log: &Log,
    what: &str,
    mut visit: impl FnMut(T),
) -> Result<u64> {
    let mut records = 0u64;
    let start = log.stats().start_offset;
    walk_records(log, start, WALK_READ_BYTES, |at| {
        let value = at.record.value.unwrap_or_default();
        let doc: T = serde_json::from_slice(value).map_err(|e| {
            BrokerError::new(
                ErrorCode::CorruptData,
                format!("{what} at offset {} is unreadable: {e}", at.offset),
            )
        })?;
        visit(doc);
        records += 1;
        Ok(Walk::Continue)
    })?;
    Ok(records)
}
