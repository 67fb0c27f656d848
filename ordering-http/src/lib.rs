//! The HTTP side of a service built on `ordering-core`, free of any domain, so that a service
//! is only its routes (`ordering-service` builds a whole consumer service on it; the
//! repository's two shells use it directly):
//!
//! - [`listen`], [`serve`]: hyper 1.x over TCP, with a header timeout and graceful shutdown;
//! - [`json()`], [`ApiError`]: the JSON bodies of the contract (`success`, `error`, `details`);
//! - [`read_typed`], [`read_typed_or_default`], [`body`]: a request body, size-limited, read
//!   into its type, with errors that name the field;
//! - [`query`]: query-string parameters;
//! - [`mod@env`], [`settings`]: settings from flags and environment variables (clap), naming
//!   the bad one;
//! - [`shutdown_signal`], [`init_tracing`] (logs, and traces over OTLP: [`telemetry`]);
//! - [`metrics::Metrics`]: Prometheus `/metrics`;
//! - [`auth::OperatorToken`]: the bearer token of operator endpoints;
//! - [`router::Routes`]: a shell's routing table, written once;
//! - [`openapi`]: the HTTP contract (`docs/openapi.yaml`), served as JSON.

#![deny(missing_docs)]

pub mod auth;
pub mod body;
pub mod cached;
pub mod env;
#[cfg(feature = "testing")]
pub mod fuzz;
pub mod limit;
pub mod memory;
pub mod metrics;
pub mod openapi;
pub mod registry;
pub mod router;
pub mod security;
mod serve;
pub mod settings;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
pub mod wait;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Request, StatusCode};
use serde_json::{Value, json};

pub use serve::{Listener, MAX_CONNECTIONS, listen, serve};
pub use telemetry::{Telemetry, init_tracing};

/// What every handler returns.
pub type Response = hyper::Response<Full<Bytes>>;

/// A JSON response.
pub fn json(status: StatusCode, body: &Value) -> Response {
    json_bytes(status, Bytes::from(body.to_string()))
}

