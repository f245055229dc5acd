//! Reusable buffers for reads of stored batches.
//!
//! A read of up to a few MiB used to allocate a fresh buffer each time: at
//! these sizes the allocator maps new pages, the `pread` copy faults every
//! page in, and the free unmaps them again (with a TLB shootdown across
//! CPUs). Profiles of consume and queue workloads put that at 15–20 % of
//! the server's CPU. Buffers handed out here go back to a small pool when
//! the last `Bytes` sharing them is dropped (after the server has written
//! the answer), so steady reads reuse pages that are already mapped.
//!
//! Sizes are rounded up to a power of two (at least [`CLASS_BYTES_MIN`]),
//! so a buffer is at most twice what its read asked for: byte budgets that
//! count a read's length never undercount its memory by more than that.
//! The pool keeps at most [`POOL_RETAINED_BYTES_MAX`] in all; beyond that
//! (and for buffers above [`CLASS_BYTES_MAX`]) memory goes back to the
//! allocator as before.

use bytes::Bytes;
use std::sync::{Mutex, MutexGuard};

/// Reads smaller than this are cheap to allocate: not pooled.
pub const CLASS_BYTES_MIN: usize = 64 * 1024;
/// Larger buffers (rare: a single batch bigger than a read's limit) are not
/// kept.
pub const CLASS_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Memory the pool may hold while no read uses it.
pub const POOL_RETAINED_BYTES_MAX: usize = 32 * 1024 * 1024;

const CLASSES: usize = (CLASS_BYTES_MAX / CLASS_BYTES_MIN).trailing_zeros() as usize + 1;

struct Pool {
    /// Free buffers per size class; every one has `len() == capacity()` of
    /// its class, so reuse needs no zero-filling.
    free: [Vec<Vec<u8>>; CLASSES],
    retained_bytes: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    free: [const { Vec::new() }; CLASSES],
    retained_bytes: 0,
});

fn pool() -> MutexGuard<'static, Pool> {
    // A panic while holding the lock leaves the lists consistent (pushes
    // and pops are single steps): keep using them.
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The class index and buffer size for a read of `len` bytes, if pooled.
fn class_of(len: usize) -> Option<(usize, usize)> {
    let size = len.max(CLASS_BYTES_MIN).checked_next_power_of_two()?;
    if len < CLASS_BYTES_MIN || size > CLASS_BYTES_MAX {
        return None;
    }
    Some(((size / CLASS_BYTES_MIN).trailing_zeros() as usize, size))
}

/// A buffer of at least `len` initialised bytes, to read into: a pooled one
/// when there is one of the right class. Its contents are unspecified.
pub fn take(len: usize) -> Vec<u8> {
    let Some((class, size)) = class_of(len) else {
        return vec![0; len];
    };
    let reused = {
        let mut p = pool();
        let buf = p.free[class].pop();
        if let Some(b) = &buf {
            p.retained_bytes -= b.len();
        }
        buf
    };
    reused.unwrap_or_else(|| vec![0; size])
}

/// Gives a buffer from [`take`] back for reuse (or frees it).
pub fn give_back(buf: Vec<u8>) {
    let Some((class, size)) = class_of(buf.len()) else {
        return;
    };
    if buf.len() != size || buf.capacity() != size {
        return;
    }
    let mut p = pool();
    if p.retained_bytes + size <= POOL_RETAINED_BYTES_MAX {
        p.retained_bytes += size;
        p.free[class].push(buf);
    }
}

/// The first `len` bytes of a buffer from [`take`], returned to the pool
/// when dropped.
struct Filled {
    buf: Vec<u8>,
    len: usize,
}

impl AsRef<[u8]> for Filled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Filled {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.buf));
    }
}

