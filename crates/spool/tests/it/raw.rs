//! A minimal raw-protocol client for tests that must not depend on the
//! client library under test (or that need exact control over frames).

use bytes::BytesMut;
use spool_proto::{self as p, Request, Response};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub struct Raw {
    pub stream: TcpStream,
    buf: BytesMut,
    next_cid: u32,
}

impl Raw {
    pub fn connect(addr: &str) -> Raw {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        let mut raw = Raw {
            stream,
            buf: BytesMut::new(),
            next_cid: 1,
        };
        let r = raw.call(&Request::Hello(p::Hello {
            min_version: 1,
            max_version: 1,
            client_id: "raw".into(),
            token: None,
        }));
        assert!(r.result().is_ok(), "{r:?}");
        raw
    }

    pub fn send(&mut self, request: &Request) -> u32 {
        let cid = self.next_cid;
        self.next_cid += 1;
        let mut out = BytesMut::new();
        request.encode(cid, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
        cid
    }

    pub fn receive(&mut self) -> std::io::Result<(u32, Response)> {
        let mut chunk = [0u8; 65536];
        loop {
            if let Some(frame) = p::decode_frame(&mut self.buf).unwrap() {
                return Ok((
                    frame.correlation_id,
                    Response::decode(frame.op, frame.body).unwrap(),
                ));
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub fn call(&mut self, request: &Request) -> Response {
        let cid = self.send(request);
        let (got, r) = self.receive().unwrap();
        assert_eq!(got, cid);
        r
    }
}

/// A batch of (key, value) records.
pub fn batch(records: &[(String, String)]) -> bytes::Bytes {
    let mut b = spool_batch::BatchBuilder::new();
    for (k, v) in records {
        b.push(&spool_batch::NewRecord {
            key: Some(k.clone().into_bytes()),
            value: Some(v.clone().into_bytes()),
            headers: vec![],
            timestamp_ms: 1,
        })
        .unwrap();
    }
    b.finish().unwrap().into()
}
