//! What the load-run binaries share; the criterion benchmarks are the `[[bench]]` targets of
//! this package (`cargo bench`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use ordering_core::order::{
    NumItems, OrderError, OrderEvent, OrderId, Status, StatusUpdate, generate_order,
};
use ordering_core::testing::MemorySink;
use ordering_core::{DeadLetter, Dispatcher, DispatcherConfig, Handler, RecordMeta};
use ordering_kafka::order::AvroCodec;
use ordering_kafka::{Cluster, Codec, KafkaProducer, KafkaSource, ProducerConfig, SourceConfig};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// `target/release/<name>`, the shell a load run measures; an error saying how to build it
/// when it is missing.
pub fn release_binary(name: &str) -> Result<PathBuf, Error> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/release")
        .join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: cargo build --release -p {name}",
            path.display()
        )
        .into())
    }
}

/// Runs `concurrency` loops of `one` (given a request number) for `seconds`; completions
/// per second.
pub async fn load<F, Fut>(concurrency: usize, seconds: u64, one: F) -> Result<f64, Error>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Error>> + Send,
{
    let one = Arc::new(one);
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency as u64)
        .map(|w| {
            let (one, done, stop) = (one.clone(), done.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = w;
                while !stop.load(Ordering::Relaxed) {
                    one(n).await?;
                    done.fetch_add(1, Ordering::Relaxed);
                    n += concurrency as u64;
                }
                Ok::<_, Error>(())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let count = done.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    for worker in workers {
        worker.await??;
    }
    Ok(count as f64 / elapsed.as_secs_f64())
}

/// The subscribers a service runs the library under, for measuring what tracing costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscriber {
    /// None at all: every span call site is off.
    None,
    /// Logs only (to nowhere), as the shells run without an OTLP endpoint: the library's
    /// messaging spans and the request spans filtered out at their call sites.
    Logs,
    /// Logs and an OpenTelemetry layer sampling 1% (records that carry no trace are roots
    /// the sampler decides on), exporting in batches to an exporter that drops them: as the
    /// shells run with an endpoint and `OTEL_TRACES_SAMPLER=traceidratio`, 0.01.
    Otel1Pct,
}

impl std::str::FromStr for Subscriber {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        match raw {
            "none" => Ok(Self::None),
            "logs" => Ok(Self::Logs),
            "otel1pct" => Ok(Self::Otel1Pct),
            other => Err(format!("{other}: none, logs or otel1pct")),
        }
    }
}

/// A span exporter that drops what it is given: the cost measured is the spans', not a
/// network's.
#[derive(Debug)]
struct Discard;

impl opentelemetry_sdk::trace::SpanExporter for Discard {
    async fn export(
        &self,
        _batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

impl Subscriber {
    /// The subscriber, and the tracer provider to shut down after (for `Otel1Pct`). Make it
    /// just before its case and drop it after: call sites take the interest of the
    /// subscribers alive.
    pub fn dispatch(
        self,
    ) -> Option<(
        tracing::Dispatch,
        Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    )> {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::{EnvFilter, Layer};
        let logs = |filter: &str| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::sink)
                .with_filter(EnvFilter::new(filter))
        };
        // What decides before a record's span: set where the tracer provider is built, so
        // only with one (as the shells do).
        if self != Self::Otel1Pct {
            ordering_core::trace::set_sampling(ordering_core::trace::Sampling::EVERY_RECORD);
        }
        match self {
            Self::None => None,
            Self::Logs => {
                let logs = logs("info,ordering::messaging=off,ordering_http::request=off");
                let registry = tracing_subscriber::registry().with(logs);
                Some((tracing::Dispatch::new(registry), None))
            }
            Self::Otel1Pct => {
                // As the shells do for `OTEL_TRACES_SAMPLER=traceidratio`, 0.01.
                let sampling = ordering_core::trace::Sampling::ratio(0.01);
                ordering_core::trace::set_sampling(sampling);
                let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                    .with_sampler(sampling.sampler())
                    .with_batch_exporter(Discard)
                    .build();
                let traces = tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("bench"))
                    .with_location(false)
                    .with_threads(false)
                    .with_tracked_inactivity(false)
                    .with_filter(
                        tracing_subscriber::filter::Targets::new()
                            .with_target(ordering_core::trace::TARGET, tracing::Level::INFO),
                    );
                let registry = tracing_subscriber::registry()
                    .with(logs("info,ordering::messaging=off"))
                    .with(traces);
                Some((tracing::Dispatch::new(registry), Some(provider)))
            }
        }
    }
}

/// Records per second from the first record, which starts the clock.
pub fn rate(records: usize, started: Instant) -> f64 {
    (records - 1) as f64 / started.elapsed().as_secs_f64()
}

