//! The worker thread: build this worker's tasks, run them round robin, idle when there is
//! nothing to do, report how it ended.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;

use crate::checkpoint::epoch::CoordinatorEvent;
use crate::dataflow::config::Config;
use crate::dataflow::graph::TaskFactory;
use crate::error::JobError;
use crate::failure::panic_message;
use crate::runtime::build::BuildCtx;
use crate::runtime::control::{Shared, WorkerEvent};
use crate::runtime::dead_letter::{DeadLetterFactory, DeadLetters};
use crate::runtime::idle::{Idler, Wait};
use crate::runtime::task::{Task, TaskPoll};
use crate::sync::Lock;

pub(crate) struct WorkerSetup {
    pub(crate) ctx: BuildCtx,
    pub(crate) factories: Arc<Vec<TaskFactory>>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) config: Config,
    pub(crate) core: Option<core_affinity::CoreId>,
    pub(crate) events: Sender<WorkerEvent>,
    pub(crate) dead_letter: Option<(Arc<dyn DeadLetterFactory>, usize)>,
}

pub(crate) fn run(setup: WorkerSetup) {
    setup.ctx.worker.signal.register_current_thread();
    crate::time::install(setup.config.clock.clone());
    // A parked worker's deadline (the next record a timer-driven source has due, a timer)
    // should wake it on time, not up to 50 us later.
    crate::time::precise_timed_waits();
    if let Some(core) = setup.core {
        // Pinning is a request: a failure (restricted cpuset) leaves the thread unpinned.
        let _ = core_affinity::set_for_current(core);
    }
    let result = build_and_run(&setup);
    let event = match result {
        Ok(()) => WorkerEvent::Finished,
        Err(error) => WorkerEvent::Failed(error),
    };
    // The handle may be gone (dropped without waiting): nobody to tell.
    let _ = setup.events.send(event);
}

fn build_and_run(setup: &WorkerSetup) -> Result<(), JobError> {
    let worker = setup.ctx.worker.worker;
    if let Some((factory, node)) = &setup.dead_letter {
        let name = setup.ctx.node_name(*node);
        let sink = factory
            .create(&setup.ctx.worker)
            .map_err(|source| JobError::Sink {
                sink: name.clone(),
                worker,
                source,
            })?;
        let _ =
            setup
                .ctx
                .dead_letters
                .set(DeadLetters::route(name, sink, setup.ctx.counters(*node)));
    }
    let mut tasks: Vec<(usize, Box<dyn Task>)> = Vec::with_capacity(setup.factories.len());
    for (index, factory) in setup.factories.iter().enumerate() {
        setup.ctx.task.set(index);
        let task = catch_unwind(AssertUnwindSafe(|| factory(&setup.ctx))).map_err(|p| {
            JobError::Panicked {
                worker,
                task: Arc::from("<building tasks>"),
                message: panic_message(p.as_ref()),
            }
        })??;
        tasks.push((index, task));
    }
    let result = run_loop(setup, &mut tasks);
    if result.is_err() {
        // Before the tasks are dropped: a source's drop then knows the job failed and does
        // not acknowledge input (commit offsets) its sinks may never have written.
        setup.shared.request_abort();
    }
    drop(tasks);
    result
}

/// Closes this worker's dead-letter sink once all its tasks are done.
fn close_dead_letters(setup: &WorkerSetup) -> Result<(), JobError> {
    if let Some(route) = setup.ctx.dead_letters.get() {
        let mut dl = route.locked();
        dl.close().map_err(|source| JobError::Sink {
            sink: dl.name.clone(),
            worker: setup.ctx.worker.worker,
            source,
        })?;
    }
    Ok(())
}

fn run_loop(setup: &WorkerSetup, tasks: &mut Vec<(usize, Box<dyn Task>)>) -> Result<(), JobError> {
    let worker = setup.ctx.worker.worker;
    let signal = &setup.ctx.worker.signal;
    let budget = setup.config.poll_budget.max(1);
    let mut idler = Idler::new(setup.config.idle);
    loop {
        if setup.shared.abort.load(Ordering::Relaxed) {
            // Another worker failed or the handle was dropped; the error (if any) is theirs.
            return Ok(());
        }
        let mut busy = false;
        let mut backpressured = false;
        let mut deadline: Option<Instant> = None;
        let mut i = 0;
        while i < tasks.len() {
            let (index, task) = &mut tasks[i];
            let index = *index;
            let poll = catch_unwind(AssertUnwindSafe(|| task.run(budget))).map_err(|p| {
                JobError::Panicked {
                    worker,
                    task: task.name().clone(),
                    message: panic_message(p.as_ref()),
                }
            })??;
            match poll {
                TaskPoll::Busy => busy = true,
                TaskPoll::Idle { deadline: d } => {
                    deadline = match (deadline, d) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    }
                }
                TaskPoll::Backpressured => backpressured = true,
                TaskPoll::Done => {
                    drop(tasks.swap_remove(i));
                    if let Some(epochs) = &setup.ctx.epochs {
                        epochs.send(CoordinatorEvent::TaskDone {
                            task: index,
                            worker,
                        });
                    }
                    busy = true;
                    continue;
                }
            }
            i += 1;
        }
        if tasks.is_empty() {
            return close_dead_letters(setup);
        }
        if busy {
            idler.reset(signal);
        } else {
            let wait = if backpressured {
                Wait::Backpressured
            } else {
                Wait::Parkable { deadline }
            };
            idler.idle(signal, wait);
        }
    }
}
