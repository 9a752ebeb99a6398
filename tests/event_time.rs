//! Event time: watermarks, windows and late data, against a sequential reference, at several
//! worker counts and in both modes.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use common::finish;
use common::gated::{interrupt_and_restore, restore_config, temp_dir, Click, GatedClicks};
use common::published::Published;
use rill::prelude::*;

/// (key, window start, window end) -> aggregate.
type Table = BTreeMap<(u8, i64, i64), u64>;

/// `n` events over `keys` keys, each at most `disorder` ms behind the newest before it.
fn events(seed: &[(u8, u16, u16)], disorder: i64) -> Vec<Click> {
    let mut t = 1_700_000_000_000i64;
    seed.iter()
        .map(|&(k, step, jitter)| {
            t += i64::from(step % 400);
            let behind = if disorder == 0 {
                0
            } else {
                i64::from(jitter) % (disorder + 1)
            };
            (k % 5, t - behind)
        })
        .collect()
}

/// The windows a sequential reader computes from `clicks`, counting records.
fn reference(clicks: &[Click], windows: Windows) -> Table {
    let mut table = Table::new();
    match windows {
        Windows::Tumbling { size } => {
            for &(k, ts) in clicks {
                let start = ts - ts.rem_euclid(size);
                *table.entry((k, start, start + size)).or_default() += 1;
            }
        }
        Windows::Sliding { size, slide } => {
            for &(k, ts) in clicks {
                let first = ts - ts.rem_euclid(slide);
                let mut start = first;
                while start > ts - size {
                    *table.entry((k, start, start + size)).or_default() += 1;
                    start -= slide;
                }
            }
        }
        Windows::Session { gap } => {
            let mut per_key: BTreeMap<u8, Vec<i64>> = BTreeMap::new();
            for &(k, ts) in clicks {
                per_key.entry(k).or_default().push(ts);
            }
            for (k, mut times) in per_key {
                times.sort_unstable();
                let (mut start, mut end, mut n) = (times[0], times[0] + gap, 0);
                for ts in times {
                    if ts >= end {
                        table.insert((k, start, end), n);
                        (start, n) = (ts, 0);
                    }
                    end = end.max(ts + gap);
                    n += 1;
                }
                table.insert((k, start, end), n);
            }
        }
    }
    table
}

/// What a windowed count job produced: the results in order, and the late records.
struct Run {
    results: Vec<WindowResult<u8, u64>>,
    late: Vec<Click>,
}

fn run_windows(
    clicks: Vec<Click>,
    windows: Windows,
    delay: Duration,
    mode: OutputMode,
    workers: usize,
    micro_batch: bool,
) -> Run {
    let job = Job::new("windows");
    let (results, late) = (CollectSink::default(), CollectSink::default());
    let strategy = WatermarkStrategy::bounded_out_of_orderness(delay).interval(Duration::ZERO);
    let (counted, too_late) = job
        .source(MemorySource::new(clicks))
        .with_watermark(|c: &Click| c.1, strategy)
        .key_by(|c: &Click| c.0)
        .window(windows, |c: &Click| c.1)
        .output_mode(mode)
        .count();
    counted.sink(results.clone());
    too_late.sink(late.clone());
    let config = Config::default()
        .with_workers(workers)
        .with_poll_budget(3)
        .with_mode(if micro_batch {
            Mode::MicroBatch(Trigger::AsFastAsPossible)
        } else {
            Mode::Continuous
        });
    finish(job.run(config).expect("starts")).expect("runs");
    Run {
        results: results.take(),
        late: late.take().into_iter().map(|(_, c)| c).collect(),
    }
}

fn table_of(results: &[WindowResult<u8, u64>]) -> Table {
    let mut table = Table::new();
    for r in results {
        let old = table.insert((r.key, r.window.start, r.window.end), r.value);
        assert!(old.is_none(), "window emitted twice in append mode: {r:?}");
    }
    table
}

