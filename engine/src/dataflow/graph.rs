//! The job graph as it is built: named nodes, task factories, exchange edges.

use std::sync::Arc;

use crate::checkpoint::commit::Committer;
use crate::error::JobError;
use crate::runtime::build::BuildCtx;
use crate::runtime::dead_letter::DeadLetterFactory;
use crate::runtime::exchange::PrepareEdge;
use crate::runtime::flow::Flow;
use crate::runtime::metrics::NodeKind;
use crate::runtime::task::Task;

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
    /// The shortest [`Source::acknowledgement_interval`](crate::Source::acknowledgement_interval)
    /// of the job's sources.
    pub(crate) acknowledgement_interval: Option<std::time::Duration>,
    /// How many sources [wake their workers](crate::Source::wakes_workers) themselves.
    pub(crate) waking_sources: usize,
}

impl Graph {
    /// Whether the job has sources and every one wakes its workers itself.
    pub(crate) fn sources_wake_workers(&self) -> bool {
        let sources = self
            .nodes
            .iter()
            .filter(|(_, kind)| *kind == NodeKind::Source)
            .count();
        sources > 0 && self.waking_sources == sources
    }

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
