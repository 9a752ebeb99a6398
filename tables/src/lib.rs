//! Reference tables for stream-static joins (the seed's product metadata, read by batch and
//! reloaded daily, joined with the event stream).
//!
//! - [`TableBuilder`] loads a [`Table`] from a [`TableSource`]: JSON lines or CSV files (a
//!   path or a directory), or a Kafka topic read to its end (latest value per key). The
//!   load at start fails with a [`TableError`] if the table cannot be read.
//! - A [`Refresh`] keeps it fresh: on a schedule, or when its files (or the topic) change,
//!   in a background thread; the new version is swapped in atomically
//!   ([`rill_engine::sync::Versioned`]); a failed reload keeps the old one.
//! - [`JoinTableExt::join_table`] joins a stream with it: left, inner, or inner with the
//!   misses as a second stream (for a sink or the dead-letter sink).
//!
//! | module | holds |
//! |---|---|
//! | `source` | where rows come from, and change detection |
//! | `kafka` | reading a topic to its end |
//! | `table` | the shared, versioned table, its builder, its reloader, its statistics |
//! | `join` | the join operator |
//! | `pace` | pacing of background work next to busy workers |
//! | `error` | [`TableError`] |

mod error;
mod join;
mod kafka;
mod pace;
mod source;
mod table;

pub use error::TableError;
pub use join::{Inner, JoinTableExt, Left, TableJoin, TableJoinBuilder};
pub use pace::Pacing;
pub use source::TableSource;
pub use table::{Refresh, Table, TableBuilder, TableStats, TableVersion};
