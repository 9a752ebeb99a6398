//! What a worker knows while it builds its tasks: its context, the job's signals, metrics,
//! dead-letter route, epoch control, and the state a restored checkpoint holds for each node.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::checkpoint::epoch::{EpochControl, TaskEpochs};
use crate::runtime::context::WorkerContext;
use crate::runtime::dead_letter::DeadLetterRoute;
use crate::runtime::metrics::{MetricsRegistry, NodeCounters};
use crate::runtime::signal::WorkerSignal;
use crate::state::{NodeRestore, RestoredState};

/// What a worker knows while it builds its instance of the job's flows.
///
/// Opaque to users; it reaches [`FlowBuilder::build`](crate::FlowBuilder::build) implementations.
pub struct BuildCtx {
    pub(crate) worker: WorkerContext,
    pub(crate) signals: Arc<[Arc<WorkerSignal>]>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) metrics: Arc<MetricsRegistry>,
    /// This worker's dead-letter sink, created on the worker thread before its tasks.
    pub(crate) dead_letters: std::sync::OnceLock<DeadLetterRoute>,
    /// Epoch control, when the job checkpoints.
    pub(crate) epochs: Option<Arc<EpochControl>>,
    /// Micro-batch mode: sources read only inside a batch, sinks write at its end.
    pub(crate) micro_batch: bool,
    /// Micro-batch mode: the most output records a sink task holds until its batch ends.
    pub(crate) batch_output_limit: usize,
    /// The index of the task being built (set by the worker before each factory call).
    pub(crate) task: std::cell::Cell<usize>,
    /// Per node: what the checkpoint being restored holds.
    pub(crate) restored: Option<Arc<Vec<NodeRestore>>>,
    /// Micro-batch mode: the logged ends of the interrupted batch to replay, per node.
    pub(crate) replay: Option<Arc<Vec<NodeRestore>>>,
}

impl std::fmt::Debug for BuildCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildCtx")
            .field("worker", &self.worker.worker)
            .field("workers", &self.worker.workers)
            .finish()
    }
}

impl BuildCtx {
    /// The worker being built.
    pub fn worker(&self) -> &WorkerContext {
        &self.worker
    }

    pub(crate) fn counters(&self, node: usize) -> NodeCounters {
        NodeCounters::new(self.metrics.clone(), self.worker.worker, node)
    }

    pub(crate) fn node_name(&self, node: usize) -> Arc<str> {
        self.metrics.node_name(node)
    }

    pub(crate) fn dead_letters(&self) -> Option<DeadLetterRoute> {
        self.dead_letters.get().cloned()
    }

    /// How the task being built acknowledges barriers, when the job checkpoints.
    pub(crate) fn task_epochs(&self) -> Option<TaskEpochs> {
        self.epochs.as_ref().map(|control| TaskEpochs {
            control: control.clone(),
            task: self.task.get(),
            worker: self.worker.worker,
        })
    }

    /// The epoch control, when the job checkpoints.
    pub(crate) fn epoch_control(&self) -> Option<Arc<EpochControl>> {
        self.epochs.clone()
    }

    /// What `node` restores from, if the job restored a checkpoint in which it stored state.
    pub(crate) fn restored_state<'a>(
        &'a self,
        node: usize,
        name: &'a str,
    ) -> Option<RestoredState<'a>> {
        self.node_data(self.restored.as_ref()?, node, name)
    }

    /// The logged batch end of source `node` to replay, if the restart replays a batch.
    pub(crate) fn replayed_plan<'a>(
        &'a self,
        node: usize,
        name: &'a str,
    ) -> Option<RestoredState<'a>> {
        self.node_data(self.replay.as_ref()?, node, name)
    }

    fn node_data<'a>(
        &'a self,
        all: &'a [NodeRestore],
        node: usize,
        name: &'a str,
    ) -> Option<RestoredState<'a>> {
        let data = all.get(node)?;
        if data.type_name.is_empty() {
            return None;
        }
        Some(RestoredState {
            node: name,
            data,
            worker: self.worker.worker,
            workers: self.worker.workers,
        })
    }
}
