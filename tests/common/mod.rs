//! Helpers shared by the integration tests.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use rill::{JobError, JobHandle, JobMetrics};

/// Generous bound on how long any test job may take: far above normal run times (well under a
/// second), so exceeding it means a hang, reported as a failure instead of a stuck CI run.
pub(crate) const HANG: Duration = Duration::from_secs(120);

pub(crate) mod broker;
pub(crate) mod gated;
pub(crate) mod kafka;
pub(crate) mod published;
pub(crate) mod redis_server;
pub(crate) mod s3_server;

/// Waits for a job, failing the test if it does not end within [`HANG`].
pub(crate) fn finish(mut handle: JobHandle) -> Result<JobMetrics, JobError> {
    match handle.await_termination_timeout(HANG) {
        Some(result) => result,
        None => panic!("job `{}` did not terminate within {HANG:?}", handle.name()),
    }
}

/// The example binary cargo built next to this test (`cargo test` builds examples).
pub(crate) fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/examples/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory")
        .join("examples");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run the whole test suite (`cargo test`), which builds the examples",
        path.display()
    );
    path
}

/// Sends SIGTERM to an example process and checks that it stops gracefully with status 0.
pub(crate) fn stop_with_sigterm(child: std::process::Child) -> std::process::Output {
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(term.success());
    let out = child.wait_with_output().expect("the example exits");
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
