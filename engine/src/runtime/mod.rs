//! What runs a job: worker threads polling their tasks, the flows inside them, the SPSC ring
//! exchanges between workers and the messages they carry, splits of one stream into two, the
//! combination of watermarks where inputs meet, idling and wake-ups, metrics, the routing of
//! failures to the dead-letter sink, and the handles of a running job.
//!
//! May use: the crate root, `state`, `dataflow`'s traits and config (operators, sources,
//! sinks), and `checkpoint`'s epoch handshake (tasks acknowledge barriers; the launcher starts
//! the coordinator).

pub(crate) mod build;
pub(crate) mod context;
pub(crate) mod control;
pub(crate) mod dead_letter;
pub(crate) mod exchange;
pub(crate) mod flow;
pub(crate) mod handle;
pub(crate) mod idle;
pub(crate) mod launch;
pub(crate) mod message;
pub(crate) mod metrics;
pub(crate) mod side_output;
pub(crate) mod signal;
pub(crate) mod source_flow;
pub(crate) mod split;
pub(crate) mod task;
pub(crate) mod watermark;
pub(crate) mod worker;
