//! Queue subscriptions: receive (long poll), ack, nack, extend, redrive.

use super::{synced, Ops};
use crate::auth::{Caller, Need};
use crate::notify::wait_any;
use crate::now_ms;
use spool_broker::subscription::{LeasedMessage, RECEIVE_MAX};
use spool_broker::{BrokerError, PendingAck};
use spool_types::limits::FETCH_WAIT_MS_MAX;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Longest a queue wait sleeps without looking again. Acks, nacks and
/// finished requests wake waiters (the broker announces them), and the
/// queue's next wake-up covers delays and leases that lapse; this is only a
/// backstop.
pub const SUBSCRIPTION_RECHECK_MS: u64 = 1_000;

/// First pause before a queue wait looks again when the queue reports
/// something already due that could not be leased (ready messages held back
/// by an ordering key whose earlier message is still leased); without it the
/// wait would spin. It doubles while that lasts, up to [`SUBSCRIPTION_RECHECK_MS`]:
/// acks and nacks wake waiters anyway, so the pause only delays noticing a
/// blocking lease that lapsed.
pub const SUBSCRIPTION_DUE_RECHECK_MS: u64 = 50;

/// How much of an answer leased messages may fill: a message leased and
/// not sent would sit out its ack timeout (or, at most once, be lost), so a
/// front end whose answers have a size limit says how large each message
/// may be at most and how much room there is.
#[derive(Debug, Clone, Copy)]
pub struct ReceiveRoom {
    /// Room for messages in one answer.
    pub bytes: usize,
    /// The most one leased message can take of that room.
    pub message_bytes_max: usize,
}

impl ReceiveRoom {
    /// No limit but the message count.
    pub const UNLIMITED: ReceiveRoom = ReceiveRoom {
        bytes: usize::MAX,
        message_bytes_max: 1,
    };
}

/// How a front end carries leased messages: `convert` turns each into what
/// it sends, `size` says how much of a [`ReceiveRoom`] that takes.
pub struct Shape<T> {
    pub convert: fn(LeasedMessage) -> T,
    pub size: fn(&T) -> usize,
}

impl Shape<LeasedMessage> {
    /// Leased messages as the broker gives them, with no size limit.
    pub const BROKER: Shape<LeasedMessage> = Shape {
        convert: |m| m,
        size: |_| 0,
    };
}

impl Ops {
    /// Leases up to `max` messages (clamped to 1 … `RECEIVE_MAX`) within
    /// `room`; if none is ready, waits for an append on the topic, a settled
    /// lease, the queue's next wake-up or `wait_ms`, whichever comes first,
    /// and tries again. Each leased message is turned into what the front
    /// end sends by `shape`, whose answer `room` measures. A caller whose
    /// token is revoked meanwhile is answered `UNAUTHENTICATED` at once.
    #[allow(clippy::too_many_arguments)]
    pub async fn receive<T>(
        &self,
        caller: &Caller,
        topic: &str,
        name: &str,
        max: usize,
        wait_ms: u64,
        room: ReceiveRoom,
        shape: &Shape<T>,
    ) -> Result<Vec<T>, BrokerError> {
        let deadline = Instant::now() + Duration::from_millis(wait_ms.min(FETCH_WAIT_MS_MAX));
        let mut due_pause = SUBSCRIPTION_DUE_RECHECK_MS;
        loop {
            caller.check(Need::Consume(topic))?;
            let (notifies, wake) = self.subscription_wakeups(topic, name)?;
            let recheck = Instant::now() + Duration::from_millis(SUBSCRIPTION_RECHECK_MS);
            let until = wake_deadline(wake, deadline.min(recheck), &mut due_pause);
            let stopping = self.stopping();
            let mut result = None;
            let quick = self.broker.receive_is_quick(topic, name);
            let waited = wait_any(&notifies, None, until, || {
                let lease = || self.lease_within(topic, name, max, room, shape);
                // Page-cache reads and writes only: run here, as a produce's
                // write is. Handing the worker off (`block_in_place`) for
                // each receive cost more than the receive (BENCHMARKS.md).
                let leased = if quick {
                    lease()
                } else {
                    tokio::task::block_in_place(lease)
                };
                let ready = !matches!(&leased, Ok(m) if m.is_empty())
                    || stopping
                    || Instant::now() >= deadline;
                result = Some(leased);
                ready
            });
            self.wait_unless_ended(caller, waited).await;
            match result {
                Some(Err(e)) => return Err(e),
                Some(Ok(messages))
                    if !messages.is_empty() || Instant::now() >= deadline || self.stopping() =>
                {
                    return Ok(messages);
                }
                _ => {}
            }
        }
    }

