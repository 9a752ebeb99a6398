//! rill's engine: the job graph, the thread-per-core runtime and its exchanges.
//!
//! - A job is built with the typed, fluent [`Stream`] API and started with [`Job::run`].
//! - [`Config::workers`] threads each run the whole pipeline over their share of the input
//!   ([`worker`](crate::WorkerContext::worker) of [`workers`](crate::WorkerContext::workers)).
//! - Operators between exchanges are fused into one monomorphized call chain per worker
//!   ([`Operator`], [`Emit`], [`Flow`]).
//! - [`Stream::key_by`] and [`Stream::rebalance`] cross workers through a full mesh of
//!   lock-free SPSC rings (`rtrb`) carrying [`Message`]s: records now, watermarks and epoch
//!   barriers later. Back-pressure parks output in a per-ring overflow queue and never blocks
//!   a worker, so jobs cannot deadlock.
//! - Idle workers spin, yield, then park ([`IdleStrategy`]); a push into a parked worker's
//!   ring wakes it ([`signal`]).
//! - The control plane (completion, errors, stop) uses `crossbeam-channel`; failures surface
//!   from [`JobHandle::await_termination`] as [`JobError`]s.
//!
//! Sources and sinks live in `rill-connectors`, operators in `rill-operators`; the `rill`
//! crate re-exports all three.

pub mod checkpoint;
mod commit;
mod coordinator;
mod dead_letter;
mod epoch;
mod error;
mod exchange;
mod flow;
mod graph;
mod idle;
mod job;
pub mod keygroup;
mod message;
mod metrics;
mod mode;
mod operator;
pub mod signal;
mod sink;
mod source;
pub mod state;
mod stream;
mod sync;
mod task;
pub mod time;
mod worker;

pub use checkpoint::CheckpointConfig;
pub use commit::Committer;
pub use coordinator::{CheckpointLog, CheckpointStats};
pub use dead_letter::{DeadLetter, Origin, RawRecord};
pub use epoch::BarrierReport;
pub use error::{BoxError, Failure, JobError};
pub use exchange::{ExchangeIn, Inbound, KeyRouter, RoundRobin, Router};
pub use flow::{Flow, Progress, Then, Union};
pub use graph::{BuildCtx, FlowBuilder};
pub use idle::{IdleStrategy, Idler, Wait};
pub use job::{Config, Job, JobHandle, StopHandle};
pub use message::{Epoch, EventTime, Message};
pub use metrics::{JobMetrics, NodeCounters, NodeKind, OperatorMetrics};
pub use mode::{Mode, Trigger};
pub use operator::{Emit, Operator};
pub use sink::{Sink, SinkFactory};
pub use source::{Source, SourceFactory, SourceFlow, Waker, WorkerContext};
pub use stream::{
    ExchangeInBuilder, KeyedStream, SourceBuilder, Stream, ThenBuilder, UnionBuilder,
};
