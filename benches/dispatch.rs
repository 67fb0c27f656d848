//! The retry decision and the dispatch path, on one core (a current-thread runtime).
//!
//! `cargo bench -p ordering-benches --bench dispatch`

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ordering_benches::Subscriber;
use ordering_core::testing::{MemorySink, MemorySource};
use ordering_core::{
    Classify, DeadLetter, Dispatcher, DispatcherConfig, ErrorClass, Handler, LaneMode, Record,
    RecordMeta, RetryPolicy, TopicPartition,
};
use serde::Serialize;

const RECORDS: u64 = 100_000;
const PARTITIONS: u64 = 8;

#[derive(Serialize)]
struct Ev {
    id: u64,
    fail_once: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("not yet")]
struct NotYet;

impl Classify for NotYet {
    fn class(&self) -> ErrorClass {
        ErrorClass::Retryable
    }
    fn kind(&self) -> &'static str {
        "NotYet"
    }
}

/// Does nothing, except fail the first attempt of events marked `fail_once`.
#[derive(Default)]
struct NoOp {
    failed: Mutex<HashSet<u64>>,
}

#[async_trait]
impl Handler<Ev> for NoOp {
    type Error = NotYet;

    async fn handle(&self, ev: &Ev, _meta: &RecordMeta) -> Result<(), NotYet> {
        if ev.fail_once && self.failed.lock().unwrap().insert(ev.id) {
            return Err(NotYet);
        }
        Ok(())
    }
}

/// `RECORDS` records round-robin over `PARTITIONS` partitions; every `fail_every`-th fails once.
fn records(fail_every: Option<u64>, keyed: bool) -> Vec<Record<Ev>> {
    let tps: Vec<_> = (0..PARTITIONS)
        .map(|p| TopicPartition::new("bench", p as i32))
        .collect();
    (0..RECORDS)
        .map(|id| {
            let p = id % PARTITIONS;
            let mut meta = RecordMeta::new(tps[p as usize].clone(), (id / PARTITIONS) as i64);
            if keyed {
                meta.key = Some((id % 64).to_le_bytes().to_vec());
            }
            let fail_once = fail_every.is_some_and(|n| id % n == 0);
            Record::new(meta, Vec::new(), Ok(Ev { id, fail_once }))
        })
        .collect()
}

/// `records`, each carrying a `traceparent` as a traced producer writes it (its own trace,
/// sampled): the realistic case for a consumer with traces on.
fn records_with_parents() -> Vec<Record<Ev>> {
    let mut records = records(None, false);
    for (n, record) in records.iter_mut().enumerate() {
        let trace = 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736u128.wrapping_mul(n as u128 + 1);
        let value = format!("00-{trace:032x}-00f067aa0ba902b7-01");
        record.meta.headers.push(ordering_core::Header {
            name: "traceparent".into(),
            value: Some(value.into_bytes()),
        });
    }
    records
}

/// Runs `records` to the end and checks every one was applied, with the expected retries.
async fn dispatch(records: Vec<Record<Ev>>, lanes: LaneMode, retries: u64, handler_latency: bool) {
    let config = DispatcherConfig {
        lanes,
        handler_latency,
        max_in_flight_per_partition: std::num::NonZeroUsize::new(RECORDS as usize).unwrap(),
        ..DispatcherConfig::default()
    };
    let source = MemorySource::from_records(records);
    let dead_letters = MemorySink::<DeadLetter>::new();
    let dispatcher = Dispatcher::new(source, NoOp::default(), dead_letters, config);
    let stats = dispatcher.stats();
    dispatcher.run(std::future::pending()).await.unwrap();
    let stats = stats.snapshot();
    assert_eq!((stats.applied, stats.retries), (RECORDS, retries));
}

fn retry_decision(c: &mut Criterion) {
    let policy = RetryPolicy::default();
    c.bench_function("retry_decision", |b| {
        b.iter(|| {
            for attempt in 1..=4 {
                std::hint::black_box(
                    policy.decide(std::hint::black_box(attempt), ErrorClass::Retryable),
                );
            }
        })
    });
}

fn dispatch_path(c: &mut Criterion) {
    // Paused clock: a retry's backoff costs no wall time, so the figure is the engine's own
    // work (bookkeeping, timers, rescheduling), not the sleep.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let mut group = c.benchmark_group("dispatch_100k");
    group.throughput(Throughput::Elements(RECORDS));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    // The last case, against the first: what timing each handler call for the latency
    // histogram costs.
    let cases = [
        ("noop_partition_lanes", None, LaneMode::Partition, true),
        ("noop_key_lanes", None, LaneMode::Key, true),
        (
            "1pct_fail_once_partition_lanes",
            Some(100),
            LaneMode::Partition,
            true,
        ),
        (
            "noop_partition_lanes_untimed",
            None,
            LaneMode::Partition,
            false,
        ),
    ];
    for (name, fail_every, lanes, timed) in cases {
        let keyed = lanes == LaneMode::Key;
        let retries = fail_every.map_or(0, |n| RECORDS / n);
        group.bench_function(name, |b| {
            b.iter_batched(
                || records(fail_every, keyed),
                |records| rt.block_on(dispatch(records, lanes, retries, timed)),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// The no-op path under the subscribers a service runs ([`Subscriber`]): none, logs only
/// (the shells without an OTLP endpoint), logs and an OpenTelemetry layer sampling 1%.
/// Against each other in one run; `none` is also `noop_partition_lanes` of the group above.
fn dispatch_traced(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let mut group = c.benchmark_group("dispatch_100k_tracing");
    group.throughput(Throughput::Elements(RECORDS));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    // Records without trace headers (the ratio decides) and with a producer's (its trace id
    // does): each under no subscriber and under 1 % sampling.
    for (name, kind, parents) in [
        ("no_subscriber", Subscriber::None, false),
        ("logs_only", Subscriber::Logs, false),
        ("otel_1pct_sampled", Subscriber::Otel1Pct, false),
        ("with_parents_no_subscriber", Subscriber::None, true),
        ("with_parents_otel_1pct_sampled", Subscriber::Otel1Pct, true),
    ] {
        let subscriber = kind.dispatch();
        let run = |records| rt.block_on(dispatch(records, LaneMode::Partition, 0, true));
        let make = move || match parents {
            true => records_with_parents(),
            false => records(None, false),
        };
        group.bench_function(name, |b| {
            b.iter_batched(
                make,
                |records| match &subscriber {
                    Some((subscriber, _)) => {
                        tracing::dispatcher::with_default(subscriber, || run(records))
                    }
                    None => run(records),
                },
                BatchSize::PerIteration,
            )
        });
        if let Some((_, Some(provider))) = subscriber {
            let _ = provider.shutdown();
        }
    }
    group.finish();
}

criterion_group!(benches, retry_decision, dispatch_path, dispatch_traced);
criterion_main!(benches);
