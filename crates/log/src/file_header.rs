//! The 24-byte header that opens every segment and index file:
//!
//! ```text
//! 0      8        12            20      24
//! | magic | version | base offset | crc32c |
//! ```
//! `crc32c` covers bytes 0..20. All integers are big-endian.

use spool_types::limits::BATCH_HEADER_BYTES;

pub const FILE_HEADER_BYTES: usize = 24;
pub const FORMAT_VERSION: u32 = 1;

pub const SEGMENT_MAGIC: [u8; 8] = *b"SPOOLLOG";
pub const OFFSET_INDEX_MAGIC: [u8; 8] = *b"SPOOLIDX";
pub const TIME_INDEX_MAGIC: [u8; 8] = *b"SPOOLTIX";
/// Entry index (entry mode): the base field holds the segment's first
/// entry index, not its base offset.
pub const ENTRY_INDEX_MAGIC: [u8; 8] = *b"SPOOLEIX";

const _: () = assert!(FILE_HEADER_BYTES < BATCH_HEADER_BYTES);

pub fn encode(magic: [u8; 8], base_offset: i64) -> [u8; FILE_HEADER_BYTES] {
    let mut out = [0u8; FILE_HEADER_BYTES];
    out[0..8].copy_from_slice(&magic);
    out[8..12].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    out[12..20].copy_from_slice(&base_offset.to_be_bytes());
    let crc = crc32c::crc32c(&out[0..20]);
    out[20..24].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Checks a header and returns the base offset it records.
pub fn decode(magic: [u8; 8], bytes: &[u8]) -> Result<i64, String> {
    if bytes.len() < FILE_HEADER_BYTES {
        return Err(format!(
            "file header truncated: {} of {FILE_HEADER_BYTES} bytes",
            bytes.len()
        ));
    }
    if bytes[0..8] != magic {
        return Err("bad file magic".into());
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[20..24]);
    if u32::from_be_bytes(crc) != crc32c::crc32c(&bytes[0..20]) {
        return Err("file header checksum mismatch".into());
    }
    let mut version = [0u8; 4];
    version.copy_from_slice(&bytes[8..12]);
    let version = u32::from_be_bytes(version);
    if version != FORMAT_VERSION {
        return Err(format!(
            "unsupported format version {version} (this build reads {FORMAT_VERSION})"
        ));
    }
    let mut base = [0u8; 8];
    base.copy_from_slice(&bytes[12..20]);
    Ok(i64::from_be_bytes(base))
}
