//! Epochs: what workers and the checkpoint coordinator share while a job runs.
//!
//! The coordinator raises `requested` to start epoch n. Every source instance notices it at
//! its next poll (one relaxed-cost atomic load per poll, not per record), records its position
//! and injects `Barrier(n)` into its flow. Every task instance acknowledges n once its flow has
//! passed the barrier, handing over the state its operators captured. When all have, the
//! coordinator writes the checkpoint, commits transactional sinks, and raises `completed`.
//!
//! The handshake is release/acquire on three counters: the coordinator stores `final_epoch`
//! before `requested` (so a source that sees the last epoch requested also sees that it is the
//! last), does everything an epoch's completion entails before storing `completed` (so a sink
//! or source that sees it completed sees the commit), and wakes every worker after each store
//! (so a parked source cannot miss a request). The counters come from [`crate::sync`], and
//! `engine/tests/loom_epoch.rs` checks the handshake under loom.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::runtime::message::Epoch;
use crate::runtime::signal::WorkerSignal;
use crate::state::StateSnapshot;
use crate::sync::{AtomicU64, Ordering};

/// What a task instance reports when its flow has passed a barrier.
pub(crate) struct BarrierAck {
    pub(crate) epoch: Epoch,
    pub(crate) task: usize,
    pub(crate) worker: usize,
    pub(crate) snapshots: Vec<(usize, Box<dyn StateSnapshot>)>,
    pub(crate) alignment: Duration,
}

/// Messages to the coordinator thread.
pub(crate) enum CoordinatorEvent {
    Ack(BarrierAck),
    /// A task instance finished; it acknowledges no further epochs.
    TaskDone {
        task: usize,
        worker: usize,
    },
    /// A source instance has read all its input (bounded source).
    SourceExhausted,
    /// Micro-batch mode: where a source instance's input ends for batch `epoch`.
    BatchPlan {
        epoch: Epoch,
        node: usize,
        worker: usize,
        end: Option<Vec<u8>>,
    },
    /// Graceful stop requested: take a final checkpoint, then end.
    Stop,
    /// Every worker has exited.
    WorkersDone,
}

/// The epoch counters shared by the coordinator and the workers.
#[derive(Debug)]
pub(crate) struct EpochControl {
    /// The epoch the job restored (0 for a fresh start): where every task's count begins,
    /// even a task built after the coordinator has already started the next epoch.
    initial: Epoch,
    requested: AtomicU64,
    completed: AtomicU64,
    /// The epoch after which sources end; 0 while the job runs on.
    final_epoch: AtomicU64,
    /// Micro-batch mode with a checkpoint store: batch plans are logged before the batch
    /// reads input, and `planned` is the newest batch whose plan is durable.
    logs_plans: bool,
    /// False when epochs only acknowledge input (a job without checkpoints): operators
    /// then take no snapshots.
    keeps_state: bool,
    planned: AtomicU64,
    events: Sender<CoordinatorEvent>,
    signals: Arc<[Arc<WorkerSignal>]>,
}

impl EpochControl {
    pub(crate) fn new(
        restored: Epoch,
        events: Sender<CoordinatorEvent>,
        signals: Arc<[Arc<WorkerSignal>]>,
    ) -> Self {
        Self {
            initial: restored,
            requested: AtomicU64::new(restored),
            completed: AtomicU64::new(restored),
            final_epoch: AtomicU64::new(0),
            logs_plans: false,
            keeps_state: true,
            planned: AtomicU64::new(restored),
            events,
            signals,
        }
    }

    /// Batch plans must be durable before their batch reads input (micro-batch mode with a
    /// checkpoint store).
    pub(crate) fn logging_plans(mut self) -> Self {
        self.logs_plans = true;
        self
    }

    /// Epochs that only tell sources what the sinks acknowledged: no operator state.
    pub(crate) fn without_state(mut self) -> Self {
        self.keeps_state = false;
        self
    }

    /// Whether operators snapshot their state at barriers.
    #[inline]
    pub(crate) fn keeps_state(&self) -> bool {
        self.keeps_state
    }

    /// Whether batch plans are logged (sources then report them to the coordinator).
    #[inline]
    pub(crate) fn logs_plans(&self) -> bool {
        self.logs_plans
    }

    /// Whether batch `epoch` may read input: its plan is logged, or plans are not logged.
    #[inline]
    pub(crate) fn plan_logged(&self, epoch: Epoch) -> bool {
        !self.logs_plans || self.planned.load(Ordering::Acquire) >= epoch
    }

    /// The plan of batch `epoch` is durable: its sources may read.
    pub(crate) fn plan_written(&self, epoch: Epoch) {
        self.planned.store(epoch, Ordering::Release);
        self.wake_all();
    }

    /// The epoch the job started from.
    pub(crate) fn initial(&self) -> Epoch {
        self.initial
    }

    /// The newest epoch sources are asked to inject.
    #[inline]
    pub(crate) fn requested(&self) -> Epoch {
        self.requested.load(Ordering::Acquire)
    }

    /// The newest epoch whose checkpoint is complete (and committed).
    #[inline]
    pub(crate) fn completed(&self) -> Epoch {
        self.completed.load(Ordering::Acquire)
    }

    /// True if sources must end once they have injected `epoch`.
    #[inline]
    pub(crate) fn ends_after(&self, epoch: Epoch) -> bool {
        let f = self.final_epoch.load(Ordering::Acquire);
        f != 0 && epoch >= f
    }

    pub(crate) fn start(&self, epoch: Epoch, last: bool) {
        if last {
            self.final_epoch.store(epoch, Ordering::Release);
        }
        self.requested.store(epoch, Ordering::Release);
        self.wake_all();
    }

    pub(crate) fn complete(&self, epoch: Epoch) {
        self.completed.store(epoch, Ordering::Release);
        self.wake_all();
    }

    fn wake_all(&self) {
        for s in self.signals.iter() {
            s.notify();
        }
    }

    /// Sends an event to the coordinator; it is gone only when the job is being torn down.
    pub(crate) fn send(&self, event: CoordinatorEvent) {
        let _ = self.events.send(event);
    }
}

/// What a task needs to acknowledge barriers: the control and its identity.
#[derive(Debug, Clone)]
pub(crate) struct TaskEpochs {
    pub(crate) control: Arc<EpochControl>,
    pub(crate) task: usize,
    pub(crate) worker: usize,
}

impl TaskEpochs {
    pub(crate) fn ack(
        &self,
        epoch: Epoch,
        snapshots: Vec<(usize, Box<dyn StateSnapshot>)>,
        alignment: Duration,
    ) {
        self.control.send(CoordinatorEvent::Ack(BarrierAck {
            epoch,
            task: self.task,
            worker: self.worker,
            snapshots,
            alignment,
        }));
    }
}

/// What a flow collects for the task when it passes a barrier.
#[derive(Default)]
pub struct BarrierReport {
    pub(crate) snapshots: Vec<(usize, Box<dyn StateSnapshot>)>,
    pub(crate) alignment: Duration,
}

impl std::fmt::Debug for BarrierReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BarrierReport")
            .field("snapshots", &self.snapshots.len())
            .field("alignment", &self.alignment)
            .finish()
    }
}

impl BarrierReport {
    /// Adds the captured state of graph node `node`.
    pub fn push(&mut self, node: usize, snapshot: Box<dyn StateSnapshot>) {
        self.snapshots.push((node, snapshot));
    }

    /// Adds time spent holding inputs while aligning barriers.
    pub fn add_alignment(&mut self, d: Duration) {
        self.alignment = self.alignment.max(d);
    }
}
