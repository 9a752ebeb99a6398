//! Keys of keyed state: what a key type must offer, and the explicit byte encoding that
//! routes a key to its key group.
//!
//! The key group of a key decides which worker owns its state and in which part of a
//! checkpoint that state is stored, so it must be the same in every process, on every
//! platform and with every compiler that will ever restore the checkpoint. `std::hash::Hash`
//! does not promise that: the bytes it feeds a hasher for `str`, tuples or integers are an
//! implementation detail of the standard library. rill therefore hashes the bytes of
//! [`EncodeKey`], an encoding it owns and documents here:
//!
//! | type | encoding |
//! |---|---|
//! | `u8`, `u16`, `u32`, `u64`, `u128`, `i8` ... `i128` | the value, little-endian, in its own width |
//! | `usize`, `isize` | as `u64`, `i64` (so 32- and 64-bit builds agree) |
//! | `bool` | one byte, 0 or 1 |
//! | `char` | its scalar value as a little-endian `u32` |
//! | `str`, `String`, `[u8]`, `Vec<u8>`: every `[T]`, `Vec<T>`, `[T; N]` | the element count as a little-endian `u64`, then each element |
//! | `Option<T>` | one byte, 0 for `None`, 1 for `Some` followed by the value |
//! | `()` | nothing |
//! | tuples of up to six elements | the elements in order |
//! | `&T`, `Box<T>`, `Rc<T>`, `Arc<T>` | as `T` |
//!
//! A `str` is its UTF-8 bytes, so `"ab"`, `String::from("ab")` and `b"ab"` encode alike, and a
//! map keyed by `String` can be looked up with a `&str` (the contract `Borrow` asks of `Hash`).
//! The length prefix keeps `("a", "bc")` and `("ab", "c")` apart.
//!
//! Your own key types implement [`EncodeKey`] by encoding their fields in a fixed order:
//!
//! ```
//! use rill_engine::state::{EncodeKey, KeyWriter};
//!
//! #[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
//! struct AdSlot {
//!     campaign: u32,
//!     slot: String,
//! }
//!
//! impl EncodeKey for AdSlot {
//!     fn encode_key<W: KeyWriter + ?Sized>(&self, out: &mut W) {
//!         self.campaign.encode_key(out);
//!         self.slot.encode_key(out);
//!     }
//! }
//!
//! let mut bytes = Vec::new();
//! AdSlot { campaign: 7, slot: "top".into() }.encode_key(&mut bytes);
//! assert_eq!(bytes, [7, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, b't', b'o', b'p']);
//! ```

use std::hash::Hash;
use std::rc::Rc;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Where [`EncodeKey`] writes: the key-group hasher, or a `Vec<u8>` to look at the encoding.
pub trait KeyWriter {
    /// Appends bytes to the encoding.
    fn write_bytes(&mut self, bytes: &[u8]);
}

impl KeyWriter for Vec<u8> {
    #[inline]
    fn write_bytes(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A key's stable byte encoding, the input of its key group (see the [module](self) docs for
/// the encoding of every type rill supports).
///
/// Two keys that are equal must encode to the same bytes, and a borrowed form (`str` for
/// `String`) must encode like the owned one.
pub trait EncodeKey {
    /// Writes the encoding of `self` to `out`.
    fn encode_key<W: KeyWriter + ?Sized>(&self, out: &mut W);
}

/// What a key of keyed state must be: stably encodable for its key group ([`EncodeKey`]),
/// hashable and comparable for in-memory lookups, cloneable, and encodable into a checkpoint
/// (derive `serde`'s `Serialize` and `Deserialize` for your own key types).
pub trait StateKey:
    EncodeKey + Hash + Eq + Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
}
impl<T> StateKey for T where
    T: EncodeKey + Hash + Eq + Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
}

macro_rules! encode_le {
    ($($t:ty),*) => {$(
        impl EncodeKey for $t {
            #[inline]
            fn encode_key<W: KeyWriter + ?Sized>(&self, out: &mut W) {
                out.write_bytes(&self.to_le_bytes());
            }
        }
    )*};
}
encode_le!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128);

impl EncodeKey for usize {
    #[inline]
    fn encode_key<W: KeyWriter + ?Sized>(&self, out: &mut W) {
        (*self as u64).encode_key(out);
    }
}

