//! [`GroupConsumer`]: a member of a consumer group (the passive queue).
//!
//! The server assigns the group's partitions among its live members. This
//! member keeps a local *position* per held partition: the next offset to
//! return. [`GroupConsumer::poll`] fetches from the positions and advances
//! them past what it returns; [`GroupConsumer::commit`] stores them, so the
//! committed point is "everything returned by earlier polls" (at-least-once).
//!
//! Heartbeats happen only inside `poll` (about every
//! `min(session_timeout / 3, 500 ms)`), so an application must call `poll`
//! more often than the session timeout, or the server expires the member and
//! gives its partitions to others. An application busy for longer with
//! records already returned calls [`GroupConsumer::keep_alive`] meanwhile.
//!
//! Hand-off (see the broker's `group.rs`): when a heartbeat reports a new
//! generation, partitions missing from the new assignment are committed
//! first (the server still counts this member as their holder until it
//! heartbeats with the new generation), then dropped; new partitions start
//! at the offset in the assignment; kept ones keep their local position.
//! The member then adopts the generation and heartbeats again at once,
//! which releases the dropped partitions to their new owners.
//!
//! Like [`crate::TopicReader`], a member that got records keeps its next
//! fetch on the way (a long poll from the positions after them) while the
//! application handles and commits them: a commit's fdatasync and the wait
//! for the next message overlap instead of taking turns, and a message that
//! becomes durable meanwhile is already on its way when the next `poll`
//! starts. The fetch sent ahead never moves a position: only `poll`
//! returning records does, so `commit` stores exactly what was returned.

use crate::client::Client;
use crate::error::ClientError;
use crate::fetcher::{send_fetch, FetchLimits, InFlightFetch, OutOfRange, TopicPartition};
use crate::records::ConsumedRecord;
use spool_proto::{self as p, GroupStart};
use spool_types::ErrorCode;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// How often a member heartbeats at most.
const HEARTBEAT_INTERVAL_MAX: Duration = Duration::from_millis(500);

/// Most heartbeats in a row while generations keep changing.
const HEARTBEATS_PER_REBALANCE: usize = 8;

/// Group membership and fetch settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOptions {
    /// The server expires a member that has not heartbeated for this long
    /// (it clamps the value to 1 s … 300 s).
    pub session_timeout: Duration,
    /// Where to begin on partitions the group has no committed offset for.
    pub start: GroupStart,
    /// Most bytes fetched from one partition per poll (a first batch may
    /// exceed it).
    pub max_partition_bytes: u32,
    /// Most bytes fetched per poll in all.
    pub max_fetch_bytes: u32,
}

impl Default for GroupOptions {
    fn default() -> Self {
        GroupOptions {
            session_timeout: Duration::from_secs(10),
            start: GroupStart::Earliest,
            max_partition_bytes: 1024 * 1024,
            max_fetch_bytes: 8 * 1024 * 1024,
        }
    }
}

/// A consumer-group member with poll and commit.
#[derive(Debug)]
pub struct GroupConsumer {
    client: Client,
    group: String,
    topics: Vec<String>,
    options: GroupOptions,
    member_id: String,
    generation: u32,
    /// Next offset to return, per held partition.
    positions: BTreeMap<TopicPartition, u64>,
    /// What the server has stored for held partitions, as far as we know.
    committed: BTreeMap<TopicPartition, u64>,
    last_heartbeat: Instant,
    heartbeat_every: Duration,
    rotate: usize,
    /// The fetch sent ahead after a poll that returned records, if any;
    /// dropped whenever the held partitions or a position change otherwise.
    ahead: Option<InFlightFetch>,
}

fn session_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

impl GroupConsumer {
    /// Joins `group`, consuming the named topics and/or patterns
    /// (`orders.*`, `orders.>`); topics created later that match are
    /// picked up by the group.
    pub async fn join(
        client: Client,
        group: &str,
        topics: Vec<String>,
        options: GroupOptions,
    ) -> Result<GroupConsumer, ClientError> {
        let heartbeat_every = (options.session_timeout / 3)
            .min(HEARTBEAT_INTERVAL_MAX)
            .max(Duration::from_millis(50));
        let mut consumer = GroupConsumer {
            client,
            group: group.to_owned(),
            topics,
            options,
            member_id: String::new(),
            generation: 0,
            positions: BTreeMap::new(),
            committed: BTreeMap::new(),
            last_heartbeat: Instant::now(),
            heartbeat_every,
            rotate: 0,
            ahead: None,
        };
        consumer.rejoin().await?;
        Ok(consumer)
    }

    /// The member id the server gave this member.
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// The partitions held now, each with its local position.
    pub fn assignment(&self) -> Vec<p::PartitionOffset> {
        self.positions
            .iter()
            .map(|((topic, partition), offset)| p::PartitionOffset {
                topic: topic.clone(),
                partition: *partition,
                offset: *offset,
            })
            .collect()
    }

