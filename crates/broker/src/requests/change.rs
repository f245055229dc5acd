//! The request record's state machine: every change to a record is a
//! [`RequestChange`], applied by [`RequestChange::apply`] to the record as
//! it stands — no I/O, no clock (times travel in the change), no
//! randomness — so the same changes in the same order give the same
//! records on every replica. The store applies them in one order inside its
//! write transaction (`super::store`); a replicated cluster carries them in
//! its log instead.

use super::{unknown_request, CallbackState, CallbackStatus, RequestRecord, RequestStatus};
use crate::error::BrokerError;
use serde::{Deserialize, Serialize};
use spool_types::ErrorCode;

/// One change to one request record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum RequestChange {
    /// A new record, `pending`.
    Submitted { record: RequestRecord },
    /// Taken back: its message could not be queued, so no worker will see it.
    Withdrawn { id: String },
    /// A worker received the request's message under `receipt`.
    Leased {
        id: String,
        attempts: u32,
        receipt: String,
        lease_deadline_ms: i64,
        at_ms: i64,
    },
    /// The worker holding `receipt` gave it back to be retried.
    Retried {
        id: String,
        receipt: String,
        error: String,
        at_ms: i64,
    },
    /// The request reached a final status: by the worker holding `receipt`,
    /// or by the broker itself (`receipt` None: dead-lettered, orphaned).
    Finished {
        id: String,
        receipt: Option<String>,
        status: RequestStatus,
        result: Option<serde_json::Value>,
        error: Option<String>,
        expires_ms: i64,
        at_ms: i64,
    },
    /// One attempt to deliver the callback: `error` None when it was
    /// delivered; otherwise retried at `retry_at_ms` unless `give_up`.
    CallbackAttempted {
        id: String,
        error: Option<String>,
        retry_at_ms: i64,
        give_up: bool,
        at_ms: i64,
    },
    /// Removed if final and expired at `at_ms`.
    Expired { id: String, at_ms: i64 },
}

/// What a change leaves: the record, or none (withdrawn, expired).
pub type Applied = Option<RequestRecord>;

impl RequestChange {
    /// The record this change is about.
    pub fn id(&self) -> &str {
        match self {
            RequestChange::Submitted { record } => &record.id,
            RequestChange::Withdrawn { id }
            | RequestChange::Leased { id, .. }
            | RequestChange::Retried { id, .. }
            | RequestChange::Finished { id, .. }
            | RequestChange::CallbackAttempted { id, .. }
            | RequestChange::Expired { id, .. } => id,
        }
    }

    /// The record after this change, given the record before it (`None`:
    /// there is none). A change that does not fit the record — a second
    /// answer to a finished request, an answer from a worker that no
    /// longer holds it — is refused and the record stays as it was.
    pub fn apply(&self, current: Option<RequestRecord>) -> Result<Applied, BrokerError> {
        let mut r = match (self, current) {
            (RequestChange::Submitted { record }, None) => return Ok(Some(record.clone())),
            (RequestChange::Submitted { record }, Some(_)) => {
                return Err(BrokerError::new(
                    ErrorCode::Internal,
                    format!("request {} exists already", record.id),
                ))
            }
            (RequestChange::Withdrawn { .. }, _) => return Ok(None),
            // Nothing to expire: already gone.
            (RequestChange::Expired { .. }, None) => return Ok(None),
            (_, None) => return Err(unknown_request(self.id())),
            (_, Some(r)) => r,
        };
        match self {
            // Both answered above, whatever the record.
            RequestChange::Submitted { .. } | RequestChange::Withdrawn { .. } => {}
            RequestChange::Expired { at_ms, .. } => {
                let expired = r.status.is_final() && r.expires_ms <= *at_ms;
                return Ok(if expired { None } else { Some(r) });
            }
            RequestChange::Leased {
                attempts,
                receipt,
                lease_deadline_ms,
                at_ms,
                ..
            } => {
                refuse_if_final(&r)?;
                r.status = RequestStatus::Running;
                r.attempts = *attempts;
                r.receipt = Some(receipt.clone());
                r.lease_deadline_ms = Some(*lease_deadline_ms);
                r.updated_ms = *at_ms;
            }
            RequestChange::Retried {
                receipt,
                error,
                at_ms,
                ..
            } => {
                refuse_if_final(&r)?;
                refuse_unless_held(&r, receipt)?;
                r.status = RequestStatus::Pending;
                r.error = Some(error.clone());
                r.receipt = None;
                r.lease_deadline_ms = None;
                r.updated_ms = *at_ms;
            }
            RequestChange::Finished {
                receipt,
                status,
                result,
                error,
                expires_ms,
                at_ms,
                ..
            } => {
                refuse_if_final(&r)?;
                if let Some(receipt) = receipt {
                    refuse_unless_held(&r, receipt)?;
                }
                finish(&mut r, *status, result, error, *expires_ms, *at_ms)?;
            }
            RequestChange::CallbackAttempted {
                error,
                retry_at_ms,
                give_up,
                at_ms,
                ..
            } => callback_attempted(&mut r, error, *retry_at_ms, *give_up, *at_ms),
        }
        Ok(Some(r))
    }
}

