//! A real S3-compatible server for the object-store tests: moto's server from PyPI.
//!
//! It is installed with pip into `target/tools/` the first time a test needs it (like the
//! Kafka broker), started on a free loopback port in a process group of its own, and killed
//! when the handle drops. Buckets are created over the S3 protocol itself (a plain
//! `PUT /bucket`). If it cannot be installed or started, the test fails with the reason.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::broker::{free_port, signal_group};

const VERSION: &str = "5.2.5";

/// The directory moto is installed in (its `PYTHONPATH`): only S3 and the server's web
/// stack, as `moto[server]` would pull every AWS service's dependencies.
fn installed() -> PathBuf {
    rill_servers::pip_install(
        &format!("moto-{VERSION}"),
        &[&format!("moto[s3]=={VERSION}"), "flask<4", "flask-cors<7"],
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A running moto S3 server; killed on drop.
pub(crate) struct S3Server {
    child: Child,
    port: u16,
}

impl S3Server {
    /// Starts a server on a free loopback port and waits until it answers.
    pub(crate) fn start() -> S3Server {
        let path = installed();
        for _ in 0..10 {
            use std::os::unix::process::CommandExt;
            let port = free_port();
            let child = Command::new("python3")
                .args([
                    "-m",
                    "moto.server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ])
                .env("PYTHONPATH", &path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("python3 starts moto's server");
            let mut server = S3Server { child, port };
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if server.request("GET", "/").is_some_and(|s| s == 200) {
                    return server;
                }
                if let Ok(Some(_)) = server.child.try_wait() {
                    break; // the port was taken: try another
                }
                assert!(Instant::now() < deadline, "moto did not answer on {port}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("moto's S3 server could not bind a free loopback port in 10 tries");
    }

    /// One plain HTTP request; the status code, if the server answered and still runs.
    fn request(&mut self, method: &str, path: &str) -> Option<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        s.write_all(req.as_bytes()).ok()?;
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let status = String::from_utf8_lossy(&answer)
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        matches!(self.child.try_wait(), Ok(None)).then_some(status)
    }

    /// Creates a bucket.
    pub(crate) fn create_bucket(&mut self, bucket: &str) {
        let status = self.request("PUT", &format!("/{bucket}"));
        assert_eq!(status, Some(200), "creating bucket {bucket}");
    }

    /// `http://127.0.0.1:PORT`, the endpoint for `S3Settings`/`--s3-endpoint`.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Settings that reach this server; requests are retried for `retry` at most.
    pub(crate) fn settings(&self, retry: Duration) -> rill::files::S3Settings {
        set_test_credentials();
        rill::files::S3Settings {
            endpoint: Some(self.endpoint()),
            region: Some("us-east-1".into()),
            retry_timeout: retry,
        }
    }

    /// Kills the server at once.
    pub(crate) fn kill(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal_group(self.child.id(), "KILL");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// moto accepts any credentials, but the client signs requests and needs some.
pub(crate) fn set_test_credentials() {
    // Every test sets the same values, so a race between tests is harmless.
    std::env::set_var("AWS_ACCESS_KEY_ID", "rill-test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "rill-test-secret");
    std::env::set_var("AWS_REGION", "us-east-1");
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}
