//! The work-queue state of one partition of one queue subscription, as a pure
//! state machine: which offsets are ready, leased or done, their delivery
//! counts, backoff and ordering-key blocking. No I/O and no clock: every call
//! takes `now_ms`. The runtime feeds it messages scanned from the log,
//! persists the [`Change`]s it reports, and copies dead letters.

use std::collections::{BTreeMap, BTreeSet, HashSet};

/// How a queue subscription hands out messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    /// Redelivered until acknowledged (the default).
    AtLeastOnce,
    /// Counted as acknowledged as it is handed out; never redelivered.
    AtMostOnce,
}

/// Delay before a failed (nacked or expired) message is offered again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    Fixed {
        delay_ms: u64,
    },
    /// `initial_ms × 2^(deliveries-1)`, capped at `max_ms`.
    Exponential {
        initial_ms: u64,
        max_ms: u64,
    },
}

impl Backoff {
    /// The delay after the `deliveries`-th failed delivery.
    pub fn delay_ms(&self, deliveries: u32) -> u64 {
        match *self {
            Backoff::Fixed { delay_ms } => delay_ms,
            Backoff::Exponential { initial_ms, max_ms } => {
                let shift = deliveries.saturating_sub(1).min(40);
                initial_ms.saturating_mul(1u64 << shift).min(max_ms)
            }
        }
    }
}

/// The settings the state machine needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub ack_timeout_ms: u64,
    /// Deliveries after which a failed message is dead-lettered (0 = never).
    pub max_deliveries: u32,
    pub backoff: Backoff,
    pub mode: DeliveryMode,
    /// At most one message per ordering key in flight, keys in publish order.
    pub ordered: bool,
}

/// A message scanned from the log, offered to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admit {
    pub offset: i64,
    /// Hash of the ordering key (the record key), if any.
    pub key: Option<u64>,
    /// Not deliverable before this time (delayed messages).
    pub not_before_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ready {
        not_before_ms: i64,
    },
    Leased {
        lease: u64,
        deadline_ms: i64,
    },
    /// Failed too often; waiting for the runtime to copy it to the dead-letter topic.
    Dead,
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    deliveries: u32,
    key: Option<u64>,
    state: State,
    last_error: Option<String>,
}

/// A lease handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub offset: i64,
    pub lease: u64,
    pub deliveries: u32,
    pub deadline_ms: i64,
}

/// A message to copy to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub offset: i64,
    pub deliveries: u32,
    pub last_error: Option<String>,
}

/// What must be persisted for the state to survive a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Delivery count after a lease (persisted so max-deliveries holds across restarts).
    Delivered { offset: i64, deliveries: u32 },
    /// Done: acknowledged, handed out at-most-once, or dead-lettered.
    Done { offset: i64 },
    /// Failed; not to be offered again before `not_before_ms`.
    Retry { offset: i64, not_before_ms: i64 },
}

/// Why an ack, nack or extend was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptError {
    Unknown,
    Expired,
}

/// Persisted facts about one offset, restored on open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Restored {
    pub deliveries: u32,
    pub done: bool,
    pub not_before_ms: i64,
}

/// The times at which entries change by themselves: lease deadlines, and
/// the `not_before_ms` of delayed or backed-off ready entries, each with
/// its offset. Kept in step with every state change (through
/// [`set_state`]), so a waiter finds its next wake-up and expiry finds its
/// lapsed leases without walking the whole window; those walks were most
/// of the server's time with 16 workers waiting on a busy queue.
#[derive(Debug, Default)]
struct Timers {
    leases: BTreeSet<(i64, i64)>,
    delayed: BTreeSet<(i64, i64)>,
}

impl Timers {
    fn set(&mut self, offset: i64, state: State, present: bool) {
        match state {
            State::Leased { deadline_ms, .. } => {
                if present {
                    self.leases.insert((deadline_ms, offset));
                } else {
                    self.leases.remove(&(deadline_ms, offset));
                }
            }
            State::Ready { not_before_ms } if not_before_ms > 0 => {
                if present {
                    self.delayed.insert((not_before_ms, offset));
                } else {
                    self.delayed.remove(&(not_before_ms, offset));
                }
            }
            _ => {}
        }
    }

