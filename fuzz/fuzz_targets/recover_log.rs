//! Log recovery from arbitrary bytes: the input becomes the active segment
//! (after a valid file header, so recovery gets past the magic). Opening must
//! never panic; if it succeeds, every batch it serves passes its CRC.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spool_log::{Log, LogConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    // A valid header for base offset 0, as `Log::open` writes it.
    let mut file = Vec::with_capacity(24 + data.len());
    file.extend_from_slice(b"SPOOLLOG");
    file.extend_from_slice(&1u32.to_be_bytes());
    file.extend_from_slice(&0i64.to_be_bytes());
    let crc = crc32c::crc32c(&file[0..20]);
    file.extend_from_slice(&crc.to_be_bytes());
    file.extend_from_slice(data);
    if std::fs::write(dir.path().join("00000000000000000000.log"), &file).is_err() {
        return;
    }
    let config = LogConfig { durability: spool_log::Durability::Never, ..LogConfig::default() };
    let Ok((log, _report)) = Log::open(dir.path(), config) else { return };
    let mut offset = log.stats().start_offset;
    while let Ok(read) = log.read(offset, 1 << 20) {
        if read.bytes.is_empty() {
            break;
        }
        for batch in spool_batch::split_batches(&read.bytes) {
            let batch = batch.expect("served batches are whole");
            spool_batch::validate(batch).expect("served batches are valid");
        }
        offset = read.next_offset;
    }
});
