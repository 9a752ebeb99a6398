//! Where a checkpointing job starts from: the newest complete checkpoint whose output was
//! committed, with transactional sinks fenced and a micro-batch to replay.

use std::sync::Arc;

use crate::checkpoint::config::CheckpointConfig;
use crate::checkpoint::lock::LockError;
use crate::checkpoint::store::CheckpointStore;
use crate::dataflow::config::Config;
use crate::dataflow::graph::Graph;
use crate::dataflow::mode::Mode;
use crate::error::{ErrorChain, JobError};

/// What a checkpointing job starts from.
pub(crate) struct Recovery {
    pub(crate) config: CheckpointConfig,
    /// `None` in micro-batch mode without a checkpoint location.
    pub(crate) store: Option<CheckpointStore>,
    pub(crate) committer: Option<Arc<dyn crate::checkpoint::commit::Committer>>,
    pub(crate) epoch: crate::runtime::message::Epoch,
    /// The newest epoch the transactional sink committed (0 if none); `None` without one.
    pub(crate) committed: Option<crate::runtime::message::Epoch>,
    pub(crate) nodes: Option<Arc<Vec<crate::state::NodeRestore>>>,
    /// Micro-batch mode: the logged plan of the batch after `epoch`, which never completed;
    /// the restarted job replays it with exactly these ends.
    pub(crate) replay: Option<Arc<Vec<crate::state::NodeRestore>>>,
    pub(crate) node_list: Vec<(String, String)>,
    pub(crate) warnings: Vec<String>,
    /// No checkpoints: epochs only tell sources what the sinks acknowledged.
    pub(crate) acknowledgements_only: bool,
}

/// Opens the checkpoint directory, fences transactional sinks and loads the newest complete
/// checkpoint whose output was committed; `None` if the job does not checkpoint.
pub(crate) fn recover(
    job: &str,
    graph: &Graph,
    config: &Config,
) -> Result<Option<Recovery>, JobError> {
    // Without checkpoints, a committer that can do without them is left out (its sink
    // publishes at-least-once); one that cannot refuses the job below.
    let committers: Vec<_> = graph
        .committers
        .iter()
        .filter(|(_, c)| config.checkpoint.is_some() || c.needs_checkpoints())
        .collect();
    if committers.len() > 1 {
        let names: Vec<_> = committers.iter().map(|(n, _)| n.to_string()).collect();
        return Err(JobError::Invalid(format!(
            "a job can have one transactional sink; this one has {}: {}",
            names.len(),
            names.join(", ")
        )));
    }
    let Some(cc) = config.checkpoint.clone() else {
        if let Some((name, _)) = committers.first() {
            return Err(JobError::Invalid(format!(
                "sink `{name}` is transactional (exactly-once): it commits at checkpoints, \
                     so the job needs Config::with_checkpoints"
            )));
        }
        let stateless = |config: CheckpointConfig, acknowledgements_only| Recovery {
            config,
            store: None,
            committer: None,
            epoch: 0,
            committed: None,
            nodes: None,
            replay: None,
            node_list: Vec::new(),
            warnings: Vec::new(),
            acknowledgements_only,
        };
        return Ok(match (config.mode, graph.acknowledgement_interval) {
            // Batches are epochs even when nothing is stored.
            (Mode::MicroBatch(_), _) => Some(stateless(
                CheckpointConfig::new(std::env::temp_dir()).with_timeout(config.batch_timeout),
                false,
            )),
            (Mode::Continuous, Some(interval)) => Some(stateless(
                CheckpointConfig::new(std::env::temp_dir()).with_interval(interval),
                true,
            )),
            (Mode::Continuous, None) => None,
        });
    };
    let node_list: Vec<(String, String)> = graph
        .nodes
        .iter()
        .map(|(n, k)| (n.to_string(), format!("{k:?}")))
        .collect();
    let location = cc.location.display().to_string();
    let store = match &cc.storage {
        Some(storage) => CheckpointStore::remote(storage.clone()),
        None => CheckpointStore::open(&cc.location, job).map_err(|e| match e {
            LockError::Held { location, holder } => JobError::LocationInUse { location, holder },
            LockError::Io { .. } => JobError::Restore(ErrorChain(&e).to_string()),
        })?,
    };
    let committer = committers.first().map(|(_, c)| c.clone());
    let mut warnings = Vec::new();
    let at_most = match &committer {
        Some(c) => {
            c.prepare(&cc).map_err(|e| {
                JobError::Invalid(format!(
                    "sink `{}` cannot commit with these checkpoint settings: {}",
                    c.name(),
                    ErrorChain(&*e)
                ))
            })?;
            let committed = c.recover().map_err(|e| {
                JobError::Restore(format!(
                    "recovering sink `{}`: {}",
                    c.name(),
                    ErrorChain(&*e)
                ))
            })?;
            Some(checked_commit(
                &store,
                &cc,
                c.as_ref(),
                committed.unwrap_or(0),
                &mut warnings,
            )?)
        }
        None => None,
    };
    let (loaded, skipped) = store
        .load_latest(at_most)
        .map_err(|e| JobError::Restore(format!("{location}: {}", ErrorChain(&e))))?;
    // A committed epoch whose checkpoint cannot be loaded: falling back to an older checkpoint
    // would write output readers have already seen a second time.
    if let Some(committed) = at_most.filter(|c| *c > 0) {
        let loaded_epoch = loaded.as_ref().map_or(0, |l| l.manifest.epoch);
        if loaded_epoch != committed {
            return Err(JobError::Restore(format!(
                "{location}: the output of checkpoint {committed} is committed, but that \
                 checkpoint cannot be loaded ({}); restoring {} would write the output of the \
                 epochs in between again. Repair or restore checkpoint {committed}, or start \
                 this job from a new checkpoint location and transactional id.",
                if skipped.is_empty() {
                    "it is missing".to_string()
                } else {
                    skipped.join("; ")
                },
                if loaded_epoch == 0 {
                    "no checkpoint".to_string()
                } else {
                    format!("checkpoint {loaded_epoch}")
                },
            )));
        }
    }
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
        .map_err(|e| JobError::Restore(format!("{location}: {}", ErrorChain(&e))))?;
    if let Some(c) = &committer {
        c.begin(epoch).map_err(|e| {
            JobError::Restore(format!(
                "opening a transaction on `{}`: {}",
                c.name(),
                ErrorChain(&*e)
            ))
        })?;
    }
    for w in &warnings {
        eprintln!("rill: warning: job `{}`: {w}", job);
    }
    Ok(Some(Recovery {
        config: cc,
        store: Some(store),
        committer,
        epoch,
        committed: at_most,
        nodes,
        replay,
        node_list,
        warnings,
        acknowledgements_only: false,
    }))
}

