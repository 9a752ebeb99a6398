//! The job graph as it is built: named nodes, task factories, exchange edges.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::commit::Committer;
use crate::dead_letter::{DeadLetterFactory, DeadLetterRoute};
use crate::epoch::{EpochControl, TaskEpochs};
use crate::error::JobError;
use crate::exchange::PrepareEdge;
use crate::flow::Flow;
use crate::metrics::{MetricsRegistry, NodeCounters, NodeKind};
use crate::signal::WorkerSignal;
use crate::source::WorkerContext;
use crate::state::{NodeRestore, RestoredState};
use crate::task::Task;

/// Builds one worker's instance of a task. Called on the worker thread at start-up.
pub(crate) type TaskFactory =
    Box<dyn Fn(&BuildCtx) -> Result<Box<dyn Task>, JobError> + Send + Sync>;

/// Everything a job is made of before it runs.
#[derive(Default)]
pub(crate) struct Graph {
    pub(crate) nodes: Vec<(Arc<str>, NodeKind)>,
    pub(crate) tasks: Vec<TaskFactory>,
    pub(crate) edges: Vec<Arc<dyn PrepareEdge>>,
    /// The job's dead-letter sink and its metrics node, if any.
    pub(crate) dead_letter: Option<(Arc<dyn DeadLetterFactory>, usize)>,
    /// Committers of transactional sinks, driven by the checkpoint coordinator.
    pub(crate) committers: Vec<(Arc<str>, Arc<dyn Committer>)>,
}

impl Graph {
    /// Adds a node and returns its id. Repeated names get a `#n` suffix so metrics stay
    /// distinguishable (`map`, `map#2`, ...).
    pub(crate) fn add_node(&mut self, name: &str, kind: NodeKind) -> usize {
        let same = self
            .nodes
            .iter()
            .filter(|(n, _)| n.split('#').next() == Some(name))
            .count();
        let name: Arc<str> = if same == 0 {
            Arc::from(name)
        } else {
            Arc::from(format!("{name}#{}", same + 1))
        };
        self.nodes.push((name, kind));
        self.nodes.len() - 1
    }

    pub(crate) fn rename(&mut self, node: usize, name: &str) {
        if let Some(entry) = self.nodes.get_mut(node) {
            entry.0 = Arc::from(name);
        }
    }
}

/// What a worker knows while it builds its instance of the job's flows.
///
/// Opaque to users; it reaches [`FlowBuilder::build`] implementations.
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

/// A recipe for one worker's instance of a flow: what a [`Stream`](crate::Stream) holds.
///
/// Each `Stream` method wraps the builder it had in a new one, so the finished type describes
/// the whole fused chain and `build` yields a fully monomorphized flow.
pub trait FlowBuilder: Send + Sync + 'static {
    /// The type of the records of the stream.
    type Out;
    /// The per-worker flow it builds.
    type Flow: Flow<Out = Self::Out> + 'static;

    /// Builds the flow for the worker described by `ctx`.
    fn build(&self, ctx: &BuildCtx) -> Result<Self::Flow, JobError>;
}
