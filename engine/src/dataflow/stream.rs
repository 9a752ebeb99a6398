//! The fluent, typed job API: [`Stream`] and [`KeyedStream`].

use crate::state::EncodeKey;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::dataflow::graph::{FlowBuilder, Graph};
use crate::dataflow::operator::Operator;
use crate::dataflow::sink::Sink;
use crate::dataflow::source::Source;
use crate::error::{ErrorChain, JobError};
use crate::runtime::build::BuildCtx;
use crate::runtime::exchange::Outbox;
use crate::runtime::exchange::{ExchangeIn, ExchangeTask, KeyRouter, Mesh, RoundRobin, Router};
use crate::runtime::flow::{Then, Union};
use crate::runtime::metrics::NodeKind;
use crate::runtime::side_output::SideOutput;
use crate::runtime::source_flow::SourceFlow;
use crate::runtime::split::{Branch, LocalRings, SplitTask};
use crate::runtime::task::SinkTask;

/// A typed stream of records being built into a job.
///
/// Methods consume the stream and return the next one, so a job reads as a chain:
/// `job.source(..).map(..).key_by(..).count().sink(..)`. Operators such as `map` and `count`
/// come from extension traits in `rill-operators` (import `rill::prelude::*`); this type
/// provides the structural steps: [`then`](Self::then), [`union`](Self::union),
/// [`key_by`](Self::key_by), [`rebalance`](Self::rebalance) and [`sink`](Self::sink).
#[must_use = "a stream does nothing until it reaches a sink"]
pub struct Stream<B> {
    graph: Rc<RefCell<Graph>>,
    builder: B,
    node: usize,
}

impl<B> std::fmt::Debug for Stream<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self
            .graph
            .borrow()
            .nodes
            .get(self.node)
            .map(|(n, _)| n.to_string());
        f.debug_struct("Stream").field("last_node", &name).finish()
    }
}

/// A stream partitioned by key: every record of a key is on the worker owning its key group.
/// Records are `(key, value)` pairs; keyed operators (`count`, `reduce`, `aggregate`) keep
/// their state per key on that worker.
#[must_use = "a stream does nothing until it reaches a sink"]
#[derive(Debug)]
pub struct KeyedStream<B> {
    stream: Stream<B>,
    ttl: Option<crate::state::StateTtl>,
}

impl<B: FlowBuilder> KeyedStream<B> {
    /// Appends an operator that relies on key partitioning (its state is per key).
    pub fn then<O>(self, name: &str, op: O) -> Stream<ThenBuilder<B, O>>
    where
        O: Operator<B::Out> + Clone + Send + Sync + 'static,
    {
        self.stream.then(name, op)
    }

    /// Gives every keyed operator built from this stream (count, reduce, aggregate, windows,
    /// state functions) a time to live: a key's state untouched for `ttl` is removed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use rill_engine::state::StateTtl;
    /// use rill_engine::Job;
    /// # use rill_connectors::MemorySource;
    /// let job = Job::new("ttl");
    /// let keyed = job
    ///     .source(MemorySource::new(vec![("a".to_string(), 1)]))
    ///     .key_by(|(k, _): &(String, i32)| k.clone())
    ///     .state_ttl(StateTtl::processing_time(Duration::from_secs(3600)));
    /// assert_eq!(keyed.ttl().map(|t| t.ttl()), Some(Duration::from_secs(3600)));
    /// ```
    pub fn state_ttl(mut self, ttl: crate::state::StateTtl) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The time to live set with [`state_ttl`](Self::state_ttl), for operators to apply.
    pub fn ttl(&self) -> Option<crate::state::StateTtl> {
        self.ttl
    }

    /// Forgets the partitioning guarantee: a plain stream of `(key, value)` pairs.
    pub fn into_stream(self) -> Stream<B> {
        self.stream
    }
}

impl<B: FlowBuilder> Stream<B> {
    pub(crate) fn from_parts(graph: Rc<RefCell<Graph>>, builder: B, node: usize) -> Self {
        Self {
            graph,
            builder,
            node,
        }
    }

