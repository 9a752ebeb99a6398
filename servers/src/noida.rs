//! noida-db's Kafka broker as a process of its own.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, pip_install, signal_group, ServerError};

/// The noida-db release rill is tried against.
const VERSION: &str = "0.2.3";
/// How long a started broker may take to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopped broker may take to save its data and exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A running noida-db Kafka broker on a loopback port, with a data directory of its own;
/// killed, and its data directory removed, on drop.
///
/// noida-db speaks Kafka's protocol, transactions and `read_committed` included. Two quirks
/// matter to clients: it withholds a partition's newest committed transaction from
/// `read_committed` readers until the next write to that partition, and it answers fetches
/// that find nothing at once (it does not wait `fetch.wait.max.ms`).
#[derive(Debug)]
pub struct Noida {
    child: Child,
    port: u16,
    bootstrap: String,
    data_dir: PathBuf,
}

impl Noida {
    /// Installs noida-db if needed, starts it on a free port with an empty data directory,
    /// and returns once it accepts connections.
    pub fn start() -> Result<Noida, ServerError> {
        Self::start_on(free_port()?)
    }

    /// [`start`](Self::start) on `port` (one reserved with [`free_port`] earlier, say).
    pub fn start_on(port: u16) -> Result<Noida, ServerError> {
        let data_dir =
            std::env::temp_dir().join(format!("rill-noida-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        std::fs::create_dir_all(&data_dir).map_err(|source| ServerError::Io {
            what: "creating the broker's data directory",
            path: data_dir.clone(),
            source,
        })?;
        let mut broker = Noida {
            child: spawn(port, &data_dir)?,
            port,
            bootstrap: format!("127.0.0.1:{port}"),
            data_dir,
        };
        broker.wait_listening()?;
        Ok(broker)
    }

    /// `bootstrap.servers` of the broker.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Stops the broker with SIGTERM (noida-db saves its data; with SIGKILL it loses records
    /// it acknowledged shortly before, which no client can make up for), leaves nothing
    /// listening for `down_for`, and starts it again on the same port and data directory.
    pub fn stop_and_restart(&mut self, down_for: Duration) -> Result<(), ServerError> {
        signal_group(self.child.id(), "TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        while !matches!(self.child.try_wait(), Ok(Some(_))) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        std::thread::sleep(down_for);
        self.child = spawn(self.port, &self.data_dir)?;
        self.wait_listening()
    }

    fn kill(&mut self) {
        // Only while the leader is unreaped: its pid (the group's id) cannot be reused yet.
        if matches!(self.child.try_wait(), Ok(None)) {
            signal_group(self.child.id(), "KILL");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait_listening(&mut self) -> Result<(), ServerError> {
        let deadline = Instant::now() + LISTEN_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            let problem = match self.child.try_wait() {
                Ok(Some(status)) => Some(format!("exited ({status})")),
                _ if Instant::now() >= deadline => {
                    Some(format!("did not listen within {LISTEN_TIMEOUT:?}"))
                }
                _ => None,
            };
            if let Some(problem) = problem {
                return Err(ServerError::NotListening {
                    server: "noida-db",
                    problem,
                    log: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// What the broker printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("broker.log")).unwrap_or_default()
    }
}

impl Drop for Noida {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// The broker's binary, installed on first use.
fn binary() -> Result<PathBuf, ServerError> {
    let dir = pip_install(
        &format!("noida-db-{VERSION}"),
        &[&format!("noida-db=={VERSION}")],
    )?;
    Ok(dir.join("noida_db").join("noida-db"))
}

/// Starts noida-db on `port` with `data_dir`, in a process group of its own (so that killing
/// the group ends whatever it started), logging into the data directory.
fn spawn(port: u16, data_dir: &Path) -> Result<Child, ServerError> {
    use std::os::unix::process::CommandExt;
    let log_path = data_dir.join("broker.log");
    let io = |source| ServerError::Io {
        what: "opening the broker's log",
        path: log_path.clone(),
        source,
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io)?;
    let stderr = log.try_clone().map_err(io)?;
    let program = binary()?;
    Command::new(&program)
        .args([
            "start",
            "--only",
            "kafka",
            "--kafka-port",
            &port.to_string(),
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(stderr)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|source| ServerError::Spawn { program, source })
}
