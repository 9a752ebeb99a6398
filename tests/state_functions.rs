//! State functions (`flat_map_groups_with_state`): against a sequential reference in both
//! modes at several worker counts, timeouts on an idle stream with a manual clock, state TTL
//! in a running job, and restore at another worker count.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use common::finish;
use common::gated::{
    interrupt_and_restore, restore_config, temp_dir, wait_until, Click, GatedClicks,
};
use common::published::Published;
use rill::prelude::*;

/// A key's state in the reference function: how many values, and the last three.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Recent {
    count: u32,
    last: Vec<i64>,
}

/// What the reference function emits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Out {
    /// After each value: the key, its count, its last three values.
    Step(u8, u32, Vec<i64>),
    /// Every 7th value of a key: its state is dropped and starts again.
    Reset(u8),
    /// At the end of the input (the end-of-time watermark): the key's final state.
    Final(u8, u32, Vec<i64>),
}

/// The function under test: per value, a step; every 7th, a reset; and an event-time timeout
/// at the end of time that reports the final state. Its output does not depend on how
/// values are grouped into calls, so both modes must produce the same.
fn recent(key: &u8, values: Values<'_, Click>, state: &mut GroupState<'_, Recent>) -> Vec<Out> {
    let mut out = Vec::new();
    if state.has_timed_out() {
        if let Some(r) = state.remove() {
            out.push(Out::Final(*key, r.count, r.last));
        }
        return out;
    }
    for (_, v) in values {
        let mut r = state.remove().unwrap_or_default();
        r.count += 1;
        r.last.push(v);
        if r.last.len() > 3 {
            r.last.remove(0);
        }
        out.push(Out::Step(*key, r.count, r.last.clone()));
        if r.count == 7 {
            out.push(Out::Reset(*key));
        } else {
            state.update(r);
        }
    }
    if state.exists() {
        state.set_timeout_timestamp(i64::MAX - 1);
    }
    out
}

/// The sequential reference: each key's values in input order through the same logic.
fn reference(clicks: &[Click]) -> Vec<Out> {
    let mut states: BTreeMap<u8, Recent> = BTreeMap::new();
    let mut out = Vec::new();
    for &(k, v) in clicks {
        let r = states.entry(k).or_default();
        r.count += 1;
        r.last.push(v);
        if r.last.len() > 3 {
            r.last.remove(0);
        }
        out.push(Out::Step(k, r.count, r.last.clone()));
        if r.count == 7 {
            out.push(Out::Reset(k));
            states.remove(&k);
        }
    }
    for (k, r) in states {
        out.push(Out::Final(k, r.count, r.last));
    }
    out.sort();
    out
}

fn mode(micro_batch: bool) -> Mode {
    if micro_batch {
        Mode::MicroBatch(Trigger::AsFastAsPossible)
    } else {
        Mode::Continuous
    }
}

/// Runs `recent` over `clicks`: source worker w of P reads the keys with `key % P == w`, in
/// input order, so that each key's values reach its state in input order.
fn run_recent(clicks: Vec<Click>, workers: usize, micro_batch: bool) -> Vec<Out> {
    let job = Job::new("recent");
    let out = CollectSink::default();
    let clicks = Arc::new(clicks);
    job.source(MemorySource::from_fn(move |w, p| {
        clicks
            .iter()
            .copied()
            .filter(|c| usize::from(c.0) % p == w)
            .collect::<Vec<_>>()
    }))
    .key_by(|c: &Click| c.0)
    .flat_map_groups_with_state(recent)
    .sink(out.clone());
    let config = Config::default()
        .with_workers(workers)
        .with_poll_budget(5)
        .with_mode(mode(micro_batch));
    finish(job.run(config).expect("starts")).expect("runs");
    let mut got = out.take();
    got.sort();
    got
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Steps, resets and final states are the reference's, whatever the worker count and mode.
    #[test]
    fn state_functions_match_a_sequential_reference(
        seed in prop::collection::vec((0u8..12, any::<i64>()), 1..400),
        workers in prop::sample::select(vec![1usize, 2, 4]),
        micro_batch in any::<bool>(),
    ) {
        let got = run_recent(seed.clone(), workers, micro_batch);
        prop_assert_eq!(got, reference(&seed));
    }
}

