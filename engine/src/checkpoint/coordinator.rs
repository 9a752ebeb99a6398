//! The checkpoint coordinator: one thread per checkpointing job.
//!
//! It starts epochs on a timer, gathers the acknowledgements of every task instance, encodes
//! and writes their state as each arrives (the workers never serialize or touch the disk),
//! writes the manifest once all are in, commits the transactional sink, and tells the workers
//! the epoch is complete. A graceful stop, or every bounded source running dry, becomes a final
//! epoch after which the sources end.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::checkpoint::commit::Committer;
use crate::checkpoint::config::CheckpointConfig;
use crate::checkpoint::epoch::{BarrierAck, CoordinatorEvent, EpochControl};
use crate::checkpoint::store::{
    BatchPlan, ChainLink, CheckpointStore, FileEntry, Manifest, PlannedEnd, StoredNode, FORMAT,
};
use crate::dataflow::mode::Trigger;
use crate::error::{ErrorChain, JobError};
use crate::runtime::message::Epoch;
use crate::state::EncodedState;
use crate::sync::Lock;

/// Figures of one completed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointStats {
    /// The epoch.
    pub epoch: Epoch,
    /// From barrier injection being requested to the checkpoint being durable and committed.
    pub duration: Duration,
    /// From the request to the last task's acknowledgement (barriers through the graph).
    pub barrier_time: Duration,
    /// The longest time any task held inputs while aligning barriers.
    pub alignment: Duration,
    /// Time the coordinator spent encoding and writing state and manifest (their fsyncs
    /// included).
    pub write_time: Duration,
    /// Time the sink's committer took to commit the epoch (for the Kafka sink: waiting for
    /// acknowledgements, then `EndTxn`) and to open the next one; zero without a committer.
    /// With `barrier_time` and `write_time`, it says which step a slow checkpoint spent its
    /// time in: the graph, the disk, or the sink's system.
    pub commit_time: Duration,
    /// Bytes of state written.
    pub bytes: u64,
    /// Whether it stored all keyed state (the first of a run, every `full_every`-th), or
    /// only the changes since the previous checkpoint.
    pub full: bool,
    /// Whether this was the final checkpoint of a stopping job.
    pub last: bool,
}

/// What a job's checkpointing has done so far; see [`JobHandle::checkpoints`](crate::JobHandle::checkpoints).
#[derive(Debug, Clone, Default)]
pub struct CheckpointLog {
    /// The epoch the job restored from, if it found a complete checkpoint.
    pub restored_from: Option<Epoch>,
    /// Why newer checkpoints were passed over while restoring (incomplete, corrupt,
    /// uncommitted).
    pub warnings: Vec<String>,
    /// Completed checkpoints, oldest first (the most recent 1,000).
    pub completed: Vec<CheckpointStats>,
}

pub(crate) struct CoordinatorSetup {
    pub(crate) job: String,
    pub(crate) config: CheckpointConfig,
    pub(crate) store: Option<CheckpointStore>,
    pub(crate) control: Arc<EpochControl>,
    pub(crate) events: Receiver<CoordinatorEvent>,
    pub(crate) committer: Option<Arc<dyn Committer>>,
    pub(crate) nodes: Vec<(String, String)>,
    pub(crate) workers: usize,
    pub(crate) tasks: usize,
    pub(crate) source_instances: usize,
    pub(crate) restored: Epoch,
    /// The newest epoch the transactional sink has committed (`None` without one), recorded
    /// in every manifest.
    pub(crate) committed: std::cell::Cell<Option<Epoch>>,
    /// Micro-batch mode: when batches start.
    pub(crate) trigger: Option<Trigger>,
    pub(crate) log: Arc<Mutex<CheckpointLog>>,
    /// Aborts the job's workers when a checkpoint fails.
    pub(crate) abort: Box<dyn Fn() + Send>,
}

