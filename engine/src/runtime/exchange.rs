//! Exchanges: records crossing workers through a full mesh of SPSC rings.
//!
//! For an exchange between P workers there are P x P rings, one per (sender, receiver) pair,
//! so no ring ever has two writers and a push is a plain store plus a release of the tail:
//! no lock, no CAS. A pushed record is visible to the receiver at once; there is no batching
//! timer on the continuous path (Flink's 100 ms buffer timeout is the thing being avoided).
//!
//! Back-pressure never blocks a worker: a record for a full ring goes into that ring's overflow
//! queue and the sending task stops pulling input until the overflow has drained, while the
//! worker keeps running its other tasks (among them the receivers of its own input rings).
//! Because the job graph is acyclic and sinks never wait, some task can always move, so the job
//! cannot deadlock, even with rings of capacity 1.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use rtrb::{Consumer, Producer, PushError, RingBuffer};

use crate::checkpoint::epoch::{BarrierReport, TaskEpochs};
use crate::dataflow::operator::Emit;
use crate::error::JobError;
use crate::failure::{Failure, PanickedOnRecord};
use crate::runtime::build::BuildCtx;
use crate::runtime::dead_letter::FailureHandler;
use crate::runtime::flow::{Flow, Progress};
use crate::runtime::message::{Epoch, EventTime, Message};
use crate::runtime::metrics::NodeCounters;
use crate::runtime::signal::WorkerSignal;
use crate::runtime::task::{Task, TaskPoll};
use crate::runtime::watermark::InputWatermarks;
use crate::state::{worker_for_key, EncodeKey};
use crate::sync::Lock;

/// Decides which worker each record goes to, and what travels in the ring.
pub trait Router<T>: Clone + Send + Sync + 'static {
    /// The message carried through the ring.
    type Msg: Send + 'static;

    /// Returns the receiving worker (`0..workers`) and the message for it.
    fn route(&mut self, item: T, workers: usize) -> (usize, Self::Msg);
}

/// Routes by key: the record goes to the worker owning the key's key group, and travels with
/// its key so the receiver need not compute it again.
pub struct KeyRouter<F, K> {
    key_fn: F,
    _key: PhantomData<fn() -> K>,
}

impl<F, K> KeyRouter<F, K> {
    /// A router that extracts keys with `key_fn`.
    pub fn new(key_fn: F) -> Self {
        Self {
            key_fn,
            _key: PhantomData,
        }
    }
}

impl<F: Clone, K> Clone for KeyRouter<F, K> {
    fn clone(&self) -> Self {
        Self::new(self.key_fn.clone())
    }
}

impl<F, K> std::fmt::Debug for KeyRouter<F, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyRouter")
    }
}

impl<T, K, F> Router<T> for KeyRouter<F, K>
where
    F: Fn(&T) -> K + Clone + Send + Sync + 'static,
    K: EncodeKey + Send + 'static,
    T: Send + 'static,
{
    type Msg = (K, T);

    #[inline]
    fn route(&mut self, item: T, workers: usize) -> (usize, (K, T)) {
        let key = (self.key_fn)(&item);
        (worker_for_key(&key, workers), (key, item))
    }
}

/// Spreads records evenly over the workers, round robin from each sender.
#[derive(Debug, Clone, Default)]
pub struct RoundRobin {
    next: usize,
}

impl<T: Send + 'static> Router<T> for RoundRobin {
    type Msg = T;

    #[inline]
    fn route(&mut self, item: T, workers: usize) -> (usize, T) {
        let dest = self.next;
        self.next = if dest + 1 >= workers { 0 } else { dest + 1 };
        (dest, item)
    }
}

/// The rings of one exchange edge, created when the job starts and then taken apart by the
/// workers (each takes its sending and receiving ends once, at start-up).
pub(crate) struct Mesh<M> {
    parts: Mutex<MeshParts<M>>,
}

struct MeshParts<M> {
    senders: Vec<Option<Vec<Producer<Message<M>>>>>,
    receivers: Vec<Option<Vec<Consumer<Message<M>>>>>,
}

/// Type-erased start-up hook of an edge: build its rings for this run.
pub(crate) trait PrepareEdge: Send + Sync {
    fn prepare(&self, workers: usize, capacity: usize);

    /// Why the edge cannot run, if its receiving side was dropped without going anywhere
    /// (its records would pile up and stall the job).
    fn dangling(&self) -> Option<String> {
        None
    }
}

