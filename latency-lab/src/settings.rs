//! Every setting of a measurement, resolved from the command line and the source's defaults.

use std::time::Duration;

use anyhow::bail;
use rill::prelude::*;

use crate::allocator::PURGE_DELAY;
use crate::cli::{Args, BrokerArg, Idle, ModeArg, OperatorArg, PacingArg, SourceKind};

/// Every setting of a measurement, resolved from the arguments and the source's defaults.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) source: SourceKind,
    /// The external cluster, if any (Kafka).
    pub(crate) brokers: Option<String>,
    /// `brokers` is the noida-db process the lab started (`--broker noida`).
    pub(crate) noida: bool,
    /// Partitions of each topic (Kafka).
    pub(crate) partitions: i32,
    pub(crate) workers: usize,
    pub(crate) pin: bool,
    pub(crate) idle: Idle,
    /// How the generator waits for due times.
    pub(crate) pacing: Pacing,
    pub(crate) ring_capacity: usize,
    /// Keys of the running count.
    pub(crate) keys: u64,
    /// The in-memory pipeline's keyed operator.
    pub(crate) operator: OperatorArg,
    /// `--operator table-join`: rows, and the reload interval.
    pub(crate) table: (u64, std::time::Duration),
    /// Warm-up per run.
    pub(crate) warmup: Duration,
    /// Measured time per run.
    pub(crate) duration: Duration,
    pub(crate) runs: usize,
    /// Checkpoint interval, if checkpointing.
    pub(crate) checkpoint_interval: Option<Duration>,
    /// Every how many checkpoints one is full.
    pub(crate) full_every: u32,
    /// Exactly-once Kafka sink.
    pub(crate) exactly_once: bool,
    /// Producer `linger.ms`.
    pub(crate) linger_ms: u32,
    /// Consumer `fetch.wait.max.ms`.
    pub(crate) fetch_wait_ms: u32,
    pub(crate) modes: Vec<Mode>,
}

impl Settings {
    pub(crate) fn resolve(args: &Args) -> anyhow::Result<Self> {
        if args.source == SourceKind::Both {
            bail!("settings are resolved per path: `both` is expanded into memory and kafka first");
        }
        let kafka = args.source == SourceKind::Kafka;
        let mut modes = Vec::new();
        for m in &args.modes {
            match m {
                ModeArg::Continuous => modes.push(Mode::Continuous),
                ModeArg::MicroBatch => {
                    modes.extend(args.trigger.iter().map(|t| Mode::MicroBatch(*t)))
                }
                ModeArg::Exact(mode) => modes.push(*mode),
            }
        }
        if modes.is_empty() {
            bail!("--modes micro-batch needs at least one --trigger");
        }
        let duration = args
            .duration
            .unwrap_or(Duration::from_secs(if kafka { 5 } else { 10 }));
        if duration.is_zero() {
            bail!("--duration must be positive");
        }
        let checkpoint_interval = match (args.checkpoint_interval, args.exactly_once) {
            (Some(d), _) => Some(d),
            (None, true) => Some(Duration::from_secs(1)),
            (None, false) => None,
        };
        if checkpoint_interval.is_some_and(|d| d.is_zero()) {
            bail!("--checkpoint-interval must be positive");
        }
        if args.exactly_once && !kafka {
            bail!("--exactly-once is about the Kafka sink: use it with --source kafka");
        }
        // Measured: on the mock, read_committed readers saw results 3.6 ms after they were
        // due at 5,000 records/s with 20 ms checkpoints, before their transactions committed.
        if args.exactly_once && args.brokers.is_none() {
            bail!(
                "--exactly-once measures when read_committed readers see results, and librdkafka's \
                 embedded mock cluster shows them before their transaction commits: use \
                 --broker noida (a separate broker on this machine) or --brokers"
            );
        }
        if args.brokers.is_some() && !kafka {
            bail!("--brokers needs --source kafka");
        }
        if args.workers == 0 || args.partitions <= 0 || args.runs == 0 {
            bail!("--workers, --partitions and --runs must be at least 1");
        }
        Ok(Self {
            source: args.source,
            brokers: args.brokers.clone(),
            noida: args.broker == BrokerArg::Noida && args.brokers.is_some(),
            partitions: args.partitions,
            workers: args.workers,
            pin: args.pin,
            idle: args
                .idle
                .unwrap_or(if kafka { Idle::Auto } else { Idle::Spin }),
            pacing: match args.pacing.unwrap_or(if kafka {
                PacingArg::Sleep
            } else {
                PacingArg::Spin
            }) {
                PacingArg::Spin => Pacing::Spin,
                PacingArg::Sleep => Pacing::Sleep,
            },
            ring_capacity: args.ring_capacity,
            keys: args.keys.max(1),
            operator: args.operator,
            table: (args.table_rows.max(1), args.table_reload),
            warmup: args
                .warmup
                .unwrap_or(Duration::from_secs(if kafka { 1 } else { 2 })),
            duration,
            runs: args.runs,
            checkpoint_interval,
            full_every: args.full_every.max(1),
            exactly_once: args.exactly_once,
            linger_ms: args
                .linger_ms
                .unwrap_or(if args.brokers.is_some() { 0 } else { 1 }),
            fetch_wait_ms: args.fetch_wait_ms,
            modes,
        })
    }

    /// The job's idle strategy as the report names it: `auto` with what it resolves to on this
    /// path (the Kafka path's source wakes its workers; the in-memory generator does not).
    fn idle_shown(&self) -> String {
        let strategy = self.idle.strategy();
        match strategy {
            IdleStrategy::Auto => format!(
                "auto: {}",
                strategy.resolve(self.source == SourceKind::Kafka)
            ),
            other => other.to_string(),
        }
    }

