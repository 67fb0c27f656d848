//! Records/s of draining a pre-filled topic, three ways, on the same broker in the same run:
//! a bare rdkafka `StreamConsumer` (receive and count), `KafkaSource` alone (receive, decode,
//! acknowledge), and `KafkaSource` + `Dispatcher` + `AvroCodec` with a no-op handler. The
//! ratio of the last to the first is the figure that matters.
//!
//! `cargo run --release -p ordering-benches --bin kafka_drain -- [RECORDS] [ROUNDS]`
//! (defaults 200000 and 3). Starts its own Nisshi broker (`scripts/broker install`).

use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use ordering_core::testing::MemorySink;
use ordering_core::{
    DeadLetter, Dispatcher, DispatcherConfig, Handler, OrderError, OrderEvent, OrderId, Polled,
    RecordMeta, Source, Status, StatusUpdate,
};
use ordering_kafka::testing::{TestBroker, unique_topic};
use ordering_kafka::{
    AvroCodec, Codec, DEFAULT_FETCH_WAIT_MAX, FETCH_QUEUE_BACKOFF_MS, KafkaProducer, KafkaSource,
    ProducerConfig, SourceConfig, TopicSettings, ensure_topics,
};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};

type Error = Box<dyn std::error::Error>;

const PARTITIONS: i32 = 3;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let records: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(200_000);
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3);

    let broker = TestBroker::start();
    let topic = unique_topic("drain");
    ensure_topics(
        &broker.bootstrap(),
        &[&topic],
        &TopicSettings::new(PARTITIONS),
        Duration::from_secs(20),
    )
    .await?;
    fill(&broker, &topic, records).await?;
    println!("{records} status updates in {topic} ({PARTITIONS} partitions)");

    let mut results: [Vec<f64>; 3] = Default::default();
    for round in 0..rounds {
        // Rotate the order, so none always meets a warmer broker.
        let mut rates = [0.0; 3];
        for i in 0..3 {
            let which = (i + round) % 3;
            let group = format!("drain-{round}-{which}");
            rates[which] = match which {
                0 => drain_bare(&broker, &topic, records, &group).await?,
                1 => drain_source(&broker, &topic, records, &group).await?,
                _ => drain_engine(&broker, &topic, records, &group).await?,
            };
        }
        println!(
            "round {round}: bare rdkafka {:>9.0}/s  source {:>9.0}/s  source+dispatcher {:>9.0}/s  ratio {:.2}",
            rates[0],
            rates[1],
            rates[2],
            rates[2] / rates[0]
        );
        for (all, rate) in results.iter_mut().zip(rates) {
            all.push(rate);
        }
    }
    let [bare, source, engine] = results.map(|mut r| median(&mut r));
    println!(
        "median: bare rdkafka {bare:.0}/s, source {source:.0}/s, source+dispatcher {engine:.0}/s, ratio {:.2}",
        engine / bare
    );
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn rate(records: usize, started: Instant) -> f64 {
    (records - 1) as f64 / started.elapsed().as_secs_f64()
}

async fn fill(broker: &TestBroker, topic: &str, records: usize) -> Result<(), Error> {
    let mut config = ProducerConfig::new(broker.bootstrap());
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

/// Receive and count, nothing else; the same fetch settings as `KafkaSource`.
async fn drain_bare(
    broker: &TestBroker,
    topic: &str,
    records: usize,
    group: &str,
) -> Result<f64, Error> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
        .set(
            "fetch.wait.max.ms",
            DEFAULT_FETCH_WAIT_MAX.as_millis().to_string(),
        )
        .create()?;
    consumer.subscribe(&[topic])?;
    drop(consumer.recv().await?); // the clock starts at the first record, as below
    let started = Instant::now();
    for _ in 1..records {
        consumer.recv().await?;
    }
    Ok(rate(records, started))
}

fn source(
    broker: &TestBroker,
    topic: &str,
    group: &str,
) -> Result<KafkaSource<OrderEvent, AvroCodec>, Error> {
    let config = SourceConfig::new(broker.bootstrap(), group, [topic]);
    Ok(KafkaSource::new(&config, AvroCodec::new()?)?)
}

/// `KafkaSource` alone: receive, decode, acknowledge.
async fn drain_source(
    broker: &TestBroker,
    topic: &str,
    records: usize,
    group: &str,
) -> Result<f64, Error> {
    let mut source = source(broker, topic, group)?;
    let mut started = Instant::now();
    let mut seen = 0;
    while seen < records {
        if let Some(Polled::Record(record)) = source.next().await? {
            if seen == 0 {
                started = Instant::now();
            }
            source.ack(&record.meta.tp, record.meta.offset + 1);
            seen += 1;
        }
    }
    Ok(rate(records, started))
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
async fn drain_engine(
    broker: &TestBroker,
    topic: &str,
    records: usize,
    group: &str,
) -> Result<f64, Error> {
    let source = source(broker, topic, group)?;
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
