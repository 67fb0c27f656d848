//! The operator console over a large dead-letter topic: order-shell (release build) on the
//! benchmark's own broker, with LETTERS dead letters written straight to its DLQ topic (one
//! order in a thousand has letters; the rest are spread over 10 000 orders). Then, one kind
//! of request at a time, ROUNDS sequential requests each, as the console makes them:
//! - the pages (`/console`, `/console/dead-letters`): templates rendered, no topic read;
//! - the dead-letter table's first page (`/api/dlq/messages?limit=50`), a page deep in the
//!   topic (by `cursor`), and a search by order id that matches few letters (each page
//!   reads at most 10 000 records, never the whole topic);
//! - an order's history (`/api/order-history`) and the overview (`/api/console/overview`).
//!
//! Prints p50, p99 and the slowest answer per kind, and the records each dead-letter page
//! read.
//!
//! ```text
//! cargo build --release -p order-shell
//! cargo run --release -p ordering-benches --bin console -- [LETTERS] [ROUNDS]
//! ```
//! Defaults: 100 000 letters, 50 rounds.

use std::time::{Duration, Instant};

use futures::StreamExt;
use ordering_benches::{Error, release_binary};
use ordering_core::{DeadLetter, FailureClass};
use ordering_http::testing::{ShellProcess, call_with, get};
use ordering_kafka::order::AvroCodec;
use ordering_kafka::testing::{Storage, TestBroker, unique_topic};
use ordering_kafka::{Codec, KafkaProducer, ProducerConfig, TopicSettings, ensure_topics};

