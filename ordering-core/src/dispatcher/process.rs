//! The life of one record: handle it, retry per the policy, dead-letter when the policy gives
//! up. Only the outcome goes back to the dispatcher, which owns ordering and commits.

use std::time::Duration;

use futures::FutureExt;
use opentelemetry::context::FutureExt as _;
use serde::Serialize;
use tokio::sync::watch;
use tracing::Instrument;

use crate::dead_letter::{DeadLetter, FailureClass};
use crate::handler::{Classify, ErrorClass, Handler};
use crate::header::redrive_count;
use crate::record::Record;
use crate::retry::{Decision, RetryPolicy};
use crate::sink::{DeadLetterSink, SinkError};
use crate::time::now_iso8601;
use crate::trace::Sampled;

use super::stats::Counters;

/// How a record's processing ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Applied,
    DeadLettered,
    /// Shutdown came first: the record stays uncommitted and will be delivered again.
    Abandoned,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::DeadLettered => "dead-lettered",
            Self::Abandoned => "abandoned",
        }
    }
}

/// What every record's processing shares.
pub(crate) struct Shared<H, D> {
    pub(crate) handler: H,
    pub(crate) dead_letters: D,
    pub(crate) policy: RetryPolicy,
    pub(crate) consumer_group: String,
    pub(crate) reduced_letter_payload: usize,
    pub(crate) handler_latency: bool,
    pub(crate) counters: std::sync::Arc<Counters>,
    pub(crate) stopping: watch::Sender<bool>,
}

/// The last failure of a record, before it becomes a dead letter.
struct Failure {
    error_type: String,
    class: FailureClass,
    message: String,
    failed_attempts: u32,
    first_at: String,
    last_at: String,
}

impl<H, D> Shared<H, D> {
    /// Sleeps for `delay` unless shutdown starts first; true if it slept the whole time.
    async fn pause(&self, delay: Duration) -> bool {
        let mut stopping = self.stopping.subscribe();
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = stopping.wait_for(|stop| *stop) => false,
        }
    }

    fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Runs one handler call, timing it when asked to (`DispatcherConfig::handler_latency`).
    /// A call that panics fails like one that returned an error: the panic stays in its
    /// record, it does not take the consumer down.
    async fn call<E>(&self, call: impl Future<Output = Result<(), E>>) -> Result<(), CallError<E>> {
        let call = std::panic::AssertUnwindSafe(call).catch_unwind();
        let result = if self.handler_latency {
            let started = std::time::Instant::now();
            let result = call.await;
            self.counters
                .handled(started.elapsed(), matches!(result, Ok(Ok(()))));
            result
        } else {
            call.await
        };
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(CallError::Failed(error)),
            Err(panic) => Err(CallError::Panicked(panic_message(panic.as_ref()))),
        }
    }
}

/// How a handler call failed: its own error, or a panic (a bug in the handler, which may be
/// one that only some inputs or moments trigger: retried within the budget like a retryable
/// error, then dead-lettered as `HandlerPanicked`).
#[derive(Debug)]
enum CallError<E> {
    Failed(E),
    Panicked(String),
}

impl<E: Classify> CallError<E> {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Failed(error) => error.class(),
            Self::Panicked(_) => ErrorClass::Retryable,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Failed(error) => error.kind(),
            Self::Panicked(_) => "HandlerPanicked",
        }
    }
}

impl<E: std::fmt::Display> std::fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Failed(error) => error.fmt(f),
            Self::Panicked(message) => write!(f, "the handler panicked: {message}"),
        }
    }
}

/// The message a panic carried, when it is text.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// The span of a record's processing, carrying where it came from. Every record gets one at
/// debug level (at info, a span per record would cost more than a fast handler's work); a
/// record that fails gets one at info level, so that all that is logged about it (its retries,
/// its dead letter, what its handler logs meanwhile) says which record it is.
macro_rules! record_span {
    ($level:ident, $meta:expr) => {
        tracing::$level!(
            "record",
            topic = %$meta.tp.topic,
            partition = $meta.tp.partition,
            offset = $meta.offset,
            key = $meta.key_str().as_deref().unwrap_or(""),
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        )
    };
}

/// The info-level record span of a record that failed, carrying the trace ids of its
/// consumer span (when traces are on): the logs about a failing record name its trace.
fn failing_record_span(meta: &crate::record::RecordMeta) -> tracing::Span {
    let span = record_span!(info_span, meta);
    crate::trace::record_ids_of(&span, &tracing::Span::current());
    span
}

