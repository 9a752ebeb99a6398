//! Key groups and the workers that own them.
//!
//! A key is hashed to one of [`KEY_GROUPS`] key groups, and key groups are split into contiguous
//! ranges, one per worker. State is kept per key group, so a checkpoint taken with P workers
//! can be restored with any other number of workers (up to `KEY_GROUPS`) by handing the groups
//! out again: Flink's scheme. The hash must therefore never change between versions, runs or
//! compilers: it is [`KeyHasher`], rill's own fixed, seedless hash, over the key's explicit
//! byte encoding ([`EncodeKey`]), never over what `std::hash::Hash` happens to feed a hasher.

use std::hash::{BuildHasherDefault, Hasher};

use super::key::{EncodeKey, KeyWriter};

/// Number of key groups: the upper bound on useful parallelism of keyed operators.
pub const KEY_GROUPS: u32 = 4096;

const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

/// A fast, stable (seedless, version-independent) 64-bit hash of a byte string.
///
/// The bytes are read as little-endian 64-bit words, however they were split into writes;
/// each word is folded in with a rotate-xor-multiply step, the last partial word is padded
/// with zeros and the total length folded in (so "a" and "a\0" differ), and the result is
/// finished with the MurmurHash3 64-bit avalanche, so every output bit depends on every input
/// bit (the low bits pick the key group). Not DoS-resistant: keys come from the job's own
/// data.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyHasher {
    state: u64,
    /// Bytes of the word being filled, in its low `pending_len` bytes.
    pending: u64,
    pending_len: u32,
    len: u64,
}

impl KeyHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.state = (self.state.rotate_left(5) ^ word).wrapping_mul(MULTIPLIER);
    }
}

impl KeyWriter for KeyHasher {
    #[inline]
    fn write_bytes(&mut self, mut bytes: &[u8]) {
        self.len = self.len.wrapping_add(bytes.len() as u64);
        // Complete the pending word first, then whole words straight from the input.
        while self.pending_len > 0 && !bytes.is_empty() {
            self.pending |= u64::from(bytes[0]) << (8 * self.pending_len);
            self.pending_len += 1;
            bytes = &bytes[1..];
            if self.pending_len == 8 {
                let word = self.pending;
                self.add(word);
                self.pending = 0;
                self.pending_len = 0;
            }
        }
        if bytes.is_empty() {
            return;
        }
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        // The pending word is empty here: the loop above either filled it or ran out of input.
        for (i, b) in chunks.remainder().iter().enumerate() {
            self.pending |= u64::from(*b) << (8 * i);
        }
        self.pending_len = chunks.remainder().len() as u32;
    }
}

/// Lets `std` hash maps use the same hash (in memory only; what is stored or routed is
/// always hashed through [`EncodeKey`]).
impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.write_bytes(bytes);
    }
    #[inline]
    fn finish(&self) -> u64 {
        let mut copy = *self;
        if copy.pending_len > 0 {
            let word = copy.pending;
            copy.add(word);
        }
        copy.add(copy.len);
        let mut h = copy.state;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        h
    }
}

/// Builds [`KeyHasher`]s: the hasher of rill's in-memory keyed state maps.
pub type BuildKeyHasher = BuildHasherDefault<KeyHasher>;

/// The stable hash of a key: [`KeyHasher`] over its [`EncodeKey`] encoding.
#[inline]
pub fn hash_key<K: EncodeKey + ?Sized>(key: &K) -> u64 {
    let mut h = KeyHasher::default();
    key.encode_key(&mut h);
    h.finish()
}

/// The key group a key belongs to, `0..KEY_GROUPS`.
///
/// ```
/// use rill_engine::state::{key_group, KEY_GROUPS};
/// let g = key_group("user-42");
/// assert!(g < KEY_GROUPS);
/// assert_eq!(g, key_group(&String::from("user-42")));
/// ```
#[inline]
pub fn key_group<K: EncodeKey + ?Sized>(key: &K) -> u32 {
    (hash_key(key) % u64::from(KEY_GROUPS)) as u32
}

/// The worker that owns a key group when `workers` workers run the job: contiguous ranges of
/// groups per worker, so rescaling moves whole ranges.
///
/// ```
/// use rill_engine::state::{worker_for_group, KEY_GROUPS};
/// assert_eq!(worker_for_group(0, 3), 0);
/// assert_eq!(worker_for_group(KEY_GROUPS - 1, 3), 2);
/// ```
#[inline]
pub fn worker_for_group(group: u32, workers: usize) -> usize {
    (group as usize * workers) / KEY_GROUPS as usize
}

/// The worker that owns `key`.
#[inline]
pub fn worker_for_key<K: EncodeKey + ?Sized>(key: &K, workers: usize) -> usize {
    worker_for_group(key_group(key), workers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_across_runs_and_versions() {
        // Pinned values: a change here breaks restoring checkpoints taken by older builds.
        assert_eq!(hash_key("a"), 2_642_436_850_617_616_909);
        assert_eq!(hash_key(&17u32), 11_975_070_000_143_458_750);
        assert_eq!(hash_key(&(1u8, "xy")), 785_286_752_386_578_771);
        assert_eq!(
            hash_key("hello world, long key"),
            17_267_412_009_828_638_976
        );
        assert_eq!(key_group("word"), 1372);
        assert_eq!(key_group("word"), key_group(&String::from("word")));
        assert_ne!(hash_key("a"), hash_key("a\0"));
    }

    #[test]
    fn the_hash_is_of_the_bytes_however_they_are_written() {
        let bytes: Vec<u8> = (0u8..=40).collect();
        let mut whole = KeyHasher::default();
        whole.write_bytes(&bytes);
        for split in [1, 3, 7, 8, 9, 17] {
            let mut pieces = KeyHasher::default();
            for chunk in bytes.chunks(split) {
                pieces.write_bytes(chunk);
            }
            assert_eq!(
                pieces.finish(),
                whole.finish(),
                "split into pieces of {split}"
            );
        }
        // The encoding, not the Rust type, decides: a tuple and its concatenated bytes agree.
        assert_eq!(hash_key(&(1u8, 2u8)), hash_key(&0x0201u16));
    }

    #[test]
    fn groups_spread_over_workers() {
        for workers in 1..=8 {
            let mut per_worker = vec![0usize; workers];
            for i in 0..10_000u32 {
                per_worker[worker_for_key(&i, workers)] += 1;
            }
            let expected = 10_000 / workers;
            for n in per_worker {
                assert!(
                    n > expected * 8 / 10 && n < expected * 12 / 10,
                    "{n} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn every_group_has_an_owner_in_range() {
        for workers in [1, 2, 3, 7, 64] {
            for g in 0..KEY_GROUPS {
                assert!(worker_for_group(g, workers) < workers);
            }
        }
    }
}
