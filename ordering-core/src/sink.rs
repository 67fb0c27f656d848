//! Where messages go: events for other services, dead letters for people.

use std::error::Error;

use async_trait::async_trait;

use crate::cause::Cause;
use crate::dead_letter::DeadLetter;

/// A publish that did not reach the broker.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The broker is unreachable or slow; the same message may go through later.
    #[error("sink unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// The message was refused and will be refused as long as nothing changes (it cannot be
    /// encoded, the sink is not authorised, a broker policy refuses it). A person can fix the
    /// cause, so a dead letter refused this way waits rather than being cut down.
    #[error("message rejected: {0}")]
    Rejected(#[source] Cause),
    /// The message is larger than the sink takes: only a smaller message can go.
    #[error("message too large: {0}")]
    TooLarge(#[source] Cause),
    /// The sink is at its bound right now (its queue is full, or the publish waited too long
    /// for its turn): nothing was sent, and the same message may go through soon. A caller
    /// with a client of its own says "not now" (HTTP `503` with `Retry-After`) rather than
    /// queue.
    #[error("sink overloaded: {0}")]
    Overloaded(#[source] Cause),
}

impl SinkError {
    /// [`SinkError::Unavailable`] with `cause`: worth retrying.
    pub fn unavailable(cause: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self::Unavailable(Cause::new(cause))
    }

    /// [`SinkError::Rejected`] with `cause`: not worth retrying until something changes.
    pub fn rejected(cause: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self::Rejected(Cause::new(cause))
    }

    /// [`SinkError::TooLarge`] with `cause`: only a smaller message can go.
    pub fn too_large(cause: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self::TooLarge(Cause::new(cause))
    }

    /// [`SinkError::Overloaded`] with `cause`: worth retrying soon.
    pub fn overloaded(cause: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self::Overloaded(Cause::new(cause))
    }

    /// The same message may go through later, unchanged.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Overloaded(_))
    }
}

/// Publishes messages of type `M`. `publish` returns only once the message is durable (for
/// Kafka: acknowledged by the broker), so a caller may acknowledge its own input after it.
#[async_trait]
pub trait Sink<M: Sync + ?Sized>: Send + Sync {
    /// Publishes `message`, returning once it is durable; an error says whether the same
    /// message may go through later ([`SinkError::is_retryable`]).
    async fn publish(&self, message: &M) -> Result<(), SinkError>;

    /// Waits until everything published so far is durable.
    async fn flush(&self) -> Result<(), SinkError>;
}

/// A sink for dead letters.
pub trait DeadLetterSink: Sink<DeadLetter> {}

impl<T: Sink<DeadLetter> + ?Sized> DeadLetterSink for T {}

#[async_trait]
impl<M: Sync + ?Sized, S: Sink<M> + ?Sized> Sink<M> for std::sync::Arc<S> {
    async fn publish(&self, message: &M) -> Result<(), SinkError> {
        (**self).publish(message).await
    }

    async fn flush(&self) -> Result<(), SinkError> {
        (**self).flush().await
    }
}