    /// Checkpoints into `dir` at the run's interval and full-checkpoint cadence.
    pub(crate) fn checkpoints(&self, dir: &std::path::Path, every: Duration) -> CheckpointConfig {
        CheckpointConfig::new(dir)
            .with_interval(every)
            .with_full_every(self.full_every)
    }

    /// The job's configuration, without mode and checkpoints.
    pub(crate) fn job_config(&self) -> Config {
        Config::default()
            .with_workers(self.workers)
            .with_pinning(self.pin)
            .with_idle(self.idle.strategy())
            .with_ring_capacity(self.ring_capacity)
    }

    /// How long results may lag behind their input by design in `mode`: one trigger interval,
    /// and one checkpoint interval when an exactly-once sink holds them until it commits.
    pub(crate) fn batch_or_checkpoint_wait(&self, mode: Mode) -> Duration {
        let batch = match mode {
            Mode::MicroBatch(Trigger::ProcessingTime(d)) => d,
            _ => Duration::ZERO,
        };
        let checkpoint = if self.exactly_once {
            self.checkpoint_interval.unwrap_or_default()
        } else {
            Duration::ZERO
        };
        batch + checkpoint
    }

    /// What the run measures, where, and with what: printed before the table.
    pub(crate) fn describe(&self, cores: usize) -> String {
        let pipeline = match self.source {
            SourceKind::Memory | SourceKind::Both => format!(
                "pipeline: generator -> map -> {}key_by ({} keys) -> {} -> latency sink\n\
                 source:   memory (the in-process generator; no Kafka): the engine's own latency",
                match self.operator {
                    OperatorArg::WindowUpdate => "with_watermark (1 s) -> ",
                    _ => "",
                },
                self.keys,
                match self.operator {
                    OperatorArg::RunningCount => "running count".to_string(),
                    OperatorArg::WindowUpdate => "1 s tumbling window count, update mode".into(),
                    OperatorArg::UserProfile =>
                        "map_groups_with_state: last 10 per key, 1 h TTL".into(),
                    OperatorArg::TableJoin => format!(
                        "join_table ({} rows, reloaded every {:?})",
                        self.table.0, self.table.1
                    ),
                },
            ),
            SourceKind::Kafka => format!(
                "pipeline: producer -> topic -> [Kafka source -> decode -> map -> filter -> key_by ({} keys) -> running count -> Kafka sink{}] -> topic -> reader\n\
                 broker:   {}; topics of {} partitions, fresh for every run\n\
                 kafka:    linger.ms {}, fetch.wait.max.ms {}, reader isolation read_committed",
                self.keys,
                if self.exactly_once { " (exactly-once, transactional)" } else { "" },
                match &self.brokers {
                    Some(b) if self.noida => format!("noida-db at {b}: a separate broker process on this machine, sharing its cores"),
                    Some(b) => format!("EXTERNAL cluster at {b}"),
                    None => "EMBEDDED librdkafka mock cluster (in this process; not a real Kafka: its figures are not Kafka's, and it does not isolate uncommitted records)".into(),
                },
                self.partitions,
                self.linger_ms,
                self.fetch_wait_ms,
            ),
        };
        format!(
            "{pipeline}\n\
             settings: workers {} on {cores} cores, idle {}, pin {}, pacing {}, ring {} msgs, warm-up {}s, measured {}s, runs {}, checkpoints {}, {}={}",
            self.workers,
            self.idle_shown(),
            self.pin,
            self.pacing,
            self.ring_capacity,
            self.warmup.as_secs_f64(),
            self.duration.as_secs_f64(),
            self.runs,
            self.checkpoint_interval
                .map_or("off".to_string(), |d| format!("every {}s", d.as_secs_f64())),
            PURGE_DELAY,
            std::env::var(PURGE_DELAY).unwrap_or_default(),
        )
    }

    /// Every setting, for `--json`.
    pub(crate) fn json(&self, cores: usize) -> serde_json::Value {
        serde_json::json!({
            "source": match self.source {
                SourceKind::Memory | SourceKind::Both => "memory",
                SourceKind::Kafka => "kafka",
            },
            "broker": match (self.source, &self.brokers) {
                (SourceKind::Memory | SourceKind::Both, _) => serde_json::Value::Null,
                (SourceKind::Kafka, Some(b)) if self.noida => format!("noida-db {b}").into(),
                (SourceKind::Kafka, Some(b)) => format!("external {b}").into(),
                (SourceKind::Kafka, None) => "embedded librdkafka mock cluster".into(),
            },
            "partitions": self.partitions,
            "workers": self.workers,
            "cores": cores,
            "pin": self.pin,
            "idle": self.idle_shown(),
            "pacing": self.pacing.to_string(),
            "ring_capacity": self.ring_capacity,
            "keys": self.keys,
            "operator": format!("{:?}", self.operator),
            "warmup_s": self.warmup.as_secs_f64(),
            "duration_s": self.duration.as_secs_f64(),
            "runs": self.runs,
            "checkpoint_interval_s": self.checkpoint_interval.map(|d| d.as_secs_f64()),
            "full_every": self.full_every,
            "exactly_once": self.exactly_once,
            "linger_ms": self.linger_ms,
            "fetch_wait_max_ms": self.fetch_wait_ms,
            "mimalloc_purge_delay": std::env::var(PURGE_DELAY).ok(),
        })
    }
    /// A fresh temporary checkpoint directory for one run (`run` names it), when the
    /// settings checkpoint.
    pub(crate) fn checkpoint_dir(&self, run: &str) -> Option<std::path::PathBuf> {
        self.checkpoint_interval.map(|_| {
            std::env::temp_dir().join(format!(
                "latency-lab-checkpoints-{}-{run}-{}",
                std::process::id(),
                rill::time::now_nanos()
            ))
        })
    }
}
