//! The platform's own latency floor: the same open-loop schedule with no engine at all.
//!
//! Each of `workers` threads spins until its next record is due and records how late it got
//! there: exactly what the generator and the latency sink would measure if the pipeline between
//! them cost nothing. On a quiet bare-metal core this is tens of nanoseconds; on a shared VM it
//! shows the hypervisor's and the OS's stalls (jHiccup's idea), which every engine run on the
//! machine inherits. rill's rows should be read against this row.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use hdrhistogram::Histogram;
use rill::time::now_nanos;

/// Runs the bare schedule at `rate` records/s in total over `workers` threads for
/// `warmup + duration`, returning the lateness histogram (ns) of the measured part.
pub(crate) fn measure(
    rate: f64,
    workers: usize,
    pin: bool,
    warmup: Duration,
    duration: Duration,
) -> Histogram<u64> {
    let workers = workers.max(1);
    let cores = cores(pin);
    let barrier = Arc::new(Barrier::new(workers));
    let interval = 1e9 / rate;
    let threads: Vec<_> = (0..workers)
        .map(|w| {
            let barrier = barrier.clone();
            let core = cores.get(w % cores.len().max(1)).copied();
            std::thread::spawn(move || {
                if let Some(core) = core {
                    let _ = core_affinity::set_for_current(core);
                }
                barrier.wait();
                let start = now_nanos();
                let measure_from = start + warmup.as_nanos() as u64;
                let end = measure_from + duration.as_nanos() as u64;
                let mut h = new_histogram();
                let mut seq = w as u64;
                loop {
                    let due = start + (seq as f64 * interval) as u64;
                    if due >= end {
                        break;
                    }
                    let mut now = now_nanos();
                    while now < due {
                        std::hint::spin_loop();
                        now = now_nanos();
                    }
                    if due >= measure_from {
                        h.saturating_record((now - due).max(1));
                    }
                    seq += workers as u64;
                }
                h
            })
        })
        .collect();
    let mut merged = new_histogram();
    for t in threads {
        if let Ok(h) = t.join() {
            let _ = merged.add(&h);
        }
    }
    merged
}

/// The cores to pin threads to (thread i on core i modulo their number), or none: the same
/// assignment as the engine's `Config::pin_workers`.
pub(crate) fn cores(pin: bool) -> Vec<core_affinity::CoreId> {
    if pin {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    }
}

/// A latency histogram in nanoseconds, 1 ns to 60 s, 3 significant digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3)
        .unwrap_or_else(|_| unreachable!("constant, valid histogram bounds"))
}
