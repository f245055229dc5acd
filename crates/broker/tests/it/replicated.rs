//! A cluster's topics as the broker keeps them: partition logs in entry
//! mode, written by the replication layer (spool-cluster), never by the
//! broker's own produce path.

use spool_batch::{BatchBuilder, NewRecord};
use spool_broker::*;
use spool_types::ErrorCode;

fn batch(values: &[&str]) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for v in values {
        b.push(&NewRecord::value(v.as_bytes().to_vec(), 1)).unwrap();
    }
    b.finish().unwrap()
}

#[test]
fn a_replicated_topic_has_entry_mode_logs_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (b, _) = Broker::open(dir.path(), 0).unwrap();
        b.create_replicated_topic("orders", 2, TopicConfig::default(), 0)
            .unwrap();
        // Applying the same cluster event again changes nothing.
        b.create_replicated_topic("orders", 2, TopicConfig::default(), 0)
            .unwrap();
        let log = b.partition_log("orders", 1).unwrap();
        assert!(log.config().entry_mode);
        let appended = log.write_entry(&batch(&["a", "b"]), 1, 0).unwrap();
        assert_eq!((appended.index, appended.base_offset), (1, 0));
    }
    let (b, _) = Broker::open(dir.path(), 0).unwrap();
    let log = b.partition_log("orders", 1).unwrap();
    assert!(log.config().entry_mode, "reopened in entry mode");
    assert_eq!(log.entry_bounds().unwrap().last.map(|l| l.index), Some(1));
    assert_eq!(
        b.partition_log("orders", 2).unwrap_err().code,
        ErrorCode::UnknownPartition
    );
}

#[test]
fn the_broker_checks_a_replicated_produce_but_never_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (b, _) = Broker::open(dir.path(), 0).unwrap();
    b.create_replicated_topic("orders", 3, TopicConfig::default(), 0)
        .unwrap();
    let partition = b
        .check_replicated_produce("orders", &Routing::Partition(2), &batch(&["x"]))
        .unwrap();
    assert_eq!(partition, 2);
    let err = b
        .check_replicated_produce("orders", &Routing::Partition(3), &batch(&["x"]))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownPartition);
    let mut garbage = batch(&["x"]);
    let last = garbage.len() - 1;
    garbage[last] ^= 0xff;
    assert!(b
        .check_replicated_produce("orders", &Routing::Spread, &garbage)
        .is_err());
    let Err(err) = b.start_produce("orders", &Routing::Partition(0), &batch(&["x"]), 0) else {
        panic!("the broker wrote a replicated topic's batch itself");
    };
    assert_eq!(err.code, ErrorCode::Internal, "{err:?}");
    assert!(err.message.contains("replicated"));
}
