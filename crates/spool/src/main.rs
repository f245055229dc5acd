//! The `spool` binary: `spool server` runs the broker behind the binary
//! protocol; `spool topic …`, `spool produce` and `spool consume` are the
//! command-line client (built on `spool-client`).
//!
//! Client commands take `--addr` (default `$SPOOL_ADDR`, else
//! `127.0.0.1:7420`), `--token` (default `$SPOOL_TOKEN`; needed when the
//! server has authentication on) and `--tls-ca` (default `$SPOOL_TLS_CA`:
//! speak TLS, trusting the CA certificates in that PEM file), before or
//! after the subcommand (`spool --addr H:P topic list` = `spool topic list
//! --addr H:P`; given in both places, the later one counts), and report
//! failures on stderr as `error: CODE_NAME: message` (and the server's
//! retry hint, `(retry after N ms)`, when it gave one) with a non-zero exit
//! status. Logs go to
//! stderr, filtered by `RUST_LOG` (default `info`); `spool server` sets up
//! its own logging from its configuration (`config`).
//!
//! Modules: `cli` (the clap definitions), `server` (`spool server`),
//! `topic` (`spool topic …`), `produce`, `consume`, `group` (`spool group …`), `queue` (`spool
//! subscription …`, `receive`, `ack`, `nack`, `extend`, `dlq`, `errors`),
//! `request` (`spool request …`) and `worker` (`spool worker`), `token`
//! (`spool token …`), `status` (`spool status`), `tls` (`spool tls
//! generate`: a CA and a server certificate), `config` (the server's
//! configuration layers).

mod bench;
mod cli;
mod cluster;

/// mimalloc rather than glibc's malloc: the server allocates and frees
/// from many threads at once (runtime workers, blocking threads, sync
/// threads), and glibc's arena locks showed up contended in profiles of the
/// queue workload (BENCHMARKS.md, sixth session). It replaces the glibc
/// tuning of earlier sessions (two arenas, a fixed mmap threshold, a
/// `malloc_trim` thread), which only bounded glibc's own growth. Built
/// without transparent huge pages (`no_thp`): with them its arenas doubled
/// the idle footprint.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod config;
mod consume;
mod group;
mod produce;
mod queue;
mod request;
mod server;
mod status;
mod tls;
mod token;
mod topic;
mod worker;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use spool_client::{Client, ClientError, ClientOptions};
use std::process::ExitCode;

