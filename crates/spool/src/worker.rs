//! `spool worker QUEUE [--concurrency N] -- COMMAND ARGS…`: turns any command
//! into an asynchronous-request worker.
//!
//! It leases messages from the queue's `workers` subscription (long poll)
//! and, for each one carrying a `spool-request-id` header, runs COMMAND with
//! the payload on standard input (exactly the stored bytes), with
//! `SPOOL_REQUEST_ID`, `SPOOL_REQUEST_QUEUE` and `SPOOL_REQUEST_ATTEMPT` in
//! its environment:
//!
//! - exit 0: the request is completed with standard output as the result —
//!   the JSON value when the output (trimmed) is valid JSON, else the output
//!   as a JSON string, byte for byte (invalid UTF-8 replaced);
//! - exit [`EXIT_FAILED_NO_RETRY`] (65, `EX_DATAERR` of `sysexits.h`: the
//!   input was wrong, so trying again cannot help): the request is failed
//!   for good, without a retry, its error being standard error;
//! - any other exit, death by a signal, or a command that cannot start: the
//!   request is failed with `retry` set (so it is tried again, with the
//!   `workers` subscription's backoff, up to its max deliveries), its error
//!   being standard error (or, when that is empty, how the command ended).
//!
//! While a command runs its lease is extended every third of the ack
//! timeout, so a long command is not handed to another worker. Messages
//! without the request header are acknowledged with a warning (nothing can
//! be done with them). Up to `--concurrency` commands run at once.
//!
//! SIGINT or SIGTERM stops taking new requests; running commands finish and
//! their outcomes are recorded, then the worker exits 0 (a second signal
//! exits at once). Commands run in their own process group, so a Ctrl-C in
//! the terminal reaches the worker, not them.

use crate::cli::WorkerArgs;
use crate::connect;
use serde_json::Value;
use spool_client::{
    Client, ClientError, ErrorCode, LeasedMessage, REQUEST_ID_HEADER, WORKERS_SUBSCRIPTION,
};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// Longest receive long poll. A stop request waits for the poll in flight
/// (cancelling it could lose messages the server leased meanwhile until
/// their leases lapse), so this bounds how long stopping takes to start.
const POLL_WAIT: Duration = Duration::from_secs(1);
/// Pause after an error before trying again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Largest result the server stores (1 MiB of JSON); standard output
/// beyond it cannot become a result.
const STDOUT_MAX: usize = 1024 * 1024;
/// How much of a command's standard error becomes the error: its end,
/// where the reason usually is. The server keeps at most 256 Ki characters.
const STDERR_KEEP: usize = 64 * 1024;
/// Shortest pause between two lease extensions.
const EXTEND_EVERY_MIN: Duration = Duration::from_millis(100);

/// The connection, re-established when it is lost (a server restart, say),
/// so a long-running worker outlives it.
struct Conn {
    addr: String,
    client: Mutex<Option<Client>>,
}

impl Conn {
    async fn get(&self) -> anyhow::Result<Client> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let c = connect(&self.addr).await?;
        *slot = Some(c.clone());
        Ok(c)
    }
}

/// What every request task needs.
struct Ctx {
    queue: String,
    command: Vec<String>,
    conn: Conn,
    /// The subscription's ack timeout, once learnt: how far each extension
    /// moves the deadline.
    ack_timeout: std::sync::Mutex<Option<Duration>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn is_connection_error(e: &ClientError) -> bool {
    matches!(e, ClientError::Io(_) | ClientError::Disconnected(_))
}

/// Whether a receive from the request queue failed only because the queue
/// (its topic and workers' subscription) does not exist yet: the first
/// submitted request creates it.
pub(crate) fn queue_not_created_yet(e: &ClientError) -> bool {
    matches!(
        e.code(),
        Some(ErrorCode::UnknownTopic | ErrorCode::UnknownSubscription)
    )
}

/// Sleeps `d` unless a stop comes first.
async fn pause(d: Duration, stop: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stop.wait_for(|s| *s) => {}
    }
}

/// SIGINT/SIGTERM: the first asks for a graceful stop, a second exits at
/// once (the handlers replace the default "terminate", so without this a
/// stuck command could not be interrupted).
fn watch_signals() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            tracing::warn!("cannot listen for SIGINT/SIGTERM; stop the worker with SIGKILL");
            // Keep the sender: a closed channel would read as "stop now".
            let _keep = tx;
            std::future::pending::<()>().await;
            return;
        };
        for n in 0.. {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if n == 0 {
                tracing::info!("stopping: no new requests; waiting for running commands (signal again to exit now)");
                let _ = tx.send(true);
            } else {
                tracing::warn!("second signal: exiting without waiting for running commands");
                std::process::exit(130);
            }
        }
    });
    rx
}

