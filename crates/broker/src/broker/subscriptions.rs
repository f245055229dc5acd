//! Queue subscriptions: create/delete/list, receive, ack, nack, extend.

use super::open::subscription_dir;
use super::*;
use crate::error::{BrokerError, Result};
use crate::meta::MetaEvent;
use crate::requests::WORKERS_SUBSCRIPTION;
use crate::subscription::{
    parse_receipt, LeasedMessage, ModeSpec, Subscription, SubscriptionPatch, SubscriptionSpec,
    ToSync,
};
use spool_types::{ErrorCode, TopicName};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Told the results of a started ack (one per receipt) once they are
/// durable, or why they cannot be.
pub type AckDone = Box<dyn FnOnce(Result<Vec<Result<()>>>) + Send>;

/// Acks applied and written, maybe not yet durable: see
/// [`Broker::start_ack`].
pub struct PendingAck {
    /// An ordered queue's topic and the partitions whose acks may free the
    /// next message of a key.
    settled: Option<(String, BTreeSet<u32>)>,
    results: Vec<Result<()>>,
    sync: Option<ToSync>,
}

pub(super) fn unknown_subscription(topic: &str, name: &str) -> BrokerError {
    BrokerError::new(
        ErrorCode::UnknownSubscription,
        format!("topic {topic:?} has no subscription {name:?}"),
    )
}

/// Every queue subscription, by topic and name. The one owner of the map:
/// changes happen under the metadata lock, after the change is in the
/// metadata log.
#[derive(Default)]
pub(super) struct Subscriptions(RwLock<SubscriptionMap>);

type SubscriptionMap = BTreeMap<String, BTreeMap<String, Arc<Subscription>>>;

