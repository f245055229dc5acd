//! The `spool` binary: `spool server` runs the broker behind the binary
//! protocol; `spool topic …`, `spool produce` and `spool consume` are the
//! command-line client (built on `spool-client`).
//!
//! Client commands take `--addr` (default `$SPOOL_ADDR`, else
//! `127.0.0.1:7420`), `--token` (default `$SPOOL_TOKEN`; needed when the
//! server has authentication on) and `--tls-ca` (default `$SPOOL_TLS_CA`:
//! speak TLS, trusting the CA certificates in that PEM file) and report failures on stderr as
//! `error: CODE_NAME: message` with a non-zero exit status. Logs go to
//! stderr, filtered by `RUST_LOG` (default `info`); `spool server` sets up
//! its own logging from its configuration (`config`).
//!
//! Modules: `cli` (the clap definitions), `server` (`spool server`),
//! `topic` (`spool topic …`), `produce`, `consume`, `queue` (`spool
//! subscription …`, `receive`, `ack`, `nack`, `extend`, `dlq`, `errors`),
//! `request` (`spool request …`) and `worker` (`spool worker`), `token`
//! (`spool token …`), `status` (`spool status`), `config` (the server's configuration layers).

mod bench;
mod cli;

/// mimalloc rather than glibc's malloc: the server allocates and frees
/// from many threads at once (runtime workers, blocking threads, sync
/// threads), and glibc's arena locks showed up contended in profiles of the
/// queue workload (BENCHMARKS.md, sixth session).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod config;
mod consume;
mod produce;
mod queue;
mod request;
mod server;
mod status;
mod token;
mod topic;
mod worker;

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
        Failure::new(e.code_name(), e.message())
    }
}

/// Prints an error in the `error: CODE: message` shape.
pub fn report(e: &anyhow::Error) {
    if let Some(f) = e.downcast_ref::<Failure>() {
        eprintln!("error: {f}");
    } else if let Some(c) = e.downcast_ref::<ClientError>() {
        eprintln!("error: {}: {}", c.code_name(), c.message());
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

/// A global flag's value wherever it was given (global flags may follow
/// any subcommand): the deepest subcommand that has one.
fn global_from(matches: &ArgMatches, id: &str) -> Option<String> {
    let mut token = None;
    let mut m = matches;
    loop {
        if let Ok(Some(t)) = m.try_get_one::<String>(id) {
            token = Some(t.clone());
        }
        match m.subcommand() {
            Some((_, sub)) => m = sub,
            None => return token,
        }
    }
}

/// Connects for a client command, naming the address on failure.
pub async fn connect(addr: &str) -> anyhow::Result<Client> {
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

/// Most glibc malloc arenas. glibc gives each thread that contends for
/// the allocator its own arena (up to 8 per core) and never gives an
/// arena's freed pages back well; with the server's many short-lived
/// blocking threads (each in-flight fsync wait holds one) resident memory
/// kept creeping up under sustained load — a produce loop grew from 12 to
/// 46 MiB with the default, and stayed at 18 MiB with one arena.
const MALLOC_ARENAS_MAX: i32 = 2;

/// Allocations at least this large get their own mapping, returned to the
/// system when freed. Setting it also stops glibc from raising the
/// threshold after each large free (up to 32 MiB), after which the log's
/// and the connections' large read buffers were carved from, and
/// fragmented, the arenas.
const MALLOC_MMAP_THRESHOLD_BYTES: i32 = 256 * 1024;

/// Caps glibc's malloc arenas, unless `MALLOC_ARENA_MAX` says otherwise.
/// Must run before other threads start (then no arena exists beyond the
/// main thread's).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: `mallopt` only sets a tuning parameter of the C
        // allocator; it is called while the process has a single thread,
        // with a valid option constant and value.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS_MAX);
            libc::mallopt(libc::M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD_BYTES);
        }
    }
}

/// How often the server hands freed heap pages back to the system.
const MALLOC_TRIM_INTERVAL_MS: u64 = 10_000;

/// glibc keeps freed memory inside its arenas (only the top of the main
/// heap is ever trimmed by itself), so under a churning mixed load resident
/// memory kept creeping up long after the live heap had stopped growing
/// (heaptrack over a soak: peak live heap 12 MiB, arenas 60 MiB resident).
/// A thread calls `malloc_trim`, which releases the free pages of every
/// arena, at a fixed interval.
fn start_malloc_trimmer() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new()
            .name("spool-malloc-trim".into())
            .spawn(|| loop {
                std::thread::sleep(std::time::Duration::from_millis(MALLOC_TRIM_INTERVAL_MS));
                // SAFETY: `malloc_trim` only returns free memory to the
                // system; it takes the allocator's own locks and is safe to
                // call from any thread at any time.
                #[allow(unsafe_code)]
                unsafe {
                    libc::malloc_trim(0);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("memory trimming thread not started: {e}");
        }
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async_main())
}

async fn async_main() -> ExitCode {
    let matches = cli::Cli::command().get_matches();
    let cli = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let _ = TOKEN.set(global_from(&matches, "token"));
    let _ = TLS_CA.set(global_from(&matches, "tls_ca"));
    if !matches!(cli.command, cli::Command::Server(_)) {
        init_logging();
    }
    let result = match cli.command {
        cli::Command::Server(args) => {
            start_malloc_trimmer();
            server::run(args).await
        }
        cli::Command::Topic(args) => topic::run(args).await,
        cli::Command::Produce(args) => produce::run(args).await,
        cli::Command::Consume(args) => consume::run(args).await,
        cli::Command::Subscription(args) => queue::subscription(args).await,
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
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}
