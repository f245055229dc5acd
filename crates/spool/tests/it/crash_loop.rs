//! Crash loop: the server is SIGKILLed and restarted on the same data
//! directory at random moments while everything runs against it at once —
//! two producers acknowledged under `always` (retrying unacknowledged
//! messages with the same `spool-msg-id`), a consumer group of two, sixteen
//! queue workers, and a request submitter with a request worker. Clients
//! reconnect to wherever the server comes back. Afterwards:
//!
//! - every acknowledged publish is in the log exactly once (retries carry
//!   the message ID, so a retried message that had been stored is not
//!   stored again), at the partition and offset its acknowledgement named,
//!   and each producer's messages are in send order within a partition;
//! - the group saw every message at least once, each at its logged offset;
//! - no queue message was delivered again after an acknowledgement of it
//!   was answered (docs/queues.md: only acks in flight at a crash may be
//!   lost), delivery counts never repeat, and every message was settled;
//! - every request record whose submission was acknowledged succeeded;
//! - every other request asked for a callback to a receiver in this test
//!   (which outlives the kills): each is recorded as delivered — and the
//!   receiver has it — or as failed, none left pending.
//!
//! ```text
//! cargo test -p spool --test it crash_loop                              # 4 kills (CI)
//! SPOOL_CRASH_LOOP_KILLS=50 cargo test -p spool --test it crash_loop -- --nocapture
//! SPOOL_CRASH_LOOP_SEED=N …                                             # the same kill schedule
//! ```

use crate::support::*;
use rand::{Rng, SeedableRng};
use spool_client::{
    Client, ClientError, ClientOptions, ErrorCode, GroupConsumer, GroupOptions, Message, Producer,
    ProducerOptions, ReadStart, RequestStatus, TopicReader, REQUEST_ID_HEADER,
    WORKERS_SUBSCRIPTION,
};
use spool_testkit::Receiver;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

const TOPIC: &str = "events";
const PARTITIONS: u32 = 4;
const QUEUE: &str = "w";
const GROUP: &str = "g";
const REQUEST_QUEUE: &str = "rq";
const PRODUCERS: usize = 2;
const MEMBERS: usize = 2;
const WORKERS: usize = 16;
const KEYS: u64 = 16;
/// Messages a producer sends before it waits for their acknowledgements.
const ROUND: u64 = 10;
/// Pause between rounds: keeps the log (and so the final drain) a size
/// that the long mode can still check in minutes.
const ROUND_PAUSE: Duration = Duration::from_millis(20);
const REQUEST_EVERY: Duration = Duration::from_millis(50);
const KILLS_DEFAULT: u64 = 4;
/// Time for everything to catch up after the last restart.
const CONVERGE_WITHIN: Duration = Duration::from_secs(120);
const CONNECT_RETRY: Duration = Duration::from_millis(50);

/// What every task observed, for the checks at the end.
#[derive(Default)]
struct Ledger {
    // Producers.
    /// value → (partition, offset) its acknowledgement named.
    acked: HashMap<String, (u32, u64)>,
    /// Values acknowledged twice at different places.
    ack_conflicts: Vec<String>,
    sends: u64,
    retries: u64,
    producers_done: usize,
    // The group.
    group_seen: HashMap<String, u32>,
    /// (partition, offset) → value, as the group received it.
    group_at: HashMap<(u32, u64), String>,
    group_conflicts: Vec<String>,
    group_rejoins: u64,
    // Queue workers.
    /// value → delivery counts handed out.
    deliveries: HashMap<String, Vec<u32>>,
    /// value → the delivery count whose ack was answered OK.
    ack_answered: HashMap<String, u32>,
    /// Values whose ack was sent but never answered (the connection died).
    ack_in_flight_at_crash: HashSet<String>,
    acks_refused: u64,
    // Requests.
    submitted: Vec<String>,
    completed: u64,
    finished_twice: u64,
    /// id → status, filled in while converging.
    request_status: HashMap<String, RequestStatus>,
    /// Submissions that asked for a callback.
    with_callback: HashSet<String>,
    /// id → the record's callback status ("pending", "delivered", "failed").
    callback_status: HashMap<String, String>,
    /// Errors that are not a lost connection: none are expected.
    unexpected: Vec<String>,
}

