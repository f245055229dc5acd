//! Command-line definitions. Command names, flags and their spellings are a
//! contract (external checks use them), so change them only additively.

use crate::config::{self, LogFormat};
use clap::{Args, Parser, Subcommand, ValueEnum};

// `spool bench`'s arguments live beside the load generator.
pub use crate::bench::args::{BenchArgs, BenchWorkload};

#[derive(Debug, Parser)]
#[command(
    name = "spool",
    version,
    about = "Spool: a message queue server and its command-line client"
)]
pub struct Cli {
    /// `--addr`, `--token` and `--tls-ca` before the subcommand (`spool
    /// --addr H:P topic list`); each client command also takes them after
    /// its name. Either way clap hands the same value to both places.
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Server(ServerArgs),
    /// One screen: the server, topics (depth, rate), subscriptions (lag,
    /// in flight, dead letters) and consumer groups (lag per partition).
    Status(StatusArgs),
    /// Create, list, describe, alter and delete topics.
    Topic(TopicArgs),
    /// Send one message per line of standard input.
    Produce(ProduceArgs),
    /// Print messages, one value per line.
    Consume(ConsumeArgs),
    /// Create, list and delete subscriptions (queue or stream).
    Subscription(SubscriptionArgs),
    /// Consumer groups: list, describe, reset offsets, delete.
    Group(GroupArgs),
    /// Lease messages from a queue subscription and print them.
    Receive(ReceiveArgs),
    /// Acknowledge leased messages by receipt: they are done.
    Ack(AckArgs),
    /// Give leased messages back as failed (redelivered, or dead-lettered
    /// at max deliveries).
    Nack(NackArgs),
    /// Extend leases: new deadline = now + --ms.
    Extend(ExtendArgs),
    /// Dead letters.
    Dlq(DlqArgs),
    /// The side channel (`spool.errors`).
    Errors(ErrorsArgs),
    /// Asynchronous requests: submit, status, wait.
    Request(RequestArgs),
    /// Run a command for each request on a request queue.
    Worker(WorkerArgs),
    /// Create, list and revoke access tokens (admin only).
    Token(TokenArgs),
    /// Measure a workload against a server: throughput, latency.
    Bench(BenchArgs),
    /// Make TLS certificates: a private CA and a server certificate it signs.
    Tls(crate::tls::TlsArgs),
    /// A replicated cluster: its status, or a local one to try out.
    Cluster(crate::cluster::ClusterArgs),
}

/// Where the server is.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// Server address, host:port; for a cluster, any of its nodes, or a
    /// comma-separated list of them (tried in order until one answers).
    #[arg(
        long,
        env = "SPOOL_ADDR",
        default_value = "127.0.0.1:7420",
        global = true
    )]
    pub addr: String,
    /// Access token, when the server requires one.
    #[arg(long, env = "SPOOL_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Connect with TLS, trusting the CA certificate(s) in this PEM file;
    /// the server's certificate must be valid for the host in --addr.
    #[arg(long, env = "SPOOL_TLS_CA", global = true)]
    pub tls_ca: Option<String>,
}