/// The epoch up to which output is committed: the sink's own record (`recorded`), checked
/// against what the checkpoints prove. A sink whose record is behind that proof has lost it
/// (a Kafka marker group deleted by offset retention, a changed transactional id): the job
/// refuses to guess, keeps its checkpoints, and names the record and the range an operator's
/// [`CheckpointConfig::assume_committed`] must lie in.
fn checked_commit(
    store: &CheckpointStore,
    cc: &CheckpointConfig,
    committer: &dyn crate::checkpoint::commit::Committer,
    recorded: crate::runtime::message::Epoch,
    warnings: &mut Vec<String>,
) -> Result<crate::runtime::message::Epoch, JobError> {
    let location = cc.location.display();
    let io = |e: std::io::Error| JobError::Restore(format!("{location}: {}", ErrorChain(&e)));
    let Some((proof_checkpoint, proven)) = store.commit_evidence().map_err(io)? else {
        return Ok(recorded);
    };
    if recorded >= proven {
        if cc.assumed_committed.is_some() {
            warnings.push(format!(
                "assume_committed is ignored: sink `{}` records epoch {recorded} as committed, \
                 consistent with the checkpoints",
                committer.name()
            ));
        }
        return Ok(recorded);
    }
    let newest = store.newest_complete().map_err(io)?.unwrap_or(proven);
    match cc.assumed_committed {
        Some(assumed) if (proven..=newest).contains(&assumed) => {
            warnings.push(format!(
                "sink `{}` records {} committed, behind checkpoint {proof_checkpoint}'s proof \
                 of epoch {proven}; restoring as the operator asserted (assume_committed {assumed})",
                committer.name(),
                if recorded == 0 {
                    "no epoch".to_string()
                } else {
                    format!("epoch {recorded}")
                },
            ));
            Ok(assumed)
        }
        Some(assumed) => Err(JobError::Restore(format!(
            "{location}: assume_committed({assumed}) is outside the possible range: the \
             checkpoints prove epoch {proven} committed and the newest one is {newest}"
        ))),
        None => Err(JobError::Restore(format!(
            "{location}: sink `{}` has {} ({}), but checkpoint {proof_checkpoint} proves the \
             output of epoch {proven} was committed: the sink's record of its commits is gone \
             (offset retention after a long outage, a deleted consumer group, or a changed \
             transactional id). Restoring without it would write committed output again or \
             skip output that was never committed, so the job does not start and the \
             checkpoints are kept. If you know the newest committed epoch (between {proven} \
             and {newest}), start once with CheckpointConfig::assume_committed(EPOCH).",
            committer.name(),
            if recorded == 0 {
                "no record of a commit".to_string()
            } else {
                format!("a record of epoch {recorded} only")
            },
            committer.commit_record(),
        ))),
    }
}
