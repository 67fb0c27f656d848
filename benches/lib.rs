//! What the load-run binaries share; the criterion benchmarks are the `[[bench]]` targets of
//! this package (`cargo bench`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
        match self {
            Self::None => None,
            Self::Logs => {
                let logs = logs("info,ordering::messaging=off,shell_http::request=off");
                let registry = tracing_subscriber::registry().with(logs);
                Some((tracing::Dispatch::new(registry), None))
            }
            Self::Otel1Pct => {
                let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                    .with_sampler(opentelemetry_sdk::trace::Sampler::TraceIdRatioBased(0.01))
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