/// `spool server` settings, each declared once: its field name is its key
/// in the TOML file, and its attributes give its flag, its `SPOOL_…`
/// environment variable, its default and its help. `config` layers them:
/// defaults < file (`--config`) < environment < flags (see
/// `docs/configuration.md`). The settings come after `config` and
/// `print_config`, in the order `--print-config` shows them.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// TOML configuration file.
    #[arg(long, env = "SPOOL_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// Print the effective configuration (TOML, secrets redacted) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Address for the binary protocol (port 0 picks a free port).
    #[arg(long, env = "SPOOL_LISTEN", default_value = config::LISTEN_DEFAULT)]
    pub listen: String,
    /// Address for the HTTP API, or `off`. If not set anywhere, a busy
    /// default port only costs the HTTP API (with a warning); an address
    /// given must be free.
    #[arg(long, env = "SPOOL_HTTP_LISTEN", default_value = config::HTTP_LISTEN_DEFAULT)]
    pub http_listen: String,
    /// Where topics, offsets and metadata are stored.
    #[arg(long, env = "SPOOL_DATA_DIR", default_value = config::DATA_DIR_DEFAULT)]
    pub data_dir: std::path::PathBuf,
    /// Most concurrent client connections.
    #[arg(
        long,
        env = "SPOOL_MAX_CONNECTIONS",
        value_name = "CONNECTIONS",
        default_value_t = spool_types::limits::CONNECTIONS_MAX_DEFAULT as u64
    )]
    pub max_connections: u64,
    /// Most connections from one IP address [default: only
    /// --max-connections applies].
    #[arg(
        long,
        env = "SPOOL_MAX_CONNECTIONS_PER_PEER",
        value_name = "CONNECTIONS"
    )]
    pub max_connections_per_peer: Option<u64>,
    /// Most requests per second one token may make, both listeners
    /// together; over it requests get RATE_LIMITED (HTTP 429) [default:
    /// unlimited].
    #[arg(
        long,
        env = "SPOOL_TOKEN_RATE_PER_S",
        value_name = "REQUESTS_PER_SECOND"
    )]
    pub token_rate_per_s: Option<u64>,
    /// PEM certificate chain: serve both listeners over TLS. Needs
    /// --tls-key-file.
    #[arg(long, env = "SPOOL_TLS_CERT_FILE")]
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// PEM private key for --tls-cert-file.
    #[arg(long, env = "SPOOL_TLS_KEY_FILE")]
    pub tls_key_file: Option<std::path::PathBuf>,
    /// How long finished request records are kept, in ms (7 days).
    #[arg(
        long,
        env = "SPOOL_REQUEST_TTL_MS",
        value_name = "MILLISECONDS",
        default_value_t = spool_server::ServerConfig::default().request_ttl_ms as u64
    )]
    pub request_ttl_ms: u64,
    /// How long a failing request callback is retried, in ms (24 hours).
    #[arg(
        long,
        env = "SPOOL_CALLBACK_RETRY_MS",
        value_name = "MILLISECONDS",
        default_value_t = spool_server::ServerConfig::default().callback_retry_ms as u64
    )]
    pub callback_retry_ms: u64,
    /// File holding the secret (at least 16 bytes) that signs request
    /// callbacks and HTTP push deliveries [or the secret itself in
    /// SPOOL_CALLBACK_SECRET; default: generated once and kept in
    /// <data-dir>/callback.secret].
    #[arg(long, env = "SPOOL_CALLBACK_SECRET_FILE")]
    pub callback_secret_file: Option<std::path::PathBuf>,
    /// Where callbacks and push endpoints may go: `host`, `host:port`,
    /// `[v6]:port`, optionally with `http://` or `https://` in front (no
    /// scheme: either; no port: any), or `*` for any host; repeat for more.
    /// The environment variable takes a comma-separated list.
    #[arg(
        long = "outbound-allow-host",
        env = "SPOOL_OUTBOUND_ALLOW_HOSTS",
        value_name = "ALLOWED_TARGET",
        default_values_t = spool_server::ServerConfig::default().outbound_allow_hosts
    )]
    pub outbound_allow_hosts: Vec<String>,
    /// File holding the bootstrap admin token; with an admin token every
    /// request needs a valid token [or the token itself in
    /// SPOOL_ADMIN_TOKEN].
    #[arg(long, env = "SPOOL_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<std::path::PathBuf>,
    /// This node's id in a cluster (a positive number, unique in the
    /// cluster, never reused for another machine). With --peers.
    #[arg(long, env = "SPOOL_NODE_ID", value_name = "ID")]
    pub node_id: Option<u64>,
    /// Every node of the cluster, this one included, as
    /// `ID=HOST:PORT,...` (each node's --cluster-listen address as the
    /// others reach it). Nodes started with the same list form one
    /// cluster [default: single-node].
    #[arg(long, env = "SPOOL_PEERS", value_name = "ID=HOST:PORT,...")]
    pub peers: Option<String>,
    /// Where this node listens for the other nodes [default: its own
    /// address in --peers].
    #[arg(long, env = "SPOOL_CLUSTER_LISTEN", value_name = "HOST:PORT")]
    pub cluster_listen: Option<String>,
    /// File holding the secret (at least 16 bytes) every node of the
    /// cluster shares; node-to-node connections prove they know it [or
    /// the secret itself in SPOOL_CLUSTER_SECRET]. Needed with --peers.
    #[arg(long, env = "SPOOL_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<std::path::PathBuf>,
    /// PEM file of the CA certificate(s) that signed the nodes'
    /// certificates. With --tls-cert-file the node links use TLS too, and
    /// each node checks its peers' certificates against this CA and the
    /// host it dialed in --peers. Needed with --peers and TLS.
    #[arg(long, env = "SPOOL_CLUSTER_TLS_CA_FILE", value_name = "FILE")]
    pub cluster_tls_ca_file: Option<std::path::PathBuf>,
    /// Allow non-loopback addresses without an admin token (no
    /// authentication at all).
    #[arg(long, env = "SPOOL_INSECURE")]
    pub insecure: bool,
    /// Log line format.
    #[arg(long, env = "SPOOL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter in RUST_LOG syntax, e.g. `info,spool_server=debug` (the
    /// environment variable, else RUST_LOG).
    #[arg(long, env = "SPOOL_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; prints it once, as the last line of output.
    Create {
        /// Unique name (1-64 of A-Z a-z 0-9 . _ -).
        name: String,
        /// Topic name or pattern it may publish to (and submit requests
        /// on); repeat for more.
        #[arg(long = "produce", value_name = "PATTERN")]
        produce: Vec<String>,
        /// Topic name or pattern it may consume from; repeat for more.
        #[arg(long = "consume", value_name = "PATTERN")]
        consume: Vec<String>,
        /// Everything: topics, subscriptions, tokens.
        #[arg(long)]
        admin: bool,
    },
    /// List tokens with their permissions (never their secrets).
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: it is refused from its next request on.
    Revoke { name: String },
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// How long to watch end offsets for the publish rate, in ms.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// One JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
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
        /// On a cluster: how many nodes hold each partition [default: 3, or
        /// every node of a smaller cluster].
        #[arg(long)]
        replicas: Option<u32>,
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
    /// Window in which a repeated message ID is stored only once (default 120000).
    #[arg(long)]
    pub dedup_window_ms: Option<u64>,
    /// Depth at which the server logs a warning (0 turns it off).
    #[arg(long)]
    pub warn_depth: Option<u64>,
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
    /// Message ID for duplicate suppression (the `spool-msg-id` header).
    /// Only with exactly one input line.
    #[arg(long)]
    pub message_id: Option<String>,
    /// Deliver to queue subscriptions no sooner than this many ms after
    /// sending (every line).
    #[arg(long)]
    pub delay_ms: Option<u64>,
    /// Deliver to queue subscriptions no sooner than this time, in ms since
    /// the Unix epoch (every line).
    #[arg(long)]
    pub deliver_at_ms: Option<i64>,
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
    /// not with --group; past the end of every partition it is refused,
    /// OFFSET_OUT_OF_RANGE). With --group, earliest/latest apply only where
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
    /// Have the server push messages to this connection as they are
    /// appended (a push subscription, bounded by credit) instead of
    /// polling; not with --group. --from, --count and --timeout-ms apply
    /// as without it.
    #[arg(long, conflicts_with = "group")]
    pub push: bool,
}

