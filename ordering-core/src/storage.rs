//! What any idempotent store shares: its error (which says whether waiting can help), the
//! position that makes a write idempotent, and what a write did. The order flow's store is
//! `order::OrderStore`; the redrive ledger is `RedriveLedger`.

use std::error::Error;

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

/// Where a record sits in its topic: what makes a write idempotent.
///
/// Positions are compared within one partition only: a record at or below the last applied
/// offset of the same partition is a redelivery. A record from another partition (the topic
/// was repartitioned) is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
}

impl Position {
    pub fn new(partition: i32, offset: i64) -> Self {
        Self { partition, offset }
    }

    /// `true` when `self` was already covered by `last`, the position last applied.
    pub fn is_covered_by(self, last: Option<Position>) -> bool {
        last.is_some_and(|last| last.partition == self.partition && self.offset <= last.offset)
    }
}

impl From<&RecordMeta> for Position {
    fn from(meta: &RecordMeta) -> Self {
        Self::new(meta.tp.partition, meta.offset)
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Applied,
    /// The position was already applied (a redelivery): nothing changed.
    AlreadyApplied,
}
