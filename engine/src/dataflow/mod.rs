//! What a user builds a job from: the [`Job`](job::Job), its typed [`Stream`](stream::Stream)s,
//! the job graph they record, the traits operators, sources and sinks implement, and the
//! job's [`Config`](config::Config) and [`Mode`](mode::Mode).
//!
//! Vocabulary: a *stream* is what the user chains operators on; the *graph* is what the
//! stream calls record (named nodes, one task factory per sink or exchange, exchange edges);
//! at run time every worker builds from it a *flow* (the fused, monomorphized chain of one
//! source or exchange input and its operators) ending in a *task* (the flow plus its sink or
//! exchange output), which the worker schedules.
//!
//! May use: the crate root (errors, failures, time), `state`, and the `runtime` types a built
//! graph is made of (flows, tasks, exchanges, the build context). The runtime and the
//! checkpoint code use the traits and the config here, but never the builders.

pub(crate) mod config;
pub(crate) mod graph;
pub(crate) mod job;
pub(crate) mod mode;
pub(crate) mod operator;
pub(crate) mod sink;
pub(crate) mod source;
pub(crate) mod stream;
