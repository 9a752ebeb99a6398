//! A real Kafka broker process for the tests that need one: noida-db 0.2.3 from PyPI.
//!
//! It is installed with pip into `target/tools/` the first time a test needs it (no system
//! install, no network afterwards), started on a free loopback port with its own data
//! directory, and killed when the handle drops. If it cannot be installed or started, the test
//! fails with the reason: it never silently skips.

use rill::engine::sync::Lock;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const VERSION: &str = "0.2.3";

/// Serializes installs between the tests of one binary (cargo runs binaries one at a time).
static INSTALL: Mutex<()> = Mutex::new(());

fn tools_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("tools")
        .join(format!("noida-db-{VERSION}"))
}

/// The broker binary, installed on first use.
fn binary() -> PathBuf {
    let _guard = INSTALL.locked();
    let dir = tools_dir();
    let bin = dir.join("noida_db").join("noida-db");
    if bin.exists() {
        return bin;
    }
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(["--no-warn-script-location", "--target"])
        .arg(&dir)
        .arg(format!("noida-db=={VERSION}"))
        .output()
        .expect("python3 runs (needed to install the test broker)");
    assert!(
        out.status.success() && bin.exists(),
        "installing noida-db {VERSION} into {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

fn free_port() -> u16 {
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
        let bin = binary();
        let port = free_port();
        let data_dir =
            std::env::temp_dir().join(format!("rill-noida-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        std::fs::create_dir_all(&data_dir).expect("broker data directory");
        let log = std::fs::File::create(data_dir.join("broker.log")).expect("broker log");
        let child = Command::new(&bin)
            .args([
                "start",
                "--only",
                "kafka",
                "--kafka-port",
                &port.to_string(),
            ])
            .arg("--data-dir")
            .arg(&data_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("noida-db starts");
        let mut broker = Broker {
            child,
            bootstrap: format!("127.0.0.1:{port}"),
            data_dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = broker.child.try_wait() {
                panic!("noida-db exited ({status}): {}", broker.log());
            }
            assert!(
                Instant::now() < deadline,
                "noida-db did not listen: {}",
                broker.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
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
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