    fn rebuild(entries: &BTreeMap<i64, Entry>) -> Timers {
        let mut timers = Timers::default();
        for (&offset, e) in entries {
            timers.set(offset, e.state, true);
        }
        timers
    }
}

/// Changes an entry's state, keeping `timers` in step.
fn set_state(timers: &mut Timers, offset: i64, entry: &mut Entry, state: State) {
    timers.set(offset, entry.state, false);
    timers.set(offset, state, true);
    entry.state = state;
}

#[derive(Debug, Default)]
pub struct PartitionQueue {
    /// Every offset below this is done.
    floor: i64,
    /// Offsets below this have been admitted from the log.
    scanned: i64,
    entries: BTreeMap<i64, Entry>,
    /// Facts from the state log for offsets not yet re-admitted after a restart.
    restored: BTreeMap<i64, Restored>,
    leased: usize,
    /// The `now` of the latest lease call: entries ready by then that were
    /// not leased are blocked (ordering key, `max`), not future wake-ups.
    seen_ms: i64,
    // Bookkeeping that spares a receive walking the whole window (up to
    // QUEUE_WINDOW_MESSAGES entries) several times; without it these walks
    // were most of a receive's cost.
    /// Entries not done, so `outstanding` need not count them.
    not_done: usize,
    /// No lease expires before this (a lower bound): `expire` walks the
    /// entries only once it is reached.
    leases_expire_from_ms: i64,
    /// No entry below this is ready (a lower bound): an unordered `lease`
    /// starts here instead of walking past the leased messages at the front.
    ready_from: i64,
    /// The `max_deliveries` that ready entries were last checked against
    /// for used-up deliveries; `None` once entries that may need it arrive.
    spent_checked_for: Option<u32>,
    timers: Timers,
}

impl PartitionQueue {
    pub fn new(floor: i64, restored: BTreeMap<i64, Restored>) -> PartitionQueue {
        PartitionQueue {
            floor,
            scanned: floor,
            restored,
            ..PartitionQueue::default()
        }
    }

    /// All offsets below this are done (acknowledged or dead-lettered).
    pub fn floor(&self) -> i64 {
        self.floor
    }

    /// The next log offset to scan.
    pub fn scanned(&self) -> i64 {
        self.scanned
    }

    /// Messages admitted and not done.
    pub fn outstanding(&self) -> usize {
        debug_assert_eq!(self.not_done, self.count_not_done());
        self.not_done
    }

