//! Per-key state of a keyed operator: a copy-on-write table snapshotted in O(1).

use std::hash::Hash;
use std::sync::Arc;

use serde::Serialize;

use super::key::{EncodeKey, StateKey};
use super::key_group::{hash_key, BuildKeyHasher, KEY_GROUPS};
use super::snapshot::{
    decode, encode, EncodedState, RestoredState, StateError, StateSnapshot, StateValue,
};

/// Buckets per chunk, and chunks: 16,384 buckets in all, four per key group, so a bucket's
/// key group is `bucket % KEY_GROUPS` with no rehashing.
const PER_CHUNK: usize = 128;
const CHUNKS: usize = 128;
const BUCKETS: usize = PER_CHUNK * CHUNKS;
const _: () = assert!(BUCKETS.is_multiple_of(KEY_GROUPS as usize));

type Bucket<K, V> = std::collections::HashMap<K, V, BuildKeyHasher>;
type Chunk<K, V> = Vec<Option<Arc<Bucket<K, V>>>>;

/// Per-key state of a keyed operator on one worker, snapshotted in O(1).
///
/// A fixed two-level copy-on-write table: 128 chunks of 128 buckets, each bucket a small
/// `std` hash map, every level behind an `Arc`. A snapshot clones the root `Arc` and nothing
/// else. The first write to a bucket after a snapshot copies that bucket (about
/// keys / 16,384 entries) and, the first time, the 128 pointers of its chunk and of the root:
/// the copying is spread over the writes that follow a barrier, in steps of a few
/// microseconds, instead of a pause of the worker. Lookups cost one extra hash and two
/// indexed loads over a plain `HashMap`. The bucket of a key also fixes its key group, so
/// encoding by key group needs no rehashing.
///
/// ```
/// use rill_engine::state::{KeyedState, StateSnapshot, EncodedState};
/// let mut counts: KeyedState<String, u64> = KeyedState::default();
/// *counts.get_or_insert_with("a".to_string(), || 0) += 1;
/// let frozen = counts.snapshot();          // O(1)
/// *counts.get_or_insert_with("a".to_string(), || 0) += 1;
/// assert_eq!(counts.get("a"), Some(&2));
/// let EncodedState::Keyed(groups) = frozen.encode()? else { unreachable!() };
/// assert_eq!(groups.len(), 1); // one key, one key group, holding the count 1
/// # Ok::<(), rill_engine::state::StateError>(())
/// ```
#[derive(Debug)]
pub struct KeyedState<K, V> {
    root: Arc<Vec<Arc<Chunk<K, V>>>>,
    len: usize,
}

impl<K, V> Clone for KeyedState<K, V> {
    fn clone(&self) -> Self {
        Self {
            root: self.root.clone(),
            len: self.len,
        }
    }
}

impl<K, V> Default for KeyedState<K, V> {
    fn default() -> Self {
        let chunk: Arc<Chunk<K, V>> = Arc::new((0..PER_CHUNK).map(|_| None).collect());
        Self {
            root: Arc::new(vec![chunk; CHUNKS]),
            len: 0,
        }
    }
}

#[inline]
fn bucket_of<Q: EncodeKey + ?Sized>(key: &Q) -> usize {
    (hash_key(key) % BUCKETS as u64) as usize
}

/// Bucket `b` of `root` for writing: copies it (and its chunk, and the root) first if a
/// snapshot still shares them. A free function so callers can borrow other fields alongside.
#[inline]
fn bucket_in<K: Clone, V: Clone>(
    root: &mut Arc<Vec<Arc<Chunk<K, V>>>>,
    b: usize,
) -> &mut Bucket<K, V> {
    let chunk = &mut Arc::make_mut(root)[b / PER_CHUNK];
    let slot = &mut Arc::make_mut(chunk)[b % PER_CHUNK];
    Arc::make_mut(slot.get_or_insert_with(|| Arc::new(Bucket::default())))
}

impl<K: EncodeKey + Hash + Eq + Clone, V: Clone> KeyedState<K, V> {
    /// The value of `key`, if any.
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: EncodeKey + Hash + Eq + ?Sized,
    {
        let b = bucket_of(key);
        self.root[b / PER_CHUNK][b % PER_CHUNK].as_ref()?.get(key)
    }

    /// The bucket `b` for writing (see [`bucket_in`]).
    #[inline]
    fn bucket_mut(&mut self, b: usize) -> &mut Bucket<K, V> {
        bucket_in(&mut self.root, b)
    }

    /// The value of `key` for update, if any.
    #[inline]
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: std::borrow::Borrow<Q>,
        Q: EncodeKey + Hash + Eq + ?Sized,
    {
        let b = bucket_of(key);
        // Look before copying: a miss must not copy a bucket.
        self.root[b / PER_CHUNK][b % PER_CHUNK].as_ref()?.get(key)?;
        self.bucket_mut(b).get_mut(key)
    }

