//! Reading leased messages from the topic's log: a receive decodes only
//! the records it leased, from the last read's bytes when they cover them,
//! resuming where the previous receive stopped.

use super::*;

/// The bytes of a partition log read last for a receive. Consecutive
/// receives mostly lease neighbouring messages of the same batches (a
/// producer's batch holds up to thousands of messages, a receive up to a few
/// hundred), so without this every receive re-read, re-checked and copied
/// up to [`SCAN_BYTES`] from the log: that was most of a receive's cost.
/// The log's bytes at an offset never change once written, so the copy
/// stays right; it holds the read's memory until the next read replaces it.
pub(super) struct RecentRead {
    /// Offsets in `from..next` are in `bytes` (unless retention removed them).
    from: i64,
    next: i64,
    bytes: Bytes,
    /// Where the last receive from `bytes` stopped decoding.
    resume: Option<Resume>,
}

/// A place in a [`RecentRead`]'s bytes to go on decoding from: the next
/// receive mostly leases the messages right after the last one's, and
/// passing over the hundreds of records before them again (each a cache
/// miss, 1 KiB apart) was a tenth of the server's time in a queue run.
#[derive(Debug, Clone, Copy)]
struct Resume {
    /// Where the batch starts in the read's bytes.
    batch_at: usize,
    /// The offset of the record at `at`.
    offset: i64,
    at: spool_batch::RecordPosition,
}

/// The log's bytes from (a batch containing) `offset` on: the recent read
/// if it covers `offset` (with where the last receive stopped in it), else a
/// fresh read, which becomes the recent one.
fn read_at(
    log: &Log,
    recent: &Mutex<Option<RecentRead>>,
    offset: i64,
) -> Result<(Bytes, Option<Resume>)> {
    if let Some(r) = lock(recent).as_ref() {
        if r.from <= offset && offset < r.next {
            return Ok((r.bytes.clone(), r.resume));
        }
    }
    let read = log.read(offset, SCAN_BYTES)?;
    *lock(recent) = Some(RecentRead {
        from: offset,
        next: read.next_offset,
        bytes: read.bytes.clone(),
        resume: None,
    });
    Ok((read.bytes, None))
}

/// Notes where decoding `bytes` stopped, if they are still the recent read
/// and no concurrent receive got further.
fn remember(recent: &Mutex<Option<RecentRead>>, bytes: &Bytes, resume: Resume) {
    if let Some(r) = lock(recent).as_mut() {
        let same = r.bytes.as_ptr() == bytes.as_ptr() && r.bytes.len() == bytes.len();
        if same && r.resume.is_none_or(|old| old.offset < resume.offset) {
            r.resume = Some(resume);
        }
    }
}

/// Reads the leased records' contents from the partition log. Keys, values
/// and headers are slices of the read's bytes, not copies.
pub(super) fn read_messages(
    log: &Log,
    recent: &Mutex<Option<RecentRead>>,
    partition: u32,
    leases: &[state::Lease],
) -> Result<Vec<LeasedMessage>> {
    let mut out = Vec::with_capacity(leases.len());
    let mut i = 0;
    while i < leases.len() {
        let (bytes, resume) = read_at(log, recent, leases[i].offset)?;
        if bytes.is_empty() {
            i += 1; // deleted by retention meanwhile
            continue;
        }
        let before = i;
        let slice = |s: &[u8]| bytes.slice_ref(s);
        let mut stopped = None;
        for batch in spool_batch::split_batches(&bytes) {
            let batch = batch?;
            let h = spool_batch::BatchHeader::parse(batch)?;
            while i < leases.len() && leases[i].offset < h.base_offset {
                i += 1; // not in the log any more
            }
            if i >= leases.len() || leases[i].offset > h.last_offset() {
                continue;
            }
            // Decode only the leased records: a receive takes a few hundred
            // of a batch's thousands, and concurrent receivers take turns
            // on the same batch. Record `k` of a stored batch has offset
            // `base_offset + k` (checked when it was produced).
            let batch_at = batch.as_ptr() as usize - bytes.as_ptr() as usize;
            let resumed = resume
                .filter(|r| {
                    r.batch_at == batch_at
                        && r.offset <= leases[i].offset
                        && r.offset == h.base_offset + r.at.index() as i64
                })
                .and_then(|r| Some((spool_batch::RecordIter::resume(batch, &h, r.at)?, r.offset)));
            let (mut iter, mut next_offset) =
                resumed.unwrap_or_else(|| (spool_batch::records(batch, &h), h.base_offset));
            while i < leases.len() && leases[i].offset <= h.last_offset() {
                let offset = leases[i].offset;
                let Ok(skip) = usize::try_from(offset - next_offset) else {
                    i += 1; // leases come in offset order; never expected
                    continue;
                };
                iter.skip_records(skip)?;
                let Some(r) = iter.next() else {
                    break;
                };
                let r = r?;
                next_offset = offset + 1;
                let l = leases[i];
                out.push(LeasedMessage {
                    receipt: make_receipt(partition, offset, l.lease),
                    partition,
                    offset,
                    key: r.key.map(slice),
                    value: r.value.map(slice),
                    headers: r
                        .headers
                        .iter()
                        .map(|hd| (hd.key.to_owned(), hd.value.map(slice)))
                        .collect(),
                    timestamp_ms: h.base_timestamp + r.timestamp_delta,
                    deliveries: l.deliveries,
                    lease_deadline_ms: l.deadline_ms,
                });
                i += 1;
            }
            stopped = Some(Resume {
                batch_at,
                offset: next_offset,
                at: iter.position(),
            });
        }
        if let Some(r) = stopped {
            remember(recent, &bytes, r);
        }
        if i == before {
            i += 1;
        }
    }
    Ok(out)
}
