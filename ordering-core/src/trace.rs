//! W3C trace context through records: `traceparent`, `tracestate` and `baggage` travel as
//! record headers, so a consumer's span continues (and links to) the producer's.
//!
//! The library creates `tracing` spans under the target [`TARGET`], at info level, with
//! OpenTelemetry's messaging attributes (`otel.name`, `otel.kind`, `messaging.*`); a service
//! that installs `tracing-opentelemetry`'s layer (and an exporter) gets them as
//! OpenTelemetry spans. The library never installs an exporter. Without a subscriber that
//! wants them, the spans are disabled at their call site and nothing here runs.

use std::sync::LazyLock;

use opentelemetry::Context;
use opentelemetry::propagation::{
    Extractor, Injector, TextMapCompositePropagator, TextMapPropagator,
};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::header::Header;

/// The target of the library's spans: a subscriber enables them with
/// `ordering::messaging=info` (an exporter's layer), and can leave them out of its logs.
pub const TARGET: &str = "ordering::messaging";

/// The headers trace context travels in.
pub const TRACE_HEADERS: [&str; 3] = ["traceparent", "tracestate", "baggage"];

/// W3C trace context and baggage.
static PROPAGATOR: LazyLock<TextMapCompositePropagator> = LazyLock::new(|| {
    TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ])
});

/// The propagator of W3C trace context and baggage, for HTTP headers as for record headers.
pub fn propagator() -> &'static TextMapCompositePropagator {
    &PROPAGATOR
}

/// The trace context record headers carry; an empty context when they carry none (or one
/// that does not parse).
pub fn extract(headers: &[Header]) -> Context {
    PROPAGATOR.extract(&Headers(headers))
}

/// Writes `context` into `headers`, replacing any trace headers there: a record carries the
/// context of the span that sent it.
pub fn inject(context: &Context, headers: &mut Vec<Header>) {
    headers.retain(|h| !TRACE_HEADERS.iter().any(|t| h.name.eq_ignore_ascii_case(t)));
    PROPAGATOR.inject_context(context, &mut HeadersMut(headers));
}

/// Writes the context of `span` into `headers` when the span is recorded by OpenTelemetry;
/// otherwise leaves them as they are.
pub fn inject_span(span: &tracing::Span, headers: &mut Vec<Header>) {
    if span.is_disabled() {
        return;
    }
    let context = span.context();
    if context.span().span_context().is_valid() {
        inject(&context, headers);
    }
}

/// Makes the trace a record's `headers` carry the parent of `span`, and links `span` to it:
/// the consumer's span continues the producer's trace and says which span sent the record
/// (OpenTelemetry's messaging conventions). Nothing when the span is disabled or the record
/// carries no trace.
pub fn continue_from(span: &tracing::Span, headers: &[Header]) {
    if span.is_disabled() {
        return;
    }
    let parent = extract(headers);
    let sender = parent.span().span_context().clone();
    if sender.is_valid() {
        let _ = span.set_parent(parent);
        span.add_link(sender);
    }
}

/// Starts `span` as a new trace that links to the trace `headers` carry: a redrive is a new
/// story about an old record, and an operator can follow the link back.
pub fn link_new_trace(span: &tracing::Span, headers: &[Header]) {
    if span.is_disabled() {
        return;
    }
    let _ = span.set_parent(Context::new());
    let original = extract(headers).span().span_context().clone();
    if original.is_valid() {
        span.add_link(original);
    }
}

/// Writes the span's trace and span ids into its `trace_id` and `span_id` fields (when it
/// declares them), so that the logs of what runs in it say which trace they belong to.
pub fn record_ids(span: &tracing::Span) {
    record_ids_of(span, span);
}

/// Writes the trace and span ids of `of` into the `trace_id` and `span_id` fields of `span`.
pub fn record_ids_of(span: &tracing::Span, of: &tracing::Span) {
    if span.is_disabled() || of.is_disabled() {
        return;
    }
    let context = of.context();
    let ids = context.span().span_context().clone();
    if ids.is_valid() {
        span.record("trace_id", ids.trace_id().to_string().as_str());
        span.record("span_id", ids.span_id().to_string().as_str());
    }
}

struct Headers<'a>(&'a [Header]);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(key))
            .and_then(|h| h.value.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|h| h.name.as_str()).collect()
    }
}

struct HeadersMut<'a>(&'a mut Vec<Header>);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.push(Header {
            name: key.to_owned(),
            value: Some(value.into_bytes()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn header(name: &str, value: &str) -> Header {
        Header {
            name: name.into(),
            value: Some(value.as_bytes().to_vec()),
        }
    }

    #[test]
    fn trace_context_round_trips_through_headers() {
        let headers = vec![header("other", "x"), header("traceparent", PARENT)];
        let context = extract(&headers);
        let span = context.span().span_context().clone();
        assert!(span.is_valid() && span.is_remote());
        assert_eq!(
            span.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );

        let own = SpanContext::new(
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
            SpanId::from_hex("b7ad6b7169203331").unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        let mut out = headers.clone();
        inject(&Context::new().with_remote_span_context(own), &mut out);
        let parents: Vec<&Header> = out.iter().filter(|h| h.name == "traceparent").collect();
        assert_eq!(parents.len(), 1, "replaced, not added: {out:?}");
        assert_eq!(
            parents[0].value.as_deref(),
            Some(&b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"[..])
        );
        assert!(out.iter().any(|h| h.name == "other"), "other headers stay");
    }

    #[test]
    fn a_redrive_starts_a_new_trace_even_inside_another_span_and_links_back() {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!(target: TARGET, "outer");
            let _inside = outer.enter();
            let redrive = tracing::info_span!(target: TARGET, "redrive");
            link_new_trace(&redrive, &[header("traceparent", PARENT)]);
            let own = redrive.context().span().span_context().clone();
            let outer_trace = outer.context().span().span_context().trace_id();
            assert!(own.is_valid());
            assert_ne!(own.trace_id(), outer_trace, "not the current span's trace");
            assert_ne!(
                own.trace_id().to_string(),
                "4bf92f3577b34da6a3ce929d0e0e4736"
            );

            // A record continues the trace it carries, as a child.
            let process = tracing::info_span!(target: TARGET, "process");
            let mut meta = crate::RecordMeta::new(crate::TopicPartition::new("t", 0), 1);
            meta.headers.push(header("traceparent", PARENT));
            continue_from(&process, &meta.headers);
            let own = process.context().span().span_context().clone();
            assert_eq!(
                own.trace_id().to_string(),
                "4bf92f3577b34da6a3ce929d0e0e4736"
            );
        });
    }

    #[test]
    fn no_or_bad_trace_headers_give_an_empty_context() {
        for headers in [
            vec![],
            vec![header("traceparent", "nonsense")],
            vec![Header {
                name: "traceparent".into(),
                value: Some(vec![0xff, 0xfe]),
            }],
        ] {
            assert!(!extract(&headers).span().span_context().is_valid());
        }
    }
}