pub async fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let mut stop = watch_signals();
    let ctx = Arc::new(Ctx {
        queue: args.queue,
        command: args.command,
        conn: Conn {
            addr: args.conn.addr,
            client: Mutex::new(None),
        },
        ack_timeout: std::sync::Mutex::new(None),
    });
    // Fail fast on a wrong address; later losses are retried.
    ctx.conn.get().await?;
    let slots = Arc::new(Semaphore::new(args.concurrency as usize));
    let mut tasks = JoinSet::new();
    let mut waiting_logged = false;
    while !*stop.borrow() {
        while tasks.try_join_next().is_some() {}
        // Lease only as many as can start now.
        let first = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => permit?,
            _ = stop.wait_for(|s| *s) => break,
        };
        let mut permits = vec![first];
        while let Ok(p) = Arc::clone(&slots).try_acquire_owned() {
            permits.push(p);
        }
        let client = match ctx.conn.get().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("cannot reach the server, retrying: {e:#}");
                pause(RETRY_PAUSE * 2, &mut stop).await;
                continue;
            }
        };
        let want = u32::try_from(permits.len()).unwrap_or(u32::MAX);
        let messages = match client
            .receive(&ctx.queue, WORKERS_SUBSCRIPTION, want, POLL_WAIT)
            .await
        {
            Ok(m) => m,
            Err(e) if queue_not_created_yet(&e) => {
                // The queue appears with its first request.
                if !waiting_logged {
                    tracing::info!(queue = %ctx.queue, "waiting for the request queue to exist: {}", e.message());
                    waiting_logged = true;
                }
                pause(RETRY_PAUSE, &mut stop).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(
                    "receive failed, retrying: {}: {}",
                    e.code_name(),
                    e.message()
                );
                pause(RETRY_PAUSE, &mut stop).await;
                continue;
            }
        };
        if !messages.is_empty() && ctx.ack_timeout.lock().map_or(true, |t| t.is_none()) {
            learn_ack_timeout(&ctx, &client).await;
        }
        let stopping = *stop.borrow();
        for m in messages {
            let Some(permit) = permits.pop() else {
                // Cannot happen (the server leases at most `want`), but a
                // lease without a slot is given back rather than overrun.
                give_back(&ctx, &client, m).await;
                continue;
            };
            if stopping {
                give_back(&ctx, &client, m).await;
                continue;
            }
            tasks.spawn(handle(Arc::clone(&ctx), m, permit));
        }
    }
    while tasks.try_join_next().is_some() {}
    if !tasks.is_empty() {
        tracing::info!("waiting for {} running command(s)", tasks.len());
    }
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            tracing::error!("a request task failed: {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the `workers` subscription's ack timeout.
async fn learn_ack_timeout(ctx: &Ctx, client: &Client) {
    let Ok(subs) = client.list_subscriptions(Some(&ctx.queue)).await else {
        return;
    };
    let timeout = subs
        .iter()
        .find(|s| s.name == WORKERS_SUBSCRIPTION)
        .map(|s| Duration::from_millis(u64::from(s.ack_timeout_ms)));
    if let (Some(t), Ok(mut slot)) = (timeout, ctx.ack_timeout.lock()) {
        *slot = Some(t);
    }
}

/// How long a lease lasts: the subscription's ack timeout, or else what
/// is left of this lease.
fn lease_length(ctx: &Ctx, m: &LeasedMessage) -> Duration {
    if let Some(t) = ctx.ack_timeout.lock().ok().and_then(|t| *t) {
        return t;
    }
    let left = m.lease_deadline_ms.saturating_sub(now_ms());
    Duration::from_millis(u64::try_from(left).unwrap_or(0)).max(EXTEND_EVERY_MIN * 3)
}

/// The request ID of a message, if it carries one.
fn request_id(m: &LeasedMessage) -> Option<String> {
    m.headers
        .iter()
        .find(|(k, _)| k == REQUEST_ID_HEADER)
        .and_then(|(_, v)| v.as_deref())
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_owned)
}

/// A message leased while stopping: handed back at once so another worker
/// can take it (as a retry: the record stays consistent).
async fn give_back(ctx: &Ctx, client: &Client, m: LeasedMessage) {
    let result = match request_id(&m) {
        Some(id) => client
            .fail_request(&id, "the worker stopped before running it", true)
            .await
            .map(drop),
        None => ack_unknown(ctx, client, &m).await,
    };
    if let Err(e) = result {
        tracing::warn!("could not hand back a message leased while stopping: {e}");
    }
}