    /// The value of `key` for update, inserting `init()` first if it is absent.
    #[inline]
    pub fn get_or_insert_with(&mut self, key: K, init: impl FnOnce() -> V) -> &mut V {
        let b = bucket_of(&key);
        let len = &mut self.len;
        bucket_in(&mut self.root, b).entry(key).or_insert_with(|| {
            *len += 1;
            init()
        })
    }

    /// The value of `key` for update, inserting `init()` under a clone of `key` first if it is
    /// absent: one lookup, and the key is cloned only when it is new (a `String` key is not
    /// allocated again for every record).
    #[inline]
    pub fn get_or_insert_cloned(&mut self, key: &K, init: impl FnOnce() -> V) -> &mut V {
        let b = bucket_of(key);
        let len = &mut self.len;
        let bucket = bucket_in(&mut self.root, b);
        if !bucket.contains_key(key) {
            *len += 1;
            bucket.insert(key.clone(), init());
        }
        match bucket.get_mut(key) {
            Some(v) => v,
            None => unreachable!("inserted just above"),
        }
    }

    /// Sets the value of `key`, returning the previous one.
    #[inline]
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let old = self.bucket_mut(bucket_of(&key)).insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes `key`, returning its value.
    #[inline]
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: EncodeKey + Hash + Eq + ?Sized,
    {
        let b = bucket_of(key);
        self.root[b / PER_CHUNK][b % PER_CHUNK].as_ref()?.get(key)?;
        let old = self.bucket_mut(b).remove(key);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no key is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every (key, value), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.root
            .iter()
            .flat_map(|chunk| chunk.iter())
            .flatten()
            .flat_map(|bucket| bucket.iter())
    }

    /// Freezes the current contents, in O(1), for a checkpoint.
    pub fn snapshot(&self) -> KeyedSnapshot<K, V> {
        KeyedSnapshot {
            root: self.root.clone(),
        }
    }
}

impl<K: StateKey, V: StateValue> KeyedState<K, V> {
    /// Freezes the current contents for a checkpoint, boxed for
    /// [`Operator::snapshot`](crate::Operator::snapshot).
    pub fn boxed_snapshot(&self) -> Option<Box<dyn StateSnapshot>> {
        Some(Box::new(self.snapshot()))
    }

    /// Freezes the current contents with the operator's event-time watermark: each key group
    /// is stored with it, so that whichever worker restores the group knows which of its
    /// windows or buffered records were already final (see
    /// [`restore_with_watermark`](Self::restore_with_watermark)).
    pub fn boxed_snapshot_with_watermark(&self, watermark: i64) -> Option<Box<dyn StateSnapshot>> {
        Some(Box::new(WatermarkedSnapshot {
            keys: self.snapshot(),
            watermark,
        }))
    }

    /// Loads the key groups this worker owns from a checkpoint taken with
    /// [`boxed_snapshot_with_watermark`](Self::boxed_snapshot_with_watermark), calling `each`
    /// for every restored entry (to schedule its timers), and returns the highest watermark
    /// stored with them (`i64::MIN` if none).
    pub fn restore_with_watermark(
        &mut self,
        state: &RestoredState<'_>,
        mut each: impl FnMut(&K, &V),
    ) -> Result<i64, StateError> {
        state.expect_type(std::any::type_name::<WatermarkedSnapshot<K, V>>())?;
        let mut highest = i64::MIN;
        for (_, bytes) in state.owned_groups() {
            let (watermark, entries): (i64, Vec<u8>) = decode(bytes, state.node())?;
            highest = highest.max(watermark);
            let entries: Vec<(K, V)> = decode(&entries, state.node())?;
            for (k, v) in entries {
                each(&k, &v);
                self.insert(k, v);
            }
        }
        Ok(highest)
    }

    /// Loads the key groups this worker owns from a checkpoint, checking the state type.
    pub fn restore(&mut self, state: &RestoredState<'_>) -> Result<(), StateError> {
        state.expect_type(std::any::type_name::<KeyedSnapshot<K, V>>())?;
        for (_, bytes) in state.owned_groups() {
            let entries: Vec<(K, V)> = decode(bytes, state.node())?;
            for (k, v) in entries {
                self.insert(k, v);
            }
        }
        Ok(())
    }
}

/// A frozen [`KeyedState`] with the watermark of its operator, stored with every key group.
struct WatermarkedSnapshot<K, V> {
    keys: KeyedSnapshot<K, V>,
    watermark: i64,
}

