use crate::*;
use proptest::prelude::*;

fn record_strategy() -> impl Strategy<Value = NewRecord> {
    (
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..32)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..256)),
        proptest::collection::vec(
            (
                "[a-z]{0,8}",
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
            ),
            0..4,
        ),
        0i64..2_000_000_000_000,
    )
        .prop_map(|(key, value, headers, timestamp_ms)| NewRecord {
            key,
            value,
            headers,
            timestamp_ms,
        })
}

fn build(records: &[NewRecord]) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for r in records {
        b.push(r).unwrap();
    }
    b.finish().unwrap()
}

/// One to nineteen records of any shape.
fn some_records() -> impl Strategy<Value = Vec<NewRecord>> {
    proptest::collection::vec(record_strategy(), 1..20)
}

/// [`build`], and the header `validate` reads from the batch.
fn build_valid(records: &[NewRecord]) -> (Vec<u8>, BatchHeader) {
    let batch = build(records);
    let header = validate(&batch).unwrap();
    (batch, header)
}

proptest! {
    #[test]
    fn round_trip(records in some_records(), base in 0i64..1<<40) {
        let mut batch = build(&records);
        set_base_offset(&mut batch, base);
        let header = validate(&batch).unwrap();
        prop_assert_eq!(header.base_offset, base);
        prop_assert_eq!(header.record_count as usize, records.len());
        prop_assert_eq!(header.last_offset(), base + records.len() as i64 - 1);
        prop_assert_eq!(header.max_timestamp, records.iter().map(|r| r.timestamp_ms).max().unwrap());
        let decoded: Vec<_> = crate::records(&batch, &header).collect::<Result<_, _>>().unwrap();
        for (i, (d, r)) in decoded.iter().zip(&records).enumerate() {
            prop_assert_eq!(d.offset_delta as usize, i);
            prop_assert_eq!(d.key, r.key.as_deref());
            prop_assert_eq!(d.value, r.value.as_deref());
            prop_assert_eq!(header.base_timestamp + d.timestamp_delta, r.timestamp_ms);
            let hs: Vec<(String, Option<Vec<u8>>)> = d.headers.iter().map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec))).collect();
            prop_assert_eq!(&hs, &r.headers);
        }
    }

    /// A builder on a reused buffer (any old contents, any capacity) makes
    /// the same batch as a fresh one.
    #[test]
    fn a_reused_buffer_builds_the_same_batch(
        records in some_records(),
        old in proptest::collection::vec(any::<u8>(), 0..300),
        hint in 0usize..4096,
    ) {
        let mut b = BatchBuilder::in_buffer(old, hint);
        for r in &records {
            b.push(r).unwrap();
        }
        prop_assert_eq!(b.finish().unwrap(), build(&records));
    }

    /// `validate_each` shows every record once, in order, as decoding them
    /// after `validate` would, and answers as `validate` does.
    #[test]
    fn validate_each_shows_every_record_in_order(
        records in some_records(),
        flip in any::<Option<(usize, u8)>>(),
    ) {
        let mut batch = build(&records);
        if let Some((pick, bit)) = flip {
            let at = pick % batch.len();
            batch[at] ^= 1 << (bit % 8);
        }
        let mut shown = Vec::new();
        let answer = validate_each(&batch, |r| shown.push(r.clone()));
        prop_assert_eq!(&answer, &validate(&batch));
        if let Ok(header) = answer {
            let decoded: Vec<_> = crate::records(&batch, &header).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(shown, decoded);
        }
    }

    /// Skipping `n` records then decoding yields record `n`, as decoding
    /// every record would; skipping past the end is an error.
    #[test]
    fn skipping_lands_on_the_same_record_as_decoding(
        records in some_records(),
        pick in any::<usize>(),
    ) {
        let (batch, header) = build_valid(&records);
        let n = pick % records.len();
        let mut iter = crate::records(&batch, &header);
        iter.skip_records(n).unwrap();
        let skipped = iter.next().unwrap().unwrap();
        let decoded = crate::records(&batch, &header).nth(n).unwrap().unwrap();
        prop_assert_eq!(skipped, decoded);
        let mut iter = crate::records(&batch, &header);
        prop_assert!(iter.skip_records(records.len() + 1).is_err());
    }

    /// Resuming at a position taken after `n` records yields the rest of
    /// the batch, as one pass does; a position that cannot be in the batch
    /// is refused.
    #[test]
    fn resuming_yields_the_same_records_as_one_pass(
        records in some_records(),
        pick in any::<usize>(),
    ) {
        let (batch, header) = build_valid(&records);
        let n = pick % (records.len() + 1);
        let mut iter = crate::records(&batch, &header);
        iter.skip_records(n).unwrap();
        let at = iter.position();
        prop_assert_eq!(at.index(), n);
        let resumed: Vec<_> = crate::RecordIter::resume(&batch, &header, at)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let rest: Vec<_> = crate::records(&batch, &header)
            .skip(n)
            .collect::<Result<_, _>>()
            .unwrap();
        prop_assert_eq!(resumed, rest);
        // The end of the batch is a position; past it is not.
        let mut iter = crate::records(&batch, &header);
        iter.skip_records(records.len()).unwrap();
        let end = iter.position();
        prop_assert_eq!(crate::RecordIter::resume(&batch, &header, end).unwrap().count(), 0);
        let short = &batch[..batch.len() - 1];
        prop_assert!(crate::RecordIter::resume(short, &header, end).is_none());
    }

    /// Any single flipped bit inside the CRC-covered region is detected, and
    /// no corruption anywhere makes `validate` panic.
    #[test]
    fn bit_flips_are_caught(records in proptest::collection::vec(record_strategy(), 1..5), pick in any::<usize>(), bit in 0u8..8) {
        let mut batch = build(&records);
        let at = pick % batch.len();
        batch[at] ^= 1 << bit;
        let result = validate(&batch);
        if at >= layout::ATTRIBUTES || (layout::MAGIC..layout::ATTRIBUTES).contains(&at) || (layout::BATCH_LENGTH..layout::LEADER_EPOCH).contains(&at) {
            prop_assert!(result.is_err(), "flip at {} not detected", at);
        }
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = validate(&bytes);
        for b in split_batches(&bytes) { let _ = b; }
    }
}

