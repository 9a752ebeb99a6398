//! The Redis sink: pipelined, coalesced upserts, retried while Redis is unreachable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{Connection, Pipeline, RedisResult, Value};
use rill_engine::{BoxError, DeadLetter, Epoch, Sink, SinkWriter, WorkerContext};

use super::upsert::{Pending, RedisUpsert, RedisValue};

/// Redis could not take the sink's writes.
#[derive(Debug, thiserror::Error)]
pub enum RedisSinkError {
    /// No write got through for longer than the sink's `unavailable_timeout`.
    #[error("Redis at {url} unreachable for {waited:?} (bound {bound:?}): {last}")]
    Unavailable {
        /// The server.
        url: String,
        /// How long the writes waited.
        waited: Duration,
        /// The bound.
        bound: Duration,
        /// The last error.
        last: String,
    },
    /// Redis refused a write, and the sink was told to fail rather than route it to the
    /// dead-letter sink.
    #[error("Redis refused the write of key `{key}`: {error}")]
    Rejected {
        /// The key.
        key: String,
        /// Redis's answer.
        error: String,
    },
    /// The URL is not a Redis URL.
    #[error("`{url}` is not a Redis URL: {error}")]
    Url {
        /// The URL given.
        url: String,
        /// Why.
        error: String,
    },
}

/// What happens to a write Redis refuses (a `WRONGTYPE`, an out-of-memory answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRejected {
    /// It goes to the job's dead-letter sink (the job fails if it has none), with the key
    /// and, for a string, the value.
    DeadLetter,
    /// The job fails.
    Fail,
}

/// Writes each record as an upsert to Redis (`SET` or `HSET`, optionally with an expiry),
/// for services that read per-key state from Redis (the seed's third pattern).
///
/// - **Pipelined:** a worker's upserts since its last flush go in one round trip. Flushes
///   happen after every poll that wrote records (or every [`max_delay`](Self::max_delay)),
///   at each checkpoint barrier, and at the end.
/// - **Coalesced** (on by default): within a flush only the latest upsert per key is sent
///   (fields of a hash merged), so a hot key costs one write per flush, not per record.
/// - **Never silent:** while Redis is unreachable the flush retries with backoff (200 ms
///   doubling to 5 s); after [`unavailable_timeout`](Self::unavailable_timeout) (60 s) the
///   job fails with [`RedisSinkError::Unavailable`]. A write Redis refuses goes to the
///   dead-letter sink or fails the job ([`OnRejected`]).
/// - **With checkpoints, at-least-once and convergent:** a barrier waits until every earlier
///   write is acknowledged; after a crash the job replays from its checkpoint and writes the
///   same upserts again. Upserts of absolute values (a running total the job keeps, not an
///   increment) therefore converge to the same final values: exactly-once in effect.
///
/// ```no_run
/// use rill_connectors::redis::{RedisSink, RedisUpsert};
/// use rill_connectors::MemorySource;
/// use rill_engine::{Config, Job};
///
/// let job = Job::new("stock");
/// job.source(MemorySource::new(vec![("p1".to_string(), 7i64)]))
///     .sink(RedisSink::new("redis://127.0.0.1:6379", |(product, qty): (String, i64)| {
///         RedisUpsert::hset(format!("stock:{product}"), [("qty", qty.to_string())])
///     }));
/// job.run(Config::default())?.await_termination()?;
/// # Ok::<(), rill_engine::JobError>(())
/// ```
pub struct RedisSink<F> {
    url: String,
    to_upsert: F,
    coalesce: bool,
    max_delay: Duration,
    unavailable_timeout: Duration,
    on_rejected: OnRejected,
    name: String,
}

impl<F> std::fmt::Debug for RedisSink<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSink")
            .field("url", &self.url)
            .field("coalesce", &self.coalesce)
            .finish()
    }
}

