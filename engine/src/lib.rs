//! rill's engine: the job graph, the thread-per-core runtime, checkpoints and state.
//!
//! - A job is built with the typed, fluent [`Stream`] API and started with [`Job::run`].
//! - [`Config::workers`] threads each run the whole pipeline over their share of the input
//!   ([`worker`](WorkerContext::worker) of [`workers`](WorkerContext::workers)).
//! - Operators between exchanges are fused into one monomorphized call chain per worker
//!   ([`Operator`], [`Emit`], [`Flow`]).
//! - [`Stream::key_by`] and [`Stream::rebalance`] cross workers through a full mesh of
//!   lock-free SPSC rings (`rtrb`) carrying records, watermarks, epoch barriers and
//!   end-of-stream in one FIFO per ring. Back-pressure parks output in a per-ring overflow
//!   queue and never blocks a worker, so jobs cannot deadlock.
//! - Idle workers spin, yield, then park ([`IdleStrategy`]); a push into a parked worker's
//!   ring wakes it.
//! - Barriers injected at the sources drive asynchronous checkpoints ([`CheckpointConfig`]);
//!   keyed state is kept per key group ([`state`]) so a job restores at any worker count, and
//!   a transactional sink's [`Committer`] makes output exactly-once.
//! - The control plane (completion, errors, stop) uses `crossbeam-channel`; failures surface
//!   from [`JobHandle::await_termination`] as [`JobError`]s, or go to a dead-letter sink.
//!
//! # Layout
//!
//! | module | holds | may use |
//! |---|---|---|
//! | `error`, `failure`, [`time`] | typed errors; failures and dead letters; the clock | nothing else in the crate (`failure` uses `error`) |
//! | [`state`] | keys and their stable encoding, key groups, keyed state, timers, snapshots | the root |
//! | `dataflow` | job, streams, graph, config, mode; the `Operator`, `Source`, `Sink` traits | root, state, the runtime parts a graph is built of |
//! | `runtime` | workers, tasks, flows, exchanges, splits, messages, watermark combination, idling, metrics, job handles | root, state, dataflow's traits, the epoch handshake |
//! | `checkpoint` | epochs, coordinator, store, recovery, two-phase commit | root, state, runtime signals, dataflow's graph and config |
//!
//! No two files import each other. Sources and sinks live in `rill-connectors`, operators in
//! `rill-operators`; the `rill` crate re-exports all three.

mod checkpoint;
mod dataflow;
mod error;
mod failure;
mod runtime;
pub mod state;
pub mod sync;
pub mod time;

pub use checkpoint::commit::Committer;
pub use checkpoint::config::CheckpointConfig;
pub use checkpoint::coordinator::{CheckpointLog, CheckpointStats};
pub use checkpoint::epoch::BarrierReport;
pub use checkpoint::storage::CheckpointStorage;
pub use dataflow::config::Config;
pub use dataflow::graph::FlowBuilder;
pub use dataflow::job::Job;
pub use dataflow::mode::{Mode, Trigger};
pub use dataflow::operator::{Emit, Operator};
pub use dataflow::sink::{Sink, SinkWriter};
pub use dataflow::source::{Source, SourceReader};
pub use dataflow::stream::{
    BranchBuilder, ExchangeInBuilder, KeyedStream, SideOutputBuilder, SourceBuilder, Stream,
    ThenBuilder, UnionBuilder,
};
pub use error::{BoxError, ErrorChain, JobError};
pub use failure::{DeadLetter, Failure, Origin, PanickedOnRecord, RawRecord};
pub use runtime::build::BuildCtx;
pub use runtime::context::{AbortSignal, Waker, WorkerContext};
pub use runtime::exchange::{ExchangeIn, KeyRouter, RoundRobin, Router};
pub use runtime::flow::{Flow, Progress, Then, Union};
pub use runtime::handle::{JobHandle, StopHandle};
pub use runtime::idle::IdleStrategy;
pub use runtime::message::{Epoch, EventTime};
pub use runtime::metrics::{JobMetrics, NodeKind, OperatorMetrics};
pub use runtime::side_output::SideOutput;
pub use runtime::source_flow::SourceFlow;
pub use runtime::split::Branch;

#[doc(hidden)]
pub mod test_support;
