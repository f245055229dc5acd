//! Sending batches within the in-flight window, and what their answers do:
//! deliver, retry in halves, or fail the slot.

use super::{Moved, Worker, LEADER_RETRY_MS, LEADER_WAIT_MS};
use crate::error::ClientError;
use crate::producer::batch::{answered, resend, split, unsent, Batch, Sent, Slot, SlotKey};
use crate::producer::delivery::Reply;
use crate::producer::{lock, Delivered};
use bytes::Bytes;
use futures::FutureExt;
use spool_proto::{self as p, Request, ResponseBody, Routing};
use spool_types::ErrorCode;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

impl Worker {
    /// Sends ready batches while the window has room, oldest first, each
    /// only while its slot is below its own in-flight limit (a slot's later
    /// batches wait behind its earlier ones); then open batches whose linger
    /// is over, oldest first, if their slot can send now.
    ///
    /// An open batch whose linger is over but whose slot is busy stays open
    /// and keeps taking messages until it can go (as Kafka's accumulator
    /// does): messages that pile up while requests are slow (a stalled
    /// fdatasync, say) then leave in one batch when an answer frees the
    /// slot, instead of one small batch per message, each waiting its turn.
    pub(super) fn dispatch(&mut self) {
        let mut index = 0;
        // Slots with a ready batch left behind: their open batches wait too.
        let mut held_back: Vec<SlotKey> = Vec::new();
        while self.in_flight.len() < self.options.max_in_flight && index < self.ready.len() {
            let Some(batch) = self.ready.get(index) else {
                return;
            };
            let key = (batch.topic.clone(), batch.slot);
            if self.slot_busy(&key) {
                if !held_back.contains(&key) {
                    held_back.push(key);
                }
                index += 1;
                continue;
            }
            let Some(batch) = self.ready.remove(index) else {
                return;
            };
            self.send_batch(key, batch);
        }
        if self.in_flight.len() >= self.options.max_in_flight || self.open.is_empty() {
            return;
        }
        let now = Instant::now();
        // Only batches that can go now are collected (so a batch waiting for
        // its slot costs no allocation per turn); sending one does not make
        // another's slot busy (one open batch per slot).
        let mut due: Vec<(u64, SlotKey)> = self
            .open
            .iter()
            .filter(|(key, b)| {
                b.deadline <= now && !held_back.contains(key) && !self.slot_busy(key)
            })
            .map(|(key, b)| (b.seq, key.clone()))
            .collect();
        due.sort_unstable_by_key(|(seq, _)| *seq);
        for (_, key) in due {
            if self.in_flight.len() >= self.options.max_in_flight {
                return;
            }
            if let Some(batch) = self.open.remove(&key) {
                self.send_batch(key, batch);
            }
        }
    }

    /// Whether `key`'s slot has as many requests in flight as it may, or
    /// is paused while refused batches are held.
    fn slot_busy(&self, key: &SlotKey) -> bool {
        self.slot_in_flight.get(key).copied().unwrap_or(0)
            >= self.options.max_in_flight_per_partition
            || self.held.contains_key(key)
    }

    fn send_batch(&mut self, key: SlotKey, batch: Batch) {
        let Batch {
            topic,
            slot,
            mut builder,
            replies,
            seq,
            resend,
            ..
        } = batch;
        if replies.is_empty() {
            self.part_done(seq);
            return;
        }
        if let Some(bytes) = resend {
            return self.send_bytes(key, topic, slot, seq, replies, bytes);
        }
        if let Err(e) = self.number(&topic, &mut builder) {
            return self.fail_part(replies, seq, &e);
        }
        let size = builder.size_bytes().min(self.options.max_batch_bytes);
        match self.batch_bytes_hints.get_mut(&key) {
            Some(hint) => *hint = size,
            None => {
                self.batch_bytes_hints.insert(key.clone(), size);
            }
        }
        let bytes = match builder.finish() {
            Ok(bytes) => Bytes::from(bytes),
            Err(e) => {
                let e = ClientError::local(e.code(), e.to_string());
                self.fail_part(replies, seq, &e);
                return;
            }
        };
        self.send_bytes(key, topic, slot, seq, replies, bytes);
    }

    /// Sends one encoded batch of slot `key`.
    fn send_bytes(
        &mut self,
        key: SlotKey,
        topic: String,
        slot: Slot,
        seq: u64,
        replies: Vec<Reply>,
        bytes: Bytes,
    ) {
        let request = Request::Produce(p::Produce {
            topic: topic.clone(),
            routing: match slot {
                Slot::Partition(n) => Routing::Partition(n),
                Slot::Spread => Routing::Spread,
            },
            batch: bytes.clone(),
        });
        let sent_order = self.next_sent_order;
        self.next_sent_order += 1;
        match self.client.start(&request) {
            Ok(response) => {
                *self.slot_in_flight.entry(key).or_default() += 1;
                self.in_flight.push(
                    response
                        .map(move |result| {
                            let sent = Sent {
                                topic,
                                slot,
                                seq,
                                sent_order,
                                replies,
                                batch: bytes,
                            };
                            (sent, result)
                        })
                        .boxed(),
                );
            }
            Err(e) => self.fail_part(replies, seq, &e),
        }
    }

