//! Wake-ups for long-polling fetches and push subscriptions: one `Notify` per
//! partition, signalled by the broker after data becomes visible, plus one for
//! "the set of topics changed" (pattern subscribers pick up new topics).

use spool_broker::AppendListener;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Default)]
pub struct Notifier {
    partitions: Mutex<HashMap<String, HashMap<u32, Arc<Notify>>>>,
    pub topics: Notify,
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
