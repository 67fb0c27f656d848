//! Prometheus `/metrics` for the shells: one recorder per process, installed at start-up,
//! gathering what the libraries record through the `metrics` facade (the dispatcher, the
//! producer and consumer, the store, redrives) and what [`serve`](crate::serve) records of
//! each HTTP request.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::StatusCode;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use metrics::Unit;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::Response;

/// Histogram buckets, in seconds: from half a millisecond (a store write in a group commit)
/// to ten seconds (a publish at its delivery timeout).
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histograms are compacted (the exporter leaves it to its user).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process's metrics, rendered in the Prometheus text format.
#[derive(Clone)]
pub struct Metrics(PrometheusHandle);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Why the recorder could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install the metrics recorder: {0}")]
pub struct MetricsError(String);

impl Metrics {
    /// Installs the process-wide recorder and starts its upkeep on the current runtime. Call
    /// once, before the libraries are set up (what they record earlier is not seen).
    pub fn install() -> Result<Self, MetricsError> {
        let handle = PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .and_then(PrometheusBuilder::install_recorder)
            .map_err(|e| MetricsError(e.to_string()))?;
        let upkeep = handle.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(UPKEEP_EVERY).await;
                upkeep.run_upkeep();
            }
        });
        describe();
        Ok(Self(handle))
    }

    /// A recorder of its own, not installed for the process: for in-process tests of a
    /// shell's routes, where several shells share one process. Renders only what is recorded
    /// through it, which is nothing.
    pub fn detached() -> Self {
        Self(PrometheusBuilder::new().build_recorder().handle())
    }

    /// The metrics in the Prometheus text format, as `GET /metrics` serves them.
    pub fn render(&self) -> String {
        self.0.render()
    }

    /// `GET /metrics`.
    pub fn response(&self) -> Response {
        let mut response = hyper::Response::new(Full::new(Bytes::from(self.render())));
        *response.status_mut() = StatusCode::OK;
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        response
    }
}

fn describe() {
    metrics::describe_counter!(
        "http_requests_total",
        "HTTP requests answered, by route, method and status"
    );
    metrics::describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request, by route and method"
    );
}

/// Records one answered request. `route` is one of the service's paths or `other`, so that
/// clients cannot grow the metrics without bound by asking for made-up paths.
pub(crate) fn request(route: &'static str, method: &str, status: StatusCode, elapsed: Duration) {
    let method = match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        _ => "other",
    };
    metrics::counter!(
        "http_requests_total",
        "route" => route, "method" => method, "status" => status.as_u16().to_string()
    )
    .increment(1);
    metrics::histogram!("http_request_duration_seconds", "route" => route, "method" => method)
        .record(elapsed);
}

pub(crate) fn describe_limits() {
    metrics::describe_counter!(
        "http_work_refused_total",
        "Expensive requests answered 503 because their kind was at its concurrency limit, by kind"
    );
}

/// One request of `kind` turned away busy.
pub(crate) fn work_refused(kind: &'static str) {
    metrics::counter!("http_work_refused_total", "kind" => kind).increment(1);
}
