//! Declarations of wire layouts: [`wire_struct!`] for a struct that is its
//! fields in wire order, [`wire_enum!`] for a field-less enum sent as a
//! one-byte tag.
//!
//! Most messages are a plain sequence of fields, and writing each one's
//! `encode` and `decode` by hand repeated the same field list three times
//! (the struct, the writes, the reads), with the error label written twice.
//! A declaration names each field once, with its wire type and the label its
//! errors carry, so the field order and labels cannot drift apart between
//! the two directions. The generated code calls the same [`Writer`] and
//! [`Reader`] primitives the hand-written code did, so the bytes (and the
//! zero-copy slicing of byte fields) are unchanged.
//!
//! Layouts that are more than a sequence (tagged enums with data, a field
//! whose presence or meaning depends on another, the handshake magic) are
//! written by hand next to their types, on the same primitives.
//!
//! [`Writer`]: crate::wire::Writer
//! [`Reader`]: crate::wire::Reader

/// Declares a struct whose wire layout is its fields, in order, and
/// implements [`Codec`](crate::wire::Codec) for it.
///
/// ```text
/// wire_struct! {
///     #[derive(Debug, Clone, PartialEq, Eq)]
///     pub struct Credit {
///         pub subscription_id: u32 => u32("credit.subscription_id"),
///         /// Added to the subscription's message credit.
///         pub messages: u32 => u32("credit.messages"),
///     }
/// }
/// ```
///
/// Each field is `name: Rust type => wire kind(label[, max])`. The label
/// names the field in [`DecodeError`](crate::DecodeError)s and
/// [`EncodeError`](crate::EncodeError)s; integers and other fields that
/// cannot fail to encode use it only when decoding. The kinds, each the
/// [`Reader`](crate::wire::Reader) method of that name (and its
/// [`Writer`](crate::wire::Writer) counterpart):
///
/// | kind | Rust type | wire |
/// | --- | --- | --- |
/// | `u16`, `u32`, `u64`, `i64` | the same | big-endian integer |
/// | `bool` | `bool` | `u8` 0 or 1 |
/// | `code` | `Option<WireCode>` | `u16` error code, 0 = none |
/// | `string`, `text` | `String` | `u16` / `u32` length, UTF-8 |
/// | `opt_string` | `Option<String>` | presence byte, `string` |
/// | `bytes` | `Bytes` | `u32` length, bytes (a slice of the input) |
/// | `shared_bytes` | `Bytes` | as `bytes`, but not copied into frame parts when large |
/// | `opt_bytes` | `Option<Bytes>` | `i32` length, -1 = none |
/// | `opt_u64` | `Option<u64>` | presence byte, `u64` |
/// | `opt` | `Option<T: Codec>` | presence byte, `T` |
/// | `array(label, max)` | `Vec<T: Codec>` | `u32` count (at most `max`), elements |
/// | `string_array(label, max)` | `Vec<String>` | `u32` count (at most `max`), strings |
/// | `codec` (no label) | `T: Codec` | `T`'s own layout |
///
/// `MIN_BYTES` is the sum of the fields' minimum sizes, which is what the
/// array decoder needs to refuse impossible counts before allocating.
macro_rules! wire_struct {
    (
        $(#[$attr:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$field_attr:meta])*
                $field_vis:vis $field:ident: $ty:ty => $kind:ident $(($($arg:expr),+))?,
            )*
        }
    ) => {
        $(#[$attr])*
        $vis struct $name {
            $(
                $(#[$field_attr])*
                $field_vis $field: $ty,
            )*
        }

        impl $crate::wire::Codec for $name {
            const MIN_BYTES: usize = 0 $(+ wire_field!(min $kind $ty))*;

            fn encode(
                &self,
                w: &mut $crate::wire::Writer<'_>,
            ) -> Result<(), $crate::error::EncodeError> {
                $(wire_field!(encode w, self.$field, $kind $(($($arg),+))?);)*
                Ok(())
            }

            fn decode(r: &mut $crate::wire::Reader) -> Result<Self, $crate::error::DecodeError> {
                // Struct-literal fields are evaluated in the order written,
                // which is the wire order.
                Ok($name {
                    $($field: wire_field!(decode r, $ty, $kind $(($($arg),+))?),)*
                })
            }
        }
    };
}

/// One field of a [`wire_struct!`]: its minimum size, the statement that
/// writes it and the expression that reads it, by kind.
macro_rules! wire_field {
    (min codec $ty:ty) => { <$ty as $crate::wire::Codec>::MIN_BYTES };
    (min bool $ty:ty) => { 1 };
    (min u16 $ty:ty) => { 2 };
    (min u32 $ty:ty) => { 4 };
    (min u64 $ty:ty) => { 8 };
    (min i64 $ty:ty) => { 8 };
    (min code $ty:ty) => { 2 };
    (min string $ty:ty) => { 2 };
    (min text $ty:ty) => { 4 };
    (min bytes $ty:ty) => { 4 };
    (min shared_bytes $ty:ty) => { 4 };
    // An absent value is its length of -1.
    (min opt_bytes $ty:ty) => { 4 };
    // The other optional kinds, when absent, are their presence byte.
    (min opt_string $ty:ty) => { 1 };
    (min opt_u64 $ty:ty) => { 1 };
    (min opt $ty:ty) => { 1 };
    // An empty array is its count.
    (min array $ty:ty) => { 4 };
    (min string_array $ty:ty) => { 4 };

    (encode $w:ident, $v:expr, codec) => { $crate::wire::Codec::encode(&$v, $w)? };
    // Fixed-size values: nothing can fail, so no label.
    (encode $w:ident, $v:expr, u16($label:expr)) => { $w.u16($v) };
    (encode $w:ident, $v:expr, u32($label:expr)) => { $w.u32($v) };
    (encode $w:ident, $v:expr, u64($label:expr)) => { $w.u64($v) };
    (encode $w:ident, $v:expr, i64($label:expr)) => { $w.i64($v) };
    (encode $w:ident, $v:expr, bool($label:expr)) => { $w.bool($v) };
    (encode $w:ident, $v:expr, code($label:expr)) => { $w.code($v) };
    (encode $w:ident, $v:expr, opt_u64($label:expr)) => { $w.opt_u64($v) };
    // Other optional values are written from a borrowed `Option<&T>`.
    (encode $w:ident, $v:expr, opt($label:expr)) => { $w.opt($v.as_ref())? };
    (encode $w:ident, $v:expr, opt_string($label:expr)) => {
        $w.opt_string($label, $v.as_deref())?
    };
    (encode $w:ident, $v:expr, opt_bytes($label:expr)) => {
        $w.opt_bytes($label, $v.as_deref())?
    };
    // Arrays: refused, with the label, above `max` elements.
    (encode $w:ident, $v:expr, $kind:ident($label:expr, $max:expr)) => {
        $w.$kind($label, &$v, $max)?
    };
    // Length-prefixed values (string, text, bytes, shared_bytes): refused,
    // with the label, when too long for their length field or the frame.
    (encode $w:ident, $v:expr, $kind:ident($label:expr)) => { $w.$kind($label, &$v)? };

    (decode $r:ident, $ty:ty, codec) => { <$ty as $crate::wire::Codec>::decode($r)? };
    // Read like `bytes`: the sharing only matters when encoding.
    (decode $r:ident, $ty:ty, shared_bytes($label:expr)) => { $r.bytes($label)? };
    (decode $r:ident, $ty:ty, $kind:ident($($arg:expr),+)) => { $r.$kind($($arg),+)? };
}

/// Declares a field-less enum sent as a one-byte tag and implements
/// [`Codec`](crate::wire::Codec) for it; an unknown tag is an
/// `InvalidValue` error with the given label.
///
/// ```text
/// wire_enum! {
///     #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
///     pub enum GroupStart: tag("join_group.start") {
///         Earliest = 0,
///         Latest = 1,
///     }
/// }
/// ```
///
/// The tags are wire values only; the Rust enum gets no discriminants.
macro_rules! wire_enum {
    (
        $(#[$attr:meta])*
        $vis:vis enum $name:ident: tag($label:literal) {
            $(
                $(#[$variant_attr:meta])*
                $variant:ident = $tag:literal,
            )*
        }
    ) => {
        $(#[$attr])*
        $vis enum $name {
            $(
                $(#[$variant_attr])*
                $variant,
            )*
        }

        impl $crate::wire::Codec for $name {
            const MIN_BYTES: usize = 1;

            fn encode(
                &self,
                w: &mut $crate::wire::Writer<'_>,
            ) -> Result<(), $crate::error::EncodeError> {
                w.u8(match self {
                    $($name::$variant => $tag,)*
                });
                Ok(())
            }

            fn decode(r: &mut $crate::wire::Reader) -> Result<Self, $crate::error::DecodeError> {
                match r.tag($label)? {
                    $(($tag, _) => Ok($name::$variant),)*
                    (v, at) => Err($crate::wire::Reader::invalid($label, at, v.into())),
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use crate::wire::Codec;
    use crate::*;

    /// The array decoder's "impossible count" check multiplies by
    /// `MIN_BYTES`, so a generated value must be the fields' minimum sizes
    /// written out here by hand (a change would change which counts, and
    /// with what `need`, are refused).
    #[test]
    fn generated_min_bytes_sum_the_fields() {
        assert_eq!(TopicPartition::MIN_BYTES, 2 + 4);
        assert_eq!(PartitionOffset::MIN_BYTES, 2 + 4 + 8);
        assert_eq!(TopicConfig::MIN_BYTES, 8 + 4);
        assert_eq!(LeasedMessage::MIN_BYTES, 2 + 4 + 8 + 8 + 4 + 8 + 4 + 4 + 4);
        assert_eq!(FetchPartition::MIN_BYTES, 2 + 4 + 8 + 4);
        assert_eq!(FetchedPartition::MIN_BYTES, 2 + 4 + 2 + 8 + 8 + 4);
        assert_eq!(PartitionInfo::MIN_BYTES, 4 + 8 * 4);
        assert_eq!(
            SubscriptionInfo::MIN_BYTES,
            2 + 2 + 4 + 4 + 1 + (1 + 8) + 1 + 1 + 8 * 5
        );
        assert_eq!(TokenInfo::MIN_BYTES, 2 + 4 + 4 + 1 + 8);
        assert_eq!(DeliveryMode::MIN_BYTES, 1);
    }
}
