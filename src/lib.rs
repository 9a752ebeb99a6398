#![doc = include_str!("../README.md")]
//!
//! # Crates
//!
//! - [`engine`] (`rill-engine`): job graph, workers, exchanges, control plane, metrics.
//! - [`operators`] (`rill-operators`): map, filter, flat_map, keyed count/reduce/aggregate, ...
//! - [`connectors`] (`rill-connectors`): memory, stdio, generator, latency measurement.

pub use rill_connectors as connectors;
pub use rill_engine as engine;
pub use rill_operators as operators;

pub use rill_engine::{
    BoxError, CheckpointConfig, CheckpointLog, CheckpointStats, Config, IdleStrategy, Job,
    JobError, JobHandle, JobMetrics, KeyedStream, Stream,
};

/// Everything a job definition needs: `use rill::prelude::*;`.
pub mod prelude {
    pub use rill_connectors::{
        CollectSink, DiscardSink, FileLines, Generated, Generator, LatencySink, MemorySource,
        Pacing, StdinLines, StdoutLines,
    };
    pub use rill_engine::{
        CheckpointConfig, Config, DeadLetter, Emit, Failure, IdleStrategy, Job, JobError,
        JobHandle, KeyedStream, Operator, Sink, SinkFactory, Source, SourceFactory, Stream,
    };
    pub use rill_operators::{
        AggregateExt, CountExt, DecodeExt, FilterExt, FlatMapExt, InspectExt, LatestPerKeyExt,
        MapExt, ReduceExt, TryMapExt,
    };
}
