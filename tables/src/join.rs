//! `join_table`: each record of a stream joined with the row of its key in a reference
//! table (a stream-static join).

use std::marker::PhantomData;

use rill_engine::sync::VersionedReader;
use rill_engine::{Branch, BranchBuilder, Emit, FlowBuilder, Operator, Stream, ThenBuilder};

use crate::table::{Table, TableVersion};

/// Marks a left join: every record, with its row or `None`.
#[derive(Debug, Clone, Copy)]
pub struct Left;

/// Marks an inner join: records whose key has a row, with it; the others are counted in
/// the table's [`TableStats::misses`](crate::TableStats::misses).
#[derive(Debug, Clone, Copy)]
pub struct Inner;

/// The stream-static join operator (see [`JoinTableExt::join_table`]): per record, one
/// atomic load to learn whether the table has a new version, one hash lookup, a clone of
/// the row.
#[derive(Debug)]
pub struct TableJoin<K, V, F, J> {
    table: Table<K, V>,
    reader: VersionedReader<TableVersion<K, V>>,
    key: F,
    kind: PhantomData<J>,
}

impl<K, V, F: Clone, J> Clone for TableJoin<K, V, F, J> {
    fn clone(&self) -> Self {
        Self {
            table: self.table.clone(),
            reader: self.reader.clone(),
            key: self.key.clone(),
            kind: PhantomData,
        }
    }
}

impl<K, V, F, J> TableJoin<K, V, F, J> {
    /// A join of records against `table` by `key`.
    pub fn new(table: &Table<K, V>, key: F) -> Self {
        Self {
            table: table.clone(),
            reader: table.reader(),
            key,
            kind: PhantomData,
        }
    }
}

impl<T, K, V, F> Operator<T> for TableJoin<K, V, F, Left>
where
    K: std::hash::Hash + Eq,
    V: Clone,
    F: Fn(&T) -> &K,
{
    type Out = (T, Option<V>);

    #[inline]
    fn on_record<E: Emit<Self::Out>>(&mut self, item: T, out: &mut E) {
        let row = self.reader.current().get((self.key)(&item)).cloned();
        out.emit((item, row));
    }
}

impl<T, K, V, F> Operator<T> for TableJoin<K, V, F, Inner>
where
    K: std::hash::Hash + Eq,
    V: Clone,
    F: Fn(&T) -> &K,
{
    type Out = (T, V);

    #[inline]
    fn on_record<E: Emit<Self::Out>>(&mut self, item: T, out: &mut E) {
        match self.reader.current().get((self.key)(&item)).cloned() {
            Some(row) => out.emit((item, row)),
            None => self.table.miss(),
        }
    }
}

/// A stream with a table chosen, waiting for the kind of join: see
/// [`JoinTableExt::join_table`].
#[derive(Debug)]
#[must_use = "a join does nothing until its kind is chosen"]
pub struct TableJoinBuilder<B, K, V, F> {
    stream: Stream<B>,
    table: Table<K, V>,
    key: F,
}

impl<B, K, V, F> TableJoinBuilder<B, K, V, F>
where
    B: FlowBuilder,
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    F: Fn(&B::Out) -> &K + Clone + Send + Sync + 'static,
    B::Out: Send + 'static,
{
    /// Every record with its key's row, or `None` when the table has no row for it.
    pub fn left(self) -> Stream<ThenBuilder<B, TableJoin<K, V, F, Left>>> {
        self.stream
            .then("join_table", TableJoin::new(&self.table, self.key))
    }

    /// Records whose key has a row, with it; the others are counted in the table's
    /// statistics ([`TableStats::misses`](crate::TableStats::misses)) and dropped.
    pub fn inner(self) -> Stream<ThenBuilder<B, TableJoin<K, V, F, Inner>>> {
        self.stream
            .then("join_table", TableJoin::new(&self.table, self.key))
    }

    /// Records whose key has a row, with it; and, as a second stream, the records whose
    /// key has none, to send to a sink or to the dead-letter sink (`dead_letters`). A job
    /// whose second stream goes nowhere refuses to start.
    #[allow(clippy::type_complexity)]
    pub fn inner_with_misses(
        self,
    ) -> (
        Stream<impl FlowBuilder<Out = (B::Out, V)>>,
        Stream<BranchBuilder<B::Out>>,
    ) {
        self.left().side_output(
            "join_table:misses",
            |(item, row): (B::Out, Option<V>)| match row {
                Some(row) => Branch::First((item, row)),
                None => Branch::Second(item),
            },
        )
    }
}

/// Adds [`join_table`](JoinTableExt::join_table) to streams.
pub trait JoinTableExt<B: FlowBuilder> {
    /// Joins each record with the row of `table` whose key `key` reads from it; choose
    /// [`left`](TableJoinBuilder::left), [`inner`](TableJoinBuilder::inner) or
    /// [`inner_with_misses`](TableJoinBuilder::inner_with_misses). Each record sees the
    /// version of the table current when it is processed; every worker shares the one copy.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use serde::Deserialize;
    /// use rill_connectors::{CollectSink, MemorySource};
    /// use rill_engine::{Config, Job};
    /// use rill_tables::{JoinTableExt, TableBuilder, TableSource};
    ///
    /// #[derive(Debug, Clone, PartialEq, Deserialize)]
    /// struct Product { product_id: String, price: f64 }
    ///
    /// let path = std::env::temp_dir().join(format!("rill-doc-join-{}.csv", std::process::id()));
    /// std::fs::write(&path, "product_id,price\np1,2.5\np2,4\n")?;
    /// let products = TableBuilder::new("products", TableSource::csv(&path))
    ///     .load(|p: &Product| p.product_id.clone())?;
    ///
    /// let job = Job::new("enrich");
    /// let out = CollectSink::default();
    /// let events = vec![("p2".to_string(), 1), ("p9".to_string(), 2)];
    /// job.source(MemorySource::new(events))
    ///     .join_table(&products, |e: &(String, i32)| &e.0)
    ///     .left()
    ///     .sink(out.clone());
    /// job.run(Config::default().with_workers(1))?.await_termination()?;
    /// let prices: Vec<Option<f64>> = out.take().into_iter().map(|(_, p)| p.map(|p| p.price)).collect();
    /// assert_eq!(prices, [Some(4.0), None]);
    /// # std::fs::remove_file(&path)?;
    /// # Ok(()) }
    /// ```
    fn join_table<K, V, F>(self, table: &Table<K, V>, key: F) -> TableJoinBuilder<B, K, V, F>
    where
        F: Fn(&B::Out) -> &K;
}

impl<B: FlowBuilder> JoinTableExt<B> for Stream<B> {
    fn join_table<K, V, F>(self, table: &Table<K, V>, key: F) -> TableJoinBuilder<B, K, V, F>
    where
        F: Fn(&B::Out) -> &K,
    {
        TableJoinBuilder {
            stream: self,
            table: table.clone(),
            key,
        }
    }
}
