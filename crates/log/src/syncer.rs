//! Background fdatasync for callers that must not block a thread per wait.
//!
//! [`Log::sync_to`] blocks its caller until the bytes are on disk. A server
//! with thousands of producers in flight would park one thread on each of
//! them; instead it writes with [`Log::write`] and hands the wait to a
//! [`Syncer`]: a few threads shared by every log, which sync each log on
//! behalf of everybody waiting on it and then run the waiters' completions.
//!
//! Per log there is at most one sync job at a time. Waiters that arrive while
//! it runs collect into the log's next job, so each fdatasync covers everyone
//! who wrote during the previous one (group commit, without a thread per
//! appender). Completions run on the syncer's threads: they must be short
//! (wake a task, send on a channel).

use crate::{Log, LogError};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// What a waiter is told once its offsets are durable (or cannot be).
pub type SyncDone = Box<dyn FnOnce(Result<(), LogError>) + Send>;

/// Threads a [`Syncer`] starts when not told otherwise: enough for fdatasyncs
/// of several partitions to overlap on a device that queues them.
pub const SYNCER_THREADS_DEFAULT: usize = 4;

/// Shared fdatasync threads; see the module documentation. Dropping it runs
/// every queued job, then stops and joins the threads.
pub struct Syncer {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
}

/// Identity of a log: the address of its shared allocation, stable while any
/// job holds the `Arc`.
type LogKey = usize;

#[derive(Default)]
struct State {
    /// Logs with a job waiting and none running, oldest first.
    ready: VecDeque<LogKey>,
    /// The waiting job of each log.
    jobs: HashMap<LogKey, Job>,
    /// Logs whose job a thread is running now.
    running: HashSet<LogKey>,
    closed: bool,
}

struct Job {
    log: Arc<Log>,
    next_offset: i64,
    waiters: Vec<SyncDone>,
}

impl Syncer {
    /// Starts `threads` sync threads (at least one).
    pub fn new(threads: usize) -> std::io::Result<Syncer> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
        });
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let shared = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name(format!("spool-sync-{i}"))
                .spawn(move || shared.run())?;
            handles.push(handle);
        }
        Ok(Syncer {
            shared,
            threads: handles,
        })
    }

    /// Calls `done` once every offset of `log` below `next_offset` is
    /// fdatasync'd, or with the error that prevents it. Runs `done` at once,
    /// on this thread, when nothing needs syncing.
    pub fn sync(&self, log: &Arc<Log>, next_offset: i64, done: SyncDone) {
        if log.is_durable_to(next_offset) {
            done(Ok(()));
            return;
        }
        let key = Arc::as_ptr(log) as LogKey;
        let mut state = self.shared.lock();
        if state.closed {
            drop(state);
            done(Err(LogError::Failed("the syncer is shut down".into())));
            return;
        }
        let job = state.jobs.entry(key).or_insert_with(|| Job {
            log: Arc::clone(log),
            next_offset,
            waiters: Vec::new(),
        });
        job.next_offset = job.next_offset.max(next_offset);
        job.waiters.push(done);
        let first = job.waiters.len() == 1;
        if first && !state.running.contains(&key) {
            state.ready.push_back(key);
            self.shared.work.notify_one();
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_all();
        let me = std::thread::current().id();
        for handle in self.threads.drain(..) {
            // The owner may be dropped by a completion running on one of
            // these threads; that one finishes on its own.
            if handle.thread().id() != me {
                let _ = handle.join();
            }
        }
    }
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer")
            .field("threads", &self.threads.len())
            .finish()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One sync thread: takes the oldest ready log's job, syncs, completes,
    /// and requeues the log if more waiters came meanwhile. Exits once closed
    /// with nothing left to run.
    fn run(&self) {
        let mut state = self.lock();
        loop {
            let Some(key) = state.ready.pop_front() else {
                if state.closed && state.running.is_empty() {
                    return;
                }
                state = self.work.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            };
            let Some(job) = state.jobs.remove(&key) else {
                continue;
            };
            state.running.insert(key);
            drop(state);

            let result = job.log.sync_to(job.next_offset);
            complete(job.waiters, &result);

            state = self.lock();
            state.running.remove(&key);
            if state.jobs.contains_key(&key) {
                state.ready.push_back(key);
                self.work.notify_one();
            }
            if state.closed && state.ready.is_empty() && state.running.is_empty() {
                // Wake the other threads so that they see there is no more work.
                self.work.notify_all();
            }
        }
    }
}

/// Tells every waiter the job's result (each gets its own copy of an error).
fn complete(waiters: Vec<SyncDone>, result: &Result<(), LogError>) {
    for done in waiters {
        done(match result {
            Ok(()) => Ok(()),
            Err(e) => Err(e.replicate()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Durability, LogConfig};
    use spool_batch::{BatchBuilder, NewRecord};
    use std::sync::mpsc;

    fn one_record() -> Vec<u8> {
        let mut b = BatchBuilder::new();
        b.push(&NewRecord::value(vec![7u8; 100], 1)).unwrap();
        b.finish().unwrap()
    }

    fn open(dir: &std::path::Path) -> Arc<Log> {
        let config = LogConfig {
            durability: Durability::Always,
            ..LogConfig::default()
        };
        Arc::new(Log::open(dir, config).unwrap().0)
    }

    #[test]
    fn every_waiter_is_told_once_its_offsets_are_durable() {
        let dir = tempfile::tempdir().unwrap();
        let logs = [open(&dir.path().join("a")), open(&dir.path().join("b"))];
        let syncer = Syncer::new(2).unwrap();
        let (tx, rx) = mpsc::channel();
        let mut expected = 0;
        for round in 0..50 {
            for log in &logs {
                let (appended, must_sync) = log.write(&one_record(), round).unwrap();
                assert!(must_sync);
                let (tx, log2) = (tx.clone(), Arc::clone(log));
                let next = appended.next_offset();
                syncer.sync(
                    log,
                    next,
                    Box::new(move |r| {
                        // Told only once the offsets are durable.
                        let durable = log2.is_durable_to(next);
                        tx.send((r.is_ok(), durable)).unwrap();
                    }),
                );
                expected += 1;
            }
        }
        for _ in 0..expected {
            assert_eq!(rx.recv().unwrap(), (true, true));
        }
        assert!(rx.try_recv().is_err(), "each waiter is told exactly once");
        assert_eq!(logs[0].stats().next_offset, 50);
    }

    #[test]
    fn nothing_to_sync_completes_at_once_and_drop_runs_queued_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path());
        let syncer = Syncer::new(1).unwrap();
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        syncer.sync(&log, 0, Box::new(move |r| tx2.send(r.is_ok()).unwrap()));
        assert_eq!(rx.try_recv(), Ok(true), "completed on the caller's thread");

        for i in 0..20 {
            let (appended, _) = log.write(&one_record(), i).unwrap();
            let tx = tx.clone();
            syncer.sync(
                &log,
                appended.next_offset(),
                Box::new(move |r| tx.send(r.is_ok()).unwrap()),
            );
        }
        drop(syncer);
        assert_eq!(rx.try_iter().filter(|ok| *ok).count(), 20);
        assert!(log.is_durable_to(20));
    }
}