#[test]
fn every_truncation_is_refused() {
    let records: Vec<_> = (0..5)
        .map(|i| NewRecord::value(vec![i as u8; 40], 1000 + i))
        .collect();
    let batch = build(&records);
    for cut in 0..batch.len() {
        assert!(validate(&batch[..cut]).is_err(), "cut at {cut} accepted");
    }
    assert!(validate(&batch).is_ok());
}

#[test]
fn split_walks_concatenated_batches_and_stops_at_a_partial_one() {
    let a = build(&[NewRecord::value("a", 1)]);
    let b = build(&[NewRecord::value("bb", 2), NewRecord::value("ccc", 3)]);
    let mut all = a.clone();
    all.extend_from_slice(&b);
    all.extend_from_slice(&a[..20]);
    let parts: Vec<_> = split_batches(&all).collect::<Result<_, _>>().unwrap();
    assert_eq!(parts, vec![&a[..], &b[..]]);
}

#[test]
fn limits_are_enforced_with_typed_errors() {
    let mut b = BatchBuilder::new();
    let big = NewRecord::value(vec![0u8; spool_types::limits::RECORD_BYTES_MAX + 1], 0);
    let err = b.push(&big).unwrap_err();
    assert_eq!(err.code(), spool_types::ErrorCode::MessageTooLarge);
    assert!(BatchBuilder::new().finish().is_err());
    // Compressed batches are refused, not misread.
    let mut batch = build(&[NewRecord::value("x", 1)]);
    batch[layout::ATTRIBUTES + 1] |= 1; // gzip
    let crc = crc32c::crc32c(&batch[layout::ATTRIBUTES..]);
    batch[layout::CRC..layout::CRC + 4].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(
        validate(&batch).unwrap_err().code(),
        spool_types::ErrorCode::UnsupportedBatch
    );
}