    /// The local position (next offset to return) of a held partition.
    pub fn position(&self, topic: &str, partition: u32) -> Option<u64> {
        self.positions.get(&(topic.to_owned(), partition)).copied()
    }

    /// Moves a held partition's position, e.g. back to the first record the
    /// application did not process, so [`GroupConsumer::commit`] stores
    /// that instead. Returns false if the partition is not held.
    pub fn seek(&mut self, topic: &str, partition: u32, offset: u64) -> bool {
        match self.positions.get_mut(&(topic.to_owned(), partition)) {
            Some(position) => {
                *position = offset;
                // It asked for the old position: the partition would wait
                // for a fetch of its own until the next poll.
                self.ahead = None;
                true
            }
            None => false,
        }
    }

    /// Joins as a fresh member and takes every position from the assignment.
    async fn rejoin(&mut self) -> Result<(), ClientError> {
        let joined = self
            .client
            .join_group(p::JoinGroup {
                group: self.group.clone(),
                member_id: None,
                topics: self.topics.clone(),
                session_timeout_ms: session_ms(self.options.session_timeout),
                start: self.options.start,
            })
            .await?;
        self.last_heartbeat = Instant::now();
        self.member_id = joined.member_id;
        self.generation = joined.generation;
        self.ahead = None;
        self.positions.clear();
        self.committed.clear();
        for a in joined.assignment {
            let key = (a.topic, a.partition);
            self.positions.insert(key.clone(), a.offset);
            self.committed.insert(key, a.offset);
        }
        Ok(())
    }

    /// Heartbeats, following rebalances until the generation is stable.
    async fn heartbeat(&mut self) -> Result<(), ClientError> {
        for _ in 0..HEARTBEATS_PER_REBALANCE {
            self.last_heartbeat = Instant::now();
            let ok = match self
                .client
                .heartbeat(&self.group, &self.member_id, self.generation)
                .await
            {
                Ok(ok) => ok,
                Err(e) if e.code() == Some(ErrorCode::UnknownMember) => {
                    // Our session expired: our partitions went to others, who
                    // continue from the committed offsets.
                    return self.rejoin().await;
                }
                Err(e) => return Err(e),
            };
            self.apply_assignment(ok.assignment).await?;
            if ok.generation == self.generation {
                return Ok(());
            }
            // Seen the new generation: adopt it, and heartbeat with it right
            // away so the partitions we dropped go to their new owners.
            self.generation = ok.generation;
        }
        Ok(())
    }

    /// Switches to `assignment`: lost partitions are committed, then dropped;
    /// new ones start at the assigned offset; kept ones keep their position.
    async fn apply_assignment(
        &mut self,
        assignment: Vec<p::PartitionOffset>,
    ) -> Result<(), ClientError> {
        let assigned: BTreeMap<TopicPartition, u64> = assignment
            .into_iter()
            .map(|a| ((a.topic, a.partition), a.offset))
            .collect();
        let lost: Vec<TopicPartition> = self
            .positions
            .keys()
            .filter(|tp| !assigned.contains_key(*tp))
            .cloned()
            .collect();
        if !lost.is_empty() {
            match self.commit_partitions(&lost).await {
                Ok(()) => {}
                // Already gone (deleted topic, expired hold): nothing to save.
                Err(e)
                    if matches!(
                        e.code(),
                        Some(ErrorCode::NotAssigned | ErrorCode::UnknownMember)
                    ) => {}
                Err(e) => return Err(e),
            }
            for tp in &lost {
                self.positions.remove(tp);
                self.committed.remove(tp);
            }
            self.ahead = None;
        }
        for (tp, offset) in assigned {
            if !self.positions.contains_key(&tp) {
                self.positions.insert(tp.clone(), offset);
                self.committed.insert(tp, offset);
                // The fetch sent ahead does not cover the new partition.
                self.ahead = None;
            }
        }
        Ok(())
    }

