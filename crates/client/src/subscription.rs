//! What the two push subscribers ([`Subscriber`](crate::Subscriber) on
//! topics, [`QueueSubscriber`](crate::QueueSubscriber) on a queue) share:
//! the [`Handle`] of an open subscription (opening it, its pushes, the
//! Unsubscribe and its answer) and letting go of one that is dropped.

use crate::client::{Client, PushEvent};
use crate::error::ClientError;
use spool_proto::{self as p, Push, Request, ResponseBody};
use tokio::sync::mpsc;

/// An open push subscription. Dropped without [`Handle::unsubscribe`], it
/// lets the subscription go (see [`forget`]).
#[derive(Debug)]
pub(crate) struct Handle {
    pub(crate) client: Client,
    pub(crate) id: u32,
    pub(crate) rx: mpsc::UnboundedReceiver<PushEvent>,
    /// The subscription has ended (the server closed it or the connection
    /// was lost); nothing more will arrive.
    pub(crate) finished: bool,
    unsubscribed: bool,
}

impl Handle {
    /// Opens a subscription with the Subscribe or SubscribeQueue request
    /// `subscribe` builds for its id (see [`open`]).
    pub(crate) async fn open(
        client: &Client,
        subscribe: impl FnOnce(u32) -> Request,
    ) -> Result<Handle, ClientError> {
        let (id, rx) = open(client, subscribe).await?;
        Ok(Handle {
            client: client.clone(),
            id,
            rx,
            finished: false,
            unsubscribed: false,
        })
    }

    /// The next push. `None` once the subscription has ended; the reason
    /// (the server closed it, or the connection was lost) comes as one
    /// `Some(Err(..))` before that.
    pub(crate) async fn next_push(&mut self) -> Option<Result<Push, ClientError>> {
        if self.finished {
            return None;
        }
        let ended = match self.rx.recv().await {
            None => None,
            Some(PushEvent::Lost(e)) => Some(Err(e)),
            Some(PushEvent::Push(Push::SubscriptionClosed(e))) => Some(Err(ClientError::Server(e))),
            Some(PushEvent::Push(push)) => return Some(Ok(push)),
        };
        self.finished = true;
        ended
    }

    /// Sends Unsubscribe and waits for the answer; pushes sent before it
    /// are still in `rx`. [`Handle::unsubscribed`] then reads the answer.
    pub(crate) async fn unsubscribe(&mut self) -> Result<ResponseBody, ClientError> {
        self.unsubscribed = true;
        self.client
            .call(Request::Unsubscribe(p::Unsubscribe {
                subscription_id: self.id,
            }))
            .await
    }

    /// Stops routing the subscription's pushes and reads the Unsubscribe
    /// `answer` (see [`unsubscribed`]).
    pub(crate) fn unsubscribed(
        &self,
        answer: Result<ResponseBody, ClientError>,
    ) -> Result<(), ClientError> {
        self.client.unregister_subscription(self.id);
        unsubscribed(answer, self.finished)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if !self.unsubscribed {
            forget(&self.client, self.id, self.finished);
        }
    }
}

/// Opens a push subscription: reserves an id and its channel first (a push
/// may overtake the answer), sends the request `subscribe` builds for that
/// id, and checks the answer confirms it. On any failure the id is
/// released.
async fn open(
    client: &Client,
    subscribe: impl FnOnce(u32) -> Request,
) -> Result<(u32, mpsc::UnboundedReceiver<PushEvent>), ClientError> {
    let (id, rx) = client.register_subscription()?;
    let request = subscribe(id);
    let op = request.op();
    let answer = match client.call(request).await {
        Ok(body) if confirmed(op, &body) == Some(id) => Ok(()),
        Ok(other) => Err(ClientError::Protocol(format!(
            "expected a {op} response for subscription {id}, got {:?}",
            other.op()
        ))),
        Err(e) => Err(e),
    };
    if let Err(e) = answer {
        client.unregister_subscription(id);
        return Err(e);
    }
    Ok((id, rx))
}

/// The subscription id that `body` confirms, if it is the answer a
/// Subscribe or SubscribeQueue request (`op`) expects.
fn confirmed(op: p::Op, body: &ResponseBody) -> Option<u32> {
    match (op, body) {
        (p::Op::Subscribe, ResponseBody::Subscribed { subscription_id })
        | (p::Op::SubscribeQueue, ResponseBody::QueueSubscribed { subscription_id }) => {
            Some(*subscription_id)
        }
        _ => None,
    }
}

/// The outcome of unsubscribing, given the server's answer: an error
/// counts as done if the server had already ended the subscription
/// (`ended`).
fn unsubscribed(answer: Result<ResponseBody, ClientError>, ended: bool) -> Result<(), ClientError> {
    match answer {
        Ok(ResponseBody::Unsubscribed) => Ok(()),
        Ok(other) => Err(ClientError::Protocol(format!(
            "expected an UNSUBSCRIBE response, got {:?}",
            other.op()
        ))),
        // Already ended by the server.
        Err(_) if ended => Ok(()),
        Err(e) => Err(e),
    }
}

/// Lets go of a subscription whose handle is dropped without
/// unsubscribing: its pushes are no longer routed, and the server is told
/// to stop unless it has ended the subscription itself (`ended`).
fn forget(client: &Client, id: u32, ended: bool) {
    client.unregister_subscription(id);
    if !ended {
        client.send_and_forget(&Request::Unsubscribe(p::Unsubscribe {
            subscription_id: id,
        }));
    }
}