/// Fills `topic` with `records` status updates (keys `ORD-n`), acknowledged.
pub async fn fill(cluster: &Cluster, topic: &str, records: usize) -> Result<(), Error> {
    let mut config = ProducerConfig::new(cluster);
    config.delivery_timeout = Duration::from_secs(60);
    config.overrides.push(("linger.ms".into(), "20".into()));
    let producer = KafkaProducer::new(&config)?;
    let codec = AvroCodec::new()?;
    let status = Status::parse("shipped")?;
    let mut in_flight = FuturesUnordered::new();
    for n in 0..records {
        let id = OrderId::parse(&format!("ORD-{n}"))?;
        let update = StatusUpdate::new(&id, &status, "2026-01-30T12:00:00Z".into());
        let payload = codec.encode(&update)?;
        let producer = producer.clone();
        let topic = topic.to_owned();
        in_flight.push(async move {
            producer
                .send(&topic, Some(update.order_id.as_bytes()), &payload, &[])
                .await
        });
        if in_flight.len() >= 10_000 {
            in_flight.next().await.transpose()?;
        }
    }
    while let Some(sent) = in_flight.next().await {
        sent?;
    }
    Ok(())
}

/// A handler that does nothing: the figure is the transport's and the engine's cost.
struct NoOp;

#[async_trait::async_trait]
impl Handler<OrderEvent> for NoOp {
    type Error = OrderError;
    async fn handle(&self, _event: &OrderEvent, _meta: &RecordMeta) -> Result<(), OrderError> {
        Ok(())
    }
}

/// The engine: every record decoded, dispatched in its lane, acknowledged, committed.
pub async fn drain_engine(
    cluster: &Cluster,
    topic: &str,
    records: usize,
    group: &str,
) -> Result<f64, Error> {
    let config = SourceConfig::new(cluster, group, [topic]);
    let source = KafkaSource::new(&config, AvroCodec::new()?)?;
    let dispatcher = Dispatcher::new(
        source,
        NoOp,
        MemorySink::<DeadLetter>::new(),
        DispatcherConfig::default(),
    );
    let stats = dispatcher.stats();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(dispatcher.run(async {
        let _ = stopped.await;
    }));
    while stats.snapshot().applied == 0 {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let started = Instant::now();
    while (stats.snapshot().applied as usize) < records {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let rate = rate(records, started);
    let _ = stop.send(());
    run.await??;
    Ok(rate)
}

/// Status updates per second applied to `store` directly (8 192 in flight), after 2 000
/// orders are created.
pub async fn update_rate(
    store: std::sync::Arc<dyn ordering_store::Store>,
    total: usize,
) -> Result<f64, Error> {
    let mut rng = rand::rng();
    let ids: Vec<OrderId> = (0..2000)
        .map(|n| OrderId::parse(&format!("ORD-{n:07}")))
        .collect::<Result<_, _>>()?;
    for (n, id) in ids.iter().enumerate() {
        let order = generate_order(
            id.clone(),
            NumItems::new(2)?,
            "2026-01-30T12:00:00Z".into(),
            &mut rng,
        );
        store
            .create(
                &order,
                ordering_core::Position::new("order-events", 0, n as i64),
            )
            .await?;
    }
    let status = Status::parse("shipped")?;
    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    for u in 0..total {
        let (store, id, status) = (store.clone(), ids[u % ids.len()].clone(), status.clone());
        in_flight.push(async move {
            store
                .update_status(
                    &id,
                    ordering_core::order::StatusChange::new(
                        status,
                        ordering_core::Position::new("order-status-updates", 1, u as i64),
                    ),
                )
                .await
        });
        if in_flight.len() >= 8192 {
            in_flight.next().await.transpose()?;
        }
    }
    while let Some(done) = in_flight.next().await {
        done?;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Requests/s of `PUT /api/update-order` on cart-shell over keep-alive connections (HTTPS
/// where the shell serves it), each answer a `202`.
pub async fn cart_ingest(
    shell: &ordering_http::testing::ShellProcess,
    concurrency: usize,
    seconds: u64,
) -> Result<f64, Error> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build::<_, http_body_util::Full<bytes::Bytes>>(ordering_http::testing::connector()?);
    let url = shell.url("/api/update-order");
    load(concurrency, seconds, move |n| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let body = format!(r#"{{"orderId": "ORD-{}", "status": "shipped"}}"#, n % 1000);
            let request = hyper::Request::put(url)
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))?;
            let response = client.request(request).await?;
            let status = response.status();
            http_body_util::BodyExt::collect(response.into_body()).await?;
            if status != hyper::StatusCode::ACCEPTED {
                return Err(format!("cart-shell answered {status}").into());
            }
            Ok(())
        }
    })
    .await
}
