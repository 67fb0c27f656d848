//! Sampling decided before the span: with the process's `Sampling` set and its sampler in the
//! tracer provider, a record gets a consumer span only when it is kept (its parent's flag, or
//! the ratio for a record without one), every span built is exported, and nothing beneath an
//! unsampled record (its retries, its dead letter) is kept. A real OpenTelemetry SDK exports
//! into memory; a layer counts the spans built.
//!
//! The sampling is the process's, so the cases run one after another in one test.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Class, Ev, Script, record};
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use ordering_core::testing::{MemorySink, MemorySource};
use ordering_core::trace::{PRESAMPLED, Sampling, set_sampling};
use ordering_core::{DeadLetter, Dispatcher, DispatcherConfig, Header, Record};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, filter::Targets};

/// Counts the consumer spans built (whether or not a sampler keeps them).
#[derive(Clone, Default)]
struct Built(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> Layer<S> for Built {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if attrs.metadata().name() == "process" {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn traceparent(trace: u128, sampled: bool) -> Header {
    let value = format!(
        "00-{}-{}-{}",
        TraceId::from(trace),
        SpanId::from(0x00f0_67aa_0ba9_02b7u64),
        if sampled { "01" } else { "00" }
    );
    Header {
        name: "traceparent".into(),
        value: Some(value.into_bytes()),
    }
}

/// Runs `records` through a dispatcher under `sampling`; the spans exported, the consumer
/// spans built, the dead letters written.
async fn run(sampling: Sampling, records: Vec<Record<Ev>>) -> (Vec<SpanData>, usize, usize) {
    set_sampling(sampling);
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampling.sampler())
        .with_simple_exporter(exporter.clone())
        .build();
    let built = Built::default();
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("test"))
                .with_filter(
                    Targets::new().with_target(ordering_core::trace::TARGET, tracing::Level::INFO),
                ),
        )
        .with(built.clone());
    let sink = MemorySink::<DeadLetter>::new();
    let source = MemorySource::from_records(records).with_group("g");
    let dispatcher = Dispatcher::new(
        source,
        Script::new(),
        sink.clone(),
        DispatcherConfig::default(),
    );
    let _default = tracing::subscriber::set_default(subscriber);
    dispatcher.run(std::future::pending()).await.unwrap();
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    (spans, built.0.load(Ordering::Relaxed), sink.len())
}

/// The spans whose name starts with `name` (a consumer span is `process <topic>`).
fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name.starts_with(name)).collect()
}

#[tokio::test(start_paused = true)]
async fn only_kept_records_get_spans_and_nothing_beneath_an_unsampled_one_is_kept() {
    // Parent-based at 10 %: sampled parents, unsampled parents, and records without one.
    let mut records = Vec::new();
    let mut offset = 0;
    let mut next = |headers: Vec<Header>| {
        let mut r = record(0, offset, &format!("K-{offset}"), Ev::ok(offset as u32));
        r.meta.headers = headers;
        offset += 1;
        r
    };
    for n in 0..300u128 {
        records.push(next(vec![traceparent(0xA000 + n, true)]));
    }
    for n in 0..300u128 {
        records.push(next(vec![traceparent(0xB000 + n, false)]));
    }
    for _ in 0..2_000 {
        records.push(next(vec![]));
    }
    let (spans, built, _) = run(Sampling::parent_based(0.1), records).await;
    let process = named(&spans, "process");
    assert_eq!(built, process.len(), "every span built is exported");
    let children: Vec<_> = process
        .iter()
        .filter(|s| s.parent_span_id != SpanId::INVALID)
        .collect();
    assert_eq!(
        children.len(),
        300,
        "each sampled parent's record, none other"
    );
    assert!(children.iter().all(|s| {
        let id = u128::from_be_bytes(s.span_context.trace_id().to_bytes());
        (0xA000..0xA000 + 300).contains(&id)
    }));
    let roots = process.len() - children.len();
    // 10 % of 2 000: 200 expected, a standard deviation of 13.4.
    assert!((120..=280).contains(&roots), "{roots} of 2 000 roots kept");
    assert!(
        process
            .iter()
            .all(|s| { s.attributes.iter().any(|kv| kv.key.as_str() == PRESAMPLED) })
    );

    // Failing records at 50 %: each is retried and dead-lettered. The kept ones keep their
    // span, three retries and a dead letter in one trace; of the others nothing is kept (their
    // retries would otherwise be roots, half of them kept: fragments of no trace).
    let failing: Vec<_> = (0..40)
        .map(|n| {
            let fails = Ev::failing(n as u32, u32::MAX, Class::Retryable);
            record(0, n, &format!("ORD-{n}"), fails)
        })
        .collect();
    let (spans, built, letters) = run(Sampling::parent_based(0.5), failing).await;
    assert_eq!(letters, 40);
    let process = named(&spans, "process");
    assert_eq!(built, process.len());
    assert!((5..=35).contains(&built), "{built} of 40 kept");
    assert_eq!(named(&spans, "retry").len(), 3 * built);
    assert_eq!(named(&spans, "dead letter").len(), built);
    let kept: std::collections::HashSet<_> =
        process.iter().map(|s| s.span_context.trace_id()).collect();
    assert_eq!(kept.len(), built, "a trace each");
    assert!(
        spans
            .iter()
            .all(|s| kept.contains(&s.span_context.trace_id())),
        "every span kept is in the trace of a kept record"
    );

    // Every record, the provider deciding (the default): a span for each, as before.
    let records: Vec<_> = (0..50)
        .map(|n| record(0, n, "K", Ev::ok(n as u32)))
        .collect();
    let (spans, built, _) = run(Sampling::EVERY_RECORD, records).await;
    assert_eq!((built, named(&spans, "process").len()), (50, 50));
}

#[test]
fn otel_sampler_names_map_to_the_sampling_they_stand_for() {
    let cases = [
        (None, None, Sampling::parent_based(1.0)),
        (Some("always_on"), None, Sampling::ratio(1.0)),
        (Some("always_off"), None, Sampling::ratio(0.0)),
        (Some("traceidratio"), Some("0.01"), Sampling::ratio(0.01)),
        (Some("traceidratio"), None, Sampling::ratio(1.0)),
        (
            Some("parentbased_always_off"),
            None,
            Sampling::parent_based(0.0),
        ),
        (
            Some("parentbased_traceidratio"),
            Some(" 0.25 "),
            Sampling::parent_based(0.25),
        ),
    ];
    for (name, arg, expected) in cases {
        assert_eq!(
            Sampling::from_otel(name, arg),
            Ok(expected),
            "{name:?} {arg:?}"
        );
    }
    for (name, arg) in [
        (Some("jaeger_remote"), None),
        (Some("traceidratio"), Some("1.5")),
        (Some("traceidratio"), Some("half")),
        (Some("parentbased_traceidratio"), Some("-0.1")),
    ] {
        assert!(Sampling::from_otel(name, arg).is_err(), "{name:?} {arg:?}");
    }
}
