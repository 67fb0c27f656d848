//! Flood: cart-shell's `PUT /api/update-order` at growing numbers of open connections, each
//! sending one request after another: requests/s, latency, the share answered `503` (shed:
//! publishing could not keep up) and cart-shell's memory before and after.
//!
//! ```text
//! cargo build --release -p cart-shell
//! cargo run --release -p ordering-benches --bin flood -- [CONNECTIONS,...] [SECONDS] [VAR=VALUE,...]
//! ```
//! (defaults `16,256,1000`, 10). The last argument sets cart-shell's settings, e.g.
//! `PUBLISH_MAX_IN_FLIGHT=64,PUBLISH_QUEUE_WAIT_MS=50`. Starts its own Nisshi broker
//! (`scripts/broker install`) and runs `target/release/cart-shell`; the load comes from this
//! binary (one keep-alive connection per worker, as wrk makes them).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use ordering_benches::release_binary;
use ordering_http::testing::ShellProcess;
use ordering_kafka::testing::{TestBroker, unique_topic};
use ordering_kafka::{TopicSettings, ensure_topics};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What one worker saw.
#[derive(Default)]
struct Tally {
    /// Latency of every answer, in microseconds.
    latencies: Vec<u32>,
    accepted: u64,
    shed: u64,
    /// Any other status, or a failed connection.
    other: u64,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let levels: Vec<usize> = arg(0, "16,256,1000")
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let seconds: u64 = arg(1, "10").parse()?;
    let settings = arg(2, "");
    let cart = release_binary("cart-shell")?;

    let broker = TestBroker::start();
    let (orders, updates) = (unique_topic("orders"), unique_topic("updates"));
    ensure_topics(
        &broker.bootstrap(),
        &[&orders, &updates],
        &TopicSettings::new(3),
        Duration::from_secs(20),
    )
    .await?;
    let keys = tempfile::tempdir()?;
    let mut env = vec![
        ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
        ("KAFKA_TOPIC", orders.clone()),
        ("KAFKA_STATUS_UPDATE_TOPIC", updates.clone()),
        (
            "IDEMPOTENCY_DB",
            keys.path().join("keys.db").display().to_string(),
        ),
        ("RUST_LOG", "warn".to_owned()),
    ];
    for setting in settings.split(',').filter(|s| !s.is_empty()) {
        let (name, value) = setting
            .split_once('=')
            .ok_or_else(|| format!("{setting}: expected VAR=VALUE"))?;
        env.push((name, value.to_owned()));
    }
    let shell = ShellProcess::start(&cart, &env);
    let pid = shell.pid().ok_or("cart-shell is not running")?;
    let port = shell.port();
    // A few requests first: topics known, producer connected, allocator warm.
    let (warm, _) = run(port, 4, 1).await?;
    println!(
        "{seconds} s per level; warm-up {} accepted; cart-shell settings: {}",
        warm.accepted,
        if settings.is_empty() {
            "defaults"
        } else {
            &settings
        }
    );
    println!("cart-shell before: {}", memory(pid)?);
    println!(
        "| connections | requests/s | 202/s | p50 | p99 | 503 | other | RSS after | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for connections in levels {
        let (tally, rate) = run(port, connections, seconds).await?;
        let Tally {
            mut latencies,
            accepted,
            shed,
            other,
        } = tally;
        latencies.sort_unstable();
        let answered = latencies.len().max(1) as f64;
        let (rss, hwm) = rss(pid)?;
        println!(
            "| {connections} | {:.0} | {:.0} | {} | {} | {:.1}% | {other} | {} | {} |",
            rate,
            rate * accepted as f64 / answered,
            millis(percentile(&latencies, 0.50)),
            millis(percentile(&latencies, 0.99)),
            100.0 * shed as f64 / answered,
            mib(rss),
            mib(hwm),
        );
    }
    println!("cart-shell after: {}", memory(pid)?);
    Ok(())
}

/// `connections` workers, each on a keep-alive connection of its own (exactly one socket
/// each, as wrk does: a pooling client would open more than it was asked for), sending one
/// update after another for `seconds`. What they saw, and answers per second.
async fn run(port: u16, connections: usize, seconds: u64) -> Result<(Tally, f64), Error> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|w| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut n = w;
                let mut sender = None;
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    if sender.is_none() {
                        sender = connect(port).await.ok();
                    }
                    // 0: no answer (the connection failed or was closed).
                    let status = match &mut sender {
                        Some(connection) => update(connection, port, n % 1000).await.unwrap_or(0),
                        None => 0,
                    };
                    n += connections;
                    if status == 0 {
                        sender = None; // closed or refused: a new connection next time
                    }
                    let took = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
                    tally.latencies.push(took);
                    match status {
                        202 => tally.accepted += 1,
                        503 => tally.shed += 1,
                        _ => tally.other += 1,
                    }
                }
                tally
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    for worker in workers {
        let tally = worker.await?;
        total.latencies.extend(tally.latencies);
        total.accepted += tally.accepted;
        total.shed += tally.shed;
        total.other += tally.other;
    }
    let rate = total.latencies.len() as f64 / started.elapsed().as_secs_f64();
    Ok((total, rate))
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// A new HTTP/1.1 connection to cart-shell on 127.0.0.1:`port`.
async fn connect(port: u16) -> Result<Sender, Error> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// `PUT /api/update-order` for `ORD-n` on `sender`: the answer's status.
async fn update(sender: &mut Sender, port: u16, n: usize) -> Result<u16, Error> {
    let body = format!(r#"{{"orderId": "ORD-{n}", "status": "shipped"}}"#);
    let request = hyper::Request::put("/api/update-order")
        .header("host", format!("127.0.0.1:{port}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))?;
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    response.into_body().collect().await?;
    Ok(status)
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn millis(micros: u32) -> String {
    format!("{:.1} ms", f64::from(micros) / 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// `VmRSS` and `VmHWM` (peak) of `pid`, in KiB.
fn rss(pid: u32) -> Result<(u64, u64), Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64, Error> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .ok_or_else(|| format!("{name} missing from /proc/{pid}/status"))?;
        Ok(line.split_whitespace().nth(1).ok_or("no value")?.parse()?)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

fn memory(pid: u32) -> Result<String, Error> {
    let (rss, hwm) = rss(pid)?;
    Ok(format!("RSS {}, peak {}", mib(rss), mib(hwm)))
}
