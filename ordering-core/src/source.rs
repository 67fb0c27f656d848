//! Where records come from. The Kafka crate implements this; so does the in-memory source of
//! the `testing` feature.

use std::future::Future;

use crate::record::{Record, TopicPartition};

/// What a source yields.
#[derive(Debug)]
pub enum Polled<E> {
    Record(Record<E>),
    /// These partitions are no longer this consumer's (a rebalance): drop their queued work,
    /// do not acknowledge them any more.
    Revoked(Vec<TopicPartition>),
}

/// A source that cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("source failed: {0}")]
pub struct SourceError(pub String);

/// A stream of records with acknowledgements.
///
/// Within a partition, offsets increase between revocations: a source that rewinds a
/// partition reports it revoked first.
pub trait Source: Send {
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

    fn resume(&mut self, tp: &TopicPartition);

    /// Commits every acknowledged offset and waits until that is durable.
    fn commit(&mut self) -> impl Future<Output = Result<(), SourceError>> + Send;

    /// The consumer group, recorded in dead letters.
    fn consumer_group(&self) -> &str;
}
