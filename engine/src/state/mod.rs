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
//!
//! - [`key`]: what a key must be, and its stable byte encoding ([`EncodeKey`]).
//! - [`key_group`](mod@key_group): keys to key groups, key groups to workers.
//! - [`snapshot`]: snapshots, their encoding, and restoring from a checkpoint.
//! - [`keyed`]: [`KeyedState`], the copy-on-write per-key table.
//! - [`timers`]: [`TimerQueue`], a keyed operator's event-time and processing-time timers.
//! - [`ttl`]: [`StateTtl`], how long an untouched key's state lives, and its expiry queue.
//!
//! May use: the crate root only. Everything above it (operators, the runtime, checkpoints)
//! uses it.

pub mod key;
pub mod key_group;
pub mod keyed;
pub mod snapshot;
pub mod timers;
pub mod ttl;

pub use key::{encoded_key, EncodeKey, KeyWriter, StateKey};
pub use key_group::{
    hash_key, key_group, worker_for_group, worker_for_key, BuildKeyHasher, KeyHasher, KEY_GROUPS,
};
pub use keyed::{KeyedSnapshot, KeyedState};
pub use snapshot::{
    decode, encode, EncodedState, NodeRestore, RestoredState, StateError, StateSnapshot,
    StateValue, WorkerBlob,
};
pub use timers::{TimeDomain, TimerQueue};
pub use ttl::StateTtl;
