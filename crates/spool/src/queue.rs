//! Work-queue commands: `spool subscription create|list|delete`,
//! `spool receive`, `spool ack|nack|extend`, `spool dlq redrive` and
//! `spool errors tail`.
//!
//! Settling commands (`ack`, `nack`, `extend`, and `receive --ack`) settle
//! every receipt on its own: each refused receipt is reported on stderr as
//! `error: CODE: message` (`LEASE_EXPIRED`, `UNKNOWN_RECEIPT`, …) and makes
//! the exit status 1; the others still count. Stdout ends with a count line
//! (`acknowledged: N`, `nacked: N`, `extended: N`).

use crate::cli::{
    AckArgs, AlterSubscriptionArgs, ConsumeArgs, DlqArgs, DlqCommand, ErrorsArgs, ErrorsCommand,
    ExtendArgs, From as StartFrom, KindArg, NackArgs, ReceiveArgs, SubscriptionArgs,
    SubscriptionCommand, TailFrom,
};
use crate::{connect, Failure};
use base64::Engine;
use serde_json::{json, Map, Value};
use spool_client::{
    Backoff, Client, ClientError, DeliveryMode, LeasedMessage, QueueSubscribeOptions,
    QueueSubscriber, SettingChange, SubscriptionChanges, SubscriptionInfo, SubscriptionKind,
    SubscriptionOptions,
};
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest wait for a pushed message, so an interrupt is noticed promptly.
const PUSH_SLICE: Duration = Duration::from_millis(250);

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The system topic side-channel events go to.
pub const ERRORS_TOPIC: &str = "spool.errors";

fn write_stdout(data: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(data)?;
    out.flush()?;
    Ok(())
}

