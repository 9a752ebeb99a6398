//! Building, configuring, starting and waiting for a job.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::checkpoint::{CheckpointConfig, CheckpointStore};
use crate::coordinator::{self, CheckpointLog, CoordinatorSetup};
use crate::epoch::{CoordinatorEvent, EpochControl};
use crate::error::JobError;
use crate::graph::{BuildCtx, Graph};
use crate::idle::IdleStrategy;
use crate::metrics::{JobMetrics, MetricsRegistry, NodeKind};
use crate::mode::Mode;
use crate::signal::WorkerSignal;
use crate::sink::SinkFactory;
use crate::source::{SourceFactory, WorkerContext};
use crate::stream::{SourceBuilder, Stream};
use crate::worker::{self, WorkerEvent, WorkerSetup};

/// How a job runs: plain data with defaults; every latency-relevant knob is here.
///
/// ```
/// use rill_engine::{Config, IdleStrategy};
/// let config = Config::default().with_workers(2).with_idle(IdleStrategy::Spin);
/// assert_eq!(config.workers, 2);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Number of worker threads, each running the whole pipeline on its share of the input.
    /// Default: the number of available cores.
    pub workers: usize,
    /// Pin worker i to core i (mod the number of cores). Default: off.
    pub pin_workers: bool,
    /// Capacity, in messages, of each SPSC ring of an exchange. Default: 1024.
    pub ring_capacity: usize,
    /// What an idle worker does. Default: spin 50 us, yield 500 us, then park.
    pub idle: IdleStrategy,
    /// Records a task processes per poll before the worker moves to its next task: bounds how
    /// long one task can keep the others (and the rings they drain) waiting. Default: 256.
    pub batch_size: usize,
    /// Asynchronous barrier checkpoints, and recovery from them at start. Default: off.
    pub checkpoint: Option<CheckpointConfig>,
    /// Continuous (default) or micro-batch scheduling.
    pub mode: Mode,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            pin_workers: false,
            ring_capacity: 1024,
            idle: IdleStrategy::default(),
            batch_size: 256,
            checkpoint: None,
            mode: Mode::Continuous,
        }
    }
}

impl Config {
    /// Sets the number of workers.
    pub fn with_workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }
    /// Sets whether workers are pinned to cores.
    pub fn with_pinning(mut self, pin: bool) -> Self {
        self.pin_workers = pin;
        self
    }
    /// Sets the capacity of each exchange ring.
    pub fn with_ring_capacity(mut self, capacity: usize) -> Self {
        self.ring_capacity = capacity;
        self
    }
    /// Sets the idle strategy.
    pub fn with_idle(mut self, idle: IdleStrategy) -> Self {
        self.idle = idle;
        self
    }
    /// Sets the per-poll record budget.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }
    /// Sets the execution mode (continuous or micro-batch).
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }
    /// Turns on checkpoints (and recovery from the checkpoint directory at start).
    pub fn with_checkpoints(mut self, checkpoint: CheckpointConfig) -> Self {
        self.checkpoint = Some(checkpoint);
        self
    }
}

/// State shared by the handle and the workers of a running job.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Graceful stop: sources end, everything in flight drains, sinks close.
    pub(crate) stop: Arc<AtomicBool>,
    /// Immediate stop after a failure (or when the handle is dropped).
    pub(crate) abort: AtomicBool,
    pub(crate) signals: Arc<[Arc<WorkerSignal>]>,
    /// The checkpoint coordinator, which turns a stop into a final epoch.
    pub(crate) coordinator: Option<Sender<CoordinatorEvent>>,
}

