//! What travels through an exchange ring.

/// An epoch number: the checkpoint a barrier belongs to.
pub type Epoch = u64;

/// Event time in milliseconds since the Unix epoch, as Kafka timestamps are.
pub type EventTime = i64;

/// One item in a ring between two workers.
///
/// Records, watermarks and barriers share one FIFO ring so that their order is kept: a barrier
/// separates the records of epoch n from those of n + 1, and a watermark promises that no
/// record at or below it follows on this ring (the receiver keeps one watermark per input
/// ring and passes on their minimum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<T> {
    /// A data record.
    Record(T),
    /// No record with an event time at or below this one follows on this ring.
    Watermark(EventTime),
    /// The sender has had no input for a while: leave this ring out of the minimum watermark
    /// until a record or watermark arrives on it again.
    Idle,
    /// Every record of epochs up to and including this one has been sent on this ring.
    Barrier(Epoch),
    /// The sender will send nothing more on this ring (its inputs have ended).
    End,
}