/// A message that is not a request: nothing can be done with it, and left
/// alone it would come back until dead-lettered.
async fn ack_unknown(ctx: &Ctx, client: &Client, m: &LeasedMessage) -> Result<(), ClientError> {
    tracing::warn!(
        queue = %ctx.queue,
        partition = m.partition,
        offset = m.offset,
        "message without a {REQUEST_ID_HEADER} header; acknowledging it without running the command"
    );
    let receipts = [m.receipt.clone()];
    client
        .ack(&ctx.queue, WORKERS_SUBSCRIPTION, &receipts)
        .await?
        .into_iter()
        .next()
        .unwrap_or(Ok(()))
}

/// The exit status with which a command says "failed, do not retry":
/// `EX_DATAERR` of `sysexits.h` (the input data was incorrect).
pub const EXIT_FAILED_NO_RETRY: i32 = 65;

/// How a command run ended.
enum Outcome {
    /// Exited 0 with this standard output (`None`: more than a result can
    /// hold).
    Done(Option<Vec<u8>>),
    /// Failed: the error to record, and whether to try again.
    Failed(String),
    /// Exited [`EXIT_FAILED_NO_RETRY`]: failed for good.
    FailedFinal(String),
}

async fn handle(ctx: Arc<Ctx>, m: LeasedMessage, _slot: OwnedSemaphorePermit) {
    let Some(id) = request_id(&m) else {
        let result = match ctx.conn.get().await {
            Ok(client) => ack_unknown(&ctx, &client, &m).await.map_err(Into::into),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!("could not acknowledge a message without a request ID: {e:#}");
        }
        return;
    };
    let outcome = run_extending(&ctx, &m, &id).await;
    let client = match ctx.conn.get().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(%id, "cannot record the outcome, the server is unreachable (the request will be retried): {e:#}");
            return;
        }
    };
    let recorded = match outcome {
        Outcome::Done(Some(stdout)) => {
            let result = result_value(&stdout);
            match client.complete_request(&id, &result).await {
                Ok(_) => {
                    tracing::info!(%id, "request succeeded");
                    Ok(())
                }
                Err(e) if e.code() == Some(ErrorCode::MessageTooLarge) => {
                    fail(
                        &client,
                        &id,
                        &format!("the result is too large: {}", e.message()),
                        false,
                    )
                    .await
                }
                Err(e) => Err(e),
            }
        }
        Outcome::Done(None) => {
            let why = format!(
                "the command's standard output exceeded {STDOUT_MAX} bytes, more than a result may hold"
            );
            fail(&client, &id, &why, false).await
        }
        Outcome::Failed(error) => fail(&client, &id, &error, true).await,
        Outcome::FailedFinal(error) => fail(&client, &id, &error, false).await,
    };
    if let Err(e) = recorded {
        tracing::warn!(%id, "could not record the request's outcome: {}: {}", e.code_name(), e.message());
    }
}

async fn fail(client: &Client, id: &str, error: &str, retry: bool) -> Result<(), ClientError> {
    let record = client.fail_request(id, error, retry).await?;
    let status = record.get("status").and_then(Value::as_str).unwrap_or("?");
    tracing::info!(%id, status, "request failed: {}", error.trim_end());
    Ok(())
}

/// The result for a successful command's standard output.
fn result_value(stdout: &[u8]) -> Value {
    match std::str::from_utf8(stdout) {
        Ok(text) => {
            serde_json::from_str(text.trim()).unwrap_or_else(|_| Value::String(text.to_owned()))
        }
        Err(_) => Value::String(String::from_utf8_lossy(stdout).into_owned()),
    }
}

/// Runs the command for one request, extending the lease while it runs.
async fn run_extending(ctx: &Ctx, m: &LeasedMessage, id: &str) -> Outcome {
    let lease = lease_length(ctx, m);
    let every = (lease / 3).max(EXTEND_EVERY_MIN);
    let run = run_command(ctx, m, id);
    tokio::pin!(run);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lease_lost = false;
    loop {
        tokio::select! {
            outcome = &mut run => return outcome,
            _ = ticker.tick(), if !lease_lost => {
                match extend(ctx, &m.receipt, lease).await {
                    Ok(()) => {}
                    Err(e) if is_connection_error(&e) => {
                        tracing::warn!(%id, "could not extend the lease (will try again): {e}");
                    }
                    Err(e) => {
                        // Another worker may get the request; this run's
                        // outcome will probably be refused.
                        tracing::warn!(%id, "the lease could not be extended: {}: {}", e.code_name(), e.message());
                        lease_lost = true;
                    }
                }
            }
        }
    }
}