impl Shared {
    fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(c) = &self.coordinator {
            let _ = c.send(CoordinatorEvent::Stop);
        }
        self.wake_all();
    }

    fn request_abort(&self) {
        self.abort.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    fn wake_all(&self) {
        for s in self.signals.iter() {
            s.notify();
        }
    }
}

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
    pub fn source<S: SourceFactory>(&self, factory: S) -> Stream<SourceBuilder<S>> {
        let node = self
            .graph
            .borrow_mut()
            .add_node(factory.name(), NodeKind::Source);
        Stream::from_parts(self.graph.clone(), SourceBuilder { factory, node }, node)
    }

    /// Sends records whose user function fails to `sink` instead of failing the job.
    ///
    /// Each failure becomes a [`DeadLetter`](crate::DeadLetter): the failing stage, the error,
    /// and, where the stage saw the raw record (the `decode` operator), its origin and
    /// original bytes. Without a dead-letter sink the first failure ends the job.
    pub fn dead_letter<S>(&self, sink: S)
    where
        S: SinkFactory<crate::DeadLetter>,
        S::Sink: Send + 'static,
    {
        let mut graph = self.graph.borrow_mut();
        let node = graph.add_node("dead_letter", NodeKind::Sink);
        graph.dead_letter = Some((Arc::new(sink), node));
    }

    /// Starts the job's workers and returns at once with a handle to it.
    pub fn run(self, config: Config) -> Result<JobHandle, JobError> {
        if config.workers == 0 {
            return Err(JobError::Invalid("workers must be at least 1".into()));
        }
        if config.ring_capacity == 0 {
            return Err(JobError::Invalid("ring_capacity must be at least 1".into()));
        }
        let graph = std::mem::take(&mut *self.graph.borrow_mut());
        if graph.tasks.is_empty() {
            return Err(JobError::Invalid(format!(
                "job `{}` has no sink: nothing would run",
                self.name
            )));
        }
        let workers = config.workers;
        let recovery = self.recover(&graph, &config)?;
        let metrics = Arc::new(MetricsRegistry::new(graph.nodes.clone(), workers));
        for edge in &graph.edges {
            edge.prepare(workers, config.ring_capacity);
        }
        let signals: Arc<[Arc<WorkerSignal>]> = (0..workers)
            .map(|_| Arc::new(WorkerSignal::new()))
            .collect();
        let (coordinator_tx, coordinator_rx) = crossbeam_channel::unbounded();
        let control = recovery.as_ref().map(|r| {
            let control = EpochControl::new(r.epoch, coordinator_tx.clone(), signals.clone());
            Arc::new(match config.mode {
                Mode::MicroBatch(_) if r.store.is_some() => control.logging_plans(),
                _ => control,
            })
        });
        let shared = Arc::new(Shared {
            stop: Arc::new(AtomicBool::new(false)),
            abort: AtomicBool::new(false),
            signals: signals.clone(),
            coordinator: recovery.as_ref().map(|_| coordinator_tx.clone()),
        });
        let restored = recovery.as_ref().and_then(|r| r.nodes.clone());
        let replay = recovery.as_ref().and_then(|r| r.replay.clone());
        let cores = if config.pin_workers {
            core_affinity::get_core_ids().filter(|c| !c.is_empty())
        } else {
            None
        };
        let task_count = graph.tasks.len();
        let source_nodes = graph
            .nodes
            .iter()
            .filter(|(_, k)| *k == NodeKind::Source)
            .count();
        let factories = Arc::new(graph.tasks);
        let (events_tx, events) = crossbeam_channel::unbounded();
        let started = Instant::now();
        let mut threads = Vec::with_capacity(workers);
        for w in 0..workers {
            let setup = WorkerSetup {
                ctx: BuildCtx {
                    worker: WorkerContext {
                        worker: w,
                        workers,
                        signal: signals[w].clone(),
                        started,
                        checkpointing: control.is_some(),
                    },
                    signals: signals.clone(),
                    stop: shared.stop.clone(),
                    metrics: metrics.clone(),
                    dead_letters: std::sync::OnceLock::new(),
                    epochs: control.clone(),
                    micro_batch: matches!(config.mode, Mode::MicroBatch(_)),
                    task: std::cell::Cell::new(0),
                    restored: restored.clone(),
                    replay: replay.clone(),
                },
                dead_letter: graph.dead_letter.clone(),
                factories: factories.clone(),
                shared: shared.clone(),
                config: config.clone(),
                core: cores.as_ref().map(|c| c[w % c.len()]),
                events: events_tx.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("rill-{}-w{w}", self.name))
                .spawn(move || worker::run(setup));
            match spawned {
                Ok(t) => threads.push(t),
                Err(source) => {
                    shared.request_abort();
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(JobError::Spawn { worker: w, source });
                }
            }
        }
        let mut coordinator = None;
        let mut checkpoint_log = None;
        if let (Some(r), Some(control)) = (recovery, control) {
            let log = Arc::new(std::sync::Mutex::new(CheckpointLog {
                restored_from: (r.epoch > 0).then_some(r.epoch),
                warnings: r.warnings,
                completed: Vec::new(),
            }));
            checkpoint_log = Some(log.clone());
            let abort_shared = shared.clone();
            let setup = CoordinatorSetup {
                job: self.name.clone(),
                config: r.config,
                store: r.store,
                control,
                events: coordinator_rx,
                committer: r.committer,
                nodes: r.node_list,
                workers,
                tasks: task_count,
                source_instances: source_nodes * workers,
                restored: r.epoch,
                trigger: match config.mode {
                    Mode::MicroBatch(t) => Some(t),
                    Mode::Continuous => None,
                },
                log,
                abort: Box::new(move || abort_shared.request_abort()),
            };
            // With pinned workers, keep the coordinator off their cores when a core is left:
            // the scheduler otherwise tends to wake it on the core of the worker that sent the
            // last acknowledgement, preempting that worker for a whole time slice (measured:
            // p99.9 of 6 ms instead of 75 us with one pinned worker).
            let spare = cores.as_ref().and_then(|c| c.get(workers).copied());
            let spawned = std::thread::Builder::new()
                .name(format!("rill-{}-checkpoints", self.name))
                .spawn(move || {
                    if let Some(core) = spare {
                        // A request, like worker pinning: failing leaves it unpinned.
                        let _ = core_affinity::set_for_current(core);
                    }
                    coordinator::run(setup)
                });
            match spawned {
                Ok(t) => coordinator = Some((t, coordinator_tx)),
                Err(source) => {
                    shared.request_abort();
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(JobError::Spawn {
                        worker: workers,
                        source,
                    });
                }
            }
        }
        Ok(JobHandle {
            coordinator,
            checkpoint_log,
            name: self.name,
            threads,
            events,
            shared,
            metrics,
            reported: 0,
            first_error: None,
            finished: false,
            outcome_taken: false,
        })
    }
}