fn windows_strategy() -> impl Strategy<Value = Windows> {
    prop_oneof![
        (200i64..3_000).prop_map(|size| Windows::Tumbling { size }),
        (1i64..5, 100i64..800).prop_map(|(k, slide)| Windows::Sliding {
            size: slide * k,
            slide
        }),
        (100i64..2_000).prop_map(|gap| Windows::Session { gap }),
    ]
}

fn seed_strategy() -> impl Strategy<Value = Vec<(u8, u16, u16)>> {
    prop::collection::vec((any::<u8>(), any::<u16>(), any::<u16>()), 1..300)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// With disorder within the watermark delay nothing is late, and append mode emits every
    /// window once with the reference's count, whatever the worker count and mode.
    #[test]
    fn windows_with_bounded_disorder_match_the_reference(
        seed in seed_strategy(),
        windows in windows_strategy(),
        disorder in 0i64..3_000,
        workers in prop::sample::select(vec![1usize, 2, 4]),
        micro_batch in any::<bool>(),
    ) {
        let clicks = events(&seed, disorder);
        let delay = Duration::from_millis(disorder as u64);
        let run = run_windows(clicks.clone(), windows, delay, OutputMode::Append, workers, micro_batch);
        prop_assert!(run.late.is_empty(), "late with bounded disorder: {:?}", run.late);
        prop_assert_eq!(table_of(&run.results), reference(&clicks, windows));
    }

    /// With a delay below the disorder some records are late: each is in the late output, and
    /// the windows are exactly the reference over the records that were not.
    #[test]
    fn late_records_are_all_in_the_side_output_and_nothing_else_is_missing(
        seed in seed_strategy(),
        windows in windows_strategy(),
        disorder in 500i64..5_000,
        delay_ms in 0u64..400,
        workers in prop::sample::select(vec![1usize, 2, 4]),
        micro_batch in any::<bool>(),
    ) {
        let clicks = events(&seed, disorder);
        let run = run_windows(
            clicks.clone(),
            windows,
            Duration::from_millis(delay_ms),
            OutputMode::Append,
            workers,
            micro_batch,
        );
        let mut on_time = clicks.clone();
        for l in &run.late {
            let i = on_time.iter().position(|c| c == l);
            prop_assert!(i.is_some(), "late record {:?} is not an input", l);
            on_time.swap_remove(i.unwrap_or_default());
        }
        prop_assert_eq!(table_of(&run.results), reference(&on_time, windows));
    }

    /// Update mode: every record updates its windows at once; each window's updates count up
    /// one by one to the reference's count.
    #[test]
    fn update_mode_counts_up_to_the_reference(
        seed in seed_strategy(),
        size in 200i64..3_000,
        disorder in 0i64..3_000,
        workers in prop::sample::select(vec![1usize, 2, 4]),
    ) {
        let clicks = events(&seed, disorder);
        let windows = Windows::Tumbling { size };
        let delay = Duration::from_millis(disorder as u64);
        let run = run_windows(clicks.clone(), windows, delay, OutputMode::Update, workers, false);
        let mut updates: BTreeMap<(u8, i64, i64), Vec<u64>> = BTreeMap::new();
        for r in &run.results {
            updates.entry((r.key, r.window.start, r.window.end)).or_default().push(r.value);
        }
        let expected = reference(&clicks, windows);
        prop_assert_eq!(updates.len(), expected.len());
        for (w, n) in expected {
            prop_assert_eq!(&updates[&w], &(1..=n).collect::<Vec<_>>(), "{:?}", w);
        }
    }
}

