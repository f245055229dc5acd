//! Delivers request callbacks: when a request with a `callback_url`
//! finishes, its final record is POSTed there as JSON, signed with
//! `Spool-Signature`. Failures retry with exponential backoff and jitter for
//! the configured window (default 24 h); the outcome and attempt count are
//! kept on the record, and a callback that never succeeds writes a
//! side-channel event (done by the broker).

use crate::now_ms;
use crate::outbound::{post_signed, AllowList, Failure};
use spool_broker::requests::RequestRecord;
use spool_broker::Broker;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// How often due callbacks are looked for.
const CALLBACK_POLL_MS: u64 = 100;
pub use spool_types::limits::CALLBACKS_IN_FLIGHT_MAX;
/// Longest pause between two attempts (10 minutes).
const CALLBACK_BACKOFF_MAX_MS: i64 = 600_000;

/// The JSON a client sees of a record (internal lease fields removed).
pub fn public_json(r: &RequestRecord) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.remove("receipt");
        obj.remove("lease_deadline_ms");
        // A record expires only once it has finished (its expiry is set
        // then, the request TTL after it); until then it has none to show.
        if !r.status.is_final() {
            obj.insert("expires_ms".to_owned(), serde_json::Value::Null);
        }
    }
    v
}

/// The delay before attempt `attempts + 1`, with ±20 % jitter.
fn backoff_ms(attempts: u32, seed: u64) -> i64 {
    let base = (1_000i64 << attempts.min(20)).min(CALLBACK_BACKOFF_MAX_MS);
    let jitter = (seed % 400) as i64 - 200; // per mille
    base + base * jitter / 1000
}

pub async fn callback_loop(
    client: reqwest::Client,
    broker: Arc<Broker>,
    secret: Arc<Vec<u8>>,
    allow: AllowList,
    retry_window_ms: i64,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(CALLBACKS_IN_FLIGHT_MAX));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(CALLBACK_POLL_MS)) => {}
            _ = stop.changed() => return,
        }
        let b = Arc::clone(&broker);
        let due = match tokio::task::spawn_blocking(move || b.due_callbacks(now_ms())).await {
            Ok(Ok(due)) => due,
            Ok(Err(e)) => {
                tracing::error!("reading due callbacks failed: {e}");
                continue;
            }
            Err(_) => continue,
        };
        for record in due {
            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let (client, broker, secret, allow) = (
                client.clone(),
                Arc::clone(&broker),
                Arc::clone(&secret),
                allow.clone(),
            );
            tokio::spawn(async move {
                let outcome = deliver(&client, &record, &secret, &allow).await;
                let now = now_ms();
                let attempts = record.callback.as_ref().map_or(0, |c| c.attempts);
                let first = record
                    .callback
                    .as_ref()
                    .and_then(|c| c.first_attempt_ms)
                    .unwrap_or(now);
                let refused = matches!(&outcome, Err(Failure::Refused(_)));
                let give_up = refused || now - first >= retry_window_ms;
                let seed = now as u64 ^ (record.id.len() as u64 * 0x9e37_79b9);
                let retry_at = now + backoff_ms(attempts, seed);
                if let Err(e) = &outcome {
                    tracing::info!(id = %record.id, attempt = attempts + 1, "callback failed: {e}");
                }
                let result = match (&outcome, give_up) {
                    (Ok(()), _) => "delivered",
                    (Err(_), false) => "retry",
                    (Err(_), true) => "failed",
                };
                metrics::counter!("spool_callbacks_total", "result" => result).increment(1);
                let id = record.id.clone();
                let outcome = outcome.map_err(|e| e.to_string());
                let _ = tokio::task::spawn_blocking(move || {
                    broker.callback_outcome(&id, outcome, retry_at, give_up, now)
                })
                .await;
                drop(permit);
            });
        }
    }
}

async fn deliver(
    client: &reqwest::Client,
    record: &RequestRecord,
    secret: &[u8],
    allow: &AllowList,
) -> Result<(), Failure> {
    // Only records with a callback URL are scheduled.
    let url = record.callback_url.as_deref().unwrap_or_default();
    let body = serde_json::to_vec(&public_json(record)).unwrap_or_default();
    let what = format!("callback of request {}", record.id);
    post_signed(client, allow, url, secret, body, &what).await
}

#[cfg(test)]
mod tests {
    use spool_broker::requests::RequestRecord;
    use spool_types::RequestStatus;

    #[test]
    fn only_a_finished_record_shows_when_it_expires() {
        let mut r = RequestRecord {
            id: "r".into(),
            queue: "q".into(),
            status: RequestStatus::Pending,
            attempts: 0,
            created_ms: 10,
            updated_ms: 10,
            expires_ms: 10 + 7 * 24 * 3_600_000,
            result: None,
            error: None,
            callback_url: None,
            callback: None,
            receipt: Some("lease".into()),
            lease_deadline_ms: Some(20),
        };
        for status in [RequestStatus::Pending, RequestStatus::Running] {
            r.status = status;
            let v = super::public_json(&r);
            assert!(v["expires_ms"].is_null(), "{v}");
            assert!(v.get("receipt").is_none(), "{v}");
        }
        r.status = RequestStatus::Succeeded;
        r.expires_ms = 99;
        assert_eq!(super::public_json(&r)["expires_ms"], 99);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let a = super::backoff_ms(0, 200);
        let b = super::backoff_ms(3, 200);
        assert_eq!((a, b), (1_000, 8_000));
        assert!(super::backoff_ms(30, 0) <= super::CALLBACK_BACKOFF_MAX_MS);
    }
}
