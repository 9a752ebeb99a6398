//! The at-least-once Kafka writer: a producer per worker, records visible at once.

use rill_engine::sync::Lock;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rill_engine::{AbortSignal, BoxError, DeadLetter, Epoch, SinkWriter};

use super::error::KafkaConnectorError;
use super::output::ToKafka;
use super::producer::{flush_promptly, record_of, undelivered_letter, DeliveryContext};

/// One worker's [`KafkaSink`](crate::kafka::KafkaSink).
pub struct KafkaPlainWriter {
    pub(super) producer: BaseProducer<DeliveryContext>,
    pub(super) default_topic: Option<String>,
    pub(super) failure: Arc<Mutex<Option<KafkaConnectorError>>>,
    pub(super) undelivered: Option<Arc<Mutex<Vec<DeadLetter>>>>,
    pub(super) flush_timeout: Duration,
    /// The job's abort: a full queue is waited on only while the job runs.
    pub(super) abort: AbortSignal,
}

impl std::fmt::Debug for KafkaPlainWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaPlainWriter")
            .field("default_topic", &self.default_topic)
            .field("in_flight", &self.producer.in_flight_count())
            .finish()
    }
}

impl KafkaPlainWriter {
    /// Waits until every record written so far is acknowledged, and surfaces any failed
    /// delivery: what a barrier and the end of input both need.
    fn wait_for_acknowledgements(&mut self) -> Result<(), BoxError> {
        if flush_promptly(&self.producer, self.flush_timeout).is_err() {
            self.check_deliveries()?;
            return Err(KafkaConnectorError::FlushTimeout {
                in_flight: self.producer.in_flight_count(),
            }
            .into());
        }
        self.check_deliveries()
    }

    fn check_deliveries(&self) -> Result<(), BoxError> {
        match self.failure.locked().take() {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

impl<T: ToKafka> SinkWriter<T> for KafkaPlainWriter {
    fn write(&mut self, item: T) -> Result<(), BoxError> {
        let topic = item
            .topic()
            .or(self.default_topic.as_deref())
            .ok_or(KafkaConnectorError::NoTopic)?;
        let item_headers = item.headers();
        let mut record = record_of(topic, item.key(), item.value(), &item_headers);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                // librdkafka's queue is full: back-pressure from the broker. Serve delivery
                // reports (which frees room) and try again.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.producer.poll(Duration::from_millis(1));
                    self.check_deliveries()?;
                    if self.abort.is_aborted() {
                        return Err(KafkaConnectorError::AbortedWhileQueueFull {
                            topic: topic.to_string(),
                        }
                        .into());
                    }
                }
                Err((e, _)) => {
                    if let Some(undelivered) = &self.undelivered {
                        let letter = undelivered_letter(topic, item.key(), item.value(), &e);
                        undelivered.locked().push(letter);
                        return Ok(());
                    }
                    return Err(KafkaConnectorError::Delivery {
                        topic: topic.to_string(),
                        source: e,
                    }
                    .into());
                }
            }
        }
    }

    fn flush(&mut self) -> Result<(), BoxError> {
        // Non-blocking: serve delivery reports, surface failures.
        self.producer.poll(Duration::ZERO);
        self.check_deliveries()
    }

    /// At-least-once with checkpoints: every record written before the barrier must be
    /// acknowledged before the checkpoint may say the input behind it is done.
    fn on_barrier(&mut self, _epoch: Epoch) -> Result<(), BoxError> {
        self.wait_for_acknowledgements()
    }

    fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        match &self.undelivered {
            Some(u) => std::mem::take(&mut *u.locked()),
            None => Vec::new(),
        }
    }

    fn close(&mut self) -> Result<(), BoxError> {
        self.wait_for_acknowledgements()
    }
}