#[test]
fn sliding_and_session_windows_by_hand() {
    let clicks = vec![(1, 1_000), (1, 1_400), (1, 3_000), (2, 1_100), (1, 1_900)];
    let run = run_windows(
        clicks.clone(),
        Windows::session(Duration::from_millis(600)),
        Duration::from_secs(5),
        OutputMode::Append,
        1,
        false,
    );
    let got: Vec<_> = table_of(&run.results).into_iter().collect();
    // 1,000 / 1,400 / 1,900 bridge into one session; 3,000 is alone.
    assert_eq!(
        got,
        [
            ((1, 1_000, 2_500), 3),
            ((1, 3_000, 3_600), 1),
            ((2, 1_100, 1_700), 1)
        ]
    );
    let run = run_windows(
        clicks,
        Windows::sliding(Duration::from_secs(1), Duration::from_millis(500)),
        Duration::from_secs(5),
        OutputMode::Append,
        2,
        false,
    );
    let got = table_of(&run.results);
    assert_eq!(got[&(1, 500, 1_500)], 2);
    assert_eq!(got[&(1, 1_000, 2_000)], 3);
    assert_eq!(got[&(1, 1_500, 2_500)], 1);
    assert_eq!(got[&(2, 1_000, 2_000)], 1);
}

/// Runs a windowed count over `clicks` from a never-ending source on 2 workers (the second
/// with no input at all); returns the results seen within `wait`.
fn results_while_running(
    strategy: WatermarkStrategy,
    wait: Duration,
) -> Vec<WindowResult<u8, u64>> {
    let clicks: Vec<Click> = (0..20).map(|i| (1, 1_000 * i)).collect();
    let source = GatedClicks::endless(clicks);
    let job = Job::new("idle-input");
    let (results, late) = (CollectSink::default(), CollectSink::default());
    let (counted, too_late) = job
        .source(source)
        .with_watermark(|c: &Click| c.1, strategy)
        .key_by(|c: &Click| c.0)
        .window(Windows::tumbling(Duration::from_secs(5)), |c: &Click| c.1)
        .count();
    counted.sink(results.clone());
    too_late.sink(late.clone());
    let handle = job.run(Config::default().with_workers(2)).expect("starts");
    let deadline = Instant::now() + wait;
    let mut seen = Vec::new();
    while Instant::now() < deadline && seen.len() < 3 {
        seen.extend(results.take());
        std::thread::sleep(Duration::from_millis(20));
    }
    handle.stop();
    finish(handle).expect("stops");
    seen
}

#[test]
fn an_input_with_no_data_does_not_stall_windows_once_idle() {
    // Worker 1 has no input: without idleness its watermark (none) holds back the exchange's,
    // and no window closes while the job runs.
    let strategy = WatermarkStrategy::bounded_out_of_orderness(Duration::ZERO)
        .interval(Duration::from_millis(10));
    let stalled = results_while_running(strategy.never_idle(), Duration::from_secs(1));
    assert!(stalled.is_empty(), "no idleness, no watermark: {stalled:?}");
    let flowing = results_while_running(
        strategy.idle_after(Duration::from_millis(200)),
        Duration::from_secs(20),
    );
    // Events at 0..19 s: windows [0,5), [5,10), [10,15) close; [15,20) waits for more.
    let got: Vec<_> = flowing.iter().map(|r| (r.window.start, r.value)).collect();
    assert_eq!(got, [(0, 5), (5_000, 5), (10_000, 5)]);
}

#[test]
fn a_split_branch_that_goes_nowhere_is_refused() {
    let job = Job::new("dangling");
    let results = CollectSink::default();
    let (counted, _) = job
        .source(MemorySource::new(vec![(1u8, 5i64)]))
        .key_by(|c: &Click| c.0)
        .window(Windows::tumbling(Duration::from_secs(1)), |c: &Click| c.1)
        .count();
    counted.sink(results);
    let err = job
        .run(Config::default().with_workers(1))
        .expect_err("refused");
    assert!(
        err.to_string().contains("window:late") && err.to_string().contains("goes nowhere"),
        "{err}"
    );
}

/// (key, left event time, right event time or none) for every pair a join emitted.
type Pairs = Vec<(u8, i64, Option<i64>)>;

/// Every pair a sequential reader finds: same key, right time in `[l + lower, l + upper]`;
/// with `outer`, unmatched left records with `None`.
fn join_reference(left: &[Click], right: &[Click], lower: i64, upper: i64, outer: bool) -> Pairs {
    let mut pairs = Pairs::new();
    for &(k, lt) in left {
        let mut matched = false;
        for &(rk, rt) in right {
            if rk == k && rt >= lt + lower && rt <= lt + upper {
                pairs.push((k, lt, Some(rt)));
                matched = true;
            }
        }
        if outer && !matched {
            pairs.push((k, lt, None));
        }
    }
    pairs.sort_unstable();
    pairs
}

