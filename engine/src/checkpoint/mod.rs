//! Asynchronous barrier checkpoints: the epoch handshake between the coordinator and the
//! workers, the coordinator thread, the checkpoint store on disk, recovery at start, and the
//! two-phase commit of transactional sinks.
//!
//! May use: the crate root, `state` (snapshots to encode, restores to hand out), the runtime's
//! worker signals and messages' `Epoch`, and `dataflow`'s graph, config and mode (recovery
//! checks the graph; the coordinator follows the trigger).

pub(crate) mod commit;
pub(crate) mod config;
pub(crate) mod coordinator;
pub(crate) mod epoch;
pub(crate) mod lock;
pub(crate) mod recovery;
pub(crate) mod storage;
pub(crate) mod store;