/// What the idle-stream test's function emits: an acknowledgement per value, and the count
/// when the key's processing-time timeout fires.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Idle {
    Seen(u8),
    TimedOut(u8, u32, i64),
}

#[test]
fn processing_time_timeouts_fire_on_an_idle_stream_when_the_clock_says_so() {
    let clock = ManualClock::starting_at(1_000_000);
    let clicks: Vec<Click> = (0..60).map(|i| ((i % 6) as u8, i64::from(i))).collect();
    let job = Job::new("idle-timeouts");
    let out = CollectSink::default();
    job.source(GatedClicks::endless(clicks))
        .key_by(|c: &Click| c.0)
        .flat_map_groups_with_state(
            |key: &u8, values: Values<'_, Click>, n: &mut GroupState<'_, u32>| {
                if n.has_timed_out() {
                    let now = n.current_processing_time();
                    return n
                        .remove()
                        .map(|n| Idle::TimedOut(*key, n, now))
                        .into_iter()
                        .collect::<Vec<_>>();
                }
                let seen = values.len();
                n.update(n.get().copied().unwrap_or(0) + seen as u32);
                n.set_timeout_duration(Duration::from_secs(30));
                vec![Idle::Seen(*key); seen]
            },
        )
        .sink(out.clone());
    let handle = job
        .run(
            Config::default()
                .with_workers(2)
                .with_clock(ProcessingClock::Manual(clock.clone())),
        )
        .expect("starts");
    let mut got = Vec::new();
    wait_until("every value seen", || {
        got.extend(out.take());
        got.len() >= 60
    });
    // Real time passes, the clock does not: nothing times out.
    std::thread::sleep(Duration::from_millis(300));
    clock.advance(Duration::from_millis(29_999));
    std::thread::sleep(Duration::from_millis(300));
    got.extend(out.take());
    assert_eq!(got.len(), 60, "timed out early: {:?}", &got[60..]);
    clock.advance(Duration::from_millis(1));
    let mut fired = Vec::new();
    wait_until("every key timed out", || {
        fired.extend(out.take());
        fired.len() >= 6
    });
    fired.sort();
    let expected: Vec<Idle> = (0..6).map(|k| Idle::TimedOut(k, 10, 1_030_000)).collect();
    assert_eq!(fired, expected);
    handle.stop();
    finish(handle).expect("stops");
}