struct InFlight {
    epoch: Epoch,
    last: bool,
    /// Stores all keyed state, not only what changed.
    full: bool,
    started: Instant,
    pending: HashSet<(usize, usize)>,
    files: Vec<FileEntry>,
    bytes: u64,
    alignment: Duration,
    write_time: Duration,
    barrier_time: Duration,
}

fn checkpoint_error(epoch: Epoch, message: impl std::fmt::Display) -> JobError {
    JobError::Checkpoint {
        epoch,
        message: message.to_string(),
    }
}

pub(crate) fn run(setup: CoordinatorSetup) -> Result<(), JobError> {
    let result = coordinate(&setup);
    if result.is_err() {
        (setup.abort)();
    }
    result
}

/// Runs the coordinator's loop, with old checkpoints deleted on a thread of their own.
///
/// Deleting a checkpoint is file-system metadata work that waits on the journal when the
/// disk is busy: inline, deleting an incremental chain (about every tenth checkpoint) took
/// 12-52 ms after a checkpoint had completed (measured with 50 ms checkpoints on this VM's
/// ext4), and delayed the next checkpoint's start by as much.
/// Retention only ever deletes epochs at or below the newest completed one, so it runs beside
/// the writing of newer checkpoints; the thread is joined before the coordinator returns.
fn coordinate(s: &CoordinatorSetup) -> Result<(), JobError> {
    let Some(store) = &s.store else {
        return coordinate_with(s, None);
    };
    let retain = s.config.retain;
    std::thread::scope(|scope| {
        let (retire, retired) = crossbeam_channel::unbounded::<Epoch>();
        let spawned = std::thread::Builder::new()
            .name(format!("rill-{}-retention", s.job))
            .spawn_scoped(scope, move || {
                while let Ok(mut newest) = retired.recv() {
                    // Only the newest request matters: it covers every older one.
                    while let Ok(newer) = retired.try_recv() {
                        newest = newer;
                    }
                    // Old checkpoints are only garbage: failing to delete them must not fail
                    // the job.
                    let _ = store.retain(newest, retain);
                }
            });
        match spawned {
            Ok(_) => coordinate_with(s, Some(&retire)),
            // No thread to spare: retention runs inline, as it would without one.
            Err(_) => coordinate_with(s, None),
        }
        // `retire` is dropped here, which ends the thread; the scope joins it.
    })
}

