//! What travels through an exchange ring.

/// An epoch number: the checkpoint a barrier belongs to.
pub type Epoch = u64;

/// Event time in milliseconds since the Unix epoch, as Kafka timestamps are.
pub type EventTime = i64;

/// One item in a ring between two workers.
///
/// Records, watermarks and barriers share one FIFO ring so that their order is kept: a barrier
/// separates the records of epoch n from those of n + 1, and a watermark promises that no
/// earlier record follows it on this ring. Records, barriers (checkpoints and micro-batch
/// ends) and `End` flow today; `Watermark` is where event time plugs in: nothing produces it
/// yet, and receivers pass it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<T> {
    /// A data record.
    Record(T),
    /// No record with an event time at or below this one follows on this ring.
    Watermark(EventTime),
    /// Every record of epochs up to and including this one has been sent on this ring.
    Barrier(Epoch),
    /// The sender will send nothing more on this ring (its inputs have ended).
    End,
}
