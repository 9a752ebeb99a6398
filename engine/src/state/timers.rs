//! Timers of a keyed operator: per key, at an event time or a processing time.

use std::collections::BTreeMap;

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimeDomain {
    /// Fires when the operator's watermark reaches the timer's time.
    EventTime,
    /// Fires when the wall clock (milliseconds since the Unix epoch) reaches it.
    ProcessingTime,
}

/// The pending timers of one keyed operator on one worker, in firing order.
///
/// The queue is an index, not the record: an operator keeps each key's timers in its keyed
/// state (a [`KeyedState`](crate::state::KeyedState) value), so they are checkpointed with
/// the key's key group and move with it when a job restores at another worker count; on
/// restore it schedules them here again. Firing is in time order (among timers of the same
/// time, in no particular order). Scheduling and firing cost a B-tree lookup and a push, whatever the
/// number of keys: a (key, time) scheduled twice fires twice, so an operator schedules each
/// of its timers once (it knows from its state whether one is new) or tolerates the repeat.
///
/// ```
/// use rill_engine::state::{TimeDomain, TimerQueue};
/// let mut timers = TimerQueue::default();
/// timers.schedule(TimeDomain::EventTime, 60_000, "ad-1");
/// timers.schedule(TimeDomain::EventTime, 30_000, "ad-2");
/// // The watermark reaches 59,999: only the first timer is due.
/// assert_eq!(timers.pop_due(TimeDomain::EventTime, 59_999), Some((30_000, "ad-2")));
/// assert_eq!(timers.pop_due(TimeDomain::EventTime, 59_999), None);
/// assert_eq!(timers.next(TimeDomain::EventTime), Some(60_000));
/// ```
#[derive(Debug, Clone)]
pub struct TimerQueue<K> {
    event: BTreeMap<i64, Vec<K>>,
    processing: BTreeMap<i64, Vec<K>>,
    len: usize,
}

impl<K> Default for TimerQueue<K> {
    fn default() -> Self {
        Self {
            event: BTreeMap::new(),
            processing: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<K: PartialEq> TimerQueue<K> {
    fn domain(&mut self, domain: TimeDomain) -> &mut BTreeMap<i64, Vec<K>> {
        match domain {
            TimeDomain::EventTime => &mut self.event,
            TimeDomain::ProcessingTime => &mut self.processing,
        }
    }

    /// Schedules `key`'s timer at `at`.
    pub fn schedule(&mut self, domain: TimeDomain, at: i64, key: K) {
        self.domain(domain).entry(at).or_default().push(key);
        self.len += 1;
    }

    /// Cancels one of `key`'s timers at `at`; true if there was one. Costs a scan of the
    /// timers of that time.
    pub fn cancel(&mut self, domain: TimeDomain, at: i64, key: &K) -> bool {
        let map = self.domain(domain);
        let Some(keys) = map.get_mut(&at) else {
            return false;
        };
        let Some(i) = keys.iter().position(|k| k == key) else {
            return false;
        };
        keys.remove(i);
        if keys.is_empty() {
            map.remove(&at);
        }
        self.len -= 1;
        true
    }

    /// Removes and returns the earliest timer at or before `now` (the watermark, or the wall
    /// clock in milliseconds), if any.
    pub fn pop_due(&mut self, domain: TimeDomain, now: i64) -> Option<(i64, K)> {
        let map = self.domain(domain);
        let mut entry = map.first_entry()?;
        let at = *entry.key();
        if at > now {
            return None;
        }
        let keys = entry.get_mut();
        // From the back: thousands of keys may share a time (a window's end), and taking
        // the first would shift all the others each time.
        let Some(key) = keys.pop() else {
            entry.remove();
            return None;
        };
        if keys.is_empty() {
            entry.remove();
        }
        self.len -= 1;
        Some((at, key))
    }

    /// The time of the earliest timer of `domain`.
    pub fn next(&self, domain: TimeDomain) -> Option<i64> {
        let map = match domain {
            TimeDomain::EventTime => &self.event,
            TimeDomain::ProcessingTime => &self.processing,
        };
        map.keys().next().copied()
    }

    /// Pending timers of both domains.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_time_order() {
        let mut q = TimerQueue::default();
        for (at, k) in [(30, "c"), (10, "a"), (30, "b"), (20, "x")] {
            q.schedule(TimeDomain::EventTime, at, k);
        }
        q.schedule(TimeDomain::ProcessingTime, 5, "p");
        assert!(q.cancel(TimeDomain::EventTime, 20, &"x"));
        assert!(!q.cancel(TimeDomain::EventTime, 20, &"x"));
        let mut fired = Vec::new();
        while let Some(t) = q.pop_due(TimeDomain::EventTime, 100) {
            fired.push(t);
        }
        assert_eq!(fired, [(10, "a"), (30, "b"), (30, "c")]);
        assert_eq!(q.len(), 1, "the processing-time timer is untouched");
        assert_eq!(q.pop_due(TimeDomain::ProcessingTime, 4), None);
        assert_eq!(q.pop_due(TimeDomain::ProcessingTime, 5), Some((5, "p")));
        assert!(q.is_empty());
    }
}
