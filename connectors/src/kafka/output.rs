//! What a record must offer to be written to Kafka ([`ToKafka`]), and how a dead letter is
//! written: the original bytes, with its provenance in headers.

use std::borrow::Cow;

use rill_engine::DeadLetter;

/// What a [`KafkaSink`](crate::kafka::KafkaSink) needs from a record: topic (optional, else the sink's), key, value and
/// headers. Implemented for [`KafkaOutput`], for `String`/`Vec<u8>` values and for
/// `(key, value)` pairs of them.
pub trait ToKafka {
    /// The topic for this record (like Spark's `topic` column); `None` uses the sink's topic.
    fn topic(&self) -> Option<&str> {
        None
    }
    /// Key bytes, if any.
    fn key(&self) -> Option<&[u8]>;
    /// Value bytes, if any (`None` writes a tombstone).
    fn value(&self) -> Option<&[u8]>;
    /// Headers to attach.
    fn headers(&self) -> Cow<'_, [(String, Vec<u8>)]> {
        Cow::Borrowed(&[])
    }
}

/// Header names of a dead letter written to Kafka.
pub mod dead_letter_headers {
    /// The operator whose function failed.
    pub const STAGE: &str = "rill.dlq.stage";
    /// The error, with its causes.
    pub const ERROR: &str = "rill.dlq.error";
    /// The topic the record was read from.
    pub const TOPIC: &str = "rill.dlq.origin.topic";
    /// Its partition, decimal.
    pub const PARTITION: &str = "rill.dlq.origin.partition";
    /// Its offset, decimal.
    pub const OFFSET: &str = "rill.dlq.origin.offset";
    /// Present when the dead-letter topic refused the letter as too large and its value
    /// was cut to 64 KiB: the original value's length in bytes, decimal.
    pub const TRUNCATED: &str = "rill.dlq.value.truncated";
}

/// A dead letter goes to Kafka as the original record (same key and value bytes), with its
/// provenance in headers (see [`dead_letter_headers`]), so that replaying the dead-letter topic
/// into the original topic (a bounded run) restores the record exactly.
impl ToKafka for DeadLetter {
    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }
    fn value(&self) -> Option<&[u8]> {
        self.value.as_deref()
    }
    fn headers(&self) -> Cow<'_, [(String, Vec<u8>)]> {
        use dead_letter_headers as h;
        let mut headers = vec![
            (h::STAGE.to_string(), self.stage.as_bytes().to_vec()),
            (h::ERROR.to_string(), self.error.as_bytes().to_vec()),
        ];
        if let Some(o) = &self.origin {
            headers.push((h::TOPIC.to_string(), o.stream.as_bytes().to_vec()));
            headers.push((
                h::PARTITION.to_string(),
                o.partition.to_string().into_bytes(),
            ));
            headers.push((h::OFFSET.to_string(), o.offset.to_string().into_bytes()));
        }
        Cow::Owned(headers)
    }
}

/// A record to write, with every field a Kafka record can have.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaOutput {
    /// Topic; `None` uses the sink's default topic.
    pub topic: Option<String>,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl ToKafka for KafkaOutput {
    fn topic(&self) -> Option<&str> {
        self.topic.as_deref()
    }
    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }
    fn value(&self) -> Option<&[u8]> {
        self.value.as_deref()
    }
    fn headers(&self) -> Cow<'_, [(String, Vec<u8>)]> {
        Cow::Borrowed(&self.headers)
    }
}

impl ToKafka for String {
    fn key(&self) -> Option<&[u8]> {
        None
    }
    fn value(&self) -> Option<&[u8]> {
        Some(self.as_bytes())
    }
}

impl ToKafka for Vec<u8> {
    fn key(&self) -> Option<&[u8]> {
        None
    }
    fn value(&self) -> Option<&[u8]> {
        Some(self)
    }
}

impl<K: AsRef<[u8]>, V: AsRef<[u8]>> ToKafka for (K, V) {
    fn key(&self) -> Option<&[u8]> {
        Some(self.0.as_ref())
    }
    fn value(&self) -> Option<&[u8]> {
        Some(self.1.as_ref())
    }
}
