//! Errors and panics in user code end the job with a typed error; nothing hangs.

mod common;

use std::time::Duration;

use rill::prelude::*;

#[test]
fn try_map_error_ends_the_job_naming_the_operator() {
    let job = Job::new("parse");
    job.source(MemorySource::new(
        (0..1000)
            .map(|i| {
                if i == 777 {
                    "oops".to_string()
                } else {
                    i.to_string()
                }
            })
            .collect(),
    ))
    .try_map(|s: String| s.parse::<u64>())
    .key_by(|n: &u64| n % 10)
    .count()
    .sink(CollectSink::default());
    let err = common::finish(job.run(Config::default().with_workers(2)).expect("starts"))
        .expect_err("the bad record fails the job");
    match err {
        JobError::UserFunction {
            operator, source, ..
        } => {
            assert_eq!(&*operator, "try_map");
            assert!(source.to_string().contains("invalid digit"), "{source}");
        }
        other => panic!("expected a user-function error, got {other:?}"),
    }
}

#[test]
fn renamed_operator_is_named_in_the_error() {
    let job = Job::new("named");
    job.source(MemorySource::new(vec!["x"]))
        .try_map(|s: &str| s.parse::<i32>())
        .name("parse-int")
        .sink(CollectSink::default());
    let err = common::finish(job.run(Config::default().with_workers(1)).expect("starts"))
        .expect_err("fails");
    assert!(err.to_string().contains("parse-int"), "{err}");
}

#[test]
fn panic_after_an_exchange_surfaces_while_other_workers_run_unbounded() {
    // The generator never ends by itself: only the failure can end this job.
    let job = Job::new("panics");
    job.source(Generator::new(200_000.0, |i| i))
        .key_by(|g: &Generated<u64>| g.seq % 16)
        .into_stream()
        .map(|(_, g): (u64, Generated<u64>)| {
            if g.seq == 5_000 {
                panic!("boom at {}", g.seq);
            }
            g.seq
        })
        .sink(CollectSink::default());
    let err = common::finish(job.run(Config::default().with_workers(3)).expect("starts"))
        .expect_err("the panic fails the job");
    match err {
        JobError::Panicked { message, task, .. } => {
            assert_eq!(message, "boom at 5000");
            assert_eq!(&*task, "collect");
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
}

#[test]
fn panic_in_a_key_function_is_reported_from_the_sending_side() {
    let job = Job::new("key-panic");
    job.source(MemorySource::new((0..100u32).collect()))
        .key_by(|x: &u32| {
            assert!(*x != 42, "no 42 allowed");
            *x
        })
        .count()
        .sink(CollectSink::default());
    let err = common::finish(job.run(Config::default().with_workers(2)).expect("starts"))
        .expect_err("fails");
    assert!(
        matches!(&err, JobError::Panicked { task, message, .. } if &**task == "key_by" && message.contains("no 42")),
        "{err:?}"
    );
}

/// A sink that fails on its n-th record.
#[derive(Clone)]
struct FailingSink(u64);

struct FailingWriter {
    left: u64,
}

impl SinkWriter<u64> for FailingWriter {
    fn write(&mut self, _: u64) -> Result<(), rill::BoxError> {
        if self.left == 0 {
            return Err("disk full".into());
        }
        self.left -= 1;
        Ok(())
    }
}

impl Sink<u64> for FailingSink {
    type Writer = FailingWriter;
    fn create(&self, _: &WorkerContext) -> Result<FailingWriter, rill::BoxError> {
        Ok(FailingWriter { left: self.0 })
    }
    fn name(&self) -> &str {
        "failing"
    }
}

#[test]
fn sink_error_ends_the_job() {
    let job = Job::new("sink-error");
    job.source(MemorySource::new((0..10_000u64).collect()))
        .sink(FailingSink(100));
    let err = common::finish(job.run(Config::default().with_workers(2)).expect("starts"))
        .expect_err("fails");
    assert!(
        matches!(&err, JobError::Sink { sink, source, .. } if &**sink == "failing" && source.to_string() == "disk full"),
        "{err:?}"
    );
}

#[test]
fn invalid_configurations_are_refused() {
    let job = Job::new("no-workers");
    job.source(MemorySource::new(vec![1]))
        .sink(CollectSink::default());
    assert!(matches!(
        job.run(Config::default().with_workers(0)),
        Err(JobError::Invalid(_))
    ));

    let job = Job::new("no-sink");
    let _dangling = job.source(MemorySource::new(vec![1]));
    assert!(matches!(
        job.run(Config::default()),
        Err(JobError::Invalid(_))
    ));
}

#[test]
fn dropping_the_handle_of_an_unbounded_job_stops_it() {
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let job = Job::new("dropped");
    let counter = seen.clone();
    job.source(Generator::new(1_000.0, |i| i))
        .inspect(move |_: &Generated<u64>| {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
        .key_by(|g: &Generated<u64>| g.seq)
        .count()
        .sink(CollectSink::default());
    let handle = job.run(Config::default().with_workers(2)).expect("starts");
    let running = std::time::Instant::now();
    while seen.load(std::sync::atomic::Ordering::Relaxed) < 10 {
        assert!(running.elapsed() < common::HANG, "the job never ran");
        std::thread::sleep(Duration::from_millis(1));
    }
    // Dropped on another thread, so a drop that never returns fails the test instead of
    // hanging it.
    let (dropped_tx, dropped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(handle);
        let _ = dropped_tx.send(());
    });
    dropped
        .recv_timeout(common::HANG)
        .expect("dropping the handle returns: it aborts the job and joins its workers");
    // The workers are joined: the generator, due to emit a record every millisecond, emits
    // nothing more.
    let after_drop = seen.load(std::sync::atomic::Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), after_drop);
}

#[test]
fn a_panicking_record_becomes_a_dead_letter_and_the_job_goes_on() {
    let job = Job::new("poison");
    let letters = CollectSink::<DeadLetter>::default();
    job.dead_letter(letters.clone());
    let out = CollectSink::default();
    job.source(MemorySource::new((0..1000u64).collect()))
        .map(|n: u64| {
            if n == 500 {
                panic!("cannot handle {n}");
            }
            n
        })
        .key_by(|n: &u64| {
            if *n == 777 {
                panic!("no key for {n}");
            }
            n % 10
        })
        .count()
        .map(|(k, c): (u64, u64)| {
            if k == 3 && c == 50 {
                panic!("after the exchange");
            }
            (k, c)
        })
        .sink(out.clone());
    common::finish(job.run(Config::default().with_workers(2)).expect("starts"))
        .expect("the job goes on past its poison records");
    let mut letters = letters.take();
    letters.sort_by(|a, b| a.error.cmp(&b.error));
    let got: Vec<(&str, &str)> = letters
        .iter()
        .map(|l| (&*l.stage, l.error.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("map#2", "panicked: after the exchange"),
            ("map", "panicked: cannot handle 500"),
            ("key_by", "panicked: no key for 777"),
        ]
    );
    // Every other record was counted: 998 updates, of which one panicked after the count.
    let updates = out.take();
    assert_eq!(updates.len(), 997);
    let last_of_3 = updates
        .iter()
        .filter(|(k, _)| *k == 3)
        .map(|(_, c)| *c)
        .max();
    assert_eq!(last_of_3, Some(100));
}
