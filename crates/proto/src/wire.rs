//! Primitive encodings shared by every message: big-endian integers,
//! length-prefixed strings and byte strings, optional values and arrays.
//!
//! [`Reader`] checks every length against the bytes that remain before it
//! slices or allocates, and hands out byte fields as slices of the input
//! [`Bytes`] (zero-copy). [`Writer`] appends one frame to a [`BytesMut`] and
//! refuses, rather than truncates, anything the wire cannot represent.

use bytes::{BufMut, Bytes, BytesMut};
use spool_types::limits::FRAME_BYTES_MAX;

use crate::error::{DecodeError, EncodeError};
use crate::frame::LENGTH_PREFIX_BYTES;

/// A value with a fixed wire layout that can appear inside a message body.
pub(crate) trait Codec: Sized {
    /// The fewest bytes one encoded value can take. Array decoding multiplies
    /// it by the element count to reject impossible counts before allocating.
    const MIN_BYTES: usize;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError>;
    fn decode(r: &mut Reader) -> Result<Self, DecodeError>;
}

/// A cursor over one frame body.
pub(crate) struct Reader {
    buf: Bytes,
    /// Invariant: `pos <= buf.len()`.
    pos: usize,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Reader {
        Reader { buf, pos: 0 }
    }

    /// Bytes consumed so far, which is the offset reported in errors.
    pub(crate) fn offset(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Consumes `n` bytes, or fails without consuming anything.
    fn take(&mut self, what: &'static str, n: usize) -> Result<&[u8], DecodeError> {
        let start = self.pos;
        if n > self.remaining() {
            return Err(DecodeError::Truncated {
                what,
                offset: start,
                need: n as u64,
                have: self.remaining(),
            });
        }
        self.pos = start + n;
        Ok(&self.buf[start..start + n])
    }

    fn fixed<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        // `take` returned exactly N bytes, so the lengths match.
        out.copy_from_slice(self.take(what, N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.fixed(what)?))
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.fixed(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.fixed(what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.fixed(what)?))
    }