impl<M> Mesh<M> {
    pub(crate) fn new() -> Self {
        Self {
            parts: Mutex::new(MeshParts {
                senders: Vec::new(),
                receivers: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MeshParts<M>> {
        self.parts.locked()
    }

    /// The producers worker `worker` sends through, indexed by receiving worker.
    pub(crate) fn take_senders(&self, worker: usize) -> Option<Vec<Producer<Message<M>>>> {
        self.lock().senders.get_mut(worker)?.take()
    }

    /// The consumers worker `worker` receives from, indexed by sending worker.
    pub(crate) fn take_receivers(&self, worker: usize) -> Option<Vec<Consumer<Message<M>>>> {
        self.lock().receivers.get_mut(worker)?.take()
    }
}

impl<M: Send> PrepareEdge for Mesh<M> {
    fn prepare(&self, workers: usize, capacity: usize) {
        let mut senders: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
        let mut receivers: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
        for sender in senders.iter_mut() {
            for receiver in receivers.iter_mut() {
                let (p, c) = RingBuffer::new(capacity);
                sender.push(p);
                receiver.push(c);
            }
        }
        let mut parts = self.lock();
        parts.senders = senders.into_iter().map(Some).collect();
        parts.receivers = receivers.into_iter().map(Some).collect();
    }
}

/// The sending side's state: rings, overflow queues, and whom to wake.
pub(crate) struct Outbox<M> {
    worker: usize,
    producers: Vec<Producer<Message<M>>>,
    overflow: Vec<VecDeque<Message<M>>>,
    backlog: usize,
    touched: Vec<bool>,
    signals: Arc<[Arc<WorkerSignal>]>,
    sent: u64,
    failures: FailureHandler,
    /// The last watermark sent to every ring.
    watermark: EventTime,
}

impl<M> Outbox<M> {
    /// The sending side of one ring to a task of the same worker (a split's branch). The
    /// sender notifies its own worker's `signal`: a no-op while it runs, but in the last
    /// round before parking it keeps the worker from parking on a message it just sent.
    pub(crate) fn local(producer: Producer<Message<M>>, signal: Arc<WorkerSignal>) -> Self {
        Self {
            worker: usize::MAX,
            producers: vec![producer],
            overflow: vec![VecDeque::new()],
            backlog: 0,
            touched: vec![false],
            signals: Arc::from(vec![signal]),
            sent: 0,
            failures: FailureHandler::new(None),
            watermark: EventTime::MIN,
        }
    }

    /// Messages waiting for room in a ring.
    #[inline]
    pub(crate) fn backlog(&self) -> usize {
        self.backlog
    }

    /// Records sent so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent
    }

    /// Sends a record to `dest`.
    #[inline]
    pub(crate) fn send_record(&mut self, dest: usize, record: M) {
        self.sent += 1;
        self.send(dest, Message::Record(record));
    }

    /// Sends `msg` to every receiver (watermarks, idleness, barriers, the end).
    pub(crate) fn broadcast(&mut self, msg: impl Fn() -> Message<M>) {
        for dest in 0..self.producers.len() {
            self.send(dest, msg());
        }
    }

    /// Sends `watermark` to every receiver if it is above the last one sent.
    pub(crate) fn send_watermark(&mut self, watermark: EventTime) {
        if watermark > self.watermark {
            self.watermark = watermark;
            self.broadcast(|| Message::Watermark(watermark));
        }
    }

    /// Sends idleness to every receiver. Whoever reports idleness sends it once per quiet
    /// spell (the watermark assigner, a meeting point of inputs), so the outbox keeps no
    /// flag of its own, and records pay nothing for it.
    pub(crate) fn send_idle(&mut self) {
        self.broadcast(|| Message::Idle);
    }

    #[inline]
    fn send(&mut self, dest: usize, msg: Message<M>) {
        let msg = if self.overflow[dest].is_empty() {
            match self.producers[dest].push(msg) {
                Ok(()) => {
                    self.touched[dest] = true;
                    return;
                }
                Err(PushError::Full(msg)) => msg,
            }
        } else {
            msg
        };
        self.overflow[dest].push_back(msg);
        self.backlog += 1;
    }

    /// Moves overflowed messages into rings that have room; true if any moved.
    pub(crate) fn drain(&mut self) -> bool {
        if self.backlog == 0 {
            return false;
        }
        let mut moved = false;
        for dest in 0..self.producers.len() {
            while let Some(msg) = self.overflow[dest].pop_front() {
                match self.producers[dest].push(msg) {
                    Ok(()) => {
                        self.backlog -= 1;
                        self.touched[dest] = true;
                        moved = true;
                    }
                    Err(PushError::Full(msg)) => {
                        self.overflow[dest].push_front(msg);
                        break;
                    }
                }
            }
        }
        moved
    }

    /// Wakes the receivers that got messages since the last call.
    pub(crate) fn notify(&mut self) {
        for (dest, touched) in self.touched.iter_mut().enumerate() {
            if *touched {
                *touched = false;
                // A worker polling its own ring is running: no need to wake it.
                if dest != self.worker {
                    if let Some(signal) = self.signals.get(dest) {
                        signal.notify();
                    }
                }
            }
        }
    }
}

/// The [`Emit`] a sending flow pushes into.
struct Routed<'a, R, M> {
    router: &'a mut R,
    outbox: &'a mut Outbox<M>,
    workers: usize,
    /// The exchange's name, and whether a panic of the router's key function is this
    /// record's failure (with a dead-letter sink) rather than the end of the job.
    name: &'a Arc<str>,
    isolate_panics: bool,
}

impl<T, R: Router<T>> Emit<T> for Routed<'_, R, R::Msg> {
    #[inline]
    fn emit(&mut self, item: T) {
        let (dest, msg) = if self.isolate_panics {
            let (router, workers) = (&mut *self.router, self.workers);
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                router.route(item, workers)
            })) {
                Ok(routed) => routed,
                Err(payload) => {
                    let mut failure =
                        Failure::new(PanickedOnRecord::from_payload(payload.as_ref()));
                    failure.tag(self.name);
                    self.outbox.failures.handle(failure);
                    return;
                }
            }
        } else {
            self.router.route(item, self.workers)
        };
        self.outbox.send_record(dest, msg);
    }
    fn fail(&mut self, failure: Failure) {
        self.outbox.failures.handle(failure);
    }
    #[inline]
    fn should_yield(&self) -> bool {
        self.outbox.backlog > 0 || self.outbox.failures.stops()
    }
    fn watermark(&mut self, watermark: EventTime) {
        self.outbox.send_watermark(watermark);
    }
    fn idle(&mut self) {
        self.outbox.send_idle();
    }
}

