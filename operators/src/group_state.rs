//! The handle a state function gets for its key: [`GroupState`], and the key's new values,
//! [`Values`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use rill_engine::EventTime;

/// When a key's state function is called again with no values (see
/// [`GroupState::has_timed_out`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GroupTimeout {
    /// When the processing-time clock (milliseconds since the Unix epoch) reaches it.
    ProcessingTime(i64),
    /// When the watermark reaches this event time.
    EventTime(EventTime),
}

impl GroupTimeout {
    /// The time, on its clock.
    pub fn at(&self) -> i64 {
        match *self {
            GroupTimeout::ProcessingTime(t) | GroupTimeout::EventTime(t) => t,
        }
    }
}

/// One key's state, and the timeout it has set, as a state function sees them.
///
/// Spark's `GroupState`: read with [`get`](Self::get), write with
/// [`update`](Self::update), drop with [`remove`](Self::remove). A timeout lasts for one
/// call: set it on every call that should keep one (as Spark asks for processing-time
/// timeouts), with [`set_timeout_duration`](Self::set_timeout_duration) (processing time)
/// or [`set_timeout_timestamp`](Self::set_timeout_timestamp) (event time, fired by the
/// watermark). A key with neither state nor timeout after a call is forgotten.
///
/// ```
/// use rill_operators::GroupState;
/// let (mut state, mut timeout) = (None, None);
/// let mut handle = GroupState::new(&mut state, &mut timeout, false, 1_000, 50_000);
/// assert!(!handle.exists());
/// handle.update(3u32);
/// handle.set_timeout_timestamp(2_000);
/// assert_eq!(handle.get(), Some(&3));
/// assert_eq!(state, Some(3));
/// assert_eq!(timeout, Some(rill_operators::GroupTimeout::EventTime(2_000)));
/// ```
#[derive(Debug)]
pub struct GroupState<'a, S> {
    state: &'a mut Option<S>,
    timeout: &'a mut Option<GroupTimeout>,
    timed_out: bool,
    watermark: EventTime,
    now: i64,
}

impl<'a, S> GroupState<'a, S> {
    /// A handle over a key's `state` and `timeout`, for a call that is (or is not) a
    /// timeout, at `watermark` and processing time `now`. The operator makes these; tests of
    /// a state function can too.
    pub fn new(
        state: &'a mut Option<S>,
        timeout: &'a mut Option<GroupTimeout>,
        timed_out: bool,
        watermark: EventTime,
        now: i64,
    ) -> Self {
        Self {
            state,
            timeout,
            timed_out,
            watermark,
            now,
        }
    }

    /// The key's state, if it has one.
    pub fn get(&self) -> Option<&S> {
        self.state.as_ref()
    }

    /// The key's state for update in place, if it has one.
    pub fn get_mut(&mut self) -> Option<&mut S> {
        self.state.as_mut()
    }

    /// True if the key has state.
    pub fn exists(&self) -> bool {
        self.state.is_some()
    }

    /// Sets the key's state.
    pub fn update(&mut self, state: S) {
        *self.state = Some(state);
    }

    /// Removes the key's state (and returns it).
    pub fn remove(&mut self) -> Option<S> {
        self.state.take()
    }

    /// True if this call is the key's timeout firing (it then comes with no values).
    pub fn has_timed_out(&self) -> bool {
        self.timed_out
    }

    /// Calls the function again for this key, with no values, once `duration` of processing
    /// time has passed (unless a later call sets another timeout or none).
    pub fn set_timeout_duration(&mut self, duration: Duration) {
        let d = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        *self.timeout = Some(GroupTimeout::ProcessingTime(self.now.saturating_add(d)));
    }

    /// Calls the function again for this key, with no values, when the watermark reaches
    /// `at` (at once, at the next watermark, if it already has).
    pub fn set_timeout_timestamp(&mut self, at: EventTime) {
        *self.timeout = Some(GroupTimeout::EventTime(at));
    }

    /// Sets no timeout for this key.
    pub fn remove_timeout(&mut self) {
        *self.timeout = None;
    }

    /// The timeout set in this call, if any.
    pub fn timeout(&self) -> Option<GroupTimeout> {
        *self.timeout
    }

    /// The operator's event-time watermark (`i64::MIN` before the first).
    pub fn current_watermark(&self) -> EventTime {
        self.watermark
    }

    /// The processing time of this call, in milliseconds since the Unix epoch, on the job's
    /// clock.
    pub fn current_processing_time(&self) -> i64 {
        self.now
    }
}

/// The new values of a key for one call of its state function, in arrival order: one value
/// in continuous mode, all of the batch's values in micro-batch mode, none on a timeout.
#[derive(Debug)]
pub struct Values<'a, V>(ValuesInner<'a, V>);

#[derive(Debug)]
enum ValuesInner<'a, V> {
    One(Option<V>),
    Many(std::vec::Drain<'a, V>),
}

impl<'a, V> Values<'a, V> {
    /// A single value.
    pub fn one(value: V) -> Self {
        Values(ValuesInner::One(Some(value)))
    }

    /// No value (a timeout).
    pub fn none() -> Self {
        Values(ValuesInner::One(None))
    }

    /// All the values drained from `values`.
    pub fn drain(values: &'a mut Vec<V>) -> Self {
        Values(ValuesInner::Many(values.drain(..)))
    }
}

impl<V> Iterator for Values<'_, V> {
    type Item = V;

    #[inline]
    fn next(&mut self) -> Option<V> {
        match &mut self.0 {
            ValuesInner::One(v) => v.take(),
            ValuesInner::Many(d) => d.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = match &self.0 {
            ValuesInner::One(v) => usize::from(v.is_some()),
            ValuesInner::Many(d) => d.len(),
        };
        (n, Some(n))
    }
}

impl<V> ExactSizeIterator for Values<'_, V> {}
