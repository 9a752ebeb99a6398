//! The real servers rill is tried against, run as processes of their own: installed from
//! PyPI into the workspace's `target/tools/` on first use (no system install, nothing fetched
//! afterwards), started on free loopback ports, and stopped by process group, because some
//! entry points are wrappers whose child outlives them.
//!
//! - [`Noida`]: noida-db's Kafka broker, a broker that is not in the client's process.
//! - [`pip_install`], [`free_port`], [`signal_group`]: what any such server needs.
//!
//! ```no_run
//! let broker = rill_servers::Noida::start()?;
//! println!("bootstrap.servers = {}", broker.bootstrap());
//! // Killed, with its data directory removed, when `broker` drops.
//! # Ok::<(), rill_servers::ServerError>(())
//! ```

mod error;
mod install;
mod noida;
mod process;

pub use error::ServerError;
pub use install::{pip_install, tools_dir};
pub use noida::Noida;
pub use process::{free_port, signal_group};
