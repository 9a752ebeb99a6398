//! Where a partition is first read from.

/// Where a partition is read from when this job first gets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// From the group's committed offset; from the earliest offset if there is none.
    #[default]
    Committed,
    /// From the earliest available offset, whatever the group committed.
    Earliest,
    /// From the end: only records produced after the partition is assigned.
    Latest,
}
