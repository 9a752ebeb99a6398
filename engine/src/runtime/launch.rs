//! Starting a job: its rings, signals and workers, and the checkpoint coordinator.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use crate::checkpoint::coordinator::{self, CheckpointLog, CoordinatorSetup};
use crate::checkpoint::epoch::EpochControl;
use crate::checkpoint::recovery::recover;
use crate::dataflow::config::Config;
use crate::dataflow::graph::Graph;
use crate::dataflow::mode::Mode;
use crate::error::JobError;
use crate::runtime::build::BuildCtx;
use crate::runtime::context::{AbortSignal, WorkerContext};
use crate::runtime::control::Shared;
use crate::runtime::handle::JobHandle;
use crate::runtime::metrics::{MetricsRegistry, NodeKind};
use crate::runtime::signal::WorkerSignal;
use crate::runtime::worker::{self, WorkerSetup};

/// Starts the workers of `graph` (and its checkpoint coordinator) and returns at once with a
/// handle to the running job.
pub(crate) fn launch(
    name: String,
    graph: Graph,
    mut config: Config,
) -> Result<JobHandle, JobError> {
    config.idle = config.idle.resolve(graph.sources_wake_workers());
    if config.workers == 0 {
        return Err(JobError::Invalid("workers must be at least 1".into()));
    }
    if config.ring_capacity == 0 {
        return Err(JobError::Invalid("ring_capacity must be at least 1".into()));
    }
    if graph.tasks.is_empty() {
        return Err(JobError::Invalid(format!(
            "job `{}` has no sink: nothing would run",
            name
        )));
    }
    for edge in &graph.edges {
        if let Some(problem) = edge.dangling() {
            return Err(JobError::Invalid(problem));
        }
    }
    let workers = config.workers;
    let recovery = recover(&name, &graph, &config)?;
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
            _ if r.acknowledgements_only => control.without_state(),
            _ => control,
        })
    });
    let shared = Arc::new(Shared {
        stop: Arc::new(AtomicBool::new(false)),
        abort: Arc::new(AtomicBool::new(false)),
        signals: signals.clone(),
        coordinator: recovery.as_ref().map(|_| coordinator_tx.clone()),
    });
    let restored = recovery.as_ref().and_then(|r| r.nodes.clone());
    let acknowledgements_only = recovery.as_ref().is_some_and(|r| r.acknowledgements_only);
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
                    checkpointing: control.is_some() && !acknowledgements_only,
                    abort: AbortSignal(shared.abort.clone()),
                    trigger: match config.mode {
                        Mode::MicroBatch(t) => Some(t),
                        Mode::Continuous => None,
                    },
                },
                signals: signals.clone(),
                stop: shared.stop.clone(),
                metrics: metrics.clone(),
                dead_letters: std::sync::OnceLock::new(),
                epochs: control.clone(),
                micro_batch: matches!(config.mode, Mode::MicroBatch(_)),
                batch_output_limit: config.batch_output_limit,
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
            .name(format!("rill-{}-w{w}", name))
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
        if !r.acknowledgements_only {
            checkpoint_log = Some(log.clone());
        }
        let abort_shared = shared.clone();
        let setup = CoordinatorSetup {
            job: name.clone(),
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
            committed: std::cell::Cell::new(r.committed),
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
            .name(format!("rill-{}-checkpoints", name))
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
        name,
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