    /// Leases up to `max` messages, but no more than `room` holds. The
    /// broker cannot lease by size, so it is asked in rounds of as many
    /// messages as the remaining room holds in the worst case.
    pub fn lease_within<T>(
        &self,
        topic: &str,
        name: &str,
        max: usize,
        room: ReceiveRoom,
        shape: &Shape<T>,
    ) -> Result<Vec<T>, BrokerError> {
        let mut want = max.clamp(1, RECEIVE_MAX);
        let mut left = room.bytes;
        let mut out = Vec::new();
        while want > 0 {
            let round = want.min(left / room.message_bytes_max.max(1));
            if round == 0 {
                break;
            }
            let leased = match self.broker.receive(topic, name, round, now_ms()) {
                Ok(leased) => leased,
                // What is already leased must reach the client; a lasting
                // error shows up on the next call.
                Err(e) if !out.is_empty() => {
                    tracing::debug!(topic, name, "receive stopped early: {e}");
                    break;
                }
                Err(e) => return Err(e),
            };
            let got = leased.len();
            for m in leased {
                let m = (shape.convert)(m);
                left = left.saturating_sub((shape.size)(&m));
                out.push(m);
            }
            if got < round {
                break; // nothing more is ready
            }
            want -= got;
        }
        Ok(out)
    }

    /// What a queue wait listens to: appends and settled leases on every
    /// partition of the topic, and the time (ms since the epoch) at which
    /// the queue's next delayed or backed-off message becomes ready or a
    /// lease lapses. Looked up afresh for each wait because the topic or
    /// subscription may be deleted meanwhile; the error then ends the wait.
    pub fn subscription_wakeups(
        &self,
        topic: &str,
        name: &str,
    ) -> Result<(Vec<Arc<Notify>>, Option<i64>), BrokerError> {
        let partitions = self.broker.topic(topic)?.partitions.len() as u32;
        let wake = self.broker.subscription(topic, name)?.next_wakeup();
        let notifies = (0..partitions)
            .map(|p| self.notifier.partition(topic, p))
            .collect();
        Ok((notifies, wake))
    }

    /// Acknowledges leases up to the fdatasync an `always` topic needs: the
    /// acks are applied and written to the page cache on the caller's task
    /// (like a produce's write). Finish with [`Ops::finish_ack`].
    pub fn start_ack(
        &self,
        caller: &Caller,
        topic: &str,
        name: &str,
        receipts: &[String],
    ) -> Result<PendingAck, BrokerError> {
        caller.check(Need::Consume(topic))?;
        self.broker.start_ack(topic, name, receipts, now_ms())
    }

    /// Waits until started acks are as durable as their topic promises (on
    /// the broker's sync threads); one result per receipt.
    pub async fn finish_ack(
        &self,
        pending: PendingAck,
    ) -> Result<Vec<Result<(), BrokerError>>, BrokerError> {
        let broker = Arc::clone(&self.broker);
        synced("ack", |done| broker.finish_ack_then(pending, done)).await
    }

    /// [`Ops::start_ack`] and [`Ops::finish_ack`] in one.
    pub async fn ack(
        &self,
        caller: &Caller,
        topic: &str,
        name: &str,
        receipts: &[String],
    ) -> Result<Vec<Result<(), BrokerError>>, BrokerError> {
        let pending = self.start_ack(caller, topic, name, receipts)?;
        self.finish_ack(pending).await
    }

    /// Gives leases back: their messages are ready again after `delay_ms`
    /// (or dead-lettered past their delivery limit).
    pub async fn nack(
        &self,
        caller: &Caller,
        topic: String,
        name: String,
        receipts: Vec<String>,
        delay_ms: u64,
        error: Option<String>,
    ) -> Result<Vec<Result<(), BrokerError>>, BrokerError> {
        caller.check(Need::Consume(&topic))?;
        self.on_broker(move |b, now| {
            b.nack(&topic, &name, &receipts, delay_ms, error.as_deref(), now)
        })
        .await
    }

    /// Extends leases by `extend_ms`; answers each new deadline.
    pub async fn extend(
        &self,
        caller: &Caller,
        topic: String,
        name: String,
        receipts: Vec<String>,
        extend_ms: u64,
    ) -> Result<Vec<Result<i64, BrokerError>>, BrokerError> {
        caller.check(Need::Consume(&topic))?;
        self.on_broker(move |b, now| b.extend(&topic, &name, &receipts, extend_ms, now))
            .await
    }

    /// Moves a subscription's dead letters back to its topic; answers how many.
    pub async fn redrive(
        &self,
        caller: &Caller,
        topic: String,
        name: String,
    ) -> Result<u64, BrokerError> {
        caller.check(Need::Admin)?;
        self.on_broker(move |b, now| b.redrive(&topic, &name, now))
            .await
    }
}

/// When a queue wait should look again: at the queue's next wake-up, if
/// that comes before `latest`. One in the future gets a millisecond extra,
/// so the wait does not wake just before the broker's clock says it is due.
/// One already due (the attempt just made could not lease it) gets
/// `due_pause`, which doubles each time in a row (see
/// [`SUBSCRIPTION_DUE_RECHECK_MS`]).
pub fn wake_deadline(wake: Option<i64>, latest: Instant, due_pause: &mut u64) -> Instant {
    let Some(at) = wake else {
        return latest;
    };
    let ms = match u64::try_from(at.saturating_sub(now_ms())) {
        Ok(ms) if ms > 0 => {
            *due_pause = SUBSCRIPTION_DUE_RECHECK_MS;
            ms.saturating_add(1)
        }
        _ => {
            let pause = *due_pause;
            *due_pause = pause.saturating_mul(2).min(SUBSCRIPTION_RECHECK_MS);
            pause
        }
    };
    Instant::now()
        .checked_add(Duration::from_millis(ms))
        .map_or(latest, |t| t.min(latest))
}