#[derive(Debug, Args)]
pub struct GroupArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(subcommand)]
    pub command: GroupCommand,
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List consumer groups: members, partitions and total lag.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Show a group's members, the partitions each holds, and its committed
    /// offset and lag per partition.
    Describe {
        group: String,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Move a group's committed offsets on every partition of a topic;
    /// refused (GROUP_NOT_EMPTY) while the group has members.
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        /// earliest, latest, an offset (clamped into each partition), an
        /// RFC 3339 time (2024-05-01T12:00:00Z) or @MS (ms since the Unix
        /// epoch): the first stored batch with a message at or after it.
        #[arg(long, value_name = "earliest|latest|OFFSET|TIME")]
        to: String,
    },
    /// Delete a group without members, and its committed offsets.
    Delete { group: String },
}

#[derive(Debug, Args)]
pub struct SubscriptionArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(subcommand)]
    pub command: SubscriptionCommand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// Competing consumers, per-message acknowledgement.
    Queue,
    /// A consumer group (ordered stream processing).
    Stream,
}

#[derive(Debug, Subcommand)]
pub enum SubscriptionCommand {
    /// Create a subscription (creating an identical one again is fine).
    Create {
        topic: String,
        name: String,
        #[arg(long, value_enum, default_value = "queue")]
        kind: KindArg,
        /// Lease length (visibility timeout) [server default: 30000].
        #[arg(long)]
        ack_timeout_ms: Option<u32>,
        /// Deliveries after which a failing message is dead-lettered
        /// (0 = never).
        #[arg(long, default_value_t = spool_client::MAX_DELIVERIES_DEFAULT)]
        max_deliveries: u32,
        /// Topic dead letters are copied to.
        #[arg(long = "dead-letter", visible_alias = "dead-letter-topic")]
        dead_letter: Option<String>,
        /// At most one message per record key in flight, each key in order.
        #[arg(long)]
        ordering_key: bool,
        /// Count messages done as they are handed out (never redelivered).
        #[arg(long)]
        at_most_once: bool,
        /// Wait before a failed message is offered again (fixed; with
        /// --backoff-max-ms, the first step of an exponential backoff).
        #[arg(long)]
        backoff_ms: Option<u64>,
        /// Cap of an exponential backoff starting at --backoff-ms.
        #[arg(long, requires = "backoff_ms")]
        backoff_max_ms: Option<u64>,
        /// Push over HTTP: the server POSTs each message to this URL
        /// (2xx = ack) instead of consumers receiving it; it must pass the
        /// server's outbound allow-list (a server of protocol version 2 or
        /// later).
        #[arg(long)]
        push_endpoint: Option<String>,
        /// Most pushes to the endpoint at once [server default: 16].
        #[arg(long, requires = "push_endpoint",
              value_parser = clap::value_parser!(u32).range(1..))]
        max_in_flight: Option<u32>,
    },
    /// Change a queue subscription's settings: only those given (its
    /// mode and ordering are fixed at creation).
    Alter(AlterSubscriptionArgs),
    /// List a topic's queue subscriptions with their settings and load.
    List {
        topic: String,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Delete a queue subscription and its lease state.
    Delete { topic: String, name: String },
}

