//! Arbitrary bytes through the record-batch validator and record iterator:
//! never a panic, and whatever validates iterates cleanly to the end.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = spool_batch::validate(data) {
        let count = spool_batch::records(data, &header).map(|r| r.expect("validated batch")).count();
        assert_eq!(count as i32, header.record_count);
    }
    for batch in spool_batch::split_batches(data) {
        let Ok(batch) = batch else { break };
        let _ = spool_batch::validate(batch);
    }
});
