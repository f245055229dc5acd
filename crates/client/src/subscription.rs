//! What the two push subscribers ([`Subscriber`](crate::Subscriber) on
//! topics, [`QueueSubscriber`](crate::QueueSubscriber) on a queue) share:
//! opening a subscription, reading the Unsubscribe answer, and letting go
//! of one whose handle is dropped.

use crate::client::{Client, PushEvent};
use crate::error::ClientError;
use spool_proto::{self as p, Request, ResponseBody};
use tokio::sync::mpsc;

/// Opens a push subscription: reserves an id and its channel first (a push
/// may overtake the answer), sends the request `subscribe` builds for that
/// id, and checks the answer confirms it (`confirmed` reads the id out of
/// the expected answer). On any failure the id is released.
pub(crate) async fn open(
    client: &Client,
    subscribe: impl FnOnce(u32) -> Request,
    confirmed: fn(&ResponseBody) -> Option<u32>,
) -> Result<(u32, mpsc::UnboundedReceiver<PushEvent>), ClientError> {
    let (id, rx) = client.register_subscription()?;
    let request = subscribe(id);
    let op = request.op();
    let answer = match client.call(request).await {
        Ok(body) if confirmed(&body) == Some(id) => Ok(()),
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

/// The outcome of unsubscribing, given the server's answer: an error
/// counts as done if the server had already ended the subscription
/// (`ended`).
pub(crate) fn unsubscribed(
    answer: Result<ResponseBody, ClientError>,
    ended: bool,
) -> Result<(), ClientError> {
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
pub(crate) fn forget(client: &Client, id: u32, ended: bool) {
    client.unregister_subscription(id);
    if !ended {
        client.send_and_forget(&Request::Unsubscribe(p::Unsubscribe {
            subscription_id: id,
        }));
    }
}
