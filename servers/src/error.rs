//! What can go wrong installing or running a server.

use std::path::PathBuf;

/// Installing, starting or stopping a server failed; each says which and why.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// `python3 -m pip install` could not run or failed.
    #[error("installing {packages} into {dir} failed: {reason}")]
    Install {
        /// The packages asked for.
        packages: String,
        /// Where they were to go.
        dir: PathBuf,
        /// pip's error output, or why it could not run.
        reason: String,
    },
    /// A file or directory the server needs could not be made.
    #[error("{what} {path}: {source}")]
    Io {
        /// What it was for.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The server's process could not be started.
    #[error("starting {program}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The server exited or never listened; its log says why.
    #[error("{server} {problem}; its log:\n{log}")]
    NotListening {
        /// Which server.
        server: &'static str,
        /// "exited (status)" or "did not listen within ...".
        problem: String,
        /// The server's own output.
        log: String,
    },
    /// No loopback port was free.
    #[error("no free loopback port: {0}")]
    NoPort(std::io::Error),
}
