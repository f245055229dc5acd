//! `spool produce TOPIC [--key K] [--partition P] [--message-id ID]
//! [--delay-ms N | --deliver-at-ms T]`: one message per line of standard
//! input, batched and pipelined by the client's `Producer`.
//!
//! `--message-id` sets the `spool-msg-id` header (duplicate suppression) and
//! needs exactly one input line: otherwise nothing is sent and the error is
//! `INVALID_REQUEST`. `--delay-ms` / `--deliver-at-ms` set every line's
//! `spool-deliver-at` header (a delay counts from each line's sending).
//!
//! Exit 0 only when every line was acknowledged. On the first failure no
//! new line is sent; messages already handed to the producer are awaited,
//! the error is printed as `error: CODE: message` on stderr, and the exit
//! status is 1. The last line on stdout is always `acknowledged: N`, and
//! `acknowledged: N (M duplicates)` when (with `--message-id`) the message
//! was a suppressed duplicate: stored before within the topic's dedup
//! window, so nothing new was stored.

use crate::cli::ProduceArgs;
use crate::{connect, Failure};
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use spool_client::{ClientError, Delivered, Message, Producer, ProducerOptions};
use spool_types::limits::RECORD_BYTES_MAX;
use std::io::Write;
use std::process::ExitCode;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

/// A line read from the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// Without its `\n` or `\r\n`.
    Data(Vec<u8>),
    /// Longer than the limit; the rest of it was not read.
    TooLong,
}

/// Reads lines with a length cap, so one endless line cannot exhaust
/// memory. Cancel-safe: a partly read line is kept across calls.
pub struct LineReader<R> {
    inner: R,
    line: Vec<u8>,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub fn new(inner: R) -> LineReader<R> {
        LineReader {
            inner,
            line: Vec::new(),
        }
    }

    /// The next line (a last line without a newline counts), or `None` at
    /// the end of the input.
    pub async fn next_line(&mut self, max: usize) -> std::io::Result<Option<Line>> {
        loop {
            let buf = self.inner.fill_buf().await?;
            if buf.is_empty() {
                if self.line.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(self.finish(max)));
            }
            match buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.line.extend_from_slice(&buf[..i]);
                    self.inner.consume(i + 1);
                    return Ok(Some(self.finish(max)));
                }
                None => {
                    let n = buf.len();
                    self.line.extend_from_slice(buf);
                    self.inner.consume(n);
                    // +1: a trailing '\r' is not part of the message.
                    if self.line.len() > max + 1 {
                        self.line.clear();
                        return Ok(Some(Line::TooLong));
                    }
                }
            }
        }
    }

    fn finish(&mut self, max: usize) -> Line {
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.len() > max {
            Line::TooLong
        } else {
            Line::Data(line)
        }
    }
}

