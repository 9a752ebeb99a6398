//! A job being built: its sources, dead-letter sink, and the start of a run.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::dataflow::config::Config;
use crate::dataflow::graph::Graph;
use crate::dataflow::sink::Sink;
use crate::dataflow::source::Source;
use crate::dataflow::stream::{SourceBuilder, Stream};
use crate::error::JobError;
use crate::failure::DeadLetter;
use crate::runtime::handle::JobHandle;
use crate::runtime::launch::launch;
use crate::runtime::metrics::NodeKind;

/// A job being built: add sources, chain operators, end in sinks, then [`run`](Self::run).
///
/// ```
/// use rill_engine::{Config, Job};
/// use rill_connectors::{MemorySource, CollectSink};
///
/// let job = Job::new("relay");
/// let out = CollectSink::default();
/// job.source(MemorySource::new(vec!["a", "b", "c"])).sink(out.clone());
/// job.run(Config::default().with_workers(2))?.await_termination()?;
/// let mut got = out.take();
/// got.sort();
/// assert_eq!(got, ["a", "b", "c"]);
/// # Ok::<(), rill_engine::JobError>(())
/// ```
#[derive(Default)]
pub struct Job {
    name: String,
    graph: Rc<RefCell<Graph>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let graph = self.graph.borrow();
        f.debug_struct("Job")
            .field("name", &self.name)
            .field("nodes", &graph.nodes)
            .finish()
    }
}

impl Job {
    /// An empty job.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            graph: Rc::default(),
        }
    }

    /// The job's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds a source; every worker creates its own instance and reads its share.
    pub fn source<S: Source>(&self, factory: S) -> Stream<SourceBuilder<S>> {
        let node = {
            let mut graph = self.graph.borrow_mut();
            if let Some(wanted) = factory.acknowledgement_interval() {
                let interval = graph.acknowledgement_interval.get_or_insert(wanted);
                *interval = (*interval).min(wanted);
            }
            graph.waking_sources += usize::from(factory.wakes_workers());
            graph.add_node(factory.name(), NodeKind::Source)
        };
        Stream::from_parts(self.graph.clone(), SourceBuilder { factory, node }, node)
    }

    /// Sends records whose user function fails to `sink` instead of failing the job.
    ///
    /// Each failure becomes a [`DeadLetter`](DeadLetter): the failing stage, the error,
    /// and, where the stage saw the raw record (the `decode` operator), its origin and
    /// original bytes. Without a dead-letter sink the first failure ends the job.
    pub fn dead_letter<S>(&self, sink: S)
    where
        S: Sink<DeadLetter>,
        S::Writer: Send + 'static,
    {
        let mut graph = self.graph.borrow_mut();
        let node = graph.add_node("dead_letter", NodeKind::Sink);
        graph.dead_letter = Some((Arc::new(sink), node));
    }

    /// Starts the job's workers and returns at once with a handle to it.
    pub fn run(self, config: Config) -> Result<JobHandle, JobError> {
        let graph = std::mem::take(&mut *self.graph.borrow_mut());
        launch(self.name, graph, config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BoxError, Emit, IdleStrategy, Progress, SourceReader, WorkerContext};

    /// A source with nothing to read, that says whether it wakes its workers.
    struct Quiet(bool);
    struct QuietReader;

    impl Source for Quiet {
        type Reader = QuietReader;
        fn create(&self, _ctx: &WorkerContext) -> Result<QuietReader, BoxError> {
            Ok(QuietReader)
        }
        fn name(&self) -> &str {
            "quiet"
        }
        fn wakes_workers(&self) -> bool {
            self.0
        }
    }

    impl SourceReader for QuietReader {
        type Out = u64;
        fn poll<E: Emit<u64>>(
            &mut self,
            _out: &mut E,
            _budget: usize,
        ) -> Result<Progress, BoxError> {
            Ok(Progress::Done)
        }
    }

    fn idle_of(sources: &[bool]) -> IdleStrategy {
        let job = Job::new("idle");
        for &wakes in sources {
            let _ = job.source(Quiet(wakes));
        }
        let waking = job.graph.borrow().sources_wake_workers();
        IdleStrategy::Auto.resolve(waking)
    }

    #[test]
    fn workers_park_by_default_only_when_every_source_wakes_them() {
        assert_eq!(idle_of(&[true]), IdleStrategy::Park);
        assert_eq!(idle_of(&[true, true]), IdleStrategy::Park);
        // One source that must be polled (a generator, a file) keeps the backoff.
        assert!(matches!(
            idle_of(&[true, false]),
            IdleStrategy::Backoff { .. }
        ));
        assert!(matches!(idle_of(&[]), IdleStrategy::Backoff { .. }));
    }
}
