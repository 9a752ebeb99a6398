//! What the Redis sink writes: an upsert per record, and the coalescing of a flush's upserts
//! to the latest per key.

use std::collections::HashMap;
use std::time::Duration;

/// The value an upsert sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisValue {
    /// `SET key value`.
    String(Vec<u8>),
    /// `HSET key field value ...`: these fields; the hash's other fields stay.
    Hash(Vec<(String, Vec<u8>)>),
}

/// One record's write to Redis: a key, its value, and optionally an expiry (`PX` for a
/// string, `PEXPIRE` after an `HSET`). Upserts are idempotent: writing the same ones again
/// (a replay after a restart) leaves the same values.
///
/// ```
/// use std::time::Duration;
/// use rill_connectors::redis::{RedisUpsert, RedisValue};
/// let stock = RedisUpsert::hset("stock:p1", [("qty", "7"), ("updated_ts", "1700000000000")])
///     .expire(Duration::from_secs(3600));
/// assert_eq!(stock.key, "stock:p1");
/// assert!(matches!(stock.value, RedisValue::Hash(ref f) if f.len() == 2));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUpsert {
    /// The Redis key.
    pub key: String,
    /// What to set.
    pub value: RedisValue,
    /// Expiry from the write, if any.
    pub expire: Option<Duration>,
}

impl RedisUpsert {
    /// `SET key value`.
    pub fn set(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            value: RedisValue::String(value.into()),
            expire: None,
        }
    }

    /// `HSET key field value ...`.
    pub fn hset<F: Into<String>, V: Into<Vec<u8>>>(
        key: impl Into<String>,
        fields: impl IntoIterator<Item = (F, V)>,
    ) -> Self {
        Self {
            key: key.into(),
            value: RedisValue::Hash(
                fields
                    .into_iter()
                    .map(|(f, v)| (f.into(), v.into()))
                    .collect(),
            ),
            expire: None,
        }
    }

    /// Expires the key `ttl` after the write.
    pub fn expire(mut self, ttl: Duration) -> Self {
        self.expire = Some(ttl);
        self
    }

    /// Folds a later upsert of the same key into this one, so that writing the result is the
    /// same as writing both in order: a string is replaced, hash fields are merged (the later
    /// value of a field wins), a later expiry replaces an earlier one.
    pub(crate) fn absorb(&mut self, later: RedisUpsert) {
        match (&mut self.value, later.value) {
            (RedisValue::Hash(fields), RedisValue::Hash(new)) => {
                for (f, v) in new {
                    match fields.iter_mut().find(|(g, _)| *g == f) {
                        Some(slot) => slot.1 = v,
                        None => fields.push((f, v)),
                    }
                }
            }
            (value, new) => *value = new,
        }
        if later.expire.is_some() {
            self.expire = later.expire;
        }
    }
}

/// The upserts of one flush: with coalescing, one per key (in order of each key's first
/// write); without, every one in order.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    upserts: Vec<RedisUpsert>,
    index: HashMap<String, usize>,
    coalesce: bool,
    /// Records taken in since the last drain (more than `upserts.len()` when coalescing).
    pub(crate) records: u64,
}

impl Pending {
    pub(crate) fn new(coalesce: bool) -> Self {
        Self {
            coalesce,
            ..Self::default()
        }
    }

    pub(crate) fn push(&mut self, upsert: RedisUpsert) {
        self.records += 1;
        if !self.coalesce {
            self.upserts.push(upsert);
            return;
        }
        match self.index.get(&upsert.key) {
            Some(&i) => self.upserts[i].absorb(upsert),
            None => {
                self.index.insert(upsert.key.clone(), self.upserts.len());
                self.upserts.push(upsert);
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.upserts.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.upserts.len()
    }

    pub(crate) fn upserts(&self) -> &[RedisUpsert] {
        &self.upserts
    }

    pub(crate) fn clear(&mut self) {
        self.upserts.clear();
        self.index.clear();
        self.records = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalescing_writes_what_the_upserts_in_order_would() {
        let mut p = Pending::new(true);
        p.push(RedisUpsert::hset("a", [("qty", "1"), ("ts", "5")]));
        p.push(RedisUpsert::set("b", "x"));
        p.push(RedisUpsert::hset("a", [("qty", "2")]).expire(Duration::from_secs(9)));
        p.push(RedisUpsert::set("b", "y"));
        assert_eq!(p.records, 4);
        assert_eq!(
            p.upserts(),
            [
                RedisUpsert::hset("a", [("qty", "2"), ("ts", "5")]).expire(Duration::from_secs(9)),
                RedisUpsert::set("b", "y"),
            ]
        );
        let mut q = Pending::new(false);
        q.push(RedisUpsert::set("b", "x"));
        q.push(RedisUpsert::set("b", "y"));
        assert_eq!(q.len(), 2);
    }
}