struct JoinRun {
    pairs: Pairs,
    late_left: Vec<Click>,
    late_right: Vec<Click>,
}

#[allow(clippy::too_many_arguments)]
fn run_join(
    left: Vec<Click>,
    right: Vec<Click>,
    lower: i64,
    upper: i64,
    delay: Duration,
    outer: bool,
    workers: usize,
    micro_batch: bool,
) -> JoinRun {
    let job = Job::new("join");
    let strategy = WatermarkStrategy::bounded_out_of_orderness(delay).interval(Duration::ZERO);
    let l = job
        .source(MemorySource::new(left).named("left"))
        .with_watermark(|c: &Click| c.1, strategy)
        .key_by(|c: &Click| c.0);
    let r = job
        .source(MemorySource::new(right).named("right"))
        .with_watermark(|c: &Click| c.1, strategy)
        .key_by(|c: &Click| c.0);
    let join = l.interval_join(
        r,
        Interval::millis(lower, upper),
        |c: &Click| c.1,
        |c: &Click| c.1,
    );
    let late = CollectSink::default();
    let pairs_out = CollectSink::default();
    if outer {
        let (pairs, too_late) = join.left_outer();
        pairs
            .map(|j: Joined<u8, Click, Option<Click>>| (j.key, j.left.1, j.right.map(|r| r.1)))
            .sink(pairs_out.clone());
        too_late.sink(late.clone());
    } else {
        let (pairs, too_late) = join.inner();
        pairs
            .map(|j: Joined<u8, Click, Click>| (j.key, j.left.1, Some(j.right.1)))
            .sink(pairs_out.clone());
        too_late.sink(late.clone());
    }
    let config = Config::default()
        .with_workers(workers)
        .with_poll_budget(3)
        .with_mode(if micro_batch {
            Mode::MicroBatch(Trigger::AsFastAsPossible)
        } else {
            Mode::Continuous
        });
    finish(job.run(config).expect("starts")).expect("runs");
    let mut pairs: Pairs = pairs_out.take();
    pairs.sort_unstable();
    let (mut late_left, mut late_right) = (Vec::new(), Vec::new());
    for (_, side) in late.take() {
        match side {
            JoinSide::Left(c) => late_left.push(c),
            JoinSide::Right(c) => late_right.push(c),
        }
    }
    JoinRun {
        pairs,
        late_left,
        late_right,
    }
}

/// `all` without one occurrence of each of `taken`.
fn without(all: &[Click], taken: &[Click]) -> Vec<Click> {
    let mut rest = all.to_vec();
    for t in taken {
        let i = rest
            .iter()
            .position(|c| c == t)
            .expect("a late record is an input");
        rest.swap_remove(i);
    }
    rest
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The interval join, inner and left outer, finds exactly the reference's pairs; records
    /// that came too late are all in the late output and the pairs are the reference over
    /// the rest.
    #[test]
    fn the_interval_join_matches_the_reference(
        left_seed in seed_strategy(),
        right_seed in seed_strategy(),
        lower in -1_000i64..500,
        width in 0i64..3_000,
        disorder in 0i64..3_000,
        delay_ms in 0u64..3_000,
        outer in any::<bool>(),
        workers in prop::sample::select(vec![1usize, 2, 4]),
        micro_batch in any::<bool>(),
    ) {
        let (left, right) = (events(&left_seed, disorder), events(&right_seed, disorder));
        let upper = lower + width;
        let run = run_join(
            left.clone(), right.clone(), lower, upper,
            Duration::from_millis(delay_ms), outer, workers, micro_batch,
        );
        if delay_ms as i64 >= disorder {
            prop_assert!(run.late_left.is_empty() && run.late_right.is_empty());
        }
        let (left, right) = (without(&left, &run.late_left), without(&right, &run.late_right));
        prop_assert_eq!(run.pairs, join_reference(&left, &right, lower, upper, outer));
    }
}

