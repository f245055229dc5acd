//! Push subscriptions. They come in two kinds sharing one table, so Credit
//! and Unsubscribe work for both: stream subscriptions (record batches from
//! a [`PushCursor`]) and queue subscriptions (leased messages of a work
//! queue, leased through the operations layer as a Receive is).
//!
//! A subscription whose token is revoked is closed with `UNAUTHENTICATED`
//! the moment it is: its task listens for the revocation while it waits,
//! and looks before each delivery.

use super::dispatch::{FRAME_ROOM, WIRE_LEASES};
use super::outbox::{answer, error_response, Outbox, Outgoing, Permits};
use crate::auth::{Caller, Need};
use crate::convert::wire_error;
use crate::notify::wait_any;
use crate::ops::{self, Ops};
use bytes::BytesMut;
use spool_broker::push::{PushCursor, PushStart};
use spool_broker::{Broker, BrokerError};
use spool_proto::{self as p, Response, ResponseBody, WireError};
use spool_types::ErrorCode;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

/// Longest a stream push subscription sleeps without re-checking its
/// partitions (new topics matching its patterns are announced, but a
/// deleted one is only noticed by looking).
const PUSH_RECHECK_MS: u64 = 1_000;
use spool_types::limits::{CONNECTION_SUBSCRIPTIONS_MAX, QUEUE_PUSH_BATCH_MAX};

/// What a push subscription delivers, and where its credit is kept.
enum Flow {
    /// Record batches; the cursor keeps positions and credit.
    Stream(Arc<Mutex<PushCursor>>),
    /// Leased messages of a queue subscription; the broker keeps the leases,
    /// the credit is kept here.
    Queue {
        credit: Arc<Mutex<QueueCredit>>,
        /// Asks the push task to stop between deliveries (see
        /// [`Subscription::stop`]).
        stop: Arc<Notify>,
    },
}

pub(super) struct Subscription {
    flow: Flow,
    /// Wakes the push task when credit is granted.
    credit: Arc<Notify>,
    pub(super) task: tokio::task::JoinHandle<()>,
}

impl Subscription {
    pub(super) fn grant(&self, messages: u32, bytes: u32) {
        match &self.flow {
            Flow::Stream(cursor) => lock(cursor).grant(messages, bytes),
            Flow::Queue { credit, .. } => lock(credit).grant(messages, bytes),
        }
        self.credit.notify_one();
    }

    /// Ends the push task and waits until it has, so that no push for this
    /// id follows the Unsubscribe answer. A queue task is asked to stop
    /// rather than aborted: messages it has leased are still sent, not left
    /// to sit out their ack timeout.
    pub(super) async fn stop(mut self) {
        match &self.flow {
            Flow::Stream(_) => self.task.abort(),
            Flow::Queue { stop, .. } => stop.notify_one(),
        }
        let _ = (&mut self.task).await;
    }
}

/// A queue subscription's flow-control counters (section 7 of the protocol).
#[derive(Debug)]
struct QueueCredit {
    messages: u32,
    bytes: u32,
}

impl QueueCredit {
    fn grant(&mut self, messages: u32, bytes: u32) {
        self.messages = self.messages.saturating_add(messages);
        self.bytes = self.bytes.saturating_add(bytes);
    }

    fn available(&self) -> bool {
        self.messages > 0 && self.bytes > 0
    }

