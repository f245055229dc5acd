//! Feeds arbitrary bytes to the frame decoder and every body decoder.
//!
//! Beyond "never panics", it checks the encoding is canonical: whatever
//! decodes must re-encode to exactly the bytes it came from. That catches
//! decoders that accept something the encoder would never write (and so
//! would silently lose information).

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use spool_proto::{decode_frame, EncodeError, Frame, Push, Request, Response};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = decode_frame(&mut buf) {
        check(&frame);
    }
});

fn check(frame: &Frame) {
    let original = encoded("frame", |buf| frame.encode(buf));
    let id = frame.correlation_id;

    if let Ok(request) = Request::decode(frame.op, frame.body.clone()) {
        let again = encoded("request", |buf| request.encode(id, buf));
        assert_eq!(body(&again), body(&original), "request not canonical");
    }
    if let Ok(response) = Response::decode(frame.op, frame.body.clone()) {
        let again = encoded("response", |buf| response.encode(id, buf));
        assert_eq!(body(&again), body(&original), "response not canonical");
    }
    if let Ok(push) = Push::decode(frame.op, frame.body.clone()) {
        let again = encoded("push", |buf| push.encode(id, buf));
        assert_eq!(body(&again), body(&original), "push not canonical");
    }
}

/// What `encode` writes; whatever decoded must encode again.
fn encoded(what: &str, encode: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>) -> BytesMut {
    let mut buf = BytesMut::new();
    if let Err(e) = encode(&mut buf) {
        panic!("a decoded {what} re-encodes: {e:?}");
    }
    buf
}

/// Everything after the length prefix and kind byte: the op, correlation id
/// and body. The kind is skipped because the fuzzer may decode a request
/// frame's body as a response, which the encoder then labels kind 1.
fn body(frame: &[u8]) -> &[u8] {
    &frame[5..]
}