/// A JSON response whose body is already serialised (an answer replayed byte for byte).
pub fn json_bytes(status: StatusCode, body: Bytes) -> Response {
    let mut response = hyper::Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A request that cannot be served: `{"success": false, "error": title, "details": details}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The answer's status: `4xx` for a request the client must change, `5xx` for one the
    /// service cannot serve now.
    pub status: StatusCode,
    /// The body's `error`: a fixed title per kind of error (`"Invalid request"`).
    pub title: &'static str,
    /// The body's `details`: what exactly was wrong, for the client to read.
    pub details: String,
    /// When to try again, sent as `Retry-After` (whole seconds, rounded up, at least 1).
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// An error with this `status`, `title` and `details`, without `Retry-After`.
    pub fn new(status: StatusCode, title: &'static str, details: impl Into<String>) -> Self {
        Self {
            status,
            title,
            details: details.into(),
            retry_after: None,
        }
    }

    /// The same error, telling the client to try again after `wait`.
    #[must_use]
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// `400` "Invalid request": the request itself is wrong; sent again unchanged, it fails
    /// again.
    pub fn bad_request(details: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Invalid request", details)
    }

    /// `404` "Not found": the path, or the thing the request names, does not exist.
    pub fn not_found(details: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not found", details)
    }

    /// `503` "Broker unavailable": the Kafka cluster cannot serve the request now; worth
    /// trying again later.
    pub fn broker_unavailable(details: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Broker unavailable",
            details,
        )
    }

    /// `503` "Store unavailable": the service's database cannot serve the request now; worth
    /// trying again later.
    pub fn store_unavailable(details: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Store unavailable",
            details,
        )
    }

    /// `500` "Internal error": the service itself failed (a task that panicked); trying again
    /// at once is unlikely to help.
    pub fn internal(details: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal error", details)
    }

    /// `503` "Overloaded": the service sheds load (more is asked than it can pass on), so
    /// nothing was done; the client tries again after `retry_after`.
    pub fn overloaded(details: impl Into<String>, retry_after: Duration) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "Overloaded", details)
            .with_retry_after(retry_after)
    }

    /// The JSON error body with [`status`](Self::status), plus `Retry-After` when set and
    /// `WWW-Authenticate` on a `401`.
    pub fn into_response(self) -> Response {
        let mut response = json(
            self.status,
            &json!({"success": false, "error": self.title, "details": self.details}),
        );
        if let Some(wait) = self.retry_after {
            let seconds = retry_after_seconds(wait).max(1);
            response
                .headers_mut()
                .insert(hyper::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750: which scheme to answer with.
            response.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"operator\""),
            );
        }
        response
    }
}

/// The answer to a known path with the wrong method; `allow` lists the methods it has.
pub fn method_not_allowed(allow: &str) -> Response {
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
        format!("use {allow}"),
    )
    .into_response();
    // Method names are tokens, always a valid header value.
    if let Ok(allow) = HeaderValue::from_str(allow) {
        response.headers_mut().insert(ALLOW, allow);
    }
    response
}

/// The answer to an unknown path.
pub fn no_such_path(path: &str) -> Response {
    ApiError::not_found(format!("no endpoint {path}")).into_response()
}

/// How long a client may take to send a request's body: one that sends headers and then
/// nothing gets `408` rather than holding a connection and a task forever.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads a JSON object body into `T` (at most `limit` bytes: `413` above, `408` if it does not arrive within [`BODY_TIMEOUT`]). Not JSON is `400` "not
/// valid JSON"; not an object `400` "must be a JSON object"; a field of the wrong type, or one
/// `T` does not know, `400` naming the field ([`body`] has field readers that say more).
pub async fn read_typed<T>(request: Request<Incoming>, limit: usize) -> Result<T, ApiError>
where
    T: serde::de::DeserializeOwned,
{
    let body = read_body(request, limit).await?;
    parse_typed(&body)
}

/// [`read_typed`], where an empty body is `T::default()` (every field optional).
pub async fn read_typed_or_default<T>(
    request: Request<Incoming>,
    limit: usize,
) -> Result<T, ApiError>
where
    T: serde::de::DeserializeOwned + Default,
{
    let body = read_body(request, limit).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_typed(&body)
}

fn parse_typed<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // An object is checked for first: serde would take an array for a struct, field by field.
    // A look at the first byte, so a good body is parsed once.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(match serde_json::from_slice::<Value>(body) {
            Ok(value) => ApiError::bad_request(format!(
                "the body must be a JSON object, got {}",
                kind(&value)
            )),
            Err(e) => ApiError::bad_request(format!("the body is not valid JSON: {e}")),
        });
    }
    let mut json = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("the body is not valid JSON: {inner}"))
        } else {
            ApiError::bad_request(format!("{path}: {inner}"))
        }
    })
}

async fn read_body(request: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    let collect = Limited::new(request.into_body(), limit).collect();
    let body = tokio::time::timeout(BODY_TIMEOUT, collect)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "Request timeout",
                format!("the body did not arrive within {BODY_TIMEOUT:?}"),
            )
        })?
        .map_err(|error| {
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Body too large",
                    format!("the body must be at most {limit} bytes"),
                )
            } else {
                ApiError::bad_request(format!("the body could not be read: {error}"))
            }
        })?
        .to_bytes();
    Ok(body)
}

/// The query-string parameters of a request, percent-decoded (the last of a repeated name wins).
pub fn query<B>(request: &Request<B>) -> HashMap<String, String> {
    request
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// Why a shell stops.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stop {
    /// SIGINT or SIGTERM: a clean stop, exit code 0.
    Signal,
    /// The producer failed for good (librdkafka's fatal state): every later publish would
    /// fail, so the shell stops with exit code 3 for its supervisor to start a new one,
    /// rather than answer `503` forever.
    ProducerFailed(String),
}

impl Stop {
    /// The code to exit the process with: `0` after a signal, `3` when the producer failed.
    pub fn exit_code(&self) -> std::process::ExitCode {
        match self {
            Self::Signal => std::process::ExitCode::SUCCESS,
            Self::ProducerFailed(_) => std::process::ExitCode::from(3),
        }
    }
}

/// Completes on SIGINT/SIGTERM, or when `producer` fails for good.
pub async fn stop_reason(producer: &ordering_kafka::KafkaProducer) -> Stop {
    tokio::select! {
        () = shutdown_signal() => Stop::Signal,
        error = producer.fatal() => {
            tracing::error!(%error, "the producer failed for good; stopping, so that a supervisor restarts this service");
            Stop::ProducerFailed(error)
        }
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// For people: one line per event.
    Text,
    /// For machines: one JSON object per line, with the record's span (topic, partition,
    /// offset, key) as fields.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        match raw.to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err("must be text or json".into()),
        }
    }
}

/// A request as handlers receive it.
pub type HttpRequest = Request<Incoming>;

/// A `Retry-After` value: whole seconds, rounded up.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(super::retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(super::retry_after_seconds(Duration::from_secs(7)), 7);
        assert_eq!(super::retry_after_seconds(Duration::from_millis(7001)), 8);
    }

    use super::*;

    #[test]
    fn an_error_with_a_wait_says_retry_after_in_whole_seconds() {
        let response =
            ApiError::overloaded("publishing cannot keep up", Duration::from_millis(250))
                .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[hyper::header::RETRY_AFTER], "1");
        let later =
            ApiError::broker_unavailable("down").with_retry_after(Duration::from_millis(2100));
        assert_eq!(
            later.into_response().headers()[hyper::header::RETRY_AFTER],
            "3"
        );
        let now = ApiError::broker_unavailable("down").with_retry_after(Duration::ZERO);
        assert_eq!(
            now.into_response().headers()[hyper::header::RETRY_AFTER],
            "1"
        );
        let plain = ApiError::broker_unavailable("down").into_response();
        assert!(plain.headers().get(hyper::header::RETRY_AFTER).is_none());
    }
}
