//! `spool cluster status [--json]` and `spool cluster dev --nodes N`.
//!
//! `status` asks every node for its view (CLUSTER_STATUS): a node that
//! answers is alive, and each partition is described by the node that
//! leads it (only a leader knows which replicas are in sync).

use crate::cli::ConnArgs;
use crate::{addr_list, connect, Failure};
use clap::{Args, Subcommand};
use serde::Serialize;
use spool_proto::{ClusterPartition, ClusterStatus};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Nodes (alive or not) and each partition's leader, replicas and
    /// in-sync replicas, asked of every node.
    Status {
        /// Print JSON: {"nodes": [{id, addr, alive}], "partitions": [{topic,
        /// partition, leader, replicas, in_sync}]}.
        #[arg(long)]
        json: bool,
    },
    /// Start a local cluster in one command (for trying it out): N server
    /// processes on loopback, each with its own data directory; Ctrl-C
    /// stops them all.
    Dev {
        /// How many nodes.
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        /// Where the nodes keep their data (node-1, node-2, ...).
        #[arg(long, default_value = "./spool-cluster-dev")]
        data_dir: std::path::PathBuf,
        /// Node i listens on PORT+10(i-1) (binary), +1 (HTTP), +2 (cluster).
        #[arg(long, default_value_t = 7440)]
        base_port: u16,
    },
}

/// How long `status` waits for one node (a paused node accepts the
/// connection and never answers).
const NODE_ANSWER_MS: u64 = 2_000;

pub async fn run(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ClusterCommand::Status { json } => status(&args.conn.addr, json).await,
        ClusterCommand::Dev {
            nodes,
            data_dir,
            base_port,
        } => dev(nodes, &data_dir, base_port).await,
    }
}

#[derive(Debug, Serialize)]
struct NodeOut {
    id: u64,
    /// Its client (binary protocol) address.
    addr: String,
    http_addr: Option<String>,
    cluster_addr: String,
    alive: bool,
}

#[derive(Debug, Serialize)]
struct PartitionOut {
    topic: String,
    partition: u32,
    leader: Option<u64>,
    term: u64,
    replicas: Vec<u64>,
    in_sync: Vec<u64>,
}

/// The metadata group, as its leader describes it.
#[derive(Debug, Serialize)]
struct MetadataOut {
    leader: Option<u64>,
    in_sync: Vec<u64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct StatusOut {
    nodes: Vec<NodeOut>,
    partitions: Vec<PartitionOut>,
    metadata: MetadataOut,
}

impl StatusOut {
    /// One line for `spool status`: nodes up, the metadata leader, and
    /// the partitions without a leader or with fewer replicas in sync
    /// than placed.
    pub(crate) fn summary(&self) -> String {
        let alive = self.nodes.iter().filter(|n| n.alive).count();
        let leaderless = self
            .partitions
            .iter()
            .filter(|p| p.leader.is_none())
            .count();
        let under = self.under_replicated();
        let meta = self
            .metadata
            .leader
            .map_or("none".to_owned(), |l| format!("node {l}"));
        format!(
            "{alive} of {} nodes up, metadata leader {meta}; {} partitions, {leaderless} \
             without a leader, {under} under-replicated",
            self.nodes.len(),
            self.partitions.len()
        )
    }

