//! Live per-operator record counts, readable while the job runs.
//!
//! Every worker has its own cache-padded counter pair per graph node and is the only writer of
//! it, so publishing is a plain store (no locked read-modify-write, no false sharing).
//! Operators count in local integers and publish once per poll, not once per record.
//! Readers sum over the workers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

/// What kind of graph node a metric belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A source: counts records emitted.
    Source,
    /// An operator of a fused chain: counts records in and out.
    Operator,
    /// An exchange: records in = sent by the upstream side, out = delivered downstream.
    Exchange,
    /// A sink: counts records written.
    Sink,
}

/// Counts of one graph node, summed over all workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorMetrics {
    /// The node's name, as given when building the job (or the operator's default name).
    pub name: Arc<str>,
    /// What the node is.
    pub kind: NodeKind,
    /// Records that entered the node (sources: 0).
    pub records_in: u64,
    /// Records that left the node (sinks: 0).
    pub records_out: u64,
}

/// A snapshot of every node's counters, in the order the nodes were added to the job.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobMetrics {
    /// One entry per graph node.
    pub operators: Vec<OperatorMetrics>,
}

impl JobMetrics {
    /// The entry of the first node with this name.
    pub fn get(&self, name: &str) -> Option<&OperatorMetrics> {
        self.operators.iter().find(|m| &*m.name == name)
    }
}

impl std::fmt::Display for JobMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for m in &self.operators {
            writeln!(
                f,
                "{:<24} {:<9} in {:>12} out {:>12}",
                m.name,
                format!("{:?}", m.kind),
                m.records_in,
                m.records_out
            )?;
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Counters {
    records_in: AtomicU64,
    records_out: AtomicU64,
}

/// All counters of a running job: `[worker][node]`.
#[derive(Debug)]
pub(crate) struct MetricsRegistry {
    nodes: Vec<(Arc<str>, NodeKind)>,
    counters: Box<[CachePadded<Counters>]>,
}

impl MetricsRegistry {
    pub(crate) fn new(nodes: Vec<(Arc<str>, NodeKind)>, workers: usize) -> Self {
        let counters = (0..nodes.len() * workers)
            .map(|_| CachePadded::new(Counters::default()))
            .collect();
        Self { nodes, counters }
    }

    pub(crate) fn node_name(&self, node: usize) -> Arc<str> {
        self.nodes
            .get(node)
            .map(|(name, _)| name.clone())
            .unwrap_or_else(|| Arc::from("<unknown>"))
    }

    pub(crate) fn snapshot(&self) -> JobMetrics {
        let n = self.nodes.len();
        let operators = self
            .nodes
            .iter()
            .enumerate()
            .map(|(node, (name, kind))| {
                let (mut records_in, mut records_out) = (0, 0);
                for slot in self.counters.iter().skip(node).step_by(n.max(1)) {
                    records_in += slot.records_in.load(Ordering::Relaxed);
                    records_out += slot.records_out.load(Ordering::Relaxed);
                }
                OperatorMetrics {
                    name: name.clone(),
                    kind: *kind,
                    records_in,
                    records_out,
                }
            })
            .collect();
        JobMetrics { operators }
    }
}

/// The write side of one node's counters on one worker.
#[derive(Debug, Clone)]
pub struct NodeCounters {
    registry: Arc<MetricsRegistry>,
    slot: usize,
}

impl NodeCounters {
    pub(crate) fn new(registry: Arc<MetricsRegistry>, worker: usize, node: usize) -> Self {
        let slot = worker * registry.nodes.len() + node;
        Self { registry, slot }
    }

    /// Counters that belong to no job: for driving a flow by hand (tests, model checks).
    pub fn detached() -> Self {
        let registry = Arc::new(MetricsRegistry::new(
            vec![(Arc::from("detached"), NodeKind::Operator)],
            1,
        ));
        Self::new(registry, 0, 0)
    }

    /// Publishes this worker's cumulative counts of the node.
    #[inline]
    pub fn publish(&self, records_in: u64, records_out: u64) {
        self.publish_in(records_in);
        self.publish_out(records_out);
    }

    /// Publishes this worker's cumulative count of records into the node.
    #[inline]
    pub fn publish_in(&self, records_in: u64) {
        // Single writer per slot (the worker's thread): a store, not a fetch_add.
        self.registry.counters[self.slot]
            .records_in
            .store(records_in, Ordering::Relaxed);
    }

    /// Publishes this worker's cumulative count of records out of the node.
    #[inline]
    pub fn publish_out(&self, records_out: u64) {
        self.registry.counters[self.slot]
            .records_out
            .store(records_out, Ordering::Relaxed);
    }
}
