//! The cluster fault harness, Jepsen-style, on one machine: real `spool
//! server` processes, faults at random (seeded) moments — SIGKILL and
//! restart, SIGSTOP for longer than an election timeout then SIGCONT, a
//! node cut off from the others by the fault proxies on the cluster links,
//! a node's disk filled to the last byte then freed (each node's data
//! directory is a small tmpfs of its own; where mounting is not allowed,
//! this fault is left out, saying so), a node's data directory wiped and
//! the node restarted under its id (it rejoins as a new member and catches
//! up; the harness waits for that before the next fault, as two lost disks
//! at once would be a majority of a partition's replicas) — while
//! idempotent producers write through whichever nodes are up. After
//! healing, a checker reads every partition from every node and asserts:
//! every acknowledged message is present exactly once, at the offset its
//! acknowledgement named; nothing is stored twice; each producer's messages
//! are in send order within a partition; every node holds the same
//! records with the same terms, and terms never go down along a partition
//! (two leaders writing in one term would show as diverging logs). Readers
//! follow every partition meanwhile (`readers`): each record a node showed
//! them must be the healed cluster's record at that offset and term; so
//! must each record members of a consumer group (`groups`) were shown,
//! polling and committing through whichever node is up.
//!
//! Short mode (CI): 6 faults on 3 nodes. `SPOOL_CLUSTER_FAULTS=100` for a
//! long run, `SPOOL_CLUSTER_NODES=5` for five nodes, `SPOOL_CLUSTER_SEED`
//! to replay a schedule (the seed is printed), `SPOOL_CLUSTER_FAULT_KINDS`
//! to draw only some kinds of fault, `SPOOL_CLUSTER_LINGER_MS` for the
//! producers' cluster linger.

mod groups;
mod readers;

use crate::support::{ServerProc, Tmpfs, BIN};
use rand::{Rng, SeedableRng};
use spool_client::{Client, ClientOptions, Message, Producer, ProducerOptions};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const SECRET: &str = "the fault harness's cluster secret";
const TOPIC: &str = "faults";
const PARTITIONS: u32 = 3;
/// The cluster handshake's first message: magic, version, the dialer's id.
const HELLO_BYTES: usize = 30;
const PRODUCERS: usize = 3;
/// Readers following every partition through whichever node is up.
const READERS: usize = 2;
/// Members of one consumer group, each through whichever node is up.
const GROUP_MEMBERS: usize = 2;
/// Each node's file system: room for the long mode's data (~30 MB), and
/// what a full-disk fault fills with ballast.
const NODE_DISK: &str = "256m";

/// The faults `fault` injects by number (`SPOOL_CLUSTER_FAULT_KINDS`).
const FULL_DISK: u32 = 3;
const WIPE: u32 = 4;
/// How long a wiped node may take to be a member in sync again.
const WIPE_HEAL_S: u64 = 60;

/// Unordered node pairs whose links the proxies cut.
type Cuts = watch::Sender<BTreeSet<(u64, u64)>>;

fn pair(a: u64, b: u64) -> (u64, u64) {
    (a.min(b), a.max(b))
}

/// Fronts node `id`'s cluster listener: peers dial the proxy, which reads
/// the dialer's id from the handshake and drops the connection while the
/// pair is cut (and cuts live ones when the cut comes).
async fn proxy(listener: TcpListener, id: u64, target: u16, cuts: Arc<Cuts>) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        let cuts = cuts.clone();
        tokio::spawn(async move {
            let mut hello = [0u8; HELLO_BYTES];
            if inbound.read_exact(&mut hello).await.is_err() {
                return;
            }
            let from = u64::from_be_bytes(hello[6..14].try_into().expect("8 bytes"));
            let link = pair(from, id);
            let mut watch = cuts.subscribe();
            if watch.borrow_and_update().contains(&link) {
                return;
            }
            let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                return;
            };
            if outbound.write_all(&hello).await.is_err() {
                return;
            }
            let cut = async {
                loop {
                    if watch.changed().await.is_err() || watch.borrow().contains(&link) {
                        return;
                    }
                }
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = cut => {}
            }
        });
    }
}