/// What a checkpointing job starts from.
struct Recovery {
    config: CheckpointConfig,
    /// `None` in micro-batch mode without a checkpoint location.
    store: Option<CheckpointStore>,
    committer: Option<Arc<dyn crate::commit::Committer>>,
    epoch: crate::message::Epoch,
    nodes: Option<Arc<Vec<crate::state::NodeRestore>>>,
    /// Micro-batch mode: the logged plan of the batch after `epoch`, which never completed;
    /// the restarted job replays it with exactly these ends.
    replay: Option<Arc<Vec<crate::state::NodeRestore>>>,
    node_list: Vec<(String, String)>,
    warnings: Vec<String>,
}

impl Job {
    /// Opens the checkpoint directory, fences transactional sinks and loads the newest
    /// complete checkpoint whose output was committed.
    fn recover(&self, graph: &Graph, config: &Config) -> Result<Option<Recovery>, JobError> {
        if graph.committers.len() > 1 {
            let names: Vec<_> = graph
                .committers
                .iter()
                .map(|(n, _)| n.to_string())
                .collect();
            return Err(JobError::Invalid(format!(
                "a job can have one transactional sink; this one has {}: {}",
                names.len(),
                names.join(", ")
            )));
        }
        let Some(cc) = config.checkpoint.clone() else {
            if let Some((name, _)) = graph.committers.first() {
                return Err(JobError::Invalid(format!(
                    "sink `{name}` is transactional (exactly-once): it commits at checkpoints, \
                     so the job needs Config::with_checkpoints"
                )));
            }
            if let Mode::MicroBatch(_) = config.mode {
                // Batches are epochs even when nothing is stored.
                return Ok(Some(Recovery {
                    config: CheckpointConfig::new(std::env::temp_dir()),
                    store: None,
                    committer: None,
                    epoch: 0,
                    nodes: None,
                    replay: None,
                    node_list: Vec::new(),
                    warnings: Vec::new(),
                }));
            }
            return Ok(None);
        };
        let node_list: Vec<(String, String)> = graph
            .nodes
            .iter()
            .map(|(n, k)| (n.to_string(), format!("{k:?}")))
            .collect();
        let location = cc.location.display().to_string();
        let store = CheckpointStore::open(&cc.location)
            .map_err(|e| JobError::Restore(format!("{location}: {e}")))?;
        let committer = graph.committers.first().map(|(_, c)| c.clone());
        let mut warnings = Vec::new();
        let at_most = match &committer {
            Some(c) => {
                let committed = c.recover().map_err(|e| {
                    JobError::Restore(format!("recovering sink `{}`: {e}", c.name()))
                })?;
                Some(committed.unwrap_or(0))
            }
            None => None,
        };
        let (loaded, skipped) = store
            .load_latest(at_most)
            .map_err(|e| JobError::Restore(format!("{location}: {e}")))?;
        warnings.extend(skipped);
        let mut epoch = 0;
        let mut nodes = None;
        if let Some(loaded) = loaded {
            if loaded.manifest.nodes != node_list {
                return Err(JobError::Restore(format!(
                    "{location} holds checkpoint {} of a different job graph: it has nodes \
                     {:?}, this job has {:?}. Use a new checkpoint location for a changed job.",
                    loaded.manifest.epoch, loaded.manifest.nodes, node_list
                )));
            }
            epoch = loaded.manifest.epoch;
            nodes = Some(Arc::new(loaded.nodes));
        }
        // Micro-batch mode: the batch after the restored checkpoint may have been planned (its
        // ends logged) and then interrupted. Replaying it with the same ends makes the restart
        // deterministic. An unreadable plan only costs that: the batch is planned afresh.
        let mut replay = None;
        if let Mode::MicroBatch(_) = config.mode {
            match store.load_plan(epoch + 1) {
                Ok(Some(plan)) => replay = Some(Arc::new(plan.into_nodes(graph.nodes.len()))),
                Ok(None) => {}
                Err(e) => warnings.push(format!(
                    "the plan of batch {} is unusable ({e}): that batch is planned afresh",
                    epoch + 1
                )),
            }
        }
        store
            .remove_after(epoch)
            .map_err(|e| JobError::Restore(format!("{location}: {e}")))?;
        if let Some(c) = &committer {
            c.begin(epoch).map_err(|e| {
                JobError::Restore(format!("opening a transaction on `{}`: {e}", c.name()))
            })?;
        }
        for w in &warnings {
            eprintln!("rill: warning: job `{}`: {w}", self.name);
        }
        Ok(Some(Recovery {
            config: cc,
            store: Some(store),
            committer,
            epoch,
            nodes,
            replay,
            node_list,
            warnings,
        }))
    }
}

