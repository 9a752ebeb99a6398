//! Redis: a sink of per-key upserts (feature `redis`), on the `redis` crate.
//!
//! - [`RedisSink`]: pipelined `SET` / `HSET` upserts, the latest per key within a flush,
//!   retried while Redis is unreachable and failing the job after a bound; refused writes to
//!   the dead-letter sink.
//! - [`RedisUpsert`]: what a record becomes.

mod sink;
mod upsert;

pub use sink::{OnRejected, RedisSink, RedisSinkError, RedisWriter, RedisWriterStats};
pub use upsert::{RedisUpsert, RedisValue};
