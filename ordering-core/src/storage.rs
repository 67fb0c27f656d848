//! What any idempotent store shares: its error (which says whether waiting can help), the
//! position that makes a write idempotent (`position.rs`), and what a write did. The order flow's store is
//! `order::OrderStore`; the redrive ledger is `RedriveLedger`.

use std::error::Error;

use crate::cause::Cause;
use crate::handler::ErrorClass;

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
    /// [`StoreError::Unavailable`] with `cause`: waiting can help.
    pub fn unavailable(cause: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self::Unavailable(Cause::new(cause))
    }

    /// [`StoreError::Rejected`] with `cause`: the write is at fault, trying it again cannot
    /// help.
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

/// Numbers the incarnations of topics, so that positions in a topic deleted and created again
/// are ordered after those in the topic it replaced. Kept by the store the positions are kept
/// in: every instance of a service, and every restart, must give one topic id one number.
///
/// A source asks when it starts reading a topic, after each rebalance and whenever a
/// partition's offsets go backwards; a broker identifies each incarnation by its topic id.
#[async_trait::async_trait]
pub trait TopicIncarnations: Send + Sync {
    /// The number of the incarnation of `topic` that the broker calls `topic_id`: the number
    /// it got when first seen; an id never seen before gets one more than the highest number
    /// of `topic` so far ([`FIRST_INCARNATION`](crate::FIRST_INCARNATION) for the first).
    async fn incarnation(&self, topic: &str, topic_id: &str) -> Result<u32, StoreError>;
}

/// [`TopicIncarnations`] in memory, for stores that are themselves in memory (and tests): a
/// durable store must keep its numbers with its positions.
#[derive(Debug, Default)]
pub struct MemoryIncarnations(std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>);

#[async_trait::async_trait]
impl TopicIncarnations for MemoryIncarnations {
    async fn incarnation(&self, topic: &str, topic_id: &str) -> Result<u32, StoreError> {
        let mut topics = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let ids = topics.entry(topic.to_owned()).or_default();
        let index = match ids.iter().position(|id| id == topic_id) {
            Some(index) => index,
            None => {
                ids.push(topic_id.to_owned());
                ids.len() - 1
            }
        };
        u32::try_from(index + 1).map_err(|_| StoreError::rejected("too many incarnations"))
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The write changed the store.
    Applied,
    /// The position was already applied (a redelivery): nothing changed.
    AlreadyApplied,
}
