//! The plain pattern (issue 22): what most applications do, through each
//! system's standard client with its default options, beside the tuned
//! workloads of the system modules one level up (batches of 1,000,
//! pipelines, 16,000 messages in flight, a reader that never commits).
//!
//! - `plain-publish`: one producer, one call per message, each with its
//!   own acknowledgement, at most `plain_window` (1,000) unacknowledged;
//! - `plain-consume`: a group consumer that commits (acknowledges) after
//!   every poll, reading what `plain-publish` stored;
//! - `plain-end-to-end`: plain publish from a paced thread at each of
//!   `plain_rates`, received by the plain group consumer.
//!
//! One module per system; `report.rs` prints the plain table and checks
//! its targets.

pub mod jetstream;
pub mod rabbitmq;
pub mod redis_streams;
pub mod report;
pub mod spool;

use crate::common::{self, Acks, Hiccups};
use crate::{emit, settle, Ctx, System};

/// Calls the same function of the system's plain module.
macro_rules! plain_on {
    ($ctx:expr, $f:ident ( $($arg:expr),* )) => {
        match $ctx.system {
            System::Spool => spool::$f($ctx, $($arg),*).await,
            System::Redis => redis_streams::$f($ctx, $($arg),*).await,
            System::Nats => jetstream::$f($ctx, $($arg),*).await,
            System::RabbitMq => rabbitmq::$f($ctx, $($arg),*).await,
        }
    };
}

/// The window of per-message acknowledgements. `Acks` holds one more than
/// its channel's capacity (the one its task is awaiting), hence the − 1.
pub fn window(ctx: &Ctx) -> Acks {
    Acks::new(ctx.plan.plain_window.saturating_sub(1))
}

/// The plain workloads that `wanted` names; `sizes` (if any) keeps only
/// those payload sizes of publish and consume. Consume reads what publish
/// stored, so it runs only with it.
pub async fn run(ctx: &Ctx, wanted: &dyn Fn(&str) -> bool, sizes: &[usize]) {
    let system = ctx.system.name();
    for (size, count) in ctx.plan.plain_streams {
        if !wanted("plain-publish") || !(sizes.is_empty() || sizes.contains(&size)) {
            continue;
        }
        let name = format!("plain-{size}");
        settle();
        common::note(&format!("{system} plain publish {count} × {size} B"));
        let published = plain_on!(ctx, publish(&name, size, count));
        let n = published.as_ref().map(|r| r.messages).unwrap_or(0);
        emit(ctx, "plain-publish", published.map(|r| r.json()));
        if n > 0 && wanted("plain-consume") {
            settle();
            common::note(&format!("{system} plain consume {n} × {size} B"));
            let consumed = plain_on!(ctx, consume(&name, size, n));
            emit(ctx, "plain-consume", consumed.map(|r| r.json()));
        }
    }
    if wanted("plain-end-to-end") {
        for rate in ctx.plan.plain_rates {
            settle();
            common::note(&format!("{system} plain end-to-end at {rate}/s"));
            let latency = Hiccups::around(async { plain_on!(ctx, end_to_end(rate)) }).await;
            emit(ctx, "plain-end-to-end", latency);
        }
    }
}
