//! Replicated clusters of real `spool server` processes on loopback: a
//! topic created through any node is on all of them, produced messages are
//! read back from every node, a leader SIGKILLed in the middle of a produce
//! costs no acknowledged message and stores none twice, and a restarted
//! node catches up. (The long, randomised fault runs are the harness in
//! RELIABILITY.md; this is the short proof that runs in CI.)

use crate::support::{cli, ok, text, ServerProc, Tmpfs};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use tempfile::TempDir;

const SECRET: &str = "the integration tests' cluster secret";

struct Cluster {
    dir: TempDir,
    peers: String,
    nodes: BTreeMap<u64, ServerProc>,
}

/// Loopback ports that were free a moment ago, for the node-to-node
/// listeners (every node must know them all before any starts).
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

impl Cluster {
    fn start(count: u64) -> Cluster {
        let mut cluster = Cluster::prepare(count);
        for id in 1..=count {
            cluster.start_node(id);
        }
        cluster
    }

    /// A cluster of `count` nodes, none started yet.
    fn prepare(count: u64) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("secret"), SECRET).expect("secret");
        std::fs::set_permissions(
            dir.path().join("secret"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod");
        let ports = free_ports(count as usize);
        let peers: Vec<String> = (1..=count)
            .zip(&ports)
            .map(|(id, port)| format!("{id}=127.0.0.1:{port}"))
            .collect();
        Cluster {
            dir,
            peers: peers.join(","),
            nodes: BTreeMap::new(),
        }
    }

    fn data_dir(&self, id: u64) -> std::path::PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    fn start_node(&mut self, id: u64) {
        let data = self.data_dir(id);
        let secret = self.dir.path().join("secret");
        let node = start_node(&data, id, &self.peers, &secret);
        self.nodes.insert(id, node);
    }

    /// Three nodes, node 3's data directory on a small file system of its
    /// own (to fill); `None`, saying so, where mounting is not allowed.
    fn start_with_small_disk_on_3() -> Option<(Cluster, Tmpfs)> {
        let mut cluster = Cluster::prepare(3);
        let tmpfs = match Tmpfs::mount(&cluster.data_dir(3), "48m") {
            Ok(mounted) => mounted,
            Err(why) => {
                eprintln!("SKIPPED full-disk cluster test: {why}");
                return None;
            }
        };
        for id in 1..=3 {
            cluster.start_node(id);
        }
        Some((cluster, tmpfs))
    }

    /// Where [`Cluster::start_node_logging`] writes node `id`'s log.
    fn log_path(&self, id: u64) -> std::path::PathBuf {
        self.dir.path().join(format!("node-{id}.log"))
    }

    /// [`Cluster::start`] with every node's log kept ([`Cluster::log_path`]).
    fn start_logging(count: u64) -> Cluster {
        let mut cluster = Cluster::prepare(count);
        for id in 1..=count {
            cluster.start_node_logging(id);
        }
        cluster
    }

    /// Produces `count` lines `prefix-i` through the running nodes, all
    /// acknowledged.
    fn produce(&self, topic: &str, prefix: &str, count: usize) {
        let out = ok(&cli(
            &self.addrs(),
            &["produce", topic],
            &lines(prefix, count),
        ));
        assert!(out.ends_with(&format!("acknowledged: {count}\n")), "{out}");
    }

    /// [`Cluster::start_node`] with the node's log at `info` kept.
    fn start_node_logging(&mut self, id: u64) {
        let (data, log) = (self.data_dir(id), self.log_path(id));
        let secret = self
            .dir
            .path()
            .join("secret")
            .to_string_lossy()
            .into_owned();
        let id_text = id.to_string();
        let flags = [
            "--node-id",
            &id_text,
            "--peers",
            &self.peers,
            "--cluster-secret-file",
            &secret,
        ];
        let node = ServerProc::start_with_log(&data, &flags, &log);
        self.nodes.insert(id, node);
    }

    /// Every running node's address, comma-separated (`--addr`).
    fn addrs(&self) -> String {
        let addrs: Vec<&str> = self.nodes.values().map(|n| n.addr.as_str()).collect();
        addrs.join(",")
    }

    /// `spool cluster status --json` through `addr`, parsed.
    fn status(&self, addr: &str) -> serde_json::Value {
        let out = ok(&cli(addr, &["cluster", "status", "--json"], b""));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("status JSON: {e}: {out}"))
    }

    /// Creates `topic` through node 1 and waits until each of its
    /// partitions is led with every node in sync; the CLI's output.
    fn create_topic(&self, topic: &str, partitions: u32) -> String {
        let created = ok(&cli(
            &self.nodes[&1].addr,
            &[
                "topic",
                "create",
                topic,
                "--partitions",
                &partitions.to_string(),
            ],
            b"",
        ));
        let nodes = self.nodes.len();
        self.status_until("led and in sync", |s| all_led_with(s, nodes));
        created
    }

    /// Polls the status until `ready` holds (or panics after 20 s).
    fn status_until(&self, what: &str, ready: impl Fn(&serde_json::Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let addr = self.addrs();
            let status = self.status(&addr);
            if ready(&status) {
                return;
            }
            assert!(Instant::now() < deadline, "never {what}: {status:#}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn start_node(data: &Path, id: u64, peers: &str, secret: &Path) -> ServerProc {
    let id = id.to_string();
    let secret = secret.to_string_lossy().into_owned();
    let flags = [
        "--node-id",
        &id,
        "--peers",
        peers,
        "--cluster-secret-file",
        &secret,
    ];
    ServerProc::start_with(data, "127.0.0.1:0", &flags)
}

/// Every partition of the status has a leader and all of `in_sync`.
fn all_led_with(status: &serde_json::Value, in_sync: usize) -> bool {
    status["partitions"].as_array().is_some_and(|ps| {
        !ps.is_empty()
            && ps.iter().all(|p| {
                p["leader"].is_u64() && p["in_sync"].as_array().map(Vec::len) == Some(in_sync)
            })
    })
}

/// The values read from `addr`, in the order printed (per partition in
/// offset order).
fn read_all(addr: &str, topic: &str) -> Vec<String> {
    let out = ok(&cli(addr, &["consume", topic, "--timeout-ms", "1500"], b""));
    out.lines().map(str::to_owned).collect()
}

fn lines(prefix: &str, count: usize) -> Vec<u8> {
    (0..count)
        .map(|i| format!("{prefix}-{i}\n"))
        .collect::<String>()
        .into_bytes()
}

/// Every value appears exactly once, and the expected ones are all there.
fn assert_exactly_once(read: &[String], expected: &[(&str, usize)]) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for v in read {
        *seen.entry(v.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    for (prefix, count) in expected {
        for i in 0..*count {
            let v = format!("{prefix}-{i}");
            assert!(
                seen.contains_key(v.as_str()),
                "{v} was acknowledged but is missing"
            );
        }
    }
    let total: usize = expected.iter().map(|(_, n)| n).sum();
    assert_eq!(read.len(), total, "nothing but what was acknowledged");
}

#[test]
fn three_nodes_replicate_and_lose_nothing_when_a_leader_is_killed() {
    let mut cluster = Cluster::start(3);
    let all = cluster.addrs();
    // Created through one node, on every node.
    let created = cluster.create_topic("orders", 2);
    assert!(created.contains("created topic orders"), "{created}");
    let status = cluster.status(&all);
    assert_eq!(
        status["nodes"].as_array().map(Vec::len),
        Some(3),
        "{status:#}"
    );
    assert!(
        status["nodes"].as_array().is_some_and(|ns| ns
            .iter()
            .all(|n| n["alive"] == true && n["addr"].is_string())),
        "{status:#}"
    );
    for p in status["partitions"].as_array().into_iter().flatten() {
        assert_eq!(p["replicas"].as_array().map(Vec::len), Some(3), "{p}");
    }

    // Produced through a node that leads at most one partition: the rest
    // is forwarded. Read back from every node.
    let out = ok(&cluster.nodes[&2].cli(&["produce", "orders"], &lines("a", 2_000)));
    assert!(out.ends_with("acknowledged: 2000\n"), "{out}");
    for node in cluster.nodes.values() {
        assert_exactly_once(&read_all(&node.addr, "orders"), &[("a", 2_000)]);
    }
    // The HTTP API publishes through any node too (forwarded the same way).
    let body = r#"{"messages": [{"value": "h-0"}, {"value": "h-1", "key": "k"}]}"#;
    let published = spool_testkit::http::blocking::post(
        &cluster.nodes[&3].http,
        "/v1/topics/orders/messages",
        body,
    );
    assert!(published.status < 300, "{published:?}");
    for node in cluster.nodes.values() {
        assert_exactly_once(&read_all(&node.addr, "orders"), &[("a", 2_000), ("h", 2)]);
    }

    // SIGKILL partition 0's leader while a producer writes through the
    // other two: the producer rides the election out.
    let leader = status["partitions"][0]["leader"].as_u64().expect("leader");
    let survivors: Vec<String> = cluster
        .nodes
        .iter()
        .filter(|(id, _)| **id != leader)
        .map(|(_, n)| n.addr.clone())
        .collect();
    let survivors = survivors.join(",");
    let producer = {
        let survivors = survivors.clone();
        std::thread::spawn(move || cli(&survivors, &["produce", "orders"], &lines("b", 50_000)))
    };
    std::thread::sleep(Duration::from_millis(150));
    cluster.nodes.get_mut(&leader).expect("leader").kill();
    let produced = producer.join().expect("producer");
    let out = ok(&produced);
    assert!(
        out.ends_with("acknowledged: 50000\n"),
        "{out}{}",
        text(&produced.stderr)
    );
    let read = read_all(&survivors, "orders");
    assert_exactly_once(&read, &[("a", 2_000), ("h", 2), ("b", 50_000)]);

    // The killed node comes back over its data and catches up.
    cluster.nodes.remove(&leader);
    cluster.start_node(leader);
    cluster.status_until("all three in sync again", |s| all_led_with(s, 3));
    let back = cluster.nodes[&leader].addr.clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let read = read_all(&back, "orders");
        if read.len() == 52_002 || Instant::now() > deadline {
            assert_exactly_once(&read, &[("a", 2_000), ("h", 2), ("b", 50_000)]);
            break;
        }
    }
}

/// Retention on a replicated topic cuts the replicas' logs through their
/// Raft group (a snapshot at the cut, then a purge), and a node that was
/// down while its leader cut catches up by that snapshot and the entries
/// after it: it serves the leader's records, not a log with a hole.
#[test]
fn retention_on_a_replicated_topic_and_a_node_that_missed_the_cut() {
    let mut cluster = Cluster::start(3);
    let first = cluster.nodes[&1].addr.clone();
    ok(&cli(
        &first,
        &[
            "topic",
            "create",
            "logs",
            "--partitions",
            "1",
            "--segment-bytes",
            "65536",
            "--retention-bytes",
            "131072",
        ],
        b"",
    ));
    cluster.status_until("led and in sync", |s| all_led_with(s, 3));
    cluster.nodes.get_mut(&3).expect("node 3").kill();
    cluster.nodes.remove(&3);
    // Six produces of ~100 KiB: six entries at least, each rolling a
    // 64 KiB segment, so sealed segments pass the 128 KiB limit.
    let padding = "x".repeat(1000);
    for round in 0..6 {
        let input: String = (round * 100..(round + 1) * 100)
            .map(|i| format!("r-{i}-{padding}\n"))
            .collect();
        let out = ok(&cli(&first, &["produce", "logs"], input.as_bytes()));
        assert!(out.ends_with("acknowledged: 100\n"), "{out}");
    }
    // The leader's retention (every second) cuts the start.
    let deadline = Instant::now() + Duration::from_secs(20);
    let kept = loop {
        let read = read_all(&first, "logs");
        if read.first().is_some_and(|l| !l.starts_with("r-0-")) {
            break read;
        }
        assert!(Instant::now() < deadline, "retention never cut the log");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(kept.len() < 600 && kept.last() == Some(&format!("r-599-{padding}")));
    // Node 3 comes back: everything it had is below the cut.
    cluster.start_node(3);
    let back = cluster.nodes[&3].addr.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let read = read_all(&back, "logs");
        if read.last() == kept.last() {
            // Its own retention may cut further than the leader's (its
            // segments start elsewhere): a suffix of what the leader
            // keeps, without a hole, and most of it.
            assert!(kept.ends_with(&read), "not the leader's records");
            assert!(
                read.len() * 2 > kept.len(),
                "{} of {}",
                read.len(),
                kept.len()
            );
            break;
        }
        assert!(Instant::now() < deadline, "node 3 never caught up");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_replica_stopped_by_a_full_disk_is_reopened_once_space_is_freed() {
    let Some((mut cluster, tmpfs)) = Cluster::start_with_small_disk_on_3() else {
        return;
    };
    let first = cluster.nodes[&1].addr.clone();
    let third = cluster.nodes[&3].addr.clone();
    cluster.create_topic("t", 1);
    let out = ok(&cli(&first, &["produce", "t"], &lines("before", 100)));
    assert!(out.ends_with("acknowledged: 100\n"), "{out}");

    // Node 3's disk fills up: the other two acknowledge without it, and
    // its replica stops at its first failed append (leading or not).
    tmpfs.fill("ballast");
    let padding = "x".repeat(1000);
    let during: String = (0..300).map(|i| format!("full-{i}-{padding}\n")).collect();
    let out = ok(&cli(&first, &["produce", "t"], during.as_bytes()));
    assert!(out.ends_with("acknowledged: 300\n"), "{out}");
    let read = read_all(&third, "t");
    assert!(
        read.len() < 400,
        "node 3 stored everything on a full disk: {} records",
        read.len()
    );
    // Node 3 is behind: a fetch there past its end is not "out of range"
    // (a consumer told so would start over from its reset position), only
    // empty until the replica catches up; only a leader says "past the end".
    let fetched = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = spool_client::Client::connect(third.as_str(), Default::default())
            .await
            .expect("connect to node 3");
        let partitions = vec![spool_proto::FetchPartition {
            topic: "t".into(),
            partition: 0,
            offset: 400,
            max_bytes: 1 << 20,
        }];
        let fetch = spool_proto::Fetch {
            max_wait_ms: 100,
            max_bytes: 1 << 20,
            partitions,
        };
        client.fetch(fetch).await.expect("fetch")
    });
    let behind = &fetched.partitions[0];
    assert!(
        behind.error.is_none() && behind.batches.is_empty(),
        "a replica behind answered {:?}",
        behind.error
    );

    // Space comes back: the replica is reopened in place (no restart)
    // and catches up with exactly the others' records.
    std::fs::remove_file(tmpfs.path.join("ballast")).expect("free space");
    let out = ok(&cli(&first, &["produce", "t"], &lines("after", 100)));
    assert!(out.ends_with("acknowledged: 100\n"), "{out}");
    let expected = read_all(&first, "t");
    assert_eq!(expected.len(), 500);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let read = read_all(&third, "t");
        if read == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 never caught up after space was freed: {} of {} records",
            read.len(),
            expected.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        cluster.nodes.get_mut(&3).expect("node 3").alive(),
        "node 3 kept running"
    );
    cluster.status_until("all three in sync again", |s| all_led_with(s, 3));
    // Stopped before their files go: the processes, node 3's disk, the rest.
    cluster.nodes.clear();
    drop(tmpfs);
    drop(cluster);
}

#[test]
fn every_node_reads_partitions_it_holds_no_replica_of() {
    let cluster = Cluster::start(3);
    let addrs: Vec<String> = cluster.nodes.values().map(|n| n.addr.clone()).collect();
    // One replica per partition: each node lacks two of the three.
    ok(&cli(
        &addrs[0],
        &[
            "topic",
            "create",
            "r",
            "--partitions",
            "3",
            "--replicas",
            "1",
        ],
        b"",
    ));
    cluster.status_until("led", |s| all_led_with(s, 1));
    let out = ok(&cli(&addrs[0], &["produce", "r"], &lines("m", 300)));
    assert!(out.ends_with("acknowledged: 300\n"), "{out}");
    for addr in &addrs {
        let read = read_all(addr, "r");
        assert_exactly_once(&read, &[("m", 300)]);
    }

    // A long poll through a node without the replica wakes for records
    // produced through another node.
    let waiting = std::process::Command::new(crate::support::BIN)
        .args(["--addr", &addrs[1], "consume", "r", "--from", "latest"])
        .args(["--count", "10", "--timeout-ms", "15000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("consume");
    std::thread::sleep(Duration::from_millis(1_000));
    let out = ok(&cli(&addrs[2], &["produce", "r"], &lines("late", 10)));
    assert!(out.ends_with("acknowledged: 10\n"), "{out}");
    let started = Instant::now();
    let waited = waiting.wait_with_output().expect("consume");
    let mut got: Vec<String> = text(&waited.stdout).lines().map(str::to_owned).collect();
    got.sort();
    let mut want: Vec<String> = (0..10).map(|i| format!("late-{i}")).collect();
    want.sort();
    assert_eq!(got, want, "stderr: {}", text(&waited.stderr));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the long poll woke only at its end"
    );

    // A fetch with backlogs on local and remote partitions keeps to its
    // byte budget (the first batch with data whole), through every node.
    let padding = "y".repeat(1000);
    let backlog: String = (0..3000).map(|i| format!("big-{i}-{padding}\n")).collect();
    let out = ok(&cli(&addrs[0], &["produce", "r"], backlog.as_bytes()));
    assert!(out.ends_with("acknowledged: 3000\n"), "{out}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for addr in &addrs {
        let answer_bytes: (usize, usize) = rt.block_on(async {
            let client = spool_client::Client::connect(addr.as_str(), Default::default())
                .await
                .expect("connect");
            let fetched = client
                .fetch(spool_proto::Fetch {
                    max_wait_ms: 0,
                    max_bytes: 512 << 10,
                    partitions: (0..3)
                        .map(|partition| spool_proto::FetchPartition {
                            topic: "r".into(),
                            partition,
                            offset: 0,
                            max_bytes: 512 << 10,
                        })
                        .collect(),
                })
                .await
                .expect("fetch");
            let with_data: Vec<usize> = fetched
                .partitions
                .iter()
                .map(|p| p.batches.len())
                .filter(|n| *n > 0)
                .collect();
            assert!(!with_data.is_empty(), "nothing read through {addr}");
            (with_data.iter().sum::<usize>(), with_data[0])
        });
        let (total, first) = answer_bytes;
        assert!(
            total <= first.max(512 << 10),
            "through {addr}: {total} bytes, over the 512 KiB budget (first read {first})"
        );
    }

    // HTTP too: every partition through every node, page by page.
    for node in cluster.nodes.values() {
        let mut seen = 0;
        for partition in 0..3 {
            let mut offset = 0;
            loop {
                let path = format!(
                    "/v1/topics/r/messages?partition={partition}&offset={offset}&max_bytes=1000000"
                );
                let reply = spool_testkit::http::blocking::get(&node.http, &path);
                assert_eq!(reply.status, 200, "{}", reply.raw);
                let got = reply.body["messages"].as_array().map_or(0, Vec::len);
                if got == 0 {
                    break;
                }
                seen += got;
                offset = reply.body["next_offset"].as_i64().expect("next_offset");
            }
        }
        assert_eq!(seen, 3310, "through {}", node.http);
    }
}

/// A leader whose two followers stop (SIGSTOP) right after it took a
/// write cannot commit it: the produce is answered `TIMEOUT` (outcome
/// unknown) within the node's 10 s bound, not held until they return
/// (before the bound it waited for them, and the fault harness's
/// producers with it).
#[test]
fn a_leader_without_its_majority_answers_timeout_instead_of_waiting() {
    let cluster = Cluster::start(3);
    cluster.create_topic("stranded", 1);
    let leader = cluster.status(&cluster.addrs())["partitions"][0]["leader"]
        .as_u64()
        .expect("leader");
    let stop = |signal: &str| {
        for (id, node) in &cluster.nodes {
            if *id != leader {
                node.signal(signal);
            }
        }
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let answer = rt.block_on(async {
        let addr = cluster.nodes[&leader].addr.clone();
        let client = spool_client::Client::connect(addr.as_str(), Default::default())
            .await
            .expect("connect");
        // A first write renews the leader's lease, so the next is taken.
        let mut b = spool_batch::BatchBuilder::new();
        b.push(&spool_batch::NewRecord::value("before", 1))
            .expect("push");
        let batch = bytes::Bytes::from(b.finish().expect("batch"));
        let routing = spool_proto::Routing::Partition(0);
        client
            .produce("stranded", routing.clone(), batch.clone())
            .await
            .expect("a write with every replica up");
        stop("-STOP");
        let started = Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_secs(30),
            client.produce("stranded", routing, batch),
        )
        .await;
        (answer, started.elapsed())
    });
    stop("-CONT");
    let (answer, waited) = answer;
    let answer = answer.unwrap_or_else(|_| panic!("no answer in 30 s"));
    let e = answer.expect_err("nothing can be committed without a majority");
    assert!(
        matches!(
            e.code(),
            Some(spool_types::ErrorCode::Timeout | spool_types::ErrorCode::NotLeader)
        ),
        "{e}"
    );
    assert!(
        waited < Duration::from_secs(15),
        "answered after {waited:?}"
    );
}

#[test]
fn a_replica_back_after_the_writes_catches_up_without_new_writes() {
    let mut cluster = Cluster::start(3);
    let first = cluster.nodes[&1].addr.clone();
    cluster.create_topic("idle", 2);
    cluster.nodes.get_mut(&3).expect("node 3").kill();
    cluster.nodes.remove(&3);
    let out = ok(&cli(
        &first,
        &["produce", "idle"],
        &lines("while-down", 200),
    ));
    assert!(out.ends_with("acknowledged: 200\n"), "{out}");
    // Node 3 comes back to partitions nobody writes to any more: their
    // leaders count it in sync again (it holds every entry they hold).
    cluster.start_node(3);
    cluster.status_until("node 3 in sync on idle partitions", |s| all_led_with(s, 3));
    let expected = read_all(&first, "idle");
    assert_eq!(expected.len(), 200);
}

#[test]
fn a_node_whose_data_directory_was_lost_rejoins_as_a_new_member_and_catches_up() {
    let mut cluster = Cluster::start(3);
    let first = cluster.nodes[&1].addr.clone();
    cluster.create_topic("kept", 1);
    let out = ok(&cli(&first, &["produce", "kept"], &lines("k", 50)));
    assert!(out.ends_with("acknowledged: 50\n"), "{out}");
    // The partition's leader loses its disk: it comes back empty under
    // the same id at once, and joins every group as a new member (its next
    // generation). Its old member led the partition; the node is alive
    // again, but the others must not wait for the old member.
    let status = cluster.status(&cluster.addrs());
    let lost = status["partitions"][0]["leader"]
        .as_u64()
        .expect("a leader");
    let others: Vec<u64> = (1..=3).filter(|id| *id != lost).collect();
    let (other, last) = (others[0], others[1]);
    cluster.nodes.get_mut(&lost).expect("leader").kill();
    cluster.nodes.remove(&lost);
    std::fs::remove_dir_all(cluster.data_dir(lost)).expect("wipe the leader's node");
    cluster.start_node(lost);
    let through_other = cluster.nodes[&other].addr.clone();
    let out = ok(&cli(
        &through_other,
        &["produce", "kept"],
        &lines("back", 10),
    ));
    assert!(out.ends_with("acknowledged: 10\n"), "{out}");
    // In sync counts only a node's latest generation: until the leaders
    // swapped the old member for the new one and caught it up, the node is
    // not in sync (its old self's progress does not count).
    cluster.status_until("the wiped node in sync again", |s| {
        all_led_with(s, 3) && s["metadata"]["in_sync"].as_array().map(Vec::len) == Some(3)
    });
    let generation_file = cluster.data_dir(lost).join("cluster/generation");
    let generation = std::fs::read_to_string(&generation_file).expect("its generation kept");
    assert_eq!(generation.trim(), "1");
    // Another node goes: the partition's and the metadata group's
    // majorities are now the last old node and the new member, so the new
    // member must be a voter with the whole log.
    cluster.nodes.get_mut(&other).expect("node").kill();
    cluster.nodes.remove(&other);
    let back = cluster.nodes[&lost].addr.clone();
    let out = ok(&cli(&back, &["produce", "kept"], &lines("after", 10)));
    assert!(out.ends_with("acknowledged: 10\n"), "{out}");
    ok(&cli(&back, &["topic", "create", "later"], b""));
    let read = read_all(&back, "kept");
    assert_exactly_once(&read, &[("k", 50), ("back", 10), ("after", 10)]);
    // The replacement happened once: a restart over the kept directory
    // is the same member again.
    cluster.nodes.get_mut(&lost).expect("node").kill();
    cluster.start_node(lost);
    let through_last = cluster.nodes[&last].addr.clone();
    let out = ok(&cli(
        &through_last,
        &["produce", "kept"],
        &lines("again", 5),
    ));
    assert!(out.ends_with("acknowledged: 5\n"), "{out}");
    let generation = std::fs::read_to_string(&generation_file).expect("generation");
    assert_eq!(generation.trim(), "1");
}

/// Waits up to 20 s for `ready`, panicking with `what` after.
fn wait_for(what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "never {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every replica reports its partition's leader and term; the leader
/// reports its followers' lag and whether the partition is
/// under-replicated; when a leader's node dies, the node that takes over
/// logs it with the reason, every replica counts the change, and `spool
/// status` shows the cluster.
#[test]
fn leader_changes_are_counted_logged_with_their_reason_and_shown() {
    let mut cluster = Cluster::start_logging(3);
    cluster.create_topic("watched", 1);
    cluster.produce("watched", "w", 20);
    let status = cluster.status(&cluster.addrs());
    let leader = status["partitions"][0]["leader"]
        .as_u64()
        .expect("a leader");
    let labels = r#"{topic="watched",partition="0"}"#;
    let leader_gauge = format!("spool_cluster_partition_leader{labels}");
    wait_for("every replica reporting the leader", || {
        cluster
            .nodes
            .values()
            .all(|n| n.metric(&leader_gauge) == Some(leader as f64))
    });
    let under = "spool_cluster_under_replicated_partitions";
    wait_for("the leader reporting nothing under-replicated", || {
        cluster.nodes[&leader].metric(under) == Some(0.0)
    });
    let through = cluster.nodes.values().next().expect("a node").addr.clone();
    let shown = ok(&cli(&through, &["status", "--interval-ms", "100"], b""));
    assert!(
        shown.contains("cluster   3 of 3 nodes up") && shown.contains("0 under-replicated"),
        "{shown}"
    );

    cluster.nodes.get_mut(&leader).expect("leader").kill();
    cluster.nodes.remove(&leader);
    cluster.status_until("a new leader", |s| {
        s["partitions"][0]["leader"]
            .as_u64()
            .is_some_and(|l| l != leader)
    });
    let out = ok(&cli(
        &cluster.addrs(),
        &["produce", "watched"],
        &lines("x", 5),
    ));
    assert!(out.ends_with("acknowledged: 5\n"), "{out}");
    let status = cluster.status(&cluster.addrs());
    let new = status["partitions"][0]["leader"]
        .as_u64()
        .expect("a leader");
    let changes = format!("spool_cluster_leader_changes_total{labels}");
    let lag = format!(
        r#"spool_cluster_follower_lag_entries{{topic="watched",partition="0",follower="{leader}"}}"#
    );
    wait_for("the change counted, the dead follower lagging", || {
        let node = &cluster.nodes[&new];
        cluster
            .nodes
            .values()
            .all(|n| n.metric(&changes).is_some_and(|c| c >= 1.0))
            && node.metric(under) == Some(1.0)
            && node.metric(&lag).is_some_and(|l| l >= 5.0)
    });
    let log = std::fs::read_to_string(cluster.log_path(new)).expect("the new leader's log");
    let line = log
        .lines()
        .find(|l| l.contains("this node now leads the partition"))
        .unwrap_or_else(|| panic!("no leader change logged by node {new}:\n{log}"));
    assert!(
        line.contains(&format!("node {leader} stopped answering")) && line.contains("watched"),
        "{line}"
    );
    let shown = ok(&cli(
        &cluster.addrs(),
        &["status", "--interval-ms", "100"],
        b"",
    ));
    assert!(
        shown.contains("cluster   2 of 3 nodes up") && shown.contains("1 under-replicated"),
        "{shown}"
    );
}

/// A node stopped gracefully (SIGTERM, as a rolling restart does) hands
/// the partitions and metadata group it leads to other replicas before it
/// stops answering: it logs the handover, and the node that took a
/// partition logs that it was handed over (after a crash it would say the
/// node stopped answering). Right after the process is gone every
/// partition and the metadata group has another leader, and produce goes
/// on. (That part alone would also hold without the handover: the
/// process's shutdown outlasts the 400 ms its peers take to notice.)
#[test]
fn a_node_stopped_gracefully_hands_over_its_leadership_first() {
    let mut cluster = Cluster::start_logging(3);
    // Three partitions: their preferred leaders are spread over the nodes.
    cluster.create_topic("handed", 3);
    cluster.produce("handed", "h", 30);
    let before = cluster.status(&cluster.addrs());
    let stopped = before["partitions"][0]["leader"]
        .as_u64()
        .expect("a leader");
    // Every replica has seen that leader (observed every 500 ms): a change
    // is counted and explained against the leader seen before it.
    let leader_gauge = r#"spool_cluster_partition_leader{topic="handed",partition="0"}"#;
    wait_for("every replica reporting the leader", || {
        cluster
            .nodes
            .values()
            .all(|n| n.metric(leader_gauge) == Some(stopped as f64))
    });
    let mut node = cluster.nodes.remove(&stopped).expect("the leader's node");
    node.signal("-TERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    while node.alive() {
        assert!(Instant::now() < deadline, "node {stopped} did not stop");
        std::thread::sleep(Duration::from_millis(10));
    }
    let after = cluster.status(&cluster.addrs());
    let partitions = after["partitions"].as_array().expect("partitions");
    let led_by_stopped = before["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .filter(|p| p["leader"].as_u64() == Some(stopped))
        .count();
    assert!(led_by_stopped >= 1);
    for p in partitions {
        let leader = p["leader"].as_u64();
        assert!(
            leader.is_some() && leader != Some(stopped),
            "right after node {stopped} stopped, partition {} is led by {leader:?}: {after:#}",
            p["partition"]
        );
    }
    let meta_leader = after["metadata"]["leader"].as_u64();
    assert!(
        meta_leader.is_some() && meta_leader != Some(stopped),
        "metadata leader {meta_leader:?}"
    );
    let out = ok(&cli(
        &cluster.addrs(),
        &["produce", "handed"],
        &lines("after", 10),
    ));
    assert!(out.ends_with("acknowledged: 10\n"), "{out}");
    // The stopping node handed them over; a node that took one says so.
    let log = std::fs::read_to_string(cluster.log_path(stopped)).expect("log");
    assert!(
        log.contains("handed this node's leaderships to other nodes"),
        "{log}"
    );
    let new = after["partitions"][0]["leader"].as_u64().expect("a leader");
    wait_for("the new leader to log why it leads", || {
        std::fs::read_to_string(cluster.log_path(new)).is_ok_and(|log| {
            log.lines().any(|l| {
                l.contains("this node now leads the partition")
                    && l.contains(&format!("node {stopped} handed it over"))
            })
        })
    });
}

/// A producer id comes from the metadata group; asked of its leader after
/// the other two nodes died, the node answers `TIMEOUT` within about ten
/// seconds (the producer, whose sends wait for its id, then fails them or
/// asks again). Before, the leader's write waited for a commit that could
/// not come, and the producer with it, for good.
#[test]
fn a_producer_id_is_refused_in_bounded_time_without_a_metadata_majority() {
    let mut cluster = Cluster::start(3);
    cluster.create_topic("ids", 1);
    let leader = cluster.status(&cluster.addrs())["metadata"]["leader"]
        .as_u64()
        .expect("a metadata leader");
    for id in (1..=3).filter(|id| *id != leader) {
        cluster.nodes.get_mut(&id).expect("node").kill();
        cluster.nodes.remove(&id);
    }
    let first = cluster.nodes[&leader].addr.clone();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let answer = rt.block_on(async {
        let client = spool_client::Client::connect(first.as_str(), Default::default())
            .await
            .expect("connect");
        tokio::time::timeout(Duration::from_secs(40), client.init_producer_id()).await
    });
    let answer = answer.unwrap_or_else(|_| panic!("no answer in 40 s"));
    let e = answer.expect_err("no producer id without a metadata majority");
    assert_eq!(e.code(), Some(spool_types::ErrorCode::Timeout), "{e}");
}

/// A node whose replica stopped while leading (its disk filled) still
/// takes produces for that partition: it forwards them to the replica the
/// others elected, as a node without a replica does. (Before, it answered
/// `NOT_LEADER`, naming the preferred leader, itself included, until its
/// disk had space again: a producer connected to it retried for its whole
/// wait, then failed.)
#[test]
fn a_node_whose_leading_replica_stopped_forwards_produces() {
    let Some((mut cluster, tmpfs)) = Cluster::start_with_small_disk_on_3() else {
        return;
    };
    // Three partitions: one of them has node 3 as its preferred leader.
    cluster.create_topic("led", 3);
    let status = cluster.status(&cluster.addrs());
    let partition = status["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .find(|p| p["leader"].as_u64() == Some(3))
        .and_then(|p| p["partition"].as_u64())
        .expect("a partition node 3 leads") as u32;
    let third = cluster.nodes[&3].addr.clone();
    tmpfs.fill("ballast");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (stored, last_error) = rt.block_on(async {
        let client = spool_client::Client::connect(third.as_str(), Default::default())
            .await
            .expect("connect to node 3");
        let mut b = spool_batch::BatchBuilder::new();
        b.push(&spool_batch::NewRecord::value("x".repeat(1000), 1))
            .expect("push");
        let batch = bytes::Bytes::from(b.finish().expect("batch"));
        let routing = spool_proto::Routing::Partition(partition);
        // The first write stops node 3's replica (its append fails); the
        // others elect within about a second. Tried for 10 s.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last_error = None;
        while Instant::now() < deadline {
            match client.produce("led", routing.clone(), batch.clone()).await {
                Ok(_) if last_error.is_some() => return (true, last_error),
                Ok(_) => {}
                Err(e) => last_error = Some(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        (false, last_error)
    });
    assert!(
        last_error.is_some(),
        "node 3's replica never stopped: the disk did not fill?"
    );
    assert!(
        stored,
        "no produce through node 3 after its leading replica stopped: {last_error:?}"
    );
    std::fs::remove_file(tmpfs.path.join("ballast")).expect("free space");
    cluster.nodes.clear();
}

#[test]
fn a_single_node_server_says_it_is_not_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path());
    let out = server.cli(&["cluster", "status"], b"");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not a cluster node"),
        "{}",
        text(&out.stderr)
    );
    let out = server.cli(&["topic", "create", "t", "--replicas", "3"], b"");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("INVALID_CONFIG"),
        "{}",
        text(&out.stderr)
    );
    ok(&server.cli(&["topic", "create", "t", "--replicas", "1"], b""));
    // No producer ids either: a typed refusal the producer takes as "not
    // idempotent here".
    let refused = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let options = spool_client::ClientOptions::default();
        let client = spool_client::Client::connect(server.addr.as_str(), options)
            .await
            .unwrap();
        client.init_producer_id().await.unwrap_err()
    });
    assert_eq!(
        refused.code(),
        Some(spool_client::ErrorCode::InvalidRequest),
        "{refused}"
    );
}

#[test]
fn a_cluster_node_needs_its_id_in_peers_and_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(crate::support::BIN)
            .arg("server")
            .args(["--data-dir", &dir.path().to_string_lossy()])
            .args(["--listen", "127.0.0.1:0", "--http-listen", "off"])
            .args(args)
            .env_remove("SPOOL_CLUSTER_SECRET")
            .output()
            .expect("run")
    };
    let out = run(&["--node-id", "1", "--peers", "1=127.0.0.1:1"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cluster_secret_file"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["--node-id", "4", "--peers", "1=127.0.0.1:1,2=127.0.0.1:2"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("does not name this node"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["--node-id", "1"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("peers is not"),
        "{}",
        text(&out.stderr)
    );
}

/// Failover time, measured (a benchmark, run by hand and recorded in
/// BENCHMARKS.md; `cargo test -p spool --test it failover -- --ignored
/// --nocapture`): SIGKILL the leader of a partition while a producer
/// connected to a survivor is idle, then time one message to that
/// partition until it is acknowledged. `SPOOL_FAILOVER_KILLS` kills (20).
#[test]
#[ignore = "a measurement: run by hand, see BENCHMARKS.md"]
fn failover_time_after_a_leader_sigkill() {
    use spool_client::{Client, ClientOptions, Message, Producer, ProducerOptions};
    let kills: usize = std::env::var("SPOOL_FAILOVER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut cluster = Cluster::start(3);
    ok(&cli(
        &cluster.addrs(),
        &["topic", "create", "fo", "--partitions", "1"],
        b"",
    ));
    let mut times = Vec::new();
    for round in 0..kills {
        cluster.status_until("led and in sync", |s| all_led_with(s, 3));
        let leader = cluster.status(&cluster.addrs())["partitions"][0]["leader"]
            .as_u64()
            .expect("leader");
        let survivor = cluster
            .nodes
            .iter()
            .find(|(id, _)| **id != leader)
            .map(|(_, n)| n.addr.clone())
            .expect("a survivor");
        let producer = rt.block_on(async {
            let client = Client::connect(survivor.as_str(), ClientOptions::default())
                .await
                .expect("connect");
            let producer = Producer::new(client, ProducerOptions::default());
            let warm = Message::new("warm-up").with_partition(0);
            producer
                .send("fo", warm)
                .await
                .expect("send")
                .await
                .expect("warm-up");
            producer
        });
        let killed = Instant::now();
        cluster.nodes.get_mut(&leader).expect("leader").kill();
        rt.block_on(async {
            let message = Message::new(format!("after-kill-{round}")).with_partition(0);
            let delivery = producer.send("fo", message).await.expect("send");
            delivery.await.expect("acknowledged after the failover");
        });
        let took = killed.elapsed();
        println!("kill {round}: node {leader}, produce accepted again after {took:?}");
        times.push(took);
        drop(producer);
        cluster.nodes.remove(&leader);
        cluster.start_node(leader);
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    println!(
        "failover over {} kills: p50 {:?}, p99 {:?}, max {:?}",
        times.len(),
        at(0.50),
        at(0.99),
        times[times.len() - 1]
    );
}
