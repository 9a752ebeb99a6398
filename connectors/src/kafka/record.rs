//! A consumed Kafka record and its decoders.

use std::sync::Arc;

use rill_engine::RawRecord;

pub use rill_engine::Origin;

/// A record decoding failure, naming the record it happened on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The key or value is absent (a null in Kafka terms).
    #[error("record {origin} has no {part}")]
    Missing {
        /// The record.
        origin: Origin,
        /// "key" or "value".
        part: &'static str,
    },
    /// The key or value is not UTF-8.
    #[error("{part} of record {origin} is not valid UTF-8")]
    Utf8 {
        /// The record.
        origin: Origin,
        /// "key" or "value".
        part: &'static str,
        /// Where decoding failed.
        #[source]
        source: std::str::Utf8Error,
    },
    /// The value is not the JSON the job expects.
    #[error("value of record {origin} is not the expected JSON")]
    Json {
        /// The record.
        origin: Origin,
        /// What serde_json reported.
        #[source]
        source: serde_json::Error,
    },
}

/// One record read from Kafka, owned (it outlives the consumer's buffer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaRecord {
    /// Topic it was read from.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Kafka timestamp in milliseconds since the Unix epoch, if the record has one.
    pub timestamp: Option<i64>,
    /// Key bytes (`None`: a null key).
    pub key: Option<Vec<u8>>,
    /// Value bytes (`None`: a tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers, in order; a header may have no value.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl KafkaRecord {
    /// Where the record came from.
    pub fn origin(&self) -> Origin {
        Origin {
            stream: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
        }
    }

    /// The record's event time by default: its Kafka timestamp (ms since the Unix epoch). A
    /// record without one (written by a pre-0.10 client) has the earliest time there is, so a
    /// windowed job treats it as late rather than guessing a time for it.
    ///
    /// With its [`split`](Self::split), the default event time of a Kafka stream, a
    /// watermark per partition:
    /// `.with_split_watermark(KafkaRecord::event_time, KafkaRecord::split, strategy)`.
    pub fn event_time(&self) -> rill_engine::EventTime {
        self.timestamp.unwrap_or(rill_engine::EventTime::MIN)
    }

    /// The record's split for per-partition watermarks: topic and partition in one number
    /// (the topic's stable hash in the high bits), so that a source reading several topics
    /// keeps their partitions apart.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use rill_connectors::kafka::KafkaRecord;
    /// let at = |topic: &str, partition: i32| KafkaRecord { topic: Arc::from(topic), partition,
    ///     offset: 0, timestamp: Some(1_700_000_000_000), key: None, value: None, headers: vec![] };
    /// assert_ne!(at("clicks", 0).split(), at("clicks", 1).split());
    /// assert_ne!(at("clicks", 0).split(), at("views", 0).split());
    /// assert_eq!(at("clicks", 0).event_time(), 1_700_000_000_000);
    /// ```
    pub fn split(&self) -> u64 {
        let topic = rill_engine::state::hash_key(&*self.topic);
        (topic << 20) ^ (self.partition as u32 as u64)
    }

    /// The value's bytes, or an error naming the record if it is null.
    pub fn value_bytes(&self) -> Result<&[u8], DecodeError> {
        self.value.as_deref().ok_or_else(|| DecodeError::Missing {
            origin: self.origin(),
            part: "value",
        })
    }

    /// The key's bytes, or an error naming the record if it is null.
    pub fn key_bytes(&self) -> Result<&[u8], DecodeError> {
        self.key.as_deref().ok_or_else(|| DecodeError::Missing {
            origin: self.origin(),
            part: "key",
        })
    }

    /// The value as UTF-8 text.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use rill_connectors::kafka::KafkaRecord;
    /// let r = KafkaRecord { topic: Arc::from("t"), partition: 0, offset: 7, timestamp: None,
    ///     key: None, value: Some(b"\xff".to_vec()), headers: vec![] };
    /// let err = r.value_str().unwrap_err();
    /// assert!(err.to_string().starts_with("value of record t/0@7 is not valid UTF-8"));
    /// ```
    pub fn value_str(&self) -> Result<&str, DecodeError> {
        let bytes = self.value_bytes()?;
        std::str::from_utf8(bytes).map_err(|source| DecodeError::Utf8 {
            origin: self.origin(),
            part: "value",
            source,
        })
    }

    /// The key as UTF-8 text.
    pub fn key_str(&self) -> Result<&str, DecodeError> {
        let bytes = self.key_bytes()?;
        std::str::from_utf8(bytes).map_err(|source| DecodeError::Utf8 {
            origin: self.origin(),
            part: "key",
            source,
        })
    }

    /// The value decoded from JSON into `T`.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use rill_connectors::kafka::KafkaRecord;
    /// #[derive(serde::Deserialize, Debug, PartialEq)]
    /// struct Click { user: String, n: u32 }
    /// let r = KafkaRecord { topic: Arc::from("t"), partition: 1, offset: 0, timestamp: None,
    ///     key: None, value: Some(br#"{"user":"u1","n":3}"#.to_vec()), headers: vec![] };
    /// assert_eq!(r.value_json::<Click>()?, Click { user: "u1".into(), n: 3 });
    /// # Ok::<(), rill_connectors::kafka::DecodeError>(())
    /// ```
    pub fn value_json<T: serde::de::DeserializeOwned>(&self) -> Result<T, DecodeError> {
        let bytes = self.value_bytes()?;
        serde_json::from_slice(bytes).map_err(|source| DecodeError::Json {
            origin: self.origin(),
            source,
        })
    }

    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// A Kafka record is the raw record of a dead letter: its topic, partition and offset, and
/// its key and value bytes.
impl RawRecord for KafkaRecord {
    fn origin(&self) -> Option<Origin> {
        Some(KafkaRecord::origin(self))
    }
    fn raw_key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }
    fn raw_value(&self) -> Option<&[u8]> {
        self.value.as_deref()
    }
}
