//! Per-key state of a keyed operator: a copy-on-write table snapshotted in O(1).

use std::hash::Hash;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::key::{EncodeKey, StateKey};
use super::key_group::{hash_key, BuildKeyHasher, KEY_GROUPS};
use super::snapshot::{
    decode, encode, EncodedState, RestoredState, StateError, StateSnapshot, StateValue,
};
use super::timers::TimeDomain;
use super::ttl::{Expiry, StateTtl, EXPIRE_PER_ADVANCE};

/// Buckets per chunk, and chunks: 16,384 buckets in all, four per key group, so a bucket's
/// key group is `bucket % KEY_GROUPS` with no rehashing.
const PER_CHUNK: usize = 128;
const CHUNKS: usize = 128;
const BUCKETS: usize = PER_CHUNK * CHUNKS;
const _: () = assert!(BUCKETS.is_multiple_of(KEY_GROUPS as usize));

/// A value with the time it was last written (on the TTL's clock; `i64::MIN` without a TTL),
/// and the snapshot interval it was last written in (not stored: it only tells an
/// incremental checkpoint which entries changed).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Slot<V> {
    value: V,
    touched: i64,
    #[serde(skip)]
    version: u32,
}

type Bucket<K, V> = std::collections::HashMap<K, Slot<V>, BuildKeyHasher>;

/// The buckets written since the last snapshot, one bit each: where an incremental
/// checkpoint looks for the entries that changed.
#[derive(Debug, Clone)]
struct ChangedBuckets(Box<[u64; BUCKETS / 64]>);

impl Default for ChangedBuckets {
    fn default() -> Self {
        Self(Box::new([0; BUCKETS / 64]))
    }
}

impl ChangedBuckets {
    #[inline]
    fn mark(&mut self, bucket: usize) {
        self.0[bucket / 64] |= 1 << (bucket % 64);
    }

    /// The marked buckets, in order.
    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(word, bits)| {
            (0..64)
                .filter(move |bit| bits & (1 << bit) != 0)
                .map(move |bit| word * 64 + bit)
        })
    }
}
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
/// With a [`StateTtl`] ([`with_ttl`](Self::with_ttl)) each value carries the time it was
/// last written; a value older than the TTL is never returned, and the operator's clock
/// advances ([`advance_clock`](Self::advance_clock), [`tick`](Self::tick)) remove expired
/// keys a bounded number at a time (see the `ttl` module), so state and checkpoints stay as
/// large as the live keys, with no scan of the table.
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
    /// Buckets written since the last snapshot.
    changed: ChangedBuckets,
    /// Keys removed since the last snapshot (explicitly or by the TTL), with their key group.
    removed: Vec<(u32, K)>,
    /// The snapshot interval: entries written now carry it; every snapshot moves it on.
    version: u32,
    /// The stamp writes leave: the TTL clock's reading, `i64::MIN` without a TTL.
    stamp: i64,
    /// Values stamped before this have expired (`i64::MIN`: none).
    expire_before: i64,
    expiry: Option<Box<Expiry<K>>>,
}

impl<K: Clone, V> Clone for KeyedState<K, V> {
    fn clone(&self) -> Self {
        Self {
            root: self.root.clone(),
            len: self.len,
            changed: self.changed.clone(),
            removed: self.removed.clone(),
            version: self.version,
            stamp: self.stamp,
            expire_before: self.expire_before,
            expiry: self.expiry.clone(),
        }
    }
}

impl<K, V> Default for KeyedState<K, V> {
    fn default() -> Self {
        let chunk: Arc<Chunk<K, V>> = Arc::new((0..PER_CHUNK).map(|_| None).collect());
        Self {
            root: Arc::new(vec![chunk; CHUNKS]),
            len: 0,
            changed: ChangedBuckets::default(),
            removed: Vec::new(),
            version: 0,
            stamp: i64::MIN,
            expire_before: i64::MIN,
            expiry: None,
        }
    }
}

impl<K, V> KeyedState<K, V> {
    /// Sets (or, with `None`, clears) the time to live of this state's keys. Set it before
    /// the first write.
    pub fn with_ttl(mut self, ttl: Option<StateTtl>) -> Self {
        self.expiry = ttl.map(|t| Box::new(Expiry::new(t)));
        self
    }

    /// The time to live, if any.
    pub fn ttl(&self) -> Option<StateTtl> {
        self.expiry.as_ref().map(|e| e.ttl())
    }

