//! Consumer errors: counted, retried with backoff, and fatal after a bound.
//!
//! librdkafka retries broker connections and fetches by itself and reports what fails (a
//! broker down, a topic deleted or not authorized) as errors from `poll` and the client's
//! error callback. Swallowing them leaves a job idle forever (and a bounded run never ends).
//! Here every error opens (or prolongs) an *outage*; while it lasts, the reader probes the
//! cluster with a metadata request, with exponential backoff. A record, or a probe that finds
//! every topic readable, ends the outage; an outage longer than the source's bound fails the
//! job with the last error.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

use super::positions::SourceStats;
use crate::kafka::error::KafkaConnectorError;

/// The first probe after an error; doubled after every failed probe up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long one probe may block the worker: it runs only during an outage.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// A run of consumer errors not yet resolved.
#[derive(Debug)]
struct Outage {
    since: Instant,
    last_error: String,
    next_probe: Instant,
    backoff: Duration,
}

/// One reader's view of its consumer's health.
#[derive(Debug)]
pub(super) struct ConsumerHealth {
    /// Topics to probe (patterns are probed as "any metadata").
    topics: Vec<String>,
    bound: Duration,
    outage: Option<Outage>,
}

impl ConsumerHealth {
    pub(super) fn new(topics: Vec<String>, bound: Duration) -> Self {
        Self {
            topics,
            bound,
            outage: None,
        }
    }

    /// Records an error the consumer reported.
    pub(super) fn error(&mut self, stats: &SourceStats, error: String) {
        stats.consumer_errors.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        match &mut self.outage {
            Some(outage) => outage.last_error = error,
            None => {
                self.outage = Some(Outage {
                    since: now,
                    last_error: error,
                    next_probe: now + FIRST_BACKOFF,
                    backoff: FIRST_BACKOFF,
                })
            }
        }
    }

    /// A record arrived: whatever failed works again.
    #[inline]
    pub(super) fn record(&mut self) {
        self.outage = None;
    }

    /// During an outage, probes the cluster when the backoff has passed; fails once the
    /// outage has lasted longer than the bound.
    pub(super) fn check<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), KafkaConnectorError> {
        let Some(outage) = &mut self.outage else {
            return Ok(());
        };
        let now = Instant::now();
        if now < outage.next_probe {
            return Ok(());
        }
        match probe(consumer, &self.topics) {
            Ok(()) => {
                self.outage = None;
                return Ok(());
            }
            Err(e) => outage.last_error = e,
        }
        if outage.since.elapsed() >= self.bound {
            return Err(KafkaConnectorError::Unavailable {
                lasted: outage.since.elapsed(),
                bound: self.bound,
                last_error: outage.last_error.clone(),
            });
        }
        outage.backoff = (outage.backoff * 2).min(MAX_BACKOFF);
        outage.next_probe = Instant::now() + outage.backoff;
        Ok(())
    }
}

/// Whether the cluster answers and every topic exists with partitions (what this consumer
/// needs to read); the reason if not.
fn probe<C: ConsumerContext>(consumer: &BaseConsumer<C>, topics: &[String]) -> Result<(), String> {
    let named: Vec<&String> = topics.iter().filter(|t| !t.starts_with('^')).collect();
    if named.is_empty() {
        return consumer
            .fetch_metadata(None, PROBE_TIMEOUT)
            .map(|_| ())
            .map_err(|e| e.to_string());
    }
    for topic in named {
        let metadata = consumer
            .fetch_metadata(Some(topic), PROBE_TIMEOUT)
            .map_err(|e| e.to_string())?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        match found {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {}
            Some(t) => {
                return Err(match t.error() {
                    Some(code) => format!(
                        "topic `{topic}`: {}",
                        rdkafka::types::RDKafkaErrorCode::from(code)
                    ),
                    None => format!("topic `{topic}` has no partitions"),
                })
            }
            None => return Err(format!("topic `{topic}` does not exist")),
        }
    }
    Ok(())
}
