//! The one place the engine's hand-written concurrency protocol takes its primitives from.
//!
//! Under `--cfg loom` these are loom's model-checked types, so the loom tests in
//! `engine/tests/loom_*.rs` explore every interleaving of the real protocol code rather than of
//! a copy. Only the protocol (the worker signal) imports from here; plain counters that carry no
//! ordering obligations use `std` directly.

#[cfg(not(loom))]
pub(crate) use std::sync::{
    atomic::{fence, AtomicU8, Ordering},
    Mutex,
};
#[cfg(not(loom))]
pub(crate) use std::thread::{current as current_thread, Thread};

#[cfg(loom)]
pub(crate) use loom::sync::{
    atomic::{fence, AtomicU8, Ordering},
    Mutex,
};
#[cfg(loom)]
pub(crate) use loom::thread::{current as current_thread, Thread};

/// Parks the current thread until it is unparked, or until `deadline` if one is given.
///
/// loom has no timed park; its models never use deadlines, so the model parks untimed.
#[cfg(not(loom))]
pub(crate) fn park_until(deadline: Option<std::time::Instant>) {
    match deadline {
        None => std::thread::park(),
        Some(at) => {
            let now = std::time::Instant::now();
            if at > now {
                std::thread::park_timeout(at - now);
            }
        }
    }
}

#[cfg(loom)]
pub(crate) fn park_until(_deadline: Option<std::time::Instant>) {
    loom::thread::park();
}
