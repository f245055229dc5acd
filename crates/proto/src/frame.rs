//! Framing: the length prefix and the 7-byte frame header.
//!
//! ```text
//! +----------------+--------+----------+--------------------+---------+
//! | length: u32 BE | kind u8| op u16 BE| correlation_id u32 | body... |
//! +----------------+--------+----------+--------------------+---------+
//!                  |<------------------ length bytes ---------------->|
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};
use spool_types::limits::FRAME_BYTES_MAX;

use crate::error::{EncodeError, FrameError};
use crate::wire::{Writer, SHARED_BYTES_MIN};

/// Bytes in the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// Bytes in the header after the length prefix: kind, op, correlation id.
pub const FRAME_HEADER_BYTES: usize = 7;

// The length field is a u32; the limit must be expressible in it.
const _: () = assert!(FRAME_BYTES_MAX <= u32::MAX as usize);
const FRAME_LEN_MAX: u32 = FRAME_BYTES_MAX as u32;
const FRAME_LEN_MIN: u32 = FRAME_HEADER_BYTES as u32;

/// The content types a TLS record starts with (RFC 8446 §5.1):
/// change_cipher_spec, alert, handshake, application_data.
const TLS_CONTENT_TYPES: std::ops::RangeInclusive<u8> = 20..=23;
/// The second byte of every TLS record: the major version, 3 from SSL 3.0
/// to TLS 1.3.
const TLS_MAJOR_VERSION: u8 = 3;
// A length prefix that starts like a TLS record announces more than any
// frame may be, so no frame is ever mistaken for TLS.
const _: () = assert!(FRAME_LEN_MAX < u32::from_be_bytes([*TLS_CONTENT_TYPES.start(), 0, 0, 0]));

/// Whether `buf` starts like a TLS record (a ClientHello sent to a plain
/// listener, or a TLS server's alert read by a plain client).
pub fn starts_like_tls(buf: &[u8]) -> bool {
    matches!(buf, [kind, TLS_MAJOR_VERSION, ..] if TLS_CONTENT_TYPES.contains(kind))
}

/// Who sent a frame and what it answers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// Client to server; `correlation_id` is chosen by the client.
    Request = 0,
    /// Server to client; echoes the request's `op` and `correlation_id`.
    Response = 1,
    /// Server to client, unsolicited; `correlation_id` is the subscription id.
    Push = 2,
}

impl FrameKind {
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    pub fn from_u8(value: u8) -> Option<FrameKind> {
        match value {
            0 => Some(FrameKind::Request),
            1 => Some(FrameKind::Response),
            2 => Some(FrameKind::Push),
            _ => None,
        }
    }
}

/// One whole frame, header decoded, body still raw.
///
/// `op` stays a raw number here so that a server can answer an unknown op
/// with `UNKNOWN_REQUEST_TYPE` under the right correlation id instead of
/// dropping the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameKind,
    pub op: u16,
    pub correlation_id: u32,
    /// The op-specific body: a slice of the read buffer, not a copy.
    pub body: Bytes,
}

impl Frame {
    /// Appends this frame verbatim (useful for proxies and tests).
    pub fn encode(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        encode_frame(buf, self.kind, self.op, self.correlation_id, |w| {
            w.raw(&self.body)
        })
    }
}

/// Checks the length prefix at the start of `buf` without consuming anything.
///
/// Returns the total size of the frame in bytes, *including* the 4-byte
/// prefix, once the prefix is readable; `Ok(None)` if fewer than 4 bytes are
/// buffered. A length above [`FRAME_BYTES_MAX`] or below the header size is
/// an error at once, so a server can drop a connection announcing a 2 GiB
/// frame before reading (or allocating for) any of it; one that starts like
/// a TLS record is [`FrameError::TlsRecord`]. If the kind byte is already
/// buffered it is checked too.
pub fn peek_frame_size(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.first_chunk::<LENGTH_PREFIX_BYTES>() else {
        return Ok(None);
    };
    let length = u32::from_be_bytes(*prefix);
    if starts_like_tls(prefix) {
        return Err(FrameError::TlsRecord {
            content_type: prefix[0],
        });
    }
    if length > FRAME_LEN_MAX {
        return Err(FrameError::TooLarge {
            length,
            max: FRAME_BYTES_MAX,
        });
    }
    if length < FRAME_LEN_MIN {
        return Err(FrameError::TooShort {
            length,
            min: FRAME_HEADER_BYTES,
        });
    }
    if let Some(&kind) = buf.get(LENGTH_PREFIX_BYTES) {
        if FrameKind::from_u8(kind).is_none() {
            return Err(FrameError::UnknownKind { kind });
        }
    }
    // length <= FRAME_BYTES_MAX, so the sum cannot overflow.
    Ok(Some(LENGTH_PREFIX_BYTES + length as usize))
}

