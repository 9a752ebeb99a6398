//! Internals the loom models and benches drive directly: not part of the API, hidden from the
//! docs, and free to change in any release.

use std::sync::Arc;

use crossbeam_channel::Receiver;

pub use crate::runtime::exchange::Inbound;
pub use crate::runtime::idle::{Idler, Wait};
pub use crate::runtime::message::Message;
pub use crate::runtime::metrics::NodeCounters;
pub use crate::runtime::signal::WorkerSignal;

use crate::checkpoint::epoch::{CoordinatorEvent, EpochControl};
use crate::runtime::message::Epoch;

/// The real epoch counters of a checkpointing job, with the calls the coordinator and the
/// workers make on them, for the loom model of their handshake.
#[derive(Debug)]
pub struct EpochHandshake {
    control: EpochControl,
    /// Keeps the coordinator's channel open; the model does not read it.
    _events: Receiver<CoordinatorEvent>,
}

impl EpochHandshake {
    /// Counters of a job restored at `restored` whose workers are woken through `signals`;
    /// with `logs_plans`, micro-batch plans must be durable before a batch reads.
    pub fn new(restored: Epoch, signals: Arc<[Arc<WorkerSignal>]>, logs_plans: bool) -> Self {
        let (events, receiver) = crossbeam_channel::unbounded();
        let control = EpochControl::new(restored, events, signals);
        Self {
            control: if logs_plans {
                control.logging_plans()
            } else {
                control
            },
            _events: receiver,
        }
    }

    /// Coordinator: starts `epoch`, the last one if `last`.
    pub fn start(&self, epoch: Epoch, last: bool) {
        self.control.start(epoch, last);
    }

    /// Coordinator: `epoch` is complete and committed.
    pub fn complete(&self, epoch: Epoch) {
        self.control.complete(epoch);
    }

    /// Coordinator: the plan of batch `epoch` is durable.
    pub fn plan_written(&self, epoch: Epoch) {
        self.control.plan_written(epoch);
    }

    /// Source: the newest epoch to inject.
    pub fn requested(&self) -> Epoch {
        self.control.requested()
    }

    /// Source or sink: the newest completed epoch.
    pub fn completed(&self) -> Epoch {
        self.control.completed()
    }

    /// Source: whether it ends once it has injected `epoch`.
    pub fn ends_after(&self, epoch: Epoch) -> bool {
        self.control.ends_after(epoch)
    }

    /// Source: whether batch `epoch` may read input.
    pub fn plan_logged(&self, epoch: Epoch) -> bool {
        self.control.plan_logged(epoch)
    }
}

/// An [`Emit`](crate::Emit) that counts what it is given and panics on a failure: for driving
/// an operator by hand in a test.
#[derive(Debug, Default)]
pub struct CountEmitted(pub u64);

impl<T> crate::Emit<T> for CountEmitted {
    fn emit(&mut self, _: T) {
        self.0 += 1;
    }
    fn fail(&mut self, failure: crate::Failure) {
        panic!("no failure expected: {failure:?}");
    }
    fn should_yield(&self) -> bool {
        false
    }
}

/// An [`Emit`](crate::Emit) that keeps what it is given, records and watermarks in order,
/// and panics on a failure: for driving an operator by hand in a test.
#[derive(Debug)]
pub struct Collected<T>(pub Vec<Result<T, crate::EventTime>>);

impl<T> Default for Collected<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T> Collected<T> {
    /// The records, without the watermarks, leaving it empty.
    pub fn take_records(&mut self) -> Vec<T> {
        std::mem::take(&mut self.0)
            .into_iter()
            .filter_map(Result::ok)
            .collect()
    }
}

impl<T> crate::Emit<T> for Collected<T> {
    fn emit(&mut self, item: T) {
        self.0.push(Ok(item));
    }
    fn fail(&mut self, failure: crate::Failure) {
        panic!("no failure expected: {failure:?}");
    }
    fn should_yield(&self) -> bool {
        false
    }
    fn watermark(&mut self, watermark: crate::EventTime) {
        self.0.push(Err(watermark));
    }
}
