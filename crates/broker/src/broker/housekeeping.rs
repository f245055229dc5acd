//! Housekeeping: the periodic tick (sessions, dead letters, retention,
//! interval syncs, snapshots), flush at shutdown, and numbers for metrics.

use super::*;
use crate::config::Retention;
use crate::error::Result;
use crate::subscription::Subscription;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// `now_ms` as an RFC 3339 UTC timestamp with milliseconds. A time jiff
/// cannot represent (beyond ±9999 years) is shown as its number.
pub fn rfc3339_utc(now_ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(now_ms) {
        Ok(t) => format!("{t:.3}"),
        Err(_) => format!("{now_ms} ms after the Unix epoch"),
    }
}

impl Broker {
    // ---- housekeeping -------------------------------------------------------

    /// Periodic work, called by the owner every few hundred milliseconds:
    /// expires group sessions, applies retention and work-queue release,
    /// syncs `interval` logs and snapshots the metadata log.
    /// A failure in one queue, topic or store is logged with what failed
    /// and the tick goes on with the others; the first one is returned.
    pub fn tick(&self, now_ms: i64) -> Result<()> {
        let catalog = self.topics.catalog();
        for (group, member) in self.groups.coordinator().expire(now_ms, &catalog) {
            tracing::info!(%group, %member, "consumer session expired; partitions reassigned");
        }
        let mut first_error = None;
        let mut note = |what: &dyn std::fmt::Display, r: Result<()>| {
            if let Err(e) = r {
                tracing::error!("housekeeping of {what} failed: {e}");
                first_error.get_or_insert(e);
            }
        };
        for q in &self.subscriptions.all() {
            let spec = q.spec();
            let what = format_args!("subscription {}/{}", spec.topic, spec.name);
            note(&what, self.tick_subscription(q, now_ms));
        }
        for t in &self.topics.all() {
            note(
                &format_args!("topic {}", t.name),
                self.tick_topic(t, now_ms),
            );
        }
        note(&"request records", self.expire_requests(now_ms));
        match self.groups.expire_empty(now_ms) {
            Ok(gone) => {
                for group in gone {
                    tracing::info!(%group, "empty consumer group deleted");
                }
            }
            Err(e) => note(&"empty consumer groups", Err(e)),
        }
        note(&"metadata", lock(&self.meta).snapshot_if_due(now_ms));
        note(&"committed offsets", self.groups.snapshot_if_due(now_ms));
        first_error.map_or(Ok(()), Err)
    }

    /// Dead-letters what is past its delivery limit and snapshots the
    /// subscription's state log when due (either may fail alone).
    fn tick_subscription(&self, q: &Subscription, now_ms: i64) -> Result<()> {
        let dead_lettered = self.process_dead_letters(q, now_ms);
        let snapshot = q.maybe_snapshot(now_ms);
        dead_lettered.and(snapshot)
    }

    /// Warns when a topic crosses its warning depth (and when it is back
    /// below), releases what work-queue retention allows, applies
    /// retention and syncs `interval` logs.
    fn tick_topic(&self, t: &Topic, now_ms: i64) -> Result<()> {
        let config = t.config();
        if let Some(warn) = config.warn_depth {
            let (depth, _) = t.depth();
            let above = depth >= warn;
            if above && !t.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(topic = %t.name, depth, warn_depth = warn, "topic depth crossed its warning level; producers will be refused at max_messages");
            } else if !above && t.warned.swap(false, Ordering::Relaxed) {
                tracing::info!(topic = %t.name, depth, warn_depth = warn, "topic depth back below its warning level");
            }
        }
        if config.retention == Retention::WorkQueue {
            self.release_consumed(t)?;
        }
        for log in &t.partitions {
            // A replicated partition's log is its Raft log: its group cuts
            // it, after a snapshot (spool-cluster's retention pass).
            if !t.replicated {
                log.apply_retention(now_ms)?;
            }
            log.sync_if_due(now_ms)?;
        }
        Ok(())
    }

    /// Makes every written byte durable (used at shutdown).
    pub fn flush(&self) -> Result<()> {
        for t in self.topics.all() {
            for log in &t.partitions {
                log.flush()?;
            }
        }
        for q in self.subscriptions.all() {
            q.flush()?;
        }
        self.groups.flush()?;
        Ok(())
    }

    /// Every queue subscription, for metrics.
    pub fn subscriptions(&self) -> Vec<Arc<Subscription>> {
        self.subscriptions.all()
    }

    /// A queue subscription's backlog: messages of its topic not yet done
    /// (acknowledged or dead-lettered), over all partitions.
    pub fn subscription_lag(&self, q: &Subscription) -> u64 {
        self.topic(&q.spec().topic)
            .map(|t| {
                t.partitions
                    .iter()
                    .zip(q.floors())
                    .map(|(log, floor)| (log.stats().end_offset - floor).max(0) as u64)
                    .sum()
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(super::rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::rfc3339_utc(951_782_400_123),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            super::rfc3339_utc(1_795_478_400_000),
            "2026-11-24T00:00:00.000Z"
        );
    }
}
