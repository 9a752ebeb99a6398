//! A real Redis server for the tests that need one: Debian's `redis-server`, which
//! `scripts/test.sh` installs when it is missing. Started on a free loopback port with no
//! persistence, in a process group of its own, and killed when the handle drops. A test that
//! cannot start it fails with the reason: it never silently skips.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::broker::{free_port, signal_group};

/// A running `redis-server`; killed on drop.
pub(crate) struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// Starts a server on a free port. The port is free when chosen but another process (a
    /// mock Kafka cluster of a test running alongside) may take it before redis-server binds
    /// it: then redis-server exits, and another port is tried.
    pub(crate) fn start() -> RedisServer {
        for _ in 0..10 {
            if let Some(server) = Self::try_start(free_port()) {
                return server;
            }
        }
        panic!("redis-server could not bind a free loopback port in 10 tries");
    }

    /// Starts a server on `port` (to bring one back where a job expects it).
    pub(crate) fn start_on(port: u16) -> RedisServer {
        Self::try_start(port).unwrap_or_else(|| panic!("redis-server could not bind port {port}"))
    }

    /// Starts a server on `port`; `None` if it exits (the port is taken).
    fn try_start(port: u16) -> Option<RedisServer> {
        use std::os::unix::process::CommandExt;
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("redis-server does not start ({e}): `bash scripts/test.sh` installs it")
            });
        let mut server = RedisServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        // Ready when this server answers PING: a connection alone could be another process's.
        while !server.answers_ping() {
            if let Ok(Some(_)) = server.child.try_wait() {
                return None;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    /// True when a PING on the port gets PONG and our server still runs (a PONG from
    /// another test's server on a port ours could not bind does not count).
    fn answers_ping(&mut self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut answer = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok()
            && s.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
            && matches!(self.child.try_wait(), Ok(None))
    }

    /// `redis://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// A connection for the test's own reads.
    pub(crate) fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("a test connection to redis-server")
    }

    /// Kills the server at once (a crash, not a shutdown).
    pub(crate) fn kill(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal_group(self.child.id(), "KILL");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
