//! Idempotent producers (docs/cluster.md, "Idempotent producers"): what a
//! partition remembers of each producer's last batches, so that a batch
//! sent again after a leader change is answered with where it was stored
//! instead of being stored twice.
//!
//! A producer (its id handed out by the metadata group) numbers its
//! records per topic: a batch carries its producer id and the sequence
//! number of its first record (Kafka's `producerId`, `baseSequence`).
//! Sequences only grow, so a batch whose first sequence is not above every
//! sequence the partition has stored for that producer is a batch sent
//! before: the same batch again (a duplicate, answered with the original's
//! offsets) or one too old to tell (refused).
//!
//! The table is built by applying committed entries, in log order, on
//! every replica alike (so a new leader has it), and replayed at a start.

use std::collections::{HashMap, VecDeque};

/// Batches remembered per producer: a producer has at most a few batches
/// in flight per partition (the Rust client: one), so a retry names one of
/// its last few.
pub const RECENT_BATCHES_PER_PRODUCER: usize = 8;

/// Producers remembered per partition: past it, the one that wrote least
/// recently is forgotten (its next batch is taken as new). Bounds memory
/// at about 10,000 × 8 × 24 bytes ≈ 2 MiB per partition.
pub const PRODUCERS_PER_PARTITION_MAX: usize = 10_000;

/// One stored batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Default)]
struct Producer {
    recent: VecDeque<Written>,
    /// The log index of its last batch: the least recent is evicted first
    /// (by log order, so alike on every replica).
    last_index: u64,
}

/// What to do with a producer's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not seen: store it.
    New,
    /// Stored before, at these offsets: answer them, store nothing.
    Duplicate(Written),
    /// Its sequences are not above the last stored (`last_seq`), and it is
    /// not one of the batches remembered: refuse it.
    Stale { last_seq: i32 },
}

/// The producers of one partition.
#[derive(Debug, Default)]
pub struct ProducerTable {
    producers: HashMap<i64, Producer>,
}

impl ProducerTable {
    /// Records a committed batch of `producer_id` holding sequences
    /// `first_seq..=last_seq` at `base_offset..=last_offset`, entry `index`.
    pub fn applied(&mut self, producer_id: i64, written: Written, index: u64) {
        let producer = self.producers.entry(producer_id).or_default();
        producer.last_index = index;
        if producer.recent.len() == RECENT_BATCHES_PER_PRODUCER {
            producer.recent.pop_front();
        }
        producer.recent.push_back(written);
        if self.producers.len() > PRODUCERS_PER_PARTITION_MAX {
            let oldest = self
                .producers
                .iter()
                .min_by_key(|(id, p)| (p.last_index, **id))
                .map(|(id, _)| *id);
            if let Some(id) = oldest {
                self.producers.remove(&id);
            }
        }
    }

    /// What the committed batches say of a batch `first_seq..=last_seq`.
    pub fn check(&self, producer_id: i64, first_seq: i32, last_seq: i32) -> Verdict {
        let Some(producer) = self.producers.get(&producer_id) else {
            return Verdict::New;
        };
        if let Some(w) = producer
            .recent
            .iter()
            .find(|w| w.first_seq == first_seq && w.last_seq == last_seq)
        {
            return Verdict::Duplicate(*w);
        }
        let stored_last = producer.recent.iter().map(|w| w.last_seq).max();
        match stored_last {
            Some(last) if first_seq <= last => Verdict::Stale { last_seq: last },
            _ => Verdict::New,
        }
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

/// The producer fields of a stored or proposed batch: `(producer id, first
/// sequence, last sequence)` when it comes from an idempotent producer.
pub fn producer_of(batch: &[u8]) -> Option<(i64, i32, i32)> {
    let header = spool_batch::BatchHeader::parse_with_control(batch).ok()?;
    if header.is_control() || header.producer_id < 0 || header.base_sequence < 0 {
        return None;
    }
    let last = header.base_sequence.checked_add(header.last_offset_delta)?;
    Some((header.producer_id, header.base_sequence, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(first_seq: i32, last_seq: i32, base_offset: i64) -> Written {
        Written {
            first_seq,
            last_seq,
            base_offset,
            last_offset: base_offset + (last_seq - first_seq) as i64,
        }
    }

    #[test]
    fn a_batch_sent_again_is_a_duplicate_and_an_older_one_stale() {
        let mut table = ProducerTable::default();
        assert_eq!(table.check(7, 0, 9), Verdict::New);
        table.applied(7, w(0, 9, 100), 1);
        table.applied(7, w(10, 19, 110), 2);
        assert_eq!(table.check(7, 10, 19), Verdict::Duplicate(w(10, 19, 110)));
        assert_eq!(table.check(7, 0, 9), Verdict::Duplicate(w(0, 9, 100)));
        assert_eq!(table.check(7, 20, 29), Verdict::New);
        assert_eq!(table.check(7, 5, 14), Verdict::Stale { last_seq: 19 });
        // Another producer's sequences are its own.
        assert_eq!(table.check(8, 0, 9), Verdict::New);
        // Only the last few batches are remembered; older ones are stale.
        for i in 2..20 {
            table.applied(7, w(i * 10, i * 10 + 9, 100 + i as i64 * 10), i as u64 + 1);
        }
        assert_eq!(table.check(7, 0, 9), Verdict::Stale { last_seq: 199 });
    }

    #[test]
    fn the_least_recent_producer_is_forgotten_past_the_limit() {
        let mut table = ProducerTable::default();
        for id in 0..=PRODUCERS_PER_PARTITION_MAX as i64 {
            table.applied(id, w(0, 0, id), id as u64);
        }
        assert_eq!(table.len(), PRODUCERS_PER_PARTITION_MAX);
        assert_eq!(
            table.check(0, 0, 0),
            Verdict::New,
            "producer 0 wrote least recently"
        );
        assert!(matches!(table.check(1, 0, 0), Verdict::Duplicate(_)));
    }
}