/// A failure to report as `error: CODE: message`.
#[derive(Debug)]
pub struct Failure {
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Failure {}

impl Failure {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Failure {
        Failure {
            code: code.into(),
            message: message.into(),
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        Failure::new(e.code_name(), client_message(&e))
    }
}

/// A client error's message with the server's retry hint, if it gave one
/// (`topic t is full (retry after 1000 ms)`).
fn client_message(e: &ClientError) -> String {
    match e.retry_after_ms() {
        Some(ms) => format!("{} (retry after {ms} ms)", e.message()),
        None => e.message(),
    }
}

/// Prints an error in the `error: CODE: message` shape.
pub fn report(e: &anyhow::Error) {
    if let Some(f) = e.downcast_ref::<Failure>() {
        eprintln!("error: {f}");
    } else if let Some(c) = e.downcast_ref::<ClientError>() {
        eprintln!("error: {}: {}", c.code_name(), client_message(c));
    } else {
        eprintln!("error: {e:#}");
    }
}

/// The `--token` (or `$SPOOL_TOKEN`) of the command being run, set once
/// in `main`; every connection of the process presents it.
static TOKEN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
/// The `--tls-ca` (or `$SPOOL_TLS_CA`) of the command being run: when set,
/// every connection speaks TLS and trusts the CA certificates in it.
static TLS_CA: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Connects for a client command, naming the address on failure.
pub async fn connect(addrs: &str) -> anyhow::Result<Client> {
    let mut last = None;
    for addr in addr_list(addrs) {
        match connect_one(addr).await {
            Ok(client) => return Ok(client),
            // Refused by the server (a bad token): another node says the same.
            Err(e) if e.downcast_ref::<ClientError>().is_some() => return Err(e),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| Failure::new("INVALID_REQUEST", "--addr names no address").into()))
}

/// The addresses of `--addr`: one, or a comma-separated list of a
/// cluster's nodes (tried in order until one answers).
pub fn addr_list(addrs: &str) -> impl Iterator<Item = &str> {
    addrs.split(',').map(str::trim).filter(|a| !a.is_empty())
}

async fn connect_one(addr: &str) -> anyhow::Result<Client> {
    let options = ClientOptions {
        client_id: format!("spool-cli-{}", std::process::id()),
        token: TOKEN.get().cloned().flatten(),
        tls: TLS_CA.get().cloned().flatten().map(|ca| {
            // The certificate must be valid for the host as written in --addr.
            spool_client::TlsOptions::new(ca).with_server_name(host_of(addr))
        }),
    };
    match Client::connect(addr, options).await {
        Ok(client) => Ok(client),
        Err(ClientError::Server(e)) => Err(ClientError::Server(e).into()),
        Err(e) => Err(Failure::new(
            e.code_name(),
            format!("cannot connect to {addr}: {}", e.message()),
        )
        .into()),
    }
}

/// The host part of `host:port` (`[v6]:port` too).
fn host_of(addr: &str) -> String {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Most threads the server's runtime starts for blocking work
/// (`spawn_blocking`, `block_in_place`; tokio's default is 512). Bursts of
/// long polls and request-store calls took it past 250 threads in a soak,
/// and with per-thread heaps each idle thread kept memory: ~230 MiB
/// resident after 4 minutes, against ~50 MiB with this cap (BENCHMARKS.md,
/// sixth session).
/// When all are busy, more blocking work waits for one to finish.
const SERVER_BLOCKING_THREADS_MAX: usize = 32;

/// `spool server` with its own hidden copies of the client connection
/// flags: clap then gives it those instead of the global ones, so its help
/// does not offer flags it refuses.
fn hide_client_flags(server: clap::Command) -> clap::Command {
    server.args(
        [("addr", "addr"), ("token", "token"), ("tls_ca", "tls-ca")]
            .map(|(id, long)| clap::Arg::new(id).long(long).hide(true)),
    )
}

/// The client connection flags, which the top level takes so they may come
/// before the subcommand, and which clap therefore also offers `spool
/// server`: given to it they would be ignored, so they are refused.
fn refuse_client_flags_for_server(matches: &ArgMatches) {
    let Some(("server", server)) = matches.subcommand() else {
        return;
    };
    for (id, flag) in [
        ("addr", "--addr"),
        ("token", "--token"),
        ("tls_ca", "--tls-ca"),
    ] {
        if server.value_source(id) == Some(ValueSource::CommandLine) {
            cli::Cli::command()
                .error(
                    ErrorKind::ArgumentConflict,
                    format!(
                        "{flag} is for client commands; `spool server` takes --listen, \
                         --admin-token-file and --tls-cert-file/--tls-key-file instead"
                    ),
                )
                .exit();
        }
    }
}

fn main() -> ExitCode {
    // The server's settings come from its file and environment too, which
    // `config` layers itself.
    let matches = cli::Cli::command()
        .mut_subcommand("server", |server| {
            hide_client_flags(config::without_env(server))
        })
        .get_matches();
    refuse_client_flags_for_server(&matches);
    let cli = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if matches!(cli.command, cli::Command::Server(_)) {
        builder.max_blocking_threads(SERVER_BLOCKING_THREADS_MAX);
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async_main(cli, matches))
}

async fn async_main(cli: cli::Cli, matches: ArgMatches) -> ExitCode {
    // Global flags: clap gives every level the value from wherever it was
    // given (after the subcommand wins over before it).
    let _ = TOKEN.set(cli.conn.token.clone());
    let _ = TLS_CA.set(cli.conn.tls_ca.clone());
    if !matches!(cli.command, cli::Command::Server(_)) {
        init_logging();
    }
    let result = match cli.command {
        cli::Command::Server(args) => {
            let flags = matches.subcommand_matches("server").cloned();
            server::run(args, flags.unwrap_or_default()).await
        }
        cli::Command::Topic(args) => topic::run(args).await,
        cli::Command::Produce(args) => produce::run(args).await,
        cli::Command::Consume(args) => consume::run(args).await,
        cli::Command::Subscription(args) => queue::subscription(args).await,
        cli::Command::Group(args) => group::run(args).await,
        cli::Command::Receive(args) => queue::receive(args).await,
        cli::Command::Ack(args) => queue::ack(args).await,
        cli::Command::Nack(args) => queue::nack(args).await,
        cli::Command::Extend(args) => queue::extend(args).await,
        cli::Command::Dlq(args) => queue::dlq(args).await,
        cli::Command::Errors(args) => queue::errors(args).await,
        cli::Command::Request(args) => request::run(args).await,
        cli::Command::Worker(args) => worker::run(args).await,
        cli::Command::Token(args) => token::run(args).await,
        cli::Command::Status(args) => status::run(args).await,
        cli::Command::Bench(args) => bench::run(args).await,
        cli::Command::Tls(args) => tls::run(args),
        cli::Command::Cluster(args) => cluster::run(args).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}
