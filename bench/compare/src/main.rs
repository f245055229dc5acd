//! spool-compare: the same workloads against Spool, Redis Streams, NATS
//! JetStream and RabbitMQ, each through its standard Rust client.
//!
//! ```text
//! spool-compare run --system spool|redis|nats|rabbitmq --addr HOST:PORT
//!                   --tier durable|default [--quick] [--nats-sync-always]
//!                   [--only publish,consume,end-to-end,queue,plain-publish,
//!                           plain-consume,plain-end-to-end] [--sizes 100,1024]
//! spool-compare run --cluster --system spool|nats|rabbitmq
//!                   --addr HOST:PORT[,HOST:PORT...] [--quick] [--nats-sync-always]
//!                   [--only publish,consume,end-to-end] [--sizes 100,1024]
//! spool-compare disk --dir DIR [--quick]
//! spool-compare table RESULTS.jsonl
//! ```
//!
//! `run` drives one running server (run.sh starts and stops them) and
//! prints one JSON line per result on stdout: the tuned workloads of the
//! system modules, then the plain pattern (`plain/`); without `--only`,
//! all of them. `disk` measures the filesystem's sequential write
//! bandwidth; `table` turns the lines into the comparison tables (tuned,
//! plain) with the Spool / peer ratios and the targets.
//!
//! `run --cluster` (`cluster.rs`) drives a cluster whose nodes `--addr`
//! lists (one address: a single node with the cluster mode's topic
//! shape): the tuned publish, consume and end-to-end workloads, durable
//! tier, replicated on every node; its lines get their own table.

mod cluster;
mod common;
mod disk;
mod jetstream;
mod plain;
mod rabbitmq;
mod redis_streams;
mod report;
mod spool;

use common::{Durability, Plan, Tier};
use serde_json::{json, Value};
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Spool,
    Redis,
    Nats,
    RabbitMq,
}

impl System {
    pub const ALL: [System; 4] = [System::Spool, System::Redis, System::Nats, System::RabbitMq];

    pub fn name(self) -> &'static str {
        match self {
            System::Spool => "spool",
            System::Redis => "redis",
            System::Nats => "nats",
            System::RabbitMq => "rabbitmq",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            System::Spool => "Spool",
            System::Redis => "Redis Streams",
            System::Nats => "NATS JetStream",
            System::RabbitMq => "RabbitMQ",
        }
    }

    fn parse(s: &str) -> anyhow::Result<System> {
        System::ALL
            .into_iter()
            .find(|sys| sys.name() == s)
            .ok_or_else(|| anyhow::anyhow!("unknown system {s:?}"))
    }
}

/// Where and how one run goes.
pub struct Ctx {
    pub system: System,
    pub addr: String,
    pub tier: Tier,
    pub plan: Plan,
    pub nats_sync_always: bool,
    /// Cluster mode (`--cluster`): the nodes `addr` lists and Spool's
    /// partitions; `None`: one server, one partition, as always.
    pub cluster: Option<cluster::Layout>,
}

impl Ctx {
    fn durability(&self) -> Durability {
        if self.replicas() > 1 {
            return match self.system {
                System::Spool => spool::cluster_durability(),
                System::Nats => jetstream::cluster_durability(self.nats_sync_always),
                System::RabbitMq => rabbitmq::cluster_durability(),
                System::Redis => redis_streams::durability(self.tier),
            };
        }
        match self.system {
            System::Spool => spool::durability(self.tier),
            System::Redis => redis_streams::durability(self.tier),
            System::Nats => jetstream::durability(self.tier, self.nats_sync_always),
            System::RabbitMq => rabbitmq::durability(self.tier),
        }
    }

    /// The addresses of `--addr` (a comma-separated list of a cluster's
    /// nodes, or one).
    pub fn addrs(&self) -> Vec<&str> {
        self.addr
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .collect()
    }

    /// Copies of each message: one per node in cluster mode.
    pub fn replicas(&self) -> usize {
        self.cluster.map_or(1, |c| c.nodes)
    }