    /// Renames the last node of the stream (as shown by metrics and errors).
    ///
    /// ```
    /// use rill_engine::{Config, Job, Operator, Emit};
    /// # use rill_connectors::{MemorySource, CollectSink};
    /// # #[derive(Clone)] struct Double;
    /// # impl Operator<u32> for Double { type Out = u32;
    /// #   fn on_record<E: Emit<u32>>(&mut self, x: u32, out: &mut E) { out.emit(2 * x) } }
    /// let job = Job::new("rename");
    /// let sink = CollectSink::default();
    /// job.source(MemorySource::new(vec![1u32, 2, 3]))
    ///     .then("map", Double)
    ///     .name("double")
    ///     .sink(sink.clone());
    /// let metrics = job.run(Config::default().with_workers(1))?.await_termination()?;
    /// assert_eq!(metrics.get("double").unwrap().records_out, 3);
    /// # Ok::<(), rill_engine::JobError>(())
    /// ```
    pub fn name(self, name: &str) -> Self {
        self.graph.borrow_mut().rename(self.node, name);
        self
    }

    /// Appends an operator, fused into the same chain (no queue, no thread hop).
    pub fn then<O>(self, name: &str, op: O) -> Stream<ThenBuilder<B, O>>
    where
        O: Operator<B::Out> + Clone + Send + Sync + 'static,
    {
        let node = self.graph.borrow_mut().add_node(name, NodeKind::Operator);
        Stream {
            graph: self.graph,
            builder: ThenBuilder {
                upstream: self.builder,
                op,
                node,
            },
            node,
        }
    }

    /// Merges another stream of the same record type into this one. Each worker interleaves
    /// the two inputs as records arrive; there is no ordering between them.
    ///
    /// # Panics
    ///
    /// If `other` belongs to another [`Job`](crate::Job).
    pub fn union<B2>(self, other: Stream<B2>) -> Stream<UnionBuilder<B, B2>>
    where
        B2: FlowBuilder<Out = B::Out>,
    {
        assert!(
            Rc::ptr_eq(&self.graph, &other.graph),
            "union of streams from two different jobs"
        );
        let node = self.node.max(other.node);
        Stream {
            graph: self.graph,
            builder: UnionBuilder {
                a: self.builder,
                b: other.builder,
            },
            node,
        }
    }

    /// Sends every record to a worker chosen by `router`, through the exchange's ring mesh.
    pub fn exchange<R>(self, name: &str, router: R) -> Stream<ExchangeInBuilder<R::Msg>>
    where
        R: Router<B::Out>,
        B::Out: 'static,
    {
        let mesh = Arc::new(Mesh::<R::Msg>::new());
        let node = {
            let mut graph = self.graph.borrow_mut();
            let node = graph.add_node(name, NodeKind::Exchange);
            graph.edges.push(mesh.clone());
            let upstream = self.builder;
            let sender_mesh = mesh.clone();
            graph.tasks.push(Box::new(move |ctx: &BuildCtx| {
                let flow = upstream.build(ctx)?;
                let worker = ctx.worker.worker;
                let producers = sender_mesh
                    .take_senders(worker)
                    .ok_or_else(|| JobError::Invalid("exchange rings were not prepared".into()))?;
                Ok(Box::new(ExchangeTask::new(
                    ctx,
                    node,
                    flow,
                    router.clone(),
                    producers,
                )))
            }));
            node
        };
        Stream {
            graph: self.graph,
            builder: ExchangeInBuilder { mesh, node },
            node,
        }
    }

    /// Partitions the stream by key: each record goes to the worker owning its key's key
    /// group, paired with its key.
    ///
    /// ```
    /// use rill_engine::{Config, Job};
    /// use rill_connectors::{MemorySource, CollectSink};
    ///
    /// let job = Job::new("by-parity");
    /// let out = CollectSink::default();
    /// job.source(MemorySource::new((0u32..10).collect()))
    ///     .key_by(|x: &u32| x % 2)
    ///     .into_stream()
    ///     .sink(out.clone());
    /// job.run(Config::default().with_workers(2))?.await_termination()?;
    /// let mut pairs = out.take();
    /// pairs.sort();
    /// assert_eq!(pairs[..3], [(0, 0), (0, 2), (0, 4)]);
    /// # Ok::<(), rill_engine::JobError>(())
    /// ```
    pub fn key_by<K, F>(self, key_fn: F) -> KeyedStream<ExchangeInBuilder<(K, B::Out)>>
    where
        F: Fn(&B::Out) -> K + Clone + Send + Sync + 'static,
        K: EncodeKey + Send + 'static,
        B::Out: Send + 'static,
    {
        KeyedStream {
            ttl: None,
            stream: self.exchange("key_by", KeyRouter::new(key_fn)),
        }
    }

    /// Spreads records evenly over all workers (round robin), for example after a source
    /// whose input is skewed across workers.
    pub fn rebalance(self) -> Stream<ExchangeInBuilder<B::Out>>
    where
        B::Out: Send + 'static,
    {
        self.exchange("rebalance", RoundRobin::default())
    }

