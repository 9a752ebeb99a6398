//! What a checkpoint holds of an operator's state: snapshots taken at a barrier, their
//! encoding, and what a restarted worker gets back.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::key_group::worker_for_group;

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
    /// Keyed state's changes since the previous snapshot, one `bincode` blob per key group
    /// that has any: the entries written and the keys removed. An incremental checkpoint
    /// stores these; a restore applies them, oldest first, on top of the last full one.
    KeyedDelta(Vec<(u32, Vec<u8>)>),
}

impl EncodedState {
    /// Bytes of payload held.
    pub fn len(&self) -> usize {
        match self {
            EncodedState::Keyed(groups) | EncodedState::KeyedDelta(groups) => {
                groups.iter().map(|(_, b)| b.len() + 4).sum()
            }
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

    /// Encodes only what changed since the previous snapshot of the same state, as
    /// [`EncodedState::KeyedDelta`], for an incremental checkpoint; `None` (the default)
    /// when this state cannot tell, and the checkpoint then stores it whole.
    fn encode_changes(&self) -> Result<Option<EncodedState>, StateError> {
        Ok(None)
    }

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
    /// The changes of each incremental checkpoint after `keyed`'s, oldest first: per
    /// checkpoint, every key group's changes.
    pub(crate) deltas: Vec<Vec<(u32, Vec<u8>)>>,
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

    /// The changes stored by incremental checkpoints after the full one
    /// [`owned_groups`](Self::owned_groups) comes from, for the key groups this worker owns:
    /// to apply in the order given (oldest checkpoint first).
    pub fn owned_changes(&self) -> impl Iterator<Item = (u32, &'a [u8])> + 'a {
        let (worker, workers) = (self.worker, self.workers);
        self.data
            .deltas
            .iter()
            .flatten()
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
