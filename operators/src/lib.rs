//! rill's operators, one per module, each an [`Operator`](rill_engine::Operator) plus an
//! extension trait that adds its method to [`Stream`](rill_engine::Stream) or
//! [`KeyedStream`](rill_engine::KeyedStream). Import them all with `rill::prelude::*`.
//!
//! | method | on | emits |
//! |---|---|---|
//! | [`map`](MapExt::map) | `Stream<T>` | `f(x)` for every record |
//! | [`filter`](FilterExt::filter) | `Stream<T>` | records for which `pred(&x)` holds |
//! | [`flat_map`](FlatMapExt::flat_map) | `Stream<T>` | every item of `f(x)` |
//! | [`inspect`](InspectExt::inspect) | `Stream<T>` | every record, after calling `f(&x)` |
//! | [`try_map`](TryMapExt::try_map) | `Stream<T>` | `f(x)`'s `Ok` values; an `Err` fails the job (or is a dead letter) |
//! | [`decode`](DecodeExt::decode) | `Stream<raw records>` | `f(&x)`'s `Ok` values; an `Err` keeps the raw record for the dead-letter sink |
//! | [`count`](CountExt::count) | `KeyedStream<(K, V)>` | `(key, running count)` per record (update mode) |
//! | [`reduce`](ReduceExt::reduce) | `KeyedStream<(K, V)>` | `(key, running reduction)` per record |
//! | [`aggregate`](AggregateExt::aggregate) | `KeyedStream<(K, V)>` | `(key, running accumulator)` per record |
//! | [`flat_map_groups_with_state`](GroupsWithStateExt::flat_map_groups_with_state) | `KeyedStream<(K, V)>` | every output of `f(key, values, state)`, per record (continuous) or per key and batch (micro-batch), and on timeouts |
//! | [`map_groups_with_state`](GroupsWithStateExt::map_groups_with_state) | `KeyedStream<(K, V)>` | `f(key, values, state)`, one output per call |
//! | [`with_watermark`](WithWatermarkExt::with_watermark) | `Stream<T>` | every record; event time and watermarks from here on |
//! | [`window`](WindowExt::window) | `KeyedStream<(K, V)>` | per key and event-time window: a count, reduction or accumulator; late records apart |
//! | [`interval_join`](IntervalJoinExt::interval_join) | `KeyedStream<(K, L)>` and `KeyedStream<(K, R)>` | `Joined { key, left, right }` for equal keys and event times within an interval; inner or left outer; late records apart |
//! | [`dead_letters`](DeadLettersExt::dead_letters) | `Stream<T>` | nothing: every record to the job's dead-letter sink (late records, rejects) |
//! | [`latest_per_key`](LatestPerKeyExt::latest_per_key) | `Stream<(K, V)>` | each key's last value, once, when the input ends |

mod aggregate;
mod count;
mod dead_letters;
mod decode;
mod filter;
mod flat_map;
mod group_state;
mod groups_with_state;
mod inspect;
mod interval_join;
mod latest_per_key;
mod map;
mod reduce;
mod try_map;
mod watermark;
mod window;

pub use aggregate::{Aggregate, AggregateExt};
pub use count::{Count, CountExt};
pub use dead_letters::{DeadLetters, DeadLettersExt, RoutedAway};
pub use decode::{Decode, DecodeExt};
pub use filter::{Filter, FilterExt};
pub use flat_map::{FlatMap, FlatMapExt};
pub use group_state::{GroupState, GroupTimeout, Values};
pub use groups_with_state::{GroupsWithState, GroupsWithStateExt};
pub use inspect::{Inspect, InspectExt};
pub use interval_join::{
    Inner, Interval, IntervalJoin, IntervalJoinExt, IntervalJoinOperator, JoinKind, JoinOutput,
    JoinSide, Joined, LeftOuter,
};
pub use latest_per_key::{LatestPerKey, LatestPerKeyExt};
pub use map::{Map, MapExt};
pub use reduce::{Reduce, ReduceExt};
pub use try_map::{TryMap, TryMapExt};
pub use watermark::{OneSplit, WatermarkStrategy, WithWatermark, WithWatermarkExt};
pub use window::{
    Aggregation, OutputMode, Window, WindowExt, WindowOperator, WindowOutput, WindowResult,
    WindowedStream, Windows,
};