    /// Splits the stream in two on each worker: `route` sends every record to the first
    /// stream, the second, or both. The engine's one mechanism for side outputs (late
    /// records, rejects) and for feeding two sinks from one stream: each branch goes on as a
    /// stream of its own. Watermarks, barriers and the end reach both branches; a branch that
    /// cannot keep up back-pressures the shared upstream. The branches' metrics nodes are
    /// `{name}:first` and `{name}:second`.
    ///
    /// ```
    /// use rill_engine::{Branch, Config, Job};
    /// use rill_connectors::{MemorySource, CollectSink};
    ///
    /// let job = Job::new("split");
    /// let (small, big) = (CollectSink::default(), CollectSink::default());
    /// let (first, second) = job
    ///     .source(MemorySource::new((0u32..10).collect()))
    ///     .split("by-size", |x| if x < 7 { Branch::First(x) } else { Branch::Second(x) });
    /// first.sink(small.clone());
    /// second.sink(big.clone());
    /// job.run(Config::default().with_workers(2))?.await_termination()?;
    /// let (mut small, mut big) = (small.take(), big.take());
    /// small.sort();
    /// big.sort();
    /// assert_eq!((small.len(), big), (7, vec![7, 8, 9]));
    /// # Ok::<(), rill_engine::JobError>(())
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn split<A, C, F>(
        self,
        name: &str,
        route: F,
    ) -> (Stream<BranchBuilder<A>>, Stream<BranchBuilder<C>>)
    where
        F: Fn(B::Out) -> Branch<A, C> + Clone + Send + Sync + 'static,
        A: Send + 'static,
        C: Send + 'static,
        B::Out: 'static,
    {
        let (nodes, first, second) = {
            let mut graph = self.graph.borrow_mut();
            let nodes = [
                graph.add_node(&format!("{name}:first"), NodeKind::Exchange),
                graph.add_node(&format!("{name}:second"), NodeKind::Exchange),
            ];
            let first = Arc::new(LocalRings::new(graph.nodes[nodes[0]].0.clone()));
            let second = Arc::new(LocalRings::new(graph.nodes[nodes[1]].0.clone()));
            graph.edges.push(first.clone());
            graph.edges.push(second.clone());
            let upstream = self.builder;
            let (to_first, to_second) = (first.clone(), second.clone());
            graph.tasks.push(Box::new(move |ctx: &BuildCtx| {
                let flow = upstream.build(ctx)?;
                let worker = ctx.worker.worker;
                let missing = || JobError::Invalid("split rings were not prepared".into());
                let a = to_first.take_sender(worker).ok_or_else(missing)?;
                let b = to_second.take_sender(worker).ok_or_else(missing)?;
                Ok(Box::new(SplitTask::new(
                    ctx,
                    nodes,
                    flow,
                    route.clone(),
                    a,
                    b,
                )))
            }));
            (nodes, first, second)
        };
        (
            Stream {
                graph: self.graph.clone(),
                builder: BranchBuilder {
                    rings: first,
                    node: nodes[0],
                },
                node: nodes[0],
            },
            Stream {
                graph: self.graph,
                builder: BranchBuilder {
                    rings: second,
                    node: nodes[1],
                },
                node: nodes[1],
            },
        )
    }

    /// Sends each record on in this stream (`First`), to a side stream (`Second`), or both,
    /// as `route` says: late records, rejects. The main stream stays in the same fused chain
    /// (no ring hop, no extra task); the side stream leaves through a ring on the same worker.
    /// Watermarks, barriers and the end reach both. The side stream's metrics node is `name`.
    ///
    /// ```
    /// use rill_engine::{Branch, Config, Job};
    /// use rill_connectors::{MemorySource, CollectSink};
    ///
    /// let job = Job::new("side-output");
    /// let (good, rejects) = (CollectSink::default(), CollectSink::default());
    /// let (main, side) = job
    ///     .source(MemorySource::new(vec![1i32, -2, 3]))
    ///     .side_output("negative", |x| if x >= 0 { Branch::First(x) } else { Branch::Second(x) });
    /// main.sink(good.clone());
    /// side.sink(rejects.clone());
    /// job.run(Config::default().with_workers(1))?.await_termination()?;
    /// assert_eq!((good.take(), rejects.take()), (vec![1, 3], vec![-2]));
    /// # Ok::<(), rill_engine::JobError>(())
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn side_output<A, C, F>(
        self,
        name: &str,
        route: F,
    ) -> (Stream<SideOutputBuilder<B, F, C>>, Stream<BranchBuilder<C>>)
    where
        F: Fn(B::Out) -> Branch<A, C> + Clone + Send + Sync + 'static,
        A: 'static,
        C: Send + 'static,
    {
        let (node, rings) = {
            let mut graph = self.graph.borrow_mut();
            let node = graph.add_node(name, NodeKind::Exchange);
            let rings = Arc::new(LocalRings::new(graph.nodes[node].0.clone()));
            graph.edges.push(rings.clone());
            (node, rings)
        };
        (
            Stream {
                graph: self.graph.clone(),
                builder: SideOutputBuilder {
                    upstream: self.builder,
                    route,
                    rings: rings.clone(),
                    node,
                },
                node: self.node,
            },
            Stream {
                graph: self.graph,
                builder: BranchBuilder { rings, node },
                node,
            },
        )
    }

