//! The librdkafka settings every Kafka client rill creates starts from.

use rdkafka::ClientConfig;

/// A librdkafka configuration for the cluster at `brokers` (`host:port,...`), with the
/// settings every client of rill shares; sources, sinks, transactions, topic administration
/// and latency-lab's own clients all start from it, and callers add their role's settings.
///
/// **Connections open at once** (`enable.sparse.connections=false`). With librdkafka's
/// default, sparse connections, a client connects to one broker at a time, and no more often
/// than every `reconnect.backoff.ms / 2` (50 ms by default). librdkafka 2.12 drops the
/// bootstrap connection once it has learned the cluster's brokers and then connects to the
/// broker it learned, so every new client waited those 50 ms before its first request could
/// be served: measured on noida-db, a producer's second metadata request answered after
/// 53 ms instead of 1.2 ms. Every consumer and producer of a job paid it at start, one after
/// another on a worker (the source, then the sink), which was a third of a 100,000-record
/// bounded relay's run. A client of a job talks to the leaders of the partitions it reads or
/// writes and to its coordinators, which on most clusters is most brokers, so connecting to
/// every broker costs at most a few idle connections. On a cluster of many brokers, where a
/// worker reads and writes partitions led by a few of them, `.set("enable.sparse.connections",
/// "true")` on the source or sink trades the 50 ms at start for fewer connections.
///
/// ```
/// let config = rill_connectors::kafka::client_config("localhost:9092");
/// assert_eq!(config.get("bootstrap.servers"), Some("localhost:9092"));
/// assert_eq!(config.get("enable.sparse.connections"), Some("false"));
/// ```
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("enable.sparse.connections", "false");
    config
}
