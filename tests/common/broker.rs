//! A real Kafka broker process for the tests that need one: noida-db, through
//! [`rill_servers::Noida`] (installed into `target/tools/` the first time a test needs it,
//! started on a free loopback port, killed when the handle drops). If it cannot be installed
//! or started, the test fails with the reason: it never silently skips.

use std::time::Duration;

pub(crate) use rill_servers::signal_group;
use rill_servers::Noida;

/// A free loopback port (panics when there is none: the test cannot run).
pub(crate) fn free_port() -> u16 {
    rill_servers::free_port().unwrap_or_else(|e| panic!("{e}"))
}

/// A running noida-db Kafka broker; killed on drop.
pub(crate) struct Broker {
    noida: Noida,
    /// `bootstrap.servers` of the broker.
    pub bootstrap: String,
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
        let noida = Noida::start_on(port).unwrap_or_else(|e| panic!("{e}"));
        Broker {
            bootstrap: noida.bootstrap().to_string(),
            noida,
        }
    }

    /// Stops the broker with SIGTERM, leaves nothing listening for `down_for`, and starts it
    /// again on the same port and data directory (see [`Noida::stop_and_restart`]).
    pub(crate) fn stop_and_restart(&mut self, down_for: Duration) {
        self.noida
            .stop_and_restart(down_for)
            .unwrap_or_else(|e| panic!("{e}"));
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
