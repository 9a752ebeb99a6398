//! Fault injection against the real broker process (noida-db): what the Kafka word count does
//! when the broker dies and comes back, when it is not there at start, and when two instances
//! share one checkpoint directory.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::broker::Broker;
use common::example_binary;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rill-fault-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Starts the Kafka word count on `input` -> `output` with checkpoints into `dir`.
fn wordcount(brokers: &str, topics: &str, dir: &Path, extra: &[&str]) -> Child {
    Command::new(example_binary("wordcount"))
        .args(["--brokers", brokers, "--workers", "2"])
        .args(["--input", &format!("{topics}-in")])
        .args(["--output", &format!("{topics}-out")])
        .args(["--group", topics, "--checkpoint-interval", "200ms"])
        .arg("--checkpoint-dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wordcount starts")
}

/// Waits until `dir` holds a completed checkpoint (a manifest), or fails with the job's stderr.
fn wait_for_checkpoint(child: &mut Child, dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                e.file_name().to_string_lossy().starts_with("chk-")
                    && e.path().join("MANIFEST").exists()
            });
        if done {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("wordcount exited ({status}): {}", stderr_of(child));
        }
        assert!(Instant::now() < deadline, "no checkpoint within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for `child` to exit, at most `limit`.
fn wait_at_most(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn stderr_of(child: &mut Child) -> String {
    let mut err = String::new();
    let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
    err
}

#[test]
fn a_second_instance_on_one_checkpoint_directory_exits_at_once_naming_the_first() {
    let broker = Broker::start();
    broker.create_topic("twin-in", 2);
    broker.create_topic("twin-out", 2);
    let dir = temp_dir("twin");
    let mut first = wordcount(&broker.bootstrap, "twin", &dir, &[]);
    wait_for_checkpoint(&mut first, &dir);

    let mut second = wordcount(&broker.bootstrap, "twin", &dir, &[]);
    let Some(status) = wait_at_most(&mut second, Duration::from_secs(10)) else {
        let _ = second.kill();
        let _ = second.wait();
        panic!(
            "the second instance did not exit within 10 s; the first one {}",
            match first.try_wait() {
                Ok(Some(status)) => format!("had exited ({status}): {}", stderr_of(&mut first)),
                _ => "is still running".to_string(),
            }
        );
    };
    let err = stderr_of(&mut second);
    assert!(!status.success(), "the second instance ran: {err}");
    assert!(err.contains("is in use by another running job"), "{err}");
    assert!(
        err.contains(&format!("process {}", first.id())),
        "the holder is not named: {err}"
    );

    // The first one was not disturbed: it still runs and stops cleanly, and its
    // checkpoints are all there.
    assert!(
        first.try_wait().expect("status").is_none(),
        "the first instance died"
    );
    common::stop_with_sigterm(first);
    // With the first gone, the directory is free again.
    let mut third = wordcount(&broker.bootstrap, "twin", &dir, &[]);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        third.try_wait().expect("status").is_none(),
        "a new instance could not take over the directory: {}",
        stderr_of(&mut third)
    );
    common::stop_with_sigterm(third);
    let _ = std::fs::remove_dir_all(&dir);
}
