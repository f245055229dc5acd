//! The arguments of `spool bench` (re-exported by `crate::cli`, where every
//! other command's arguments are).

use crate::cli::{ConnArgs, DurabilityArg};
use clap::{Args, ValueEnum};

/// What `spool bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchWorkload {
    /// Acknowledged publish throughput.
    Produce,
    /// Read throughput of a pre-filled topic.
    Consume,
    /// Publish → deliver latency at a fixed offered rate.
    EndToEnd,
    /// Publish → receive → ack round trip through a queue subscription.
    Queue,
    /// Submit → worker → complete requests, then status reads.
    Requests,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// The workload to run.
    #[arg(value_enum)]
    pub workload: BenchWorkload,
    /// Message (payload) size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub size: u64,
    /// Messages (requests) in all [default: 100000 for produce and consume,
    /// 50000 for queue, 10000 for requests; end-to-end runs 10 s].
    #[arg(long)]
    pub count: Option<u64>,
    /// Send for this many seconds instead of a count (not for consume).
    #[arg(long)]
    pub duration_s: Option<f64>,
    /// Producers (submitters, status readers), each with its own connection.
    #[arg(long, default_value_t = 1)]
    pub producers: u64,
    /// Consumers or workers, each with its own connection [default: 16
    /// for queue and requests, else 1].
    #[arg(long)]
    pub consumers: Option<u64>,
    /// Partitions of the bench topic [default: --consumers for consume and
    /// end-to-end, else 1].
    #[arg(long)]
    pub partitions: Option<u64>,
    /// Most messages per produce batch.
    #[arg(long, default_value_t = 1000)]
    pub batch: u64,
    /// Produce (submit) requests in flight per producer.
    #[arg(long, default_value_t = 16)]
    pub window: u64,
    /// How long a produce batch waits for more messages [default: 5; 0
    /// for end-to-end and queue].
    #[arg(long)]
    pub linger_ms: Option<u64>,
    /// Offered rate in messages/s over all producers (end-to-end: default
    /// 10000; produce and queue: unpaced unless given).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Durability of the bench topic.
    #[arg(long, value_enum, default_value = "always")]
    pub fsync: DurabilityArg,
    /// Flush interval for `--fsync interval` [default: 1000].
    #[arg(long)]
    pub interval_ms: Option<u32>,
    /// Most messages a queue or request worker leases per receive.
    #[arg(long, default_value_t = 100)]
    pub receive_max: u64,
    /// How long the requests workload measures status reads, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub status_duration_s: f64,
    /// Print one JSON object on standard output instead of a table.
    #[arg(long)]
    pub json: bool,
}
