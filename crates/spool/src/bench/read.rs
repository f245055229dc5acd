//! The consumer side of consume and end-to-end: a reader over a fixed set
//! of partitions with long-poll Fetch (the same requests and limits as the
//! client's `TopicReader`: 1 MiB per partition, 8 MiB per fetch), each
//! batch fully checked and decoded. Consumers split the partitions
//! between them statically (partition `p` goes to consumer `p % N`), so no
//! group rebalance falls into the measured time.
//!
//! Like `TopicReader`, a reader sends its next fetch (from the positions
//! after the last answer, found from the batch headers) before it decodes
//! an answer, so the server reads and sends while the client checks.

use spool_client::{
    decode_records, next_offset_after, Client, ClientError, ConsumedRecord, WireError,
};
use spool_proto as p;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

const PARTITION_BYTES: u32 = 1024 * 1024;
const FETCH_BYTES: u32 = 8 * 1024 * 1024;

#[derive(Debug, Clone, Copy)]
struct Part {
    partition: u32,
    position: u64,
    /// Stop reading at this offset (consume); `None`: read on (end-to-end).
    end: Option<u64>,
}

/// A fetch sent ahead: the positions it asked for, and its answer with the
/// time it arrived.
struct Ahead {
    asked: Vec<(u32, u64)>,
    answer: JoinHandle<(Result<p::Fetched, ClientError>, Instant)>,
}

/// Reads some partitions of one topic.
pub struct Reader {
    client: Client,
    topic: String,
    parts: Vec<Part>,
    ahead: Option<Ahead>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(ahead) = self.ahead.take() {
            ahead.answer.abort();
        }
    }
}

impl Reader {
    /// Reads `partitions`, each `(partition, from, until)`.
    pub fn new(client: Client, topic: &str, partitions: Vec<(u32, u64, Option<u64>)>) -> Reader {
        Reader {
            client,
            topic: topic.to_owned(),
            parts: partitions
                .into_iter()
                .map(|(partition, position, end)| Part {
                    partition,
                    position,
                    end,
                })
                .collect(),
            ahead: None,
        }
    }

    fn open(part: &Part) -> bool {
        part.end.is_none_or(|end| part.position < end)
    }

    /// Every partition has reached its end offset.
    pub fn done(&self) -> bool {
        !self.parts.iter().any(Self::open)
    }

    /// The fetch for the open partitions at `positions` (partition, offset).
    fn request(&self, positions: &[(u32, u64)], wait: Duration) -> p::Fetch {
        p::Fetch {
            max_wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
            max_bytes: FETCH_BYTES,
            partitions: positions
                .iter()
                .map(|&(partition, offset)| p::FetchPartition {
                    topic: self.topic.clone(),
                    partition,
                    offset,
                    max_bytes: PARTITION_BYTES,
                })
                .collect(),
        }
    }

    /// Sends a fetch for `positions` without waiting for it (nothing is
    /// sent when every partition is at its end).
    fn send(&self, positions: Vec<(u32, u64)>, wait: Duration) -> Option<Ahead> {
        if positions.is_empty() {
            return None;
        }
        let (client, fetch) = (self.client.clone(), self.request(&positions, wait));
        let answer = tokio::spawn(async move {
            let fetched = client.fetch(fetch).await;
            (fetched, Instant::now())
        });
        Some(Ahead {
            asked: positions,
            answer,
        })
    }

    fn open_positions(&self) -> Vec<(u32, u64)> {
        self.parts
            .iter()
            .filter(|part| Self::open(part))
            .map(|part| (part.partition, part.position))
            .collect()
    }

    /// One fetch over the partitions not yet at their end, waiting up to
    /// `wait` for data: the records, and when the response arrived.
    pub async fn next(
        &mut self,
        wait: Duration,
    ) -> Result<(Vec<ConsumedRecord>, Instant), ClientError> {
        let ahead = match self.ahead.take() {
            Some(ahead) => ahead,
            None => match self.send(self.open_positions(), wait) {
                Some(sent) => sent,
                None => return Ok((Vec::new(), Instant::now())),
            },
        };
        let (fetched, at) = ahead
            .answer
            .await
            .map_err(|e| ClientError::Closed(format!("the fetch task failed: {e}")))?;
        let fetched = fetched?;
        if fetched.partitions.iter().any(|fp| !fp.batches.is_empty()) {
            // Without waiting: if nothing more is there, the next call
            // sends a long poll of its own.
            // From the current positions, advanced where this answer
            // applies (a stale answer advances nothing).
            let next: Vec<(u32, u64)> = self
                .parts
                .iter()
                .map(|part| {
                    let asked = ahead.asked.iter().find(|a| a.0 == part.partition);
                    let after = fetched
                        .partitions
                        .iter()
                        .find(|fp| fp.partition == part.partition && fp.error.is_none())
                        .and_then(|fp| next_offset_after(&fp.batches))
                        .filter(|_| asked.map(|a| a.1) == Some(part.position));
                    (part, after.map_or(part.position, |a| a.max(part.position)))
                })
                .filter(|(part, offset)| part.end.is_none_or(|end| *offset < end))
                .map(|(part, offset)| (part.partition, offset))
                .collect();
            self.ahead = self.send(next, Duration::ZERO);
        }
        let mut records = Vec::new();
        for fp in fetched.partitions {
            let Some(part) = self
                .parts
                .iter_mut()
                .find(|part| part.partition == fp.partition)
            else {
                continue;
            };
            if let Some(code) = fp.error {
                return Err(ClientError::Server(WireError {
                    code,
                    message: format!("fetching {}/{} failed", fp.topic, fp.partition),
                    retry_after_ms: None,
                }));
            }
            let asked = ahead.asked.iter().find(|a| a.0 == fp.partition);
            if asked.map(|a| a.1) != Some(part.position) {
                continue; // sent ahead from a position that did not hold
            }
            let decoded = decode_records(&fp.topic, fp.partition, &fp.batches, part.position)?;
            if let Some(next) = decoded.next_offset {
                part.position = part.position.max(next);
            }
            records.extend(decoded.records);
        }
        Ok((records, at))
    }
}
