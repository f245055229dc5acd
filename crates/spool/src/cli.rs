//! Command-line definitions. Command names, flags and their spellings are a
//! contract (external checks use them), so change them only additively.

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "spool",
    version,
    about = "Spool: a message queue server and its command-line client"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Server(ServerArgs),
    /// Create, list, describe, alter and delete topics.
    Topic(TopicArgs),
    /// Send one message per line of standard input.
    Produce(ProduceArgs),
    /// Print messages, one value per line.
    Consume(ConsumeArgs),
}

/// Where the server is.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// Server address, host:port.
    #[arg(
        long,
        env = "SPOOL_ADDR",
        default_value = "127.0.0.1:7420",
        global = true
    )]
    pub addr: String,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address for the binary protocol (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7420")]
    pub listen: String,
    /// Where topics, offsets and metadata are stored.
    #[arg(long, default_value = "./spool-data")]
    pub data_dir: std::path::PathBuf,
    /// Address for the HTTP API [default: 127.0.0.1:7421]. Without the
    /// flag, a busy default port only costs the HTTP API (with a warning);
    /// an address given explicitly must be free.
    #[arg(long)]
    pub http_listen: Option<String>,
    /// Most concurrent client connections.
    #[arg(long, default_value_t = spool_types::limits::CONNECTIONS_MAX_DEFAULT)]
    pub max_connections: usize,
    /// Secret for signing request callbacks (default: generated once and
    /// kept in <data-dir>/callback.secret).
    #[arg(long, env = "SPOOL_CALLBACK_SECRET", hide_env_values = true)]
    pub callback_secret: Option<String>,
    /// A host callbacks and push endpoints may target; repeat for more
    /// (`*` allows any). Default: loopback only.
    #[arg(long = "outbound-allow-host")]
    pub outbound_allow_hosts: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TopicArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(subcommand)]
    pub command: TopicCommand,
}

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Number of partitions.
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List topics with their partition counts.
    List {
        /// Only topics matching this name or pattern (`orders.*`, `orders.>`).
        pattern: Option<String>,
    },
    /// Show a topic's settings and its partitions' offsets and depth.
    Describe { name: String },
    /// Change a topic's settings (only the flags given change).
    Alter {
        name: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Delete a topic and its messages.
    Delete { name: String },
}

/// Topic settings; absent flags keep the default (create) or the current
/// value (alter). For the numeric limits, 0 means "no limit".
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// Most messages the topic keeps.
    #[arg(long)]
    pub max_messages: Option<u64>,
    /// Most bytes the topic keeps.
    #[arg(long)]
    pub max_bytes: Option<u64>,
    /// What a full topic does with new messages.
    #[arg(long, value_enum)]
    pub on_full: Option<OnFullArg>,
    /// When messages are removed.
    #[arg(long, value_enum)]
    pub retention: Option<RetentionArg>,
    /// Delete old data beyond this many bytes per partition.
    #[arg(long)]
    pub retention_bytes: Option<u64>,
    /// Delete messages older than this.
    #[arg(long)]
    pub retention_ms: Option<u64>,
    /// When appends reach the disk before being acknowledged.
    #[arg(long, value_enum)]
    pub durability: Option<DurabilityArg>,
    /// Flush interval for `--durability interval` (default 1000).
    #[arg(long)]
    pub interval_ms: Option<u32>,
    /// Segment file size.
    #[arg(long)]
    pub segment_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnFullArg {
    /// Refuse new messages with QUEUE_FULL.
    Reject,
    /// Drop the oldest messages to make room.
    DropOldest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RetentionArg {
    /// Keep messages until the size/age limits remove them.
    Limits,
    /// Also remove messages once every consumer group has consumed them.
    WorkQueue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    /// fsync before acknowledging.
    Always,
    /// fsync at most --interval-ms after the append.
    Interval,
    /// Leave flushing to the operating system.
    Never,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Topic to send to.
    pub topic: String,
    /// Key for every message (decides the partition).
    #[arg(long)]
    pub key: Option<String>,
    /// Partition for every message (overrides the key).
    #[arg(long)]
    pub partition: Option<u32>,
}

/// Where `spool consume` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    Earliest,
    Latest,
    Offset(u64),
}

fn parse_from(s: &str) -> Result<From, String> {
    match s {
        "earliest" => Ok(From::Earliest),
        "latest" => Ok(From::Latest),
        other => other
            .parse::<u64>()
            .map(From::Offset)
            .map_err(|_| format!("expected earliest, latest or an offset, not {other:?}")),
    }
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Topic name or pattern (`orders.*` one level, `orders.>` any depth).
    pub topic: String,
    /// Consume as a member of this consumer group, committing what was printed.
    #[arg(long)]
    pub group: Option<String>,
    /// Where to start: earliest, latest, or an offset (on every partition;
    /// not with --group). With --group, earliest/latest apply only where
    /// the group has no committed offset.
    #[arg(long, value_parser = parse_from, default_value = "earliest")]
    pub from: From,
    /// Stop after printing this many messages.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this long without a new message.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Group session timeout: how long the server waits for a silent member
    /// before giving its partitions to others.
    #[arg(long, default_value_t = 10_000)]
    pub session_timeout_ms: u64,
}