fn refuse_if_final(r: &RequestRecord) -> Result<(), BrokerError> {
    if !r.status.is_final() {
        return Ok(());
    }
    let how = if r.status == RequestStatus::Succeeded {
        "succeeded"
    } else {
        "failed"
    };
    Err(BrokerError::new(
        ErrorCode::RequestFinished,
        format!("request {} already {how}; nothing changed", r.id),
    ))
}

/// Only the worker holding the current lease may answer: one whose lease
/// ran out and went to another worker would otherwise undo the new
/// holder's work.
fn refuse_unless_held(r: &RequestRecord, receipt: &str) -> Result<(), BrokerError> {
    if r.status == RequestStatus::Running && r.receipt.as_deref() == Some(receipt) {
        return Ok(());
    }
    Err(BrokerError::new(
        ErrorCode::LeaseExpired,
        format!(
            "request {} is not held by this worker (its lease expired or another worker has it); nothing changed",
            r.id
        ),
    ))
}

fn finish(
    r: &mut RequestRecord,
    status: RequestStatus,
    result: &Option<serde_json::Value>,
    error: &Option<String>,
    expires_ms: i64,
    at_ms: i64,
) -> Result<(), BrokerError> {
    if !status.is_final() {
        return Err(BrokerError::new(
            ErrorCode::Internal,
            format!("request {}: {status:?} is not a final status", r.id),
        ));
    }
    r.status = status;
    r.expires_ms = expires_ms;
    r.result = result.clone();
    r.error = error.clone();
    r.updated_ms = at_ms;
    r.receipt = None;
    r.lease_deadline_ms = None;
    if r.callback_url.is_some() {
        r.callback = Some(CallbackState {
            status: CallbackStatus::Pending,
            attempts: 0,
            next_attempt_ms: at_ms,
            first_attempt_ms: None,
            last_error: None,
        });
    }
    Ok(())
}

