//! The whole system, one consumer setting at a time: cart-shell and order-shell (release
//! builds) on the benchmark's own broker, orders in SQLite (order-shell's default store).
//! For each setting, one after the other, each on a fresh broker of its own:
//! - **202 → visible**: `PUT`s at RATE per second for SECONDS; every tenth carries a unique
//!   reason, and after its `202` `GET /api/order-details` is polled (every millisecond) until
//!   that reason or a later one shows: p50, p99;
//! - **ingest**: `PUT /api/update-order` from 16 keep-alive connections for SECONDS, every
//!   answer a `202` (requests/s), with order-shell consuming all of it meanwhile.
//!
//! Also the CPU seconds each process used during the ingest phase ("rest" is the broker and
//! this load generator).
//!
//! ```text
//! cargo build --release -p cart-shell -p order-shell
//! cargo run --release -p ordering-benches --bin system -- [SETTINGS] [SECONDS] [RATE] [ROUNDS] [BROKER]
//! ```
//! SETTINGS is a comma-separated list of `KAFKA_FETCH_WAIT_MAX_MS` values (default
//! `5,50,500`); defaults 10 s, 1 000/s, 1 round (rounds repeat the whole list), and the
//! broker's data in `sqlite` as `scripts/start` keeps it (or `memory`).

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ordering_benches::{Error, load, release_binary};
use ordering_http::testing::ShellProcess;
use ordering_kafka::testing::{Storage, TestBroker, unique_topic};
use ordering_kafka::{TopicSettings, ensure_topics};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

const ORDERS: usize = 200;
const CONNECTIONS: usize = 16;
/// One update in this many is followed until visible.
const SAMPLE_EVERY: u64 = 10;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let settings: Vec<String> = arg(0, "5,50,500").split(',').map(str::to_owned).collect();
    let seconds: u64 = arg(1, "10").parse()?;
    let rate: u64 = arg(2, "1000").parse()?;
    let rounds: usize = arg(3, "1").parse()?;
    let storage = match arg(4, "sqlite").as_str() {
        "sqlite" => Storage::Sqlite,
        "memory" => Storage::Memory,
        other => return Err(format!("broker storage {other}: sqlite or memory").into()),
    };
    let (cart, order) = (
        release_binary("cart-shell")?,
        release_binary("order-shell")?,
    );

    println!(
        "{CONNECTIONS} connections for ingest, {rate}/s for latency, {seconds} s each, {ORDERS} orders"
    );
    println!(
        "{:>12} {:>10} {:>9} {:>9} {:>9} {:>22}",
        "fetch wait", "ingest/s", "p50", "p99", "samples", "cpu s: cart/order/rest"
    );
    for _ in 0..rounds {
        for setting in &settings {
            // A broker of its own per setting: this one slows down as its log grows.
            let broker = TestBroker::start_with(storage);
            let run = run_one(&broker, &cart, &order, setting, seconds, rate).await?;
            println!(
                "{:>12} {:>10.0} {:>9} {:>9} {:>9} {:>7.1}/{:.1}/{:.1}",
                format!("{setting} ms"),
                run.ingest,
                format!("{:.2} ms", run.p50_ms),
                format!("{:.2} ms", run.p99_ms),
                run.samples,
                run.cpu.0,
                run.cpu.1,
                run.cpu.2
            );
        }
    }
    Ok(())
}

struct Run {
    ingest: f64,
    p50_ms: f64,
    p99_ms: f64,
    samples: usize,
    /// CPU seconds during ingest: cart-shell, order-shell, everything else (broker, load).
    cpu: (f64, f64, f64),
}

