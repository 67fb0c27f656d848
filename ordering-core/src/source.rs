//! Where records come from. The Kafka crate implements this; so does the in-memory source of
//! the `testing` feature.

use std::error::Error;
use std::future::Future;
use std::time::Duration;

use crate::cause::Cause;

use crate::record::{Record, TopicPartition};

/// What a source yields.
#[derive(Debug)]
#[non_exhaustive]
pub enum Polled<E> {
    /// The next record of one of the consumer's partitions.
    Record(Record<E>),
    /// These partitions are no longer this consumer's (a rebalance): drop their queued work,
    /// do not acknowledge them any more.
    Revoked(Vec<TopicPartition>),
}

/// A source that cannot go on, or a commit that did not go through.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// Receiving failed for good (transient failures are the source's own business): the
    /// dispatcher stops.
    #[error("receiving failed: {0}")]
    Receive(#[source] Cause),
    /// A commit failed; what it did not commit is delivered again. A later commit may work.
    #[error("commit failed: {0}")]
    Commit(#[source] Cause),
    /// A commit was not confirmed in time (the broker is down or slow); as for `Commit`.
    #[error("commit not confirmed within {0:?}")]
    CommitTimeout(Duration),
}

impl SourceError {
    /// [`SourceError::Receive`] with `cause`: the source cannot go on.
    pub fn receive(cause: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self::Receive(Cause::new(cause))
    }

    /// [`SourceError::Commit`] with `cause`: a later commit may work.
    pub fn commit(cause: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self::Commit(Cause::new(cause))
    }

    /// Trying again later can help: true for commits, false for a source that failed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Receive(_))
    }
}

/// A stream of records with acknowledgements.
///
/// Within a partition, offsets increase between revocations: a source that rewinds a
/// partition reports it revoked first.
pub trait Source: Send {
    /// What a record's payload decodes to.
    type Event: Send + Sync + 'static;

    /// The next record, or a revocation; `Ok(None)` when the source is exhausted.
    ///
    /// Must be cancel-safe: the dispatcher may drop the future before it completes and call
    /// again, and no record may be lost in between. Transient errors are the source's own
    /// business (retry, log); an error returned here stops the dispatcher.
    fn next(
        &mut self,
    ) -> impl Future<Output = Result<Option<Polled<Self::Event>>, SourceError>> + Send;

    /// Every record of `tp` below `next_offset` is done: it may be committed.
    fn ack(&mut self, tp: &TopicPartition, next_offset: i64);

    /// Stop yielding records of `tp` until resumed, while staying alive (backpressure).
    fn pause(&mut self, tp: &TopicPartition);

    /// Yields records of `tp` again after [`pause`](Self::pause), from where it stopped: no
    /// record may be skipped.
    fn resume(&mut self, tp: &TopicPartition);

    /// Commits every acknowledged offset and waits until that is durable.
    fn commit(&mut self) -> impl Future<Output = Result<(), SourceError>> + Send;

    /// The consumer group, recorded in dead letters.
    fn consumer_group(&self) -> &str;
}