/// An attempt on a callback that is not pending (none, delivered, given
/// up) changes nothing: attempts may be reported twice after a failover.
fn callback_attempted(
    r: &mut RequestRecord,
    error: &Option<String>,
    retry_at_ms: i64,
    give_up: bool,
    at_ms: i64,
) {
    let Some(c) = r.callback.as_mut() else {
        return;
    };
    if c.status != CallbackStatus::Pending {
        return;
    }
    c.attempts += 1;
    c.first_attempt_ms.get_or_insert(at_ms);
    match error {
        None => {
            c.status = CallbackStatus::Delivered;
            c.last_error = None;
        }
        Some(e) => {
            c.last_error = Some(e.clone());
            if give_up {
                c.status = CallbackStatus::Failed;
            } else {
                c.next_attempt_ms = retry_at_ms;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(id: &str, callback: bool) -> RequestRecord {
        RequestRecord {
            id: id.into(),
            queue: "jobs".into(),
            status: RequestStatus::Pending,
            attempts: 0,
            created_ms: 1,
            updated_ms: 1,
            expires_ms: 100,
            result: None,
            error: None,
            callback_url: callback.then(|| "http://127.0.0.1:9/cb".into()),
            callback: None,
            receipt: None,
            lease_deadline_ms: None,
        }
    }

    fn submitted(callback: bool) -> RequestChange {
        RequestChange::Submitted {
            record: pending("a", callback),
        }
    }

    fn leased(id: &str, receipt: &str, at_ms: i64) -> RequestChange {
        RequestChange::Leased {
            id: id.into(),
            attempts: 1,
            receipt: receipt.into(),
            lease_deadline_ms: at_ms + 30_000,
            at_ms,
        }
    }

    fn finished(id: &str, receipt: Option<&str>, at_ms: i64) -> RequestChange {
        RequestChange::Finished {
            id: id.into(),
            receipt: receipt.map(Into::into),
            status: RequestStatus::Succeeded,
            result: Some(serde_json::json!({"ok": true})),
            error: None,
            expires_ms: at_ms + 1_000,
            at_ms,
        }
    }

    fn run(changes: &[RequestChange]) -> (Applied, Vec<Option<ErrorCode>>) {
        let mut record = None;
        let mut outcomes = Vec::new();
        for c in changes {
            match c.apply(record.clone()) {
                Ok(next) => {
                    record = next;
                    outcomes.push(None);
                }
                Err(e) => outcomes.push(Some(e.code)),
            }
        }
        (record, outcomes)
    }

    /// A request runs and finishes with its callback pending; after that
    /// it takes no second answer and no new lease.
    #[test]
    fn a_request_finishes_once() {
        let (r, outcomes) = run(&[
            submitted(true),
            leased("a", "r1", 10),
            finished("a", Some("r1"), 20),
            finished("a", None, 30),
            leased("a", "r2", 40),
        ]);
        let done = Some(ErrorCode::RequestFinished);
        assert_eq!(outcomes, vec![None, None, None, done, done]);
        let r = r.unwrap();
        assert_eq!(r.status, RequestStatus::Succeeded);
        assert_eq!((r.receipt, r.expires_ms, r.updated_ms), (None, 1_020, 20));
        let c = r.callback.unwrap();
        assert_eq!((c.status, c.next_attempt_ms), (CallbackStatus::Pending, 20));
    }

    /// The race a lease hand-over opens: the first worker's lease ran out
    /// and a second took the request; the first worker's late answer is
    /// refused and the second's stands.
    #[test]
    fn only_the_current_holder_may_answer() {
        let (r, outcomes) = run(&[
            submitted(false),
            leased("a", "old", 10),
            leased("a", "new", 50),
            RequestChange::Retried {
                id: "a".into(),
                receipt: "old".into(),
                error: "late".into(),
                at_ms: 60,
            },
            finished("a", Some("old"), 61),
        ]);
        let refused = Some(ErrorCode::LeaseExpired);
        assert_eq!(outcomes, vec![None, None, None, refused, refused]);
        let r = r.unwrap();
        assert_eq!(r.status, RequestStatus::Running);
        assert_eq!(r.receipt.as_deref(), Some("new"));
    }

    #[test]
    fn the_broker_may_finish_a_request_nobody_holds() {
        let (r, outcomes) = run(&[
            submitted(false),
            RequestChange::Finished {
                id: "a".into(),
                receipt: None,
                status: RequestStatus::Failed,
                result: None,
                error: Some("dead-lettered".into()),
                expires_ms: 500,
                at_ms: 5,
            },
        ]);
        assert_eq!(outcomes, vec![None, None]);
        assert_eq!(r.unwrap().status, RequestStatus::Failed);
    }

    #[test]
    fn callbacks_are_retried_then_given_up_once() {
        let attempt =
            |error: Option<&str>, give_up: bool, at_ms: i64| RequestChange::CallbackAttempted {
                id: "a".into(),
                error: error.map(Into::into),
                retry_at_ms: at_ms + 100,
                give_up,
                at_ms,
            };
        let (r, _) = run(&[
            submitted(true),
            finished("a", None, 10),
            attempt(Some("refused"), false, 11),
            attempt(Some("refused again"), true, 111),
            // Reported twice (a failover): changes nothing.
            attempt(None, false, 112),
        ]);
        let c = r.unwrap().callback.unwrap();
        assert_eq!(c.status, CallbackStatus::Failed);
        assert_eq!(c.attempts, 2);
        assert_eq!(c.first_attempt_ms, Some(11));
        assert_eq!(c.last_error.as_deref(), Some("refused again"));
    }

    #[test]
    fn only_final_expired_records_are_removed() {
        let expire = |at_ms| RequestChange::Expired {
            id: "a".into(),
            at_ms,
        };
        let submitted = submitted(false);
        // Pending records stay, however old.
        let (r, _) = run(&[submitted.clone(), expire(1_000_000)]);
        assert!(r.is_some());
        let (r, _) = run(&[submitted.clone(), finished("a", None, 10), expire(1_009)]);
        assert!(r.is_some(), "not yet expired");
        let (r, _) = run(&[submitted, finished("a", None, 10), expire(1_010)]);
        assert!(r.is_none());
    }

    #[test]
    fn changes_to_a_missing_record_are_refused_or_nothing() {
        assert_eq!(
            leased("x", "r", 1).apply(None).unwrap_err().code,
            ErrorCode::UnknownRequest
        );
        let withdrawn = RequestChange::Withdrawn { id: "x".into() };
        assert_eq!(withdrawn.apply(None).unwrap(), None);
        let record = pending("x", false);
        let again = RequestChange::Submitted {
            record: record.clone(),
        };
        assert!(again.apply(Some(record)).is_err());
    }

    /// Changes survive a trip through JSON unchanged: they are what a
    /// replicated log will carry.
    #[test]
    fn changes_round_trip_through_json() {
        for c in [
            submitted(true),
            leased("a", "r1", 10),
            finished("a", Some("r1"), 20),
        ] {
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<RequestChange>(&json).unwrap(), c);
        }
    }
}
