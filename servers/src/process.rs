//! Ports and process groups.

use std::net::TcpListener;
use std::process::Command;

use crate::ServerError;

/// A loopback port nothing listens on right now.
pub fn free_port() -> Result<u16, ServerError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(ServerError::NoPort)
}

/// Sends `signal` (`TERM`, `KILL`) to every process of process group `group` (a server and
/// anything it started), one pid at a time: a negative pid on `kill`'s command line is parsed
/// as an option by some `kill` builds, with far worse effects than a missed signal. The
/// caller must not have reaped the group's leader yet, so that its pid cannot be reused.
pub fn signal_group(group: u32, signal: &str) {
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
    pids.push(group.to_string());
    pids.dedup();
    for pid in pids {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), pid.as_str()])
            .status();
    }
}