    fn count_not_done(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.state != State::Done)
            .count()
    }

    pub fn leased(&self) -> usize {
        self.leased
    }

    /// Moves the scan position when the log's start moved past it (retention).
    pub fn skip_to(&mut self, offset: i64) {
        if offset > self.floor {
            self.scanned = self.scanned.max(offset);
            self.entries.retain(|o, _| *o >= offset);
            self.timers = Timers::rebuild(&self.entries);
            self.restored = self.restored.split_off(&offset);
            self.floor = offset;
            self.recount();
            self.compact();
        }
    }

    /// Adds messages read from the log at `scanned..next_scan`.
    pub fn admit(&mut self, messages: impl IntoIterator<Item = Admit>, next_scan: i64) {
        for m in messages {
            if m.offset < self.scanned {
                continue;
            }
            let facts = self.restored.remove(&m.offset).unwrap_or_default();
            let state = if facts.done {
                State::Done
            } else {
                self.not_done += 1;
                self.ready_from = self.ready_from.min(m.offset);
                if facts.deliveries > 0 {
                    self.spent_checked_for = None;
                }
                State::Ready {
                    not_before_ms: m.not_before_ms.max(facts.not_before_ms),
                }
            };
            self.timers.set(m.offset, state, true);
            self.entries.insert(
                m.offset,
                Entry {
                    deliveries: facts.deliveries,
                    key: m.key,
                    state,
                    last_error: None,
                },
            );
        }
        self.scanned = self.scanned.max(next_scan);
        self.restored = self.restored.split_off(&self.scanned);
        self.compact();
    }

    fn recount(&mut self) {
        self.leased = self
            .entries
            .values()
            .filter(|e| matches!(e.state, State::Leased { .. }))
            .count();
        self.not_done = self.count_not_done();
    }

    /// Advances the floor past done entries at the front.
    fn compact(&mut self) {
        while let Some((&offset, entry)) = self.entries.first_key_value() {
            if entry.state != State::Done {
                self.floor = self.floor.max(offset);
                return;
            }
            self.entries.remove(&offset);
            self.floor = self.floor.max(offset + 1);
        }
        self.floor = self.floor.max(self.scanned);
    }

    /// Expired leases become failures: retried after backoff, or dead.
    ///
    /// A ready message that has already used up its deliveries is dead too.
    /// That happens after a restart (leases are not persisted, so a message
    /// whose last allowed delivery was in progress comes back ready with its
    /// full count) or after `max_deliveries` was lowered; leasing it would
    /// deliver it more often than `max_deliveries`.
    pub fn expire(&mut self, now_ms: i64, rules: &Rules, changes: &mut Vec<Change>) {
        // Only restored entries and a lowered limit can make a ready entry
        // spent (a failure past the limit goes straight to dead).
        if self.spent_checked_for != Some(rules.max_deliveries) {
            if rules.max_deliveries > 0 {
                for (&offset, e) in self.entries.iter_mut() {
                    if matches!(e.state, State::Ready { .. })
                        && e.deliveries >= rules.max_deliveries
                    {
                        set_state(&mut self.timers, offset, e, State::Dead);
                        // The last failure's text is not persisted across a restart.
                        e.last_error
                            .get_or_insert_with(|| "deliveries used up before a restart".into());
                    }
                }
            }
            self.spent_checked_for = Some(rules.max_deliveries);
        }
        if now_ms < self.leases_expire_from_ms {
            return;
        }
        let expired: Vec<i64> = self
            .timers
            .leases
            .range(..=(now_ms, i64::MAX))
            .map(|&(_, offset)| offset)
            .collect();
        for offset in expired {
            self.fail(
                offset,
                0,
                Some("lease expired".into()),
                now_ms,
                rules,
                changes,
            );
        }
        self.leases_expire_from_ms = self.timers.leases.first().map_or(i64::MAX, |t| t.0);
    }

    fn fail(
        &mut self,
        offset: i64,
        delay_ms: u64,
        error: Option<String>,
        now_ms: i64,
        rules: &Rules,
        changes: &mut Vec<Change>,
    ) {
        let Some(e) = self.entries.get_mut(&offset) else {
            return;
        };
        if matches!(e.state, State::Leased { .. }) {
            self.leased -= 1;
        }
        if error.is_some() {
            e.last_error = error;
        }
        if rules.max_deliveries > 0 && e.deliveries >= rules.max_deliveries {
            set_state(&mut self.timers, offset, e, State::Dead);
            return;
        }
        let not_before_ms = now_ms + delay_ms.max(rules.backoff.delay_ms(e.deliveries)) as i64;
        set_state(&mut self.timers, offset, e, State::Ready { not_before_ms });
        self.ready_from = self.ready_from.min(offset);
        changes.push(Change::Retry {
            offset,
            not_before_ms,
        });
    }

    /// Leases up to `max` ready messages in offset order.
    pub fn lease(
        &mut self,
        max: usize,
        now_ms: i64,
        rules: &Rules,
        next_lease: &mut u64,
        changes: &mut Vec<Change>,
    ) -> Vec<Lease> {
        self.seen_ms = self.seen_ms.max(now_ms);
        self.expire(now_ms, rules, changes);
        let mut out = Vec::new();
        let mut blocked: HashSet<u64> = HashSet::new();
        // Ordering keys need every unfinished entry from the front; without
        // them the walk starts at the first entry that may be ready.
        let from = if rules.ordered {
            i64::MIN
        } else {
            self.ready_from
        };
        // Where the next unordered walk may start: the first ready entry
        // this one leaves behind (not due yet, or past `max`).
        let mut next_ready_from = i64::MAX;
        for (&offset, e) in self.entries.range_mut(from..) {
            if out.len() >= max {
                next_ready_from = next_ready_from.min(offset);
                break;
            }
            let ready =
                matches!(e.state, State::Ready { not_before_ms } if not_before_ms <= now_ms);
            if !ready && matches!(e.state, State::Ready { .. }) {
                next_ready_from = next_ready_from.min(offset);
            }
            if rules.ordered && e.state != State::Done {
                if let Some(k) = e.key {
                    // The first unfinished message of a key blocks the later ones,
                    // whether it is leased, waiting for its backoff, or ready.
                    if !blocked.insert(k) || !ready {
                        continue;
                    }
                }
            }
            if !ready {
                continue;
            }
            e.deliveries += 1;
            changes.push(Change::Delivered {
                offset,
                deliveries: e.deliveries,
            });
            *next_lease += 1;
            let deadline_ms = now_ms + rules.ack_timeout_ms as i64;
            let lease = Lease {
                offset,
                lease: *next_lease,
                deliveries: e.deliveries,
                deadline_ms,
            };
            if rules.mode == DeliveryMode::AtMostOnce {
                set_state(&mut self.timers, offset, e, State::Done);
                self.not_done -= 1;
                changes.push(Change::Done { offset });
            } else {
                let leased = State::Leased {
                    lease: lease.lease,
                    deadline_ms,
                };
                set_state(&mut self.timers, offset, e, leased);
                self.leased += 1;
                self.leases_expire_from_ms = self.leases_expire_from_ms.min(deadline_ms);
            }
            out.push(lease);
        }
        if !rules.ordered {
            self.ready_from = next_ready_from;
        }
        self.compact();
        out
    }

    /// The deadline of the lease `lease` on `offset`, if it is the current lease.
    pub fn lease_deadline(&self, offset: i64, lease: u64) -> Option<i64> {
        match self.entries.get(&offset)?.state {
            State::Leased {
                lease: l,
                deadline_ms,
            } if l == lease => Some(deadline_ms),
            _ => None,
        }
    }

    fn check(&self, offset: i64, lease: u64, now_ms: i64) -> Result<(), ReceiptError> {
        let e = self.entries.get(&offset).ok_or(if offset < self.floor {
            ReceiptError::Expired
        } else {
            ReceiptError::Unknown
        })?;
        match e.state {
            State::Leased {
                lease: l,
                deadline_ms,
            } if l == lease => {
                if deadline_ms <= now_ms {
                    Err(ReceiptError::Expired)
                } else {
                    Ok(())
                }
            }
            _ => Err(ReceiptError::Expired),
        }
    }

    pub fn ack(
        &mut self,
        offset: i64,
        lease: u64,
        now_ms: i64,
        changes: &mut Vec<Change>,
    ) -> Result<(), ReceiptError> {
        self.check(offset, lease, now_ms)?;
        if let Some(e) = self.entries.get_mut(&offset) {
            set_state(&mut self.timers, offset, e, State::Done);
            self.leased -= 1;
            self.not_done -= 1;
        }
        changes.push(Change::Done { offset });
        self.compact();
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn nack(
        &mut self,
        offset: i64,
        lease: u64,
        delay_ms: u64,
        error: Option<String>,
        now_ms: i64,
        rules: &Rules,
        changes: &mut Vec<Change>,
    ) -> Result<(), ReceiptError> {
        self.check(offset, lease, now_ms)?;
        self.fail(
            offset,
            delay_ms,
            error.or_else(|| Some("nacked".into())),
            now_ms,
            rules,
            changes,
        );
        Ok(())
    }

    /// Pushes a lease's deadline to `now + extend_ms`.
    pub fn extend(
        &mut self,
        offset: i64,
        lease: u64,
        extend_ms: u64,
        now_ms: i64,
    ) -> Result<i64, ReceiptError> {
        self.check(offset, lease, now_ms)?;
        let deadline = now_ms + extend_ms as i64;
        if let Some(e) = self.entries.get_mut(&offset) {
            let extended = State::Leased {
                lease,
                deadline_ms: deadline,
            };
            set_state(&mut self.timers, offset, e, extended);
        }
        self.leases_expire_from_ms = self.leases_expire_from_ms.min(deadline);
        Ok(deadline)
    }

    /// Messages waiting to be dead-lettered.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.entries
            .iter()
            .filter(|(_, e)| e.state == State::Dead)
            .map(|(o, e)| DeadLetter {
                offset: *o,
                deliveries: e.deliveries,
                last_error: e.last_error.clone(),
            })
            .collect()
    }

    /// Marks a dead letter done once its copy is durable.
    pub fn dead_lettered(&mut self, offset: i64, changes: &mut Vec<Change>) {
        if let Some(e) = self.entries.get_mut(&offset) {
            if e.state == State::Dead {
                set_state(&mut self.timers, offset, e, State::Done);
                self.not_done -= 1;
                changes.push(Change::Done { offset });
            }
        }
        self.compact();
    }

    /// The earliest future time something becomes ready or a lease expires,
    /// for waits. Messages already ready at the last lease (held back by an
    /// ordering key) are not wake-ups: their blocker's deadline is.
    pub fn next_wakeup(&self) -> Option<i64> {
        let lease = self.timers.leases.first().map(|t| t.0);
        let delayed = self
            .timers
            .delayed
            .range((self.seen_ms.saturating_add(1), i64::MIN)..)
            .next()
            .map(|t| t.0);
        let wake = lease.into_iter().chain(delayed).min();
        debug_assert_eq!(wake, self.next_wakeup_by_walking());
        wake
    }

    /// [`PartitionQueue::next_wakeup`] the slow way, which checks the
    /// timers in debug builds (tests).
    fn next_wakeup_by_walking(&self) -> Option<i64> {
        self.entries
            .values()
            .filter_map(|e| match e.state {
                State::Ready { not_before_ms } if not_before_ms > self.seen_ms => {
                    Some(not_before_ms)
                }
                State::Ready { .. } => None,
                State::Leased { deadline_ms, .. } => Some(deadline_ms),
                _ => None,
            })
            .min()
    }

    /// The records a snapshot keeps after the floor record: delivery counts,
    /// retry times and done offsets above the floor, including facts restored
    /// for offsets not re-admitted yet. [`Replay`] reads them back.
    pub fn snapshot(&self) -> Vec<Change> {
        let mut facts: Vec<(i64, Restored)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.deliveries > 0 || e.state == State::Done)
            .map(|(o, e)| {
                let not_before_ms = match e.state {
                    State::Ready { not_before_ms } => not_before_ms,
                    _ => 0,
                };
                (
                    *o,
                    Restored {
                        deliveries: e.deliveries,
                        done: e.state == State::Done,
                        not_before_ms,
                    },
                )
            })
            .collect();
        facts.extend(self.restored.iter().map(|(o, r)| (*o, *r)));
        facts.sort_by_key(|(o, _)| *o);
        let mut out = Vec::with_capacity(facts.len());
        for (offset, f) in facts {
            if f.deliveries > 0 {
                out.push(Change::Delivered {
                    offset,
                    deliveries: f.deliveries,
                });
            }
            if f.done {
                out.push(Change::Done { offset });
            }
            if f.not_before_ms > 0 {
                out.push(Change::Retry {
                    offset,
                    not_before_ms: f.not_before_ms,
                });
            }
        }
        out
    }
}

