//! The operations layer: every operation a client can ask for, once, for
//! every front end. The binary protocol (`connection`) and the HTTP API
//! (`http`) only decode a request, call one method here and encode its
//! answer; the Kafka front end and the console will do the same.
//!
//! Each method
//! - **authorises**: checks the [`Caller`]'s permissions for what it names;
//! - **validates** what the broker does not (callback URLs against the
//!   outbound allow-list, JSON payloads, stream subscription names);
//! - **decides where it runs**: page-cache work on the caller's task (a
//!   produce's write, an at-least-once receive), anything that may wait for
//!   a disk flush or a redb commit on a blocking thread, fdatasync waits on
//!   the broker's sync threads (answered through a channel);
//! - **owns its waits**: long polls wait on the [`Notifier`], which the
//!   broker signals itself (appends, settled leases, finished requests), and
//!   end early when the server shuts down. No wait polls a store.
//!
//! Arguments and answers are broker types (`spool_broker`), never wire or
//! JSON types: converting is the front ends' job.

mod fetch_remote;
mod groups;
mod requests;
mod streams;
mod subscriptions;
mod topics;

pub use requests::Submission;
pub use streams::{FetchPartition, Fetched, FetchedPartition, Published, StartedProduce};
pub use subscriptions::{
    wake_deadline, ReceiveRoom, Shape, SUBSCRIPTION_DUE_RECHECK_MS, SUBSCRIPTION_RECHECK_MS,
};
pub use topics::{SubscriptionKind, SubscriptionLoad};

use crate::auth::{self, Caller};
use crate::notify::Notifier;
use crate::outbound::AllowList;
use spool_broker::{Broker, BrokerError};
use spool_types::ErrorCode;
use std::sync::Arc;
use tokio::sync::watch;

/// Everything an operation needs: the broker, the wake-ups, who may do
/// what, and whether the server is shutting down. One per server (or
/// embedded broker), shared by all its front ends.
pub struct Ops {
    pub broker: Arc<Broker>,
    pub notifier: Arc<Notifier>,
    /// Becomes `true` when the server starts shutting down: long polls
    /// answer with what they have.
    shutdown: watch::Receiver<bool>,
    /// Keeps `shutdown` open for an [`Ops`] nobody stops (in-process HTTP),
    /// so waiting on it never returns.
    _never_stopped: Option<watch::Sender<bool>>,
    /// Names this server in handshakes.
    pub server_id: String,
    /// Hosts a callback URL or push endpoint may name (checked when it is
    /// given, so a refused URL is an error to the caller, not a delivery
    /// that fails later).
    pub allow: AllowList,
    /// Who may do what.
    pub auth: Arc<auth::Auth>,
    /// The cluster this server is a node of; `None`: single-node.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl Ops {
    /// The operations over `broker`, registering their notifier with it.
    pub fn new(
        broker: Arc<Broker>,
        shutdown: watch::Receiver<bool>,
        server_id: String,
        allow: AllowList,
        auth: Arc<auth::Auth>,
    ) -> Ops {
        let notifier = Arc::new(Notifier::default());
        broker.set_listener(notifier.clone());
        Ops {
            broker,
            notifier,
            shutdown,
            _never_stopped: None,
            server_id,
            allow,
            auth,
            cluster: None,
        }
    }

    /// Operations that are never shut down (the in-process HTTP router).
    pub fn unstopped(broker: Arc<Broker>, allow: AllowList, auth: Arc<auth::Auth>) -> Ops {
        let (tx, rx) = watch::channel(false);
        let mut ops = Ops::new(broker, rx, "in-process".to_owned(), allow, auth);
        ops._never_stopped = Some(tx);
        ops
    }

    /// Whether the server is shutting down.
    pub fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// A receiver of the shutdown flag, for waits of the front ends'
    /// own (push loops, reading a connection).
    pub fn shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// Runs `f` over the broker with the time now, on a blocking thread
    /// (for calls that may wait for a disk flush or a redb commit).
    async fn on_broker<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Broker, i64) -> Result<T, BrokerError> + Send + 'static,
    ) -> Result<T, BrokerError> {
        let broker = Arc::clone(&self.broker);
        blocking(move || f(&broker, crate::now_ms())).await
    }

    /// Resolves once the server starts shutting down (never, for an
    /// [`Ops::unstopped`]).
    pub async fn stopped(&self) {
        let mut rx = self.shutdown.clone();
        // An error means the sender is gone: no shutdown will be announced.
        if rx.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Waits for `woken` unless the server starts shutting down or the
    /// caller's token is revoked first: how every long poll waits. What
    /// `woken` answered, if it finished first.
    pub async fn wait_unless_ended<T>(
        &self,
        caller: &Caller,
        woken: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        tokio::select! {
            woke = woken => Some(woke),
            _ = self.stopped() => None,
            _ = caller.revoked() => None,
        }
    }
}

/// Runs a broker call that may wait for a disk flush or a redb commit on a
/// blocking thread, off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BrokerError> + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BrokerError::new(ErrorCode::Internal, e.to_string()))?
}

/// Waits for a broker operation that answers through a callback (a
/// `finish_*_then`): the fdatasync wait parks no thread, the broker's sync
/// threads answer through a channel. `what` names the operation in the
/// error should the callback be dropped unanswered.
pub(crate) async fn synced<T: Send + 'static>(
    what: &str,
    finish: impl FnOnce(Box<dyn FnOnce(Result<T, BrokerError>) + Send>),
) -> Result<T, BrokerError> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    finish(Box::new(move |r| {
        let _ = done_tx.send(r);
    }));
    done_rx.await.unwrap_or_else(|_| {
        Err(BrokerError::new(
            ErrorCode::Internal,
            format!("the {what} was dropped before it was synced"),
        ))
    })
}

/// Checks `caller` may consume every topic named.
fn check_consume_all<'a>(
    caller: &Caller,
    topics: impl IntoIterator<Item = &'a str>,
) -> Result<(), BrokerError> {
    for t in topics {
        caller.check(auth::Need::Consume(t))?;
    }
    Ok(())
}
