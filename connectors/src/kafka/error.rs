//! Errors of the Kafka connectors.

use rdkafka::error::KafkaError;

/// What went wrong talking to Kafka.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaConnectorError {
    /// librdkafka refused the configuration (unknown property, bad value).
    #[error("invalid Kafka configuration")]
    Config(#[source] KafkaError),
    /// Creating or using the client failed.
    #[error("Kafka client error")]
    Client(#[source] KafkaError),
    /// The consumer reported an error it cannot recover from.
    #[error("Kafka consumer failed fatally")]
    FatalConsumer(#[source] KafkaError),
    /// A record could not be delivered after librdkafka's retries (or was rejected outright).
    #[error("delivery to Kafka topic `{topic}` failed")]
    Delivery {
        /// The topic the record was meant for.
        topic: String,
        /// The final delivery error.
        #[source]
        source: KafkaError,
    },
    /// A record was written with no topic and the sink has no default topic.
    #[error("record has no topic and the sink has no default topic")]
    NoTopic,
    /// Flushing the producer did not finish in time.
    #[error("flushing the Kafka producer timed out with {in_flight} records in flight")]
    FlushTimeout {
        /// Records still waiting for acknowledgement.
        in_flight: i32,
    },
    /// An exactly-once sink was used before the job recovered it (fenced earlier producers):
    /// it needs a job with checkpoints.
    #[error("the exactly-once Kafka sink was not recovered: run it in a job with checkpoints")]
    NotRecovered,
    /// Exactly-once output needs a default topic (for its commit marker).
    #[error("an exactly-once Kafka sink needs a default topic: call .topic(...)")]
    NoMarkerTopic,
    /// The broker refused to create a topic.
    #[error("creating Kafka topic `{topic}`: {code}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The broker's answer.
        code: rdkafka::types::RDKafkaErrorCode,
    },
    /// The job's checkpoint settings do not fit the exactly-once sink's transactions.
    #[error("exactly-once Kafka output with checkpoints every {interval:?} (timeout {timeout:?}): {reason}")]
    TransactionTimeout {
        /// The checkpoint interval.
        interval: std::time::Duration,
        /// The checkpoint timeout.
        timeout: std::time::Duration,
        /// Why the transaction timeout does not fit.
        reason: String,
    },
    /// The job was aborted while a write waited for room in the producer's full queue.
    #[error("gave up writing to Kafka topic `{topic}`: the job was aborted while the producer queue was full")]
    AbortedWhileQueueFull {
        /// The record's topic.
        topic: String,
    },
    /// A consumed record has a header whose key is not UTF-8 (another client wrote raw
    /// bytes). The record goes to the dead-letter sink (or fails the job) with the headers
    /// that could be read; the bad header's key and value cannot be read through librdkafka.
    #[error("header {index} of the record has a key that is not UTF-8")]
    HeaderKeyNotUtf8 {
        /// The position of the first unreadable header among the record's headers.
        index: usize,
    },
    /// The consumer has reported errors, and the cluster or a topic stayed unreadable, for
    /// longer than the source's `unavailable_timeout`.
    #[error(
        "Kafka unavailable for {lasted:?} (the source gives up after {bound:?}): {last_error}"
    )]
    Unavailable {
        /// How long the outage lasted.
        lasted: std::time::Duration,
        /// The source's bound.
        bound: std::time::Duration,
        /// The last error the consumer or a probe reported.
        last_error: String,
    },
    /// The mock cluster could not be started or configured.
    #[error("embedded Kafka failed")]
    Embedded(#[source] KafkaError),
}
