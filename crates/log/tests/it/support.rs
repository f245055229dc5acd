use spool_batch::{BatchBuilder, NewRecord};
use spool_log::ReadBatches;

/// A batch of `n` records whose values name their position: "{tag}-{i}".
pub fn batch(tag: &str, n: usize, timestamp_ms: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for i in 0..n {
        b.push(&NewRecord {
            key: Some(format!("k{i}").into_bytes()),
            value: Some(format!("{tag}-{i}").into_bytes()),
            headers: vec![],
            timestamp_ms,
        })
        .unwrap();
    }
    b.finish().unwrap()
}

/// A batch with one record of `size` value bytes.
pub fn sized(size: usize, fill: u8, timestamp_ms: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    b.push(&NewRecord::value(vec![fill; size], timestamp_ms))
        .unwrap();
    b.finish().unwrap()
}

/// Every (offset, value) in a read result.
pub fn values(read: &ReadBatches) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    for batch in spool_batch::split_batches(&read.bytes) {
        let batch = batch.unwrap();
        let header = spool_batch::validate(batch).unwrap();
        for r in spool_batch::records(batch, &header) {
            let r = r.unwrap();
            out.push((
                header.base_offset + r.offset_delta as i64,
                r.value.unwrap_or_default().to_vec(),
            ));
        }
    }
    out
}

/// Reads everything from `from` to the end.
pub fn read_all(log: &spool_log::Log, from: i64) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let r = log.read(offset, 1 << 20).unwrap();
        if r.bytes.is_empty() {
            if offset >= r.end_offset {
                break;
            }
            panic!("empty read at {offset} below end {}", r.end_offset);
        }
        out.extend(values(&r).into_iter().filter(|(o, _)| *o >= offset));
        offset = r.next_offset;
    }
    out
}
