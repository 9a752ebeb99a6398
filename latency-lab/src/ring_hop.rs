//! The floor of a one-exchange pipeline: the open-loop schedule on bare threads with the
//! pipeline's ring mesh between them, and no engine.
//!
//! Each of `workers` threads is a generator and a receiver at once, as a rill worker is: it
//! spins until its next record is due, pushes the due time into the `rtrb` ring of the
//! receiving thread (records go round the threads as consecutive keys go round the workers),
//! and in between pops its own input rings and records how late each record arrived. With
//! one worker the ring is a thread's ring to itself; at P = 2 it is the same 2 x 2 mesh as the
//! pipeline's `key_by`. What rill adds above this row is the engine's own cost; what this row
//! adds above the bare schedule is the cross-core handoff.

use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use rill::time::now_nanos;
use rtrb::{Consumer, Producer, RingBuffer};

use crate::baseline::{cores, new_histogram};

/// The ends of one thread: its rings to every thread, and every thread's ring to it.
type Ends = (Vec<Producer<u64>>, Vec<Consumer<u64>>);

/// Runs the schedule at `rate` records/s in total through the mesh for `warmup + duration`,
/// returning the latency histogram (ns, due time to receipt) of the measured part.
pub(crate) fn measure(
    rate: f64,
    workers: usize,
    pin: bool,
    warmup: Duration,
    duration: Duration,
    capacity: usize,
) -> Histogram<u64> {
    let workers = workers.max(1);
    let mut ends: Vec<Ends> = (0..workers).map(|_| (Vec::new(), Vec::new())).collect();
    for sender in 0..workers {
        for receiver in 0..workers {
            let (p, c) = RingBuffer::new(capacity.max(1));
            ends[sender].0.push(p);
            ends[receiver].1.push(c);
        }
    }
    let cores = cores(pin);
    let barrier = Arc::new(Barrier::new(workers));
    let start = Arc::new(Mutex::new(None::<u64>));
    let interval = 1e9 / rate;
    let threads: Vec<_> = ends
        .into_iter()
        .enumerate()
        .map(|(w, (mut out, mut input))| {
            let (barrier, start) = (barrier.clone(), start.clone());
            let core = cores.get(w % cores.len().max(1)).copied();
            std::thread::spawn(move || {
                if let Some(core) = core {
                    let _ = core_affinity::set_for_current(core);
                }
                // One clock start for all threads, so due times are comparable across them.
                if barrier.wait().is_leader() {
                    if let Ok(mut s) = start.lock() {
                        *s = Some(now_nanos());
                    }
                }
                barrier.wait();
                let start = start.lock().ok().and_then(|s| *s).unwrap_or_else(now_nanos);
                let measure_from = start + warmup.as_nanos() as u64;
                let end = measure_from + duration.as_nanos() as u64;
                // Records still in flight at the end arrive within this.
                let drain_until = end + 50_000_000;
                let mut h = new_histogram();
                let mut seq = w as u64;
                let mut pending: Option<(usize, u64)> = None;
                loop {
                    let now = now_nanos();
                    if now >= drain_until {
                        break;
                    }
                    if pending.is_none() {
                        let due = start + (seq as f64 * interval) as u64;
                        if due < end && now >= due {
                            pending = Some(((seq % workers as u64) as usize, due));
                            seq += workers as u64;
                        }
                    }
                    if let Some((dest, due)) = pending {
                        if out[dest].push(due).is_ok() {
                            pending = None;
                        }
                    }
                    for ring in input.iter_mut() {
                        while let Ok(due) = ring.pop() {
                            if due >= measure_from {
                                h.saturating_record((now_nanos() - due).max(1));
                            }
                        }
                    }
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