/// The OpenTelemetry consumer span of a record's processing (messaging conventions). Disabled,
/// and free, unless a subscriber wants [`trace::TARGET`](crate::trace::TARGET) (a service
/// exporting traces).
fn messaging_span<H, D>(shared: &Shared<H, D>, meta: &crate::record::RecordMeta) -> tracing::Span {
    tracing::info_span!(
        target: crate::trace::TARGET,
        "process",
        otel.name = %format_args!("process {}", meta.tp.topic),
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = %meta.tp.topic,
        messaging.destination.partition.id = %meta.tp.partition,
        messaging.kafka.offset = meta.offset,
        messaging.kafka.message.key = meta.key_str().as_deref().unwrap_or(""),
        messaging.consumer.group.name = %shared.consumer_group,
        ordering.outcome = tracing::field::Empty,
        ordering.presampled = tracing::field::Empty,
    )
}

/// Processes `record` to an outcome, in its consumer span (a child of, and linked to, the span
/// that sent the record) when traces are on and the process's
/// [`Sampling`](crate::trace::Sampling) keeps it. Never gives up on a record except for
/// shutdown.
pub(crate) async fn process<E, H, D>(shared: &Shared<H, D>, record: &Record<E>) -> Outcome
where
    E: Serialize + Sync,
    H: Handler<E>,
    D: DeadLetterSink,
{
    let meta = &record.meta;
    let sampling = crate::trace::sampling();
    let span = if sampling.is_every_record() {
        let span = messaging_span(shared, meta);
        if span.is_disabled() {
            return process_record(shared, record, true).await;
        }
        crate::trace::continue_from(&span, &meta.headers);
        span
    } else {
        // Decided before any span is built: an unsampled record costs no span.
        match sampling.decide(&meta.headers) {
            Sampled::NoSpan => return process_record(shared, record, false).await,
            Sampled::Span { parent } => {
                let span = messaging_span(shared, meta);
                span.record(crate::trace::PRESAMPLED, true);
                if let Some(parent) = parent {
                    crate::trace::continue_from_context(&span, parent);
                }
                span
            }
        }
    };
    let outcome = process_record(shared, record, true)
        .instrument(span.clone())
        .await;
    span.record("ordering.outcome", outcome.as_str());
    outcome
}

/// The trace context a record's retries and dead letter run in: the current one, or, for a
/// record the process's sampling did not keep, one that keeps nothing beneath it. Made only
/// when a record fails, which is rare.
fn failure_context(sampled: bool, meta: &crate::record::RecordMeta) -> opentelemetry::Context {
    if sampled {
        opentelemetry::Context::current()
    } else {
        crate::trace::unsampled_context(&meta.headers)
    }
}

/// The first attempt runs inline; retries and dead letters are rare, so their state (timers,
/// the letter) is boxed: the future every record carries stays small.
///
/// `sampled` is false for a record the process's sampling did not keep: what runs after its
/// first attempt runs under an unsampled trace, so its spans are not kept either.
async fn process_record<E, H, D>(
    shared: &Shared<H, D>,
    record: &Record<E>,
    sampled: bool,
) -> Outcome
where
    E: Serialize + Sync,
    H: Handler<E>,
    D: DeadLetterSink,
{
    let meta = &record.meta;
    let failure = match &record.event {
        Ok(event) => {
            let first = shared.handler.handle(event, meta);
            let first = shared
                .call(first.instrument(record_span!(debug_span, meta)))
                .await;
            match first {
                Ok(()) => return Outcome::Applied,
                Err(error) => {
                    let retried = retry(shared, event, record, error)
                        .instrument(failing_record_span(meta))
                        .with_context(failure_context(sampled, meta));
                    match Box::pin(retried).await {
                        Ok(()) => return Outcome::Applied,
                        Err(None) => return Outcome::Abandoned,
                        Err(Some(failure)) => failure,
                    }
                }
            }
        }
        Err(decode) => {
            let now = now_iso8601();
            Failure {
                error_type: decode.error_type().into(),
                class: decode.kind().into(),
                message: decode.to_string(),
                failed_attempts: 0,
                first_at: now.clone(),
                last_at: now,
            }
        }
    };
    let letter = dead_letter(shared, record, failure);
    // Built under the failure's context, as the retries' spans are: a child of its record's.
    let context = failure_context(sampled, meta);
    let span = {
        let _current = context.clone().attach();
        tracing::info_span!(
            target: crate::trace::TARGET,
            "dead letter",
            otel.name = "dead letter",
            error.type = %letter.error_type,
            ordering.error_class = letter.error_class.as_str(),
        )
    };
    let publish = publish_dead_letter(shared, letter)
        .instrument(span)
        .instrument(failing_record_span(meta))
        .with_context(context);
    Box::pin(publish).await
}