#[test]
fn a_windowed_job_aborted_or_stopped_and_restored_at_another_parallelism_publishes_every_window_once(
) {
    let seed: Vec<(u8, u16, u16)> = (0..3_000u32)
        .map(|i| {
            (
                (i * 7 % 5) as u8,
                (i * 37 % 400) as u16,
                (i * 101 % 1_000) as u16,
            )
        })
        .collect();
    let clicks = Arc::new(events(&seed, 1_000));
    let windows = Windows::tumbling(Duration::from_secs(2));
    let expected = reference(&clicks, windows);
    // A stop is not the end of the input: open windows wait in the final checkpoint instead
    // of being emitted half full.
    for (micro_batch, stop) in [(false, false), (true, false), (false, true)] {
        let dir = temp_dir(&format!("restore-{micro_batch}-{stop}"));
        let out: Published<WindowResult<u8, u64>> = Published::default();
        let limit = Arc::new(AtomicU64::new(1_000));
        let run = |workers: usize| {
            let job = Job::new("windows-restored");
            let source = GatedClicks {
                clicks: clicks.clone(),
                limit: limit.clone(),
                ends: true,
            };
            let strategy = WatermarkStrategy::bounded_out_of_orderness(Duration::from_secs(1))
                .interval(Duration::ZERO);
            let (counted, too_late) = job
                .source(source)
                .with_watermark(|c: &Click| c.1, strategy)
                .key_by(|c: &Click| c.0)
                .window(windows, |c: &Click| c.1)
                .count();
            counted.sink(out.clone());
            too_late.sink(CollectSink::default());
            job.run(restore_config(&dir, workers, micro_batch))
                .expect("starts")
        };
        let before = interrupt_and_restore(&limit, || out.published().len(), 20, stop, run);
        assert!(before < expected.len(), "the first run did not finish");
        assert_eq!(
            table_of(&out.published()),
            expected,
            "micro-batch: {micro_batch}, stop: {stop}; {before} windows published before"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn side_outputs_and_splits_lose_nothing_through_rings_of_one() {
    for workers in [1, 2] {
        let job = Job::new("tiny-rings");
        let (even, odd, copy) = (
            CollectSink::default(),
            CollectSink::default(),
            CollectSink::default(),
        );
        let (main, side) = job
            .source(MemorySource::new((0u64..20_000).collect()))
            .key_by(|x: &u64| *x)
            .into_stream()
            .side_output("odd", |(_, x): (u64, u64)| {
                if x % 2 == 0 {
                    Branch::First(x)
                } else {
                    Branch::Second(x)
                }
            });
        main.sink(even.clone());
        let (a, b) = side.fork("copies");
        a.sink(odd.clone());
        b.map(|x: u64| x * 10).sink(copy.clone());
        finish(
            job.run(
                Config::default()
                    .with_workers(workers)
                    .with_ring_capacity(1),
            )
            .expect("starts"),
        )
        .expect("runs");
        let sorted = |sink: &CollectSink<u64>| {
            let mut v = sink.take();
            v.sort_unstable();
            v
        };
        assert_eq!(sorted(&even), (0..20_000).step_by(2).collect::<Vec<_>>());
        let odds: Vec<u64> = (1..20_000).step_by(2).collect();
        assert_eq!(sorted(&odd), odds);
        assert_eq!(
            sorted(&copy),
            odds.iter().map(|x| x * 10).collect::<Vec<_>>()
        );
    }
}

/// A click as a raw record (its time as the value), for the dead-letter sink.
struct RawClick(Vec<u8>);

impl RawRecord for RawClick {
    fn origin(&self) -> Option<Origin> {
        None
    }
    fn raw_key(&self) -> Option<&[u8]> {
        None
    }
    fn raw_value(&self) -> Option<&[u8]> {
        Some(&self.0)
    }
}

#[test]
fn late_records_can_go_to_the_dead_letter_sink_with_stage_late() {
    let job = Job::new("late-to-dlq");
    let (results, letters) = (CollectSink::default(), CollectSink::<DeadLetter>::default());
    job.dead_letter(letters.clone());
    // Three records at 10 s pass a poll (budget 3): the watermark moves to 10 s - 1 ms ahead
    // of the two records at 0 s, which are late for their window.
    let clicks: Vec<Click> = vec![(1, 10_000), (1, 10_001), (1, 10_002), (1, 0), (1, 1)];
    let strategy =
        WatermarkStrategy::bounded_out_of_orderness(Duration::ZERO).interval(Duration::ZERO);
    let (counted, late) = job
        .source(MemorySource::new(clicks))
        .with_watermark(|c: &Click| c.1, strategy)
        .key_by(|c: &Click| c.0)
        .window(Windows::tumbling(Duration::from_secs(5)), |c: &Click| c.1)
        .count();
    counted.sink(results.clone());
    late.dead_letters("late", "behind the watermark", |(_, c): (u8, Click)| {
        RawClick(c.1.to_string().into_bytes())
    })
    .sink(DiscardSink::new());
    finish(
        job.run(Config::default().with_workers(1).with_poll_budget(3))
            .expect("starts"),
    )
    .expect("runs");
    let letters = letters.take();
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert!(letters
        .iter()
        .all(|l| &*l.stage == "late" && l.error == "behind the watermark"));
    let got: Vec<_> = results
        .take()
        .iter()
        .map(|r| (r.window.start, r.value))
        .collect();
    assert_eq!(got, [(10_000, 3)]);
}

/// A keyed operator with a processing-time timer per key: 50 ms after a key's first record it
/// emits the key's count, whether or not more records come (a timeout).
#[derive(Clone, Default)]
struct TimeoutAfterFirst {
    counts: rill::engine::state::KeyedState<u8, (u64, i64)>,
    timers: rill::engine::state::TimerQueue<u8>,
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl Operator<(u8, Click)> for TimeoutAfterFirst {
    type Out = (u8, u64);
    const USES_CLOCK: bool = true;

    fn on_record<E: Emit<(u8, u64)>>(&mut self, (key, _): (u8, Click), _out: &mut E) {
        let at = wall_ms() + 50;
        let entry = self.counts.get_or_insert_cloned(&key, || (0, at));
        entry.0 += 1;
        if entry.0 == 1 {
            self.timers
                .schedule(rill::engine::state::TimeDomain::ProcessingTime, at, key);
        }
    }

    fn on_poll<E: Emit<(u8, u64)>>(&mut self, now: Instant, out: &mut E) -> Option<Instant> {
        use rill::engine::state::TimeDomain::ProcessingTime;
        let wall = wall_ms();
        while let Some((_, key)) = self.timers.pop_due(ProcessingTime, wall) {
            if let Some((n, _)) = self.counts.remove(&key) {
                out.emit((key, n));
            }
        }
        // Wake up for the next timer even if no record comes.
        self.timers
            .next(ProcessingTime)
            .map(|at| now + Duration::from_millis((at - wall).max(0) as u64))
    }
}

#[test]
fn processing_time_timers_fire_on_the_worker_owning_the_key_with_no_record_arriving() {
    let clicks: Vec<Click> = vec![(1, 0), (2, 0), (1, 0), (3, 0)];
    let source = GatedClicks::endless(clicks);
    let job = Job::new("timeouts");
    let out = CollectSink::default();
    job.source(source)
        .key_by(|c: &Click| c.0)
        .then("timeout", TimeoutAfterFirst::default())
        .sink(out.clone());
    // Parking workers: only the deadline the operator returns wakes them.
    let handle = job
        .run(
            Config::default()
                .with_workers(2)
                .with_idle(IdleStrategy::Park),
        )
        .expect("starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    while got.len() < 3 && Instant::now() < deadline {
        got.extend(out.take());
        std::thread::sleep(Duration::from_millis(10));
    }
    handle.stop();
    finish(handle).expect("stops");
    got.sort_unstable();
    assert_eq!(got, [(1, 2), (2, 1), (3, 1)]);
}