    /// Partitions with a leader and fewer replicas in sync than placed.
    pub(crate) fn under_replicated(&self) -> usize {
        self.partitions
            .iter()
            .filter(|p| p.leader.is_some() && p.in_sync.len() < p.replicas.len())
            .count()
    }
}

async fn ask(addr: &str) -> Option<ClusterStatus> {
    let asked = async {
        let client = connect(addr).await.ok()?;
        client.cluster_status().await.ok()
    };
    tokio::time::timeout(Duration::from_millis(NODE_ANSWER_MS), asked)
        .await
        .ok()
        .flatten()
}

async fn status(addrs: &str, json: bool) -> anyhow::Result<ExitCode> {
    let mut first = None;
    for addr in addr_list(addrs) {
        // The first node that answers names the others.
        let client = match connect(addr).await {
            Ok(client) => client,
            Err(_) => continue,
        };
        first = Some(client.cluster_status().await?);
        break;
    }
    let first = first
        .ok_or_else(|| Failure::new("CONNECTION_FAILED", format!("no node of {addrs} answered")))?;
    let out = view_from(first).await;
    let mut stdout = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut stdout, &out)?;
        writeln!(stdout)?;
    } else {
        write_text(&mut stdout, &out)?;
    }
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The cluster as its nodes describe it: `first` (one node's view) names
/// the others, each is asked, and each partition is shown as its leader
/// describes it.
pub(crate) async fn view_from(first: ClusterStatus) -> StatusOut {
    let mut views: BTreeMap<u64, ClusterStatus> = BTreeMap::new();
    let asks = first
        .nodes
        .iter()
        .filter(|n| n.id != first.node_id && !n.client_addr.is_empty())
        .map(|n| async move { (n.id, ask(&n.client_addr).await) });
    for (id, view) in futures::future::join_all(asks).await {
        if let Some(view) = view {
            views.insert(id, view);
        }
    }
    views.insert(first.node_id, first.clone());
    merge(&first, &views)
}

/// Each partition as its leader describes it: the leader with the highest
/// term among the nodes that answered (a deposed leader that has not heard
/// of the new term yet still claims the old one).
fn merge(first: &ClusterStatus, views: &BTreeMap<u64, ClusterStatus>) -> StatusOut {
    let nodes = first
        .nodes
        .iter()
        .map(|n| NodeOut {
            id: n.id,
            addr: n.client_addr.clone(),
            http_addr: n.http_addr.clone(),
            cluster_addr: n.cluster_addr.clone(),
            alive: views.contains_key(&n.id),
        })
        .collect();
    let partitions = first
        .partitions
        .iter()
        .map(|p| {
            let claims = views.values().filter_map(|v| {
                let own = find(v, p)?;
                (own.hosted && own.leader == Some(v.node_id)).then_some(own)
            });
            match claims.max_by_key(|c| c.term) {
                Some(leader) => PartitionOut {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    leader: leader.leader,
                    term: leader.term,
                    replicas: p.replicas.clone(),
                    in_sync: leader.in_sync.clone(),
                },
                None => PartitionOut {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    leader: None,
                    term: views
                        .values()
                        .filter_map(|v| find(v, p))
                        .map(|v| v.term)
                        .max()
                        .unwrap_or(0),
                    replicas: p.replicas.clone(),
                    in_sync: Vec::new(),
                },
            }
        })
        .collect();
    let metadata = views
        .values()
        .find(|v| v.meta_leader == Some(v.node_id))
        .map_or(
            MetadataOut {
                leader: None,
                in_sync: Vec::new(),
            },
            |v| MetadataOut {
                leader: Some(v.node_id),
                in_sync: v.meta_in_sync.clone(),
            },
        );
    StatusOut {
        nodes,
        partitions,
        metadata,
    }
}

fn find<'a>(view: &'a ClusterStatus, p: &ClusterPartition) -> Option<&'a ClusterPartition> {
    view.partitions
        .iter()
        .find(|q| q.topic == p.topic && q.partition == p.partition)
}

fn ids(ids: &[u64]) -> String {
    let text: Vec<String> = ids.iter().map(u64::to_string).collect();
    text.join(",")
}

fn write_text(out: &mut impl std::io::Write, status: &StatusOut) -> std::io::Result<()> {
    writeln!(out, "NODE  ALIVE  ADDR                   CLUSTER_ADDR")?;
    for n in &status.nodes {
        let alive = if n.alive { "yes" } else { "no" };
        writeln!(
            out,
            "{:>4}  {:<5}  {:<21}  {}",
            n.id, alive, n.addr, n.cluster_addr
        )?;
    }
    let meta_leader = status
        .metadata
        .leader
        .map_or("-".to_owned(), |l| l.to_string());
    writeln!(
        out,
        "\nmetadata: leader {meta_leader}, in sync {}",
        ids(&status.metadata.in_sync)
    )?;
    writeln!(out)?;
    writeln!(out, "TOPIC  PARTITION  LEADER  TERM  REPLICAS  IN_SYNC")?;
    for p in &status.partitions {
        let leader = p.leader.map_or("-".to_owned(), |l| l.to_string());
        writeln!(
            out,
            "{}  {}  {}  {}  {}  {}",
            p.topic,
            p.partition,
            leader,
            p.term,
            ids(&p.replicas),
            ids(&p.in_sync)
        )?;
    }
    Ok(())
}

