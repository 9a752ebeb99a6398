//! Operator state at a checkpoint: captured on the worker in O(1), encoded off it, restored
//! at any parallelism.
//!
//! A stateful operator keeps its keyed state in a [`KeyedState`], a copy-on-write table of
//! small hash maps. At a barrier the operator hands the engine a [`StateSnapshot`]: for a
//! `KeyedState` that is a clone of the table's root, one reference-count increment, so the
//! data path never waits for a copy. The coordinator thread later calls
//! [`StateSnapshot::encode`], which walks the frozen table and encodes each key group with
//! `bincode`. Writes the worker makes after the barrier copy only the buckets they touch
//! (copy-on-write), leaving the snapshot intact.
//!
//! On recovery each worker receives, through [`RestoredState`], the encoded key groups it owns
//! under the *new* parallelism, from the files of every worker of the old run.

use std::hash::Hash;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use crate::keygroup::{hash_key, worker_for_group, BuildKeyHasher, KEY_GROUPS};

/// Why state could not be captured, encoded or restored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// `bincode` could not encode the state.
    #[error("could not encode state: {0}")]
    Encode(String),
    /// Stored state could not be decoded (corrupt file, or a changed state type).
    #[error("could not decode the state of `{node}`: {message}")]
    Decode {
        /// The operator whose state it was.
        node: String,
        /// What went wrong.
        message: String,
    },
    /// The stored state cannot be restored into this job (for example a changed state type, or
    /// a source that cannot change its parallelism).
    #[error("the checkpointed state of `{node}` does not fit this job: {message}")]
    Incompatible {
        /// The operator or source.
        node: String,
        /// Why.
        message: String,
    },
}

/// What a key of checkpointed keyed state must be: hashable, comparable, cloneable, and
/// encodable (derive `serde`'s `Serialize` and `Deserialize` for your own key types).
pub trait StateKey:
    Hash + Eq + Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
}
impl<T: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + Sync + 'static> StateKey for T {}

/// What a value of checkpointed state must be: cloneable and encodable.
pub trait StateValue: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static> StateValue for T {}

/// The encoded state of one operator on one worker, as stored in a checkpoint file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum EncodedState {
    /// Keyed state, one `bincode` blob per non-empty key group: restorable at any parallelism.
    Keyed(Vec<(u32, Vec<u8>)>),
    /// State of one worker's instance (a source position): restored by position in the old
    /// run's worker order.
    Worker(Vec<u8>),
}

impl EncodedState {
    /// Bytes of payload held.
    pub fn len(&self) -> usize {
        match self {
            EncodedState::Keyed(groups) => groups.iter().map(|(_, b)| b.len() + 4).sum(),
            EncodedState::Worker(b) => b.len(),
        }
    }

    /// True if no bytes are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// State captured at a barrier, encoded later on the coordinator thread.
///
/// Capturing must be cheap (the worker is waiting); encoding may take as long as it needs.
pub trait StateSnapshot: Send + 'static {
    /// Encodes the captured state.
    fn encode(&self) -> Result<EncodedState, StateError>;

    /// Names the state's type; stored in the checkpoint so that a job whose state type
    /// changed refuses to restore instead of decoding garbage.
    fn type_name(&self) -> &'static str {
        std::any::type_name::<Self>()
    }
}

/// A worker-local blob, for example a source's position.
#[derive(Debug, Clone)]
pub struct WorkerBlob(pub Vec<u8>);

impl StateSnapshot for WorkerBlob {
    fn encode(&self) -> Result<EncodedState, StateError> {
        Ok(EncodedState::Worker(self.0.clone()))
    }
}

/// Encodes `value` with rill's fixed `bincode` configuration.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StateError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| StateError::Encode(e.to_string()))
}

/// Decodes a value encoded by [`encode`]; `node` names the owner in the error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], node: &str) -> Result<T, StateError> {
    let (value, used) =
        bincode::serde::decode_from_slice::<T, _>(bytes, bincode::config::standard()).map_err(
            |e| StateError::Decode {
                node: node.to_string(),
                message: e.to_string(),
            },
        )?;
    if used != bytes.len() {
        return Err(StateError::Decode {
            node: node.to_string(),
            message: format!("{} trailing bytes", bytes.len() - used),
        });
    }
    Ok(value)
}

/// What one node stored in the checkpoint being restored, gathered from every old worker.
#[derive(Debug, Default, Clone)]
pub struct NodeRestore {
    /// The stored state type (see [`StateSnapshot::type_name`]).
    pub(crate) type_name: String,
    /// Every key group's blob, from all old workers.
    pub(crate) keyed: Vec<(u32, Vec<u8>)>,
    /// Per-worker blobs, indexed by the old worker.
    pub(crate) per_worker: Vec<Option<Vec<u8>>>,
}

/// The part of a checkpoint one operator or source instance restores from.
#[derive(Debug, Clone, Copy)]
pub struct RestoredState<'a> {
    pub(crate) node: &'a str,
    pub(crate) data: &'a NodeRestore,
    pub(crate) worker: usize,
    pub(crate) workers: usize,
}

impl<'a> RestoredState<'a> {
    /// The node's name, for error messages.
    pub fn node(&self) -> &str {
        self.node
    }

    /// The stored state type name.
    pub fn type_name(&self) -> &str {
        &self.data.type_name
    }

    /// The encoded key groups this worker owns under the current parallelism.
    pub fn owned_groups(&self) -> impl Iterator<Item = (u32, &'a [u8])> + 'a {
        let (worker, workers) = (self.worker, self.workers);
        self.data
            .keyed
            .iter()
            .filter(move |(g, _)| worker_for_group(*g, workers) == worker)
            .map(|(g, b)| (*g, b.as_slice()))
    }

    /// The per-worker blobs of the old run, indexed by old worker (`None` where that worker
    /// stored nothing).
    pub fn worker_blobs(&self) -> &'a [Option<Vec<u8>>] {
        &self.data.per_worker
    }

    /// The index of the worker restoring, and the current number of workers.
    pub fn worker(&self) -> (usize, usize) {
        (self.worker, self.workers)
    }

    /// Fails with [`StateError::Incompatible`] unless the stored type is `expected`.
    pub fn expect_type(&self, expected: &str) -> Result<(), StateError> {
        if self.data.type_name == expected {
            Ok(())
        } else {
            Err(StateError::Incompatible {
                node: self.node.to_string(),
                message: format!(
                    "stored state type is `{}`, this job's is `{expected}`",
                    self.data.type_name
                ),
            })
        }
    }
}

/// Buckets per chunk, and chunks: 16,384 buckets in all, four per key group, so a bucket's
/// key group is `bucket % KEY_GROUPS` with no rehashing.
const PER_CHUNK: usize = 128;
const CHUNKS: usize = 128;
const BUCKETS: usize = PER_CHUNK * CHUNKS;
const _: () = assert!(BUCKETS % KEY_GROUPS as usize == 0);

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
fn bucket_of<Q: Hash + ?Sized>(key: &Q) -> usize {
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

impl<K: Hash + Eq + Clone, V: Clone> KeyedState<K, V> {
    /// The value of `key`, if any.
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
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
        Q: Hash + Eq + ?Sized,
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
        Q: Hash + Eq + ?Sized,
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
            let w = crate::keygroup::worker_for_key(&key, 2);
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
                assert_eq!(crate::keygroup::worker_for_key(k, 3), w);
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