const TOKEN: &str = "benchmark-operator-token-0123";

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let letters: usize = args.first().map_or(Ok(100_000), |a| a.parse())?;
    let rounds: usize = args.get(1).map_or(Ok(50), |a| a.parse())?;
    let order_shell = release_binary("order-shell")?;

    let broker = TestBroker::start_with(Storage::Memory);
    let topics = [
        unique_topic("orders"),
        unique_topic("updates"),
        unique_topic("dlq"),
    ];
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let settings = TopicSettings::new(3);
    ensure_topics(
        &broker.bootstrap(),
        &names,
        &settings,
        Duration::from_secs(30),
    )
    .await?;

    // The letters, as order-shell writes them (its codec), 512 in flight.
    let started = Instant::now();
    let producer = KafkaProducer::new(&ProducerConfig::new(broker.bootstrap()))?;
    let codec = AvroCodec::new()?.dead_letters();
    let dlq = topics[2].clone();
    let written = futures::stream::iter(0..letters)
        .map(|n| {
            let (producer, dlq) = (producer.clone(), dlq.clone());
            let letter = letter(n, &topics[1]);
            let payload = codec.encode(&letter);
            async move {
                let payload = payload?;
                let key = letter.original_key.clone();
                producer.send(&dlq, key.as_deref(), &payload, &[]).await?;
                Ok::<_, Error>(())
            }
        })
        .buffer_unordered(512)
        .fold(Ok::<usize, Error>(0), |done, sent| async move {
            done.and_then(|done| sent.map(|()| done + 1))
        })
        .await?;
    println!(
        "{written} letters written to {dlq} in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let data = tempfile::tempdir()?;
    let store = format!("sqlite://{}", data.path().join("orders.db").display());
    let env: Vec<(&'static str, String)> = vec![
        ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
        ("KAFKA_TOPIC", topics[0].clone()),
        ("KAFKA_STATUS_UPDATE_TOPIC", topics[1].clone()),
        ("KAFKA_DLQ_TOPIC", dlq.clone()),
        ("KAFKA_CONSUMER_GROUP", unique_topic("group")),
        ("ORDER_STORE_URL", store),
        ("OPERATOR_TOKEN", TOKEN.into()),
    ];
    let shell = ShellProcess::start(&order_shell, &env);
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(&shell.url("/health")).await.status != 200 {
        if Instant::now() > deadline {
            return Err("order-shell did not become healthy within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A cursor deep in the topic: the one after the page that ends half-way.
    let half = letters / 2;
    let reply = operator(&shell.url("/api/dlq/messages?limit=1")).await;
    let mut cursor = reply.json["nextCursor"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut skipped = 1;
    while skipped < half {
        let path = format!("/api/dlq/messages?limit=1000&cursor={cursor}");
        let reply = operator(&shell.url(&path)).await;
        match reply.json["nextCursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
        skipped += reply.json["messageCount"].as_u64().unwrap_or(0) as usize;
    }
    let rare = "ORD-BENCH-777000";
    let kinds: Vec<(&str, String)> = vec![
        ("page /console", "/console".into()),
        ("page /console/dead-letters", "/console/dead-letters".into()),
        (
            "letters, first page (50)",
            "/api/dlq/messages?limit=50".into(),
        ),
        (
            "letters, a page half-way (50)",
            format!("/api/dlq/messages?limit=50&cursor={cursor}"),
        ),
        (
            "letters of one order (search)",
            format!("/api/dlq/messages?limit=50&orderId={rare}"),
        ),
        (
            "order history (unknown order)",
            "/api/order-history?orderId=ORD-BENCH-1".into(),
        ),
        ("overview", "/api/console/overview".into()),
    ];
    println!("{rounds} sequential requests per kind, {written} letters on the topic:");
    for (name, path) in kinds {
        let mut times = Vec::with_capacity(rounds);
        let mut scanned = None;
        for _ in 0..rounds {
            let started = Instant::now();
            let reply = operator(&shell.url(&path)).await;
            times.push(started.elapsed());
            if !(200..300).contains(&reply.status) && reply.status != 404 {
                return Err(format!("{path}: {} {}", reply.status, reply.text).into());
            }
            scanned = reply.json["scanned"].as_u64().or(scanned);
        }
        times.sort();
        let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        println!(
            "  {name:32} p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms{}",
            ms(at(0.5)),
            ms(at(0.99)),
            ms(times[times.len() - 1]),
            scanned.map_or(String::new(), |s| format!("  ({s} records read)"))
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn operator(url: &str) -> ordering_http::testing::Reply {
    let bearer = format!("Bearer {TOKEN}");
    call_with("GET", url, None, &[("authorization", &bearer)]).await
}

/// The `n`-th letter: an update of an order that was not there, as order-shell writes one.
/// One order in a thousand (`ORD-BENCH-777xxx`) is rare: searching for it finds few.
fn letter(n: usize, topic: &str) -> DeadLetter {
    let order = if n.is_multiple_of(1000) {
        format!("ORD-BENCH-777{:03}", n / 1000 % 1000)
    } else {
        format!("ORD-BENCH-{}", n % 10_000)
    };
    let message = format!(
        r#"{{"orderId":"{order}","status":"shipped","updateTimestamp":"2026-11-30T12:00:00Z","eventType":"STATUS_UPDATE","reason":null}}"#
    );
    DeadLetter {
        original_topic: topic.to_owned(),
        original_partition: (n % 3) as i32,
        original_offset: n as i64,
        original_incarnation: 1,
        original_key: Some(order.clone().into_bytes()),
        original_headers: Vec::new(),
        original_timestamp: Some(1_795_000_000_000),
        original_value: message.clone().into_bytes(),
        original_message: Some(message),
        error_type: "OrderNotFound".into(),
        error_class: FailureClass::Retryable,
        error_message: format!("Order {order} not found"),
        retry_count: 3,
        failed_attempts: 4,
        first_failure_timestamp: "2026-11-30T12:00:00.000Z".into(),
        last_failure_timestamp: "2026-11-30T12:00:07.000Z".into(),
        consumer_group: "order-service-group".into(),
        redrive_count: 0,
        reduced_from: None,
    }
}