struct Shared {
    addr: RwLock<String>,
    /// Where every other request asks for its callback.
    callback_url: String,
    stop_producing: AtomicBool,
    stop_all: AtomicBool,
    ledger: Mutex<Ledger>,
}

impl Shared {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stopped(&self) -> bool {
        self.stop_all.load(Ordering::Relaxed)
    }

    /// Notes an error; `true` if it is only the connection (expected around
    /// a kill), `false` if it is something the server should never answer.
    fn note(&self, what: &str, e: &ClientError) -> bool {
        let connection = matches!(
            e,
            ClientError::Io(_) | ClientError::Disconnected(_) | ClientError::Closed(_)
        );
        if !connection {
            self.ledger().unexpected.push(format!("{what}: {e}"));
        }
        connection
    }
}

/// Connects to wherever the server is now, retrying while it restarts.
async fn connect(s: &Shared) -> Option<Client> {
    while !s.stopped() {
        let addr = s.addr.read().unwrap_or_else(|p| p.into_inner()).clone();
        let attempt = tokio::time::timeout(
            Duration::from_secs(2),
            Client::connect(&addr, ClientOptions::default()),
        );
        if let Ok(Ok(c)) = attempt.await {
            return Some(c);
        }
        tokio::time::sleep(CONNECT_RETRY).await;
    }
    None
}

fn value(producer: usize, seq: u64) -> String {
    format!("p{producer}-{seq}")
}

fn parse_value(v: &str) -> Option<(usize, u64)> {
    let (p, seq) = v.strip_prefix('p')?.split_once('-')?;
    Some((p.parse().ok()?, seq.parse().ok()?))
}

/// Sends rounds of keyed messages and waits for their acknowledgements;
/// what was not acknowledged is sent again, first and in order, over a new
/// connection, with the same message ID.
async fn producer(s: Arc<Shared>, id: usize) {
    let mut next = 0u64;
    let mut unacked: Vec<u64> = Vec::new();
    let mut current: Option<Producer> = None;
    loop {
        let stopping = s.stop_producing.load(Ordering::Relaxed);
        if (stopping && unacked.is_empty()) || s.stopped() {
            break;
        }
        let p = match &current {
            Some(p) => p.clone(),
            None => {
                let Some(c) = connect(&s).await else { break };
                let p = Producer::new(c, ProducerOptions::default());
                current = Some(p.clone());
                p
            }
        };
        let retrying = unacked.len() as u64;
        let mut round = std::mem::take(&mut unacked);
        if !stopping {
            while (round.len() as u64) < ROUND {
                round.push(next);
                next += 1;
            }
        }
        let mut waiting = Vec::with_capacity(round.len());
        for &seq in &round {
            let v = value(id, seq);
            let m = Message::new(v.clone())
                .with_key(format!("k{}", seq % KEYS))
                .with_message_id(v);
            waiting.push((seq, p.send(TOPIC, m).await));
        }
        let mut failed = false;
        for (seq, sent) in waiting {
            let outcome = match sent {
                Ok(delivery) => delivery.await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(d) => {
                    let v = value(id, seq);
                    let mut l = s.ledger();
                    if let Some(prev) = l.acked.insert(v.clone(), (d.partition, d.offset)) {
                        if prev != (d.partition, d.offset) {
                            l.ack_conflicts
                                .push(format!("{v} at {prev:?} and {}/{}", d.partition, d.offset));
                        }
                    }
                }
                Err(e) => {
                    s.note("produce", &e);
                    unacked.push(seq);
                    failed = true;
                }
            }
        }
        {
            let mut l = s.ledger();
            l.sends += round.len() as u64;
            l.retries += retrying;
        }
        if failed {
            current = None;
            tokio::time::sleep(CONNECT_RETRY).await;
        } else {
            tokio::time::sleep(ROUND_PAUSE).await;
        }
    }
    s.ledger().producers_done += 1;
}

