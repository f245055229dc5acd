//! Wake-ups for long polls and push subscriptions, signalled by the broker
//! itself (it is the [`AppendListener`]): one `Notify` per partition (new
//! records, settled leases), one for "the set of topics changed" (pattern
//! subscribers pick up new topics), and one per request record someone
//! waits on (it became final).

use spool_broker::AppendListener;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Default)]
pub struct Notifier {
    partitions: Mutex<HashMap<String, HashMap<u32, Arc<Notify>>>>,
    pub topics: Notify,
    /// Request records waited on, by ID. An entry lives while a
    /// [`RequestWait`] holds it.
    requests: Mutex<HashMap<String, Arc<Notify>>>,
}

/// A registration for the end of one request record: created before the
/// record is read, so that a finish in between is not missed.
pub struct RequestWait<'a> {
    notifier: &'a Notifier,
    id: String,
    notify: Arc<Notify>,
}

impl RequestWait<'_> {
    pub fn notify(&self) -> &Notify {
        &self.notify
    }
}

impl Drop for RequestWait<'_> {
    fn drop(&mut self) {
        let mut map = lock(&self.notifier.requests);
        // The last waiter removes the entry (the map and this wait hold it).
        if Arc::strong_count(&self.notify) <= 2 {
            map.remove(&self.id);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Notifier {
    /// The notifier of one partition, created on first use.
    pub fn partition(&self, topic: &str, partition: u32) -> Arc<Notify> {
        let mut map = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get(topic).and_then(|m| m.get(&partition)) {
            return Arc::clone(n);
        }
        Arc::clone(
            map.entry(topic.to_owned())
                .or_default()
                .entry(partition)
                .or_default(),
        )
    }

    /// Registers a wait for request `id` to become final.
    pub fn request(&self, id: &str) -> RequestWait<'_> {
        let notify = Arc::clone(lock(&self.requests).entry(id.to_owned()).or_default());
        RequestWait {
            notifier: self,
            id: id.to_owned(),
            notify,
        }
    }
}

impl AppendListener for Notifier {
    fn appended(&self, topic: &str, partition: u32) {
        let map = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get(topic).and_then(|m| m.get(&partition)) {
            n.notify_waiters();
        }
    }

    fn topics_changed(&self) {
        self.topics.notify_waiters();
    }

    fn request_finished(&self, id: &str) {
        if let Some(n) = lock(&self.requests).get(id) {
            n.notify_waiters();
        }
    }
}

/// Waits until any of `notifies` fires or `deadline` passes. The futures are
/// registered before `ready` is checked, so a wake-up between the check and
/// the wait is not lost. Returns early (without waiting) if `ready()` is true.
pub async fn wait_any(
    notifies: &[Arc<Notify>],
    extra: Option<&Notify>,
    deadline: tokio::time::Instant,
    ready: impl FnOnce() -> bool,
) {
    let mut futs: Vec<std::pin::Pin<Box<tokio::sync::futures::Notified<'_>>>> =
        notifies.iter().map(|n| Box::pin(n.notified())).collect();
    if let Some(e) = extra {
        futs.push(Box::pin(e.notified()));
    }
    for f in &mut futs {
        f.as_mut().enable();
    }
    if ready() {
        return;
    }
    if futs.is_empty() {
        tokio::time::sleep_until(deadline).await;
        return;
    }
    let _ = tokio::time::timeout_at(deadline, futures::future::select_all(futs)).await;
}