    /// Answers every waiter of one part of batch `seq` with `e`.
    fn fail_part(&mut self, replies: Vec<Reply>, seq: u64, e: &ClientError) {
        for reply in replies {
            reply.send(Err(e.clone()));
        }
        self.part_done(seq);
    }

    /// Puts the halves of a sent batch first in line, in order, to go again;
    /// gives the batch back if it cannot be split.
    fn retry_in_halves(&mut self, sent: Sent) -> Result<(), Sent> {
        let (first, second) = split(sent, self.options.linger)?;
        if let Some(parts) = self.incomplete.get_mut(&first.seq) {
            *parts += 1;
        }
        self.ready.push_front(second);
        self.ready.push_front(first);
        Ok(())
    }

    /// Answers each message of an acknowledged batch with its own offset,
    /// and keeps the batch's buffer for reuse.
    fn deliver(&mut self, sent: Sent, produced: &p::Produced) {
        let delivered = |index: usize| Delivered {
            partition: produced.partition,
            offset: produced.base_offset.saturating_add(index as u64),
        };
        let mut replies = sent.replies.into_iter().enumerate().peekable();
        while let Some((index, reply)) = replies.next() {
            match reply {
                // A run of one `send_batch` call's messages is
                // answered under one lock.
                Reply::Many(gather, first) => {
                    let mut state = lock(&gather.state);
                    gather.set_locked(&mut state, first, Ok(delivered(index)));
                    while let Some((i, Reply::Many(g, at))) = replies.peek() {
                        if !Arc::ptr_eq(g, &gather) {
                            break;
                        }
                        gather.set_locked(&mut state, *at, Ok(delivered(*i)));
                        replies.next();
                    }
                }
                one => one.send(Ok(delivered(index))),
            }
        }
        self.part_done(sent.seq);
        self.recycle(sent.batch);
    }

    pub(super) fn complete(&mut self, sent: Sent, result: Result<ResponseBody, ClientError>) {
        let key = (sent.topic.clone(), sent.slot);
        let still_busy = match self.slot_in_flight.get_mut(&key) {
            Some(n) => {
                *n = n.saturating_sub(1);
                let busy = *n;
                if busy == 0 {
                    self.slot_in_flight.remove(&key);
                }
                busy > 0
            }
            None => false,
        };
        let result = match result {
            Ok(ResponseBody::Produced(produced)) => Ok(produced),
            Ok(other) => Err(ClientError::Protocol(format!(
                "expected a PRODUCE response, got {}",
                other.op()
            ))),
            Err(e) => Err(e),
        };
        let e = match result {
            Ok(produced) if answered(&produced) != Some(sent.replies.len() as u64) => {
                // Duplicate suppression (`spool-msg-id`): some records were
                // stored before, so the answer names only the new ones (or
                // the first original), not one offset per record. Everything
                // is stored now, so the halves, sent again, are duplicates
                // throughout; the server names consecutive originals exactly,
                // and a single record always. (Only a dedup window shorter
                // than this round trip could store a record twice here.)
                if let Err(sent) = self.retry_in_halves(sent) {
                    let e = ClientError::Protocol(format!(
                        "the server stored a batch of {} records as offsets {}..={}",
                        sent.replies.len(),
                        produced.base_offset,
                        produced.last_offset
                    ));
                    self.fail_part(sent.replies, sent.seq, &e);
                }
                if !still_busy {
                    self.retry_held(&key);
                }
                return;
            }
            Ok(produced) => {
                let after_held = self
                    .held
                    .get(&key)
                    .is_some_and(|(_, held)| held.iter().any(|h| h.sent_order < sent.sent_order));
                if let Some((e, held)) = after_held.then(|| self.held.remove(&key)).flatten() {
                    // Stored after batches refused before it: those can no
                    // longer be stored in order.
                    self.fail_slot(&key, held, &e);
                }
                self.deliver(sent, &produced);
                self.moved.remove(&key);
                if !still_busy {
                    self.release_held(&key);
                }
                return;
            }
            Err(e) => e,
        };
        if matches!(
            e.code(),
            Some(ErrorCode::UnknownTopic | ErrorCode::UnknownPartition)
        ) {
            // The topic may have been recreated with another count.
            lock(&self.partition_counts).remove(&sent.topic);
        }
        let outcome_unknown = e.code() == Some(ErrorCode::Timeout) && self.producer_id.is_some();
        if e.code() == Some(ErrorCode::NotLeader) || outcome_unknown {
            // A cluster's partition is changing leaders: nothing of the
            // batch was stored (NOT_LEADER), or perhaps it was (TIMEOUT),
            // which an idempotent producer may retry safely. Held like
            // QUEUE_FULL, then sent again once the new leader is known
            // (`release_held`).
            let (_, held) = self.held.entry(key.clone()).or_insert((e, Vec::new()));
            held.push(sent);
            if !still_busy {
                self.release_held(&key);
            }
            return;
        }
        if e.code() == Some(ErrorCode::QueueFull) {
            // Nothing of the batch was written. It is held (its slot paused)
            // until the slot's other requests are answered too; then, if
            // none of them was stored, the held batches go again in order,
            // the first in halves, so that exactly the messages that fit are
            // stored.
            let (_, held) = self.held.entry(key.clone()).or_insert((e, Vec::new()));
            held.push(sent);
            if !still_busy {
                self.retry_held(&key);
            }
            return;
        }
        let mut failed = vec![sent];
        if let Some((_, held)) = self.held.remove(&key) {
            failed.extend(held);
        }
        self.fail_slot(&key, failed, &e);
    }