/// A task that runs a flow and routes its output into an exchange.
pub(crate) struct ExchangeTask<F, R: Router<T>, T> {
    name: Arc<str>,
    isolate_panics: bool,
    flow: F,
    router: R,
    outbox: Outbox<R::Msg>,
    counters: NodeCounters,
    flow_done: bool,
    epochs: Option<TaskEpochs>,
    _in: PhantomData<fn(T)>,
}

impl<F, R: Router<T>, T> ExchangeTask<F, R, T> {
    /// The sending task of exchange node `node` on the worker `ctx` describes.
    pub(crate) fn new(
        ctx: &BuildCtx,
        node: usize,
        flow: F,
        router: R,
        producers: Vec<Producer<Message<R::Msg>>>,
    ) -> Self {
        let (name, worker, signals) = (ctx.node_name(node), ctx.worker.worker, ctx.signals.clone());
        let (counters, dead_letters) = (ctx.counters(node), ctx.dead_letters());
        let workers = producers.len();
        Self {
            isolate_panics: dead_letters.is_some(),
            name,
            flow,
            router,
            outbox: Outbox {
                worker,
                overflow: (0..workers).map(|_| VecDeque::new()).collect(),
                touched: vec![false; workers],
                producers,
                backlog: 0,
                signals,
                sent: 0,
                failures: FailureHandler::new(dead_letters),
                watermark: EventTime::MIN,
            },
            counters,
            flow_done: false,
            epochs: ctx.task_epochs(),
            _in: PhantomData,
        }
    }
}

