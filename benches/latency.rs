//! How long after its `202` a status update is visible: updates published at a steady rate
//! (acks=all, as cart-shell does before answering `202`), consumed by `KafkaSource` + the
//! dispatcher + the order handler, written to a store; "visible" is when the store's write
//! returned (a query would see it). Reports p50/p99/max per store and per
//! `fetch.wait.max.ms`, in one run on its own broker.
//!
//! `cargo run --release -p ordering-benches --bin latency -- [RATE] [SECONDS] [WAITS] [STORES]`
//! (defaults: 1000 updates/s, 10 s, fetch waits `5,20,100` ms, stores `memory,sqlite,postgres`).
//! Starts its own Nisshi broker (`scripts/broker install`) and, for `postgres`, its own
//! PostgreSQL server (`scripts/postgres install`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ordering_core::order::{
    CreateWrite, Order, OrderEvent, OrderEventHandler, OrderId, OrderPositions, OrderStore, Status,
    StatusChange, StatusUpdate, StatusWrite, generate_order,
};
use ordering_core::testing::MemorySink;
use ordering_core::{DeadLetter, Dispatcher, DispatcherConfig, LaneMode, Position, StoreError};
use ordering_kafka::order::AvroCodec;
use ordering_kafka::testing::{TestBroker, unique_topic};
use ordering_kafka::{
    KafkaProducer, KafkaSource, ProducerConfig, SourceConfig, TopicSettings, ensure_topics,
};
use ordering_store::StoreUrl;
use ordering_store::testing::TestPostgres;

type Error = Box<dyn std::error::Error>;

/// Orders the updates go round: enough that an order's updates do not queue behind each
/// other in its lane at the rates measured.
const ORDERS: usize = 200;
const PARTITIONS: i32 = 3;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    let rate: u32 = arg(0).unwrap_or("1000").parse()?;
    let seconds: u64 = arg(1).unwrap_or("10").parse()?;
    let waits: Vec<u64> = arg(2)
        .unwrap_or("5,20,100")
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let stores: Vec<String> = arg(3)
        .unwrap_or("memory,sqlite,postgres")
        .split(',')
        .map(str::to_owned)
        .collect();

    let broker = TestBroker::start();
    let dir = tempfile::tempdir()?;
    let postgres = stores
        .iter()
        .any(|s| s == "postgres")
        .then(TestPostgres::start);
    println!("{rate} updates/s for {seconds} s over {ORDERS} orders, {PARTITIONS} partitions");
    println!(
        "{:<10} {:>10} {:>9} {:>9} {:>9} {:>8}",
        "store", "fetch wait", "p50", "p99", "max", "updates"
    );
    for store in &stores {
        for &wait in &waits {
            let url = match store.as_str() {
                "memory" => "memory://".to_owned(),
                "sqlite" => format!(
                    "sqlite://{}",
                    dir.path().join(format!("latency-{wait}.db")).display()
                ),
                "postgres" => match &postgres {
                    Some(pg) => pg.create_database().await,
                    None => return Err("no PostgreSQL server".into()),
                },
                other => return Err(format!("unknown store {other:?}").into()),
            };
            let mut latencies = run(&broker, &url, rate, seconds, wait).await?;
            latencies.sort_unstable();
            let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
            println!(
                "{store:<10} {:>8} ms {:>9.2?} {:>9.2?} {:>9.2?} {:>8}",
                wait,
                at(0.50),
                at(0.99),
                at(1.0),
                latencies.len()
            );
        }
    }
    Ok(())
}