#[test]
fn state_ttl_keeps_a_running_jobs_state_and_checkpoints_flat() {
    // An endless stream of new keys (each seen once) through a count with a 200 ms
    // processing-time TTL on a manual clock advanced 10 ms per 1,000 records: about 20,000
    // keys are live at any time, whatever the number seen.
    let clock = ManualClock::starting_at(0);
    let seen = Arc::new(AtomicU64::new(0));
    let job = Job::new("ttl");
    let counts = CollectSink::default();
    let (sent, ticks) = (seen.clone(), clock.clone());
    job.source(MemorySource::from_fn(move |w, p| {
        let (sent, ticks) = (sent.clone(), ticks.clone());
        (0..600_000u64)
            .filter(move |i| i % p as u64 == w as u64)
            .map(move |i| {
                if sent.fetch_add(1, Ordering::Relaxed) % 1_000 == 999 {
                    ticks.advance(Duration::from_millis(10));
                }
                (i, ())
            })
    }))
    .key_by(|r: &(u64, ())| r.0)
    .state_ttl(StateTtl::processing_time(Duration::from_millis(200)))
    .count()
    .filter(|(_, n)| *n > 1)
    .sink(counts.clone());
    let dir = temp_dir("ttl");
    let mut handle = job
        .run(
            Config::default()
                .with_workers(2)
                .with_clock(ProcessingClock::Manual(clock))
                // Full checkpoints: their size is the live state's, which the TTL keeps
                // flat (an incremental one's is what changed in its interval).
                .with_checkpoints(
                    CheckpointConfig::new(&dir)
                        .with_interval(Duration::from_millis(10))
                        .with_full_every(1),
                ),
        )
        .expect("starts");
    handle
        .await_termination_timeout(common::HANG)
        .expect("ends in time")
        .expect("runs");
    assert!(counts.take().is_empty(), "every key is new");
    let sizes: Vec<u64> = handle
        .checkpoints()
        .expect("log")
        .completed
        .iter()
        .map(|c| c.bytes)
        .collect();
    eprintln!("checkpoint bytes: {sizes:?}");
    assert!(sizes.len() >= 8, "too few checkpoints to judge: {sizes:?}");
    // Without the TTL the table grows with every key: the late checkpoints would be about
    // three times the one a quarter of the way in.
    let early = sizes[sizes.len() / 4];
    let late = sizes[sizes.len() / 2..].iter().copied().max().unwrap_or(0);
    assert!(early > 0 && late < early * 16 / 10, "{sizes:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn state_functions_aborted_and_restored_at_another_parallelism_continue_the_same_state() {
    let clicks: Vec<Click> = (0..3_000u32)
        .map(|i| ((i * 7 % 11) as u8, i64::from(i) * 10))
        .collect();
    let expected = reference(&clicks);
    let clicks = Arc::new(clicks);
    for micro_batch in [false, true] {
        let dir = temp_dir(&format!("groups-restore-{micro_batch}"));
        let out: Published<Out> = Published::default();
        let limit = Arc::new(AtomicU64::new(1_000));
        let run = |workers: usize| {
            let job = Job::new("recent-restored");
            let source = GatedClicks {
                clicks: clicks.clone(),
                limit: limit.clone(),
                ends: true,
            };
            job.source(source)
                .key_by(|c: &Click| c.0)
                .flat_map_groups_with_state(recent)
                .sink(out.clone());
            job.run(restore_config(&dir, workers, micro_batch))
                .expect("starts")
        };
        let before = interrupt_and_restore(&limit, || out.published().len(), 500, false, run);
        let mut got = out.published();
        got.sort();
        assert_eq!(
            got, expected,
            "micro-batch: {micro_batch}; {before} published before"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_checkpoint_of_another_state_type_is_refused_with_a_clear_error() {
    let dir = temp_dir("groups-type");
    let clicks: Vec<Click> = (0..100).map(|i| ((i % 5) as u8, i64::from(i))).collect();
    let run = |as_text: bool| {
        let job = Job::new("typed");
        let keyed = job
            .source(MemorySource::new(clicks.clone()))
            .key_by(|c: &Click| c.0);
        if as_text {
            keyed
                .map_groups_with_state(
                    |k: &u8, _: Values<'_, Click>, s: &mut GroupState<'_, String>| {
                        s.update(k.to_string());
                        *k
                    },
                )
                .sink(DiscardSink::new());
        } else {
            keyed
                .map_groups_with_state(
                    |k: &u8, v: Values<'_, Click>, s: &mut GroupState<'_, u64>| {
                        s.update(s.get().copied().unwrap_or(0) + v.len() as u64);
                        *k
                    },
                )
                .sink(DiscardSink::new());
        }
        job.run(
            Config::default()
                .with_workers(2)
                .with_checkpoints(CheckpointConfig::new(&dir)),
        )
        .and_then(|h| {
            finish(h)?;
            Ok(())
        })
    };
    run(false).expect("the first run checkpoints u64 states");
    let err = run(true).expect_err("String states from u64 ones");
    let text = err.to_string();
    assert!(
        text.contains("map_groups_with_state") && text.contains("does not fit"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