/// `spool subscription alter`: each flag given changes its setting.
#[derive(Debug, Args)]
pub struct AlterSubscriptionArgs {
    pub topic: String,
    pub name: String,
    /// Lease length (visibility timeout) of leases from now on.
    #[arg(long)]
    pub ack_timeout_ms: Option<u32>,
    /// Deliveries after which a failing message is dead-lettered
    /// (0 = never).
    #[arg(long)]
    pub max_deliveries: Option<u32>,
    /// Topic dead letters are copied to.
    #[arg(long = "dead-letter", visible_alias = "dead-letter-topic")]
    pub dead_letter: Option<String>,
    /// Copy dead letters to no topic (the side-channel event stays).
    #[arg(
        long,
        visible_alias = "no-dead-letter-topic",
        conflicts_with = "dead_letter"
    )]
    pub no_dead_letter: bool,
    /// Wait before a failed message is offered again (fixed; with
    /// --backoff-max-ms, the first step of an exponential backoff).
    #[arg(long)]
    pub backoff_ms: Option<u64>,
    /// Cap of an exponential backoff starting at --backoff-ms.
    #[arg(long, requires = "backoff_ms")]
    pub backoff_max_ms: Option<u64>,
    /// URL the server POSTs each message to (2xx = ack); it must pass
    /// the server's outbound allow-list.
    #[arg(long)]
    pub push_endpoint: Option<String>,
    /// Stop pushing over HTTP: consumers receive again.
    #[arg(long, conflicts_with = "push_endpoint")]
    pub no_push_endpoint: bool,
    /// Most pushes to the endpoint at once.
    #[arg(long)]
    pub max_in_flight: Option<u32>,
}

