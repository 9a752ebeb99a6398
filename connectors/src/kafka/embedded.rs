//! librdkafka's in-process mock cluster as a zero-setup Kafka.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use super::KafkaConnectorError;

/// A Kafka cluster inside this process: librdkafka's mock cluster, listening on loopback.
///
/// Clients talk to it over the real Kafka protocol through `bootstrap_servers()`, so the same
/// job runs against it and against a real broker. Use it for examples, tests and zero-setup
/// demos, and know its limits (measured here):
///
/// - a consumer group join takes about 3 s;
/// - with producer `linger.ms = 0` its throughput collapses above roughly 2,000 records/s,
///   because each fetch returns one produced batch per partition: give producers a small
///   linger (see [`EmbeddedKafka::PRODUCER_LINGER_MS`]);
/// - it accepts transactions but does not isolate aborted records from `read_committed`
///   readers, so it cannot prove exactly-once;
/// - its latency and throughput are not a real broker's: never quote a figure measured on it as
///   a Kafka figure without saying so.
///
/// ```no_run
/// use rill_connectors::kafka::EmbeddedKafka;
/// let kafka = EmbeddedKafka::start()?;
/// kafka.create_topic("input-text", 3)?;
/// println!("bootstrap.servers = {}", kafka.bootstrap_servers());
/// # Ok::<(), rill_connectors::kafka::KafkaConnectorError>(())
/// ```
pub struct EmbeddedKafka {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl std::fmt::Debug for EmbeddedKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedKafka")
            .field("bootstrap_servers", &self.cluster.bootstrap_servers())
            .finish()
    }
}

impl EmbeddedKafka {
    /// The producer `linger.ms` to use against the mock cluster (see the type's docs).
    pub const PRODUCER_LINGER_MS: &'static str = "1";

    /// Starts a one-broker mock cluster.
    pub fn start() -> Result<Self, KafkaConnectorError> {
        Self::with_brokers(1)
    }

    /// Starts a mock cluster of `brokers` brokers.
    pub fn with_brokers(brokers: i32) -> Result<Self, KafkaConnectorError> {
        let cluster = MockCluster::new(brokers).map_err(KafkaConnectorError::Embedded)?;
        Ok(Self { cluster })
    }

    /// The `bootstrap.servers` list of the cluster.
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Creates a topic (the mock broker does not support the admin API).
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), KafkaConnectorError> {
        self.cluster
            .create_topic(topic, partitions, 1)
            .map_err(KafkaConnectorError::Embedded)
    }
}