    /// Whether [`tick`](Self::tick) has anything to do: the TTL counts processing time, so
    /// expiry follows the wall clock. Without one, an operator need not read the clock.
    pub fn follows_wall_clock(&self) -> bool {
        self.ttl()
            .is_some_and(|ttl| ttl.domain() == TimeDomain::ProcessingTime)
    }

    /// Keys removed because their TTL passed, so far.
    pub fn expired(&self) -> u64 {
        self.expiry.as_ref().map_or(0, |e| e.expired)
    }
}

#[inline]
fn bucket_of<Q: EncodeKey + ?Sized>(key: &Q) -> usize {
    (hash_key(key) % BUCKETS as u64) as usize
}

/// Bucket `b` of `root` for writing: copies it (and its chunk, and the root) first if a
/// snapshot still shares them, and marks its key group changed. A free function so callers
/// can borrow other fields alongside.
#[inline]
fn bucket_in<'a, K: Clone, V: Clone>(
    root: &'a mut Arc<Vec<Arc<Chunk<K, V>>>>,
    changed: &mut ChangedBuckets,
    b: usize,
) -> &'a mut Bucket<K, V> {
    changed.mark(b);
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
        let slot = self.root[b / PER_CHUNK][b % PER_CHUNK].as_ref()?.get(key)?;
        (slot.touched >= self.expire_before).then_some(&slot.value)
    }

    /// The bucket `b` for writing (see [`bucket_in`]).
    #[inline]
    fn bucket_mut(&mut self, b: usize) -> &mut Bucket<K, V> {
        bucket_in(&mut self.root, &mut self.changed, b)
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
        let slot = self.root[b / PER_CHUNK][b % PER_CHUNK].as_ref()?.get(key)?;
        if slot.touched < self.expire_before {
            return None;
        }
        let (stamp, version) = (self.stamp, self.version);
        let slot = self.bucket_mut(b).get_mut(key)?;
        slot.touched = stamp;
        slot.version = version;
        Some(&mut slot.value)
    }

    /// The value of `key` for update, inserting `init()` first if it is absent.
    #[inline]
    pub fn get_or_insert_with(&mut self, key: K, init: impl FnOnce() -> V) -> &mut V {
        if self.expiry.is_some() {
            return self.get_or_insert_cloned(&key, init);
        }
        let b = bucket_of(&key);
        let (len, stamp, version) = (&mut self.len, self.stamp, self.version);
        let slot = bucket_in(&mut self.root, &mut self.changed, b)
            .entry(key)
            .or_insert_with(|| {
                *len += 1;
                Slot {
                    value: init(),
                    touched: stamp,
                    version,
                }
            });
        slot.version = version;
        &mut slot.value
    }

    /// The value of `key` for update, inserting `init()` under a clone of `key` first if it is
    /// absent: one lookup, and the key is cloned only when it is new (a `String` key is not
    /// allocated again for every record).
    #[inline]
    pub fn get_or_insert_cloned(&mut self, key: &K, init: impl FnOnce() -> V) -> &mut V {
        let b = bucket_of(key);
        let (stamp, expire_before, version) = (self.stamp, self.expire_before, self.version);
        let bucket = bucket_in(&mut self.root, &mut self.changed, b);
        match bucket.get_mut(key) {
            Some(slot) if slot.touched >= expire_before => {}
            Some(slot) => {
                // Expired but not yet reached by the queue: it starts afresh, and the queue
                // entry it still has will find its new stamp.
                *slot = Slot {
                    value: init(),
                    touched: stamp,
                    version,
                }
            }
            None => {
                self.len += 1;
                bucket.insert(
                    key.clone(),
                    Slot {
                        value: init(),
                        touched: stamp,
                        version,
                    },
                );
                if let Some(expiry) = &mut self.expiry {
                    expiry.schedule(stamp, key.clone());
                    self.expire_some(2);
                }
            }
        }
        let bucket = bucket_in(&mut self.root, &mut self.changed, b);
        match bucket.get_mut(key) {
            Some(slot) => {
                slot.touched = stamp;
                slot.version = version;
                &mut slot.value
            }
            None => unreachable!("inserted just above"),
        }
    }

    /// Sets the value of `key`, returning the previous one.
    #[inline]
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let (stamp, expire_before, version) = (self.stamp, self.expire_before, self.version);
        let b = bucket_of(&key);
        let queued = self.expiry.is_some().then(|| key.clone());
        let old = bucket_in(&mut self.root, &mut self.changed, b).insert(
            key,
            Slot {
                value,
                touched: stamp,
                version,
            },
        );
        match old {
            Some(old) => (old.touched >= expire_before).then_some(old.value),
            None => {
                self.len += 1;
                if let (Some(expiry), Some(key)) = (&mut self.expiry, queued) {
                    expiry.schedule(stamp, key);
                    self.expire_some(2);
                }
                None
            }
        }
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
        let (key, old) = self.bucket_mut(b).remove_entry(key)?;
        self.len -= 1;
        self.note_removed(b, key);
        (old.touched >= self.expire_before).then_some(old.value)
    }

    /// Keeps a removed key for the next incremental checkpoint, once checkpoints are taken
    /// (before the first snapshot nothing needs it, and a job without checkpoints never
    /// takes one, so the list cannot grow without bound).
    fn note_removed(&mut self, bucket: usize, key: K) {
        if self.version > 0 {
            self.removed
                .push(((bucket % KEY_GROUPS as usize) as u32, key));
        }
    }

    /// Moves the TTL clock of `domain` to `now` (the watermark for an event-time TTL, the
    /// wall clock in milliseconds for a processing-time one) and removes up to a bounded
    /// number of expired keys. Does nothing for the other domain or without a TTL.
    pub fn advance_clock(&mut self, domain: TimeDomain, now: i64) {
        let Some(expiry) = &mut self.expiry else {
            return;
        };
        if expiry.ttl().domain() != domain {
            return;
        }
        expiry.advance(now);
        self.stamp = expiry.now();
        self.expire_before = expiry.expire_before();
        self.expire_some(EXPIRE_PER_ADVANCE);
    }

    /// For a processing-time TTL: advances its clock to the worker's
    /// [`wall_millis`](crate::time::wall_millis) and returns when expired keys are due next
    /// (an operator's [`on_poll`](crate::Operator::on_poll) returns it). `None` otherwise.
    pub fn tick(&mut self) -> Option<std::time::Instant> {
        if self.ttl()?.domain() != TimeDomain::ProcessingTime {
            return None;
        }
        self.tick_at(crate::time::wall_millis())
    }

    /// [`tick`](Self::tick) with the wall clock already read (`now`, milliseconds since the
    /// Unix epoch), for an operator that reads it anyway.
    pub fn tick_at(&mut self, now: i64) -> Option<std::time::Instant> {
        if self.ttl()?.domain() != TimeDomain::ProcessingTime {
            return None;
        }
        self.advance_clock(TimeDomain::ProcessingTime, now);
        let expiry = self.expiry.as_ref()?;
        let next = expiry.next_due()?;
        Some(if next <= expiry.now() {
            std::time::Instant::now()
        } else {
            crate::time::deadline_at(next)
        })
    }

    /// Removes up to `most` keys the expiry queue says may have expired: each is removed if
    /// its stamp is old, or queued again at its new expiry if it was written since.
    fn expire_some(&mut self, most: usize) {
        let Some(expiry) = &mut self.expiry else {
            return;
        };
        let expire_before = expiry.expire_before();
        for _ in 0..most {
            let Some(key) = expiry.pop_due() else {
                return;
            };
            let b = bucket_of(&key);
            let Some(slot) = self.root[b / PER_CHUNK][b % PER_CHUNK]
                .as_ref()
                .and_then(|bucket| bucket.get(&key))
            else {
                continue;
            };
            if slot.touched < expire_before {
                bucket_in(&mut self.root, &mut self.changed, b).remove(&key);
                self.len -= 1;
                expiry.expired += 1;
                if self.version > 0 {
                    self.removed.push(((b % KEY_GROUPS as usize) as u32, key));
                }
            } else {
                expiry.schedule(slot.touched, key);
            }
        }
    }

    /// Entries in the expiry queue (about one per live key); for tests and metrics.
    pub fn expiry_queue_len(&self) -> usize {
        self.expiry.as_ref().map_or(0, |e| e.queued())
    }

    /// Number of keys held (with a TTL: including expired keys not yet removed).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no key is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every live (key, value), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        let expire_before = self.expire_before;
        self.root
            .iter()
            .flat_map(|chunk| chunk.iter())
            .flatten()
            .flat_map(|bucket| bucket.iter())
            .filter(move |(_, slot)| slot.touched >= expire_before)
            .map(|(k, slot)| (k, &slot.value))
    }

    /// Freezes the current contents, in O(1), for a checkpoint.
    ///
    /// The snapshot also carries which entries were written or removed since the previous
    /// snapshot, so that an incremental checkpoint stores only those
    /// ([`StateSnapshot::encode_changes`]).
    pub fn snapshot(&mut self) -> KeyedSnapshot<K, V> {
        let snapshot = KeyedSnapshot {
            root: self.root.clone(),
            expire_before: self.expire_before,
            changed: std::mem::take(&mut self.changed),
            removed: std::mem::take(&mut self.removed),
            version: self.version,
        };
        // Entries written from now on belong to the next snapshot's changes.
        self.version = self.version.wrapping_add(1).max(1);
        snapshot
    }

    /// Puts a restored entry back, queuing its expiry. An entry written without a TTL
    /// (stamp `i64::MIN`) counts as written at `fallback`.
    fn restore_entry(&mut self, key: K, slot: Slot<V>, fallback: i64) {
        let touched = match (&mut self.expiry, slot.touched) {
            (None, _) => i64::MIN,
            (Some(_), i64::MIN) => fallback,
            (Some(_), t) => t,
        };
        if let Some(expiry) = &mut self.expiry {
            expiry.schedule(touched, key.clone());
        }
        let b = bucket_of(&key);
        let slot = Slot {
            value: slot.value,
            touched,
            version: self.version,
        };
        if bucket_in(&mut self.root, &mut self.changed, b)
            .insert(key, slot)
            .is_none()
        {
            self.len += 1;
        }
    }

    /// The stamp of a restored entry written without a TTL: now, on the TTL's clock (the
    /// restored watermark `watermark` for an event-time TTL).
    fn restore_stamp(&self, watermark: i64) -> i64 {
        match self.ttl().map(|t| t.domain()) {
            Some(TimeDomain::ProcessingTime) => crate::time::wall_millis(),
            _ => watermark,
        }
    }
}

