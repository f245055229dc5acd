//! The handshake, the first request on every connection.

use std::fmt;

use crate::error::{DecodeError, EncodeError};
use crate::wire::{Codec, Reader, Writer};
use crate::MAGIC;

/// The handshake; must be the first frame on a connection.
///
/// The magic ([`MAGIC`]) is written by the encoder and checked by the
/// decoder, so it is not a field.
#[derive(Clone, PartialEq, Eq)]
pub struct Hello {
    /// Lowest protocol version the client speaks.
    pub min_version: u16,
    /// Highest protocol version the client speaks.
    pub max_version: u16,
    pub client_id: String,
    /// Credential, if the server requires one.
    pub token: Option<String>,
}

impl Hello {
    /// The version a server speaking `server_min..=server_max` should pick:
    /// the highest both sides support, or `None` (answer
    /// `UNSUPPORTED_VERSION`).
    pub fn negotiate(&self, server_min: u16, server_max: u16) -> Option<u16> {
        let high = self.max_version.min(server_max);
        let low = self.min_version.max(server_min);
        (low <= high).then_some(high)
    }
}

// Written by hand so the token never reaches a log through `{:?}`.
impl fmt::Debug for Hello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hello")
            .field("min_version", &self.min_version)
            .field("max_version", &self.max_version)
            .field("client_id", &self.client_id)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

// Written by hand for the magic in front of the fields.
impl Codec for Hello {
    const MIN_BYTES: usize = 4 + 2 + 2 + 2 + 1;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u32(MAGIC);
        w.u16(self.min_version);
        w.u16(self.max_version);
        w.string("hello.client_id", &self.client_id)?;
        w.opt_string("hello.token", self.token.as_deref())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let at = r.offset();
        let magic = r.u32("hello.magic")?;
        if magic != MAGIC {
            // Not a Spool client at all; say so rather than misparse the rest.
            return Err(Reader::invalid("hello.magic", at, magic.into()));
        }
        Ok(Hello {
            min_version: r.u16("hello.min_version")?,
            max_version: r.u16("hello.max_version")?,
            client_id: r.string("hello.client_id")?,
            token: r.opt_string("hello.token")?,
        })
    }
}