impl Subscriptions {
    pub(super) fn new(subscriptions: Vec<Subscription>) -> Subscriptions {
        let all = Subscriptions::default();
        for s in subscriptions {
            all.insert(s);
        }
        all
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, SubscriptionMap> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, SubscriptionMap> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn get(&self, topic: &str, name: &str) -> Result<Arc<Subscription>> {
        self.read()
            .get(topic)
            .and_then(|subs| subs.get(name))
            .cloned()
            .ok_or_else(|| unknown_subscription(topic, name))
    }

    pub(super) fn contains(&self, topic: &str, name: &str) -> bool {
        self.get(topic, name).is_ok()
    }

    pub(super) fn insert(&self, sub: Subscription) {
        let spec = sub.spec();
        self.write()
            .entry(spec.topic)
            .or_default()
            .insert(spec.name, Arc::new(sub));
    }

    pub(super) fn remove(&self, topic: &str, name: &str) {
        let mut all = self.write();
        if let Some(subs) = all.get_mut(topic) {
            subs.remove(name);
            if subs.is_empty() {
                all.remove(topic);
            }
        }
    }

    /// A deleted topic's subscriptions go with it.
    pub(super) fn remove_topic(&self, topic: &str) {
        self.write().remove(topic);
    }

    pub(super) fn of_topic(&self, topic: &str) -> Vec<Arc<Subscription>> {
        self.read()
            .get(topic)
            .map(|subs| subs.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Every subscription, by topic and name.
    pub(super) fn all(&self) -> Vec<Arc<Subscription>> {
        self.read()
            .values()
            .flat_map(|subs| subs.values().cloned())
            .collect()
    }
}

impl Broker {
    // ---- queue subscriptions ------------------------------------------------

    /// Creates a queue subscription on a topic.
    pub fn create_subscription(&self, spec: SubscriptionSpec, now_ms: i64) -> Result<()> {
        spec.validate()?;
        TopicName::new_system(&spec.name).map_err(|e| {
            BrokerError::new(
                ErrorCode::InvalidRequest,
                format!("subscription name {:?}: {e}", spec.name),
            )
        })?;
        let topic = self.topic(&spec.topic)?;
        self.check_dead_letter_topic(&spec)?;
        let mut meta = lock(&self.meta);
        if let Ok(existing) = self.subscription(&spec.topic, &spec.name) {
            let differences = existing.spec().differences(&spec);
            let how = match differences.is_empty() {
                true => String::new(),
                false => format!(" with other settings: {}", differences.join("; ")),
            };
            return Err(BrokerError::new(
                ErrorCode::GroupExists,
                format!(
                    "subscription {:?} already exists on topic {:?}{how}",
                    spec.name, spec.topic
                ),
            ));
        }
        let dir = subscription_dir(&self.data_dir, &spec.topic, &spec.name);
        let _ = std::fs::remove_dir_all(&dir);
        let starts: Vec<i64> = topic
            .partitions
            .iter()
            .map(|l| l.stats().start_offset)
            .collect();
        let (sub, _) = Subscription::open(&dir, spec.clone(), &starts, now_ms)?;
        let event = MetaEvent::SubscriptionCreated { spec };
        meta.change(event, now_ms)?;
        self.subscriptions.insert(sub);
        Ok(())
    }

    /// A spec's dead-letter topic, if it has one, must exist, differ from
    /// its topic and not be a system topic.
    fn check_dead_letter_topic(&self, spec: &SubscriptionSpec) -> Result<()> {
        let Some(dlq) = &spec.dead_letter_topic else {
            return Ok(());
        };
        if dlq.starts_with(spool_types::names::SYSTEM_TOPIC_PREFIX) {
            return Err(BrokerError::new(
                ErrorCode::ReservedTopicName,
                format!("dead-letter topic {dlq:?}: system topics are written by the server's own events only"),
            ));
        }
        if dlq == &spec.topic {
            return Err(BrokerError::new(
                ErrorCode::InvalidConfig,
                "the dead-letter topic must differ from the topic",
            ));
        }
        self.topic(dlq).map(drop)
    }

    /// Changes a queue subscription's settings, checked as at creation;
    /// answers the new spec. The running subscription follows at once: new
    /// leases get the new ack timeout, failures the new backoff and
    /// delivery limit (a message that has already used up a lowered limit
    /// is not leased again but dead-lettered), dead letters go to the new
    /// topic.
    pub fn alter_subscription(
        &self,
        topic: &str,
        name: &str,
        patch: &SubscriptionPatch,
        now_ms: i64,
    ) -> Result<SubscriptionSpec> {
        // Under the metadata lock from the read to the write, so that two
        // alterations at once cannot lose one of their changes.
        let mut meta = lock(&self.meta);
        let sub = self.subscription(topic, name)?;
        let spec = sub.spec().apply(patch);
        spec.validate()?;
        self.check_dead_letter_topic(&spec)?;
        if spec == sub.spec() {
            return Ok(spec);
        }
        let event = MetaEvent::SubscriptionAltered { spec: spec.clone() };
        meta.change(event, now_ms)?;
        sub.set_spec(spec.clone());
        Ok(spec)
    }

    /// Creates the subscription with default settings unless it exists.
    pub fn ensure_subscription(
        &self,
        topic: &str,
        name: &str,
        now_ms: i64,
    ) -> Result<Arc<Subscription>> {
        self.ensure_subscription_as(SubscriptionSpec::new(topic, name), now_ms)
    }

    /// [`Broker::ensure_subscription`], created with `spec`'s settings if
    /// it does not exist (an existing one keeps its own).
    pub fn ensure_subscription_as(
        &self,
        spec: SubscriptionSpec,
        now_ms: i64,
    ) -> Result<Arc<Subscription>> {
        let (topic, name) = (spec.topic.clone(), spec.name.clone());
        let (topic, name) = (topic.as_str(), name.as_str());
        if let Ok(q) = self.subscription(topic, name) {
            return Ok(q);
        }
        match self.create_subscription(spec, now_ms) {
            Ok(()) => {}
            Err(e) if e.code == ErrorCode::GroupExists => {}
            Err(e) => return Err(e),
        }
        self.subscription(topic, name)
    }

    pub fn delete_subscription(&self, topic: &str, name: &str, now_ms: i64) -> Result<()> {
        let mut meta = lock(&self.meta);
        if !self.subscriptions.contains(topic, name) {
            return Err(unknown_subscription(topic, name));
        }
        let event = MetaEvent::SubscriptionDeleted {
            topic: topic.to_owned(),
            name: name.to_owned(),
        };
        meta.change(event, now_ms)?;
        self.subscriptions.remove(topic, name);
        let _ = std::fs::remove_dir_all(subscription_dir(&self.data_dir, topic, name));
        Ok(())
    }

    pub fn list_subscriptions(&self, topic: Option<&str>) -> Vec<SubscriptionSpec> {
        let subs = match topic {
            Some(t) => self.subscriptions.of_topic(t),
            None => self.subscriptions.all(),
        };
        subs.iter().map(|q| q.spec()).collect()
    }

    pub fn subscription(&self, topic: &str, name: &str) -> Result<Arc<Subscription>> {
        self.subscriptions.get(topic, name)
    }

    /// Leases up to `max` messages of a queue subscription.
    pub fn receive(
        &self,
        topic: &str,
        name: &str,
        max: usize,
        now_ms: i64,
    ) -> Result<Vec<LeasedMessage>> {
        let t = self.topic(topic)?;
        let q = self.subscription(topic, name)?;
        let messages = q.receive(&t.partitions, max, now_ms)?;
        self.mark_running(topic, name, messages, now_ms)
    }

    /// Whether [`Broker::receive`] on this subscription writes only to the
    /// page cache (leases), so an async caller may run it on its own thread
    /// as it runs a produce's write. Otherwise it may wait for an fdatasync:
    /// `at_most_once` marks messages done durably before handing them out,
    /// and a request queue's receives update (and may ack) request records.
    /// "Quick" assumes the topic's recent data is in the page cache, as a
    /// produce assumes its write is; a cold read blocks the caller's thread.
    pub fn receive_is_quick(&self, topic: &str, name: &str) -> bool {
        // A topic with a workers subscription is a request queue: receiving
        // its messages also updates request records (redb commits), through
        // any subscription.
        let request_queue = self.subscription(topic, WORKERS_SUBSCRIPTION).is_ok();
        !request_queue
            && self
                .subscription(topic, name)
                .is_ok_and(|q| q.mode() == ModeSpec::AtLeastOnce)
    }

    pub fn ack(
        &self,
        topic: &str,
        name: &str,
        receipts: &[String],
        now_ms: i64,
    ) -> Result<Vec<Result<()>>> {
        // The subscription first: an unknown one answers as it always did.
        let q = self.subscription(topic, name)?;
        let durability = self.topic(topic)?.config().durability.to_log();
        let results = q.ack(receipts, durability, now_ms)?;
        if q.spec().ordered {
            self.announce_settled(topic, receipts, &results);
        }
        Ok(results)
    }

    /// Tells the listener about the partitions of the receipts that were
    /// settled (see [`AppendListener::settled`]).
    fn announce_settled<T>(&self, topic: &str, receipts: &[String], results: &[Result<T>]) {
        if let Some(l) = self.listener() {
            for p in settled_partitions(receipts, results) {
                l.settled(topic, p);
            }
        }
    }

    /// [`Broker::ack`] up to its fdatasync wait: applies the acks and writes
    /// their records to the page cache, so that an async caller can run it
    /// on its own thread (as it runs a produce's write) and be told through
    /// [`Broker::finish_ack_then`] when the answer may go out.
    pub fn start_ack(
        &self,
        topic: &str,
        name: &str,
        receipts: &[String],
        now_ms: i64,
    ) -> Result<PendingAck> {
        let q = self.subscription(topic, name)?;
        let durability = self.topic(topic)?.config().durability.to_log();
        let (results, sync) = q.start_ack(receipts, durability, now_ms)?;
        let settled = q
            .spec()
            .ordered
            .then(|| (topic.to_owned(), settled_partitions(receipts, &results)));
        Ok(PendingAck {
            results,
            sync,
            settled,
        })
    }

    /// Calls `done` with the results of a started ack once they are as
    /// durable as the topic promises: at once if nothing waits for an
    /// fdatasync, else from a syncer thread (so `done` must be short).
    pub fn finish_ack_then(&self, pending: PendingAck, done: AckDone) {
        let PendingAck {
            results,
            sync,
            settled,
        } = pending;
        // An ordered queue's next message of a key is ready once the ack is
        // durable: tell waiters then.
        let listener = self.listener().filter(|_| settled.is_some());
        let done: AckDone = match (listener, settled) {
            (Some(l), Some((topic, partitions))) => Box::new(move |r| {
                if r.is_ok() {
                    for p in partitions {
                        l.settled(&topic, p);
                    }
                }
                done(r)
            }),
            _ => done,
        };
        match sync {
            None => done(Ok(results)),
            Some(ToSync { log, next_offset }) => self.syncer.sync(
                &log,
                next_offset,
                Box::new(move |r| done(r.map(|()| results).map_err(BrokerError::from))),
            ),
        }
    }

    pub fn nack(
        &self,
        topic: &str,
        name: &str,
        receipts: &[String],
        delay_ms: u64,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<Vec<Result<()>>> {
        let error = error.map(spool_types::limits::cut_error_text);
        let results = self
            .subscription(topic, name)?
            .nack(receipts, delay_ms, error, now_ms)?;
        self.announce_settled(topic, receipts, &results);
        Ok(results)
    }

    pub fn extend(
        &self,
        topic: &str,
        name: &str,
        receipts: &[String],
        extend_ms: u64,
        now_ms: i64,
    ) -> Result<Vec<Result<i64>>> {
        Ok(self
            .subscription(topic, name)?
            .extend(receipts, extend_ms, now_ms))
    }
}

/// The partitions of the receipts whose result is `Ok`.
fn settled_partitions<T>(receipts: &[String], results: &[Result<T>]) -> BTreeSet<u32> {
    receipts
        .iter()
        .zip(results)
        .filter(|(_, r)| r.is_ok())
        .filter_map(|(receipt, _)| parse_receipt(receipt).map(|(p, _, _)| p))
        .collect()
}
