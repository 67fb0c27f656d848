//! What any idempotent store shares: its error (which says whether waiting can help), the
//! position that makes a write idempotent, and what a write did. The order flow's store is
//! `order::OrderStore`; the redrive ledger is `RedriveLedger`.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use crate::cause::Cause;
use crate::handler::ErrorClass;
use crate::record::RecordMeta;

/// Why a store call failed, and so whether waiting can help.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store cannot be reached, is busy, or did not answer in time. Not the record's
    /// fault: the record waits for the store ([`ErrorClass::Unavailable`]).
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// The store refused this particular write (a value it cannot hold): trying the same
    /// write again cannot help.
    #[error("store refused the write: {0}")]
    Rejected(#[source] Cause),
}

impl StoreError {
    pub fn unavailable(cause: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self::Unavailable(Cause::new(cause))
    }

    pub fn rejected(cause: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self::Rejected(Cause::new(cause))
    }

    /// What went wrong underneath.
    pub fn cause(&self) -> &Cause {
        match self {
            Self::Unavailable(cause) | Self::Rejected(cause) => cause,
        }
    }

    /// Waiting may help: the store is down or busy, not the write at fault.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// How the dispatcher should treat a record that met this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Unavailable(_) => ErrorClass::Unavailable,
            Self::Rejected(_) => ErrorClass::Permanent,
        }
    }
}

/// Where a record sits: its topic, partition and offset. What makes a write idempotent, and
/// what a redrive ledger keys on.
///
/// Positions are ordered within one partition of one topic only: a record at or below the
/// last applied offset of the same partition is a redelivery (or, for a redriven record, its
/// original position shows it was superseded). A record from another topic or partition
/// cannot be ordered against it and is applied.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

impl Position {
    pub fn new(topic: impl Into<Arc<str>>, partition: i32, offset: i64) -> Self {
        Self {
            topic: topic.into(),
            partition,
            offset,
        }
    }

    /// `true` when `self` was already covered by `last`, the position last applied: same
    /// topic, same partition, not above it.
    pub fn is_covered_by(&self, last: Option<&Position>) -> bool {
        last.is_some_and(|last| {
            last.partition == self.partition
                && self.offset <= last.offset
                && last.topic == self.topic
        })
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.topic, self.partition, self.offset)
    }
}

/// A record's position for idempotence: where it was first published. For a redriven record
/// that is the position of the record it copies ([`RecordMeta::origin`]), so that a redrive
/// is ordered like the original.
impl From<&RecordMeta> for Position {
    fn from(meta: &RecordMeta) -> Self {
        meta.position()
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Applied,
    /// The position was already applied (a redelivery): nothing changed.
    AlreadyApplied,
}
