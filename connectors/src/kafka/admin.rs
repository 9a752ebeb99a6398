//! Topic administration over the Kafka admin API, for tools and tests that set up their own
//! topics on a real broker (the mock cluster has its own [`EmbeddedKafka::create_topic`]).
//!
//! [`EmbeddedKafka::create_topic`]: super::EmbeddedKafka::create_topic

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

use super::{client_config, KafkaConnectorError};

/// Creates `topics` (name, partitions), replication factor 1, on the cluster at `brokers`,
/// waiting up to `timeout` for the broker's answer. A topic that already exists is an error:
/// callers that measure or test want fresh topics.
///
/// ```no_run
/// use std::time::Duration;
/// rill_connectors::kafka::create_topics("localhost:9092", &[("input", 2)], Duration::from_secs(10))?;
/// # Ok::<(), rill_connectors::kafka::KafkaConnectorError>(())
/// ```
pub fn create_topics(
    brokers: &str,
    topics: &[(&str, i32)],
    timeout: Duration,
) -> Result<(), KafkaConnectorError> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers)
        .create()
        .map_err(KafkaConnectorError::Config)?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().request_timeout(Some(timeout));
    let results = futures_executor::block_on(admin.create_topics(&new, &options))
        .map_err(KafkaConnectorError::Client)?;
    for result in results {
        result.map_err(|(topic, code)| KafkaConnectorError::CreateTopic { topic, code })?;
    }
    Ok(())
}