    /// Spool's partitions per topic.
    pub fn partitions(&self) -> u32 {
        self.cluster.map_or(1, |c| c.partitions)
    }
}

/// Calls the same function of the system's module.
macro_rules! on {
    ($ctx:expr, $f:ident ( $($arg:expr),* )) => {
        match $ctx.system {
            System::Spool => spool::$f($ctx, $($arg),*).await,
            System::Redis => redis_streams::$f($ctx, $($arg),*).await,
            System::Nats => jetstream::$f($ctx, $($arg),*).await,
            System::RabbitMq => rabbitmq::$f($ctx, $($arg),*).await,
        }
    };
}

fn emit(ctx: &Ctx, workload: &str, result: anyhow::Result<Value>) {
    let d = ctx.durability();
    let mut line = json!({
        "system": ctx.system.name(),
        "tier": ctx.tier.name(),
        "workload": workload,
        "setting": d.setting,
        "promise": d.promise,
        "level": d.level,
    });
    if let Some(layout) = ctx.cluster {
        let fields = line.as_object_mut().expect("object");
        fields.insert("mode".into(), json!("cluster"));
        fields.insert("nodes".into(), json!(layout.nodes));
        fields.insert("replicas".into(), json!(ctx.replicas()));
        if ctx.system == System::Spool {
            fields.insert("partitions".into(), json!(layout.partitions));
        }
    }
    match result {
        Ok(Value::Object(fields)) => line.as_object_mut().expect("object").extend(fields),
        Ok(other) => line["result"] = other,
        Err(e) => {
            eprintln!(
                "  ! {} {} {workload}: {e:#}",
                ctx.system.name(),
                ctx.tier.name()
            );
            line["error"] = json!(format!("{e:#}"));
        }
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Before each measurement: writes back every dirty page and lets the
/// filesystem finish what it owes. Otherwise the previous workload's
/// leftovers land in this one: page-cache data of a system that fsyncs
/// later (or never), and a deleted topic's or stream's blocks, which ext4
/// mounted with `discard` (as here) trims later — an fdatasync waiting
/// behind the trim of 300 MB took 36–62 ms instead of 6.5 ms at p99
/// (BENCHMARKS.md).
fn settle() {
    if let Err(e) = std::process::Command::new("sync").status() {
        eprintln!("  ! sync: {e}");
    }
}

async fn run(ctx: &Ctx, only: &[String], sizes: &[usize]) {
    if ctx.cluster.is_some() {
        // Issue 18 asks for these three; queue subscriptions and group
        // consumers are not replicated yet (issue 19).
        let wanted = |w: &str| {
            ["publish", "consume", "end-to-end"].contains(&w)
                && (only.is_empty() || only.iter().any(|o| o == w))
        };
        tuned(ctx, &wanted, sizes).await;
        return;
    }
    let wanted = |w: &str| only.is_empty() || only.iter().any(|o| o == w);
    tuned(ctx, &wanted, sizes).await;
    plain::run(ctx, &wanted, sizes).await;
}

/// The tuned workloads (batches, pipelines, deep windows; README.md).
async fn tuned(ctx: &Ctx, wanted: &dyn Fn(&str) -> bool, sizes: &[usize]) {
    for (size, count) in ctx.plan.streams {
        if !wanted("publish") || !(sizes.is_empty() || sizes.contains(&size)) {
            continue;
        }
        let name = format!("cmp-{size}");
        settle();
        common::note(&format!("{} publish {count} × {size} B", ctx.system.name()));
        let published = on!(ctx, publish(&name, size, count));
        let n = published.as_ref().map(|r| r.messages).unwrap_or(0);
        emit(ctx, "publish", published.map(|r| r.json()));
        if n > 0 && wanted("consume") {
            settle();
            common::note(&format!("{} consume {n} × {size} B", ctx.system.name()));
            let consumed = on!(ctx, consume(&name, size, n));
            emit(ctx, "consume", consumed.map(|r| r.json()));
        }
    }
    if wanted("end-to-end") {
        settle();
        common::note(&format!(
            "{} end-to-end at {}/s",
            ctx.system.name(),
            ctx.plan.e2e_rate
        ));
        let latency = common::Hiccups::around(async { on!(ctx, end_to_end()) }).await;
        emit(ctx, "end-to-end", latency);
    }
    if wanted("queue") {
        settle();
        common::note(&format!(
            "{} queue round trip, {} workers",
            ctx.system.name(),
            ctx.plan.workers
        ));
        let queue = on!(ctx, queue());
        emit(
            ctx,
            "queue",
            queue.map(|r| {
                let mut v = r.json();
                v["workers"] = json!(ctx.plan.workers);
                v
            }),
        );
    }
}

struct Args(Vec<String>);

impl Args {
    fn value(&self, flag: &str) -> Option<&str> {
        let i = self.0.iter().position(|a| a == flag)?;
        self.0.get(i + 1).map(String::as_str)
    }

    fn need(&self, flag: &str) -> anyhow::Result<&str> {
        self.value(flag)
            .ok_or_else(|| anyhow::anyhow!("{flag} is required"))
    }

    fn has(&self, flag: &str) -> bool {
        self.0.iter().any(|a| a == flag)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args(std::env::args().skip(1).collect());
    match args.0.first().map(String::as_str) {
        Some("run") => {
            let tier = match args.need("--tier")? {
                "durable" => Tier::Durable,
                "default" => Tier::Default,
                t => anyhow::bail!("unknown tier {t:?}"),
            };
            let mut ctx = Ctx {
                system: System::parse(args.need("--system")?)?,
                addr: args.need("--addr")?.to_owned(),
                tier,
                plan: Plan::new(args.has("--quick")),
                nats_sync_always: args.has("--nats-sync-always"),
                cluster: None,
            };
            if args.has("--cluster") {
                anyhow::ensure!(
                    tier == Tier::Durable,
                    "--cluster compares the durable tier only"
                );
                anyhow::ensure!(
                    ctx.system != System::Redis,
                    "--cluster has no Redis Streams (no replicated streams to compare)"
                );
                ctx.cluster = Some(cluster::Layout {
                    nodes: ctx.addrs().len(),
                    partitions: cluster::PARTITIONS,
                });
                ctx.plan.e2e_rate = cluster::E2E_RATE;
            }
            let only: Vec<String> = args
                .value("--only")
                .map(|o| o.split(',').map(str::to_owned).collect())
                .unwrap_or_default();
            // `--sizes` keeps only those message sizes of publish/consume
            // (to profile one of them).
            let sizes: Vec<usize> = args
                .value("--sizes")
                .map(|o| o.split(',').filter_map(|s| s.parse().ok()).collect())
                .unwrap_or_default();
            run(&ctx, &only, &sizes).await;
        }
        Some("disk") => {
            let dir = std::path::PathBuf::from(args.need("--dir")?);
            let mib = if args.has("--quick") { 256 } else { 1024 };
            println!("{}", disk::measure(&dir, mib)?);
        }
        Some("table") => {
            let text = std::fs::read_to_string(args.0.get(1).map_or("-", String::as_str))?;
            let lines: Vec<Value> = text
                .lines()
                .filter(|l| l.starts_with('{'))
                .map(serde_json::from_str)
                .collect::<Result<_, _>>()?;
            // The lines of a cluster-mode run get their own table.
            let (clustered, single): (Vec<Value>, Vec<Value>) =
                lines.into_iter().partition(|l| l["mode"] == "cluster");
            if !single.is_empty() || clustered.is_empty() {
                print!("{}", report::table(&single));
            }
            if !clustered.is_empty() {
                print!("{}", cluster::table(&clustered));
            }
        }
        _ => anyhow::bail!(
            "usage: spool-compare run --system S --addr A[,A...] --tier durable|default [--cluster] [--quick] | disk --dir D | table FILE"
        ),
    }
    Ok(())
}
