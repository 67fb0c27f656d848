//! The `Handler` trait: what a service plugs into the dispatcher.

use std::sync::Arc;

use async_trait::async_trait;

use crate::record::RecordMeta;

/// How the dispatcher should treat a handler failure. One rule: the record's fault is
/// `Retryable` or `Permanent` (it ends in the DLQ if it does not clear), the world's fault is
/// `Unavailable` (it is waited out and never dead-lettered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// About the record, and may clear later (the order it updates has not arrived yet):
    /// retry with backoff, dead-letter when the retries are spent.
    Retryable,
    /// About the record, and will fail the same way every time (invalid input): dead-letter
    /// at once.
    Permanent,
    /// Not the record's fault: something it needs (a database, a service) is down, busy or
    /// timing out. The record waits (capped backoff, no limit, its lane waits too) and is never
    /// dead-lettered for it: a dead letter would blame the record for an outage.
    Unavailable,
}

/// A handler error that knows its class. Classification is the handler's job: the
/// dispatcher never inspects messages.
pub trait Classify {
    /// How the dispatcher treats the failure: retry it, dead-letter it at once, or wait out
    /// an outage.
    fn class(&self) -> ErrorClass;

    /// A short, stable name for the failure (`OrderNotFound`), recorded as `errorType`.
    fn kind(&self) -> &'static str;
}

/// Processes one decoded event.
///
/// It is called again for the same event when it returns a retryable error, so it must be
/// idempotent for at-least-once delivery.
#[async_trait]
pub trait Handler<E: Sync>: Send + Sync {
    /// The handler's error: its [`Classify`] says what happens to the record, its `Display`
    /// becomes the dead letter's `errorMessage`.
    type Error: Classify + std::error::Error + Send + Sync + 'static;

    /// Applies `event`, read from the record `meta` describes. `Ok` lets the record be
    /// committed; an error is retried, dead-lettered or waited out as its class says, and a
    /// panic counts as a retryable failure.
    async fn handle(&self, event: &E, meta: &RecordMeta) -> Result<(), Self::Error>;
}

#[async_trait]
impl<E: Sync, H: Handler<E> + ?Sized> Handler<E> for Arc<H> {
    type Error = H::Error;

    async fn handle(&self, event: &E, meta: &RecordMeta) -> Result<(), Self::Error> {
        (**self).handle(event, meta).await
    }
}
