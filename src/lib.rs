#![doc = include_str!("../README.md")]
//!
//! # Crates
//!
//! - [`engine`] (`rill-engine`): job graph, workers, exchanges, checkpoints, state, metrics.
//! - [`operators`] (`rill-operators`): map, filter, flat_map, keyed count/reduce/aggregate, ...
//! - [`connectors`] (`rill-connectors`): Kafka, files, memory, stdio, generator, latency
//!   measurement.
//! - [`tables`] (`rill-tables`): reference tables from files or a Kafka topic, reloaded in
//!   the background, for stream-static joins.
//! - [`files`] (`rill-files`): an exactly-once file sink (JSON lines, Parquet) and a bounded
//!   file source, on local disk, S3 or any `object_store` backend.

pub use rill_connectors as connectors;
pub use rill_engine as engine;
pub use rill_files as files;
pub use rill_operators as operators;
pub use rill_tables as tables;

pub use rill_engine::{
    time, BoxError, CheckpointConfig, CheckpointLog, CheckpointStats, Config, ErrorChain,
    IdleStrategy, Job, JobError, JobHandle, JobMetrics, KeyedStream, Mode, Stream, Trigger,
};

/// Everything a job definition needs: `use rill::prelude::*;`.
///
/// That is: the job and its configuration (modes, triggers, checkpoints, idling), the
/// operators, the connectors that need no feature, what a custom source, sink or operator
/// implements, and the types of failures and dead letters.
pub mod prelude {
    pub use rill_connectors::{
        CollectSink, DiscardSink, FileLines, Generated, Generator, LatencySink, MemorySource,
        Pacing, StdinLines, StdoutLines,
    };
    pub use rill_engine::state::{
        decode, encode, EncodeKey, KeyWriter, RestoredState, StateError, StateTtl,
    };
    pub use rill_engine::time::{ManualClock, ProcessingClock};
    pub use rill_engine::{
        BoxError, Branch, CheckpointConfig, CheckpointLog, CheckpointStats, Committer, Config,
        DeadLetter, Emit, Epoch, EventTime, Failure, FlowBuilder, IdleStrategy, Job, JobError,
        JobHandle, JobMetrics, KeyedStream, Mode, Operator, Origin, Progress, RawRecord, Sink,
        SinkWriter, Source, SourceReader, StopHandle, Stream, Trigger, Waker, WorkerContext,
    };
    pub use rill_operators::{
        AggregateExt, CountExt, DeadLettersExt, DecodeExt, FilterExt, FlatMapExt, GroupState,
        GroupTimeout, GroupsWithStateExt, InspectExt, Interval, IntervalJoinExt, JoinSide, Joined,
        LatestPerKeyExt, MapExt, OutputMode, ReduceExt, TryMapExt, Values, WatermarkStrategy,
        Window, WindowExt, WindowResult, Windows, WithWatermarkExt,
    };
    pub use rill_tables::{JoinTableExt, Refresh, Table, TableBuilder, TableSource};
}