async fn run_one(
    broker: &TestBroker,
    cart: &Path,
    order: &Path,
    fetch_wait: &str,
    seconds: u64,
    rate: u64,
) -> Result<Run, Error> {
    let data = tempfile::tempdir()?;
    let topics = [
        unique_topic("orders"),
        unique_topic("updates"),
        unique_topic("dlq"),
    ];
    ensure_topics(
        &broker.bootstrap(),
        &[&topics[0], &topics[1], &topics[2]],
        &TopicSettings::new(3),
        Duration::from_secs(20),
    )
    .await?;
    let env = [
        ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
        ("KAFKA_TOPIC", topics[0].clone()),
        ("KAFKA_STATUS_UPDATE_TOPIC", topics[1].clone()),
        ("KAFKA_DLQ_TOPIC", topics[2].clone()),
        ("KAFKA_CONSUMER_GROUP", unique_topic("group")),
        ("KAFKA_FETCH_WAIT_MAX_MS", fetch_wait.to_owned()),
        (
            "ORDER_STORE_URL",
            format!("sqlite://{}", data.path().join("orders.db").display()),
        ),
        (
            "IDEMPOTENCY_DB",
            data.path().join("keys.db").display().to_string(),
        ),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let cart = ShellProcess::start(cart, &env);
    let order = ShellProcess::start(order, &env);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build_http();

    for n in 0..ORDERS {
        let body = format!(r#"{{"orderId": "{}", "numItems": 2}}"#, order_id(n));
        expect(&client, "POST", &cart.url("/api/create-order"), &body, 201).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while reason_number(&client, &order, &order_id(ORDERS - 1)).await? == Reason::Missing {
        if Instant::now() > deadline {
            return Err("order-shell never showed the orders created".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Latency first, on a log that is still short: this broker reads slower as it grows.
    let mut latencies = latency(&client, &cart, &order, seconds, rate).await?;
    latencies.sort_by(f64::total_cmp);

    let before = (cpu(cart.pid()), cpu(order.pid()), total_cpu());
    let ingest = ingest(&client, &cart, seconds).await?;
    let after = (cpu(cart.pid()), cpu(order.pid()), total_cpu());
    let (c, o) = (after.0 - before.0, after.1 - before.1);
    let cpu_used = (c, o, (after.2 - before.2) - c - o);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    Ok(Run {
        ingest,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        samples: latencies.len(),
        cpu: cpu_used,
    })
}

fn order_id(n: usize) -> String {
    format!("ORD-SYS-{:04}", n % ORDERS)
}

/// 16 connections, one `PUT` at a time each, for `seconds`: `202`s per second.
async fn ingest(client: &HttpClient, cart: &ShellProcess, seconds: u64) -> Result<f64, Error> {
    let (client, url) = (client.clone(), cart.url("/api/update-order"));
    load(CONNECTIONS, seconds, move |n| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let body = format!(
                r#"{{"orderId": "{}", "status": "shipped"}}"#,
                order_id(n as usize)
            );
            expect(&client, "PUT", &url, &body, 202).await
        }
    })
    .await
}

/// `PUT`s at `rate` per second; every [`SAMPLE_EVERY`]th is followed until visible.
async fn latency(
    client: &HttpClient,
    cart: &ShellProcess,
    order: &ShellProcess,
    seconds: u64,
    rate: u64,
) -> Result<Vec<f64>, Error> {
    let url = cart.url("/api/update-order");
    let order_url = order.url("");
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut tasks = Vec::new();
    for n in 0..rate * seconds {
        ticks.tick().await;
        let (client, url, order_url) = (client.clone(), url.clone(), order_url.clone());
        tasks.push(tokio::spawn(async move {
            let id = order_id(n as usize);
            let body = format!(r#"{{"orderId": "{id}", "status": "shipped", "reason": "r{n}"}}"#);
            expect(&client, "PUT", &url, &body, 202).await?;
            if n % SAMPLE_EVERY != 0 {
                return Ok::<_, Error>(None);
            }
            let accepted = Instant::now();
            let details = format!("{order_url}/api/order-details?orderId={id}");
            loop {
                if let Reason::Number(seen) = reason_at(&client, &details).await?
                    && seen >= n
                {
                    return Ok(Some(accepted.elapsed().as_secs_f64() * 1000.0));
                }
                if accepted.elapsed() > Duration::from_secs(30) {
                    return Err(format!("update {n} never became visible").into());
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        if let Some(ms) = task.await?? {
            latencies.push(ms);
        }
    }
    Ok(latencies)
}

#[derive(PartialEq)]
enum Reason {
    Missing,
    None,
    Number(u64),
}

async fn reason_number(
    client: &HttpClient,
    order: &ShellProcess,
    id: &str,
) -> Result<Reason, Error> {
    reason_at(
        client,
        &order.url(&format!("/api/order-details?orderId={id}")),
    )
    .await
}

/// The number in the order's status reason (`r{n}`), from order-shell.
async fn reason_at(client: &HttpClient, url: &str) -> Result<Reason, Error> {
    let response = client
        .request(hyper::Request::get(url).body(Full::new(Bytes::new()))?)
        .await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if status == hyper::StatusCode::NOT_FOUND {
        return Ok(Reason::Missing);
    }
    if status != hyper::StatusCode::OK {
        return Err(format!("order-details answered {status}").into());
    }
    let text = String::from_utf8_lossy(&body);
    // `"statusReason":"r123"`: enough to find without parsing the whole answer.
    Ok(text
        .split("\"statusReason\":\"r")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|n| n.parse().ok())
        .map_or(Reason::None, Reason::Number))
}

async fn expect(
    client: &HttpClient,
    method: &str,
    url: &str,
    body: &str,
    want: u16,
) -> Result<(), Error> {
    let request = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))?;
    let response = client.request(request).await?;
    let status = response.status();
    let text = response.into_body().collect().await?.to_bytes();
    if status.as_u16() != want {
        return Err(format!(
            "{method} {url} answered {status}: {}",
            String::from_utf8_lossy(&text)
        )
        .into());
    }
    Ok(())
}

/// CPU seconds (user + system) process `pid` has used.
fn cpu(pid: Option<u32>) -> f64 {
    let Some(stat) = pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
    else {
        return 0.0;
    };
    // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds the whole machine has used (not idle), from `/proc/stat`.
fn total_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: everything but idle and iowait.
    let busy: f64 = fields
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    busy / 100.0
}
