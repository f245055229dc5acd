//! The consumer side of consume and end-to-end: a reader over a fixed set
//! of partitions with long-poll Fetch (the same requests and limits as the
//! client's `TopicReader`: 1 MiB per partition, 8 MiB per fetch), each
//! batch fully checked and decoded. Consumers split the partitions
//! between them statically (partition `p` goes to consumer `p % N`), so no
//! group rebalance falls into the measured time.

use spool_client::{decode_records, Client, ClientError, ConsumedRecord, WireError};
use spool_proto as p;
use std::time::{Duration, Instant};

const PARTITION_BYTES: u32 = 1024 * 1024;
const FETCH_BYTES: u32 = 8 * 1024 * 1024;

#[derive(Debug, Clone, Copy)]
struct Part {
    partition: u32,
    position: u64,
    /// Stop reading at this offset (consume); `None`: read on (end-to-end).
    end: Option<u64>,
}

/// Reads some partitions of one topic.
pub struct Reader {
    client: Client,
    topic: String,
    parts: Vec<Part>,
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
        }
    }

    fn open(part: &Part) -> bool {
        part.end.is_none_or(|end| part.position < end)
    }

    /// Every partition has reached its end offset.
    pub fn done(&self) -> bool {
        !self.parts.iter().any(Self::open)
    }

    /// One fetch over the partitions not yet at their end, waiting up to
    /// `wait` for data: the records, and when the response arrived.
    pub async fn next(
        &mut self,
        wait: Duration,
    ) -> Result<(Vec<ConsumedRecord>, Instant), ClientError> {
        let partitions: Vec<p::FetchPartition> = self
            .parts
            .iter()
            .filter(|part| Self::open(part))
            .map(|part| p::FetchPartition {
                topic: self.topic.clone(),
                partition: part.partition,
                offset: part.position,
                max_bytes: PARTITION_BYTES,
            })
            .collect();
        if partitions.is_empty() {
            return Ok((Vec::new(), Instant::now()));
        }
        let fetched = self
            .client
            .fetch(p::Fetch {
                max_wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
                max_bytes: FETCH_BYTES,
                partitions,
            })
            .await?;
        let at = Instant::now();
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
            let decoded = decode_records(&fp.topic, fp.partition, &fp.batches, part.position)?;
            if let Some(next) = decoded.next_offset {
                part.position = part.position.max(next);
            }
            records.extend(decoded.records);
        }
        Ok((records, at))
    }
}