/// A consumer-group member: polls, records, commits every few hundred ms;
/// rejoins over a new connection whenever anything fails.
async fn member(s: Arc<Shared>) {
    while !s.stopped() {
        let Some(c) = connect(&s).await else { break };
        let options = GroupOptions {
            session_timeout: Duration::from_secs(6),
            ..GroupOptions::default()
        };
        let mut g = match GroupConsumer::join(c, GROUP, vec![TOPIC.into()], options).await {
            Ok(g) => g,
            Err(e) => {
                s.note("join", &e);
                tokio::time::sleep(CONNECT_RETRY).await;
                continue;
            }
        };
        s.ledger().group_rejoins += 1;
        let mut last_commit = Instant::now();
        loop {
            if s.stopped() {
                let _ = g.close().await;
                return;
            }
            match g.poll(Duration::from_millis(200)).await {
                Ok(records) => {
                    let mut l = s.ledger();
                    for r in records {
                        let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())
                            .into_owned();
                        *l.group_seen.entry(v.clone()).or_default() += 1;
                        if let Some(prev) = l.group_at.insert((r.partition, r.offset), v.clone()) {
                            if prev != v {
                                l.group_conflicts
                                    .push(format!("{}/{}: {prev} then {v}", r.partition, r.offset));
                            }
                        }
                    }
                }
                Err(e) => {
                    s.note("poll", &e);
                    break;
                }
            }
            if last_commit.elapsed() > Duration::from_millis(300) {
                if let Err(e) = g.commit().await {
                    s.note("commit", &e);
                    break;
                }
                last_commit = Instant::now();
            }
        }
    }
}

/// A queue worker: receives up to 16, acknowledges them at once.
async fn queue_worker(s: Arc<Shared>) {
    'connection: while !s.stopped() {
        let Some(c) = connect(&s).await else { break };
        while !s.stopped() {
            let msgs = match c
                .receive(TOPIC, QUEUE, 16, Duration::from_millis(200))
                .await
            {
                Ok(m) => m,
                Err(e) => {
                    s.note("receive", &e);
                    continue 'connection;
                }
            };
            if msgs.is_empty() {
                continue;
            }
            let leased: Vec<(String, u32)> = msgs
                .iter()
                .map(|m| {
                    let v = String::from_utf8_lossy(m.value.as_deref().unwrap_or_default());
                    (v.into_owned(), m.deliveries)
                })
                .collect();
            {
                let mut l = s.ledger();
                for (v, d) in &leased {
                    l.deliveries.entry(v.clone()).or_default().push(*d);
                }
            }
            let receipts: Vec<String> = msgs.iter().map(|m| m.receipt.clone()).collect();
            match c.ack(TOPIC, QUEUE, &receipts).await {
                Ok(results) => {
                    let mut l = s.ledger();
                    for ((v, d), r) in leased.into_iter().zip(results) {
                        match r {
                            Ok(()) => {
                                if let Some(earlier) = l.ack_answered.insert(v.clone(), d) {
                                    l.unexpected.push(format!(
                                        "{v}: acks of deliveries {earlier} and {d} both answered OK"
                                    ));
                                }
                            }
                            Err(_) => l.acks_refused += 1,
                        }
                    }
                }
                Err(e) => {
                    s.note("ack", &e);
                    s.ledger()
                        .ack_in_flight_at_crash
                        .extend(leased.into_iter().map(|(v, _)| v));
                    continue 'connection;
                }
            }
        }
    }
}

