//! State time-to-live: how long an untouched key's state is kept, and the queue that removes
//! it a little at a time.

use std::collections::BTreeMap;
use std::time::Duration;

use super::timers::TimeDomain;

/// How long a key's state lives after it was last written (Flink's `StateTtlConfig`): once
/// `ttl` has passed on the chosen clock, the state is never returned again, and it is removed
/// from memory and from later checkpoints.
///
/// - [`processing_time`](Self::processing_time): the wall clock (the job's
///   [`ProcessingClock`](crate::time::ProcessingClock)).
/// - [`event_time`](Self::event_time): the operator's watermark; a key written when the
///   watermark was `w` expires when the watermark reaches `w + ttl`.
///
/// Writes (an update, an insert) refresh a key's time; reads do not. Set it on a keyed stream
/// with [`KeyedStream::state_ttl`](crate::KeyedStream::state_ttl); every keyed operator built
/// from it (count, reduce, aggregate, windows, state functions) applies it.
///
/// ```
/// use std::time::Duration;
/// use rill_engine::state::{StateTtl, TimeDomain};
/// let ttl = StateTtl::processing_time(Duration::from_secs(3600));
/// assert_eq!(ttl.domain(), TimeDomain::ProcessingTime);
/// assert_eq!(ttl.ttl(), Duration::from_secs(3600));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateTtl {
    millis: i64,
    domain: TimeDomain,
}

impl StateTtl {
    /// State untouched for `ttl` of wall-clock time expires.
    pub fn processing_time(ttl: Duration) -> Self {
        Self::new(ttl, TimeDomain::ProcessingTime)
    }

    /// State untouched while the watermark advanced by `ttl` expires.
    pub fn event_time(ttl: Duration) -> Self {
        Self::new(ttl, TimeDomain::EventTime)
    }

    fn new(ttl: Duration, domain: TimeDomain) -> Self {
        Self {
            millis: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1),
            domain,
        }
    }

    /// The time to live.
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.millis.unsigned_abs())
    }

    /// The clock it follows.
    pub fn domain(&self) -> TimeDomain {
        self.domain
    }
}

/// Most keys one clock advance removes; the rest wait for the next advance (or for the
/// inserts, each of which removes a couple), so that a wave of expiring keys never holds a
/// worker for long between records.
pub(crate) const EXPIRE_PER_ADVANCE: usize = 1024;

/// The expiry queue of one keyed state: when each key may have expired, coarsely.
///
/// A key is queued once, when it is inserted, at its write time plus the TTL, rounded up to
/// a slot of 1/64 of the TTL (so keys written close together share a vector). Later writes
/// only refresh the key's stamp in the table; when the queue reaches the key, the state
/// looks at the stamp and either removes the key or queues it again at its new expiry. The
/// cost is one queue entry per live key, and O(log slots) per insert and per removal,
/// whatever the number of keys: no scan.
#[derive(Debug, Clone)]
pub(crate) struct Expiry<K> {
    ttl: StateTtl,
    slot: i64,
    now: i64,
    /// The clock's first reading: keys written before it (stamped `i64::MIN`) count as
    /// written then.
    origin: i64,
    queue: BTreeMap<i64, Vec<K>>,
    pub(crate) expired: u64,
}

impl<K> Expiry<K> {
    pub(crate) fn new(ttl: StateTtl) -> Self {
        Self {
            ttl,
            slot: (ttl.millis / 64).max(1),
            now: i64::MIN,
            origin: i64::MIN,
            queue: BTreeMap::new(),
            expired: 0,
        }
    }

    pub(crate) fn ttl(&self) -> StateTtl {
        self.ttl
    }

    /// The clock's reading (the highest seen).
    pub(crate) fn now(&self) -> i64 {
        self.now
    }

    /// Moves the clock to `now` (never back).
    pub(crate) fn advance(&mut self, now: i64) {
        if self.origin == i64::MIN {
            self.origin = now;
        }
        self.now = self.now.max(now);
    }

    /// Stamps written before this are expired: `touched + ttl <= now`.
    pub(crate) fn expire_before(&self) -> i64 {
        if self.now == i64::MIN {
            return i64::MIN;
        }
        let before = self.now.saturating_sub(self.ttl.millis).saturating_add(1);
        // Until the TTL has passed since the clock started, nothing has expired, not even
        // what was written before it started.
        if before <= self.origin {
            i64::MIN
        } else {
            before
        }
    }

    /// Queues `key`, written at `touched`.
    pub(crate) fn schedule(&mut self, touched: i64, key: K) {
        let at = touched.max(self.origin).saturating_add(self.ttl.millis);
        let r = at.rem_euclid(self.slot);
        let at = if r == 0 {
            at
        } else {
            at.saturating_add(self.slot - r)
        };
        self.queue.entry(at).or_default().push(key);
    }

    /// The next key whose slot is due, if any.
    pub(crate) fn pop_due(&mut self) -> Option<K> {
        let mut entry = self.queue.first_entry()?;
        if *entry.key() > self.now {
            return None;
        }
        let key = entry.get_mut().pop();
        if entry.get().is_empty() {
            entry.remove();
        }
        key
    }

    /// When the earliest queued slot is due.
    pub(crate) fn next_due(&self) -> Option<i64> {
        self.queue.keys().next().copied()
    }

    /// Keys queued (live keys, and removed ones not yet reached).
    pub(crate) fn queued(&self) -> usize {
        self.queue.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_up_and_fire_in_order() {
        let mut e = Expiry::new(StateTtl::event_time(Duration::from_millis(640)));
        e.advance(0); // the clock starts at 0
        e.schedule(0, "a"); // 640, a slot boundary
        e.schedule(1, "b"); // 641 -> 650
        e.schedule(-5, "c"); // 635 -> 640
        e.advance(639);
        assert_eq!(e.pop_due(), None);
        e.advance(640);
        let mut due = vec![e.pop_due().unwrap(), e.pop_due().unwrap()];
        due.sort();
        assert_eq!(due, ["a", "c"]);
        assert_eq!(e.pop_due(), None);
        assert_eq!(e.next_due(), Some(650));
        assert_eq!(e.expire_before(), 1, "written at 0, expired at 640");
    }
}
