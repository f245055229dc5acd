//! The futures a caller awaits for outcomes, and the [`Reply`] the worker
//! answers each queued message through.

use super::{lock, Delivered};
use crate::error::ClientError;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::{oneshot, OwnedSemaphorePermit};

/// Resolves to where the message went, or why it was not stored.
#[derive(Debug)]
pub struct DeliveryFuture {
    pub(super) rx: oneshot::Receiver<Result<Delivered, ClientError>>,
}

impl Future for DeliveryFuture {
    type Output = Result<Delivered, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err(stopped())))
    }
}

/// Who waits for a queued message's outcome.
pub(super) enum Reply {
    /// A [`Producer::send`](super::Producer::send) caller, and the buffer
    /// room its message holds.
    One(
        oneshot::Sender<Result<Delivered, ClientError>>,
        OwnedSemaphorePermit,
    ),
    /// Message `index` of a
    /// [`Producer::send_batch`](super::Producer::send_batch) call.
    Many(Arc<Gather>, usize),
}

impl Reply {
    pub(super) fn send(self, outcome: Result<Delivered, ClientError>) {
        match self {
            Reply::One(tx, _permit) => {
                let _ = tx.send(outcome);
            }
            Reply::Many(gather, index) => gather.set(index, outcome),
        }
    }
}

/// Collects the outcomes of one `send_batch` call and answers once all are in.
pub(super) struct Gather {
    pub(super) state: Mutex<GatherState>,
}

pub(super) struct GatherState {
    pub(super) outcomes: Vec<Option<Result<Delivered, ClientError>>>,
    pub(super) left: usize,
    pub(super) tx: Option<oneshot::Sender<Vec<Result<Delivered, ClientError>>>>,
    /// The buffer room the call's messages hold, released with the answer.
    pub(super) permit: Option<OwnedSemaphorePermit>,
}

impl Gather {
    fn set(&self, index: usize, outcome: Result<Delivered, ClientError>) {
        let mut state = lock(&self.state);
        self.set_locked(&mut state, index, outcome);
    }

    pub(super) fn set_locked(
        &self,
        state: &mut GatherState,
        index: usize,
        outcome: Result<Delivered, ClientError>,
    ) {
        let Some(slot) = state.outcomes.get_mut(index) else {
            return;
        };
        if slot.replace(outcome).is_none() {
            state.left -= 1;
        }
        if state.left == 0 {
            let outcomes = std::mem::take(&mut state.outcomes)
                .into_iter()
                .map(|o| o.unwrap_or_else(|| Err(stopped())))
                .collect();
            state.permit = None;
            if let Some(tx) = state.tx.take() {
                let _ = tx.send(outcomes);
            }
        }
    }
}

fn stopped() -> ClientError {
    ClientError::Closed("the producer stopped before the message was acknowledged".to_owned())
}

/// Resolves, once every message of a
/// [`Producer::send_batch`](super::Producer::send_batch) call is acknowledged
/// or has failed, to each one's outcome, in the order given.
#[derive(Debug)]
pub struct BatchDeliveryFuture {
    pub(super) rx: oneshot::Receiver<Vec<Result<Delivered, ClientError>>>,
    pub(super) count: usize,
}

impl Future for BatchDeliveryFuture {
    type Output = Vec<Result<Delivered, ClientError>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let count = self.count;
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| (0..count).map(|_| Err(stopped())).collect()))
    }
}
