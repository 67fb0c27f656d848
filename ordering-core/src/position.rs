//! Where a record sits, and how two places in one partition are ordered.

use std::fmt;
use std::sync::Arc;

/// Where a record sits: its topic, partition and offset, in which incarnation of the topic.
/// What makes a write idempotent, and what a redrive ledger keys on.
///
/// Positions are ordered within one partition of one topic only: a record at or below the
/// last applied offset of the same partition is a redelivery (or, for a redriven record, its
/// original position shows it was superseded). A record from another topic or partition
/// cannot be ordered against it and is applied.
///
/// A topic deleted and created again under the same name starts its offsets over: offsets
/// alone would take its new records for old ones. Its [`incarnation`](Self::incarnation)
/// orders the logs instead: every record of a later incarnation comes after every record of
/// an earlier one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    /// The topic; empty only for a position a store kept before it kept topics (read as
    /// the topic of whatever it is compared with).
    pub topic: Arc<str>,
    /// The partition within the topic.
    pub partition: i32,
    /// The record's offset in the partition.
    pub offset: i64,
    /// Which incarnation of the topic the offset is in: [`FIRST_INCARNATION`] for the first
    /// one a store knows (and for positions written before incarnations were kept), one more
    /// for each re-creation since ([`TopicIncarnations`](crate::TopicIncarnations)).
    pub incarnation: u32,
}

/// The incarnation of a position that says nothing else: a topic's first, or a position
/// written before incarnations were kept, or from a source that does not tell them apart.
pub const FIRST_INCARNATION: u32 = 1;

impl Position {
    /// A position in the topic's [`FIRST_INCARNATION`].
    pub fn new(topic: impl Into<Arc<str>>, partition: i32, offset: i64) -> Self {
        Self {
            topic: topic.into(),
            partition,
            offset,
            incarnation: FIRST_INCARNATION,
        }
    }

    /// This position in incarnation `incarnation` of its topic.
    pub fn in_incarnation(mut self, incarnation: u32) -> Self {
        self.incarnation = incarnation;
        self
    }

    /// `true` when `self` was already covered by `last`, the position last applied: same
    /// partition, same topic (or `last` kept none), and an earlier incarnation or the same
    /// one and not above it.
    ///
    /// The one rule of what a redelivery is. The SQL stores spell it in SQL from one macro
    /// (`ordering-store`'s `status_covers!`), and their contract tests check both agree.
    pub fn is_covered_by(&self, last: Option<&Position>) -> bool {
        last.is_some_and(|last| {
            last.partition == self.partition
                && (self.incarnation, self.offset) <= (last.incarnation, last.offset)
                && (last.topic.is_empty() || last.topic == self.topic)
        })
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.topic, self.partition, self.offset)?;
        if self.incarnation != FIRST_INCARNATION {
            write!(f, " (incarnation {})", self.incarnation)?;
        }
        Ok(())
    }
}
