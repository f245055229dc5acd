//! HTTP push for queue subscriptions with a `push_endpoint` (the active
//! queue for consumers that listen): the broker leases messages and POSTs
//! each as JSON; a 2xx answer acknowledges it, anything else (or a timeout)
//! gives it back, so the subscription's retry and dead-letter rules apply.
//! At most `push_max_in_flight` pushes per subscription run at once. Each
//! push is signed like a request callback (`Spool-Signature`, same secret).

use crate::notify::{wait_any, Notifier};
use crate::now_ms;
use crate::outbound::{post_signed, AllowList};
use spool_broker::subscription::LeasedMessage;
use spool_broker::Broker;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// How often the set of push subscriptions is refreshed.
const REFRESH_MS: u64 = 500;
/// Longest a pusher sleeps before looking for work again.
const RECHECK_MS: u64 = 1_000;

/// Starts and stops one pusher task per queue subscription with an endpoint.
pub async fn push_manager(
    client: reqwest::Client,
    broker: Arc<Broker>,
    notifier: Arc<Notifier>,
    allow: AllowList,
    secret: Arc<Vec<u8>>,
    mut stop: watch::Receiver<bool>,
) {
    // Keyed by everything a pusher is started with, so an altered endpoint
    // or in-flight limit replaces its pusher at the next refresh.
    let mut running: HashMap<(String, String, String, u32), tokio::task::JoinHandle<()>> =
        HashMap::new();
    loop {
        let wanted: Vec<(String, String, String, u32)> = broker
            .list_subscriptions(None)
            .into_iter()
            .filter_map(|s| {
                s.push_endpoint
                    .clone()
                    .map(|url| (s.topic, s.name, url, s.push_max_in_flight))
            })
            .collect();
        running.retain(|key, task| {
            let keep = wanted.contains(key);
            if !keep {
                task.abort();
            }
            keep && !task.is_finished()
        });
        for (topic, name, url, in_flight) in wanted {
            let key = (topic.clone(), name.clone(), url.clone(), in_flight);
            if running.contains_key(&key) {
                continue;
            }
            let task = tokio::spawn(pusher(
                Arc::clone(&broker),
                Arc::clone(&notifier),
                client.clone(),
                allow.clone(),
                Arc::clone(&secret),
                topic,
                name,
                url,
                in_flight as usize,
            ));
            running.insert(key, task);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(REFRESH_MS)) => {}
            _ = stop.changed() => {
                for task in running.values() {
                    task.abort();
                }
                return;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn pusher(
    broker: Arc<Broker>,
    notifier: Arc<Notifier>,
    client: reqwest::Client,
    allow: AllowList,
    secret: Arc<Vec<u8>>,
    topic: String,
    name: String,
    url: String,
    in_flight: usize,
) {
    if let Err(e) = allow.check(&url) {
        tracing::error!(%topic, subscription = %name, "push endpoint refused: {e}");
        return;
    }
    let slots = Arc::new(Semaphore::new(in_flight.max(1)));
    loop {
        let free = slots.available_permits();
        if free == 0 {
            let _ = slots.acquire().await;
            continue;
        }
        let Ok(partitions) = broker.topic(&topic).map(|t| t.partitions.len() as u32) else {
            return;
        };
        let notifies: Vec<_> = (0..partitions)
            .map(|p| notifier.partition(&topic, p))
            .collect();
        let wake = broker
            .subscription(&topic, &name)
            .ok()
            .and_then(|q| q.next_wakeup());
        let mut until = tokio::time::Instant::now() + Duration::from_millis(RECHECK_MS);
        if let Some(at) = wake {
            let ms = (at - now_ms()).clamp(1, RECHECK_MS as i64) as u64;
            until = tokio::time::Instant::now() + Duration::from_millis(ms);
        }
        let mut leased = Vec::new();
        wait_any(&notifies, None, until, || {
            match tokio::task::block_in_place(|| broker.receive(&topic, &name, free, now_ms())) {
                Ok(m) => leased = m,
                Err(e) => tracing::warn!(%topic, subscription = %name, "push receive failed: {e}"),
            }
            !leased.is_empty()
        })
        .await;
        for m in leased {
            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let (broker, client, allow, secret) = (
                Arc::clone(&broker),
                client.clone(),
                allow.clone(),
                Arc::clone(&secret),
            );
            let (topic, name, url) = (topic.clone(), name.clone(), url.clone());
            tokio::spawn(async move {
                let body = delivery_json(&topic, &name, &m);
                let what = format!("push of {topic}/{}@{} ({name})", m.partition, m.offset);
                let outcome = post_signed(&client, &allow, &url, &secret, body, &what)
                    .await
                    .map_err(|e| e.to_string());
                let result = if outcome.is_ok() {
                    "delivered"
                } else {
                    "failed"
                };
                metrics::counter!(
                    "spool_push_deliveries_total",
                    "topic" => topic.clone(),
                    "subscription" => name.clone(),
                    "result" => result
                )
                .increment(1);
                let receipts = [m.receipt.clone()];
                let result = tokio::task::spawn_blocking(move || match outcome {
                    Ok(()) => broker.ack(&topic, &name, &receipts, now_ms()).map(|_| ()),
                    Err(e) => broker
                        .nack(&topic, &name, &receipts, 0, Some(&e), now_ms())
                        .map(|_| ()),
                })
                .await;
                if let Ok(Err(e)) = result {
                    tracing::warn!("recording a push outcome failed: {e}");
                }
                drop(permit);
            });
        }
    }
}

/// The JSON body of one push delivery.
fn delivery_json(topic: &str, name: &str, m: &LeasedMessage) -> Vec<u8> {
    use base64::Engine;
    let text = |b: &Option<bytes::Bytes>| -> serde_json::Value {
        match b {
            None => serde_json::Value::Null,
            Some(b) => match std::str::from_utf8(b) {
                Ok(s) => serde_json::json!(s),
                Err(_) => {
                    serde_json::json!({ "base64": base64::engine::general_purpose::STANDARD.encode(b) })
                }
            },
        }
    };
    let headers: serde_json::Map<String, serde_json::Value> = m
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), text(v)))
        .collect();
    let body = serde_json::json!({
        "topic": topic, "subscription": name, "partition": m.partition, "offset": m.offset,
        "key": text(&m.key), "value": text(&m.value), "headers": headers,
        "deliveries": m.deliveries, "timestamp_ms": m.timestamp_ms,
    });
    body.to_string().into_bytes()
}