/// Takes one whole frame off the front of `buf`.
///
/// `Ok(None)` means "not yet": fewer bytes than the frame needs are buffered,
/// and `buf` is left untouched. On success exactly one frame's bytes are
/// consumed and the body is split off without copying. Errors leave `buf`
/// untouched too; the stream is then out of sync and should be closed.
///
/// This never reserves capacity for the announced frame: a peer that sends
/// only a large length prefix must not make the reader allocate for it.
pub fn decode_frame(buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
    let Some(size) = peek_frame_size(buf)? else {
        return Ok(None);
    };
    if buf.len() < size {
        return Ok(None);
    }
    let mut frame = buf.split_to(size).freeze();
    frame.advance(LENGTH_PREFIX_BYTES);
    // peek_frame_size checked the length covers the header and the kind is
    // known, so these reads are in bounds.
    let kind_byte = frame.get_u8();
    let kind = FrameKind::from_u8(kind_byte).ok_or(FrameError::UnknownKind { kind: kind_byte })?;
    let op = frame.get_u16();
    let correlation_id = frame.get_u32();
    Ok(Some(Frame {
        kind,
        op,
        correlation_id,
        body: frame,
    }))
}

/// Encodes one frame as a list of parts whose concatenation is exactly what
/// [`encode_frame`] would write; large fields written with
/// `Writer::shared_bytes` are parts of their own, shared with the caller's
/// buffers rather than copied (a fetch answer's stored batches go to the
/// socket straight from the buffer they were read into).
pub(crate) fn encode_frame_parts(
    kind: FrameKind,
    op: u16,
    correlation_id: u32,
    body: impl FnOnce(&mut Writer<'_>) -> Result<(), EncodeError>,
) -> Result<Vec<Bytes>, EncodeError> {
    let mut buf = BytesMut::new();
    buf.put_u32(0);
    buf.put_u8(kind.as_u8());
    buf.put_u16(op);
    buf.put_u32(correlation_id);
    let mut shared = Vec::new();
    let len = {
        let mut writer = Writer::sharing(&mut buf, 0, &mut shared);
        body(&mut writer)?;
        writer.frame_len()
    };
    let len = u32::try_from(len)
        .ok()
        .filter(|&l| l <= FRAME_LEN_MAX)
        .ok_or(EncodeError::FrameTooLarge {
            len,
            max: FRAME_BYTES_MAX,
        })?;
    buf[..LENGTH_PREFIX_BYTES].copy_from_slice(&len.to_be_bytes());
    let mut parts = Vec::with_capacity(2 * shared.len() + 1);
    let mut taken = 0;
    for (at, bytes) in shared {
        parts.push(buf.split_to(at - taken).freeze());
        taken = at;
        parts.push(bytes);
    }
    if !buf.is_empty() || parts.is_empty() {
        parts.push(buf.freeze());
    }
    Ok(parts)
}

/// Appends one frame whose body is written by `body`.
///
/// The length is patched in afterwards. If `body` fails, or the frame would
/// exceed [`FRAME_BYTES_MAX`], `buf` is truncated back to where it was.
pub(crate) fn encode_frame(
    buf: &mut BytesMut,
    kind: FrameKind,
    op: u16,
    correlation_id: u32,
    body: impl FnOnce(&mut Writer<'_>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = buf.len();
    buf.put_u32(0);
    buf.put_u8(kind.as_u8());
    buf.put_u16(op);
    buf.put_u32(correlation_id);
    let mut writer = Writer::new(buf, start);
    let result = body(&mut writer).and_then(|()| {
        let len = writer.frame_len();
        u32::try_from(len)
            .ok()
            .filter(|&l| l <= FRAME_LEN_MAX)
            .ok_or(EncodeError::FrameTooLarge {
                len,
                max: FRAME_BYTES_MAX,
            })
    });
    match result {
        Ok(len) => {
            buf[start..start + LENGTH_PREFIX_BYTES].copy_from_slice(&len.to_be_bytes());
            Ok(())
        }
        Err(e) => {
            buf.truncate(start);
            Err(e)
        }
    }
}

/// Frame parts gathered for one vectored write, in order: parts smaller
/// than [`SHARED_BYTES_MIN`] are copied together into one buffer (a few
/// large `write`s beat hundreds of tiny iovecs), larger ones (stored or
/// produced batches) are kept as the buffers they are. Pure bookkeeping:
/// the server's and the client's writers both use it and do the I/O.
#[derive(Debug, Default)]
pub struct WriteGather {
    small: BytesMut,
    segments: Vec<Bytes>,
    len: usize,
}

impl WriteGather {
    /// Adds one part after those already gathered.
    pub fn push(&mut self, part: &Bytes) {
        self.len += part.len();
        if part.len() < SHARED_BYTES_MIN {
            self.small.extend_from_slice(part);
        } else {
            if !self.small.is_empty() {
                self.segments.push(self.small.split().freeze());
            }
            self.segments.push(part.clone());
        }
    }

    /// Bytes gathered so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The gathered segments, to be written in order; the gatherer is
    /// empty again afterwards (and keeps its copy buffer's room).
    pub fn take(&mut self) -> Vec<Bytes> {
        if !self.small.is_empty() {
            self.segments.push(self.small.split().freeze());
        }
        self.len = 0;
        std::mem::take(&mut self.segments)
    }
}