/// Retries after the first failure, `error`, as the policy says. `Ok` when applied,
/// `Err(Some)` when the policy gave up, `Err(None)` when shutdown came first.
///
/// Two counts: the record's own failures, which spend the policy's budget, and the attempts in
/// a row that found something unavailable, which are waited out without a budget.
async fn retry<E, H, D>(
    shared: &Shared<H, D>,
    event: &E,
    record: &Record<E>,
    mut error: CallError<H::Error>,
) -> Result<(), Option<Failure>>
where
    E: Sync,
    H: Handler<E>,
{
    let first_at = now_iso8601();
    let mut failed_attempts = 0;
    let mut outage = 0;
    loop {
        let now = now_iso8601();
        let class = error.class();
        let unavailable = class == ErrorClass::Unavailable;
        let attempts = if unavailable {
            outage += 1;
            outage
        } else {
            outage = 0;
            failed_attempts += 1;
            failed_attempts
        };
        match shared.policy.decide(attempts, class) {
            Decision::Retry(delay) => {
                tracing::debug!(
                    tp = %record.meta.tp, offset = record.meta.offset, attempt = attempts,
                    unavailable, ?delay, error = %error, "retrying"
                );
                let slept = if unavailable {
                    if outage == 1 {
                        tracing::warn!(
                            tp = %record.meta.tp, offset = record.meta.offset, error = %error,
                            "waiting for an outage to end; the record is not dead-lettered for it"
                        );
                    }
                    let _waiting = shared.counters.outage_wait();
                    shared.pause(delay).await
                } else {
                    shared.counters.retried();
                    shared.pause(delay).await
                };
                if !slept {
                    return Err(None);
                }
            }
            Decision::DeadLetter => {
                return Err(Some(Failure {
                    error_type: error.kind().to_owned(),
                    class: class.into(),
                    message: error.to_string(),
                    failed_attempts,
                    first_at,
                    last_at: now,
                }));
            }
        }
        // A span per retry: its number, and whether an outage was waited out before it.
        let attempt = tracing::info_span!(
            target: crate::trace::TARGET,
            "retry",
            otel.name = "retry",
            ordering.attempt = attempts + 1,
            ordering.after_outage = unavailable,
        );
        let handled = shared
            .call(
                shared
                    .handler
                    .handle(event, &record.meta)
                    .instrument(attempt),
            )
            .await;
        error = match handled {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
    }
}

fn dead_letter<E: Serialize, H, D>(
    shared: &Shared<H, D>,
    record: &Record<E>,
    failure: Failure,
) -> DeadLetter {
    let meta = &record.meta;
    DeadLetter {
        original_topic: meta.tp.topic.to_string(),
        original_partition: meta.tp.partition,
        original_offset: meta.offset,
        original_incarnation: meta.incarnation,
        original_key: meta.key.clone(),
        original_headers: meta.headers.clone(),
        original_timestamp: meta.timestamp,
        original_value: record.payload.clone(),
        original_message: record
            .event
            .as_ref()
            .ok()
            .and_then(|event| serde_json::to_string(event).ok()),
        error_type: failure.error_type,
        error_class: failure.class,
        error_message: failure.message,
        retry_count: failure.failed_attempts.saturating_sub(1),
        failed_attempts: failure.failed_attempts,
        first_failure_timestamp: failure.first_at,
        last_failure_timestamp: failure.last_at,
        consumer_group: shared.consumer_group.clone(),
        redrive_count: redrive_count(&meta.headers),
        reduced_from: None,
    }
}

/// Publishes until the sink accepts it: a record is never acknowledged without its dead
/// letter, so while the sink is down or refuses the letter (a policy or an authorisation a
/// person can fix) its partition waits, and shutdown leaves it uncommitted. Only a letter too
/// large for the sink is reduced, once, so that it can be written.
async fn publish_dead_letter<H, D: DeadLetterSink>(
    shared: &Shared<H, D>,
    mut letter: DeadLetter,
) -> Outcome {
    let mut failures = 0;
    loop {
        match shared.dead_letters.publish(&letter).await {
            Ok(()) => {
                shared.counters.dead_letter_written();
                tracing::warn!(
                    topic = %letter.original_topic, partition = letter.original_partition,
                    offset = letter.original_offset, error_type = %letter.error_type,
                    error = %letter.error_message, reduced = !letter.is_replayable(),
                    "dead-lettered"
                );
                return Outcome::DeadLettered;
            }
            Err(error @ SinkError::TooLarge(_)) if letter.is_replayable() => {
                shared.counters.dead_letter_reduced();
                tracing::error!(
                    topic = %letter.original_topic, partition = letter.original_partition,
                    offset = letter.original_offset, %error,
                    "dead letter too large; writing it reduced (no decoded copy, payload cut)"
                );
                letter = letter.reduced(shared.reduced_letter_payload);
            }
            Err(error) => {
                shared.counters.dead_letter_failed();
                let delay = shared.policy.delay(failures);
                failures = failures.saturating_add(1);
                tracing::error!(
                    topic = %letter.original_topic, partition = letter.original_partition,
                    offset = letter.original_offset, %error, ?delay,
                    "dead letter not written; the record stays uncommitted and is tried again"
                );
                if shared.is_stopping() || !shared.pause(delay).await {
                    return Outcome::Abandoned;
                }
            }
        }
    }
}
