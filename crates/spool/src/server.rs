//! `spool server`: bind, announce the address on stdout, serve until
//! SIGINT/SIGTERM, shut down gracefully.

use crate::cli::ServerArgs;
use anyhow::Context;
use spool_server::{Server, ServerConfig};
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;

/// Where the HTTP API listens unless told otherwise.
const HTTP_LISTEN_DEFAULT: &str = "127.0.0.1:7421";

fn resolve(flag: &str, addr: &str) -> anyhow::Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("invalid {flag} address {addr:?}"))?
        .next()
        .with_context(|| format!("{flag} {addr:?} resolves to no address"))
}

pub async fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let listen = resolve("--listen", &args.listen)?;
    if args.max_connections == 0 {
        anyhow::bail!("--max-connections must be at least 1");
    }
    let explicit_http = args.http_listen.is_some();
    let http_listen = resolve(
        "--http-listen",
        args.http_listen.as_deref().unwrap_or(HTTP_LISTEN_DEFAULT),
    )?;
    let mut config = ServerConfig {
        listen,
        http_listen: Some(http_listen),
        data_dir: args.data_dir,
        max_connections: args.max_connections,
        callback_secret: args.callback_secret,
        ..ServerConfig::default()
    };
    if !args.outbound_allow_hosts.is_empty() {
        config.outbound_allow_hosts = args.outbound_allow_hosts;
    }
    let server = match Server::bind(config.clone()).await {
        Ok(server) => server,
        // Several servers (tests, say) may run side by side without naming
        // an HTTP port: a busy default costs only the HTTP API. If something
        // else failed, the second attempt fails the same way and says so.
        Err(first) if !explicit_http => {
            config.http_listen = None;
            let server = Server::bind(config).await?;
            tracing::warn!(
                "serving without the HTTP API: {first:#} (pass --http-listen to choose its address)"
            );
            server
        }
        Err(e) => return Err(e),
    };
    let addr = server.local_addr()?;
    {
        // Tests start the server on port 0 and read the port from this line.
        // A reader that went away must not stop the server: ignore errors.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "spool listening on {addr}");
        if let Some(http) = server.http_addr() {
            let _ = writeln!(out, "spool http listening on {http}");
        }
        let _ = out.flush();
    }
    match server.http_addr() {
        Some(http) => tracing::info!(%addr, %http, "listening (binary protocol, HTTP API)"),
        None => tracing::info!(%addr, "listening (binary protocol)"),
    }
    server.serve(spool_server::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