    /// Feeds the same records to two streams (each gets a clone): for example one stream
    /// into two sinks. A [`split`](Self::split) that sends every record both ways.
    #[allow(clippy::type_complexity)]
    pub fn fork(self, name: &str) -> (Stream<BranchBuilder<B::Out>>, Stream<BranchBuilder<B::Out>>)
    where
        B::Out: Clone + Send + 'static,
    {
        self.split(name, |x: B::Out| Branch::Both(x.clone(), x))
    }

    /// Ends the stream in a sink. Every worker writes its records to its own sink instance.
    pub fn sink<S>(self, sink: S)
    where
        S: Sink<B::Out>,
        B::Out: 'static,
    {
        let mut graph = self.graph.borrow_mut();
        let node = graph.add_node(sink.name(), NodeKind::Sink);
        if let Some(committer) = sink.committer() {
            let name = graph.nodes[node].0.clone();
            graph.committers.push((name, committer));
        }
        let upstream = self.builder;
        graph.tasks.push(Box::new(move |ctx: &BuildCtx| {
            let flow = upstream.build(ctx)?;
            let name = ctx.node_name(node);
            let instance = sink.create(&ctx.worker).map_err(|source| JobError::Sink {
                sink: name.clone(),
                worker: ctx.worker.worker,
                source,
            })?;
            Ok(Box::new(SinkTask::new(ctx, node, flow, instance)))
        }));
    }
}

/// Builds a source's per-worker flow.
#[derive(Debug)]
pub struct SourceBuilder<S> {
    pub(crate) factory: S,
    pub(crate) node: usize,
}

impl<S: Source> FlowBuilder for SourceBuilder<S> {
    type Out = <S::Reader as crate::dataflow::source::SourceReader>::Out;
    type Flow = SourceFlow<S::Reader>;

    fn build(&self, ctx: &BuildCtx) -> Result<Self::Flow, JobError> {
        let name = ctx.node_name(self.node);
        let source = self
            .factory
            .create(&ctx.worker)
            .map_err(|source| JobError::Source {
                source_name: name.clone(),
                worker: ctx.worker.worker,
                source,
            })?;
        let mut source = source;
        if let Some(state) = ctx.restored_state(self.node, &name) {
            crate::dataflow::source::SourceReader::restore(&mut source, &state).map_err(|e| {
                JobError::Restore(format!(
                    "source `{name}` on worker {}: {}",
                    ctx.worker.worker,
                    ErrorChain(&*e)
                ))
            })?;
        }
        if let Some(plan) = ctx.replayed_plan(self.node, &name) {
            crate::dataflow::source::SourceReader::replay_batch(&mut source, &plan).map_err(
                |e| {
                    JobError::Restore(format!(
                        "source `{name}` on worker {}, replaying the interrupted batch: {}",
                        ctx.worker.worker,
                        ErrorChain(&*e)
                    ))
                },
            )?;
        }
        Ok(SourceFlow::new(
            source,
            self.node,
            name,
            ctx.worker.worker,
            ctx.stop.clone(),
            ctx.counters(self.node),
            ctx.epoch_control(),
            ctx.micro_batch,
        ))
    }
}

/// Builds a flow followed by one operator.
#[derive(Debug)]
pub struct ThenBuilder<B, O> {
    upstream: B,
    op: O,
    node: usize,
}