pub async fn subscription(args: SubscriptionArgs) -> anyhow::Result<ExitCode> {
    let client = connect(&args.conn.addr).await?;
    let out = match args.command {
        SubscriptionCommand::Create {
            topic,
            name,
            kind,
            ack_timeout_ms,
            max_deliveries,
            dead_letter,
            ordering_key,
            at_most_once,
            backoff_ms,
            backoff_max_ms,
            push_endpoint,
            max_in_flight,
        } => {
            let backoff = match (backoff_ms, backoff_max_ms) {
                (None, _) => Backoff::Fixed { delay_ms: 0 },
                (Some(delay_ms), None) => Backoff::Fixed { delay_ms },
                (Some(initial_ms), Some(max_ms)) => Backoff::Exponential { initial_ms, max_ms },
            };
            let options = SubscriptionOptions {
                kind: match kind {
                    KindArg::Queue => SubscriptionKind::Queue,
                    KindArg::Stream => SubscriptionKind::Stream,
                },
                ack_timeout_ms: ack_timeout_ms.unwrap_or(0),
                max_deliveries,
                dead_letter_topic: dead_letter,
                backoff,
                at_most_once,
                ordered: ordering_key,
                push_endpoint,
                max_in_flight: max_in_flight.unwrap_or(0),
            };
            client.create_subscription(&topic, &name, options).await?;
            let kind = match kind {
                KindArg::Queue => "queue",
                KindArg::Stream => "stream",
            };
            format!("created {kind} subscription {name} on {topic}\n")
        }
        SubscriptionCommand::Alter(args) => alter(&client, args).await?,
        SubscriptionCommand::List { topic, json } => {
            let subs = client.list_subscriptions(Some(&topic)).await?;
            let mut out = String::new();
            for s in &subs {
                if json {
                    out.push_str(&subscription_json(s).to_string());
                } else {
                    out.push_str(&subscription_line(s));
                }
                out.push('\n');
            }
            out
        }
        SubscriptionCommand::Delete { topic, name } => {
            client.delete_subscription(&topic, &name).await?;
            format!("deleted subscription {name} on {topic}\n")
        }
    };
    write_stdout(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// `spool subscription alter`: changes what the flags name, then prints
/// the subscription as `list` does.
async fn alter(client: &Client, args: AlterSubscriptionArgs) -> anyhow::Result<String> {
    let changes = alter_changes(&args);
    if changes == SubscriptionChanges::default() {
        return Err(Failure::new(
            "INVALID_REQUEST",
            "nothing to change: give at least one setting (see --help)",
        )
        .into());
    }
    client
        .alter_subscription(&args.topic, &args.name, changes)
        .await?;
    let mut out = format!("altered subscription {} on {}\n", args.name, args.topic);
    let subs = client.list_subscriptions(Some(&args.topic)).await?;
    if let Some(s) = subs.iter().find(|s| s.name == args.name) {
        out.push_str(&subscription_line(s));
        out.push('\n');
    }
    Ok(out)
}

fn alter_changes(args: &AlterSubscriptionArgs) -> SubscriptionChanges {
    let setting = |set: &Option<String>, remove: bool| match (set, remove) {
        (Some(value), _) => SettingChange::Set(value.clone()),
        (None, true) => SettingChange::Removed,
        (None, false) => SettingChange::Unchanged,
    };
    SubscriptionChanges {
        ack_timeout_ms: args.ack_timeout_ms,
        max_deliveries: args.max_deliveries,
        dead_letter_topic: setting(&args.dead_letter, args.no_dead_letter),
        backoff: args.backoff_ms.map(|delay_ms| match args.backoff_max_ms {
            None => Backoff::Fixed { delay_ms },
            Some(max_ms) => Backoff::Exponential {
                initial_ms: delay_ms,
                max_ms,
            },
        }),
        push_endpoint: setting(&args.push_endpoint, args.no_push_endpoint),
        max_in_flight: args.max_in_flight,
    }
}

fn backoff_text(b: &Backoff) -> String {
    match b {
        Backoff::Fixed { delay_ms } => format!("fixed:{delay_ms}"),
        Backoff::Exponential { initial_ms, max_ms } => format!("exponential:{initial_ms}-{max_ms}"),
    }
}

fn mode_text(m: DeliveryMode) -> &'static str {
    match m {
        DeliveryMode::AtLeastOnce => "at_least_once",
        DeliveryMode::AtMostOnce => "at_most_once",
    }
}

/// `name` then `key=value` fields, tab-separated. A server of protocol
/// version 1 does not say what the push settings are: `?`.
fn subscription_line(s: &SubscriptionInfo) -> String {
    let (endpoint, in_flight) = match &s.push {
        Some(push) => (
            push.endpoint.clone().unwrap_or_else(|| "-".to_owned()),
            push.max_in_flight.to_string(),
        ),
        None => ("?".to_owned(), "?".to_owned()),
    };
    format!(
        "{}\tack_timeout_ms={}\tmax_deliveries={}\tdead_letter={}\tbackoff={}\tmode={}\tordered={}\tpush_endpoint={}\tmax_in_flight={}\tleased={}\toutstanding={}\tlag={}\tredeliveries={}\tdead_letters={}",
        s.name,
        s.ack_timeout_ms,
        s.max_deliveries,
        s.dead_letter_topic.as_deref().unwrap_or("-"),
        backoff_text(&s.backoff),
        mode_text(s.mode),
        s.ordered,
        endpoint,
        in_flight,
        s.leased,
        s.outstanding,
        s.lag,
        s.redeliveries,
        s.dead_letters,
    )
}

fn subscription_json(s: &SubscriptionInfo) -> Value {
    json!({
        "topic": s.topic,
        "name": s.name,
        "kind": "queue",
        "ack_timeout_ms": s.ack_timeout_ms,
        "max_deliveries": s.max_deliveries,
        "dead_letter_topic": s.dead_letter_topic,
        "backoff": backoff_text(&s.backoff),
        "mode": mode_text(s.mode),
        "ordered": s.ordered,
        "push_endpoint": s.push.as_ref().and_then(|p| p.endpoint.clone()),
        "max_in_flight": s.push.as_ref().map(|p| p.max_in_flight),
        "leased": s.leased,
        "outstanding": s.outstanding,
        "lag": s.lag,
        "redeliveries": s.redeliveries,
        "dead_letters": s.dead_letters,
    })
}

/// `bytes` as JSON: a string when they are UTF-8, else null and (second)
/// their base64; absent bytes are null.
fn bytes_json(bytes: Option<&[u8]>) -> (Value, Option<Value>) {
    match bytes.map(std::str::from_utf8) {
        None => (Value::Null, None),
        Some(Ok(text)) => (Value::String(text.to_owned()), None),
        Some(Err(_)) => {
            let encoded = B64.encode(bytes.unwrap_or_default());
            (Value::Null, Some(Value::String(encoded)))
        }
    }
}

/// Puts `bytes` in `obj` as `name` (a string) when it is UTF-8, else as
/// `name_base64` with `name` null; absent bytes are `name: null`.
fn put_bytes(obj: &mut Map<String, Value>, name: &str, bytes: Option<&[u8]>) {
    let (text, base64) = bytes_json(bytes);
    obj.insert(name.to_owned(), text);
    if let Some(encoded) = base64 {
        obj.insert(format!("{name}_base64"), encoded);
    }
}

/// A leased message as `spool receive --json` prints it.
pub fn message_json(m: &LeasedMessage) -> Value {
    let mut obj = Map::new();
    obj.insert("receipt".into(), json!(m.receipt));
    obj.insert("partition".into(), json!(m.partition));
    obj.insert("offset".into(), json!(m.offset));
    obj.insert("deliveries".into(), json!(m.deliveries));
    obj.insert("timestamp_ms".into(), json!(m.timestamp_ms));
    obj.insert("lease_deadline_ms".into(), json!(m.lease_deadline_ms));
    put_bytes(&mut obj, "key", m.key.as_deref());
    put_bytes(&mut obj, "value", m.value.as_deref());
    let mut headers = Map::new();
    let mut binary = Map::new();
    for (k, v) in &m.headers {
        let (text, base64) = bytes_json(v.as_deref());
        headers.insert(k.clone(), text);
        if let Some(encoded) = base64 {
            binary.insert(k.clone(), encoded);
        }
    }
    obj.insert("headers".into(), Value::Object(headers));
    if !binary.is_empty() {
        obj.insert("headers_base64".into(), Value::Object(binary));
    }
    Value::Object(obj)
}

/// Prints each refused receipt as `error: CODE: message`; returns how many
/// were settled.
fn report_receipts(results: &[Result<(), ClientError>]) -> usize {
    let mut settled = 0;
    for r in results {
        match r {
            Ok(()) => settled += 1,
            Err(e) => eprintln!("error: {}", Failure::from(e.clone())),
        }
    }
    settled
}

fn settled_exit(results: &[Result<(), ClientError>]) -> ExitCode {
    if results.iter().all(Result::is_ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Reports the refused receipts, prints `{done}: N` for the settled ones,
/// and fails if any was refused.
fn settled(results: &[Result<(), ClientError>], done: &str) -> anyhow::Result<ExitCode> {
    let n = report_receipts(results);
    write_stdout(format!("{done}: {n}\n").as_bytes())?;
    Ok(settled_exit(results))
}

/// A waiting time, delay or lease extension given in milliseconds.
fn millis(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms))
}

fn message_line(m: &LeasedMessage, json: bool) -> Vec<u8> {
    let mut data = Vec::new();
    if json {
        data.extend_from_slice(message_json(m).to_string().as_bytes());
    } else if let Some(v) = &m.value {
        data.extend_from_slice(v);
    }
    data.push(b'\n');
    data
}

pub async fn receive(args: ReceiveArgs) -> anyhow::Result<ExitCode> {
    let client = connect(&args.conn.addr).await?;
    if args.push {
        return receive_pushed(&client, &args).await;
    }
    let wait = millis(args.wait_ms);
    let messages = client
        .receive(&args.topic, &args.subscription, args.max, wait)
        .await?;
    let data: Vec<u8> = messages
        .iter()
        .flat_map(|m| message_line(m, args.json))
        .collect();
    write_stdout(&data)?;
    if !args.ack || messages.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    // Only after the output is written: what was acknowledged was printed.
    let receipts: Vec<String> = messages.into_iter().map(|m| m.receipt).collect();
    let results = client
        .ack(&args.topic, &args.subscription, &receipts)
        .await?;
    report_receipts(&results);
    Ok(settled_exit(&results))
}

/// `receive --push`: leased messages pushed to this connection
/// ([`QueueSubscriber`], credit `--max`), each printed as it comes and,
/// with `--ack`, acknowledged once printed. On stopping, messages leased
/// to it but not printed are released (their leases end now, so they are
/// redelivered at once, as a lapsed lease would be).
async fn receive_pushed(client: &Client, args: &ReceiveArgs) -> anyhow::Result<ExitCode> {
    let options = QueueSubscribeOptions {
        credit_messages: args.max.max(1),
        ..QueueSubscribeOptions::default()
    };
    let mut sub =
        QueueSubscriber::subscribe(client, &args.topic, &args.subscription, options).await?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            spool_server::shutdown_signal().await;
            stop.store(true, Ordering::SeqCst);
        });
    }
    let timeout = (args.wait_ms > 0).then(|| millis(args.wait_ms));
    let mut printed = 0u64;
    let mut refused = 0usize;
    let mut last_message = Instant::now();
    let mut failure = None;
    loop {
        if stop.load(Ordering::SeqCst) || args.count.is_some_and(|c| printed >= c) {
            break;
        }
        let mut wait = PUSH_SLICE;
        if let Some(t) = timeout {
            let left = t.saturating_sub(last_message.elapsed());
            if left.is_zero() {
                break;
            }
            wait = wait.min(left);
        }
        let m = match tokio::time::timeout(wait, sub.recv()).await {
            Err(_) => continue,
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                failure = Some(e);
                break;
            }
            Ok(Some(Ok(m))) => m,
        };
        last_message = Instant::now();
        write_stdout(&message_line(&m, args.json))?;
        printed += 1;
        if args.ack {
            // Only after the output is written: what was acknowledged was
            // printed.
            let results = client
                .ack(
                    &args.topic,
                    &args.subscription,
                    std::slice::from_ref(&m.receipt),
                )
                .await?;
            refused += results.len() - report_receipts(&results);
        }
    }
    let left = sub.unsubscribe().await;
    if let Ok(left) = &left {
        if !left.is_empty() {
            let receipts: Vec<String> = left.iter().map(|m| m.receipt.clone()).collect();
            // Best effort: a release that fails leaves the lease to lapse.
            if let Err(e) = client
                .extend(&args.topic, &args.subscription, &receipts, Duration::ZERO)
                .await
            {
                tracing::warn!("could not release {} unprinted leases: {e}", receipts.len());
            }
        }
    }
    if let Some(e) = failure {
        return Err(e.into());
    }
    left?;
    Ok(if refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn ack(args: AckArgs) -> anyhow::Result<ExitCode> {
    let client = connect(&args.conn.addr).await?;
    let results = client
        .ack(&args.topic, &args.subscription, &args.receipts)
        .await?;
    settled(&results, "acknowledged")
}

pub async fn nack(args: NackArgs) -> anyhow::Result<ExitCode> {
    let client = connect(&args.conn.addr).await?;
    let results = client
        .nack(
            &args.topic,
            &args.subscription,
            &args.receipts,
            millis(args.delay_ms),
            args.error.as_deref(),
        )
        .await?;
    settled(&results, "nacked")
}

pub async fn extend(args: ExtendArgs) -> anyhow::Result<ExitCode> {
    let client = connect(&args.conn.addr).await?;
    let by = millis(args.ms);
    let results = client
        .extend(&args.topic, &args.subscription, &args.receipts, by)
        .await?;
    settled(&results, "extended")
}

pub async fn dlq(args: DlqArgs) -> anyhow::Result<ExitCode> {
    let client = connect(&args.conn.addr).await?;
    match args.command {
        DlqCommand::Redrive {
            topic,
            subscription,
        } => {
            let moved = client.redrive(&topic, &subscription).await?;
            write_stdout(format!("redriven: {moved}\n").as_bytes())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `spool errors tail` is `spool consume spool.errors` (every event is one
/// JSON line already), starting at the end unless told otherwise.
pub async fn errors(args: ErrorsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ErrorsCommand::Tail {
            from,
            count,
            timeout_ms,
        } => {
            let consume = ConsumeArgs {
                conn: args.conn,
                topic: ERRORS_TOPIC.to_owned(),
                group: None,
                from: match from {
                    TailFrom::Earliest => StartFrom::Earliest,
                    TailFrom::Latest => StartFrom::Latest,
                },
                count,
                timeout_ms,
                session_timeout_ms: 10_000,
                push: false,
            };
            crate::consume::run(consume).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use spool_client::SubscriptionPush;

    #[test]
    fn messages_print_as_json_with_base64_for_binary() {
        let m = LeasedMessage {
            receipt: "0-7-1".into(),
            partition: 0,
            offset: 7,
            timestamp_ms: 1,
            deliveries: 2,
            lease_deadline_ms: 30_001,
            key: None,
            value: Some(Bytes::from_static(&[0xff, 0x00])),
            headers: vec![
                ("spool-request-id".into(), Some(Bytes::from_static(b"abc"))),
                ("bin".into(), Some(Bytes::from_static(&[0xc3]))),
                ("none".into(), None),
            ],
        };
        let v = message_json(&m);
        assert_eq!(v["receipt"], "0-7-1");
        assert_eq!(v["offset"], 7);
        assert_eq!(v["deliveries"], 2);
        assert_eq!(v["key"], Value::Null);
        assert!(v.get("key_base64").is_none());
        assert_eq!(v["value"], Value::Null);
        assert_eq!(v["value_base64"], "/wA=");
        assert_eq!(v["headers"]["spool-request-id"], "abc");
        assert_eq!(v["headers"]["none"], Value::Null);
        assert_eq!(v["headers_base64"]["bin"], "ww==");

        let text = LeasedMessage {
            value: Some(Bytes::from_static(b"hello")),
            key: Some(Bytes::from_static(b"k")),
            headers: vec![],
            ..m
        };
        let v = message_json(&text);
        assert_eq!(
            (v["key"].as_str(), v["value"].as_str()),
            (Some("k"), Some("hello"))
        );
        assert!(v.get("value_base64").is_none() && v.get("headers_base64").is_none());
    }

    #[test]
    fn subscription_lines_name_every_setting() {
        let s = SubscriptionInfo {
            topic: "jobs".into(),
            name: "w".into(),
            ack_timeout_ms: 1000,
            max_deliveries: 2,
            dead_letter_topic: Some("jobs.dlq".into()),
            backoff: Backoff::Exponential {
                initial_ms: 10,
                max_ms: 100,
            },
            mode: DeliveryMode::AtLeastOnce,
            ordered: true,
            leased: 1,
            outstanding: 3,
            lag: 7,
            redeliveries: 2,
            dead_letters: 1,
            push: Some(SubscriptionPush {
                endpoint: Some("http://127.0.0.1:9/in".into()),
                max_in_flight: 4,
            }),
        };
        assert_eq!(
            subscription_line(&s),
            "w\tack_timeout_ms=1000\tmax_deliveries=2\tdead_letter=jobs.dlq\tbackoff=exponential:10-100\tmode=at_least_once\tordered=true\tpush_endpoint=http://127.0.0.1:9/in\tmax_in_flight=4\tleased=1\toutstanding=3\tlag=7\tredeliveries=2\tdead_letters=1"
        );
        let json = subscription_json(&s);
        assert_eq!(json["dead_letter_topic"], "jobs.dlq");
        assert_eq!(json["push_endpoint"], "http://127.0.0.1:9/in");
        assert_eq!(json["max_in_flight"], 4);
        // From a version-1 server, which does not send them.
        let old = SubscriptionInfo { push: None, ..s };
        assert!(subscription_line(&old).contains("\tpush_endpoint=?\tmax_in_flight=?\t"));
    }
}
