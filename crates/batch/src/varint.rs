//! Kafka's zig-zag variable-length integers (protobuf `sint32`/`sint64`).

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    Truncated,
    Overlong,
}

#[inline]
pub fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, VarintError> {
    // Most varints in a record (small lengths, deltas, counts) are one
    // byte: the validation of every produced record walks several each.
    if let Some(&byte) = buf.get(*pos) {
        if byte & 0x80 == 0 {
            *pos += 1;
            let raw = u64::from(byte);
            return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    read_varlong_multi(buf, pos)
}

fn read_varlong_multi(buf: &[u8], pos: &mut usize) -> Result<i64, VarintError> {
    let mut raw: u64 = 0;
    for i in 0..10 {
        let byte = *buf.get(*pos).ok_or(VarintError::Truncated)?;
        *pos += 1;
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    Err(VarintError::Overlong)
}

#[inline]
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<i32, VarintError> {
    let value = read_varlong(buf, pos)?;
    i32::try_from(value).map_err(|_| VarintError::Overlong)
}

pub fn write_varlong(out: &mut Vec<u8>, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

pub fn write_varint(out: &mut Vec<u8>, value: i32) {
    write_varlong(out, i64::from(value));
}

/// Encoded length of a varlong, for sizing records before writing them.
pub fn varlong_len(value: i64) -> usize {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    let mut len = 1;
    while raw >= 0x80 {
        raw >>= 7;
        len += 1;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_edges() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            i32::MAX as i64,
            i32::MIN as i64,
            i64::MAX,
            i64::MIN,
        ] {
            let mut out = Vec::new();
            write_varlong(&mut out, v);
            assert_eq!(out.len(), varlong_len(v));
            let mut pos = 0;
            assert_eq!(read_varlong(&out, &mut pos), Ok(v));
            assert_eq!(pos, out.len());
        }
        // Kafka's documented examples: 0 → 00, -1 → 01, 1 → 02, 63 → 7e, -64 → 7f
        let mut out = Vec::new();
        write_varint(&mut out, -64);
        assert_eq!(out, [0x7f]);
    }

    #[test]
    fn rejects_truncated_and_overlong() {
        let mut pos = 0;
        assert_eq!(read_varlong(&[0x80], &mut pos), Err(VarintError::Truncated));
        let mut pos = 0;
        assert_eq!(
            read_varlong(&[0xff; 11], &mut pos),
            Err(VarintError::Overlong)
        );
        let mut pos = 0;
        let mut big = Vec::new();
        write_varlong(&mut big, i64::from(i32::MAX) + 1);
        assert_eq!(read_varint(&big, &mut pos), Err(VarintError::Overlong));
    }
}