impl EncodeKey for isize {
    #[inline]
    fn encode_key<W: KeyWriter + ?Sized>(&self, out: &mut W) {
        (*self as i64).encode_key(out);
    }
}

impl EncodeKey for bool {
    #[inline]
    fn encode_key<W: KeyWriter + ?Sized>(&self, out: &mut W) {
        out.write_bytes(&[u8::from(*self)]);
    }
}

impl EncodeKey for char {
    #[inline]
    fn encode_key<W: KeyWriter + ?Sized>(&self, out: &mut W) {
        u32::from(*self).encode_key(out);
    }
}

impl EncodeKey for str {
    #[inline]
    fn encode_key<W: KeyWriter + ?Sized>(&self, out: &mut W) {
        self.as_bytes().encode_key(out);
    }
}

impl EncodeKey for String {
    #[inline]
    fn encode_key<W: KeyWriter + ?Sized>(&self, out: &mut W) {
        self.as_str().encode_key(out);
    }
}

/// Bytes are written in one piece: the per-element loop of other slices would give the same
/// encoding, slower.
impl EncodeKey for [u8] {
    #[inline]
    fn encode_key<W: KeyWriter + ?Sized>(&self, out: &mut W) {
        (self.len() as u64).encode_key(out);
        out.write_bytes(self);
    }
}

macro_rules! encode_seq {
    ($($t:ty),*) => {$(
        impl EncodeKey for $t {
            #[inline]
            fn encode_key<W: KeyWriter + ?Sized>(&self, out: &mut W) {
                (self.len() as u64).encode_key(out);
                for item in self.iter() {
                    item.encode_key(out);
                }
            }
        }
    )*};
}
encode_seq!(
    [u16],
    [u32],
    [u64],
    [u128],
    [i8],
    [i16],
    [i32],
    [i64],
    [i128],
    [usize],
    [isize],
    [bool],
    [char],
    [String],
    [&str],
    [Box<str>],
    [Arc<str>]
);

impl<T> EncodeKey for Vec<T>
where
    [T]: EncodeKey,
{
    #[inline]
    fn encode_key<W: KeyWriter + ?Sized>(&self, out: &mut W) {
        self.as_slice().encode_key(out);
    }
}

impl<T, const N: usize> EncodeKey for [T; N]
where
    [T]: EncodeKey,
{
    #[inline]
    fn encode_key<W: KeyWriter + ?Sized>(&self, out: &mut W) {
        self.as_slice().encode_key(out);
    }
}

impl<T: EncodeKey> EncodeKey for Option<T> {
    #[inline]
    fn encode_key<W: KeyWriter + ?Sized>(&self, out: &mut W) {
        match self {
            None => out.write_bytes(&[0]),
            Some(v) => {
                out.write_bytes(&[1]);
                v.encode_key(out);
            }
        }
    }
}

impl<T: EncodeKey + ?Sized> EncodeKey for &T {
    #[inline]
    fn encode_key<W: KeyWriter + ?Sized>(&self, out: &mut W) {
        (**self).encode_key(out);
    }
}

impl<T: EncodeKey + ?Sized> EncodeKey for Box<T> {
    #[inline]
    fn encode_key<W: KeyWriter + ?Sized>(&self, out: &mut W) {
        (**self).encode_key(out);
    }
}

impl<T: EncodeKey + ?Sized> EncodeKey for Rc<T> {
    #[inline]
    fn encode_key<W: KeyWriter + ?Sized>(&self, out: &mut W) {
        (**self).encode_key(out);
    }
}

impl<T: EncodeKey + ?Sized> EncodeKey for Arc<T> {
    #[inline]
    fn encode_key<W: KeyWriter + ?Sized>(&self, out: &mut W) {
        (**self).encode_key(out);
    }
}

impl EncodeKey for () {
    #[inline]
    fn encode_key<W: KeyWriter + ?Sized>(&self, _out: &mut W) {}
}

macro_rules! encode_tuple {
    ($(($($n:tt $t:ident),+)),*) => {$(
        impl<$($t: EncodeKey),+> EncodeKey for ($($t,)+) {
            #[inline]
            fn encode_key<W: KeyWriter + ?Sized>(&self, out: &mut W) {
                $(self.$n.encode_key(out);)+
            }
        }
    )*};
}
encode_tuple!(
    (0 A),
    (0 A, 1 B),
    (0 A, 1 B, 2 C),
    (0 A, 1 B, 2 C, 3 D),
    (0 A, 1 B, 2 C, 3 D, 4 E),
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F)
);