async fn extend(ctx: &Ctx, receipt: &str, by: Duration) -> Result<(), ClientError> {
    let client = ctx
        .conn
        .get()
        .await
        .map_err(|e| ClientError::Disconnected(format!("{e:#}")))?;
    let receipts = [receipt.to_owned()];
    client
        .extend(&ctx.queue, WORKERS_SUBSCRIPTION, &receipts, by)
        .await?
        .into_iter()
        .next()
        .unwrap_or(Ok(()))
}

async fn run_command(ctx: &Ctx, m: &LeasedMessage, id: &str) -> Outcome {
    let Some((program, args)) = ctx.command.split_first() else {
        return Outcome::Failed("no command to run".to_owned());
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env("SPOOL_REQUEST_ID", id)
        .env("SPOOL_REQUEST_QUEUE", &ctx.queue)
        .env("SPOOL_REQUEST_ATTEMPT", m.deliveries.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: a terminal's Ctrl-C stops the worker
        // taking work, and must not kill the commands it lets finish.
        .process_group(0);
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("cannot run {program:?}: {e}")),
    };
    let payload = m.value.clone().unwrap_or_default();
    let stdin = child.stdin.take();
    let feed = async move {
        if let Some(mut stdin) = stdin {
            // A command that does not read its input closes the pipe
            // early; that is its business, not an error.
            let _ = stdin.write_all(&payload).await;
            let _ = stdin.shutdown().await;
        }
    };
    let stdout = read_capped(child.stdout.take(), STDOUT_MAX);
    let stderr = read_tail(child.stderr.take(), STDERR_KEEP);
    let (_, stdout, stderr, status) = tokio::join!(feed, stdout, stderr, child.wait());
    let status = match status {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(format!("waiting for {program:?} failed: {e}")),
    };
    if status.success() {
        return Outcome::Done(stdout);
    }
    let error = if stderr.is_empty() {
        format!("{program} ended with {status} and no error output")
    } else {
        String::from_utf8_lossy(&stderr).into_owned()
    };
    if status.code() == Some(EXIT_FAILED_NO_RETRY) {
        Outcome::FailedFinal(error)
    } else {
        Outcome::Failed(error)
    }
}

/// Everything `r` yields up to `max` bytes; `None` if there was more. Reads
/// to the end either way, so the command never blocks on a full pipe.
async fn read_capped(r: Option<impl AsyncRead + Unpin>, max: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let Some(mut r) = r else {
        return Some(out);
    };
    let mut over = false;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if out.len() + n > max {
                    over = true;
                } else if !over {
                    out.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }
    (!over).then_some(out)
}

/// The last `keep` bytes `r` yields (all of it, if less), marked when cut.
async fn read_tail(r: Option<impl AsyncRead + Unpin>, keep: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(mut r) = r else {
        return out;
    };
    let mut cut = 0usize;
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&chunk[..n]);
                // Trim in steps, not per read, to keep copying linear.
                if out.len() > 2 * keep {
                    let drop = out.len() - keep;
                    cut += drop;
                    out.drain(..drop);
                }
            }
        }
    }
    if out.len() > keep {
        let drop = out.len() - keep;
        cut += drop;
        out.drain(..drop);
    }
    if cut > 0 {
        let mut marked = format!("[{cut} earlier bytes of error output cut]\n").into_bytes();
        marked.extend_from_slice(&out);
        out = marked;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_json_when_the_output_is() {
        assert_eq!(result_value(b" {\"a\": 1}\n"), serde_json::json!({"a": 1}));
        assert_eq!(result_value(b"42\n"), serde_json::json!(42));
        assert_eq!(
            result_value(b"raw bytes\n"),
            Value::String("raw bytes\n".into())
        );
        assert_eq!(result_value(b""), Value::String(String::new()));
        assert_eq!(
            result_value(&[b'a', 0xff]),
            Value::String("a\u{fffd}".into())
        );
    }

    #[tokio::test]
    async fn capped_reads_drain_and_report_overflow() {
        let data = vec![7u8; 100];
        assert_eq!(read_capped(Some(&data[..]), 100).await, Some(data.clone()));
        assert_eq!(read_capped(Some(&data[..]), 99).await, None);
        assert_eq!(read_capped(None::<&[u8]>, 1).await, Some(Vec::new()));
    }

    #[tokio::test]
    async fn tails_keep_the_end() {
        let data: Vec<u8> = (0..100u8).collect();
        assert_eq!(read_tail(Some(&data[..]), 200).await, data);
        let tail = read_tail(Some(&data[..]), 10).await;
        let text = String::from_utf8_lossy(&tail);
        assert!(
            text.starts_with("[90 earlier bytes of error output cut]\n"),
            "{text}"
        );
        assert!(tail.ends_with(&data[90..]));
    }
}