impl<F> RedisSink<F> {
    /// A sink writing to the Redis at `url` (`redis://host:port[/db]`) the upsert `to_upsert`
    /// makes of each record.
    pub fn new(url: impl Into<String>, to_upsert: F) -> Self {
        Self {
            url: url.into(),
            to_upsert,
            coalesce: true,
            max_delay: Duration::ZERO,
            unavailable_timeout: Duration::from_secs(60),
            on_rejected: OnRejected::DeadLetter,
            name: "redis".into(),
        }
    }

    /// Whether a flush sends only the latest upsert per key (default: yes).
    pub fn coalesce(mut self, coalesce: bool) -> Self {
        self.coalesce = coalesce;
        self
    }

    /// Holds writes up to this long before flushing (default: none, a flush per poll): a
    /// longer window coalesces more writes of hot keys, at that much more latency.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// How long writes may fail to get through before the job fails (default 60 s).
    pub fn unavailable_timeout(mut self, bound: Duration) -> Self {
        self.unavailable_timeout = bound;
        self
    }

    /// What happens to a write Redis refuses (default: the dead-letter sink).
    pub fn on_rejected(mut self, on_rejected: OnRejected) -> Self {
        self.on_rejected = on_rejected;
        self
    }

    /// The sink's name in metrics and errors (default `redis`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

impl<T, F> Sink<T> for RedisSink<F>
where
    F: Fn(T) -> RedisUpsert + Clone + Send + Sync + 'static,
{
    type Writer = RedisWriter<F>;

    fn create(&self, ctx: &WorkerContext) -> Result<RedisWriter<F>, BoxError> {
        let client = redis::Client::open(self.url.as_str()).map_err(|e| RedisSinkError::Url {
            url: self.url.clone(),
            error: e.to_string(),
        })?;
        Ok(RedisWriter {
            client,
            connection: None,
            url: self.url.clone(),
            to_upsert: self.to_upsert.clone(),
            pending: Pending::new(self.coalesce),
            oldest: None,
            max_delay: self.max_delay,
            unavailable_timeout: self.unavailable_timeout,
            on_rejected: self.on_rejected,
            stage: Arc::from(self.name.as_str()),
            dead_letters: Vec::new(),
            abort: ctx.abort_signal(),
            stats: RedisWriterStats::default(),
        })
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// What one worker's Redis writer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedisWriterStats {
    /// Records written.
    pub records: u64,
    /// Commands sent (fewer than records when coalescing).
    pub commands: u64,
    /// Round trips.
    pub flushes: u64,
    /// Failed round trips retried.
    pub retries: u64,
}

/// One worker's [`RedisSink`].
pub struct RedisWriter<F> {
    client: redis::Client,
    connection: Option<Connection>,
    url: String,
    to_upsert: F,
    pending: Pending,
    oldest: Option<Instant>,
    max_delay: Duration,
    unavailable_timeout: Duration,
    on_rejected: OnRejected,
    stage: Arc<str>,
    dead_letters: Vec<DeadLetter>,
    abort: rill_engine::AbortSignal,
    stats: RedisWriterStats,
}

impl<F> std::fmt::Debug for RedisWriter<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisWriter")
            .field("url", &self.url)
            .field("pending", &self.pending.len())
            .field("stats", &self.stats)
            .finish()
    }
}

/// The pipeline of `upserts`, each command's answer kept apart.
fn pipeline(upserts: &[RedisUpsert]) -> Pipeline {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for u in upserts {
        match &u.value {
            RedisValue::String(v) => {
                pipe.cmd("SET").arg(&u.key).arg(v);
                if let Some(ttl) = u.expire {
                    pipe.arg("PX").arg(ttl.as_millis().max(1) as u64);
                }
            }
            RedisValue::Hash(fields) => {
                pipe.cmd("HSET").arg(&u.key);
                for (f, v) in fields {
                    pipe.arg(f).arg(v);
                }
                if let Some(ttl) = u.expire {
                    pipe.cmd("PEXPIRE")
                        .arg(&u.key)
                        .arg(ttl.as_millis().max(1) as u64)
                        .ignore();
                }
            }
        }
    }
    pipe
}

