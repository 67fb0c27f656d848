//! Logs and traces. Logs go to stdout (`LOG_FORMAT`, `RUST_LOG`). Traces are exported over
//! OTLP (HTTP/protobuf) when OpenTelemetry's standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the SDK reads the rest of its standard
//! variables itself (`OTEL_SERVICE_NAME`, `OTEL_BSP_*`, …). The sampler
//! (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`) is read here: the libraries decide
//! whether a record gets a span before building it, by the rule the provider's sampler is
//! given. Without an endpoint no span of the libraries' messaging target or of the request
//! spans is even created: tracing costs nothing when off.

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use ordering_core::trace::{Sampling, SamplingError};
use tracing::Level;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::env::{Env, EnvError};
use crate::{HttpRequest, LogFormat, Response};

/// The target of the request spans (one per HTTP request, `otel.kind = server`).
pub const REQUEST_TARGET: &str = "ordering_http::request";

/// Spans for traces only: with traces off, filtered out at their call sites.
const TRACE_ONLY: [(&str, &str); 2] = [
    (ordering_core::trace::TARGET, "ordering::messaging=off"),
    (REQUEST_TARGET, "ordering_http::request=off"),
];

/// Keeps the exporter; dropping it flushes the spans not yet sent (at the end of `main`).
#[derive(Debug, Default)]
#[must_use = "dropping it stops the export of traces"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether traces are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("traces not all exported at shutdown: {error}");
        }
    }
}

/// Installs the process's subscriber: logs in `LOG_FORMAT` (`text`, the default, or `json`)
/// filtered by `RUST_LOG` (default `info,rdkafka=warn`), and, with an OTLP endpoint set, an
/// OpenTelemetry layer exporting the spans of `service` (the `service.name` unless
/// `OTEL_SERVICE_NAME` says otherwise) and of the libraries. A bad `LOG_FORMAT` is an error
/// naming it; an exporter that cannot be built stops tracing, not the service.
pub fn init_tracing(env: &Env, service: &str) -> Result<Telemetry, EnvError> {
    let format = env.get("LOG_FORMAT", LogFormat::Text)?;
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let endpoint = set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let sampling = if endpoint {
        sampling()?
    } else {
        Sampling::default()
    };
    let provider = endpoint
        .then(|| exporter(service, &sampling))
        .and_then(|built| match built {
            Ok(provider) => Some(provider),
            Err(error) => {
                eprintln!("{service}: traces are not exported: {error}");
                None
            }
        });
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn"));
    // The per-record messaging spans are for traces, never for logs (formatting their fields
    // for every record cost more than the record): a failing record's logs carry its trace
    // ids in its own span. The request spans are logged when traces are on (their ids), and
    // never created when off. Unless RUST_LOG names these targets itself.
    let asked = std::env::var("RUST_LOG").unwrap_or_default();
    for (target, directive) in TRACE_ONLY {
        let for_traces_only = target == ordering_core::trace::TARGET || provider.is_none();
        if for_traces_only
            && !asked.contains(target)
            && let Ok(directive) = directive.parse()
        {
            filter = filter.add_directive(directive);
        }
    }
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_filter(filter).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_filter(filter)
            .boxed(),
    };
    // Already set (a second call in one process): the first one stays. Without traces, the
    // logs alone: an absent layer would still make every span call site ask.
    let _ = match &provider {
        None => Registry::default().with(logs).try_init(),
        Some(provider) => {
            // No code locations, threads or busy/idle times per span: attributes nobody
            // reads, paid on every record.
            let traces = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer(service.to_owned()))
                .with_location(false)
                .with_threads(false)
                .with_tracked_inactivity(false)
                .with_filter(
                    Targets::new()
                        .with_target(ordering_core::trace::TARGET, Level::INFO)
                        .with_target(REQUEST_TARGET, Level::INFO),
                );
            Registry::default().with(logs).with(traces).try_init()
        }
    };
    if provider.is_some() {
        ordering_core::trace::set_sampling(sampling);
    }
    Ok(Telemetry { provider })
}

/// The sampling `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` name, decided by the
/// libraries before a record's span is built (so an unsampled record costs no span) and by the
/// provider's sampler for every other span: one rule for both.
fn sampling() -> Result<Sampling, EnvError> {
    // OpenTelemetry's variables, read from the environment as the SDK reads the others (they
    // are not settings of the service's command line).
    let var = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let (name, arg) = (var("OTEL_TRACES_SAMPLER"), var("OTEL_TRACES_SAMPLER_ARG"));
    Sampling::from_otel(name.as_deref(), arg.as_deref()).map_err(|error| {
        let (name, value) = match &error {
            SamplingError::UnknownSampler(value) => ("OTEL_TRACES_SAMPLER", value),
            SamplingError::BadRatio(value) => ("OTEL_TRACES_SAMPLER_ARG", value),
        };
        EnvError {
            name,
            value: value.clone(),
            reason: error.to_string(),
        }
    })
}

fn exporter(
    service: &str,
    sampling: &Sampling,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()?;
    let mut resource = Resource::builder();
    let named = std::env::var_os("OTEL_SERVICE_NAME").is_some()
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.contains("service.name="));
    if !named {
        resource = resource.with_service_name(service.to_owned());
    }
    Ok(SdkTracerProvider::builder()
        .with_sampler(sampling.sampler())
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// The span of one HTTP request (`otel.kind = server`), continuing the trace of the caller's
/// `traceparent`; disabled (and free) unless traces are on. Whether it is sampled is the
/// sampler's word: with the SDK's default (`parentbased_always_on`) and every `parentbased_*`
/// sampler, a caller's sampled flag decides; `OTEL_TRACES_SAMPLER=traceidratio` at a public
/// edge keeps the decision ours (README, "Tracing").
pub(crate) fn request_span(request: &HttpRequest, route: &'static str) -> tracing::Span {
    let method = request.method().as_str();
    let span = tracing::info_span!(
        target: REQUEST_TARGET,
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = method,
        http.route = route,
        url.path = request.uri().path(),
        http.response.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    if span.is_disabled() {
        return span;
    }
    // `traceparent` and `tracestate` only: a public caller's `baggage` would otherwise be
    // copied into every record and dead letter this request causes, and read as ours.
    let parent = TraceContextPropagator::new()
        .extract(&opentelemetry_http::HeaderExtractor(request.headers()));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    ordering_core::trace::record_ids(&span);
    span
}

/// Answers with the request span's `traceparent`, so a client can find its trace.
pub(crate) fn answer(span: &tracing::Span, response: &mut Response) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", response.status().as_u16());
    let context = span.context();
    // `traceparent` (and `tracestate`) only: baggage is the caller's, not for the answer.
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(
            &context,
            &mut opentelemetry_http::HeaderInjector(response.headers_mut()),
        );
    }
}