    /// The slot has nothing in flight: its held batches go again, after a
    /// pause if they wait for a new leader (until `LEADER_WAIT_MS`, then
    /// they fail).
    fn release_held(&mut self, key: &SlotKey) {
        let not_leader = self.held.get(key).is_some_and(|(e, _)| {
            matches!(e.code(), Some(ErrorCode::NotLeader | ErrorCode::Timeout))
        });
        if !not_leader {
            return self.retry_held(key);
        }
        let now = Instant::now();
        let moved = self.moved.entry(key.clone()).or_insert(Moved {
            retry_at: None,
            give_up_at: now + Duration::from_millis(LEADER_WAIT_MS),
        });
        if now >= moved.give_up_at {
            self.moved.remove(key);
            if let Some((e, held)) = self.held.remove(key) {
                self.fail_slot(key, held, &e);
            }
            return;
        }
        moved.retry_at = Some(now + Duration::from_millis(LEADER_RETRY_MS));
    }

    /// Sends again, whole and in order, the held batches of slots whose
    /// pause after `NOT_LEADER` is over.
    pub(in crate::producer) fn retry_moved_due(&mut self) {
        let now = Instant::now();
        let due: Vec<SlotKey> = self
            .moved
            .iter_mut()
            .filter(|(_, m)| m.retry_at.is_some_and(|at| at <= now))
            .map(|(key, m)| {
                m.retry_at = None;
                key.clone()
            })
            .collect();
        for key in due {
            let Some((e, mut held)) = self.held.remove(&key) else {
                continue;
            };
            held.sort_by_key(|s| s.sent_order);
            let mut again = Vec::with_capacity(held.len());
            for sent in held {
                if self.producer_id.is_some() {
                    // The same bytes: the same sequence numbers.
                    again.push(resend(sent));
                    continue;
                }
                match unsent(sent, Duration::ZERO) {
                    Ok(batch) => again.push(batch),
                    Err(sent) => self.fail_part(sent.replies, sent.seq, &e),
                }
            }
            for batch in again.into_iter().rev() {
                self.ready.push_front(batch);
            }
        }
    }

    /// Sends a slot's held batches again, in order: the first in halves
    /// (the messages that fit are stored, then the next refusal splits
    /// again), the rest whole. A first batch of one message cannot be
    /// split: it is the first message that does not fit, and it and
    /// everything after it fail.
    fn retry_held(&mut self, key: &SlotKey) {
        let Some((e, mut held)) = self.held.remove(key) else {
            return;
        };
        held.sort_by_key(|s| s.sent_order);
        let mut rest = held.split_off(1);
        let Some(first) = held.pop() else {
            return;
        };
        let first = match split(first, self.options.linger) {
            Ok(halves) => halves,
            Err(first) => {
                rest.insert(0, first);
                return self.fail_slot(key, rest, &e);
            }
        };
        let mut again = Vec::with_capacity(rest.len());
        for sent in rest {
            match unsent(sent, self.options.linger) {
                Ok(batch) => again.push(batch),
                Err(sent) => self.fail_part(sent.replies, sent.seq, &e),
            }
        }
        if let Some(parts) = self.incomplete.get_mut(&first.0.seq) {
            *parts += 1;
        }
        for batch in again.into_iter().rev() {
            self.ready.push_front(batch);
        }
        self.ready.push_front(first.1);
        self.ready.push_front(first.0);
    }

    /// Fails `failed` (sent batches of `key`'s slot, answered or held) with
    /// `e`, and keeps what is stored a prefix of what was sent: everything
    /// queued behind them for the slot (the rest of a split batch, later
    /// batches, the batch being filled) fails too, instead of being
    /// appended after a gap, until the next flush.
    fn fail_slot(&mut self, key: &SlotKey, failed: Vec<Sent>, e: &ClientError) {
        let seqs: Vec<u64> = failed.iter().map(|s| s.seq).collect();
        for sent in failed {
            self.fail_part(sent.replies, sent.seq, e);
        }
        self.poisoned.insert(key.clone(), e.clone());
        let (mut doomed, rest): (VecDeque<Batch>, VecDeque<Batch>) =
            std::mem::take(&mut self.ready)
                .into_iter()
                .partition(|b| seqs.contains(&b.seq) || (&b.topic, b.slot) == (&key.0, key.1));
        self.ready = rest;
        if let Some(open) = self.open.remove(key) {
            doomed.push_back(open);
        }
        for b in doomed {
            self.fail_part(b.replies, b.seq, e);
        }
    }
}
