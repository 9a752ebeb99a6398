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
use super::producer::{
    flush_promptly, record_of, too_large, truncated, undelivered_letter, DeliveryContext, Resend,
};

/// One worker's [`KafkaSink`](crate::kafka::KafkaSink).
pub struct KafkaPlainWriter {
    pub(super) producer: BaseProducer<DeliveryContext>,
    pub(super) default_topic: Option<String>,
    pub(super) failure: Arc<Mutex<Option<KafkaConnectorError>>>,
    pub(super) undelivered: Option<Arc<Mutex<Vec<DeadLetter>>>>,
    pub(super) flush_timeout: Duration,
    /// The job's abort: a full queue is waited on only while the job runs.
    pub(super) abort: AbortSignal,
    /// A dead-letter sink: the value length letters are cut to when their topic refuses
    /// them as too large, and the ones the broker refused, to send again.
    pub(super) oversized: Option<(usize, Arc<Mutex<Vec<Resend>>>)>,
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
    /// delivery: what a barrier and the end of input both need. Dead letters the broker
    /// rejected as too large are sent again, cut, and waited for too.
    fn wait_for_acknowledgements(&mut self) -> Result<(), BoxError> {
        loop {
            if flush_promptly(&self.producer, self.flush_timeout).is_err() {
                self.check_deliveries()?;
                return Err(KafkaConnectorError::FlushTimeout {
                    in_flight: self.producer.in_flight_count(),
                }
                .into());
            }
            if !self.resend_truncated()? {
                return self.check_deliveries();
            }
        }
    }

    fn check_deliveries(&self) -> Result<(), BoxError> {
        match self.failure.locked().take() {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Sends again, cut, the dead letters the broker rejected as too large; whether any.
    fn resend_truncated(&self) -> Result<bool, BoxError> {
        let pending = match &self.oversized {
            Some((_, resend)) => std::mem::take(&mut *resend.locked()),
            None => return Ok(false),
        };
        let any = !pending.is_empty();
        for (topic, key, value, headers) in pending {
            if let Some(e) = self.send(&topic, key.as_deref(), value.as_deref(), &headers)? {
                return Err(KafkaConnectorError::Delivery { topic, source: e }.into());
            }
        }
        Ok(any)
    }

    /// Hands one record to the producer, waiting (while the job runs) for room in a full
    /// queue. `Ok(Some(e))`: librdkafka refused the record itself.
    fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(String, Vec<u8>)],
    ) -> Result<Option<KafkaError>, BoxError> {
        let mut record = record_of(topic, key, value, headers);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(None),
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
                Err((e, _)) => return Ok(Some(e)),
            }
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
        let Some(mut e) = self.send(topic, item.key(), item.value(), &item_headers)? else {
            return Ok(());
        };
        if let Some(limit) = self
            .oversized
            .as_ref()
            .map(|(l, _)| *l)
            .filter(|_| too_large(&e))
        {
            // A dead letter larger than its topic takes: its value cut, with the original
            // length in a header, rather than a job that fails on the letter of a failure.
            let (value, headers) = truncated(item.value(), &item_headers, limit);
            match self.send(topic, item.key(), value.as_deref(), &headers)? {
                None => return Ok(()),
                Some(again) => e = again,
            }
        }
        if let Some(undelivered) = &self.undelivered {
            let letter = undelivered_letter(topic, item.key(), item.value(), &e);
            undelivered.locked().push(letter);
            return Ok(());
        }
        Err(KafkaConnectorError::Delivery {
            topic: topic.to_string(),
            source: e,
        }
        .into())
    }

    fn flush(&mut self) -> Result<(), BoxError> {
        // Non-blocking: serve delivery reports, surface failures.
        self.producer.poll(Duration::ZERO);
        self.resend_truncated()?;
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