    pub(crate) fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.fixed(what)?))
    }

    pub(crate) fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.fixed(what)?))
    }

    /// An error for a value read at `offset` that is outside its defined set.
    pub(crate) fn invalid(what: &'static str, offset: usize, value: i64) -> DecodeError {
        DecodeError::InvalidValue {
            what,
            offset,
            value,
        }
    }

    /// A one-byte enum tag; the caller maps it and reports unknown values
    /// through [`Reader::invalid`] at the returned offset.
    pub(crate) fn tag(&mut self, what: &'static str) -> Result<(u8, usize), DecodeError> {
        let offset = self.pos;
        Ok((self.u8(what)?, offset))
    }

    /// The presence byte in front of an optional value: 0 absent, 1 present.
    pub(crate) fn presence(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.tag(what)? {
            (0, _) => Ok(false),
            (1, _) => Ok(true),
            (other, offset) => Err(Self::invalid(what, offset, other.into())),
        }
    }

    /// A boolean as one byte: 0 false, 1 true. Anything else is refused
    /// rather than read as true, so the encoding stays canonical.
    pub(crate) fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.tag(what)? {
            (0, _) => Ok(false),
            (1, _) => Ok(true),
            (other, offset) => Err(Self::invalid(what, offset, other.into())),
        }
    }

    /// `u16 length` then that many bytes of UTF-8.
    pub(crate) fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let len = usize::from(self.u16(what)?);
        let start = self.pos;
        let raw = self.take(what, len)?;
        match std::str::from_utf8(raw) {
            Ok(text) => Ok(text.to_owned()),
            Err(e) => Err(DecodeError::InvalidUtf8 {
                what,
                offset: start + e.valid_up_to(),
            }),
        }
    }

    pub(crate) fn opt_string(&mut self, what: &'static str) -> Result<Option<String>, DecodeError> {
        if self.presence(what)? {
            self.string(what).map(Some)
        } else {
            Ok(None)
        }
    }

    /// `u32 length` then that many bytes of UTF-8: a string too long for
    /// the `u16` length of [`Reader::string`] (JSON documents, error
    /// output), bounded only by the frame.
    pub(crate) fn text(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let len = self.u32(what)?;
        let start = self.pos;
        // Saturating keeps the length check correct on any target.
        let raw = self.take(what, usize::try_from(len).unwrap_or(usize::MAX))?;
        match std::str::from_utf8(raw) {
            Ok(text) => Ok(text.to_owned()),
            Err(e) => Err(DecodeError::InvalidUtf8 {
                what,
                offset: start + e.valid_up_to(),
            }),
        }
    }

    /// `n` bytes as a slice of the input: no copy.
    fn slice(&mut self, what: &'static str, n: usize) -> Result<Bytes, DecodeError> {
        let start = self.pos;
        self.take(what, n)?;
        Ok(self.buf.slice(start..start + n))
    }

    /// `u32 length` then that many bytes, zero-copy.
    pub(crate) fn bytes(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.u32(what)?;
        // A u32 always fits in usize on the 32- and 64-bit targets Spool
        // supports; saturating keeps the length check correct regardless.
        self.slice(what, usize::try_from(len).unwrap_or(usize::MAX))
    }

    /// `i32 length` (-1 = absent) then that many bytes, zero-copy.
    pub(crate) fn opt_bytes(&mut self, what: &'static str) -> Result<Option<Bytes>, DecodeError> {
        let offset = self.pos;
        let len = self.i32(what)?;
        match len {
            -1 => Ok(None),
            n if n < 0 => Err(Self::invalid(what, offset, n.into())),
            n => self
                .slice(what, usize::try_from(n).unwrap_or(usize::MAX))
                .map(Some),
        }
    }

    /// `u32 count` then that many elements.
    ///
    /// The count is checked against the remaining bytes (using the element's
    /// minimum encoded size) and against `max` before anything is allocated,
    /// so a forged count of 4 billion costs nothing.
    pub(crate) fn array<T: Codec>(
        &mut self,
        what: &'static str,
        max: usize,
    ) -> Result<Vec<T>, DecodeError> {
        let offset = self.pos;
        let count = self.u32(what)?;
        let need = u64::from(count).saturating_mul(T::MIN_BYTES as u64);
        if need > self.remaining() as u64 {
            return Err(DecodeError::Truncated {
                what,
                offset,
                need,
                have: self.remaining(),
            });
        }
        // `need <= remaining` and MIN_BYTES >= 1, so `count` fits in usize.
        let count_usize = usize::try_from(count).unwrap_or(usize::MAX);
        if count_usize > max {
            return Err(DecodeError::TooMany {
                what,
                offset,
                count,
                max,
            });
        }
        let mut items = Vec::with_capacity(count_usize);
        for _ in 0..count_usize {
            items.push(T::decode(self)?);
        }
        Ok(items)
    }

    /// An array of strings, with the same checks as [`Reader::array`].
    pub(crate) fn string_array(
        &mut self,
        what: &'static str,
        max: usize,
    ) -> Result<Vec<String>, DecodeError> {
        Ok(self
            .array::<Str>(what, max)?
            .into_iter()
            .map(|s| s.0)
            .collect())
    }

    /// Refuses bytes left over after the last field.
    pub(crate) fn finish(self, what: &'static str) -> Result<(), DecodeError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                what,
                offset: self.pos,
                count: self.remaining(),
            })
        }
    }
}

/// Appends the body of one frame. Created by the frame encoder, which has
/// already written the length placeholder and header at `frame_start`.
pub(crate) struct Writer<'a> {
    buf: &'a mut BytesMut,
    frame_start: usize,
    /// When set, large [`Writer::shared_bytes`] fields are not copied into
    /// `buf` but recorded here with the position in `buf` where they
    /// belong (see [`crate::frame::encode_frame_parts`]).
    shared: Option<&'a mut Vec<(usize, Bytes)>>,
    /// Bytes of the frame recorded in `shared` rather than written.
    shared_len: usize,
}

/// Fields at least this large are handed over by reference, not copied,
/// when a frame is encoded into parts; writers ([`crate::WriteGather`])
/// copy smaller parts together and send these from their own buffers.
pub const SHARED_BYTES_MIN: usize = 16 * 1024;

impl<'a> Writer<'a> {
    pub(crate) fn new(buf: &'a mut BytesMut, frame_start: usize) -> Writer<'a> {
        Writer {
            buf,
            frame_start,
            shared: None,
            shared_len: 0,
        }
    }

    /// A writer that records large shared fields in `shared` instead of
    /// copying them.
    pub(crate) fn sharing(
        buf: &'a mut BytesMut,
        frame_start: usize,
        shared: &'a mut Vec<(usize, Bytes)>,
    ) -> Writer<'a> {
        Writer {
            buf,
            frame_start,
            shared: Some(shared),
            shared_len: 0,
        }
    }

    /// The frame's length-field value so far.
    pub(crate) fn frame_len(&self) -> usize {
        self.buf.len() - self.frame_start - LENGTH_PREFIX_BYTES + self.shared_len
    }

