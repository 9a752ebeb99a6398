//! A real Kafka broker process for the tests that need one: noida-db 0.2.3 from PyPI.
//!
//! It is installed with pip into `target/tools/` the first time a test needs it (no system
//! install, no network afterwards), started on a free loopback port with its own data
//! directory, and killed when the handle drops. If it cannot be installed or started, the test
//! fails with the reason: it never silently skips.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const VERSION: &str = "0.2.3";

/// The broker binary, installed on first use.
fn binary() -> PathBuf {
    let dir = super::tools::pip_install(
        &format!("noida-db-{VERSION}"),
        &[&format!("noida-db=={VERSION}")],
    );
    dir.join("noida_db").join("noida-db")
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A running noida-db Kafka broker; killed on drop.
pub(crate) struct Broker {
    child: Child,
    /// `bootstrap.servers` of the broker.
    pub bootstrap: String,
    data_dir: PathBuf,
}

impl Broker {
    /// Starts a broker with an empty data directory and waits until it accepts connections.
    pub(crate) fn start() -> Broker {
        Self::start_on(free_port())
    }

    /// A free loopback port for a broker that is started later ([`Broker::start_on`]).
    pub(crate) fn reserve_port() -> u16 {
        free_port()
    }

    /// Starts a broker on `port` with an empty data directory.
    pub(crate) fn start_on(port: u16) -> Broker {
        let data_dir =
            std::env::temp_dir().join(format!("rill-noida-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        std::fs::create_dir_all(&data_dir).expect("broker data directory");
        let mut broker = Broker {
            child: spawn(port, &data_dir),
            bootstrap: format!("127.0.0.1:{port}"),
            data_dir,
        };
        broker.wait_listening();
        broker
    }

    /// Stops the broker with SIGTERM (noida-db saves its data; with SIGKILL it loses records
    /// it acknowledged shortly before, which no client can make up for), leaves nothing
    /// listening for `down_for`, and starts it again on the same port and data directory.
    pub(crate) fn stop_and_restart(&mut self, down_for: Duration) {
        signal_group(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !matches!(self.child.try_wait(), Ok(Some(_))) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        std::thread::sleep(down_for);
        let port: u16 = self
            .bootstrap
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        self.child = spawn(port, &self.data_dir);
        self.wait_listening();
    }

    fn kill(&mut self) {
        // Only while the leader is unreaped: its pid (the group's id) cannot be reused yet.
        if matches!(self.child.try_wait(), Ok(None)) {
            signal_group(self.child.id(), "KILL");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait_listening(&mut self) {
        let port = self
            .bootstrap
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(format!("127.0.0.1:{port}")).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("noida-db exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "noida-db did not listen: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("broker.log")).unwrap_or_default()
    }

    /// Creates a topic through the Kafka admin API.
    pub(crate) fn create_topic(&self, name: &str, partitions: i32) {
        rill::connectors::kafka::create_topics(
            &self.bootstrap,
            &[(name, partitions)],
            Duration::from_secs(30),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Sends `signal` to every process of process group `group` (the broker and anything it
/// started), one pid at a time: a negative pid on `kill`'s command line is parsed as an
/// option by some `kill` builds, with far worse effects than a missed signal.
pub(crate) fn signal_group(group: u32, signal: &str) {
    let listed = Command::new("pgrep")
        .args(["-g", &group.to_string()])
        .output();
    let mut pids: Vec<String> = listed
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter(|p| p.parse::<u32>().is_ok_and(|p| p > 1))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    // The leader itself: still unreaped by the caller, so its pid cannot have been reused.
    pids.push(group.to_string());
    pids.dedup();
    for pid in pids {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), pid.as_str()])
            .status();
    }
}

/// Starts noida-db on `port` with `data_dir`, in a process group of its own (so that killing
/// the group ends whatever it started), logging into the data directory.
fn spawn(port: u16, data_dir: &std::path::Path) -> Child {
    use std::os::unix::process::CommandExt;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("broker.log"))
        .expect("broker log");
    Command::new(binary())
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
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("noida-db starts")
}