/// Shares the first `len` bytes of `buf` (from [`take`]) as `Bytes`; the
/// buffer goes back to the pool when the last clone or slice is dropped.
///
/// A read may keep much less than it asked for (a small batch followed by
/// one that did not fit): then the kept bytes are copied into a buffer of
/// their own size class (or an exact one below the smallest), and the
/// large buffer goes straight back, so a buffer held is never more than
/// twice its `Bytes`' length, which is what byte budgets count.
pub fn freeze(buf: Vec<u8>, len: usize) -> Bytes {
    let len = len.min(buf.len());
    if len == 0 {
        give_back(buf);
        return Bytes::new();
    }
    let Some((held_class, _)) = class_of(buf.len()) else {
        let mut buf = buf;
        buf.truncate(len);
        buf.shrink_to_fit();
        return Bytes::from(buf);
    };
    match class_of(len) {
        Some((class, _)) if class == held_class => Bytes::from_owner(Filled { buf, len }),
        Some(_) => {
            let mut small = take(len);
            small[..len].copy_from_slice(&buf[..len]);
            give_back(buf);
            Bytes::from_owner(Filled { buf: small, len })
        }
        None => {
            let kept = Bytes::copy_from_slice(&buf[..len]);
            give_back(buf);
            kept
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_up_to_at_most_twice_the_read() {
        assert_eq!(class_of(CLASS_BYTES_MIN - 1), None);
        assert_eq!(class_of(CLASS_BYTES_MIN), Some((0, CLASS_BYTES_MIN)));
        assert_eq!(
            class_of(CLASS_BYTES_MIN + 1),
            Some((1, 2 * CLASS_BYTES_MIN))
        );
        assert_eq!(class_of(1024 * 1024), Some((4, 1024 * 1024)));
        assert_eq!(
            class_of(CLASS_BYTES_MAX),
            Some((CLASSES - 1, CLASS_BYTES_MAX))
        );
        assert_eq!(class_of(CLASS_BYTES_MAX + 1), None);
        for len in [
            CLASS_BYTES_MIN,
            100_000,
            1_000_000,
            3_000_000,
            CLASS_BYTES_MAX,
        ] {
            let (_, size) = class_of(len).expect("pooled");
            assert!(size >= len && size < 2 * len.max(CLASS_BYTES_MIN) + 1);
        }
    }

    #[test]
    fn a_dropped_read_gives_its_buffer_back_and_the_next_reuses_it() {
        // Another test's buffers may come and go meanwhile: use a size
        // class of its own and compare addresses.
        let len = 3 * 1024 * 1024 + 5;
        let mut buf = take(len);
        assert_eq!(buf.len(), 4 * 1024 * 1024);
        buf[..4].copy_from_slice(b"abcd");
        let addr = buf.as_ptr();
        let bytes = freeze(buf, 4);
        assert_eq!(&bytes[..], b"abcd");
        let slice = bytes.slice(1..3);
        drop(bytes);
        assert_eq!(&slice[..], b"bc", "a slice keeps the buffer alive");
        drop(slice);
        let again = take(len);
        assert_eq!(again.as_ptr(), addr, "the same pages, reused");
        give_back(again);
    }

    #[test]
    fn a_read_that_kept_little_does_not_hold_a_large_buffer() {
        // Kept 200 KiB of an 8 MiB buffer: copied into a 256 KiB one.
        let mut big = take(8 * 1024 * 1024);
        big[..3].copy_from_slice(b"xyz");
        let kept = freeze(big, 200 * 1024);
        assert_eq!(kept.len(), 200 * 1024);
        assert_eq!(&kept[..3], b"xyz");
        // Kept 100 bytes of 1 MiB: an exact copy, nothing pooled held.
        let mut big = take(1024 * 1024);
        big[..3].copy_from_slice(b"abc");
        let kept = freeze(big, 100);
        assert_eq!(&kept[..3], b"abc");
        assert_eq!(kept.len(), 100);
    }

    #[test]
    fn small_and_huge_reads_are_not_pooled() {
        let small = freeze(take(100), 10);
        assert_eq!(small.len(), 10);
        let huge = take(CLASS_BYTES_MAX + 1);
        assert_eq!(huge.len(), CLASS_BYTES_MAX + 1);
        assert_eq!(class_of(huge.len()), None, "freed, never kept");
        assert_eq!(freeze(huge, 7).len(), 7);
    }
}