impl<K: StateKey, V: StateValue> KeyedState<K, V> {
    /// Freezes the current contents for a checkpoint, boxed for
    /// [`Operator::snapshot`](crate::Operator::snapshot).
    pub fn boxed_snapshot(&mut self) -> Option<Box<dyn StateSnapshot>> {
        Some(Box::new(self.snapshot()))
    }

    /// Freezes the current contents with the operator's event-time watermark: each key group
    /// is stored with it, so that whichever worker restores the group knows which of its
    /// windows or buffered records were already final (see
    /// [`restore_with_watermark`](Self::restore_with_watermark)).
    pub fn boxed_snapshot_with_watermark(
        &mut self,
        watermark: i64,
    ) -> Option<Box<dyn StateSnapshot>> {
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
            let entries: Vec<(K, Slot<V>)> = decode(&entries, state.node())?;
            let fallback = self.restore_stamp(watermark);
            for (k, slot) in entries {
                each(&k, &slot.value);
                self.restore_entry(k, slot, fallback);
            }
        }
        Ok(highest)
    }

    /// Loads the key groups this worker owns from a checkpoint, checking the state type.
    pub fn restore(&mut self, state: &RestoredState<'_>) -> Result<(), StateError> {
        state.expect_type(std::any::type_name::<KeyedSnapshot<K, V>>())?;
        let fallback = self.restore_stamp(i64::MIN);
        for (_, bytes) in state.owned_groups() {
            let entries: Vec<(K, Slot<V>)> = decode(bytes, state.node())?;
            for (k, slot) in entries {
                self.restore_entry(k, slot, fallback);
            }
        }
        // Then the changes of every incremental checkpoint since, oldest first.
        for (_, bytes) in state.owned_changes() {
            let changes: Vec<(K, Option<Slot<V>>)> = decode(bytes, state.node())?;
            for (k, slot) in changes {
                match slot {
                    Some(slot) => self.restore_entry(k, slot, fallback),
                    None => {
                        let b = bucket_of(&k);
                        if bucket_in(&mut self.root, &mut self.changed, b)
                            .remove(&k)
                            .is_some()
                        {
                            self.len -= 1;
                        }
                    }
                }
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
    /// Entries stamped before this had expired when the snapshot was taken: left out.
    expire_before: i64,
    /// Buckets written since the previous snapshot.
    changed: ChangedBuckets,
    /// Keys removed since the previous snapshot, with their key group.
    removed: Vec<(u32, K)>,
    /// Entries written since the previous snapshot carry this.
    version: u32,
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
        let mut entries: Vec<(&K, &Slot<V>)> = Vec::new();
        let mut out = Vec::new();
        for g in 0..groups {
            entries.clear();
            for b in (g..BUCKETS).step_by(groups) {
                if let Some(bucket) = &self.root[b / PER_CHUNK][b % PER_CHUNK] {
                    entries.extend(
                        bucket
                            .iter()
                            .filter(|(_, slot)| slot.touched >= self.expire_before),
                    );
                }
            }
            if !entries.is_empty() {
                out.push((g as u32, encode(&entries)?));
            }
        }
        Ok(EncodedState::Keyed(out))
    }

    /// The entries written since the previous snapshot and the keys removed, per key group:
    /// removals first, so that a key removed and written again ends up written.
    fn encode_changes(&self) -> Result<Option<EncodedState>, StateError> {
        type Change<'a, K, V> = (&'a K, Option<&'a Slot<V>>);
        let mut by_group: std::collections::BTreeMap<u32, Vec<Change<'_, K, V>>> =
            std::collections::BTreeMap::new();
        for (group, key) in &self.removed {
            by_group.entry(*group).or_default().push((key, None));
        }
        for b in self.changed.iter() {
            let Some(bucket) = &self.root[b / PER_CHUNK][b % PER_CHUNK] else {
                continue;
            };
            let written = bucket.iter().filter(|(_, slot)| {
                slot.version == self.version && slot.touched >= self.expire_before
            });
            for (key, slot) in written {
                by_group
                    .entry((b % KEY_GROUPS as usize) as u32)
                    .or_default()
                    .push((key, Some(slot)));
            }
        }
        let groups = by_group
            .into_iter()
            .map(|(g, changes)| Ok((g, encode(&changes)?)))
            .collect::<Result<Vec<_>, StateError>>()?;
        Ok(Some(EncodedState::KeyedDelta(groups)))
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
        restore_from(&data, worker, workers)
    }

    /// Worker `worker` of `workers`' state, restored from `data`.
    fn restore_from(data: &NodeRestore, worker: usize, workers: usize) -> KeyedState<String, u64> {
        let mut state = KeyedState::default();
        state
            .restore(&RestoredState {
                node: "count",
                data,
                worker,
                workers,
            })
            .unwrap();
        state
    }

    /// Every entry of `state`, sorted.
    fn entries(state: &KeyedState<String, u64>) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = state.iter().map(|(k, v)| (k.clone(), *v)).collect();
        all.sort();
        all
    }

    #[test]
    fn a_full_snapshot_and_the_changes_after_it_restore_the_live_state_at_any_parallelism() {
        let mut live: KeyedState<String, u64> = KeyedState::default();
        for i in 0..2_000u64 {
            live.insert(format!("k{i}"), i);
        }
        let base = live.snapshot().encode().unwrap();
        // Interval 1: updates, removals, new keys, and a key removed and written again.
        for i in 0..100u64 {
            *live.get_or_insert_with(format!("k{i}"), || 0) += 1_000;
        }
        for i in 100..150u64 {
            live.remove(&format!("k{i}"));
        }
        live.insert("new-1".into(), 1);
        live.remove("k150");
        live.insert("k150".into(), 150_150);
        let first = live.snapshot();
        // Interval 2: a key new in interval 1 removed, another updated twice.
        live.remove("new-1");
        live.insert("k7".into(), 7);
        live.insert("k7".into(), 77);
        let second = live.snapshot();
        let changes = |s: &KeyedSnapshot<String, u64>| match s.encode_changes().unwrap() {
            Some(EncodedState::KeyedDelta(groups)) => groups,
            other => panic!("keyed state encodes its changes, not {other:?}"),
        };
        let (first, second) = (changes(&first), changes(&second));
        let all: usize = first.iter().chain(&second).map(|(_, b)| b.len()).sum();
        let EncodedState::Keyed(base) = base else {
            panic!("a full snapshot encodes per key group")
        };
        let whole: usize = base.iter().map(|(_, b)| b.len()).sum();
        assert!(
            all * 5 < whole,
            "changes {all} bytes, the whole state {whole}"
        );
        let data = NodeRestore {
            type_name: std::any::type_name::<KeyedSnapshot<String, u64>>().into(),
            keyed: base,
            deltas: vec![first, second],
            ..Default::default()
        };
        for workers in [1, 3] {
            let mut restored = Vec::new();
            for worker in 0..workers {
                let state = restore_from(&data, worker, workers);
                assert_eq!(state.len(), state.iter().count());
                restored.extend(entries(&state));
            }
            restored.sort();
            assert_eq!(restored, entries(&live), "restored at {workers} worker(s)");
        }
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
        let snaps: Vec<_> = old.iter_mut().map(|s| s.snapshot()).collect();
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
    fn ttl_keeps_state_and_checkpoints_flat_on_an_endless_stream_of_new_keys() {
        let mut state: KeyedState<u64, u64> = KeyedState::default().with_ttl(Some(
            StateTtl::event_time(std::time::Duration::from_secs(10)),
        ));
        let mut sizes = Vec::new();
        // 1,000 new keys per second of event time for 200 s; key 0 is written every
        // second and so never expires.
        for second in 0..200i64 {
            state.advance_clock(TimeDomain::EventTime, second * 1_000);
            for i in 0..1_000u64 {
                *state.get_or_insert_with(second as u64 * 1_000 + i + 1, || 0) += 1;
            }
            *state.get_or_insert_with(0, || 0) += 1;
            if second % 20 == 19 {
                let EncodedState::Keyed(groups) = state.snapshot().encode().unwrap() else {
                    panic!("keyed")
                };
                let bytes: usize = groups.iter().map(|(_, b)| b.len()).sum();
                sizes.push((state.len(), state.expiry_queue_len(), bytes));
            }
        }
        eprintln!("(keys, queued, checkpoint bytes) every 20 s: {sizes:?}");
        for &(len, queued, bytes) in &sizes {
            // About 11 s of keys live (10 s TTL, plus slot rounding and the bounded removal).
            assert!(len <= 12_500, "{sizes:?}");
            assert!(queued <= 12_500, "{sizes:?}");
            assert!(bytes <= 12_500 * 16, "{sizes:?}");
        }
        assert_eq!(
            state.get(&0),
            Some(&200),
            "a key written every second lives on"
        );
        assert_eq!(state.get(&1), None, "a key written once at 0 s is gone");
        assert!(state.expired() > 180_000, "{}", state.expired());
    }

    #[test]
    fn an_expired_value_is_never_returned_even_before_it_is_removed() {
        let mut state: KeyedState<&str, u64> = KeyedState::default().with_ttl(Some(
            StateTtl::processing_time(std::time::Duration::from_millis(100)),
        ));
        state.advance_clock(TimeDomain::ProcessingTime, 1_000);
        state.insert("a", 1);
        state.insert("b", 1);
        state.advance_clock(TimeDomain::ProcessingTime, 1_050);
        *state.get_mut("b").unwrap() += 1; // written again at 1,050
                                           // The event-time clock is not this state's: nothing moves.
        state.advance_clock(TimeDomain::EventTime, 5_000);
        assert_eq!(state.get("a"), Some(&1));
        state.advance_clock(TimeDomain::ProcessingTime, 1_100);
        assert_eq!(state.get("a"), None, "written at 1,000, expired at 1,100");
        assert_eq!(state.get("b"), Some(&2));
        assert_eq!(
            *state.get_or_insert_with("a", || 7),
            7,
            "an expired key starts afresh"
        );
        assert_eq!(state.iter().count(), 2);
    }

    #[test]
    fn keys_written_before_the_clock_starts_live_a_ttl_from_its_first_reading() {
        let mut state: KeyedState<&str, u64> = KeyedState::default().with_ttl(Some(
            StateTtl::processing_time(std::time::Duration::from_millis(100)),
        ));
        state.insert("early", 1);
        state.advance_clock(TimeDomain::ProcessingTime, 1_000_000);
        assert_eq!(state.get("early"), Some(&1));
        state.advance_clock(TimeDomain::ProcessingTime, 1_000_099);
        assert_eq!(state.get("early"), Some(&1));
        assert_eq!(state.len(), 1);
        state.advance_clock(TimeDomain::ProcessingTime, 1_000_100);
        assert_eq!(state.get("early"), None);
        assert_eq!(
            (state.len(), state.expired()),
            (0, 1),
            "removed by the queue"
        );
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
