//! The `spool` binary: `spool server` runs the broker behind the binary
//! protocol; `spool topic …`, `spool produce` and `spool consume` are the
//! command-line client (built on `spool-client`).
//!
//! Client commands take `--addr` (default `$SPOOL_ADDR`, else
//! `127.0.0.1:7420`) and report failures on stderr as
//! `error: CODE_NAME: message` with a non-zero exit status. Logs go to
//! stderr, filtered by `RUST_LOG` (default `info`).
//!
//! Modules: `cli` (the clap definitions), `server` (`spool server`),
//! `topic` (`spool topic …`), `produce`, `consume`, `queue` (`spool
//! subscription …`, `receive`, `ack`, `nack`, `extend`, `dlq`, `errors`),
//! `request` (`spool request …`) and `worker` (`spool worker`).

mod cli;
mod consume;
mod produce;
mod queue;
mod request;
mod server;
mod topic;
mod worker;

use clap::Parser;
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

/// Connects for a client command, naming the address on failure.
pub async fn connect(addr: &str) -> anyhow::Result<Client> {
    let options = ClientOptions {
        client_id: format!("spool-cli-{}", std::process::id()),
        token: None,
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

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging();
    let result = match cli.command {
        cli::Command::Server(args) => server::run(args).await,
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
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}
