//! Records/s of draining a pre-filled topic, four ways, on the same broker in the same run,
//! each adding one step to the one before: a bare rdkafka `StreamConsumer` (receive and
//! count); `KafkaSource` with a codec that does not decode (receive, copy into a record,
//! acknowledge); `KafkaSource` with `AvroCodec` (and decode); and `KafkaSource` + `Dispatcher`
//! with a no-op handler (and dispatch). The ratio of the last to the first is the figure that
//! matters; the steps say where the time goes.
//!
//! `cargo run --release -p ordering-benches --bin kafka_drain -- [RECORDS] [ROUNDS] [SUBSCRIBER]`
//! (defaults 200000, 3 and `none`; `logs` or `otel1pct` run it under a tracing subscriber,
//! `ordering_benches::Subscriber`). Starts its own Nisshi broker (`scripts/broker install`).

use std::time::{Duration, Instant};

use ordering_benches::{drain_engine, fill, rate};
use ordering_core::order::OrderEvent;
use ordering_core::{DecodeError, Polled, Source};
use ordering_kafka::order::AvroCodec;
use ordering_kafka::testing::{TestBroker, unique_topic};
use ordering_kafka::{
    Cluster, Codec, DEFAULT_FETCH_WAIT_MAX, FETCH_QUEUE_BACKOFF_MS, KafkaError, KafkaSource,
    SourceConfig, TopicSettings, ensure_topics,
};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};

use ordering_benches::Error;

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
    // What the library runs under (tracing's cost): none, logs or otel1pct.
    let subscriber: ordering_benches::Subscriber = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(ordering_benches::Subscriber::None);

    let broker = TestBroker::start();
    let topic = unique_topic("drain");
    ensure_topics(
        &broker.bootstrap(),
        &[&topic],
        &TopicSettings::new(PARTITIONS),
        Duration::from_secs(20),
    )
    .await?;
    let cluster = Cluster::new(broker.bootstrap());
    fill(&cluster, &topic, records).await?;
    // Installed after the fill: the records are the same in every mode (a traced producer's
    // would carry a `traceparent`, whose cost is `dispatch_100k_tracing/with_parents_*`).
    let subscriber = subscriber.dispatch();
    let _default = subscriber
        .as_ref()
        .map(|(dispatch, _)| tracing::dispatcher::set_global_default(dispatch.clone()));
    println!("{records} status updates in {topic} ({PARTITIONS} partitions)");

    let mut results: [Vec<f64>; 4] = Default::default();
    for round in 0..rounds {
        // Rotate the order, so none always meets a warmer broker.
        let mut rates = [0.0; 4];
        for i in 0..4 {
            let which = (i + round) % 4;
            let group = format!("drain-{round}-{which}");
            rates[which] = match which {
                0 => drain_bare(&broker, &topic, records, &group).await?,
                1 => drain_source(source(&broker, &topic, &group, NoDecode)?, records).await?,
                2 => {
                    drain_source(
                        source::<OrderEvent, _>(&broker, &topic, &group, AvroCodec::new()?)?,
                        records,
                    )
                    .await?
                }
                _ => drain_engine(&cluster, &topic, records, &group).await?,
            };
        }
        report(&format!("round {round}"), rates);
        for (all, rate) in results.iter_mut().zip(rates) {
            all.push(rate);
        }
    }
    report("median", results.map(|mut r| median(&mut r)));
    Ok(())
}

/// One line of rates, with each step's cost per record over the step before.
fn report(what: &str, [bare, copied, decoded, engine]: [f64; 4]) {
    let ns = |rate: f64| 1e9 / rate;
    println!(
        "{what}: bare rdkafka {bare:.0}/s | source, no decoding {copied:.0}/s (+{:.0} ns) | \
         source {decoded:.0}/s (+{:.0} ns) | source+dispatcher {engine:.0}/s (+{:.0} ns) | ratio {:.2}",
        ns(copied) - ns(bare),
        ns(decoded) - ns(copied),
        ns(engine) - ns(decoded),
        engine / bare
    );
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
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

fn source<E, C: Codec<E>>(
    broker: &TestBroker,
    topic: &str,
    group: &str,
    codec: C,
) -> Result<KafkaSource<E, C>, Error> {
    let config = SourceConfig::new(broker.bootstrap(), group, [topic]);
    Ok(KafkaSource::new(&config, codec)?)
}

/// A codec that does not decode: the source's cost without the codec's.
struct NoDecode;

impl Codec<()> for NoDecode {
    fn encode(&self, (): &()) -> Result<Vec<u8>, KafkaError> {
        Ok(Vec::new())
    }

    fn decode(&self, _payload: &[u8]) -> Result<(), DecodeError> {
        Ok(())
    }
}

/// `KafkaSource` alone: receive, decode, acknowledge.
async fn drain_source<E, C>(mut source: KafkaSource<E, C>, records: usize) -> Result<f64, Error>
where
    E: Send + Sync + 'static,
    C: Codec<E> + 'static,
{
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
