//! A bounded source over in-memory data, split across the workers.

use std::sync::Arc;

use rill_engine::state::{decode, encode, RestoredState};
use rill_engine::{BoxError, Emit, Progress, Source, SourceReader, WorkerContext};

/// How a [`MemorySource`] hands each worker its share of the data.
pub trait Partition: Send + Sync + 'static {
    /// The iterator of one worker's share.
    type Iter: Iterator;
    /// The share of worker `worker` out of `workers`.
    fn part(&self, worker: usize, workers: usize) -> Self::Iter;
}

/// Items of a shared `Vec`: worker w gets items w, w + P, w + 2P, ...
#[derive(Debug)]
pub struct VecPartition<T>(Arc<Vec<T>>);

/// One worker's share of a [`VecPartition`].
#[derive(Debug)]
pub struct VecShare<T> {
    items: Arc<Vec<T>>,
    next: usize,
    step: usize,
}

impl<T: Clone> Iterator for VecShare<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        let item = self.items.get(self.next)?.clone();
        self.next += self.step;
        Some(item)
    }
}

impl<T: Clone + Send + Sync + 'static> Partition for VecPartition<T> {
    type Iter = VecShare<T>;
    fn part(&self, worker: usize, workers: usize) -> VecShare<T> {
        VecShare {
            items: self.0.clone(),
            next: worker,
            step: workers.max(1),
        }
    }
}

/// Shares made by a function of (worker, workers).
#[derive(Debug, Clone)]
pub struct FnPartition<F>(F);

impl<F, I> Partition for FnPartition<F>
where
    F: Fn(usize, usize) -> I + Send + Sync + 'static,
    I: IntoIterator,
{
    type Iter = I::IntoIter;
    fn part(&self, worker: usize, workers: usize) -> I::IntoIter {
        (self.0)(worker, workers).into_iter()
    }
}

/// A bounded source of in-memory records. The job's run ends when every worker has emitted
/// its share.
///
/// ```
/// use rill_connectors::{CollectSink, MemorySource};
/// use rill_engine::{Config, Job};
///
/// // Each worker generates its own share: no shared Vec, no cloning.
/// let job = Job::new("numbers");
/// let out = CollectSink::default();
/// job.source(MemorySource::from_fn(|worker, workers| (worker as u64..1000).step_by(workers)))
///     .sink(out.clone());
/// job.run(Config::default().with_workers(2))?.await_termination()?;
/// assert_eq!(out.take().iter().sum::<u64>(), 499_500);
/// # Ok::<(), rill_engine::JobError>(())
/// ```
#[derive(Debug)]
pub struct MemorySource<P> {
    partition: P,
    name: String,
}

impl<T: Clone + Send + Sync + 'static> MemorySource<VecPartition<T>> {
    /// A source over `items`; worker w of P emits items w, w + P, ... (cloned).
    pub fn new(items: Vec<T>) -> Self {
        Self {
            partition: VecPartition(Arc::new(items)),
            name: "memory".into(),
        }
    }
}

impl<F, I> MemorySource<FnPartition<F>>
where
    F: Fn(usize, usize) -> I + Send + Sync + 'static,
    I: IntoIterator,
{
    /// A source whose share on worker `w` of `P` is `make(w, P)`.
    pub fn from_fn(make: F) -> Self {
        Self {
            partition: FnPartition(make),
            name: "memory".into(),
        }
    }
}

impl<P> MemorySource<P> {
    /// Sets the name shown in metrics and errors.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

impl<P: Partition> Source for MemorySource<P> {
    type Reader = MemoryReader<P::Iter>;

    fn create(&self, ctx: &WorkerContext) -> Result<Self::Reader, BoxError> {
        Ok(MemoryReader {
            items: self.partition.part(ctx.worker(), ctx.workers()),
            emitted: 0,
        })
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// One worker's [`MemorySource`].
#[derive(Debug)]
pub struct MemoryReader<I> {
    items: I,
    emitted: u64,
}

impl<I: Iterator> SourceReader for MemoryReader<I> {
    type Out = I::Item;

    #[inline]
    fn poll<E: Emit<I::Item>>(&mut self, out: &mut E, budget: usize) -> Result<Progress, BoxError> {
        for _ in 0..budget {
            if out.should_yield() {
                return Ok(Progress::Busy);
            }
            match self.items.next() {
                Some(item) => {
                    self.emitted += 1;
                    out.emit(item)
                }
                None => return Ok(Progress::Done),
            }
        }
        Ok(Progress::Busy)
    }

    /// The number of items this worker has emitted.
    fn position(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        Ok(Some(encode(&self.emitted)?))
    }

    /// Skips what this worker emitted before the checkpoint. The split of the items depends
    /// on the number of workers, so it must not change.
    fn restore(&mut self, state: &RestoredState<'_>) -> Result<(), BoxError> {
        let (worker, workers) = state.worker();
        let blobs = state.worker_blobs();
        if blobs.len() != workers {
            return Err(format!(
                "a memory source splits its items by worker: checkpointed with {} workers, \
                 restored with {workers}",
                blobs.len()
            )
            .into());
        }
        let Some(blob) = &blobs[worker] else {
            return Ok(());
        };
        let skip: u64 = decode(blob, state.node())?;
        for _ in 0..skip {
            if self.items.next().is_none() {
                break;
            }
        }
        self.emitted = skip;
        Ok(())
    }
}
