//! Errors of the Kafka connectors.

use rdkafka::error::KafkaError;

/// What went wrong talking to Kafka.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaConnectorError {
    /// librdkafka refused the configuration (unknown property, bad value).
    #[error("invalid Kafka configuration: {0}")]
    Config(#[source] KafkaError),
    /// Creating or using the client failed.
    #[error("Kafka client error: {0}")]
    Client(#[source] KafkaError),
    /// The consumer reported an error it cannot recover from.
    #[error("Kafka consumer failed fatally: {0}")]
    FatalConsumer(#[source] KafkaError),
    /// A record could not be delivered after librdkafka's retries (or was rejected outright).
    #[error("delivery to Kafka topic `{topic}` failed: {source}")]
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
    /// The mock cluster could not be started or configured.
    #[error("embedded Kafka: {0}")]
    Embedded(#[source] KafkaError),
}