/// A batch laid out by hand, field by field, from Kafka's protocol
/// documentation (one record, key "k", value "v") decodes with our reader,
/// and our builder produces exactly those bytes.
#[test]
fn matches_kafka_layout_for_a_known_batch() {
    let body: Vec<u8> = vec![0x00, 0x00, 0x00, 0x02, b'k', 0x02, b'v', 0x00];
    let mut batch = Vec::new();
    batch.extend_from_slice(&7i64.to_be_bytes()); // base offset
    let total = 61 + 1 + body.len();
    batch.extend_from_slice(&((total - 12) as i32).to_be_bytes());
    batch.extend_from_slice(&0i32.to_be_bytes()); // leader epoch
    batch.push(2); // magic
    batch.extend_from_slice(&[0; 4]); // crc
    batch.extend_from_slice(&0i16.to_be_bytes());
    batch.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    batch.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    batch.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    batch.extend_from_slice(&(-1i64).to_be_bytes());
    batch.extend_from_slice(&(-1i16).to_be_bytes());
    batch.extend_from_slice(&(-1i32).to_be_bytes());
    batch.extend_from_slice(&1i32.to_be_bytes());
    batch.push((body.len() as u8) << 1); // zig-zag length
    batch.extend_from_slice(&body);
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    let header = validate(&batch).unwrap();
    assert_eq!(header.base_offset, 7);
    let rec: Vec<_> = records(&batch, &header).collect::<Result<_, _>>().unwrap();
    assert_eq!(rec[0].key, Some(&b"k"[..]));
    assert_eq!(rec[0].value, Some(&b"v"[..]));
    // Our builder produces the identical bytes for the same record.
    let mut ours = build(&[NewRecord {
        key: Some(b"k".to_vec()),
        value: Some(b"v".to_vec()),
        headers: vec![],
        timestamp_ms: 1_700_000_000_000,
    }]);
    set_base_offset(&mut ours, 7);
    set_leader_epoch(&mut ours, 0);
    assert_eq!(ours, batch);
}

proptest! {
    /// A control batch built with any body reads back as one: the control
    /// bit, no records, no offsets covered, a valid CRC, the body intact,
    /// also after the log patches its base offset and leader epoch.
    #[test]
    fn control_batch_round_trip(
        body in proptest::collection::vec(any::<u8>(), 0..600),
        timestamp_ms in 0i64..2_000_000_000_000,
        base in 0i64..1 << 40,
        epoch in 0i32..i32::MAX,
    ) {
        let mut batch = control_batch(&body, timestamp_ms).unwrap();
        set_base_offset(&mut batch, base);
        set_leader_epoch(&mut batch, epoch);
        let header = validate_control(&batch).unwrap();
        prop_assert!(header.is_control());
        prop_assert_eq!(header.record_count, 0);
        prop_assert_eq!(header.last_offset_delta, -1);
        prop_assert_eq!(header.base_offset, base);
        prop_assert_eq!(header.next_offset(), base);
        prop_assert_eq!(header.partition_leader_epoch, epoch);
        prop_assert_eq!(header.max_timestamp, timestamp_ms);
        prop_assert_eq!(header.total_len(), batch.len());
        header.verify_crc(&batch).unwrap();
        prop_assert_eq!(control_body(&batch, &header), Some(&body[..]));
        prop_assert_eq!(BatchHeader::parse_with_control(&batch).unwrap(), header);
    }
}

/// Clients may not send control batches: `validate` and the strict header
/// parse refuse them, and a flipped bit in one is caught by its CRC.
#[test]
fn validate_refuses_control_batches() {
    let batch = control_batch(b"{\"voters\":[1,2,3]}", 1_700_000_000_000).unwrap();
    assert!(validate(&batch).is_err());
    assert!(BatchHeader::parse(&batch).is_err());
    let mut flipped = batch.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(matches!(
        validate_control(&flipped),
        Err(BatchError::CrcMismatch { .. })
    ));
}

/// The lenient parse accepts only the control shape Spool writes, and a
/// data batch is not a control batch.
#[test]
fn control_shape_is_checked() {
    let data = build(&[NewRecord::value("x", 1)]);
    let header = BatchHeader::parse_with_control(&data).unwrap();
    assert!(!header.is_control());
    assert_eq!(control_body(&data, &header), None);
    assert!(validate_control(&data).is_err());
    // A control batch claiming a record, or covering an offset, is refused.
    for (at, value) in [(layout::RECORD_COUNT, 1i32), (layout::LAST_OFFSET_DELTA, 0)] {
        let mut batch = control_batch(b"body", 5).unwrap();
        batch[at..at + 4].copy_from_slice(&value.to_be_bytes());
        assert!(BatchHeader::parse_with_control(&batch).is_err(), "{at}");
    }
    // A data batch with no records is still refused.
    let mut empty = control_batch(b"", 5).unwrap();
    empty[layout::ATTRIBUTES..layout::ATTRIBUTES + 2].copy_from_slice(&0i16.to_be_bytes());
    assert!(BatchHeader::parse_with_control(&empty).is_err());
    let too_big = vec![0u8; spool_types::limits::BATCH_BYTES_MAX];
    assert!(matches!(
        control_batch(&too_big, 0),
        Err(BatchError::TooLarge { .. })
    ));
}
