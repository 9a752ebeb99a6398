//! Splits: one stream feeding two downstreams on the same worker (side outputs, fan-out).
//!
//! The task that ends the upstream chain routes each record to the first branch, the second,
//! or both, through one SPSC ring per branch on its own worker; each branch is a flow of its
//! own that starts at that ring, so branches can end in different sinks, exchanges or further
//! splits. Watermarks, idleness, barriers and the end go to both branches, in order with the
//! records. A full branch ring parks records in its overflow queue and the task stops pulling
//! input, exactly as an exchange does, so a slow branch back-pressures the shared upstream
//! instead of growing a queue.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rtrb::{Consumer, Producer, RingBuffer};

use crate::checkpoint::epoch::{BarrierReport, TaskEpochs};
use crate::dataflow::operator::Emit;
use crate::error::JobError;
use crate::failure::{Failure, PanickedOnRecord};
use crate::runtime::build::BuildCtx;
use crate::runtime::dead_letter::FailureHandler;
use crate::runtime::exchange::{Outbox, PrepareEdge};
use crate::runtime::flow::{Flow, Progress};
use crate::runtime::message::{EventTime, Message};
use crate::runtime::metrics::NodeCounters;
use crate::runtime::task::{Task, TaskPoll};
use crate::sync::Lock;

/// Where a split sends one record: to the first branch, the second, or (as two values) both.
///
/// ```
/// use rill_engine::Branch;
/// // Even numbers to the first branch, odd ones to the second, multiples of 10 to both.
/// let route = |x: u32| match x {
///     x if x % 10 == 0 => Branch::Both(x, x),
///     x if x % 2 == 0 => Branch::First(x),
///     x => Branch::Second(x),
/// };
/// assert_eq!(route(3), Branch::Second(3));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Branch<A, B> {
    /// To the first branch only.
    First(A),
    /// To the second branch only.
    Second(B),
    /// To both branches.
    Both(A, B),
}

/// Both ends of one worker's ring, each until the worker takes it.
type RingEnds<M> = (Option<Producer<Message<M>>>, Option<Consumer<Message<M>>>);

/// One ring per worker from a split's task to one of its branches, created when the job
/// starts and taken apart by the workers.
pub(crate) struct LocalRings<M> {
    parts: Mutex<Vec<RingEnds<M>>>,
    /// The branch's metrics name, and whether its stream was dropped without a downstream.
    name: Arc<str>,
    dropped: AtomicBool,
}

impl<M> LocalRings<M> {
    pub(crate) fn new(name: Arc<str>) -> Self {
        Self {
            parts: Mutex::new(Vec::new()),
            name,
            dropped: AtomicBool::new(false),
        }
    }

    /// The branch's stream was dropped unused.
    pub(crate) fn drop_branch(&self) {
        self.dropped.store(true, Ordering::Relaxed);
    }

    pub(crate) fn take_sender(&self, worker: usize) -> Option<Producer<Message<M>>> {
        self.parts.locked().get_mut(worker)?.0.take()
    }

    pub(crate) fn take_receiver(&self, worker: usize) -> Option<Consumer<Message<M>>> {
        self.parts.locked().get_mut(worker)?.1.take()
    }
}

impl<M: Send> PrepareEdge for LocalRings<M> {
    fn prepare(&self, workers: usize, capacity: usize) {
        *self.parts.locked() = (0..workers)
            .map(|_| {
                let (p, c) = RingBuffer::new(capacity);
                (Some(p), Some(c))
            })
            .collect();
    }

    fn dangling(&self) -> Option<String> {
        self.dropped.load(Ordering::Relaxed).then(|| {
            format!(
                "the stream of split branch `{}` goes nowhere: give it a sink (a `DiscardSink` \
                 if its records are to be counted and dropped)",
                self.name
            )
        })
    }
}

/// The [`Emit`] the upstream chain of a split pushes into.
struct Splitter<'a, F, A, B> {
    route: &'a F,
    first: &'a mut Outbox<A>,
    second: &'a mut Outbox<B>,
    failures: &'a mut FailureHandler,
    name: &'a Arc<str>,
    isolate_panics: bool,
}