/// The checkpoint coordinator's thread and the channel that tells it the workers are done.
type CoordinatorThread = (JoinHandle<Result<(), JobError>>, Sender<CoordinatorEvent>);

/// Stops a running job gracefully from any thread (a signal handler, another service).
#[derive(Debug, Clone)]
pub struct StopHandle {
    shared: Arc<Shared>,
}

impl StopHandle {
    /// Asks the job to stop: sources end, records in flight drain, sinks flush and close.
    /// Returns at once; the job's `await_termination` returns when it is done.
    pub fn stop(&self) {
        self.shared.request_stop();
    }
}

/// A running job.
///
/// Dropping the handle without waiting aborts the job (workers stop at once, without
/// draining) and joins its threads.
#[derive(Debug)]
pub struct JobHandle {
    name: String,
    coordinator: Option<CoordinatorThread>,
    checkpoint_log: Option<Arc<std::sync::Mutex<CheckpointLog>>>,
    threads: Vec<JoinHandle<()>>,
    events: Receiver<WorkerEvent>,
    shared: Arc<Shared>,
    metrics: Arc<MetricsRegistry>,
    reported: usize,
    first_error: Option<JobError>,
    finished: bool,
    outcome_taken: bool,
}

impl JobHandle {
    /// The job's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Live counters: records in and out of every node, summed over the workers.
    pub fn metrics(&self) -> JobMetrics {
        self.metrics.snapshot()
    }