/// Rebuilds one partition's queue from its state-log records, oldest first:
/// the [`Change`]s the state machine reported and the floor and facts a
/// snapshot wrote. Kept beside the state machine (and free of I/O) so that
/// restarts can be simulated through the same code the broker opens with.
#[derive(Debug, Default)]
pub struct Replay {
    floor: i64,
    facts: BTreeMap<i64, Restored>,
}

impl Replay {
    pub fn new() -> Replay {
        Replay::default()
    }

    /// A snapshot's floor record: every offset below it is done.
    pub fn floor(&mut self, offset: i64) {
        self.floor = self.floor.max(offset);
        self.facts = self.facts.split_off(&offset);
    }

    /// One change record; later records win.
    pub fn change(&mut self, change: &Change) {
        match *change {
            Change::Delivered { offset, deliveries } => {
                self.facts.entry(offset).or_default().deliveries = deliveries;
            }
            Change::Done { offset } => self.facts.entry(offset).or_default().done = true,
            Change::Retry {
                offset,
                not_before_ms,
            } => self.facts.entry(offset).or_default().not_before_ms = not_before_ms,
        }
    }

    /// The queue as the records describe it, over a partition log that now
    /// starts at `log_start` (retention may have moved it meanwhile).
    pub fn finish(mut self, log_start: i64) -> PartitionQueue {
        let floor = self.floor.max(log_start);
        PartitionQueue::new(floor, self.facts.split_off(&floor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            ack_timeout_ms: 1_000,
            max_deliveries: 3,
            backoff: Backoff::Fixed { delay_ms: 0 },
            mode: DeliveryMode::AtLeastOnce,
            ordered: false,
        }
    }

    fn admit(
        q: &mut PartitionQueue,
        offsets: std::ops::Range<i64>,
        key: impl Fn(i64) -> Option<u64>,
    ) {
        let end = offsets.end;
        q.admit(
            offsets.map(|offset| Admit {
                offset,
                key: key(offset),
                not_before_ms: 0,
            }),
            end,
        );
    }

    #[test]
    fn lease_ack_and_expiry() {
        let r = rules();
        let mut q = PartitionQueue::new(0, BTreeMap::new());
        admit(&mut q, 0..3, |_| None);
        let (mut n, mut ch) = (0, vec![]);
        let l = q.lease(2, 0, &r, &mut n, &mut ch);
        assert_eq!(l.iter().map(|l| l.offset).collect::<Vec<_>>(), [0, 1]);
        q.ack(0, l[0].lease, 10, &mut ch).unwrap();
        assert_eq!(q.floor(), 1);
        assert_eq!(
            q.ack(0, l[0].lease, 10, &mut ch),
            Err(ReceiptError::Expired)
        );
        assert_eq!(q.ack(9, 1, 10, &mut ch), Err(ReceiptError::Unknown));
        // Offset 1's lease expires; it is offered again with deliveries 2.
        let again = q.lease(5, 1_000, &r, &mut n, &mut ch);
        assert_eq!(
            again
                .iter()
                .map(|l| (l.offset, l.deliveries))
                .collect::<Vec<_>>(),
            [(1, 2), (2, 1)]
        );
        assert_eq!(
            q.ack(1, l[1].lease, 1_001, &mut ch),
            Err(ReceiptError::Expired),
            "old receipt"
        );
    }

    #[test]
    fn max_deliveries_dead_letters_and_backoff_delays() {
        let r = Rules {
            backoff: Backoff::Exponential {
                initial_ms: 100,
                max_ms: 250,
            },
            ..rules()
        };
        assert_eq!(
            [1, 2, 3, 4].map(|d| r.backoff.delay_ms(d)),
            [100, 200, 250, 250]
        );
        let mut q = PartitionQueue::new(0, BTreeMap::new());
        admit(&mut q, 0..1, |_| None);
        let (mut n, mut ch) = (0, vec![]);
        let mut now = 0;
        for attempt in 1..=3 {
            let l = q.lease(1, now, &r, &mut n, &mut ch);
            assert_eq!(l.len(), 1, "attempt {attempt}");
            q.nack(
                0,
                l[0].lease,
                0,
                Some(format!("boom {attempt}")),
                now,
                &r,
                &mut ch,
            )
            .unwrap();
            assert!(
                q.lease(1, now + 1, &r, &mut n, &mut ch).is_empty(),
                "backoff holds it back"
            );
            now += 1_000;
        }
        let dead = q.dead_letters();
        assert_eq!(
            dead,
            [DeadLetter {
                offset: 0,
                deliveries: 3,
                last_error: Some("boom 3".into())
            }]
        );
        q.dead_lettered(0, &mut ch);
        assert_eq!(q.floor(), 1);
    }

    #[test]
    fn ordering_keys_block_per_key_only() {
        let r = Rules {
            ordered: true,
            ..rules()
        };
        let mut q = PartitionQueue::new(0, BTreeMap::new());
        // keys: 0→A, 1→A, 2→B, 3→A, 4→B
        admit(&mut q, 0..5, |o| Some(if o == 2 || o == 4 { 2 } else { 1 }));
        let (mut n, mut ch) = (0, vec![]);
        let l = q.lease(10, 0, &r, &mut n, &mut ch);
        assert_eq!(
            l.iter().map(|l| l.offset).collect::<Vec<_>>(),
            [0, 2],
            "one per key"
        );
        q.ack(2, l[1].lease, 1, &mut ch).unwrap();
        let l2 = q.lease(10, 1, &r, &mut n, &mut ch);
        assert_eq!(
            l2.iter().map(|l| l.offset).collect::<Vec<_>>(),
            [4],
            "B moves on while A waits"
        );
        q.ack(0, l[0].lease, 2, &mut ch).unwrap();
        let l3 = q.lease(10, 2, &r, &mut n, &mut ch);
        assert_eq!(l3.iter().map(|l| l.offset).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn a_restored_message_out_of_deliveries_is_dead_not_delivered_again() {
        // Offset 0 was delivered max_deliveries (3) times and the server died
        // during the last delivery; offset 1 had one delivery.
        let mut replay = Replay::new();
        for deliveries in 1..=3 {
            replay.change(&Change::Delivered {
                offset: 0,
                deliveries,
            });
        }
        replay.change(&Change::Delivered {
            offset: 1,
            deliveries: 1,
        });
        let mut q = replay.finish(0);
        admit(&mut q, 0..2, |_| None);
        let (mut n, mut ch) = (0, vec![]);
        let l = q.lease(5, 0, &rules(), &mut n, &mut ch);
        assert_eq!(
            l.iter()
                .map(|l| (l.offset, l.deliveries))
                .collect::<Vec<_>>(),
            [(1, 2)],
            "offset 0 must not get a 4th delivery"
        );
        let dead = q.dead_letters();
        assert_eq!(dead.len(), 1);
        assert_eq!((dead[0].offset, dead[0].deliveries), (0, 3));
    }

    #[test]
    fn at_most_once_never_redelivers_and_restore_keeps_counts() {
        let r = Rules {
            mode: DeliveryMode::AtMostOnce,
            ..rules()
        };
        let mut q = PartitionQueue::new(0, BTreeMap::new());
        admit(&mut q, 0..2, |_| None);
        let (mut n, mut ch) = (0, vec![]);
        assert_eq!(q.lease(1, 0, &r, &mut n, &mut ch).len(), 1);
        assert!(ch.contains(&Change::Done { offset: 0 }));
        assert_eq!(
            q.lease(5, 10_000, &r, &mut n, &mut ch)
                .iter()
                .map(|l| l.offset)
                .collect::<Vec<_>>(),
            [1]
        );
        assert!(q.lease(5, 20_000, &r, &mut n, &mut ch).is_empty());
        // Restore: offset 5 was done, offset 6 delivered twice.
        let restored = [
            (
                5,
                Restored {
                    done: true,
                    ..Default::default()
                },
            ),
            (
                6,
                Restored {
                    deliveries: 2,
                    ..Default::default()
                },
            ),
        ]
        .into_iter()
        .collect();
        let mut q = PartitionQueue::new(5, restored);
        admit(&mut q, 5..7, |_| None);
        let l = q.lease(5, 0, &rules(), &mut n, &mut ch);
        assert_eq!(
            l.iter()
                .map(|l| (l.offset, l.deliveries))
                .collect::<Vec<_>>(),
            [(6, 3)]
        );
    }
}