impl<K, V> StateSnapshot for WatermarkedSnapshot<K, V>
where
    K: Hash + Eq + Clone + Serialize + Send + Sync + 'static,
    V: Clone + Serialize + Send + Sync + 'static,
{
    fn encode(&self) -> Result<EncodedState, StateError> {
        let EncodedState::Keyed(groups) = self.keys.encode()? else {
            return Err(StateError::Encode("keyed state encoded per worker".into()));
        };
        let groups = groups
            .into_iter()
            .map(|(g, bytes)| Ok((g, encode(&(self.watermark, bytes))?)))
            .collect::<Result<Vec<_>, StateError>>()?;
        Ok(EncodedState::Keyed(groups))
    }
}

/// A frozen [`KeyedState`], encoded per key group on the coordinator thread.
#[derive(Debug)]
pub struct KeyedSnapshot<K, V> {
    root: Arc<Vec<Arc<Chunk<K, V>>>>,
}

impl<K, V> StateSnapshot for KeyedSnapshot<K, V>
where
    K: Hash + Eq + Clone + Serialize + Send + Sync + 'static,
    V: Clone + Serialize + Send + Sync + 'static,
{
    fn encode(&self) -> Result<EncodedState, StateError> {
        // Key group g lives in buckets g, g + KEY_GROUPS, ...: gathered one group at a time
        // into one reused vector, so encoding allocates little beyond its output.
        let groups = KEY_GROUPS as usize;
        let mut entries: Vec<(&K, &V)> = Vec::new();
        let mut out = Vec::new();
        for g in 0..groups {
            entries.clear();
            for b in (g..BUCKETS).step_by(groups) {
                if let Some(bucket) = &self.root[b / PER_CHUNK][b % PER_CHUNK] {
                    entries.extend(bucket.iter());
                }
            }
            if !entries.is_empty() {
                out.push((g as u32, encode(&entries)?));
            }
        }
        Ok(EncodedState::Keyed(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::snapshot::NodeRestore;

    fn restore_into(
        snapshots: &[KeyedSnapshot<String, u64>],
        worker: usize,
        workers: usize,
    ) -> KeyedState<String, u64> {
        let mut data = NodeRestore {
            type_name: std::any::type_name::<KeyedSnapshot<String, u64>>().into(),
            ..Default::default()
        };
        for s in snapshots {
            let EncodedState::Keyed(groups) = s.encode().unwrap() else {
                panic!("keyed state encodes per key group")
            };
            data.keyed.extend(groups);
        }
        let mut state = KeyedState::default();
        state
            .restore(&RestoredState {
                node: "count",
                data: &data,
                worker,
                workers,
            })
            .unwrap();
        state
    }

    #[test]
    fn snapshot_is_unaffected_by_later_writes_and_restores_at_another_parallelism() {
        // Two old workers, each owning the keys that route to it.
        let mut old: Vec<KeyedState<String, u64>> = vec![KeyedState::default(); 2];
        for i in 0..1000u64 {
            let key = format!("k{i}");
            let w = crate::state::worker_for_key(&key, 2);
            old[w].insert(key, i);
        }
        let snaps: Vec<_> = old.iter().map(|s| s.snapshot()).collect();
        for s in &mut old {
            for (_, v) in s.clone().iter() {
                let _ = v;
            }
            s.insert("k1".into(), 999_999);
            s.insert("late".into(), 1);
        }
        // Restore at three workers: every key exactly once, with its snapshot value.
        let mut seen = 0;
        for w in 0..3 {
            let st = restore_into(&snaps, w, 3);
            for (k, v) in st.iter() {
                assert_eq!(crate::state::worker_for_key(k, 3), w);
                assert_eq!(*v, k[1..].parse::<u64>().unwrap());
                seen += 1;
            }
        }
        assert_eq!(seen, 1000);
    }

    #[test]
    fn a_changed_state_type_is_refused() {
        let data = NodeRestore {
            type_name: "something else".into(),
            ..Default::default()
        };
        let mut state: KeyedState<String, u64> = KeyedState::default();
        let err = state
            .restore(&RestoredState {
                node: "count",
                data: &data,
                worker: 0,
                workers: 1,
            })
            .unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
    }

    #[test]
    fn corrupt_bytes_are_an_error_not_garbage() {
        assert!(decode::<Vec<(String, u64)>>(&[0xff, 0xff, 0xff], "count").is_err());
        let bytes = encode(&vec![("a".to_string(), 1u64)]).unwrap();
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode::<Vec<(String, u64)>>(&longer, "count").is_err());
        assert_eq!(
            decode::<Vec<(String, u64)>>(&bytes, "count").unwrap(),
            vec![("a".to_string(), 1)]
        );
    }
}
