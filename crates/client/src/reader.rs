//! [`TopicReader`]: reads every partition of the topics matching a name or
//! pattern directly with Fetch, without a consumer group (nothing is
//! committed). The pattern is listed again about every
//! [`TopicReader::REFRESH`], so topics created later are picked up, from
//! their beginning.
//!
//! While there is data to read, a reader keeps its next fetch on the way:
//! as soon as an answer arrives it sends the fetch for the positions after
//! it (found from the batch headers) and only then decodes the answer and
//! returns the records. The server reads and sends the next batches while
//! the client checks and handles these, instead of both taking turns. That
//! fetch is a long poll: once the reader has caught up, it waits on the
//! server for the next message rather than coming back empty.

use crate::client::Client;
use crate::error::ClientError;
use crate::fetcher::{send_fetch, FetchLimits, InFlightFetch, OutOfRange, TopicPartition};
use crate::records::ConsumedRecord;
use spool_types::TopicPattern;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::Instant;

/// Where a [`TopicReader`] starts on the partitions that exist when it is
/// created. Partitions that appear later are read from their beginning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStart {
    Earliest,
    Latest,
    /// This offset on every partition, clamped into the partition's range.
    Offset(u64),
}

/// A group-less reader over the topics matching a name or pattern.
#[derive(Debug)]
pub struct TopicReader {
    client: Client,
    pattern: String,
    positions: BTreeMap<TopicPartition, u64>,
    next_refresh: Instant,
    rotate: usize,
    /// The fetch sent ahead after an answer with data, if any: a long poll,
    /// kept by a poll whose deadline passes before it is answered.
    ahead: Option<InFlightFetch>,
}

/// How much one fetch may return: per partition, and in all.
const FETCH_LIMITS: FetchLimits = FetchLimits {
    partition_bytes: 1024 * 1024,
    total_bytes: 8 * 1024 * 1024,
};

impl TopicReader {
    /// How often the pattern is listed again.
    pub const REFRESH: Duration = Duration::from_millis(500);

    /// Starts reading `topic_or_pattern`. A plain topic name must exist
    /// (`UNKNOWN_TOPIC` otherwise); a pattern may match nothing yet.
    pub async fn new(
        client: Client,
        topic_or_pattern: &str,
        start: ReadStart,
    ) -> Result<TopicReader, ClientError> {
        let wildcard = TopicPattern::new(topic_or_pattern).is_ok_and(|p| p.is_wildcard());
        let topics: Vec<String> = if wildcard {
            client
                .list_topics(Some(topic_or_pattern))
                .await?
                .into_iter()
                .map(|t| t.name)
                .collect()
        } else {
            vec![topic_or_pattern.to_owned()]
        };
        let mut positions = BTreeMap::new();
        for topic in topics {
            let description = match client.describe_topic(&topic).await {
                Ok(d) => d,
                // Deleted between the listing and now.
                Err(e) if wildcard && e.code() == Some(spool_types::ErrorCode::UnknownTopic) => {
                    continue
                }
                Err(e) => return Err(e),
            };
            for info in description.partitions {
                let offset = match start {
                    ReadStart::Earliest => info.start_offset,
                    ReadStart::Latest => info.end_offset,
                    ReadStart::Offset(o) => {
                        o.clamp(info.start_offset, info.end_offset.max(info.start_offset))
                    }
                };
                positions.insert((topic.clone(), info.partition), offset);
            }
        }
        Ok(TopicReader {
            client,
            pattern: topic_or_pattern.to_owned(),
            positions,
            next_refresh: Instant::now() + Self::REFRESH,
            rotate: 0,
            ahead: None,
        })
    }

    /// The partitions being read, each with its next offset.
    pub fn positions(&self) -> &BTreeMap<TopicPartition, u64> {
        &self.positions
    }

    /// Lists the pattern again: adds new partitions (from offset 0, which
    /// the first fetch moves to the partition's start), forgets deleted ones.
    async fn refresh(&mut self) -> Result<(), ClientError> {
        self.next_refresh = Instant::now() + Self::REFRESH;
        let topics = self.client.list_topics(Some(&self.pattern)).await?;
        let mut live = BTreeSet::new();
        for t in topics {
            for partition in 0..t.partitions {
                live.insert((t.name.clone(), partition));
            }
        }
        self.positions.retain(|tp, _| live.contains(tp));
        let kept = self.positions.len();
        for tp in live {
            self.positions.entry(tp).or_insert(0);
        }
        if self.positions.len() != kept {
            // The fetch sent ahead does not cover the new partitions; while
            // data keeps coming one is always ahead, so they would wait.
            self.ahead = None;
        }
        Ok(())
    }

    /// Returns the next records of any matching partition, waiting up to
    /// `max_wait` for some; an empty vector means none arrived in time.
    pub async fn poll(&mut self, max_wait: Duration) -> Result<Vec<ConsumedRecord>, ClientError> {
        let deadline = Instant::now() + max_wait;
        loop {
            if Instant::now() >= self.next_refresh {
                self.refresh().await?;
            }
            let now = Instant::now();
            let until = deadline.min(self.next_refresh);
            if self.positions.is_empty() {
                if now >= deadline {
                    return Ok(Vec::new());
                }
                tokio::time::sleep_until(until).await;
                continue;
            }
            let answer = match self.ahead.take() {
                // Sent by an earlier poll, it may wait past this one's
                // deadline: then it is kept for the next poll.
                Some(mut ahead) => {
                    match tokio::time::timeout_at(deadline, ahead.answer_mut()).await {
                        Ok(answer) => answer?,
                        Err(_) => {
                            self.ahead = Some(ahead);
                            return Ok(Vec::new());
                        }
                    }
                }
                None => {
                    self.rotate = self.rotate.wrapping_add(1);
                    let wait = until.saturating_duration_since(now);
                    send_fetch(
                        &self.client,
                        &self.positions,
                        self.rotate,
                        wait,
                        &FETCH_LIMITS,
                    )?
                    .answer()
                    .await?
                }
            };
            if answer.has_batches() {
                // The next fetch goes now, while the caller handles these
                // records, as a long poll: the server answers it as soon as
                // there is more. (A fetch that did not wait came back empty
                // whenever messages arrive one by one, and the poll after
                // it sent a long poll of its own: two round trips a message.)
                self.rotate = self.rotate.wrapping_add(1);
                self.ahead = send_fetch(
                    &self.client,
                    &answer.positions_after(&self.positions),
                    self.rotate,
                    max_wait.min(Self::REFRESH),
                    &FETCH_LIMITS,
                )
                .ok();
            }
            let outcome = answer.apply(&mut self.positions, OutOfRange::Clamp);
            if let Some(result) = outcome.poll_result(deadline) {
                return result;
            }
        }
    }
}
