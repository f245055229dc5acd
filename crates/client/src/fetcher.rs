//! The fetch step shared by [`crate::GroupConsumer`] and
//! [`crate::TopicReader`]: one multi-partition long-poll Fetch for a set of
//! positions, decoded, with positions advanced.

use crate::client::Client;
use crate::error::ClientError;
use crate::records::{decode_records, ConsumedRecord};
use spool_proto::{self as p, WireError};
use spool_types::limits::{BATCH_BYTES_MAX, FRAME_BYTES_MAX};
use spool_types::ErrorCode;
use std::collections::BTreeMap;
use std::time::Duration;

/// A (topic, partition) pair.
pub type TopicPartition = (String, u32);

/// Where a position that is out of the partition's range goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutOfRange {
    /// To the partition's first stored offset.
    ToStart,
    /// Below the start to the start, above the end to the end.
    Clamp,
}

/// What one fetch produced.
pub(crate) struct FetchOutcome {
    pub records: Vec<ConsumedRecord>,
    /// Partitions the server no longer has (topic deleted); already removed
    /// from the positions.
    pub gone: Vec<TopicPartition>,
    /// The first per-partition error that was neither handled nor
    /// accompanied by data elsewhere.
    pub error: Option<ClientError>,
}

/// Per-fetch settings.
pub(crate) struct FetchLimits {
    pub partition_bytes: u32,
    pub total_bytes: u32,
}

/// Fetches every partition in `positions` once (waiting up to `wait` for
/// data), returns records at or past each position and advances positions
/// past them. `rotate` varies which partition comes first so a busy early
/// partition cannot starve later ones of the response budget.
pub(crate) async fn fetch_once(
    client: &Client,
    positions: &mut BTreeMap<TopicPartition, u64>,
    rotate: usize,
    wait: Duration,
    limits: &FetchLimits,
    out_of_range: OutOfRange,
) -> Result<FetchOutcome, ClientError> {
    let n = positions.len().max(1);
    let mut partitions: Vec<p::FetchPartition> = positions
        .iter()
        .map(|((topic, partition), offset)| p::FetchPartition {
            topic: topic.clone(),
            partition: *partition,
            offset: *offset,
            max_bytes: limits.partition_bytes.max(1),
        })
        .collect();
    partitions.rotate_left(rotate % n);
    // Leave room in the response frame for each partition's envelope.
    let overhead: usize = partitions.iter().map(|fp| 64 + fp.topic.len()).sum();
    let frame_room = FRAME_BYTES_MAX.saturating_sub(4096 + overhead);
    let total = (limits.total_bytes as usize)
        .min(frame_room)
        .clamp(1, BATCH_BYTES_MAX);
    let fetch = p::Fetch {
        max_wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
        max_bytes: u32::try_from(total).unwrap_or(u32::MAX),
        partitions,
    };
    let fetched = client.fetch(fetch).await?;

    let mut outcome = FetchOutcome {
        records: Vec::new(),
        gone: Vec::new(),
        error: None,
    };
    let mut advances = Vec::new();
    for fp in fetched.partitions {
        let key = (fp.topic.clone(), fp.partition);
        let Some(&position) = positions.get(&key) else {
            continue;
        };
        match fp.error {
            None => match decode_records(&fp.topic, fp.partition, &fp.batches, position) {
                Ok(decoded) => {
                    if let Some(next) = decoded.next_offset {
                        advances.push((key, next.max(position)));
                    }
                    outcome.records.extend(decoded.records);
                }
                Err(e) => {
                    outcome.error.get_or_insert(e);
                }
            },
            Some(code) if code == ErrorCode::OffsetOutOfRange => {
                let reset = match out_of_range {
                    OutOfRange::ToStart => fp.start_offset,
                    OutOfRange::Clamp if position < fp.start_offset => fp.start_offset,
                    OutOfRange::Clamp => fp.end_offset.max(fp.start_offset),
                };
                advances.push((key, reset));
            }
            Some(code)
                if code == ErrorCode::UnknownTopic || code == ErrorCode::UnknownPartition =>
            {
                positions.remove(&key);
                outcome.gone.push(key);
            }
            Some(code) => {
                outcome.error.get_or_insert(ClientError::Server(WireError {
                    code,
                    message: format!("fetching {}/{} failed", fp.topic, fp.partition),
                    retry_after_ms: None,
                }));
            }
        }
    }
    for (key, offset) in advances {
        positions.insert(key, offset);
    }
    Ok(outcome)
}
