//! `spool request submit|status|wait`: asynchronous requests.
//!
//! - `submit QUEUE [--callback URL]` sends standard input, every byte as
//!   given (no line splitting), and prints the request ID.
//! - `status ID` prints the record as one line of JSON.
//! - `wait ID [--timeout-ms N]` prints the record once it is final; exit 0
//!   only if it succeeded. A failed request also gets
//!   `error: REQUEST_FAILED: …` on stderr; a timeout prints the current
//!   record and `error: TIMEOUT: …`. Both exit 1.

use crate::cli::{RequestArgs, RequestCommand};
use crate::{connect, Failure};
use serde_json::Value;
use spool_client::RequestStatus;
use spool_types::limits::RECORD_BYTES_MAX;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

/// Longest single GetRequest wait; a longer `wait` asks again, so a wait
/// with no timeout can last as long as the request does.
const WAIT_SLICE: Duration = Duration::from_secs(30);

fn print_record(record: &Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{record}")?;
    out.flush()?;
    Ok(())
}

/// All of standard input, refusing (without reading it all) more than a
/// message may hold.
async fn read_payload() -> anyhow::Result<Vec<u8>> {
    let mut payload = Vec::new();
    let limit = RECORD_BYTES_MAX as u64 + 1;
    tokio::io::stdin()
        .take(limit)
        .read_to_end(&mut payload)
        .await
        .map_err(|e| Failure::new("IO_ERROR", format!("reading standard input failed: {e}")))?;
    if payload.len() > RECORD_BYTES_MAX {
        return Err(Failure::new(
            "MESSAGE_TOO_LARGE",
            format!("the payload is larger than the {RECORD_BYTES_MAX}-byte message limit"),
        )
        .into());
    }
    Ok(payload)
}

pub async fn run(args: RequestArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        RequestCommand::Submit { queue, callback } => {
            let payload = read_payload().await?;
            let client = connect(&args.conn.addr).await?;
            let id = client
                .submit_request(&queue, payload, false, callback.as_deref())
                .await?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{id}")?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        RequestCommand::Status { id } => {
            let client = connect(&args.conn.addr).await?;
            print_record(&client.get_request(&id, Duration::ZERO).await?)?;
            Ok(ExitCode::SUCCESS)
        }
        RequestCommand::Wait { id, timeout_ms } => {
            let client = connect(&args.conn.addr).await?;
            let deadline = timeout_ms.map(|ms| Instant::now() + Duration::from_millis(ms));
            loop {
                let slice = match deadline {
                    Some(d) => d.saturating_duration_since(Instant::now()).min(WAIT_SLICE),
                    None => WAIT_SLICE,
                };
                let record = client.get_request(&id, slice).await?;
                let status = RequestStatus::of(&record);
                if status.is_some_and(RequestStatus::is_final) {
                    if status == Some(RequestStatus::Succeeded) {
                        print_record(&record)?;
                        return Ok(ExitCode::SUCCESS);
                    }
                    let error = text(&record, "error", "no error given");
                    let message = format!("request {id} failed: {error}");
                    return failed(&record, Failure::new("REQUEST_FAILED", message));
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    let now = text(&record, "status", "unknown");
                    let message = format!(
                        "request {id} did not finish within {} ms (it is {now})",
                        timeout_ms.unwrap_or(0)
                    );
                    return failed(&record, Failure::new("TIMEOUT", message));
                }
            }
        }
    }
}

/// A text field of a request record, or `missing` where it has none.
fn text<'a>(record: &'a Value, key: &str, missing: &'a str) -> &'a str {
    record.get(key).and_then(Value::as_str).unwrap_or(missing)
}

/// Prints the request's record, then why waiting for it failed.
fn failed(record: &Value, failure: Failure) -> anyhow::Result<ExitCode> {
    print_record(record)?;
    eprintln!("error: {failure}");
    Ok(ExitCode::FAILURE)
}