impl<T, A, B, F> Emit<T> for Splitter<'_, F, A, B>
where
    F: Fn(T) -> Branch<A, B>,
{
    #[inline]
    fn emit(&mut self, item: T) {
        let routed = if self.isolate_panics {
            let route = self.route;
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| route(item))) {
                Ok(routed) => routed,
                Err(payload) => {
                    let mut failure =
                        Failure::new(PanickedOnRecord::from_payload(payload.as_ref()));
                    failure.tag(self.name);
                    self.failures.handle(failure);
                    return;
                }
            }
        } else {
            (self.route)(item)
        };
        match routed {
            Branch::First(a) => self.first.send_record(0, a),
            Branch::Second(b) => self.second.send_record(0, b),
            Branch::Both(a, b) => {
                self.first.send_record(0, a);
                self.second.send_record(0, b);
            }
        }
    }
    fn fail(&mut self, failure: Failure) {
        self.failures.handle(failure);
    }
    #[inline]
    fn should_yield(&self) -> bool {
        self.first.backlog() > 0 || self.second.backlog() > 0 || self.failures.stops()
    }
    fn watermark(&mut self, watermark: EventTime) {
        self.first.send_watermark(watermark);
        self.second.send_watermark(watermark);
    }
    fn idle(&mut self) {
        self.first.send_idle();
        self.second.send_idle();
    }
}

/// The task that ends a split's upstream chain.
pub(crate) struct SplitTask<Fl, F, T, A, B> {
    name: Arc<str>,
    worker: usize,
    flow: Fl,
    route: F,
    first: Outbox<A>,
    second: Outbox<B>,
    failures: FailureHandler,
    isolate_panics: bool,
    counters: [NodeCounters; 2],
    flow_done: bool,
    epochs: Option<TaskEpochs>,
    _in: PhantomData<fn(T)>,
}

impl<Fl, F, T, A, B> SplitTask<Fl, F, T, A, B> {
    /// The split task on the worker `ctx` describes; `nodes` are the two branches' nodes.
    pub(crate) fn new(
        ctx: &BuildCtx,
        nodes: [usize; 2],
        flow: Fl,
        route: F,
        first: Producer<Message<A>>,
        second: Producer<Message<B>>,
    ) -> Self {
        let dead_letters = ctx.dead_letters();
        Self {
            name: ctx.node_name(nodes[0]),
            worker: ctx.worker.worker,
            flow,
            route,
            first: Outbox::local(first, ctx.worker.signal.clone()),
            second: Outbox::local(second, ctx.worker.signal.clone()),
            isolate_panics: dead_letters.is_some(),
            failures: FailureHandler::new(dead_letters),
            counters: [ctx.counters(nodes[0]), ctx.counters(nodes[1])],
            flow_done: false,
            epochs: ctx.task_epochs(),
            _in: PhantomData,
        }
    }

    fn backlog(&self) -> usize {
        self.first.backlog() + self.second.backlog()
    }
}

impl<Fl, F, T, A, B> Task for SplitTask<Fl, F, T, A, B>
where
    Fl: Flow<Out = T>,
    F: Fn(T) -> Branch<A, B>,
{
    fn name(&self) -> &Arc<str> {
        &self.name
    }

    fn run(&mut self, budget: usize) -> Result<TaskPoll, JobError> {
        let moved = self.first.drain() | self.second.drain();
        if self.flow_done || self.backlog() > 0 {
            self.first.notify();
            self.second.notify();
            return Ok(match (self.backlog(), moved) {
                (0, _) if self.flow_done => TaskPoll::Done,
                (0, _) | (_, true) => TaskPoll::Busy,
                _ => TaskPoll::Backpressured,
            });
        }
        let mut out = Splitter {
            route: &self.route,
            first: &mut self.first,
            second: &mut self.second,
            failures: &mut self.failures,
            name: &self.name,
            isolate_panics: self.isolate_panics,
        };
        let progress = self.flow.poll(&mut out, budget)?;
        self.failures.finish(self.worker)?;
        match progress {
            Progress::Done => {
                self.first.broadcast(|| Message::End);
                self.second.broadcast(|| Message::End);
                self.flow_done = true;
            }
            Progress::Barrier(epoch) => {
                self.first.broadcast(|| Message::Barrier(epoch));
                self.second.broadcast(|| Message::Barrier(epoch));
                self.failures.on_barrier(epoch, self.worker)?;
                let mut report = BarrierReport::default();
                self.flow.take_barrier_report(&mut report);
                if let Some(epochs) = &self.epochs {
                    epochs.ack(epoch, report.snapshots, report.alignment);
                }
            }
            _ => {}
        }
        self.first.notify();
        self.second.notify();
        self.counters[0].publish_in(self.first.sent());
        self.counters[1].publish_in(self.second.sent());
        let backlog = self.backlog();
        Ok(match progress {
            Progress::Done if backlog == 0 => TaskPoll::Done,
            Progress::Busy | Progress::Done | Progress::Barrier(_) => TaskPoll::Busy,
            Progress::Idle { deadline } if backlog == 0 => TaskPoll::Idle { deadline },
            Progress::Idle { .. } => TaskPoll::Backpressured,
        })
    }
}