    /// Charges a delivery; counters stop at zero (a delivery may overshoot).
    fn charge(&mut self, messages: usize, bytes: usize) {
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        self.messages = self.messages.saturating_sub(clamp(messages));
        self.bytes = self.bytes.saturating_sub(clamp(bytes));
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn no_subscription(op: u16, id: u32) -> Response {
    error_response(
        op,
        WireError::new(
            ErrorCode::UnknownSubscription,
            format!("no subscription {id} on this connection"),
        ),
    )
}

/// Whether `id` names a live subscription. One the server closed (after a
/// SubscriptionClosed push) has ended its task, and its id is free again.
fn id_in_use(subs: &HashMap<u32, Subscription>, id: u32) -> bool {
    subs.get(&id).is_some_and(|s| !s.task.is_finished())
}

/// Checks that a new subscription may take `id`: the id is not in use and
/// the connection is below [`CONNECTION_SUBSCRIPTIONS_MAX`]. Subscriptions
/// the server closed are forgotten first when that makes room (their ids
/// are free again, and they must not count).
fn make_room(subs: &mut HashMap<u32, Subscription>, id: u32) -> Result<(), WireError> {
    if id_in_use(subs, id) {
        return Err(WireError::new(
            ErrorCode::InvalidRequest,
            format!("subscription id {id} is already in use"),
        ));
    }
    if subs.len() >= CONNECTION_SUBSCRIPTIONS_MAX {
        subs.retain(|_, s| !s.task.is_finished());
    }
    if subs.len() >= CONNECTION_SUBSCRIPTIONS_MAX {
        return Err(WireError::new(
            ErrorCode::TooManyInFlight,
            format!(
                "this connection has {CONNECTION_SUBSCRIPTIONS_MAX} push subscriptions open, \
                 the most one connection may have; unsubscribe one or open another connection"
            ),
        ));
    }
    Ok(())
}

/// A subscription ready to run and the signal that lets its push task
/// start, or why there is none.
pub(super) type Started = Result<(Subscription, oneshot::Sender<()>), WireError>;

/// Answers a Subscribe or SubscribeQueue and only then lets the push task
/// run, so the answer precedes the subscription's first push.
pub(super) async fn start_subscription(
    tx: &Outbox,
    subs: &mut HashMap<u32, Subscription>,
    (op, cid, id): (u16, u32, u32),
    started: Started,
    permits: Permits,
) {
    let (response, go) = match started {
        Ok((sub, go)) => {
            let body = match sub.flow {
                Flow::Stream(_) => ResponseBody::Subscribed {
                    subscription_id: id,
                },
                Flow::Queue { .. } => ResponseBody::QueueSubscribed {
                    subscription_id: id,
                },
            };
            subs.insert(id, sub);
            (Response::ok(body), Some(go))
        }
        Err(e) => (error_response(op, e), None),
    };
    answer(tx, cid, response, permits).await;
    if let Some(go) = go {
        let _ = go.send(());
    }
}

pub(super) fn subscribe(
    (ops, caller): (&Arc<Ops>, &Caller),
    tx: &Outbox,
    subs: &mut HashMap<u32, Subscription>,
    sub: p::Subscribe,
) -> Started {
    make_room(subs, sub.subscription_id)?;
    if sub.group.is_some() {
        return Err(WireError::new(
            ErrorCode::InvalidRequest,
            "push subscriptions with a group are not supported yet; use a group consumer",
        ));
    }
    let start = match sub.start {
        p::SubscribeStart::Earliest => PushStart::Earliest,
        p::SubscribeStart::Latest => PushStart::Latest,
        p::SubscribeStart::Offset(o) => PushStart::Offset(o.min(i64::MAX as u64) as i64),
    };
    let cursor = Broker::parse_patterns(&sub.topics).and_then(|patterns| {
        PushCursor::new(
            &ops.broker,
            patterns,
            start,
            sub.credit_messages,
            sub.credit_bytes,
        )
    });
    let cursor = match cursor {
        Ok(c) => Arc::new(Mutex::new(c)),
        Err(e) => return Err(wire_error(e)),
    };
    let credit = Arc::new(Notify::new());
    let (go, start) = oneshot::channel();
    let task = tokio::spawn(push_loop(
        (Arc::clone(ops), caller.clone()),
        tx.clone(),
        sub.subscription_id,
        Arc::clone(&cursor),
        Arc::clone(&credit),
        start,
    ));
    let sub = Subscription {
        flow: Flow::Stream(cursor),
        credit,
        task,
    };
    Ok((sub, go))
}

/// Sends batches to a push subscriber as they appear, within its credit.
async fn push_loop(
    (ops, caller): (Arc<Ops>, Caller),
    tx: Outbox,
    id: u32,
    cursor: Arc<Mutex<PushCursor>>,
    credit: Arc<Notify>,
    start: oneshot::Receiver<()>,
) {
    if start.await.is_err() {
        return;
    }
    loop {
        if let Err(e) = caller.check(Need::Any) {
            return close_subscription(&tx, id, e).await;
        }
        let notifies: Vec<Arc<Notify>> = {
            let c = cursor.lock().unwrap_or_else(|p| p.into_inner());
            c.partitions()
                .map(|(t, p)| ops.notifier.partition(t, *p))
                .collect()
        };
        let mut next = None;
        let deadline = Instant::now() + Duration::from_millis(PUSH_RECHECK_MS);
        let mut all = notifies;
        all.push(Arc::clone(&credit));
        let waited = wait_any(&all, Some(&ops.notifier.topics), deadline, || {
            let result = tokio::task::block_in_place(|| {
                cursor
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .next(&ops.broker)
            });
            let ready = !matches!(result, Ok(None));
            next = Some(result);
            ready
        });
        // A revocation is looked at first; the loop's check then closes.
        tokio::select! {
            biased;
            _ = caller.revoked() => continue,
            _ = waited => {}
        }
        match next {
            Some(Ok(Some(d))) => {
                let push = p::Push::Deliver(p::Deliver {
                    topic: d.topic,
                    partition: d.partition,
                    batches: d.batches,
                });
                match send_push(&tx, id, push).await {
                    Sent::Gone => return,
                    Sent::Yes | Sent::Unencodable(_) => {}
                }
            }
            Some(Err(e)) => return close_subscription(&tx, id, e).await,
            _ => {}
        }
    }
}

pub(super) fn subscribe_queue(
    (ops, caller): (&Arc<Ops>, &Caller),
    tx: &Outbox,
    subs: &mut HashMap<u32, Subscription>,
    sub: p::SubscribeQueue,
) -> Started {
    make_room(subs, sub.subscription_id)?;
    // Refuse at once what the push task would otherwise report later.
    if let Err(e) = ops
        .broker
        .topic(&sub.topic)
        .and_then(|_| ops.broker.subscription(&sub.topic, &sub.name))
    {
        return Err(wire_error(e));
    }
    let credit = Arc::new(Mutex::new(QueueCredit {
        messages: sub.credit_messages,
        bytes: sub.credit_bytes,
    }));
    let granted = Arc::new(Notify::new());
    let stop = Arc::new(Notify::new());
    let (go, start) = oneshot::channel();
    let push = QueuePush {
        ops: Arc::clone(ops),
        caller: caller.clone(),
        tx: tx.clone(),
        id: sub.subscription_id,
        topic: sub.topic,
        name: sub.name,
        credit: Arc::clone(&credit),
        granted: Arc::clone(&granted),
        stop: Arc::clone(&stop),
    };
    let task = tokio::spawn(push.run(start));
    let sub = Subscription {
        flow: Flow::Queue { credit, stop },
        credit: granted,
        task,
    };
    Ok((sub, go))
}

/// The push task of a queue subscription.
struct QueuePush {
    ops: Arc<Ops>,
    /// Who subscribed: nothing is leased for it once its token is revoked.
    caller: Caller,
    tx: Outbox,
    id: u32,
    topic: String,
    name: String,
    credit: Arc<Mutex<QueueCredit>>,
    granted: Arc<Notify>,
    stop: Arc<Notify>,
}

impl QueuePush {
    /// While there is credit, leases what is ready (up to the message credit
    /// and [`QUEUE_PUSH_BATCH_MAX`]) and sends it as one QueueDeliver; then
    /// waits for an append, a credit grant, the queue's next wake-up or a
    /// periodic re-check.
    async fn run(self, start: oneshot::Receiver<()>) {
        if start.await.is_err() {
            return;
        }
        let mut due_pause = ops::SUBSCRIPTION_DUE_RECHECK_MS;
        loop {
            if let Err(e) = self.caller.check(Need::Consume(&self.topic)) {
                return close_subscription(&self.tx, self.id, e).await;
            }
            let (mut notifies, wake) = match self.ops.subscription_wakeups(&self.topic, &self.name)
            {
                Ok(w) => w,
                Err(e) => return close_subscription(&self.tx, self.id, e).await,
            };
            notifies.push(Arc::clone(&self.granted));
            let recheck = Instant::now() + Duration::from_millis(ops::SUBSCRIPTION_RECHECK_MS);
            // Without credit only a grant (or the re-check) matters.
            let until = if lock(&self.credit).available() {
                ops::wake_deadline(wake, recheck, &mut due_pause)
            } else {
                recheck
            };
            let mut leased = None;
            let waited = wait_any(&notifies, None, until, || {
                let want = {
                    let credit = lock(&self.credit);
                    if !credit.available() {
                        return false;
                    }
                    credit.messages.min(QUEUE_PUSH_BATCH_MAX)
                };
                let got = tokio::task::block_in_place(|| {
                    let (topic, name) = (&self.topic, &self.name);
                    self.ops
                        .lease_within(topic, name, want as usize, FRAME_ROOM, &WIRE_LEASES)
                });
                let ready = !matches!(&got, Ok(m) if m.is_empty());
                leased = Some(got);
                ready
            });
            // Stop and revocation are checked first, and never after a
            // lease: the wait only completes once it has leased, and then
            // the messages go out. After a revocation the loop's check
            // closes the subscription.
            tokio::select! {
                biased;
                _ = self.stop.notified() => return,
                _ = self.caller.revoked() => continue,
                _ = waited => {}
            }
            match leased {
                Some(Ok(messages)) if !messages.is_empty() => {
                    let bytes = messages
                        .iter()
                        .map(|m| {
                            m.key.as_ref().map_or(0, |k| k.len())
                                + m.value.as_ref().map_or(0, |v| v.len())
                        })
                        .sum();
                    lock(&self.credit).charge(messages.len(), bytes);
                    let push = p::Push::QueueDeliver(p::QueueDeliver { messages });
                    match send_push(&self.tx, self.id, push).await {
                        Sent::Gone => return,
                        Sent::Yes => {}
                        // Cannot happen: leasing stops at the frame limit.
                        // The leases lapse and the messages are redelivered.
                        Sent::Unencodable(e) => {
                            tracing::error!(
                                id = self.id,
                                "queue delivery could not be encoded: {e}"
                            );
                        }
                    }
                }
                Some(Err(e)) => return close_subscription(&self.tx, self.id, e).await,
                _ => {}
            }
        }
    }
}

/// Ends a subscription from the server side with SubscriptionClosed.
async fn close_subscription(tx: &Outbox, id: u32, e: BrokerError) {
    let _ = send_push(tx, id, p::Push::SubscriptionClosed(wire_error(e))).await;
}

/// What became of a push.
enum Sent {
    Yes,
    /// The connection's writer has gone: the subscription is over.
    Gone,
    /// It could not be encoded (and was not sent).
    Unencodable(p::EncodeError),
}

/// Queues a push frame for subscription `id` (pushes hold no request's
/// budget).
async fn send_push(tx: &Outbox, id: u32, push: p::Push) -> Sent {
    let mut buf = BytesMut::new();
    if let Err(e) = push.encode(id, &mut buf) {
        return Sent::Unencodable(e);
    }
    let out = Outgoing {
        rest: Vec::new(),
        bytes: buf.freeze(),
        _permits: Permits::none(),
    };
    match tx.send(out).await {
        Ok(()) => Sent::Yes,
        Err(_) => Sent::Gone,
    }
}
