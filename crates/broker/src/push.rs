//! Push subscriptions (the active queue): a cursor over every partition of
//! the topics a subscriber named, advanced as batches are delivered, and
//! limited by the credit the subscriber grants. The front end loops
//! `next()` → send, and waits for appends or credit when it returns `None`.
//!
//! Credit rule: a batch is delivered only while both message and byte credit
//! are positive; it is debited whole, so credit can be overdrawn by at most one
//! batch. The broker therefore never has more than credit + one batch
//! outstanding for a subscriber.

use crate::broker::Broker;
use crate::error::Result;
use bytes::Bytes;
use spool_log::LogError;
use spool_types::TopicPattern;
use std::collections::BTreeMap;

pub use spool_types::limits::PUSH_DELIVERY_BYTES_MAX;

/// Where a push subscription begins on the partitions that exist when it starts.
/// Partitions of topics created later are read from their beginning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushStart {
    Earliest,
    Latest,
    Offset(i64),
}

/// Whole batches for one partition, ready to send.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub topic: String,
    pub partition: u32,
    pub batches: Bytes,
    pub records: u32,
    pub next_offset: i64,
}

#[derive(Debug)]
pub struct PushCursor {
    patterns: Vec<TopicPattern>,
    positions: BTreeMap<(String, u32), i64>,
    credit_messages: i64,
    credit_bytes: i64,
    rotate: usize,
}

impl PushCursor {
    pub fn new(
        broker: &Broker,
        patterns: Vec<TopicPattern>,
        start: PushStart,
        credit_messages: u32,
        credit_bytes: u32,
    ) -> Result<PushCursor> {
        let mut positions = BTreeMap::new();
        for (topic, partition) in broker.matching_partitions(&patterns) {
            let (first, end) = broker.offsets(&topic, partition)?;
            let at = match start {
                PushStart::Earliest => first,
                PushStart::Latest => end,
                PushStart::Offset(o) => o.clamp(first, end),
            };
            positions.insert((topic, partition), at);
        }
        Ok(PushCursor {
            patterns,
            positions,
            credit_messages: credit_messages as i64,
            credit_bytes: credit_bytes as i64,
            rotate: 0,
        })
    }

    /// Adds credit returned by the subscriber.
    pub fn grant(&mut self, messages: u32, bytes: u32) {
        self.credit_messages = self.credit_messages.saturating_add(messages as i64);
        self.credit_bytes = self.credit_bytes.saturating_add(bytes as i64);
    }

    pub fn has_credit(&self) -> bool {
        self.credit_messages > 0 && self.credit_bytes > 0
    }

    /// Picks up partitions of topics created since, and forgets deleted ones.
    fn refresh(&mut self, broker: &Broker) {
        let live = broker.matching_partitions(&self.patterns);
        self.positions.retain(|tp, _| live.contains(tp));
        for tp in live {
            if let std::collections::btree_map::Entry::Vacant(slot) = self.positions.entry(tp) {
                let (topic, partition) = slot.key();
                let first = broker
                    .offsets(topic, *partition)
                    .map(|(s, _)| s)
                    .unwrap_or(0);
                slot.insert(first);
            }
        }
    }

    /// The next delivery within credit, or `None` when there is nothing to
    /// send (no credit, or no new data).
    pub fn next(&mut self, broker: &Broker) -> Result<Option<Delivery>> {
        if !self.has_credit() {
            return Ok(None);
        }
        self.refresh(broker);
        let keys: Vec<(String, u32)> = self.positions.keys().cloned().collect();
        let n = keys.len();
        for i in 0..n {
            let tp = &keys[(self.rotate + i) % n];
            let position = self.positions[tp];
            let max_bytes = (self.credit_bytes as usize).clamp(1, PUSH_DELIVERY_BYTES_MAX);
            let read = match broker.fetch(&tp.0, tp.1, position, max_bytes) {
                Ok(r) => r,
                Err(e) if e.code == spool_types::ErrorCode::OffsetOutOfRange => {
                    // Retention moved past us: continue from the new start.
                    let (first, _) = broker.offsets(&tp.0, tp.1)?;
                    self.positions.insert(tp.clone(), first);
                    continue;
                }
                Err(e) if e.code == spool_types::ErrorCode::UnknownTopic => continue,
                Err(e) => return Err(e),
            };
            if read.bytes.is_empty() {
                continue;
            }
            let mut records = 0u32;
            for batch in spool_batch::split_batches(&read.bytes) {
                let h = spool_batch::BatchHeader::parse(batch.map_err(LogError::from)?)
                    .map_err(LogError::from)?;
                records += (h.next_offset() - position.max(h.base_offset)) as u32;
            }
            self.positions.insert(tp.clone(), read.next_offset);
            self.credit_messages -= records as i64;
            self.credit_bytes -= read.bytes.len() as i64;
            self.rotate = (self.rotate + i + 1) % n.max(1);
            return Ok(Some(Delivery {
                topic: tp.0.clone(),
                partition: tp.1,
                batches: read.bytes,
                records,
                next_offset: read.next_offset,
            }));
        }
        Ok(None)
    }
}

impl PushCursor {
    /// The partitions the cursor currently follows.
    pub fn partitions(&self) -> impl Iterator<Item = &(String, u32)> {
        self.positions.keys()
    }
}
