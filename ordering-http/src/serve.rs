//! Serving: accept connections until shutdown, then let requests in flight finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::tls::Https;
use tracing::Instrument;

use crate::{HttpRequest, Response};

/// A client gets this long to send its request headers (slow clients cannot pin connections).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests in flight at shutdown get this long to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a shell serves: a bound socket, and TLS when it serves HTTPS.
pub struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("tcp", &self.tcp)
            .field("https", &self.tls.is_some())
            .finish()
    }
}

impl Listener {
    /// HTTPS only, with `https` ([`crate::tls::https`]); `None` keeps plain HTTP.
    #[must_use]
    pub fn with_https(mut self, https: Option<Https>) -> Self {
        self.tls = https.map(|h| h.acceptor);
        self
    }

    /// The address bound, with the port the system chose when asked for port 0.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

impl From<TcpListener> for Listener {
    fn from(tcp: TcpListener) -> Self {
        Self { tcp, tls: None }
    }
}

/// Binds `addr` for `service` and logs it; on failure says why, naming the variables that
/// set the address, and gives the exit code to stop with.
pub async fn listen(
    service: &str,
    addr: SocketAddr,
    https: Option<Https>,
) -> Result<Listener, ExitCode> {
    let scheme = if https.is_some() { "https" } else { "http" };
    match TcpListener::bind(addr).await {
        Ok(listener) => {
            tracing::info!(%addr, scheme, "{service} listening");
            Ok(Listener::from(listener).with_https(https))
        }
        Err(error) => {
            eprintln!("{service}: cannot listen on {addr} (API_HOST/API_PORT): {error}");
            Err(ExitCode::from(1))
        }
    }
}

/// Connections served at once, by default (`HTTP_MAX_CONNECTIONS`).
pub const MAX_CONNECTIONS: usize = 1024;

/// Serves `handle` on `listener` until `shutdown` completes; then stops accepting and waits
/// for the requests in flight (at most 10 s).
///
/// Each answer is counted in the `http_requests_total` and `http_request_duration_seconds`
/// metrics, labelled with `route(path)` (a shell's [`Routes::label`](crate::router::Routes::label)).
///
/// At most `max_connections` connections are open at once: beyond, new ones wait in the
/// listen backlog until one closes (an idle one closes after 10 s without a request), so the
/// process never runs out of file descriptors.
pub async fn serve<H, F>(
    listener: impl Into<Listener>,
    max_connections: usize,
    route: fn(&str) -> &'static str,
    handle: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(HttpRequest) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let Listener { tcp: listener, tls } = listener.into();
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // never closed
            },
        };
        let (stream, peer): (_, SocketAddr) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let handle = handle.clone();
        let service = service_fn(move |request: HttpRequest| {
            let started = std::time::Instant::now();
            let path = request.uri().path();
            let route = route(path);
            let method = request.method().clone();
            let span = crate::telemetry::request_span(&request, route);
            let response = {
                let _entered = span.enter();
                handle(request)
            };
            async move {
                let mut response = response.instrument(span.clone()).await;
                crate::telemetry::answer(&span, &mut response);
                crate::metrics::request(
                    route,
                    method.as_str(),
                    response.status(),
                    started.elapsed(),
                );
                Ok::<_, Infallible>(response)
            }
        });
        let http = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .clone();
        let watcher = graceful.watcher();
        match tls.clone() {
            None => {
                let connection =
                    watcher.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                    drop(slot);
                });
            }
            // The handshake runs in the connection's task, bounded like the headers are: a
            // slow or silent client holds its own slot, never the accept loop.
            Some(tls) => {
                tokio::spawn(async move {
                    match tokio::time::timeout(HEADER_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let connection =
                                watcher.watch(http.serve_connection(TokioIo::new(stream), service));
                            if let Err(error) = connection.await {
                                tracing::debug!(%peer, %error, "connection ended with an error");
                            }
                        }
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                    drop(slot);
                });
            }
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("requests still running after {DRAIN_TIMEOUT:?}; closing anyway");
        }
    }
}