    /// What checkpointing has done so far: the epoch restored from, and figures of every
    /// completed checkpoint. `None` if the job does not checkpoint.
    pub fn checkpoints(&self) -> Option<CheckpointLog> {
        self.checkpoint_log
            .as_ref()
            .map(|l| l.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// Asks the job to stop gracefully (see [`StopHandle::stop`]). With checkpoints on, the
    /// job takes a final checkpoint first.
    pub fn stop(&self) {
        self.shared.request_stop();
    }

    /// A handle that can stop the job from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            shared: self.shared.clone(),
        }
    }

    /// Waits until every worker has finished: every bounded source has ended and all output
    /// is flushed and closed, or the job was stopped, or it failed. Returns the final metrics,
    /// or the first error (a user function's error or panic, a source or sink failure); on an
    /// error the other workers are stopped at once, so this never hangs on a failed job.
    pub fn await_termination(mut self) -> Result<JobMetrics, JobError> {
        match self.wait(None) {
            Some(result) => result,
            None => unreachable!("waiting without a deadline always ends with a result"),
        }
    }

    /// Like [`await_termination`](Self::await_termination), but gives up after `timeout`,
    /// returning `None` while the job is still running.
    pub fn await_termination_timeout(
        &mut self,
        timeout: Duration,
    ) -> Option<Result<JobMetrics, JobError>> {
        self.wait(Some(Instant::now() + timeout))
    }

    /// Whether every worker has ended.
    pub fn is_finished(&self) -> bool {
        self.finished || self.threads.iter().all(|t| t.is_finished())
    }

    fn wait(&mut self, deadline: Option<Instant>) -> Option<Result<JobMetrics, JobError>> {
        while !self.finished && self.reported < self.threads.len() {
            let event = match deadline {
                None => self
                    .events
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
                Some(at) => self.events.recv_deadline(at),
            };
            match event {
                Ok(WorkerEvent::Finished) => self.reported += 1,
                Ok(WorkerEvent::Failed(error)) => {
                    self.reported += 1;
                    if self.first_error.is_none() {
                        self.first_error = Some(error);
                        self.shared.request_abort();
                    }
                }
                Err(RecvTimeoutError::Timeout) => return None,
                // Every worker sends before exiting, so this only happens once all have.
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if !self.finished {
            self.finished = true;
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
            if let Err(e) = self.join_coordinator() {
                if self.first_error.is_none() {
                    self.first_error = Some(e);
                }
            }
        }
        if self.outcome_taken {
            return Some(Err(JobError::Invalid(
                "the job's outcome was already returned".into(),
            )));
        }
        self.outcome_taken = true;
        Some(match self.first_error.take() {
            Some(e) => Err(e),
            None => Ok(self.metrics.snapshot()),
        })
    }
}

impl JobHandle {
    /// Tells the coordinator the workers are gone and waits for it.
    fn join_coordinator(&mut self) -> Result<(), JobError> {
        match self.coordinator.take() {
            Some((thread, tx)) => {
                let _ = tx.send(CoordinatorEvent::WorkersDone);
                thread.join().unwrap_or_else(|_| {
                    Err(JobError::Checkpoint {
                        epoch: 0,
                        message: "the checkpoint coordinator panicked".into(),
                    })
                })
            }
            None => Ok(()),
        }
    }
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.request_abort();
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
            let _ = self.join_coordinator();
        }
    }
}