impl<B, O> FlowBuilder for ThenBuilder<B, O>
where
    B: FlowBuilder,
    O: Operator<B::Out> + Clone + Send + Sync + 'static,
{
    type Out = O::Out;
    type Flow = Then<B::Flow, O>;

    fn build(&self, ctx: &BuildCtx) -> Result<Self::Flow, JobError> {
        let name = ctx.node_name(self.node);
        let mut op = self.op.clone();
        op.on_open(ctx.micro_batch);
        if let Some(state) = ctx.restored_state(self.node, &name) {
            op.restore(&state).map_err(|e| {
                JobError::Restore(format!(
                    "operator on worker {}: {}",
                    ctx.worker.worker,
                    ErrorChain(&e)
                ))
            })?;
        }
        Ok(Then::new(
            self.upstream.build(ctx)?,
            op,
            self.node,
            name,
            ctx.counters(self.node),
        )
        .isolating_panics(ctx.dead_letters().is_some())
        .with_epochs(ctx.epochs.clone())
        .in_micro_batch(ctx.micro_batch))
    }
}

/// Builds the union of two flows.
#[derive(Debug)]
pub struct UnionBuilder<A, B> {
    a: A,
    b: B,
}

impl<A, B> FlowBuilder for UnionBuilder<A, B>
where
    A: FlowBuilder,
    B: FlowBuilder<Out = A::Out>,
{
    type Out = A::Out;
    type Flow = Union<A::Flow, B::Flow>;

    fn build(&self, ctx: &BuildCtx) -> Result<Self::Flow, JobError> {
        Ok(Union::new(self.a.build(ctx)?, self.b.build(ctx)?))
    }
}

/// Builds the receiving side of an exchange.
pub struct ExchangeInBuilder<M> {
    mesh: Arc<Mesh<M>>,
    node: usize,
}

impl<M> std::fmt::Debug for ExchangeInBuilder<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeInBuilder")
            .field("node", &self.node)
            .finish()
    }
}

impl<M: Send + 'static> FlowBuilder for ExchangeInBuilder<M> {
    type Out = M;
    type Flow = ExchangeIn<M>;

    fn build(&self, ctx: &BuildCtx) -> Result<Self::Flow, JobError> {
        let consumers = self
            .mesh
            .take_receivers(ctx.worker.worker)
            .ok_or_else(|| JobError::Invalid("exchange rings were not prepared".into()))?;
        Ok(ExchangeIn::new(consumers, ctx.counters(self.node)))
    }
}

/// Builds one branch of a [`split`](Stream::split): a flow that starts at the ring its
/// worker's split task fills.
pub struct BranchBuilder<M> {
    rings: Arc<LocalRings<M>>,
    node: usize,
}

impl<M> std::fmt::Debug for BranchBuilder<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BranchBuilder")
            .field("node", &self.node)
            .finish()
    }
}

impl<M> Drop for BranchBuilder<M> {
    fn drop(&mut self) {
        // Built into a task, a branch lives as long as the job's graph; dropped before the job
        // runs, it was left without a downstream.
        self.rings.drop_branch();
    }
}

impl<M: Send + 'static> FlowBuilder for BranchBuilder<M> {
    type Out = M;
    type Flow = ExchangeIn<M>;

    fn build(&self, ctx: &BuildCtx) -> Result<Self::Flow, JobError> {
        let consumer = self
            .rings
            .take_receiver(ctx.worker.worker)
            .ok_or_else(|| JobError::Invalid("split rings were not prepared".into()))?;
        Ok(ExchangeIn::new(vec![consumer], ctx.counters(self.node)))
    }
}

/// Builds the main path of a [`side_output`](Stream::side_output): the upstream flow with its
/// side records routed into the side ring.
pub struct SideOutputBuilder<B, F, C> {
    upstream: B,
    route: F,
    rings: Arc<LocalRings<C>>,
    node: usize,
}

impl<B, F, C> std::fmt::Debug for SideOutputBuilder<B, F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SideOutputBuilder")
            .field("node", &self.node)
            .finish()
    }
}

impl<B, F, A, C> FlowBuilder for SideOutputBuilder<B, F, C>
where
    B: FlowBuilder,
    F: Fn(B::Out) -> Branch<A, C> + Clone + Send + Sync + 'static,
    A: 'static,
    C: Send + 'static,
{
    type Out = A;
    type Flow = SideOutput<B::Flow, F, C>;

    fn build(&self, ctx: &BuildCtx) -> Result<Self::Flow, JobError> {
        let producer = self
            .rings
            .take_sender(ctx.worker.worker)
            .ok_or_else(|| JobError::Invalid("side output rings were not prepared".into()))?;
        Ok(SideOutput::new(
            self.upstream.build(ctx)?,
            self.route.clone(),
            Outbox::local(producer, ctx.worker.signal.clone()),
            ctx.counters(self.node),
        ))
    }
}