/// The encoding of a key as bytes (for tests, debugging, and readers of the format).
///
/// ```
/// use rill_engine::state::encoded_key;
/// assert_eq!(encoded_key("ab"), [2, 0, 0, 0, 0, 0, 0, 0, b'a', b'b']);
/// assert_eq!(encoded_key(&(1u16, true)), [1, 0, 1]);
/// ```
pub fn encoded_key<K: EncodeKey + ?Sized>(key: &K) -> Vec<u8> {
    let mut out = Vec::new();
    key.encode_key(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encoding of every supported key type, pinned: a change here moves keys to other key
    /// groups, and checkpoints taken before it would restore into the wrong workers.
    #[test]
    fn the_encoding_of_every_supported_type_is_pinned() {
        assert_eq!(encoded_key(&0x12u8), [0x12]);
        assert_eq!(encoded_key(&0x1234u16), [0x34, 0x12]);
        assert_eq!(encoded_key(&0x1234_5678u32), [0x78, 0x56, 0x34, 0x12]);
        assert_eq!(encoded_key(&1u64), [1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(encoded_key(&1u128), [[1].as_slice(), &[0; 15]].concat());
        assert_eq!(encoded_key(&-1i8), [0xff]);
        assert_eq!(encoded_key(&-2i16), [0xfe, 0xff]);
        assert_eq!(encoded_key(&-1i32), [0xff; 4]);
        assert_eq!(encoded_key(&-1i64), [0xff; 8]);
        assert_eq!(encoded_key(&-1i128), [0xff; 16]);
        assert_eq!(encoded_key(&5usize), encoded_key(&5u64));
        assert_eq!(encoded_key(&-5isize), encoded_key(&-5i64));
        assert_eq!(encoded_key(&true), [1]);
        assert_eq!(encoded_key(&false), [0]);
        assert_eq!(encoded_key(&'é'), [0xe9, 0, 0, 0]);
        let ab = [2, 0, 0, 0, 0, 0, 0, 0, b'a', b'b'];
        assert_eq!(encoded_key("ab"), ab);
        assert_eq!(encoded_key(&String::from("ab")), ab);
        assert_eq!(encoded_key(&&"ab"), ab);
        assert_eq!(encoded_key(&Box::<str>::from("ab")), ab);
        assert_eq!(encoded_key(&Arc::<str>::from("ab")), ab);
        assert_eq!(encoded_key(&Rc::<str>::from("ab")), ab);
        assert_eq!(encoded_key(b"ab".as_slice()), ab);
        assert_eq!(encoded_key(&b"ab".to_vec()), ab);
        assert_eq!(encoded_key(b"ab"), ab);
        assert_eq!(
            encoded_key(&vec![1u16, 2]),
            [2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 0]
        );
        assert_eq!(
            encoded_key(&vec!["a".to_string()]),
            [1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, b'a']
        );
        assert_eq!(encoded_key(&None::<u8>), [0]);
        assert_eq!(encoded_key(&Some(7u8)), [1, 7]);
        assert_eq!(encoded_key(&()), [0u8; 0]);
        assert_eq!(encoded_key(&(1u8,)), [1]);
        assert_eq!(encoded_key(&(1u8, 2u8)), [1, 2]);
        assert_eq!(encoded_key(&(1u8, 2u8, 3u8)), [1, 2, 3]);
        assert_eq!(encoded_key(&(1u8, 2u8, 3u8, 4u8)), [1, 2, 3, 4]);
        assert_eq!(encoded_key(&(1u8, 2u8, 3u8, 4u8, 5u8)), [1, 2, 3, 4, 5]);
        assert_eq!(
            encoded_key(&(1u8, 2u8, 3u8, 4u8, 5u8, 6u8)),
            [1, 2, 3, 4, 5, 6]
        );
    }

    #[test]
    fn the_length_prefix_keeps_tuples_of_strings_apart() {
        assert_ne!(encoded_key(&("a", "bc")), encoded_key(&("ab", "c")));
        assert_ne!(
            encoded_key(&(Some(0u8), 0u8)),
            encoded_key(&(None::<u8>, 0u8))
        );
    }
}