impl<F, R, T> Task for ExchangeTask<F, R, T>
where
    F: Flow<Out = T>,
    R: Router<T>,
{
    fn name(&self) -> &Arc<str> {
        &self.name
    }

    fn run(&mut self, budget: usize) -> Result<TaskPoll, JobError> {
        let moved = self.outbox.drain();
        if self.flow_done || self.outbox.backlog > 0 {
            self.outbox.notify();
            return Ok(match (self.outbox.backlog, moved) {
                (0, _) if self.flow_done => TaskPoll::Done,
                (0, _) | (_, true) => TaskPoll::Busy,
                _ => TaskPoll::Backpressured,
            });
        }
        let workers = self.outbox.producers.len();
        let mut routed = Routed {
            router: &mut self.router,
            outbox: &mut self.outbox,
            workers,
            name: &self.name,
            isolate_panics: self.isolate_panics,
        };
        let progress = self.flow.poll(&mut routed, budget)?;
        self.outbox.failures.finish(self.outbox.worker)?;
        match progress {
            Progress::Done => {
                self.outbox.broadcast(|| Message::End);
                self.flow_done = true;
            }
            Progress::Barrier(epoch) => {
                // Forwarded at once, behind the records of its epoch (overflow keeps order).
                self.outbox.broadcast(|| Message::Barrier(epoch));
                // The epoch's dead letters are durable before the barrier is acknowledged.
                self.outbox.failures.on_barrier(epoch, self.outbox.worker)?;
                let mut report = BarrierReport::default();
                self.flow.take_barrier_report(&mut report);
                if let Some(epochs) = &self.epochs {
                    epochs.ack(epoch, report.snapshots, report.alignment);
                }
            }
            _ => {}
        }
        self.outbox.notify();
        self.counters.publish_in(self.outbox.sent);
        Ok(match progress {
            Progress::Done if self.outbox.backlog == 0 => TaskPoll::Done,
            Progress::Busy | Progress::Done | Progress::Barrier(_) => TaskPoll::Busy,
            Progress::Idle { deadline } if self.outbox.backlog == 0 => TaskPoll::Idle { deadline },
            Progress::Idle { .. } => TaskPoll::Backpressured,
        })
    }
}

/// One input of an exchange's receiving side: the consumer end of a ring.
///
/// Implemented for `rtrb`'s consumer; the model checks implement it over loom-visible queues
/// to drive the real barrier-alignment code.
pub trait Inbound<M> {
    /// Takes the next message, if one is there. Never blocks.
    fn pop(&mut self) -> Option<Message<M>>;
}

impl<M> Inbound<M> for Consumer<Message<M>> {
    #[inline]
    fn pop(&mut self) -> Option<Message<M>> {
        Consumer::pop(self).ok()
    }
}

/// The receiving side of an exchange on one worker: a flow over its P input rings.
///
/// Barriers are aligned: an input that has delivered `Barrier(n)` is held (not read) until
/// every open input has delivered it; then the flow reports the barrier and releases them all.
/// Records behind a barrier therefore never overtake records of the previous epoch from a
/// slower input.
pub struct ExchangeIn<M, C = Consumer<Message<M>>> {
    consumers: Vec<C>,
    ended: Vec<bool>,
    held: Vec<bool>,
    open: usize,
    n_held: usize,
    aligning: Option<Epoch>,
    held_since: Option<std::time::Instant>,
    alignment: std::time::Duration,
    next: usize,
    counters: NodeCounters,
    received: u64,
    watermarks: InputWatermarks,
    _msg: PhantomData<fn() -> M>,
}

impl<M, C> std::fmt::Debug for ExchangeIn<M, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeIn")
            .field("inputs", &self.consumers.len())
            .field("open", &self.open)
            .finish()
    }
}

impl<M, C: Inbound<M>> ExchangeIn<M, C> {
    /// The receiving side over `inputs`, one per sending worker.
    pub fn new(consumers: Vec<C>, counters: NodeCounters) -> Self {
        let n = consumers.len();
        Self {
            consumers,
            ended: vec![false; n],
            held: vec![false; n],
            open: n,
            n_held: 0,
            aligning: None,
            held_since: None,
            alignment: std::time::Duration::ZERO,
            next: 0,
            counters,
            received: 0,
            watermarks: InputWatermarks::new(n),
            _msg: PhantomData,
        }
    }
}

impl<M, C: Inbound<M>> Flow for ExchangeIn<M, C> {
    type Out = M;

    fn take_barrier_report(&mut self, report: &mut BarrierReport) {
        report.add_alignment(std::mem::take(&mut self.alignment));
    }