    /// Keeps the session alive while the application is busy with records
    /// already returned (call it every few hundred milliseconds): heartbeats
    /// if one is due, with the current generation, and changes nothing
    /// locally. A pending rebalance waits for the next [`GroupConsumer::poll`]
    /// (the server keeps this member's partitions until it has seen the new
    /// generation), so nothing unprocessed is committed or handed over.
    pub async fn keep_alive(&mut self) -> Result<(), ClientError> {
        if !self.heartbeat_due() {
            return Ok(());
        }
        self.last_heartbeat = Instant::now();
        match self
            .client
            .heartbeat(&self.group, &self.member_id, self.generation)
            .await
        {
            Ok(_) => Ok(()),
            // Handled by the next poll, which rejoins.
            Err(e) if e.code() == Some(ErrorCode::UnknownMember) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn heartbeat_due(&self) -> bool {
        self.last_heartbeat.elapsed() >= self.heartbeat_every
    }

    /// Returns the next records of the held partitions, waiting up to
    /// `max_wait` for some; an empty vector means none arrived in time.
    ///
    /// Heartbeats (and any rebalance) happen here, so call `poll` more often
    /// than the session timeout. Records returned count as processed at the
    /// next [`GroupConsumer::commit`] or rebalance.
    pub async fn poll(&mut self, max_wait: Duration) -> Result<Vec<ConsumedRecord>, ClientError> {
        let deadline = Instant::now() + max_wait;
        loop {
            if self.heartbeat_due() {
                self.heartbeat().await?;
            }
            let now = Instant::now();
            let until = deadline.min(self.last_heartbeat + self.heartbeat_every);
            if self.positions.is_empty() {
                if now >= deadline {
                    return Ok(Vec::new());
                }
                tokio::time::sleep_until(until).await;
                continue;
            }
            let limits = FetchLimits {
                partition_bytes: self.options.max_partition_bytes,
                total_bytes: self.options.max_fetch_bytes,
            };
            let answer = match self.ahead.take() {
                // Sent by an earlier poll; a heartbeat that falls due (or
                // this poll's deadline) comes first, and the fetch is kept.
                Some(mut ahead) => match tokio::time::timeout_at(until, ahead.answer_mut()).await {
                    Ok(answer) => answer?,
                    Err(_) => {
                        self.ahead = Some(ahead);
                        if Instant::now() >= deadline {
                            return Ok(Vec::new());
                        }
                        continue;
                    }
                },
                None => {
                    self.rotate = self.rotate.wrapping_add(1);
                    let wait = until.saturating_duration_since(now);
                    send_fetch(&self.client, &self.positions, self.rotate, wait, &limits)?
                        .answer()
                        .await?
                }
            };
            if answer.has_batches() {
                // The next fetch goes now, a long poll from the positions
                // after these records, while the application handles and
                // commits them.
                self.rotate = self.rotate.wrapping_add(1);
                self.ahead = send_fetch(
                    &self.client,
                    &answer.positions_after(&self.positions),
                    self.rotate,
                    max_wait.min(self.heartbeat_every),
                    &limits,
                )
                .ok();
            }
            let outcome = answer.apply(&mut self.positions, OutOfRange::ToStart);
            for tp in &outcome.gone {
                self.committed.remove(tp);
            }
            if let Some(result) = outcome.poll_result(deadline) {
                return result;
            }
        }
    }

    /// Commits the positions of every held partition that moved since its
    /// last commit. A partition the server says this member no longer holds
    /// (`NOT_ASSIGNED`) is dropped locally. `UNKNOWN_MEMBER` (the session
    /// expired) is returned; the next `poll` rejoins.
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        let all: Vec<TopicPartition> = self.positions.keys().cloned().collect();
        self.commit_partitions(&all).await
    }

    async fn commit_partitions(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<(), ClientError> {
        let changed: Vec<p::PartitionOffset> = partitions
            .iter()
            .filter_map(|tp| {
                let position = *self.positions.get(tp)?;
                (self.committed.get(tp) != Some(&position)).then(|| p::PartitionOffset {
                    topic: tp.0.clone(),
                    partition: tp.1,
                    offset: position,
                })
            })
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        match self.send_commit(changed.clone()).await {
            Err(e) if e.code() == Some(ErrorCode::NotAssigned) => {
                // The server refused the whole commit for some partition we
                // no longer hold: commit one by one to find which.
                for offset in changed {
                    let tp = (offset.topic.clone(), offset.partition);
                    match self.send_commit(vec![offset]).await {
                        Ok(()) => {}
                        Err(e) if e.code() == Some(ErrorCode::NotAssigned) => {
                            self.positions.remove(&tp);
                            self.committed.remove(&tp);
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            other => other,
        }
    }

    async fn send_commit(&mut self, offsets: Vec<p::PartitionOffset>) -> Result<(), ClientError> {
        self.client
            .commit_offsets(
                &self.group,
                &self.member_id,
                self.generation,
                offsets.clone(),
            )
            .await?;
        for o in offsets {
            self.committed.insert((o.topic, o.partition), o.offset);
        }
        Ok(())
    }

    /// Commits, then leaves the group so its partitions move to the other
    /// members at once. Returns the first error, but always tries to leave.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.ahead = None;
        let committed = self.commit().await;
        let left = match self.client.leave_group(&self.group, &self.member_id).await {
            Err(e) if e.code() == Some(ErrorCode::UnknownMember) => Ok(()),
            other => other,
        };
        committed.and(left)
    }
}