/// Starts `nodes` servers on loopback as child processes of this one and
/// waits for Ctrl-C (or SIGTERM), then stops them.
async fn dev(nodes: u64, data_dir: &Path, base_port: u16) -> anyhow::Result<ExitCode> {
    if !(1..=crate::config::PEERS_MAX as u64).contains(&nodes) {
        return Err(Failure::new(
            "INVALID_REQUEST",
            format!("--nodes must be between 1 and {}", crate::config::PEERS_MAX),
        )
        .into());
    }
    let port = |node: u64, offset: u16| -> anyhow::Result<u16> {
        let step = u16::try_from((node - 1) * 10)?;
        base_port
            .checked_add(step + offset)
            .ok_or_else(|| anyhow::anyhow!("--base-port {base_port} leaves no room for the nodes"))
    };
    std::fs::create_dir_all(data_dir)?;
    let secret_file = data_dir.join("cluster.secret");
    if !secret_file.exists() {
        let secret: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        spool_log::fsutil::write_atomic_with_mode(&secret_file, secret.as_bytes(), 0o600)?;
    }
    let mut peers = Vec::new();
    for node in 1..=nodes {
        peers.push(format!("{node}=127.0.0.1:{}", port(node, 2)?));
    }
    let peers = peers.join(",");
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    let mut addrs = Vec::new();
    for node in 1..=nodes {
        let dir = data_dir.join(format!("node-{node}"));
        std::fs::create_dir_all(&dir)?;
        let log = std::fs::File::create(dir.join("server.log"))?;
        let listen = format!("127.0.0.1:{}", port(node, 0)?);
        let http = format!("127.0.0.1:{}", port(node, 1)?);
        let child = tokio::process::Command::new(&exe)
            .arg("server")
            .args(["--node-id", &node.to_string(), "--peers", &peers])
            .arg("--cluster-secret-file")
            .arg(&secret_file)
            .arg("--data-dir")
            .arg(&dir)
            .args(["--listen", &listen, "--http-listen", &http])
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        println!(
            "node {node}: --addr {listen}  http://{http}  cluster 127.0.0.1:{}  data {}",
            port(node, 2)?,
            dir.display()
        );
        addrs.push(listen);
        children.push(child);
    }
    println!(
        "\ntry:\n  spool --addr {} topic create demo --partitions 3",
        addrs.join(",")
    );
    println!(
        "  seq 1 1000 | spool --addr {} produce demo",
        addrs.join(",")
    );
    println!(
        "  spool --addr {} cluster status\n\nCtrl-C stops the cluster.",
        addrs[0]
    );
    std::io::stdout().flush()?;
    // A node that exits (killed to try a failover, say) is reported; the
    // others keep running until Ctrl-C.
    let stop = spool_server::shutdown_signal();
    tokio::pin!(stop);
    let mut running: Vec<(u64, tokio::process::Child)> = (1..=nodes).zip(children).collect();
    while !running.is_empty() {
        tokio::select! {
            _ = &mut stop => break,
            (node, exited) = wait_any(&mut running) => {
                eprintln!("node {node} exited ({exited}); see its server.log");
                running.retain(|(n, _)| *n != node);
            }
        }
    }
    let mut children: Vec<_> = running.into_iter().map(|(_, c)| c).collect();
    for child in &mut children {
        // SIGTERM, so each node shuts down cleanly (`kill(1)`: no unsafe
        // code for one signal).
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }
    for child in &mut children {
        let _ = child.wait().await;
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves when any child exits: which node, and how.
async fn wait_any(children: &mut [(u64, tokio::process::Child)]) -> (u64, String) {
    let waits = children.iter_mut().map(|(node, c)| {
        let node = *node;
        Box::pin(async move {
            match c.wait().await {
                Ok(status) => (node, status.to_string()),
                Err(e) => (node, e.to_string()),
            }
        })
    });
    futures::future::select_all(waits).await.0
}
