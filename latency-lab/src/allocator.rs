//! The allocator's memory policy: latency-lab keeps the memory it frees.

use anyhow::Context;

/// mimalloc's setting for how long freed memory is kept before it is handed back to the OS.
pub(crate) const PURGE_DELAY: &str = "MIMALLOC_PURGE_DELAY";

/// Restarts this process with mimalloc's purging off, unless the caller chose a setting.
///
/// Checkpoints free many megabytes per second (the state versions a snapshot held). mimalloc
/// hands freed pages back to the OS after 10 ms by default, and the TLB shootdowns that causes
/// interrupt every core of the process, spinning workers included: measured with 1 M keys of
/// state, p99.9 went from about 0.15 ms to 6 to 15 ms. A latency-critical service keeps its
/// memory; so does latency-lab. mimalloc reads the setting when it starts, hence the re-exec.
#[cfg(unix)]
pub(crate) fn keep_freed_memory() -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(PURGE_DELAY).is_some() {
        return Ok(());
    }
    let exe = std::env::current_exe().context("locating latency-lab's own binary")?;
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(PURGE_DELAY, "-1")
        .exec();
    Err(err).context("restarting latency-lab with mimalloc's purging off")
}

#[cfg(not(unix))]
pub(crate) fn keep_freed_memory() -> anyhow::Result<()> {
    Ok(())
}