    #[inline]
    fn poll<E: Emit<M>>(&mut self, out: &mut E, budget: usize) -> Result<Progress, JobError> {
        if self.open == 0 {
            return Ok(Progress::Done);
        }
        let n = self.consumers.len();
        let mut taken = 0;
        let mut signals = 0;
        // Start at a different ring each poll so no sender is starved under a small budget.
        for i in 0..n {
            let idx = (self.next + i) % n;
            if self.ended[idx] || self.held[idx] {
                continue;
            }
            let consumer = &mut self.consumers[idx];
            while taken < budget && !out.should_yield() {
                match consumer.pop() {
                    Some(Message::Record(msg)) => {
                        taken += 1;
                        self.watermarks.on_record(idx);
                        out.emit(msg);
                    }
                    Some(Message::End) => {
                        self.ended[idx] = true;
                        self.open -= 1;
                        self.watermarks.on_end(idx).pass_on(out);
                        break;
                    }
                    Some(Message::Barrier(epoch)) => {
                        self.held[idx] = true;
                        self.n_held += 1;
                        self.aligning = Some(epoch);
                        if self.held_since.is_none() && self.n_held < self.open {
                            self.held_since = Some(std::time::Instant::now());
                        }
                        break;
                    }
                    Some(Message::Watermark(w)) => {
                        signals += 1;
                        self.watermarks.on_watermark(idx, w).pass_on(out);
                    }
                    Some(Message::Idle) => {
                        signals += 1;
                        self.watermarks.on_idle(idx).pass_on(out);
                    }
                    None => break,
                }
            }
        }
        self.next = (self.next + 1) % n;
        self.received += taken as u64;
        self.counters.publish_out(self.received);
        if let Some(epoch) = self.aligning {
            // Inputs that ended count as aligned: they will send no barrier.
            if self.n_held == self.open {
                self.aligning = None;
                self.n_held = 0;
                self.held.iter_mut().for_each(|h| *h = false);
                if let Some(t) = self.held_since.take() {
                    self.alignment = t.elapsed();
                }
                return Ok(Progress::Barrier(epoch));
            }
        }
        Ok(if self.open == 0 {
            Progress::Done
        } else if taken > 0 || signals > 0 {
            Progress::Busy
        } else {
            Progress::IDLE
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An outbox of `workers` rings of `capacity`, sending from worker 0.
    fn outbox(workers: usize, capacity: usize) -> (Outbox<u32>, Vec<Consumer<Message<u32>>>) {
        let (producers, consumers) = (0..workers)
            .map(|_| RingBuffer::new(capacity))
            .unzip::<_, _, Vec<_>, Vec<_>>();
        let signals: Arc<[Arc<WorkerSignal>]> = (0..workers)
            .map(|_| Arc::new(WorkerSignal::new()))
            .collect();
        let outbox = Outbox {
            worker: 0,
            producers,
            overflow: (0..workers).map(|_| VecDeque::new()).collect(),
            backlog: 0,
            touched: vec![false; workers],
            signals,
            sent: 0,
            failures: FailureHandler::new(None),
            watermark: EventTime::MIN,
        };
        (outbox, consumers)
    }

    fn pop_all(consumer: &mut Consumer<Message<u32>>) -> Vec<Message<u32>> {
        std::iter::from_fn(|| consumer.pop().ok()).collect()
    }

    #[test]
    fn overflow_keeps_the_order_of_records_and_barriers_per_ring() {
        let (mut out, mut rings) = outbox(2, 2);
        let sent: Vec<Message<u32>> = vec![
            Message::Record(1),
            Message::Record(2),
            Message::Record(3), // ring full: overflows
            Message::Barrier(1),
            Message::Record(4),
        ];
        for m in sent.clone() {
            out.send(0, m);
        }
        out.send(1, Message::Record(100));
        assert_eq!(out.backlog, 3, "three messages wait for ring 0");
        let mut received = pop_all(&mut rings[0]);
        assert_eq!(received, sent[..2]);
        // The ring has room again, but a new message must queue behind the overflow.
        out.send(0, Message::Record(5));
        assert!(out.drain(), "the overflow moves into the freed ring");
        received.extend(pop_all(&mut rings[0]));
        assert!(out.drain());
        received.extend(pop_all(&mut rings[0]));
        assert!(!out.drain(), "nothing left to move");
        assert_eq!(out.backlog, 0);
        let mut expected = sent;
        expected.push(Message::Record(5));
        assert_eq!(received, expected);
        // The other ring was never held up by ring 0's overflow.
        assert_eq!(pop_all(&mut rings[1]), [Message::Record(100)]);
    }

    #[test]
    fn a_full_ring_holds_only_its_own_messages() {
        let (mut out, mut rings) = outbox(3, 1);
        for i in 0..3 {
            for dest in 0..3 {
                out.send(dest, Message::Record(10 * dest as u32 + i));
            }
        }
        assert_eq!(out.backlog, 6);
        let mut got = vec![Vec::new(); 3];
        for _ in 0..3 {
            for (dest, ring) in rings.iter_mut().enumerate() {
                got[dest].extend(pop_all(ring));
            }
            out.drain();
        }
        assert_eq!(out.backlog, 0);
        for (dest, got) in got.iter().enumerate() {
            let d = 10 * dest as u32;
            let want: Vec<_> = (0..3).map(|i| Message::Record(d + i)).collect();
            assert_eq!(*got, want, "ring {dest}");
        }
    }
}