#[derive(Debug, Args)]
pub struct ReceiveArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    pub topic: String,
    pub subscription: String,
    /// Most messages to lease (with --push: most leased to this
    /// connection ahead of printing, the credit).
    #[arg(long, default_value_t = 1)]
    pub max: u32,
    /// Wait this long for a message when none is ready (with --push: stop
    /// after this long without a new message; 0 = no limit).
    #[arg(long, default_value_t = 0)]
    pub wait_ms: u32,
    /// Acknowledge what was printed (with --push: each message once it is
    /// printed).
    #[arg(long)]
    pub ack: bool,
    /// Have the server push leased messages to this connection as they
    /// become ready (bounded by --max, the credit) and print them as they
    /// come, until --count messages, --wait-ms without one, or SIGINT /
    /// SIGTERM. Messages leased to it but not printed when it stops are
    /// released at once for redelivery; printed ones not acknowledged
    /// (without --ack) stay leased until their ack timeout, as without
    /// --push.
    #[arg(long)]
    pub push: bool,
    /// With --push: stop after printing this many messages.
    #[arg(long, requires = "push")]
    pub count: Option<u64>,
    /// One JSON object per message (receipt, partition, offset,
    /// deliveries, key, value, headers) instead of the value alone.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AckArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    pub topic: String,
    pub subscription: String,
    #[arg(required = true)]
    pub receipts: Vec<String>,
}

#[derive(Debug, Args)]
pub struct NackArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    pub topic: String,
    pub subscription: String,
    /// Earliest redelivery, from now (the subscription's backoff applies
    /// if longer).
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u32,
    /// Why processing failed (kept for dead letters).
    #[arg(long)]
    pub error: Option<String>,
    #[arg(required = true)]
    pub receipts: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExtendArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    pub topic: String,
    pub subscription: String,
    /// New deadline: now + this many ms.
    #[arg(long)]
    pub ms: u32,
    #[arg(required = true)]
    pub receipts: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(subcommand)]
    pub command: DlqCommand,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Move a subscription's dead letters back to its topic.
    Redrive { topic: String, subscription: String },
}

#[derive(Debug, Args)]
pub struct ErrorsArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(subcommand)]
    pub command: ErrorsCommand,
}

/// Where `spool errors tail` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TailFrom {
    Earliest,
    Latest,
}

#[derive(Debug, Subcommand)]
pub enum ErrorsCommand {
    /// Print side-channel events (one JSON object per line) as they come.
    Tail {
        #[arg(long, value_enum, default_value = "latest")]
        from: TailFrom,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this long without a new event.
        #[arg(long)]
        timeout_ms: Option<u64>,
    },
}

#[derive(Debug, Args)]
pub struct RequestArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(subcommand)]
    pub command: RequestCommand,
}

#[derive(Debug, Subcommand)]
pub enum RequestCommand {
    /// Submit standard input (all of it, as is) as a request; prints its ID.
    /// A queue that does not exist is created (with authentication on, only
    /// for an admin token).
    Submit {
        queue: String,
        /// POST the final record here (host must be on the server's
        /// outbound allow-list).
        #[arg(long)]
        callback: Option<String>,
    },
    /// Print a request's record (JSON).
    Status { id: String },
    /// Wait for a request to finish and print its record; exit status 0
    /// only if it succeeded.
    Wait {
        id: String,
        /// Give up after this long (exit status 1, `error: TIMEOUT`).
        #[arg(long)]
        timeout_ms: Option<u64>,
    },
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// The request queue to work on (its `workers` subscription).
    pub queue: String,
    /// Commands run at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// The command and its arguments, after `--`: run once per request with
    /// the payload on standard input; exit 0 and its standard output
    /// completes the request; exit 65 fails it for good (no retry); anything
    /// else fails it with its standard error, to be tried again with the
    /// `workers` subscription's backoff until its max deliveries.
    #[arg(last = true, required = true, num_args = 1..)]
    pub command: Vec<String>,
}
