//! A Kafka record as it is kept in an archive file: every field, its bytes exactly.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::kafka::output::{dead_letter_headers, KafkaOutput};
use crate::kafka::record::KafkaRecord;

/// Bytes as JSON: a string when they are UTF-8 (readable in the archive), else base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ArchivedBytes {
    /// UTF-8 bytes, as the string they spell.
    Text(String),
    /// Any other bytes.
    Binary {
        /// Standard base64 with padding.
        base64: String,
    },
}

/// Why archived bytes could not be restored.
#[derive(Debug, thiserror::Error)]
#[error("archived bytes are not valid base64")]
pub struct ArchivedBytesError(#[source] base64::DecodeError);

impl ArchivedBytes {
    /// Keeps `bytes`.
    pub fn new(bytes: &[u8]) -> ArchivedBytes {
        match std::str::from_utf8(bytes) {
            Ok(text) => ArchivedBytes::Text(text.to_string()),
            Err(_) => ArchivedBytes::Binary {
                base64: base64::engine::general_purpose::STANDARD.encode(bytes),
            },
        }
    }

    /// The bytes kept, exactly.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ArchivedBytesError> {
        match self {
            ArchivedBytes::Text(text) => Ok(text.as_bytes().to_vec()),
            ArchivedBytes::Binary { base64 } => base64::engine::general_purpose::STANDARD
                .decode(base64)
                .map_err(ArchivedBytesError),
        }
    }
}

/// A Kafka record for an archive (a JSON line, a Parquet row): where it was read, its
/// timestamp, key, value and headers. Bytes are kept exactly ([`ArchivedBytes`]), so a
/// record replayed from the archive has the key and value it was read with.
///
/// ```
/// use rill_connectors::kafka::{ArchivedRecord, KafkaRecord};
///
/// let record = KafkaRecord {
///     topic: "orders-dlq".into(),
///     partition: 0,
///     offset: 7,
///     timestamp: Some(1_700_000_000_000),
///     key: Some(b"k1".to_vec()),
///     value: Some(vec![0xff, 0x00, b'x']),
///     headers: vec![("rill.dlq.origin.topic".into(), Some(b"orders".to_vec()))],
/// };
/// let archived = ArchivedRecord::from_record(&record);
/// let line = serde_json::to_string(&archived)?;
/// let back: ArchivedRecord = serde_json::from_str(&line)?;
/// let out = back.replay(None)?;
/// assert_eq!(out.topic.as_deref(), Some("orders")); // the origin header's topic
/// assert_eq!(out.value, record.value);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedRecord {
    /// The topic it was read from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its timestamp, milliseconds since the Unix epoch.
    pub timestamp: Option<i64>,
    /// Key (`None`: a null key).
    pub key: Option<ArchivedBytes>,
    /// Value (`None`: a tombstone).
    pub value: Option<ArchivedBytes>,
    /// Headers, in order.
    pub headers: Vec<(String, Option<ArchivedBytes>)>,
}

impl ArchivedRecord {
    /// Keeps everything of `record`.
    pub fn from_record(record: &KafkaRecord) -> ArchivedRecord {
        ArchivedRecord {
            topic: record.topic.to_string(),
            partition: record.partition,
            offset: record.offset,
            timestamp: record.timestamp,
            key: record.key.as_deref().map(ArchivedBytes::new),
            value: record.value.as_deref().map(ArchivedBytes::new),
            headers: record
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.as_deref().map(ArchivedBytes::new)))
                .collect(),
        }
    }

    /// The value of the first header named `name`, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| match v {
                Some(ArchivedBytes::Text(t)) => Some(t.as_str()),
                _ => None,
            })
    }

    /// The topic a dead letter came from (its `rill.dlq.origin.topic` header).
    pub fn origin_topic(&self) -> Option<&str> {
        self.header(dead_letter_headers::TOPIC)
    }

    /// The record to write back: the original key and value bytes, to `topic`, or else the
    /// topic the dead letter came from, or else (not a dead letter) the topic it was read
    /// from. Headers are not replayed: they described the failure, not the record.
    pub fn replay(&self, topic: Option<&str>) -> Result<KafkaOutput, ArchivedBytesError> {
        let topic = topic
            .or_else(|| self.origin_topic())
            .unwrap_or(&self.topic)
            .to_string();
        Ok(KafkaOutput {
            topic: Some(topic),
            key: self.key.as_ref().map(ArchivedBytes::to_bytes).transpose()?,
            value: self
                .value
                .as_ref()
                .map(ArchivedBytes::to_bytes)
                .transpose()?,
            ..KafkaOutput::default()
        })
    }
}