/// One run: returns, per update, the time from its acknowledgement to its write.
async fn run(
    broker: &TestBroker,
    url: &str,
    rate: u32,
    seconds: u64,
    fetch_wait_ms: u64,
) -> Result<Vec<Duration>, Error> {
    let topic = unique_topic("latency");
    ensure_topics(
        &broker.bootstrap(),
        &[&topic],
        &TopicSettings::new(PARTITIONS),
        Duration::from_secs(20),
    )
    .await?;
    let store = Arc::new(Watched {
        inner: StoreUrl::parse(url)?.open().await?,
        applied: Mutex::default(),
    });
    let ids: Vec<OrderId> = (0..ORDERS)
        .map(|n| OrderId::parse(&format!("ORD-LAT-{n:04}")))
        .collect::<Result<_, _>>()?;
    for (n, id) in ids.iter().enumerate() {
        let order = generate_order(
            id.clone(),
            ordering_core::order::NumItems::new(1)?,
            "2026-11-25T10:00:00Z".into(),
            &mut rand::rng(),
        );
        store
            .create(&order, Position::new("order-events", 99, n as i64))
            .await?;
    }

    let codec = AvroCodec::new()?;
    let mut config = SourceConfig::new(broker.bootstrap(), unique_topic("group"), [&topic]);
    config.fetch_wait_max = Duration::from_millis(fetch_wait_ms);
    let source = KafkaSource::<OrderEvent, _>::new(&config, codec)?;
    let dispatcher = Dispatcher::new(
        source,
        OrderEventHandler::new(store.clone()),
        MemorySink::<DeadLetter>::new(),
        DispatcherConfig {
            lanes: LaneMode::Key,
            ..DispatcherConfig::default()
        },
    );
    let stats = dispatcher.stats();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let consumer = tokio::spawn(dispatcher.run(async {
        let _ = stopped.await;
    }));
    // Wait until the consumer holds its partitions: a first update goes through.
    let producer = KafkaProducer::new(&ProducerConfig::new(broker.bootstrap()))?;
    let updates = producer.sink(&topic, codec);
    let warm = StatusUpdate::new(&ids[0], &Status::parse("warm")?, "t".into());
    ordering_core::Sink::publish(&updates, &warm).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while stats.snapshot().applied == 0 {
        if Instant::now() > deadline {
            return Err("the consumer did not start within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A steady rate: one publish every 1/rate s, each awaited in its own task (as requests
    // to cart-shell are), its acknowledgement time kept.
    let total = rate as u64 * seconds;
    let acked: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sends = Vec::with_capacity(total as usize);
    for n in 0..total {
        ticks.tick().await;
        let status = format!("s-{n}");
        let update = StatusUpdate::new(
            &ids[n as usize % ORDERS],
            &Status::parse(&status)?,
            "t".into(),
        );
        let (producer, topic, acked) = (producer.clone(), topic.clone(), acked.clone());
        sends.push(tokio::spawn(async move {
            let sink = producer.sink(&topic, codec);
            let sent = ordering_core::Sink::publish(&sink, &update).await;
            if sent.is_ok() {
                lock(&acked).insert(status, Instant::now());
            }
            sent
        }));
    }
    for send in sends {
        send.await??;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while lock(&store.applied).len() < total as usize + 1 {
        if Instant::now() > deadline {
            return Err("not every update was applied within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(());
    consumer.await??;

    let acked = lock(&acked);
    let applied = lock(&store.applied);
    Ok(acked
        .iter()
        .filter_map(|(status, at)| Some(applied.get(status)?.saturating_duration_since(*at)))
        .collect())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The store, noting when each status write returned (by status: each update has its own).
struct Watched {
    inner: Arc<dyn ordering_store::Store>,
    applied: Mutex<HashMap<String, Instant>>,
}

#[async_trait]
impl OrderStore for Watched {
    async fn get(&self, id: &OrderId) -> Result<Option<Order>, StoreError> {
        self.inner.get(id).await
    }

    async fn create(&self, order: &Order, at: Position) -> Result<CreateWrite, StoreError> {
        self.inner.create(order, at).await
    }

    async fn positions(&self, id: &OrderId) -> Result<Option<OrderPositions>, StoreError> {
        self.inner.positions(id).await
    }

    async fn update_status(
        &self,
        id: &OrderId,
        change: StatusChange,
    ) -> Result<StatusWrite, StoreError> {
        let status = change.status.to_string();
        let written = self.inner.update_status(id, change).await?;
        lock(&self.applied).insert(status, Instant::now());
        Ok(written)
    }

    async fn ids(&self, after: Option<OrderId>, limit: usize) -> Result<Vec<OrderId>, StoreError> {
        self.inner.ids(after, limit).await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.inner.count().await
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        self.inner.check_writable().await
    }
}