pub async fn run(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let client = connect(&args.conn.addr).await?;
    // With a message ID: where each partition ends before the send. An
    // answer below that end names an original: the message was a
    // suppressed duplicate (the Produce answer itself does not say so).
    let ends_before = match &args.message_id {
        Some(_) => client.describe_topic(&args.topic).await.ok().map(|d| {
            d.partitions
                .iter()
                .map(|p| p.end_offset)
                .collect::<Vec<u64>>()
        }),
        None => None,
    };
    let producer = Producer::new(client, ProducerOptions::default());
    let stdin = BufReader::with_capacity(256 * 1024, tokio::io::stdin());
    let mut outcome = produce_lines(&producer, &args, stdin).await;
    if let Some(ends) = ends_before {
        outcome.count_duplicates(&ends);
    }
    let mut stdout = std::io::stdout().lock();
    if let Some(f) = &outcome.failure {
        eprintln!("error: {f}");
    }
    // Always the last line, success or not.
    let _ = match outcome.duplicates {
        0 => writeln!(stdout, "acknowledged: {}", outcome.acknowledged),
        n => writeln!(
            stdout,
            "acknowledged: {} ({n} duplicate{})",
            outcome.acknowledged,
            if n == 1 { "" } else { "s" }
        ),
    };
    let _ = stdout.flush();
    Ok(if outcome.failure.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// How a run went.
pub struct Outcome {
    pub acknowledged: u64,
    /// Where the acknowledged messages are.
    pub delivered: Vec<Delivered>,
    /// How many of them were suppressed duplicates (see
    /// [`Outcome::count_duplicates`]).
    pub duplicates: u64,
    pub failure: Option<Failure>,
}

impl Outcome {
    fn failed(failure: Failure) -> Outcome {
        Outcome {
            acknowledged: 0,
            delivered: Vec::new(),
            duplicates: 0,
            failure: Some(failure),
        }
    }

    /// Counts the messages acknowledged below `ends_before` (each
    /// partition's end offset before they were sent): a new message lands
    /// at or after that end, so one below it is an original's place, a
    /// suppressed duplicate.
    fn count_duplicates(&mut self, ends_before: &[u64]) {
        self.duplicates = self
            .delivered
            .iter()
            .filter(|d| {
                ends_before
                    .get(d.partition as usize)
                    .is_some_and(|end| d.offset < *end)
            })
            .count() as u64;
    }
}

/// Sends every line of `input` as a message; stops sending at the first
/// failure and waits for what is in flight.
pub async fn produce_lines<R: AsyncBufRead + Unpin>(
    producer: &Producer,
    args: &ProduceArgs,
    input: R,
) -> Outcome {
    let key = args
        .key
        .as_ref()
        .map(|k| Bytes::from(k.clone().into_bytes()));
    let mut lines = LineReader::new(input);
    if args.delay_ms.is_some() && args.deliver_at_ms.is_some() {
        return Outcome::failed(Failure::new(
            "INVALID_REQUEST",
            "give --delay-ms or --deliver-at-ms, not both",
        ));
    }
    // One message ID names one message: with more lines, or none, nothing
    // is sent.
    let mut only_line = None;
    if args.message_id.is_some() {
        match single_line(&mut lines).await {
            Ok(line) => only_line = Some(line),
            Err(failure) => return Outcome::failed(failure),
        }
    }
    let message_for = |value: Vec<u8>| Message {
        key: key.clone(),
        value: Bytes::from(value),
        headers: Vec::new(),
        partition: args.partition,
        message_id: args.message_id.clone(),
        deliver_at_ms: args.deliver_at_ms.or_else(|| {
            // Each line's own send time, so every line waits the delay.
            args.delay_ms
                .map(|d| now_ms().saturating_add(i64::try_from(d).unwrap_or(i64::MAX)))
        }),
    };
    let mut pending = FuturesUnordered::new();
    let mut delivered = Vec::new();
    let mut failure: Option<Failure> = None;
    let mut line_number = 0u64;
    let mut note = |result: Result<_, ClientError>, failure: &mut Option<Failure>| match result {
        Ok(d) => delivered.push(d),
        Err(e) => {
            failure.get_or_insert_with(|| Failure::from(e));
        }
    };
    while failure.is_none() {
        tokio::select! {
            biased;
            Some(result) = pending.next(), if !pending.is_empty() => note(result, &mut failure),
            line = next_line(&mut lines, &mut only_line, args.message_id.is_some()) => {
                line_number += 1;
                match line {
                    Ok(None) => break,
                    Ok(Some(Line::TooLong)) => {
                        failure = Some(Failure::new(
                            "MESSAGE_TOO_LARGE",
                            format!("line {line_number} is longer than the {RECORD_BYTES_MAX}-byte message limit"),
                        ));
                    }
                    Ok(Some(Line::Data(value))) => {
                        match producer.send(&args.topic, message_for(value)).await {
                            Ok(delivery) => pending.push(delivery),
                            Err(e) => failure = Some(Failure::from(e)),
                        }
                    }
                    Err(e) => {
                        failure = Some(Failure::new("IO_ERROR", format!("reading standard input failed: {e}")));
                    }
                }
            }
        }
    }
    while let Some(result) = pending.next().await {
        note(result, &mut failure);
    }
    Outcome {
        acknowledged: delivered.len() as u64,
        delivered,
        duplicates: 0,
        failure,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The next line to send: from the input, or (with a message ID) the one
/// line already read, once.
async fn next_line<R: AsyncBufRead + Unpin>(
    lines: &mut LineReader<R>,
    only_line: &mut Option<Line>,
    single: bool,
) -> std::io::Result<Option<Line>> {
    if single {
        return Ok(only_line.take());
    }
    lines.next_line(RECORD_BYTES_MAX).await
}

/// Reads the whole input, which must be exactly one line.
async fn single_line<R: AsyncBufRead + Unpin>(lines: &mut LineReader<R>) -> Result<Line, Failure> {
    let io =
        |e: std::io::Error| Failure::new("IO_ERROR", format!("reading standard input failed: {e}"));
    let wrong = |n: &str| {
        Failure::new(
            "INVALID_REQUEST",
            format!(
                "--message-id names one message, so the input must be exactly one line, not {n}"
            ),
        )
    };
    let first = match lines.next_line(RECORD_BYTES_MAX).await.map_err(io)? {
        None => return Err(wrong("none")),
        // Refused as too large when sent; the rest of it was not read, so
        // looking for a second line would misreport it.
        Some(Line::TooLong) => return Ok(Line::TooLong),
        Some(line) => line,
    };
    match lines.next_line(RECORD_BYTES_MAX).await.map_err(io)? {
        None => Ok(first),
        Some(_) => Err(wrong("several")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<Line> {
        let mut r = LineReader::new(BufReader::with_capacity(4, input));
        let mut out = Vec::new();
        while let Some(line) = r.next_line(max).await.expect("read") {
            let stop = line == Line::TooLong;
            out.push(line);
            if stop {
                break;
            }
        }
        out
    }

    #[tokio::test]
    async fn lines_lose_their_terminators() {
        let got = lines(b"a\r\nbb\n\nlast", 10).await;
        assert_eq!(
            got,
            [
                Line::Data(b"a".to_vec()),
                Line::Data(b"bb".to_vec()),
                Line::Data(Vec::new()),
                Line::Data(b"last".to_vec()),
            ]
        );
        assert!(lines(b"", 10).await.is_empty());
        assert_eq!(lines(b"x\n", 10).await, [Line::Data(b"x".to_vec())]);
    }

    #[tokio::test]
    async fn long_lines_are_refused_without_reading_them_whole() {
        let got = lines(b"ok\n0123456789abcdef\nmore\n", 10).await;
        assert_eq!(got, [Line::Data(b"ok".to_vec()), Line::TooLong]);
        // Exactly at the limit is fine, also with a \r\n ending.
        assert_eq!(
            lines(b"0123456789\r\n", 10).await,
            [Line::Data(b"0123456789".to_vec())]
        );
    }
}