/// Fields drop in order: the process stops before its disk goes.
struct Node {
    proc: Option<ServerProc>,
    data: PathBuf,
    /// The node's own file system, when the machine allows mounting one.
    disk: Option<Tmpfs>,
    cluster_port: u16,
    paused: bool,
}

/// Fields drop in order: the nodes (and their disks) before the directory
/// that holds them.
struct Harness {
    nodes: BTreeMap<u64, Node>,
    _dir: tempfile::TempDir,
    secret: PathBuf,
    peers: String,
    cuts: Arc<Cuts>,
    /// The client addresses of the nodes up now, for the workload.
    addrs: Arc<Mutex<Vec<String>>>,
}

/// The node worker `k` uses on its `round`th try: the nodes that are up,
/// each worker starting from its own.
fn pick_node(addrs: &Mutex<Vec<String>>, k: usize, round: usize) -> Option<String> {
    let up = addrs.lock().expect("addrs");
    (!up.is_empty()).then(|| up[(k + round) % up.len()].clone())
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl Harness {
    fn start(rt: &tokio::runtime::Runtime, count: u64) -> Harness {
        let dir = tempfile::tempdir().expect("dir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, SECRET).expect("secret");
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        let cuts = Arc::new(watch::Sender::new(BTreeSet::new()));
        let mut peers = Vec::new();
        let mut nodes = BTreeMap::new();
        for id in 1..=count {
            let listener = rt
                .block_on(TcpListener::bind("127.0.0.1:0"))
                .expect("proxy");
            let proxy_port = listener.local_addr().expect("addr").port();
            let cluster_port = free_port();
            rt.spawn(proxy(listener, id, cluster_port, cuts.clone()));
            peers.push(format!("{id}=127.0.0.1:{proxy_port}"));
            let data = dir.path().join(format!("node-{id}"));
            let disk = match Tmpfs::mount(&data, NODE_DISK) {
                Ok(disk) => Some(disk),
                Err(why) => {
                    println!("node {id}: no full-disk faults ({why})");
                    None
                }
            };
            let node = Node {
                data,
                disk,
                cluster_port,
                proc: None,
                paused: false,
            };
            nodes.insert(id, node);
        }
        let mut harness = Harness {
            _dir: dir,
            secret,
            peers: peers.join(","),
            nodes,
            cuts,
            addrs: Arc::default(),
        };
        for id in 1..=count {
            harness.start_node(id);
        }
        harness
    }

    fn start_node(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("node");
        let listen = format!("127.0.0.1:{}", node.cluster_port);
        let flags = [
            "--node-id",
            &id.to_string(),
            "--peers",
            &self.peers,
            "--cluster-listen",
            &listen,
            "--cluster-secret-file",
            &self.secret.to_string_lossy(),
        ]
        .map(str::to_owned);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        node.proc = Some(ServerProc::start_with(&node.data, "127.0.0.1:0", &flags));
        self.publish_addrs();
    }

    fn publish_addrs(&self) {
        let up: Vec<String> = self
            .nodes
            .values()
            .filter(|n| !n.paused)
            .filter_map(|n| n.proc.as_ref().map(|p| p.addr.clone()))
            .collect();
        *self.addrs.lock().expect("addrs") = up;
    }

    fn signal(&self, id: u64, signal: &str) {
        self.nodes[&id]
            .proc
            .as_ref()
            .expect("running")
            .signal(signal);
    }

    fn isolate(&self, id: u64, cut: bool) {
        self.cuts.send_modify(|cuts| {
            for other in self.nodes.keys().filter(|o| **o != id) {
                if cut {
                    cuts.insert(pair(id, *other));
                } else {
                    cuts.remove(&pair(id, *other));
                }
            }
        });
    }

    /// One fault on `id`, lasting `hold`, then healed.
    fn fault(&mut self, kind: u32, id: u64, hold: Duration) -> String {
        match kind {
            0 => {
                if let Some(mut p) = self.nodes.get_mut(&id).and_then(|n| n.proc.take()) {
                    p.kill();
                }
                self.publish_addrs();
                std::thread::sleep(hold);
                self.start_node(id);
                format!("SIGKILL node {id}, restarted after {hold:?}")
            }
            1 => {
                self.signal(id, "-STOP");
                self.nodes.get_mut(&id).expect("node").paused = true;
                self.publish_addrs();
                std::thread::sleep(hold);
                self.signal(id, "-CONT");
                self.nodes.get_mut(&id).expect("node").paused = false;
                self.publish_addrs();
                format!("SIGSTOP node {id} for {hold:?}")
            }
            2 => {
                self.isolate(id, true);
                std::thread::sleep(hold);
                self.isolate(id, false);
                format!("cut node {id} off for {hold:?}")
            }
            FULL_DISK => {
                let disk = self.nodes[&id].disk.as_ref().expect("a disk of its own");
                disk.fill("ballast");
                std::thread::sleep(hold);
                std::fs::remove_file(disk.path.join("ballast")).expect("free space");
                format!("filled node {id}'s disk for {hold:?}")
            }
            _ => {
                if let Some(mut p) = self.nodes.get_mut(&id).and_then(|n| n.proc.take()) {
                    p.kill();
                }
                self.publish_addrs();
                let data = &self.nodes[&id].data;
                // The directory may be a mount point: its contents go.
                for entry in std::fs::read_dir(data).expect("data dir") {
                    let path = entry.expect("entry").path();
                    let removed = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                    removed.expect("wipe");
                }
                std::thread::sleep(hold);
                self.start_node(id);
                let started = Instant::now();
                self.wait_all_in_sync();
                format!(
                    "wiped node {id}'s data directory, restarted after {hold:?}; a new member in \
                     sync after {:?}",
                    started.elapsed()
                )
            }
        }
    }

    /// Waits until every partition has all its replicas in sync and the
    /// metadata group every node (a wiped node replaced and caught up).
    fn wait_all_in_sync(&self) {
        let count = self.nodes.len();
        let deadline = Instant::now() + Duration::from_secs(WIPE_HEAL_S);
        loop {
            let addrs = self.addrs.lock().expect("addrs").join(",");
            let out = std::process::Command::new(BIN)
                .args(["--addr", &addrs, "cluster", "status", "--json"])
                .output()
                .expect("cluster status");
            let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let in_sync = |v: &serde_json::Value| v["in_sync"].as_array().map(Vec::len);
            let partitions = status["partitions"].as_array().cloned().unwrap_or_default();
            let replicas = |v: &serde_json::Value| v["replicas"].as_array().map(Vec::len);
            let all = !partitions.is_empty()
                && partitions.iter().all(|p| in_sync(p) == replicas(p))
                && in_sync(&status["metadata"]) == Some(count);
            if all {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "a wiped node was not in sync again after {WIPE_HEAL_S} s: {status:#}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The kinds of fault `fault` can inject here: the full disk only
    /// where every node has a file system of its own.
    fn fault_kinds(&self) -> Vec<u32> {
        let disks = self.nodes.values().all(|n| n.disk.is_some());
        (0..=WIPE).filter(|k| *k != FULL_DISK || disks).collect()
    }
}

/// What producers learnt: each acknowledged value's place.
#[derive(Default)]
struct Acks {
    placed: HashMap<String, (u32, u64)>,
    sent: u64,
    /// Deliveries neither acknowledged nor failed within
    /// [`DELIVERY_ANSWER_S`], with the node their producer used: a
    /// producer (or a node) that stopped answering.
    unanswered: Vec<(String, String)>,
}

/// How long a delivery may go unanswered: past the client's own 30 s wait
/// for a leader (after which it fails the delivery) plus a node's 10 s
/// wait for a majority before the first and after the last try
/// (`TIMEOUT`).
const DELIVERY_ANSWER_S: u64 = 60;

/// Produces `p{k}.{incarnation}.{n}` through some node that is up, one
/// producer (so one producer id) per connection; when the connection or a
/// send fails, what was not acknowledged is given up (it may or may not be
/// stored: the checker allows at most once) and a new producer starts on
/// another node.
async fn produce(
    k: usize,
    addrs: Arc<Mutex<Vec<String>>>,
    acks: Arc<Mutex<Acks>>,
    stop: watch::Receiver<bool>,
) {
    let mut incarnation = 0;
    while !*stop.borrow() {
        incarnation += 1;
        let Some(addr) = pick_node(&addrs, k, incarnation) else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let connect = Client::connect(addr.as_str(), ClientOptions::default());
        let Ok(Ok(client)) = tokio::time::timeout(Duration::from_secs(2), connect).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let producer = Producer::new(client, producer_options());
        let mut waiting = Vec::new();
        for n in 0u64.. {
            if *stop.borrow() {
                break;
            }
            let value = format!("p{k}.{incarnation}.{n}");
            let Ok(delivery) = producer.send(TOPIC, Message::new(value.clone())).await else {
                break;
            };
            acks.lock().expect("acks").sent += 1;
            waiting.push((value, delivery));
            if waiting.len() >= 64 && !settle(&mut waiting, &acks, &addr).await {
                break;
            }
        }
        settle(&mut waiting, &acks, &addr).await;
    }
}

/// The producers' options: the defaults, with `SPOOL_CLUSTER_LINGER_MS`
/// (if set) as their cluster linger (off by default: RELIABILITY.md).
fn producer_options() -> ProducerOptions {
    let mut options = ProducerOptions::default();
    if let Some(ms) = std::env::var("SPOOL_CLUSTER_LINGER_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        options.cluster_linger = Duration::from_millis(ms);
    }
    options
}

/// Waits for every outstanding delivery (all of them answered within
/// [`DELIVERY_ANSWER_S`]); false if any failed or went unanswered.
async fn settle(
    waiting: &mut Vec<(String, spool_client::DeliveryFuture)>,
    acks: &Mutex<Acks>,
    addr: &str,
) -> bool {
    let mut all_ok = true;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(DELIVERY_ANSWER_S);
    for (value, delivery) in waiting.drain(..) {
        match tokio::time::timeout_at(deadline, delivery).await {
            Err(_) => {
                eprintln!("unanswered for {DELIVERY_ANSWER_S} s: {value} through {addr}");
                acks.lock()
                    .expect("acks")
                    .unanswered
                    .push((value, addr.to_owned()));
                all_ok = false;
            }
            Ok(Ok(d)) => {
                let previous = acks
                    .lock()
                    .expect("acks")
                    .placed
                    .insert(value.clone(), (d.partition, d.offset));
                assert!(previous.is_none(), "{value} acknowledged twice");
            }
            _ => all_ok = false,
        }
    }
    all_ok
}

/// A stored record as the checker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    offset: u64,
    term: i32,
    value: String,
}

/// Every record of every partition as `addr` serves it.
async fn read_node(addr: &str) -> BTreeMap<u32, Vec<Stored>> {
    let client = Client::connect(addr, ClientOptions::default())
        .await
        .expect("connect for the check");
    let mut out = BTreeMap::new();
    for partition in 0..PARTITIONS {
        let mut records: Vec<Stored> = Vec::new();
        let mut offset = 0u64;
        let mut served = true;
        loop {
            let fetched = client
                .fetch(spool_proto::Fetch {
                    max_wait_ms: 0,
                    max_bytes: 4 << 20,
                    partitions: vec![spool_proto::FetchPartition {
                        topic: TOPIC.into(),
                        partition,
                        offset,
                        max_bytes: 4 << 20,
                    }],
                })
                .await
                .expect("fetch");
            let p = &fetched.partitions[0];
            if p.error.is_some() {
                // No replica answered through this node (yet): the
                // caller reads again until every node agrees.
                served = false;
                break;
            }
            let before = records.len();
            records.extend(stored_records(&p.batches, offset));
            match records.last() {
                Some(last) if records.len() > before => offset = last.offset + 1,
                _ => break,
            }
        }
        if served {
            out.insert(partition, records);
        }
    }
    out
}

/// The data records of fetched `batches` at or after `from`.
fn stored_records(batches: &[u8], from: u64) -> Vec<Stored> {
    let mut records = Vec::new();
    for batch in spool_batch::split_batches(batches) {
        let batch = batch.expect("whole batch");
        let header = spool_batch::BatchHeader::parse_with_control(batch).expect("header");
        if header.is_control() {
            continue;
        }
        let valid = spool_batch::validate(batch).expect("valid batch");
        for r in spool_batch::records(batch, &valid) {
            let r = r.expect("record");
            let at = (header.base_offset + r.offset_delta as i64) as u64;
            if at < from {
                continue;
            }
            let value = String::from_utf8_lossy(r.value.unwrap_or_default()).into_owned();
            records.push(Stored {
                offset: at,
                term: header.partition_leader_epoch,
                value,
            });
        }
    }
    records
}

/// Each partition as its replicas hold it, checked to be the same on all.
fn agreed(nodes: &BTreeMap<u64, BTreeMap<u32, Vec<Stored>>>) -> BTreeMap<u32, Vec<Stored>> {
    let mut agreed: BTreeMap<u32, (u64, Vec<Stored>)> = BTreeMap::new();
    for (id, log) in nodes {
        for (partition, records) in log {
            match agreed.get(partition) {
                None => {
                    agreed.insert(*partition, (*id, records.clone()));
                }
                Some((first, theirs)) if theirs != records => {
                    let at = theirs.iter().zip(records).position(|(a, b)| a != b);
                    panic!(
                        "partition {partition}: node {id} and node {first} differ (lengths {} and \
                         {}, first difference at index {at:?})",
                        records.len(),
                        theirs.len()
                    );
                }
                Some(_) => {}
            }
        }
    }
    agreed.into_iter().map(|(p, (_, r))| (p, r)).collect()
}

fn check(nodes: &BTreeMap<u64, BTreeMap<u32, Vec<Stored>>>, acks: &Acks) {
    let first = agreed(nodes);
    assert_eq!(first.len(), PARTITIONS as usize, "every partition was read");
    let mut seen: HashMap<&str, (u32, u64)> = HashMap::new();
    for (partition, records) in &first {
        let mut last_term = i32::MIN;
        // Per producer incarnation, the last sequence number seen here.
        let mut last_n: HashMap<&str, u64> = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.offset, i as u64, "partition {partition}: offsets dense");
            assert!(
                r.term >= last_term,
                "partition {partition}: term went down at {}",
                r.offset
            );
            last_term = r.term;
            let previous = seen.insert(&r.value, (*partition, r.offset));
            assert!(
                previous.is_none(),
                "{} stored twice: {previous:?} and {}/{}",
                r.value,
                partition,
                r.offset
            );
            let (producer, n) = r.value.rsplit_once('.').expect("p.i.n");
            let n: u64 = n.parse().expect("n");
            if let Some(before) = last_n.insert(producer, n) {
                assert!(
                    n > before,
                    "partition {partition}: {producer} out of order ({before} then {n})"
                );
            }
        }
    }
    for (value, place) in &acks.placed {
        assert_eq!(
            seen.get(value.as_str()),
            Some(place),
            "{value} was acknowledged at {place:?}"
        );
    }
}

#[test]
fn acknowledged_messages_survive_kills_pauses_and_partitions() {
    let faults: u32 = std::env::var("SPOOL_CLUSTER_FAULTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let count: u64 = std::env::var("SPOOL_CLUSTER_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let seed: u64 = std::env::var("SPOOL_CLUSTER_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    println!("fault harness: {count} nodes, {faults} faults, SPOOL_CLUSTER_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut harness = Harness::start(&rt, count);
    let all = harness.addrs.lock().expect("addrs").join(",");
    let created = std::process::Command::new(BIN)
        .args(["--addr", &all, "topic", "create", TOPIC, "--partitions"])
        .arg(PARTITIONS.to_string())
        .output()
        .expect("create");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );

    let acks = Arc::new(Mutex::new(Acks::default()));
    let (stop_tx, stop) = watch::channel(false);
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|k| {
            rt.spawn(produce(
                k,
                harness.addrs.clone(),
                acks.clone(),
                stop.clone(),
            ))
        })
        .collect();
    let observed = readers::Observed::default();
    let reading: Vec<_> = (0..READERS)
        .map(|k| {
            rt.spawn(readers::read_continuously(
                k,
                harness.addrs.clone(),
                observed.clone(),
                stop.clone(),
            ))
        })
        .collect();
    let group_seen = groups::GroupSeen::default();
    let members: Vec<_> = (0..GROUP_MEMBERS)
        .map(|k| {
            rt.spawn(groups::consume_in_group(
                k,
                harness.addrs.clone(),
                group_seen.clone(),
                stop.clone(),
            ))
        })
        .collect();
    // `SPOOL_CLUSTER_FAULT_KINDS=3` (say) draws only full disks: 0 SIGKILL,
    // 1 SIGSTOP, 2 cut off, 3 full disk, 4 wiped data directory.
    let kinds: Vec<u32> = match std::env::var("SPOOL_CLUSTER_FAULT_KINDS") {
        Ok(list) => list
            .split(',')
            .map(|k| {
                k.trim()
                    .parse()
                    .expect("SPOOL_CLUSTER_FAULT_KINDS: numbers")
            })
            .filter(|k| harness.fault_kinds().contains(k))
            .collect(),
        Err(_) => harness.fault_kinds(),
    };
    assert!(!kinds.is_empty(), "no fault kind to draw");
    let started = Instant::now();
    for i in 0..faults {
        std::thread::sleep(Duration::from_millis(rng.random_range(500..2_000)));
        let id = rng.random_range(1..=count);
        let kind = kinds[rng.random_range(0..kinds.len())];
        let hold = Duration::from_millis(rng.random_range(1_200..2_500));
        let what = harness.fault(kind, id, hold);
        let acked = acks.lock().expect("acks").placed.len();
        println!(
            "fault {}/{faults} at {:?}: {what} ({acked} acknowledged so far)",
            i + 1,
            started.elapsed()
        );
    }
    // Healed (every fault heals itself); let the producers go on a little,
    // then stop them and wait for what they have in flight.
    std::thread::sleep(Duration::from_secs(2));
    stop_tx.send_replace(true);
    for p in producers {
        rt.block_on(p).expect("producer task");
    }
    for r in reading {
        rt.block_on(r).expect("reader task");
    }
    for m in members {
        rt.block_on(m).expect("group member task");
    }
    let acks = Arc::try_unwrap(acks)
        .ok()
        .expect("acks")
        .into_inner()
        .expect("acks");
    assert!(
        acks.unanswered.is_empty(),
        "deliveries went unanswered (neither acknowledged nor failed): {:?}",
        &acks.unanswered[..acks.unanswered.len().min(5)]
    );
    assert!(
        acks.placed.len() > 1_000,
        "the workload barely ran: {}",
        acks.placed.len()
    );

    // Every node catches up, then each serves the same records.
    let deadline = Instant::now() + Duration::from_secs(30);
    let reads = loop {
        let addrs = harness.addrs.lock().expect("addrs").clone();
        let reads: BTreeMap<u64, _> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| (i as u64, rt.block_on(read_node(a))))
            .collect();
        let caught_up = (0..PARTITIONS).all(|p| {
            let lens: Vec<usize> = reads
                .values()
                .filter_map(|r| r.get(&p))
                .map(Vec::len)
                .collect();
            lens.windows(2).all(|w| w[0] == w[1])
        });
        if caught_up || Instant::now() > deadline {
            break reads;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    check(&reads, &acks);
    let agreed = agreed(&reads);
    let stored: usize = agreed.values().map(Vec::len).sum();
    let shown = readers::check_observed(&agreed, &observed);
    assert!(
        shown * 2 > stored,
        "the readers saw {shown} of {stored} records"
    );
    let consumed = groups::check_seen(&agreed, &group_seen);
    assert!(
        consumed * 2 > stored,
        "the group members saw {consumed} of {stored} records"
    );
    println!(
        "checked: {} acknowledged of {} sent, {stored} stored, each partition identical on its replicas ({} nodes read); {shown} records shown to readers and {consumed} to group members, each the one the cluster holds",
        acks.placed.len(),
        acks.sent,
        reads.len()
    );
    drop(harness);
}
