//! The exclusive lock on a checkpoint location: one running job per directory.
//!
//! Two instances of a job on one checkpoint location (a rolling deploy that starts the new
//! instance before the old one stops) would both restore the same checkpoint, both read every
//! input partition, and prune each other's checkpoints. The lock makes the second instance
//! fail at once with an error that names the holder.
//!
//! The lock is an advisory `flock` on `<location>/LOCK`, which the operating system releases
//! when the holding process exits, however it exits: a SIGKILLed job leaves no stale lock.
//! The file's content (process id, host, job name, start time) is only there to name the
//! holder in the second instance's error.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside the checkpoint location.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// Why a checkpoint location could not be locked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    /// Another live process (or another job in this one) holds the location.
    #[error(
        "checkpoint location {location} is in use by another running job ({holder}); two \
         instances on one checkpoint location would read the same input and prune each \
         other's checkpoints. Stop the other instance first, or give this one its own location"
    )]
    Held {
        /// The location.
        location: PathBuf,
        /// Who holds it, as the holder wrote it into the lock file.
        holder: String,
    },
    /// The lock file could not be created, locked or written.
    #[error("locking checkpoint location {location}: {source}")]
    Io {
        /// The location.
        location: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// A held lock on a checkpoint location, released when dropped (or when the process ends).
#[derive(Debug)]
pub(crate) struct DirectoryLock {
    // Holding the open file is holding the lock.
    _file: File,
}

impl DirectoryLock {
    /// Takes the lock on `root` (which must exist) for job `job`, without waiting.
    pub(crate) fn acquire(root: &Path, job: &str) -> Result<Self, LockError> {
        let io_error = |source| LockError::Io {
            location: root.to_path_buf(),
            source,
        };
        let path = root.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held {
                    location: root.to_path_buf(),
                    holder: if holder.is_empty() {
                        "a process that has not yet written its name".to_string()
                    } else {
                        holder.to_string()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_error(e)),
        }
        let holder = format!(
            "job `{job}`, process {} on host {}, since {} s after the Unix epoch",
            std::process::id(),
            host_name(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        );
        file.set_len(0).map_err(io_error)?;
        file.rewind().map_err(io_error)?;
        file.write_all(holder.as_bytes()).map_err(io_error)?;
        Ok(Self { _file: file })
    }
}

/// The machine's name, for the lock holder's description; "unknown" where it cannot be read.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_location_is_refused_and_names_the_holder() {
        let root = std::env::temp_dir().join(format!("rill-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let first = DirectoryLock::acquire(&root, "first").unwrap();
        let err = DirectoryLock::acquire(&root, "second").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, LockError::Held { .. }), "{text}");
        assert!(text.contains("job `first`"), "{text}");
        assert!(
            text.contains(&format!("process {}", std::process::id())),
            "{text}"
        );
        drop(first);
        // Released with the holder: the next instance takes it.
        let _second = DirectoryLock::acquire(&root, "second").unwrap();
        let _ = std::fs::remove_dir_all(&root);
    }
}
