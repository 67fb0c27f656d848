//! Ingest: requests/s of cart-shell's `PUT /api/update-order` (which answers `202` once the
//! broker acknowledged the event) against bare rdkafka publishing the same events and
//! awaiting each acknowledgement, at the same concurrency, on the same broker, in one run.
//! The ratio of the first to the second is the figure that matters.
//!
//! ```text
//! cargo build --release -p cart-shell
//! cargo run --release -p ordering-benches --bin ingest -- [CONCURRENCY] [SECONDS] [ROUNDS]
//! ```
//! (defaults 16, 10, 2). Starts its own Nisshi broker (`scripts/broker install`) and runs
//! `target/release/cart-shell`; the HTTP load comes from this binary (keep-alive connections,
//! one request at a time on each).

use std::time::Duration;

use ordering_benches::{Error, cart_ingest, load, release_binary};
use ordering_core::order::{OrderId, Status, StatusUpdate};
use ordering_http::testing::ShellProcess;
use ordering_kafka::order::AvroCodec;
use ordering_kafka::testing::{TestBroker, unique_topic};
use ordering_kafka::{Codec, TopicSettings, ensure_topics};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let concurrency: usize = arg(0, "16").parse()?;
    let seconds: u64 = arg(1, "10").parse()?;
    let rounds: usize = arg(2, "2").parse()?;
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
    let env = [
        ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
        ("KAFKA_TOPIC", orders.clone()),
        ("KAFKA_STATUS_UPDATE_TOPIC", updates.clone()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let shell = ShellProcess::start(&cart, &env);
    println!("{concurrency} at a time, {seconds} s per measurement, {rounds} rounds");

    let mut bare = Vec::new();
    let mut http = Vec::new();
    for round in 0..rounds {
        // Alternate which goes first, so neither always meets a warmer broker.
        let (b, h) = if round % 2 == 0 {
            let b = bare_rdkafka(&broker, &updates, concurrency, seconds).await?;
            (b, cart_ingest(&shell, concurrency, seconds).await?)
        } else {
            let h = cart_ingest(&shell, concurrency, seconds).await?;
            (
                bare_rdkafka(&broker, &updates, concurrency, seconds).await?,
                h,
            )
        };
        println!(
            "round {round}: bare rdkafka {b:>8.0}/s  cart-shell {h:>8.0}/s  ratio {:.2}",
            h / b
        );
        bare.push(b);
        http.push(h);
    }
    let (b, h) = (median(&mut bare), median(&mut http));
    println!(
        "median: bare rdkafka {b:.0}/s, cart-shell {h:.0}/s, ratio {:.2}",
        h / b
    );
    Ok(())
}

/// Publishes status updates with a bare rdkafka producer set up as cart-shell's (acks=all,
/// idempotence, linger 2 ms), awaiting each acknowledgement.
async fn bare_rdkafka(
    broker: &TestBroker,
    topic: &str,
    concurrency: usize,
    seconds: u64,
) -> Result<f64, Error> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .create()?;
    let codec = AvroCodec::new()?;
    let topic = topic.to_owned();
    load(concurrency, seconds, move |n| {
        let (producer, topic) = (producer.clone(), topic.clone());
        async move {
            let id = format!("ORD-{}", n % 1000);
            let update = StatusUpdate::new(
                &OrderId::parse(&id)?,
                &Status::parse("shipped")?,
                ordering_core::now_iso8601(),
            );
            let payload = codec.encode(&update)?;
            let record = FutureRecord::to(&topic).key(&id).payload(&payload);
            producer
                .send(record, Duration::from_secs(10))
                .await
                .map_err(|(e, _)| e)?;
            Ok(())
        }
    })
    .await
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
