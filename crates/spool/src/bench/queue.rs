//! The work-queue workloads: queue (publish → receive → ack) and requests
//! (submit → worker → complete, then status reads).

use super::progress::{Goal, Progress};
use super::report::{self, per_s, Latency, Report};
use super::settings::Stop;
use super::workloads::{goal, publish_stamped, totals};
use super::{join_all, stamp, Bench};
use futures::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use spool_client::{
    Client, ClientError, LeasedMessage, SubscriptionOptions, REQUEST_ID_HEADER,
    WORKERS_SUBSCRIPTION,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The queue subscription the queue workload creates.
const SUBSCRIPTION: &str = "bench";
/// Long-poll wait of a receive.
const RECEIVE_WAIT: Duration = Duration::from_millis(500);
/// How long, after the last publish, the workers may take for the rest.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause before receiving again when the request queue does not exist yet
/// (the first submit creates its subscription).
const NOT_YET_PAUSE: Duration = Duration::from_millis(5);

/// Tells workers when everything has made the trip.
#[derive(Clone)]
struct Finish {
    /// Messages done so far (over all workers).
    done: Arc<AtomicU64>,
    /// How many there will be: `u64::MAX` while sending.
    target: Arc<AtomicU64>,
    stop: Arc<watch::Sender<bool>>,
}

impl Finish {
    fn new() -> Finish {
        Finish {
            done: Arc::new(AtomicU64::new(0)),
            target: Arc::new(AtomicU64::new(u64::MAX)),
            stop: Arc::new(watch::channel(false).0),
        }
    }

    /// Counts `k` more done; stops everyone once all are.
    fn add(&self, k: u64) {
        let done = self.done.fetch_add(k, Ordering::Relaxed) + k;
        if done >= self.target.load(Ordering::Relaxed) {
            self.stop.send_replace(true);
        }
    }

    fn set_target(&self, target: u64) {
        self.target.store(target, Ordering::Relaxed);
        if self.done.load(Ordering::Relaxed) >= target {
            self.stop.send_replace(true);
        }
    }

    /// Waits (up to `timeout`) until all are done, then stops everyone.
    async fn wait(&self, timeout: Duration) -> bool {
        let mut rx = self.stop.subscribe();
        let ok = tokio::time::timeout(timeout, rx.wait_for(|s| *s))
            .await
            .is_ok();
        self.stop.send_replace(true);
        ok
    }
}

/// What one worker did.
struct Worked {
    done: u64,
    last: Option<Instant>,
    latency: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
    redelivered: u64,
}

impl Worked {
    fn new() -> Worked {
        Worked {
            done: 0,
            last: None,
            latency: report::histogram(),
            errors: 0,
            first_error: None,
            redelivered: 0,
        }
    }

    fn error(&mut self, e: &ClientError) {
        self.errors += 1;
        self.first_error
            .get_or_insert_with(|| format!("{}: {}", e.code_name(), e.message()));
    }
}

/// Receives (long poll) until told to stop; `None` once stopped.
async fn receive(
    client: &Client,
    topic: &str,
    sub: &str,
    max: u32,
    finish: &Finish,
) -> Option<Result<Vec<LeasedMessage>, ClientError>> {
    let mut stop = finish.stop.subscribe();
    if *stop.borrow() {
        return None;
    }
    tokio::select! {
        r = client.receive(topic, sub, max, RECEIVE_WAIT) => Some(r),
        _ = stop.wait_for(|s| *s) => None,
    }
}

/// Merges the workers' outcomes into the report; errors if any failed.
fn merge(
    report: &mut Report,
    worked: &[Worked],
    start: Instant,
    what: &'static str,
) -> anyhow::Result<()> {
    let mut h = report::histogram();
    for w in worked {
        h.add(&w.latency)?;
    }
    let errors: u64 = worked.iter().map(|w| w.errors).sum();
    if errors > 0 {
        let first = worked
            .iter()
            .find_map(|w| w.first_error.clone())
            .unwrap_or_default();
        anyhow::bail!("{errors} acknowledgements or completions failed; the first: {first}");
    }
    report.messages = worked.iter().map(|w| w.done).sum();
    report.bytes = report.messages * report.settings.size as u64;
    report.elapsed = worked
        .iter()
        .filter_map(|w| w.last)
        .max()
        .map_or(Duration::ZERO, |l| l.saturating_duration_since(start));
    report.latency = Some((Latency::of(&h), what));
    report.extra.push((
        "redelivered",
        json!(worked.iter().map(|w| w.redelivered).sum::<u64>()),
    ));
    Ok(())
}

fn rounded(v: f64) -> Value {
    json!((v * 10.0).round() / 10.0)
}

pub async fn queue(bench: &Bench, mut report: Report) -> anyhow::Result<Report> {
    let s = &bench.settings;
    let admin = bench.connect().await?;
    let options = SubscriptionOptions {
        // Never dead-letter in a bench; a lapsed lease is counted as a
        // redelivery.
        max_deliveries: 0,
        ..SubscriptionOptions::default()
    };
    admin
        .create_subscription(&bench.topic, SUBSCRIPTION, options)
        .await?;
    let (workers, producers, finish, progress) = start_run(bench, "queue").await?;
    let epoch = bench.epoch;
    let max = s.receive_max;
    let tasks: Vec<JoinHandle<anyhow::Result<Worked>>> = workers
        .into_iter()
        .map(|client| {
            let (finish, topic) = (finish.clone(), bench.topic.clone());
            tokio::spawn(async move {
                let mut w = Worked::new();
                while let Some(received) =
                    receive(&client, &topic, SUBSCRIPTION, max, &finish).await
                {
                    let messages = received?;
                    if messages.is_empty() {
                        continue;
                    }
                    let receipts: Vec<String> =
                        messages.iter().map(|m| m.receipt.clone()).collect();
                    let results = client.ack(&topic, SUBSCRIPTION, &receipts).await?;
                    let at = Instant::now();
                    let mut ok = 0;
                    for (m, r) in messages.iter().zip(&results) {
                        if m.deliveries > 1 {
                            w.redelivered += 1;
                        }
                        match r {
                            Ok(()) => {
                                ok += 1;
                                let value = m.value.as_deref().unwrap_or_default();
                                if let Some(sent) = stamp::read(value, epoch) {
                                    report::record(
                                        &mut w.latency,
                                        at.saturating_duration_since(sent),
                                    );
                                }
                            }
                            Err(e) => w.error(e),
                        }
                    }
                    w.done += ok;
                    w.last = Some(at);
                    finish.add(ok);
                }
                Ok(w)
            })
        })
        .collect();
    let start = Instant::now();
    let sent = match publish_stamped(bench, producers, start).await {
        Ok(sent) => sent,
        Err(e) => {
            finish.stop.send_replace(true);
            progress.finish();
            return Err(e);
        }
    };
    let (published, last_publish) = totals(&sent);
    finish.set_target(published);
    let drained = finish.wait(DRAIN_TIMEOUT).await;
    let worked = join_all(tasks).await;
    progress.finish();
    let worked = worked?;
    let what = if s.rate.is_some() {
        "publish (scheduled send time) → ack answered"
    } else {
        "publish (send call; unpaced, so it includes the backlog) → ack answered"
    };
    merge(&mut report, &worked, start, what)?;
    if !drained || report.messages < published {
        anyhow::bail!(
            "queue: {} of {published} published messages were acknowledged within {} s of the last publish",
            report.messages,
            DRAIN_TIMEOUT.as_secs()
        );
    }
    let publish_elapsed =
        last_publish.map_or(Duration::ZERO, |l| l.saturating_duration_since(start));
    report.extra.push((
        "publish_msgs_per_s",
        rounded(per_s(published, publish_elapsed)),
    ));
    Ok(report)
}

/// What one submitter did.
struct Submitted {
    ids: Vec<String>,
    last: Option<Instant>,
}

async fn submit_loop(
    client: Client,
    topic: String,
    size: usize,
    window: usize,
    count: Option<u64>,
    until: Option<Instant>,
    epoch: Instant,
) -> anyhow::Result<Submitted> {
    let mut out = Submitted {
        ids: Vec::new(),
        last: None,
    };
    let template = vec![b'x'; size];
    let mut in_flight = FuturesUnordered::new();
    let mut n = 0u64;
    loop {
        let more = count.is_none_or(|c| n < c) && until.is_none_or(|u| Instant::now() < u);
        if more && in_flight.len() < window {
            let mut payload = template.clone();
            stamp::write(&mut payload, Instant::now(), epoch);
            in_flight.push(client.submit_request(&topic, payload, false, None));
            n += 1;
            continue;
        }
        match in_flight.next().await {
            Some(id) => {
                out.ids.push(id?);
                out.last = Some(Instant::now());
            }
            None => return Ok(out),
        }
    }
}

/// Connects a queue or requests run's workers (`--consumers`) and
/// producers, and starts its count of what is done and its progress line.
async fn start_run(
    bench: &Bench,
    label: &str,
) -> anyhow::Result<(Vec<Client>, Vec<Client>, Finish, Progress)> {
    let s = &bench.settings;
    let workers = bench.connect_n(s.consumers).await?;
    let producers = bench.connect_n(s.producers).await?;
    let finish = Finish::new();
    let progress = Progress::start(label, goal(s.stop), Arc::clone(&finish.done));
    Ok((workers, producers, finish, progress))
}

pub async fn requests(bench: &Bench, mut report: Report) -> anyhow::Result<Report> {
    let s = &bench.settings;
    let (workers, submitters, finish, progress) = start_run(bench, "requests").await?;
    let epoch = bench.epoch;
    let max = s.receive_max;
    let result = json!("ok");
    let tasks: Vec<JoinHandle<anyhow::Result<Worked>>> = workers
        .into_iter()
        .map(|client| {
            let (finish, topic, result) = (finish.clone(), bench.topic.clone(), result.clone());
            tokio::spawn(async move {
                let mut w = Worked::new();
                while let Some(received) =
                    receive(&client, &topic, WORKERS_SUBSCRIPTION, max, &finish).await
                {
                    let messages = match received {
                        Ok(m) => m,
                        // The first submit creates the queue's subscription.
                        Err(e) if crate::worker::queue_not_created_yet(&e) => {
                            tokio::time::sleep(NOT_YET_PAUSE).await;
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    };
                    let mut completing = FuturesUnordered::new();
                    for m in &messages {
                        if m.deliveries > 1 {
                            w.redelivered += 1;
                        }
                        let id = m
                            .headers
                            .iter()
                            .find(|(k, _)| k == REQUEST_ID_HEADER)
                            .and_then(|(_, v)| v.as_deref())
                            .map(|v| String::from_utf8_lossy(v).into_owned());
                        let Some(id) = id else {
                            anyhow::bail!(
                                "a message on the request queue has no {REQUEST_ID_HEADER} header"
                            );
                        };
                        let sent = stamp::read(m.value.as_deref().unwrap_or_default(), epoch);
                        let client = &client;
                        let result = &result;
                        completing.push(async move {
                            let r = client.complete_request(&id, result).await;
                            (r, sent, Instant::now())
                        });
                    }
                    let mut ok = 0;
                    while let Some((r, sent, at)) = completing.next().await {
                        match r {
                            Ok(_) => {
                                ok += 1;
                                if let Some(sent) = sent {
                                    report::record(
                                        &mut w.latency,
                                        at.saturating_duration_since(sent),
                                    );
                                }
                                w.last = Some(w.last.map_or(at, |l| l.max(at)));
                            }
                            Err(e) => w.error(&e),
                        }
                    }
                    w.done += ok;
                    finish.add(ok);
                }
                Ok(w)
            })
        })
        .collect();
    let start = Instant::now();
    let n = u32::try_from(submitters.len()).unwrap_or(u32::MAX);
    let (shares, until) = match s.stop {
        Stop::Count(total) => (
            super::settings::Settings::shares(total, n)
                .into_iter()
                .map(Some)
                .collect(),
            None,
        ),
        Stop::Time(d) => (vec![None; submitters.len()], Some(start + d)),
    };
    let submitting: Vec<JoinHandle<anyhow::Result<Submitted>>> = submitters
        .into_iter()
        .zip(shares)
        .map(|(client, count)| {
            tokio::spawn(submit_loop(
                client,
                bench.topic.clone(),
                s.size,
                s.window,
                count,
                until,
                epoch,
            ))
        })
        .collect();
    let submitted = match join_all(submitting).await {
        Ok(sub) => sub,
        Err(e) => {
            finish.stop.send_replace(true);
            progress.finish();
            return Err(e);
        }
    };
    let ids: Vec<String> = submitted
        .iter()
        .flat_map(|s| s.ids.iter().cloned())
        .collect();
    let total = ids.len() as u64;
    finish.set_target(total);
    let drained = finish.wait(DRAIN_TIMEOUT).await;
    let worked = join_all(tasks).await;
    progress.finish();
    let worked = worked?;
    merge(
        &mut report,
        &worked,
        start,
        "submit call → complete answered",
    )?;
    if !drained || report.messages < total {
        anyhow::bail!(
            "requests: {} of {total} submitted requests were completed within {} s of the last submit",
            report.messages,
            DRAIN_TIMEOUT.as_secs()
        );
    }
    let last_submit = submitted.iter().filter_map(|s| s.last).max();
    let submit_elapsed = last_submit.map_or(Duration::ZERO, |l| l.saturating_duration_since(start));
    report
        .extra
        .push(("submit_per_s", rounded(per_s(total, submit_elapsed))));

    // Status reads of random known IDs for a fixed time.
    let readers = bench.connect_n(s.producers).await?;
    let reads = Arc::new(AtomicU64::new(0));
    let progress = Progress::start("status", Goal::Time(s.status_duration), Arc::clone(&reads));
    if ids.is_empty() {
        anyhow::bail!("requests: no request was submitted, so there is no status to read");
    }
    let ids = Arc::new(ids);
    let start = Instant::now();
    let until = start + s.status_duration;
    let tasks: Vec<JoinHandle<anyhow::Result<u64>>> = readers
        .into_iter()
        .map(|client| {
            let (ids, reads, window) = (Arc::clone(&ids), Arc::clone(&reads), s.window);
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(rand::random());
                let mut in_flight = FuturesUnordered::new();
                let mut n = 0u64;
                loop {
                    if Instant::now() < until && in_flight.len() < window {
                        let id = &ids[rng.random_range(0..ids.len())];
                        in_flight.push(client.get_request(id, Duration::ZERO));
                        continue;
                    }
                    match in_flight.next().await {
                        Some(r) => {
                            r?;
                            n += 1;
                            reads.fetch_add(1, Ordering::Relaxed);
                        }
                        None => return Ok(n),
                    }
                }
            })
        })
        .collect();
    let counted = join_all(tasks).await;
    let elapsed = start.elapsed();
    progress.finish();
    let status_reads: u64 = counted?.iter().sum();
    report
        .extra
        .push(("status_reads_per_s", rounded(per_s(status_reads, elapsed))));
    report.extra.push(("status_reads", json!(status_reads)));
    report
        .extra
        .push(("status_duration_s", json!(s.status_duration.as_secs_f64())));
    Ok(report)
}