    /// Fails before copying `extra` bytes that could never fit in a frame,
    /// so an oversized batch is refused without first being copied.
    fn ensure_room(&self, extra: usize) -> Result<(), EncodeError> {
        let len = self.frame_len().saturating_add(extra);
        if len > FRAME_BYTES_MAX {
            return Err(EncodeError::FrameTooLarge {
                len,
                max: FRAME_BYTES_MAX,
            });
        }
        Ok(())
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.put_u8(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.put_u16(v);
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.put_u32(v);
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.put_u64(v);
    }

    pub(crate) fn i32(&mut self, v: i32) {
        self.buf.put_i32(v);
    }

    pub(crate) fn i64(&mut self, v: i64) {
        self.buf.put_i64(v);
    }

    /// Bytes with no length prefix (a whole pre-encoded body).
    pub(crate) fn raw(&mut self, b: &[u8]) -> Result<(), EncodeError> {
        self.ensure_room(b.len())?;
        self.buf.put_slice(b);
        Ok(())
    }

    pub(crate) fn presence(&mut self, present: bool) {
        self.u8(u8::from(present));
    }

    pub(crate) fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }

    pub(crate) fn string(&mut self, what: &'static str, s: &str) -> Result<(), EncodeError> {
        let len = u16::try_from(s.len()).map_err(|_| EncodeError::TooLong {
            what,
            len: s.len(),
            max: u16::MAX.into(),
        })?;
        self.ensure_room(2 + s.len())?;
        self.u16(len);
        self.buf.put_slice(s.as_bytes());
        Ok(())
    }

    pub(crate) fn opt_string(
        &mut self,
        what: &'static str,
        s: Option<&str>,
    ) -> Result<(), EncodeError> {
        self.presence(s.is_some());
        match s {
            Some(s) => self.string(what, s),
            None => Ok(()),
        }
    }

    pub(crate) fn bytes(&mut self, what: &'static str, b: &[u8]) -> Result<(), EncodeError> {
        self.bytes_len(what, b.len())?;
        self.buf.put_slice(b);
        Ok(())
    }

    /// The `u32` length in front of a `bytes` field of `len` bytes, once
    /// the field is known to fit the frame.
    fn bytes_len(&mut self, what: &'static str, len: usize) -> Result<(), EncodeError> {
        self.ensure_room(4 + len)?;
        let prefix = u32::try_from(len).map_err(|_| EncodeError::TooLong {
            what,
            len,
            max: u32::MAX as usize,
        })?;
        self.u32(prefix);
        Ok(())
    }

    /// A `bytes` field (same wire form) whose contents, when large and the
    /// writer is [`Writer::sharing`], are referenced rather than copied.
    pub(crate) fn shared_bytes(
        &mut self,
        what: &'static str,
        b: &Bytes,
    ) -> Result<(), EncodeError> {
        if b.len() < SHARED_BYTES_MIN || self.shared.is_none() {
            return self.bytes(what, b);
        }
        self.bytes_len(what, b.len())?;
        let at = self.buf.len();
        if let Some(shared) = self.shared.as_deref_mut() {
            shared.push((at, b.clone()));
        }
        self.shared_len += b.len();
        Ok(())
    }

    /// A `text` field: `u32 length` then the UTF-8 bytes.
    pub(crate) fn text(&mut self, what: &'static str, s: &str) -> Result<(), EncodeError> {
        self.bytes(what, s.as_bytes())
    }

    pub(crate) fn opt_bytes(
        &mut self,
        what: &'static str,
        b: Option<&[u8]>,
    ) -> Result<(), EncodeError> {
        let Some(b) = b else {
            self.i32(-1);
            return Ok(());
        };
        self.ensure_room(4 + b.len())?;
        let len = i32::try_from(b.len()).map_err(|_| EncodeError::TooLong {
            what,
            len: b.len(),
            max: i32::MAX as usize,
        })?;
        self.i32(len);
        self.buf.put_slice(b);
        Ok(())
    }

    pub(crate) fn array<T: Codec>(
        &mut self,
        what: &'static str,
        items: &[T],
        max: usize,
    ) -> Result<(), EncodeError> {
        self.count(what, items.len(), max)?;
        items.iter().try_for_each(|item| item.encode(self))
    }

    pub(crate) fn string_array(
        &mut self,
        what: &'static str,
        items: &[String],
        max: usize,
    ) -> Result<(), EncodeError> {
        self.count(what, items.len(), max)?;
        items.iter().try_for_each(|s| self.string(what, s))
    }

