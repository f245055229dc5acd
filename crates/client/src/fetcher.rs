//! The fetch step shared by [`crate::GroupConsumer`] and
//! [`crate::TopicReader`]: one multi-partition long-poll Fetch for a set of
//! positions, decoded, with positions advanced. Sending and applying are
//! separate steps so a reader can have its next fetch on the way while it
//! decodes (and its caller handles) the last one.

use crate::client::{unexpected, Client, ResponseFuture};
use crate::error::ClientError;
use crate::records::{decode_records, next_offset_after, ConsumedRecord};
use spool_proto::{self as p, Request, ResponseBody, WireError};
use spool_types::limits::{BATCH_BYTES_MAX, FRAME_BYTES_MAX};
use spool_types::ErrorCode;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

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

impl FetchOutcome {
    /// What a poll that made this fetch returns, if it is done: the
    /// records, else the error, else nothing once `deadline` has passed.
    /// `None`: fetch again.
    pub(crate) fn poll_result(
        self,
        deadline: Instant,
    ) -> Option<Result<Vec<ConsumedRecord>, ClientError>> {
        if !self.records.is_empty() {
            return Some(Ok(self.records));
        }
        if let Some(e) = self.error {
            return Some(Err(e));
        }
        (Instant::now() >= deadline).then(|| Ok(Vec::new()))
    }
}

/// Per-fetch settings.
pub(crate) struct FetchLimits {
    pub partition_bytes: u32,
    pub total_bytes: u32,
}

/// A Fetch sent and not yet answered, with the offsets it asked for (so
/// its answer is applied only where the positions have not moved since).
pub(crate) struct InFlightFetch {
    response: ResponseFuture,
    requested: BTreeMap<TopicPartition, u64>,
}

impl std::fmt::Debug for InFlightFetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlightFetch")
            .field("requested", &self.requested)
            .finish()
    }
}

/// An answered fetch, not yet applied to any positions.
pub(crate) struct FetchAnswer {
    fetched: p::Fetched,
    requested: BTreeMap<TopicPartition, u64>,
}

/// Sends one multi-partition long-poll Fetch for `positions` (waiting up
/// to `wait` for data) without waiting for its answer. `rotate` varies
/// which partition comes first so a busy early partition cannot starve
/// later ones of the response budget.
pub(crate) fn send_fetch(
    client: &Client,
    positions: &BTreeMap<TopicPartition, u64>,
    rotate: usize,
    wait: Duration,
    limits: &FetchLimits,
) -> Result<InFlightFetch, ClientError> {
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
    Ok(InFlightFetch {
        response: client.start(&Request::Fetch(fetch))?,
        requested: positions.clone(),
    })
}

impl InFlightFetch {
    /// Waits for the answer.
    pub(crate) async fn answer(mut self) -> Result<FetchAnswer, ClientError> {
        self.answer_mut().await
    }

    /// Waits for the answer without giving the fetch up: a caller that stops
    /// waiting (a timeout) keeps it and can wait again later. Once it has
    /// answered, the fetch is spent: drop it (its response channel must not
    /// be polled again).
    pub(crate) async fn answer_mut(&mut self) -> Result<FetchAnswer, ClientError> {
        match (&mut self.response).await? {
            ResponseBody::Fetched(fetched) => Ok(FetchAnswer {
                fetched,
                requested: std::mem::take(&mut self.requested),
            }),
            other => Err(unexpected(&other, p::Op::Fetch)),
        }
    }
}

impl FetchAnswer {
    /// Whether any partition returned batches.
    pub(crate) fn has_batches(&self) -> bool {
        self.fetched
            .partitions
            .iter()
            .any(|fp| !fp.batches.is_empty())
    }

    /// The positions `positions` will have once this answer is applied,
    /// from its batch headers alone (nothing is checked or decoded), for
    /// sending the next fetch before this one is decoded. Partitions this
    /// answer does not apply to keep their position. Where a batch turns
    /// out corrupt, [`apply`] does not advance, and a fetch sent from here
    /// is ignored as stale.
    ///
    /// [`apply`]: FetchAnswer::apply
    pub(crate) fn positions_after(
        &self,
        positions: &BTreeMap<TopicPartition, u64>,
    ) -> BTreeMap<TopicPartition, u64> {
        let mut next = positions.clone();
        for fp in &self.fetched.partitions {
            if fp.error.is_some() {
                continue;
            }
            let key = (fp.topic.clone(), fp.partition);
            let asked = self.requested.get(&key);
            if let (Some(at), Some(after)) = (next.get_mut(&key), next_offset_after(&fp.batches)) {
                if asked == Some(at) {
                    *at = after.max(*at);
                }
            }
        }
        next
    }

    /// Decodes the answer, returns records at or past each position and
    /// advances positions past them. A partition whose position is no
    /// longer the offset this fetch asked for (it moved, or was dropped,
    /// since the fetch was sent) is skipped.
    pub(crate) fn apply(
        self,
        positions: &mut BTreeMap<TopicPartition, u64>,
        out_of_range: OutOfRange,
    ) -> FetchOutcome {
        let mut outcome = FetchOutcome {
            records: Vec::new(),
            gone: Vec::new(),
            error: None,
        };
        let mut advances = Vec::new();
        for fp in self.fetched.partitions {
            let key = (fp.topic.clone(), fp.partition);
            let Some(&position) = positions.get(&key) else {
                continue;
            };
            if self.requested.get(&key) != Some(&position) {
                continue;
            }
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
        outcome
    }
}
