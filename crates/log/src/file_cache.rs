//! Open `.log` files of sealed segments, opened when a read needs them and
//! kept in a bounded, least-recently-used cache shared by every log in the
//! process, so that descriptors grow with what is being read rather than
//! with the number of segments ever written (5,000 topics used to hold
//! 15,000 descriptors for good). Only the active segment of each log keeps
//! its files open; a sealed segment's indexes live in memory and their
//! files are closed once the segment is sealed.
//!
//! Evicting a file only drops the cache's handle: a read in progress holds
//! its own, so the descriptor closes when that read is done. A segment's
//! entry is removed when the segment is dropped (deleted by retention or
//! truncation, or its log closed), so the cache never holds a file that no
//! log still names. Callers look files up under their log's lock, which
//! is also what retention deletes segments under: a read either finds the
//! segment (and opens a file that still exists) or does not find it.

use crate::LogError;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// Most sealed segments' `.log` files the process keeps open at once (one
/// descriptor each), in [`SealedFileCache::global`]: enough that consumers
/// reading old data rarely reopen a file, few enough next to the hard
/// open-file limit (often 1,048,576, sometimes 4,096) and the connections.
pub const SEALED_FILES_OPEN_MAX: usize = 1024;

/// Which segment a cached file belongs to: its log (numbered when opened,
/// unique in the process) and its base offset.
pub(crate) type SegmentKey = (u64, i64);

/// A bounded LRU cache of sealed segments' open files.
#[derive(Debug)]
pub struct SealedFileCache {
    capacity: usize,
    inner: Mutex<Lru>,
    /// Files opened because they were not in the cache.
    misses: AtomicU64,
}

#[derive(Debug, Default)]
struct Lru {
    files: HashMap<SegmentKey, (Arc<File>, u64)>,
    /// The keys by last use: the first is the least recently used.
    by_use: BTreeMap<u64, SegmentKey>,
    clock: u64,
}

impl Lru {
    fn touch(&mut self, key: SegmentKey) -> Option<Arc<File>> {
        self.clock += 1;
        let clock = self.clock;
        let (file, used) = self.files.get_mut(&key)?;
        self.by_use.remove(used);
        *used = clock;
        self.by_use.insert(clock, key);
        Some(Arc::clone(file))
    }

    fn remove(&mut self, key: SegmentKey) {
        if let Some((_, used)) = self.files.remove(&key) {
            self.by_use.remove(&used);
        }
    }

    /// Closes the least recently used files until at most `keep` are open.
    fn shrink_to(&mut self, keep: usize) {
        while self.files.len() > keep {
            let Some((_, key)) = self.by_use.pop_first() else {
                return;
            };
            self.files.remove(&key);
        }
    }
}

/// Numbers logs for [`SegmentKey`]s.
static NEXT_LOG_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_log_id() -> u64 {
    NEXT_LOG_ID.fetch_add(1, Ordering::Relaxed)
}

impl SealedFileCache {
    /// A cache that keeps at most `capacity` files open (at least one).
    pub fn new(capacity: usize) -> SealedFileCache {
        SealedFileCache {
            capacity: capacity.max(1),
            inner: Mutex::new(Lru::default()),
            misses: AtomicU64::new(0),
        }
    }

    /// The process's cache, of [`SEALED_FILES_OPEN_MAX`] files, which
    /// [`crate::Log::open`] uses.
    pub fn global() -> Arc<SealedFileCache> {
        static GLOBAL: OnceLock<Arc<SealedFileCache>> = OnceLock::new();
        Arc::clone(GLOBAL.get_or_init(|| Arc::new(SealedFileCache::new(SEALED_FILES_OPEN_MAX))))
    }

    fn lock(&self) -> MutexGuard<'_, Lru> {
        // Nothing in the map can be left half-changed by a panic that
        // matters: at worst a file is open or closed early.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Files open in the cache now.
    pub fn len(&self) -> usize {
        self.lock().files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Files opened so far because they were not in the cache.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// The file of segment `key` at `path`, from the cache or opened (read
    /// only) and cached, closing the least recently used beyond capacity.
    /// Out of descriptors, the cache lets go of half its files and tries
    /// once more.
    pub(crate) fn get_or_open(&self, key: SegmentKey, path: &Path) -> Result<Arc<File>, LogError> {
        if let Some(file) = self.lock().touch(key) {
            return Ok(file);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        // Opened without the cache's lock: other logs' reads go on.
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                self.lock().shrink_to(self.capacity / 2);
                File::open(path).map_err(|e| LogError::io(path, e))?
            }
            Err(e) => return Err(LogError::io(path, e)),
        };
        let file = Arc::new(file);
        let mut lru = self.lock();
        // Another reader of the segment may have opened it meanwhile.
        if let Some(theirs) = lru.touch(key) {
            return Ok(theirs);
        }
        lru.shrink_to(self.capacity - 1);
        lru.clock += 1;
        let clock = lru.clock;
        lru.files.insert(key, (Arc::clone(&file), clock));
        lru.by_use.insert(clock, key);
        Ok(file)
    }

    /// Forgets segment `key`'s file (it was deleted, changed or its log
    /// closed); reads holding it keep their handle.
    pub(crate) fn remove(&self, key: SegmentKey) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_file_is_closed_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = |i: i64| dir.path().join(format!("{i}.log"));
        for i in 0..4 {
            std::fs::write(path(i), b"x").unwrap();
        }
        let cache = SealedFileCache::new(3);
        for i in 0..3 {
            cache.get_or_open((1, i), &path(i)).unwrap();
        }
        assert_eq!(cache.misses(), 3);
        // 0 is used again, so 1 is the least recently used.
        cache.get_or_open((1, 0), &path(0)).unwrap();
        assert_eq!(cache.misses(), 3);
        let held = cache.get_or_open((1, 3), &path(3)).unwrap();
        assert_eq!(cache.len(), 3);
        cache.get_or_open((1, 0), &path(0)).unwrap();
        cache.get_or_open((1, 2), &path(2)).unwrap();
        assert_eq!(cache.misses(), 4);
        cache.get_or_open((1, 1), &path(1)).unwrap();
        assert_eq!(cache.misses(), 5, "1 was closed");
        // Evicted or removed, a file in use stays readable.
        cache.remove((1, 3));
        std::fs::remove_file(path(3)).unwrap();
        let mut byte = [0u8; 1];
        std::os::unix::fs::FileExt::read_exact_at(&*held, &mut byte, 0).unwrap();
        assert_eq!(&byte, b"x");
        assert!(cache.get_or_open((1, 3), &path(3)).is_err());
        assert_eq!(cache.len(), 3);
    }
}