fn coordinate_with(s: &CoordinatorSetup, retire: Option<&Sender<Epoch>>) -> Result<(), JobError> {
    let mut live: HashSet<(usize, usize)> = (0..s.tasks)
        .flat_map(|t| (0..s.workers).map(move |w| (t, w)))
        .collect();
    let mut next_epoch = s.restored + 1;
    // Continuous: the first checkpoint one interval after start. Micro-batch: the first
    // batch at once. AvailableNow: batches until every source has ended (sources bound
    // themselves to what is there at their first batch), then a final one.
    let mut next_trigger = match s.trigger {
        None => Instant::now() + s.config.interval,
        Some(_) => Instant::now(),
    };
    let mut in_flight: Option<InFlight> = None;
    // Micro-batch mode: the ends reported so far for batches whose plan is not logged yet.
    let mut plans: std::collections::BTreeMap<Epoch, Vec<PlannedEnd>> =
        std::collections::BTreeMap::new();
    let mut exhausted = 0;
    let mut want_last = false;
    let mut last_started = false;
    // The checkpoints the next incremental one builds on: the last full one and every
    // incremental one since. The first checkpoint of a run is full: the changes it would
    // store are relative to a state this run never checkpointed.
    let mut chain: Vec<ChainLink> = Vec::new();
    let full_every = s.config.full_every.max(1);
    loop {
        let deadline = match &in_flight {
            Some(f) => f.started + s.config.timeout,
            None if want_last && !last_started => Instant::now(),
            None if last_started => Instant::now() + Duration::from_secs(3600),
            None => next_trigger,
        };
        match s.events.recv_deadline(deadline) {
            Ok(CoordinatorEvent::Ack(ack)) => {
                if let Some(f) = in_flight.as_mut() {
                    record_ack(s, f, ack)?;
                }
            }
            Ok(CoordinatorEvent::TaskDone { task, worker }) => {
                live.remove(&(task, worker));
                if let Some(f) = in_flight.as_mut() {
                    f.pending.remove(&(task, worker));
                }
            }
            Ok(CoordinatorEvent::BatchPlan {
                epoch,
                node,
                worker,
                end,
            }) => {
                let ends = plans.entry(epoch).or_default();
                ends.push((node, worker, end));
                if ends.len() >= s.source_instances {
                    let ends = plans.remove(&epoch).unwrap_or_default();
                    log_plan(s, epoch, ends)?;
                }
            }
            Ok(CoordinatorEvent::SourceExhausted) => {
                exhausted += 1;
                want_last |= exhausted >= s.source_instances;
            }
            Ok(CoordinatorEvent::Stop) => want_last = true,
            // The workers are gone: an epoch still in flight can never complete (the job was
            // aborted or failed); what is on disk stays incomplete and is ignored on restore.
            Ok(CoordinatorEvent::WorkersDone) | Err(RecvTimeoutError::Disconnected) => {
                return Ok(())
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        if let Some(f) = &in_flight {
            if f.pending.is_empty() {
                let f = in_flight.take().expect("checked above");
                let started = f.started;
                complete(s, f, &mut chain, retire)?;
                next_trigger = match s.trigger {
                    // Start to start, as Flink's interval: exactly-once output becomes
                    // visible once per interval, not once per interval plus a checkpoint's
                    // duration. At least half an interval of pause after a slow one.
                    None => {
                        (started + s.config.interval).max(Instant::now() + s.config.interval / 2)
                    }
                    Some(Trigger::ProcessingTime(d)) => started + d,
                    Some(Trigger::AsFastAsPossible | Trigger::AvailableNow) => Instant::now(),
                };
            } else if f.started.elapsed() >= s.config.timeout {
                return Err(checkpoint_error(
                    f.epoch,
                    format!(
                        "not complete after {:?}: {} task instance(s) never acknowledged",
                        s.config.timeout,
                        f.pending.len()
                    ),
                ));
            }
        }
        if in_flight.is_none() && !last_started && (want_last || Instant::now() >= next_trigger) {
            let epoch = next_epoch;
            next_epoch += 1;
            last_started = want_last;
            in_flight = Some(InFlight {
                epoch,
                last: want_last,
                full: chain.is_empty() || chain.len() >= full_every as usize,
                started: Instant::now(),
                pending: live.clone(),
                files: Vec::new(),
                bytes: 0,
                alignment: Duration::ZERO,
                write_time: Duration::ZERO,
                barrier_time: Duration::ZERO,
            });
            s.control.start(epoch, want_last);
        }
    }
}

/// Writes the plan of batch `epoch` (every source instance's end) durably, then lets the
/// batch read its input.
fn log_plan(s: &CoordinatorSetup, epoch: Epoch, mut ends: Vec<PlannedEnd>) -> Result<(), JobError> {
    if let Some(store) = &s.store {
        ends.sort_by_key(|(node, worker, _)| (*node, *worker));
        let plan = BatchPlan {
            epoch,
            workers: s.workers,
            ends,
        };
        store.write_plan(&plan).map_err(|e| {
            checkpoint_error(
                epoch,
                format!("logging the batch's plan: {}", ErrorChain(&e)),
            )
        })?;
    }
    s.control.plan_written(epoch);
    Ok(())
}

fn record_ack(s: &CoordinatorSetup, f: &mut InFlight, ack: BarrierAck) -> Result<(), JobError> {
    if ack.epoch != f.epoch {
        return Ok(());
    }
    let BarrierAck {
        task,
        worker,
        snapshots,
        alignment,
        ..
    } = ack;
    if !f.pending.remove(&(task, worker)) {
        return Ok(());
    }
    f.alignment = f.alignment.max(alignment);
    f.barrier_time = f.started.elapsed();
    let write_started = Instant::now();
    let mut nodes = Vec::with_capacity(snapshots.len());
    for (node, snapshot) in snapshots {
        let changes = match f.full || s.store.is_none() {
            true => None,
            false => snapshot
                .encode_changes()
                .map_err(|e| checkpoint_error(f.epoch, e))?,
        };
        let state = match changes {
            Some(delta @ EncodedState::KeyedDelta(_)) => delta,
            _ => snapshot
                .encode()
                .map_err(|e| checkpoint_error(f.epoch, e))?,
        };
        nodes.push(StoredNode {
            node,
            type_name: snapshot.type_name().to_string(),
            state,
        });
    }
    if let Some(store) = &s.store {
        let entry = store
            .write_state(f.epoch, task, worker, nodes)
            .map_err(|e| checkpoint_error(f.epoch, format!("writing state: {}", ErrorChain(&e))))?;
        f.bytes += entry.len;
        f.files.push(entry);
    }
    f.write_time += write_started.elapsed();
    Ok(())
}

/// Makes checkpoint `f` complete (manifest, sink commit) and moves `chain`, the checkpoints
/// the next incremental one builds on, past it; then has older checkpoints deleted, by
/// `retire`'s thread when there is one.
fn complete(
    s: &CoordinatorSetup,
    mut f: InFlight,
    chain: &mut Vec<ChainLink>,
    retire: Option<&Sender<Epoch>>,
) -> Result<(), JobError> {
    let write_started = Instant::now();
    f.files.sort_by(|a, b| a.name.cmp(&b.name));
    if f.full {
        chain.clear();
    }
    let manifest = Manifest {
        format: FORMAT,
        job: s.job.clone(),
        epoch: f.epoch,
        workers: s.workers,
        nodes: s.nodes.clone(),
        files: std::mem::take(&mut f.files),
        chain: chain.clone(),
        created_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        committed: s.committed.get(),
    };
    if let Some(store) = &s.store {
        store.commit_manifest(&manifest).map_err(|e| {
            checkpoint_error(f.epoch, format!("writing the manifest: {}", ErrorChain(&e)))
        })?;
    }
    f.write_time += write_started.elapsed();
    let commit_started = Instant::now();
    if let Some(c) = &s.committer {
        c.commit(f.epoch).map_err(|e| {
            checkpoint_error(
                f.epoch,
                format!("committing sink `{}`: {}", c.name(), ErrorChain(&*e)),
            )
        })?;
        s.committed.set(Some(f.epoch));
        if !f.last {
            c.begin(f.epoch).map_err(|e| {
                checkpoint_error(
                    f.epoch,
                    format!(
                        "opening a transaction on `{}`: {}",
                        c.name(),
                        ErrorChain(&*e)
                    ),
                )
            })?;
        }
    }
    let commit_time = commit_started.elapsed();
    if s.store.is_some() {
        chain.push(ChainLink {
            epoch: f.epoch,
            files: manifest.files,
        });
    }
    s.control.complete(f.epoch);
    let duration = f.started.elapsed();
    if let Some(store) = &s.store {
        match retire {
            Some(retire) => {
                // The thread is gone only when the coordinator is returning anyway.
                let _ = retire.send(f.epoch);
            }
            // Old checkpoints are only garbage: failing to delete them must not fail the job.
            None => {
                let _ = store.retain(f.epoch, s.config.retain);
            }
        }
    }
    let stats = CheckpointStats {
        epoch: f.epoch,
        duration,
        barrier_time: f.barrier_time,
        alignment: f.alignment,
        write_time: f.write_time,
        commit_time,
        bytes: f.bytes,
        full: f.full,
        last: f.last,
    };
    let mut log = s.log.locked();
    if log.completed.len() >= 1000 {
        log.completed.remove(0);
    }
    log.completed.push(stats);
    Ok(())
}