impl<F> RedisWriter<F> {
    /// What this writer did so far.
    pub fn stats(&self) -> RedisWriterStats {
        self.stats
    }

    /// Sends the pending upserts, retrying while Redis is unreachable (the upserts are
    /// idempotent, so a round trip that may have half-applied is simply sent again).
    fn send(&mut self) -> Result<(), BoxError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pipe = pipeline(self.pending.upserts());
        let started = Instant::now();
        let mut backoff = Duration::from_millis(200);
        let answers: Vec<RedisResult<Value>> = loop {
            let attempt = self.connection().and_then(|c| pipe.query(c));
            match attempt {
                Ok(answers) => break answers,
                Err(e) => {
                    // The connection is in an unknown state: a fresh one next time.
                    self.connection = None;
                    let waited = started.elapsed();
                    if waited >= self.unavailable_timeout || self.abort.is_aborted() {
                        return Err(RedisSinkError::Unavailable {
                            url: self.url.clone(),
                            waited,
                            bound: self.unavailable_timeout,
                            last: e.to_string(),
                        }
                        .into());
                    }
                    self.stats.retries += 1;
                    std::thread::sleep(backoff.min(self.unavailable_timeout - waited));
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        // One answer per command that was not ignored: one per upsert.
        for (u, answer) in self.pending.upserts().iter().zip(answers) {
            if let Err(e) = answer {
                match self.on_rejected {
                    OnRejected::Fail => {
                        return Err(RedisSinkError::Rejected {
                            key: u.key.clone(),
                            error: e.to_string(),
                        }
                        .into())
                    }
                    OnRejected::DeadLetter => self.dead_letters.push(DeadLetter {
                        stage: self.stage.clone(),
                        error: format!("Redis refused the write of key `{}`: {e}", u.key),
                        origin: None,
                        key: Some(u.key.clone().into_bytes()),
                        value: match &u.value {
                            RedisValue::String(v) => Some(v.clone()),
                            RedisValue::Hash(fields) => Some(
                                fields
                                    .iter()
                                    .flat_map(|(f, v)| {
                                        [f.as_bytes(), b"=", v.as_slice(), b"\n"].concat()
                                    })
                                    .collect(),
                            ),
                        },
                    }),
                }
            }
        }
        self.stats.records += self.pending.records;
        self.stats.commands += self.pending.len() as u64;
        self.stats.flushes += 1;
        self.pending.clear();
        self.oldest = None;
        Ok(())
    }

    fn connection(&mut self) -> RedisResult<&mut Connection> {
        if self.connection.is_none() {
            let c = self
                .client
                .get_connection_with_timeout(Duration::from_secs(1))?;
            c.set_read_timeout(Some(Duration::from_secs(5)))?;
            c.set_write_timeout(Some(Duration::from_secs(5)))?;
            self.connection = Some(c);
        }
        match self.connection.as_mut() {
            Some(c) => Ok(c),
            None => unreachable!("connected just above"),
        }
    }
}

impl<T, F> SinkWriter<T> for RedisWriter<F>
where
    F: Fn(T) -> RedisUpsert,
{
    #[inline]
    fn write(&mut self, item: T) -> Result<(), BoxError> {
        self.pending.push((self.to_upsert)(item));
        if self.oldest.is_none() {
            self.oldest = Some(Instant::now());
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BoxError> {
        if self.max_delay > Duration::ZERO
            && self.oldest.is_some_and(|t| t.elapsed() < self.max_delay)
        {
            return Ok(());
        }
        self.send()
    }

    fn close(&mut self) -> Result<(), BoxError> {
        self.send()
    }

    fn on_barrier(&mut self, _epoch: Epoch) -> Result<(), BoxError> {
        self.send()
    }

    fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.dead_letters)
    }
}