    fn count(&mut self, what: &'static str, count: usize, max: usize) -> Result<(), EncodeError> {
        // Refuse what the decoder would refuse, so every encodable value decodes.
        if count > max {
            return Err(EncodeError::TooMany { what, count, max });
        }
        let count = u32::try_from(count).map_err(|_| EncodeError::TooMany {
            what,
            count,
            max: u32::MAX as usize,
        })?;
        self.u32(count);
        Ok(())
    }
}

/// A string as an array element.
struct Str(String);

impl Codec for Str {
    const MIN_BYTES: usize = 2;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("string", &self.0)
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.string("string").map(Str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_writer(f: impl FnOnce(&mut Writer<'_>)) -> Bytes {
        let mut buf = BytesMut::new();
        // The writer expects a frame prefix in front of the body.
        buf.put_u32(0);
        let mut w = Writer::new(&mut buf, 0);
        f(&mut w);
        buf.split_off(LENGTH_PREFIX_BYTES).freeze()
    }

    #[test]
    fn optional_bytes_round_trip() {
        let body = with_writer(|w| {
            w.opt_bytes("a", None).unwrap();
            w.opt_bytes("b", Some(b"xyz")).unwrap();
            w.opt_bytes("c", Some(b"")).unwrap();
        });
        assert_eq!(&body[..4], &(-1i32).to_be_bytes());
        let mut r = Reader::new(body);
        assert_eq!(r.opt_bytes("a").unwrap(), None);
        assert_eq!(r.opt_bytes("b").unwrap().as_deref(), Some(&b"xyz"[..]));
        assert_eq!(r.opt_bytes("c").unwrap().as_deref(), Some(&b""[..]));
        r.finish("test").unwrap();
    }

    #[test]
    fn optional_bytes_rejects_other_negative_lengths() {
        let mut r = Reader::new(Bytes::copy_from_slice(&(-2i32).to_be_bytes()));
        assert!(matches!(
            r.opt_bytes("x"),
            Err(DecodeError::InvalidValue { value: -2, .. })
        ));
    }

    #[test]
    fn failed_reads_consume_nothing() {
        let mut r = Reader::new(Bytes::from_static(&[0, 5, b'a']));
        assert!(matches!(
            r.string("s"),
            Err(DecodeError::Truncated {
                need: 5,
                have: 1,
                offset: 2,
                ..
            })
        ));
    }

    #[test]
    fn invalid_utf8_reports_the_bad_byte() {
        let mut r = Reader::new(Bytes::from_static(&[0, 3, b'a', 0xff, b'b']));
        assert_eq!(
            r.string("s"),
            Err(DecodeError::InvalidUtf8 {
                what: "s",
                offset: 3
            })
        );
    }

    #[test]
    fn huge_array_count_is_refused_before_allocating() {
        // Had the reader trusted the count it would have asked for ~100 GB.
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0, 0]));
        assert_eq!(
            r.string_array("topics", usize::MAX),
            Err(DecodeError::Truncated {
                what: "topics",
                offset: 0,
                need: u64::from(u32::MAX) * 2,
                have: 2
            })
        );
    }

    #[test]
    fn array_count_above_limit_is_too_many() {
        let mut r = Reader::new(Bytes::from_static(&[0, 0, 0, 2, 0, 0, 0, 0]));
        assert!(matches!(
            r.string_array("topics", 1),
            Err(DecodeError::TooMany {
                count: 2,
                max: 1,
                ..
            })
        ));
    }

    #[test]
    fn text_takes_long_strings_and_checks_utf8() {
        let long = "é".repeat(40_000);
        let body = with_writer(|w| w.text("t", &long).unwrap());
        assert_eq!(&body[..4], &80_000u32.to_be_bytes());
        let mut r = Reader::new(body);
        assert_eq!(r.text("t").unwrap(), long);
        r.finish("test").unwrap();
        let mut r = Reader::new(Bytes::from_static(&[0, 0, 0, 2, b'a', 0xff]));
        assert_eq!(
            r.text("t"),
            Err(DecodeError::InvalidUtf8 {
                what: "t",
                offset: 5
            })
        );
    }

    #[test]
    fn long_string_is_refused_not_truncated() {
        let mut buf = BytesMut::new();
        buf.put_u32(0);
        let mut w = Writer::new(&mut buf, 0);
        let long = "x".repeat(70_000);
        assert!(matches!(
            w.string("name", &long),
            Err(EncodeError::TooLong { len: 70_000, .. })
        ));
    }
}
