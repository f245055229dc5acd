//! `spool server`: load and check the configuration (`config`), set up
//! logging, refuse to serve a non-loopback address without authentication
//! (unless `--insecure`), bind, announce the address on stdout, serve until
//! SIGINT/SIGTERM, shut down gracefully. `--print-config` prints the
//! effective configuration and exits.

use crate::cli::ServerArgs;
use crate::config::{ConfigError, LogFormat, Settings, Validated};
use clap::ArgMatches;
use spool_server::{Server, ServerConfig};
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

/// Logs to stderr in `format`, filtered by `filter` (RUST_LOG syntax).
fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    // openraft logs every vote and election at `info`, and every failed
    // heartbeat to a node that is down (ten a second per group) at `warn`:
    // a cluster's log would be mostly that. Spool logs leader changes and
    // unreachable peers itself; a filter that names openraft decides.
    let filter = if filter.contains("openraft") {
        filter.to_owned()
    } else {
        format!("{filter},openraft=error")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(filter)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // The spans carry the connection and request IDs.
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
    Ok(())
}

/// `flags`: clap's matches of `spool server` (the command line only; see
/// `config::without_env`), which `args` was taken from.
pub async fn run(args: ServerArgs, flags: ArgMatches) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(&flags)?;
    let plan = settings.validate()?;
    if args.print_config {
        let mut out = std::io::stdout().lock();
        out.write_all(settings.to_toml().as_bytes())?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    init_logging(plan.log_format, &plan.log_level)?;
    for warning in &plan.warnings {
        tracing::warn!("{warning}");
    }
    plan.check_exposure(&settings)?;
    // Before the data directory is opened: each of its log files is a
    // descriptor, and so is each connection.
    let open_files = match spool_server::descriptors::raise_open_file_limit() {
        Ok(limit) if limit.now > limit.before => {
            tracing::info!(
                "open-file limit: {} (raised from {})",
                limit.now,
                limit.before
            );
            Some(limit.now)
        }
        Ok(limit) => {
            tracing::info!("open-file limit: {}", limit.now);
            Some(limit.now)
        }
        Err(e) => {
            tracing::warn!("could not read or raise the open-file limit: {e}");
            None
        }
    };
    for addr in plan.exposed() {
        tracing::warn!(
            %addr,
            "serving a non-loopback address WITHOUT authentication (--insecure): anyone who can reach it can do anything"
        );
    }
    let mut config = ServerConfig {
        listen: plan.listen,
        http_listen: plan.http_listen,
        data_dir: plan.data_dir.clone(),
        max_connections: plan.max_connections,
        max_connections_per_peer: plan.max_connections_per_peer,
        token_rate_per_s: plan.token_rate_per_s,
        tls: plan.tls.clone(),
        request_ttl_ms: plan.request_ttl_ms,
        callback_retry_ms: plan.callback_retry_ms,
        callback_secret: plan.callback_secret.clone(),
        outbound_allow_hosts: plan.outbound_allow_hosts.clone(),
        admin_token: plan.admin_token.clone(),
        cluster: plan.cluster.clone(),
    };
    let server = match Server::bind(config.clone()).await {
        Ok(server) => server,
        // Several servers (tests, say) may run side by side without naming
        // an HTTP port: a busy default costs only the HTTP API. If something
        // else failed, the second attempt fails the same way and says so.
        Err(first) if !plan.http_explicit && config.http_listen.is_some() => {
            config.http_listen = None;
            let server = Server::bind(config).await?;
            tracing::warn!(
                "serving without the HTTP API: {first:#} (pass --http-listen to choose its address)"
            );
            server
        }
        Err(e) => return Err(e),
    };
    let needs = server.descriptor_needs();
    if let Some(limit) = open_files.filter(|limit| needs.total() > *limit) {
        tracing::warn!(
            "the open-file limit ({limit}) is below what this server may need, {needs}: \
             raise the hard limit (LimitNOFILE= under systemd, ulimit -Hn in a shell) or lower \
             max_connections; out of descriptors, topics cannot be created and connections \
             are refused"
        );
    }
    let addr = server.local_addr()?;
    {
        // Tests start the server on port 0 and read the port from this line.
        // A reader that went away must not stop the server: ignore errors.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "spool listening on {addr}");
        if let Some(http) = server.http_addr() {
            let _ = writeln!(out, "spool http listening on {http}");
        }
        if let Some(cluster) = &plan.cluster {
            let _ = writeln!(
                out,
                "spool cluster node {} listening on {}",
                cluster.node_id, cluster.cluster_listen
            );
        }
        let _ = out.flush();
    }
    let auth = if server.auth_enabled() {
        "tokens required"
    } else {
        "no authentication"
    };
    match server.http_addr() {
        Some(http) => {
            tracing::info!(%addr, %http, auth, "listening (binary protocol, HTTP API)")
        }
        None => tracing::info!(%addr, auth, "listening (binary protocol)"),
    }
    server.serve(spool_server::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

impl Validated {
    /// Backend-only by default: without an admin token, only loopback
    /// addresses, unless `insecure`.
    pub fn check_exposure(&self, settings: &Settings) -> Result<(), ConfigError> {
        if self.admin_token.is_some() || self.insecure {
            return Ok(());
        }
        let listeners = [
            (Some(self.listen), "listen"),
            (self.http_listen, "http_listen"),
        ];
        for (addr, key) in listeners {
            if let Some(addr) = addr.filter(|a| !a.ip().is_loopback()) {
                return Err(ConfigError(format!(
                    "refusing to listen on {addr} ({}) without authentication: with no admin \
                     token the server binds only loopback addresses. Set an admin token \
                     (SPOOL_ADMIN_TOKEN, or admin_token_file in the configuration) so every \
                     request needs a token, or pass --insecure to serve it unauthenticated",
                    settings.name(key)
                )));
            }
        }
        Ok(())
    }

    /// Non-loopback listeners served without authentication (`--insecure`).
    pub fn exposed(&self) -> Vec<SocketAddr> {
        if self.admin_token.is_some() {
            return Vec::new();
        }
        std::iter::once(self.listen)
            .chain(self.http_listen)
            .filter(|a| !a.ip().is_loopback())
            .collect()
    }
}