/// Submits a request every 50 ms until producing stops.
async fn submitter(s: Arc<Shared>) {
    let mut n = 0u64;
    'connection: while !s.stop_producing.load(Ordering::Relaxed) && !s.stopped() {
        let Some(c) = connect(&s).await else { break };
        while !s.stop_producing.load(Ordering::Relaxed) {
            let callback = n.is_multiple_of(2).then_some(s.callback_url.as_str());
            match c
                .submit_request(REQUEST_QUEUE, format!("r{n}"), false, callback)
                .await
            {
                Ok(id) => {
                    let mut l = s.ledger();
                    if callback.is_some() {
                        l.with_callback.insert(id.clone());
                    }
                    l.submitted.push(id);
                    n += 1;
                }
                Err(e) => {
                    s.note("submit", &e);
                    continue 'connection;
                }
            }
            tokio::time::sleep(REQUEST_EVERY).await;
        }
    }
}

/// Works on requests: completes each one it receives.
async fn request_worker(s: Arc<Shared>) {
    'connection: while !s.stopped() {
        let Some(c) = connect(&s).await else { break };
        while !s.stopped() {
            let msgs = match c
                .receive(
                    REQUEST_QUEUE,
                    WORKERS_SUBSCRIPTION,
                    8,
                    Duration::from_millis(200),
                )
                .await
            {
                Ok(m) => m,
                Err(e) => {
                    s.note("receive request", &e);
                    continue 'connection;
                }
            };
            for m in msgs {
                let id = m
                    .headers
                    .iter()
                    .find(|(k, _)| k == REQUEST_ID_HEADER)
                    .and_then(|(_, v)| v.as_deref())
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                let result = serde_json::json!({ "deliveries": m.deliveries });
                match c.complete_request(&id, &result).await {
                    Ok(_) => s.ledger().completed += 1,
                    Err(e) if e.code() == Some(ErrorCode::RequestFinished) => {
                        // Completed before a crash whose answer never came back;
                        // its message is not needed any more.
                        s.ledger().finished_twice += 1;
                        let _ = c
                            .ack(
                                REQUEST_QUEUE,
                                WORKERS_SUBSCRIPTION,
                                std::slice::from_ref(&m.receipt),
                            )
                            .await;
                    }
                    Err(e) if e.code() == Some(ErrorCode::LeaseExpired) => {}
                    Err(e) => {
                        s.note("complete", &e);
                        continue 'connection;
                    }
                }
            }
        }
    }
}

/// Reads every partition of the topic from the start: partition → values
/// in offset order, with offsets.
async fn read_log(addr: &str) -> BTreeMap<u32, Vec<(u64, String)>> {
    let client = Client::connect(addr, ClientOptions::default())
        .await
        .unwrap();
    let description = client.describe_topic(TOPIC).await.unwrap();
    let ends: BTreeMap<u32, u64> = description
        .partitions
        .iter()
        .map(|p| (p.partition, p.end_offset))
        .collect();
    let mut reader = TopicReader::new(client, TOPIC, ReadStart::Earliest)
        .await
        .unwrap();
    let mut log: BTreeMap<u32, Vec<(u64, String)>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = ends.iter().all(|(p, end)| {
            reader
                .positions()
                .get(&(TOPIC.to_owned(), *p))
                .is_some_and(|pos| pos >= end)
        });
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "reading the log back timed out");
        for r in reader.poll(Duration::from_millis(500)).await.unwrap() {
            let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
            log.entry(r.partition).or_default().push((r.offset, v));
        }
    }
    log
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
    })
}

