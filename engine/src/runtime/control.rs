//! The control plane's shared state: stop and abort flags, worker signals, and how each
//! worker reports its end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::checkpoint::epoch::CoordinatorEvent;
use crate::error::JobError;
use crate::runtime::signal::WorkerSignal;

/// State shared by the handle and the workers of a running job.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Graceful stop: sources end, everything in flight drains, sinks close.
    pub(crate) stop: Arc<AtomicBool>,
    /// Immediate stop after a failure (or when the handle is dropped).
    pub(crate) abort: Arc<AtomicBool>,
    pub(crate) signals: Arc<[Arc<WorkerSignal>]>,
    /// The checkpoint coordinator, which turns a stop into a final epoch.
    pub(crate) coordinator: Option<Sender<CoordinatorEvent>>,
}

impl Shared {
    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(c) = &self.coordinator {
            let _ = c.send(CoordinatorEvent::Stop);
        }
        self.wake_all();
    }

    pub(crate) fn request_abort(&self) {
        self.abort.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    fn wake_all(&self) {
        for s in self.signals.iter() {
            s.notify();
        }
    }
}

/// How a worker ended, sent to the job handle over the control channel.
#[derive(Debug)]
pub(crate) enum WorkerEvent {
    Finished,
    Failed(JobError),
}