#[test]
fn sigkill_loop_with_producers_group_workers_and_requests_keeps_every_promise() {
    let kills = env_u64("SPOOL_CRASH_LOOP_KILLS").unwrap_or(KILLS_DEFAULT);
    let seed = env_u64("SPOOL_CRASH_LOOP_SEED").unwrap_or_else(rand::random);
    eprintln!("crash loop: {kills} kills, seed {seed} (SPOOL_CRASH_LOOP_SEED={seed} repeats the schedule)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProc::start(dir.path());
    ok(&server.cli(
        &[
            "topic",
            "create",
            TOPIC,
            "--partitions",
            &PARTITIONS.to_string(),
        ],
        b"",
    ));
    for (topic, sub) in [(TOPIC, QUEUE), (REQUEST_QUEUE, WORKERS_SUBSCRIPTION)] {
        if topic == REQUEST_QUEUE {
            ok(&server.cli(&["topic", "create", topic], b""));
        }
        // Unlimited deliveries: every kill costs leased messages a delivery,
        // and the long mode must not dead-letter work that is fine.
        ok(&server.cli(
            &[
                "subscription",
                "create",
                topic,
                sub,
                "--kind",
                "queue",
                "--max-deliveries",
                "0",
            ],
            b"",
        ));
    }

    // Callbacks go to a receiver in this process, which outlives every kill.
    let receiver = Receiver::start(200);
    let shared = Arc::new(Shared {
        addr: RwLock::new(server.addr.clone()),
        callback_url: format!("http://{}/done", receiver.addr),
        stop_producing: AtomicBool::new(false),
        stop_all: AtomicBool::new(false),
        ledger: Mutex::new(Ledger::default()),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for id in 0..PRODUCERS {
        tasks.push(rt.spawn(producer(shared.clone(), id)));
    }
    for _ in 0..MEMBERS {
        tasks.push(rt.spawn(member(shared.clone())));
    }
    for _ in 0..WORKERS {
        tasks.push(rt.spawn(queue_worker(shared.clone())));
    }
    tasks.push(rt.spawn(submitter(shared.clone())));
    tasks.push(rt.spawn(request_worker(shared.clone())));

    for k in 1..=kills {
        std::thread::sleep(Duration::from_millis(rng.random_range(300..2_500)));
        server.kill();
        let acked = shared.ledger().acked.len();
        std::thread::sleep(Duration::from_millis(rng.random_range(0..300)));
        server = ServerProc::start(dir.path());
        *shared.addr.write().unwrap() = server.addr.clone();
        eprintln!(
            "kill {k}/{kills} at {:.1?}: {acked} messages acknowledged so far",
            started.elapsed()
        );
    }
    // Some work on the last incarnation, then let everything catch up.
    std::thread::sleep(Duration::from_millis(rng.random_range(300..1_500)));
    shared.stop_producing.store(true, Ordering::Relaxed);
    let converge_started = Instant::now();
    let mut converged = false;
    while converge_started.elapsed() < CONVERGE_WITHIN {
        std::thread::sleep(Duration::from_millis(250));
        let pending_requests: Vec<String> = {
            let l = shared.ledger();
            l.submitted
                .iter()
                .filter(|id| !l.request_settled(id))
                .cloned()
                .collect()
        };
        let addr = server.addr.clone();
        let statuses = rt.block_on(async move {
            let mut out = Vec::new();
            if let Ok(c) = Client::connect(&addr, ClientOptions::default()).await {
                for id in pending_requests {
                    if let Ok(r) = c.get_request(&id, Duration::ZERO).await {
                        if let Some(status) = RequestStatus::of(&r) {
                            let callback = r["callback"]["status"].as_str().map(str::to_owned);
                            out.push((id, status, callback));
                        }
                    }
                }
            }
            out
        });
        let mut l = shared.ledger();
        for (id, status, callback) in statuses {
            if let Some(callback) = callback {
                l.callback_status.insert(id.clone(), callback);
            }
            l.request_status.insert(id, status);
        }
        let producers_done = l.producers_done == PRODUCERS;
        let group_done = l.acked.keys().all(|v| l.group_seen.contains_key(v));
        let queue_done = l
            .acked
            .keys()
            .all(|v| l.ack_answered.contains_key(v) || l.ack_in_flight_at_crash.contains(v));
        let requests_done = l.submitted.iter().all(|id| l.request_settled(id));
        if producers_done && group_done && queue_done && requests_done {
            converged = true;
            break;
        }
    }
    let converge_time = converge_started.elapsed();
    shared.stop_all.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    });
    let log = rt.block_on(read_log(&server.addr));
    drop(rt);
    server.terminate();

    let l = shared.ledger();
    // ---- the log: every acknowledged publish exactly once, where its ack said, in order.
    let mut stored: HashMap<&str, Vec<(u32, u64)>> = HashMap::new();
    for (p, records) in &log {
        let mut last_seq: HashMap<usize, u64> = HashMap::new();
        for (offset, v) in records {
            stored.entry(v.as_str()).or_default().push((*p, *offset));
            let (producer, seq) =
                parse_value(v).unwrap_or_else(|| panic!("{p}/{offset} holds {v:?}"));
            if let Some(prev) = last_seq.insert(producer, seq) {
                assert!(
                    seq > prev,
                    "partition {p}: producer {producer} message {seq} is stored after {prev} (offset {offset})"
                );
            }
        }
    }
    let duplicates: Vec<(&&str, &Vec<(u32, u64)>)> =
        stored.iter().filter(|(_, at)| at.len() > 1).collect();
    assert!(
        duplicates.is_empty(),
        "{} messages are stored more than once despite their message IDs, e.g. {:?}",
        duplicates.len(),
        &duplicates[..duplicates.len().min(5)]
    );
    let stored_total: usize = log.values().map(Vec::len).sum();
    assert!(
        l.ack_conflicts.is_empty(),
        "acknowledged at two places: {:?}",
        l.ack_conflicts
    );
    for (v, at) in &l.acked {
        assert_eq!(
            stored.get(v.as_str()).map(|s| s[0]),
            Some(*at),
            "{v} was acknowledged at {at:?}"
        );
    }
    let stuck_requests: Vec<(&String, Option<&RequestStatus>, Option<&String>)> = l
        .submitted
        .iter()
        .filter(|id| !l.request_settled(id))
        .map(|id| (id, l.request_status.get(id), l.callback_status.get(id)))
        .take(5)
        .collect();
    assert!(
        converged,
        "not converged {converge_time:?} after the last restart: producers done {}/{PRODUCERS}, {} acked, {} seen by the group, {} settled by workers, {}/{} requests final with their callback settled (not: {stuck_requests:?})",
        l.producers_done,
        l.acked.len(),
        l.acked.keys().filter(|v| l.group_seen.contains_key(*v)).count(),
        l.acked
            .keys()
            .filter(|v| l.ack_answered.contains_key(*v) || l.ack_in_flight_at_crash.contains(*v))
            .count(),
        l.submitted.iter().filter(|id| l.request_settled(id)).count(),
        l.submitted.len()
    );
    // Producers retried until everything was acknowledged: the log holds
    // exactly what was acknowledged.
    assert_eq!(
        stored_total,
        l.acked.len(),
        "the log holds messages that were never acknowledged"
    );
    // ---- the group: everything at least once, each at its logged place.
    assert!(
        l.group_conflicts.is_empty(),
        "the group saw different values at one offset: {:?}",
        l.group_conflicts
    );
    for ((p, offset), v) in &l.group_at {
        assert_eq!(
            stored.get(v.as_str()).map(|s| s[0]),
            Some((*p, *offset)),
            "the group saw {v} at {p}/{offset}"
        );
    }
    let group_missing = l
        .acked
        .keys()
        .filter(|v| !l.group_seen.contains_key(*v))
        .count();
    assert_eq!(group_missing, 0, "the group never saw some messages");
    // ---- queue workers: nothing delivered after an answered ack.
    let mut redelivered_after_ack = Vec::new();
    let mut repeated_counts = Vec::new();
    let mut in_flight_back = 0;
    for (v, counts) in &l.deliveries {
        if let Some(&acked_at) = l.ack_answered.get(v) {
            if counts.iter().any(|&d| d > acked_at) {
                redelivered_after_ack.push(format!(
                    "{v}: acked delivery {acked_at}, deliveries {counts:?}"
                ));
            }
        }
        let distinct: HashSet<u32> = counts.iter().copied().collect();
        if distinct.len() != counts.len() {
            repeated_counts.push(format!("{v}: {counts:?}"));
        }
        if l.ack_in_flight_at_crash.contains(v) && counts.len() > 1 {
            in_flight_back += 1;
        }
    }
    assert!(
        redelivered_after_ack.is_empty(),
        "{} messages were delivered again after their ack was answered: {:?}",
        redelivered_after_ack.len(),
        &redelivered_after_ack[..redelivered_after_ack.len().min(5)]
    );
    assert!(
        repeated_counts.is_empty(),
        "delivery counts repeated (a lease record lost in a process crash): {:?}",
        &repeated_counts[..repeated_counts.len().min(5)]
    );
    // ---- requests: every acknowledged submission succeeded.
    let failed: Vec<&String> = l
        .submitted
        .iter()
        .filter(|id| l.request_status.get(*id) != Some(&RequestStatus::Succeeded))
        .collect();
    assert!(
        failed.is_empty(),
        "{} request records did not succeed: {:?}",
        failed.len(),
        failed
            .iter()
            .take(5)
            .map(|id| (id, l.request_status.get(*id)))
            .collect::<Vec<_>>()
    );
    // ---- callbacks: each delivered (the receiver has its record) or
    // recorded as failed; none left pending.
    let received: Vec<(String, String)> = receiver.got.lock().unwrap().clone();
    let mut delivered = 0usize;
    let mut callbacks_failed = 0usize;
    for id in &l.with_callback {
        match l.callback_status.get(id).map(String::as_str) {
            Some("delivered") => {
                delivered += 1;
                assert!(
                    received.iter().any(|(body, _)| body.contains(id.as_str())),
                    "callback of {id} recorded as delivered but never received"
                );
            }
            Some("failed") => callbacks_failed += 1,
            other => panic!("callback of {id} neither delivered nor failed: {other:?}"),
        }
    }
    assert!(
        l.unexpected.is_empty(),
        "errors other than lost connections: {:?}",
        &l.unexpected[..l.unexpected.len().min(10)]
    );
    // The run must have done real work on every front, or it proved little.
    assert!(
        !l.acked.is_empty() && !l.submitted.is_empty() && !l.ack_answered.is_empty(),
        "nothing happened"
    );

    let deliveries: usize = l.deliveries.values().map(Vec::len).sum();
    let group_reads: u32 = l.group_seen.values().sum();
    eprintln!(
        "crash loop done in {:.1?} (converged {converge_time:.1?} after the last restart): {kills} kills; \
         {} messages acknowledged and stored once each ({} sends, {} retries); \
         group read {group_reads} ({} duplicates after crashes, {} joins); \
         queue: {deliveries} deliveries, {} acks answered, {} acks in flight at a kill ({in_flight_back} of them delivered again), {} refused; \
         requests: {} submitted, all succeeded ({} completions, {} completed twice); \
         callbacks: {} asked, {delivered} delivered ({} POSTs received), {callbacks_failed} recorded as failed",
        started.elapsed(),
        l.acked.len(),
        l.sends,
        l.retries,
        group_reads as usize - l.group_seen.len(),
        l.group_rejoins,
        l.ack_answered.len(),
        l.ack_in_flight_at_crash.len(),
        l.acks_refused,
        l.submitted.len(),
        l.completed,
        l.finished_twice,
        l.with_callback.len(),
        received.len(),
    );
}

impl Ledger {
    /// The request's record is final and, if it asked for a callback, that
    /// callback is delivered or recorded as failed.
    fn request_settled(&self, id: &str) -> bool {
        self.request_status.get(id).is_some_and(|s| s.is_final())
            && (!self.with_callback.contains(id)
                || self
                    .callback_status
                    .get(id)
                    .is_some_and(|c| c == "delivered" || c == "failed"))
    }
}
