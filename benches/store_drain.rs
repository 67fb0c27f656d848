//! order-shell, the real binary, draining a backlog with each order store, in one run on one
//! broker: the records/s of the memory, SQLite and PostgreSQL stores, and their ratios.
//!
//! ```text
//! cargo build --release -p order-shell
//! cargo run --release -p ordering-benches --bin store_drain -- [ORDERS] [UPDATES] [ROUNDS]
//! cargo run --release -p ordering-benches --bin store_drain -- rss [ORDERS]
//! ```
//!
//! The backlog is one topic: every order's creation first, then `UPDATES` status updates
//! spread over the orders, each keyed by its order (so an order's creation precedes its
//! updates in its partition, and no update waits for its order). Each drain is a new
//! order-shell process in a new consumer group with a new, empty store; the clock runs from
//! the first record it received to the last one applied (polled every 20 ms from
//! `/api/dlq/info`). Rounds rotate the order of the stores.
//!
//! `rss`: the resident memory of order-shell once it holds `ORDERS` (default 1 000 000)
//! orders, against 10 000, on SQLite and in memory.
//!
//! Starts its own Nisshi broker and PostgreSQL server (`TEST_POSTGRES_URL` for an existing
//! one): run `scripts/broker install` and `scripts/postgres install` first.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use ordering_core::order::{NumItems, OrderEvent, OrderId, Status, StatusUpdate, generate_order};
use ordering_http::testing::{ShellProcess, get};
use ordering_kafka::order::AvroCodec;
use ordering_kafka::testing::{TestBroker, unique_topic};
use ordering_kafka::{Codec, KafkaProducer, ProducerConfig, TopicSettings, ensure_topics};
use ordering_store::testing::TestPostgres;

use ordering_benches::Error;

const PARTITIONS: i32 = 3;

fn order_shell() -> PathBuf {
    std::env::var_os("ORDER_SHELL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/release/order-shell"
            ))
        })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bin = order_shell();
    if !bin.is_file() {
        return Err(format!(
            "{} is missing: cargo build --release -p order-shell (or set ORDER_SHELL_BIN)",
            bin.display()
        )
        .into());
    }
    // A mode's numbers follow its name; without a mode they come first.
    let mode = args.first().map(String::as_str);
    let skip = usize::from(matches!(mode, Some("instances" | "direct" | "rss")));
    let number = |i: usize, default: usize| -> Result<usize, Error> {
        Ok(args
            .get(skip + i)
            .map(|a| a.parse())
            .transpose()?
            .unwrap_or(default))
    };
    match mode {
        Some("instances") => instances(number(0, 5_000)?, number(1, 200_000)?, number(2, 2)?).await,
        Some("direct") => direct().await,
        Some("rss") => rss(number(0, 1_000_000)?).await,
        _ => rates(number(0, 5_000)?, number(1, 200_000)?, number(2, 3)?).await,
    }
}

/// A broker with the backlog in one topic, an empty status topic and a DLQ.
struct Backlog {
    broker: TestBroker,
    topic: String,
    empty: String,
    dlq: String,
    records: u64,
}

impl Backlog {
    /// `orders` creations then `updates` status updates of those orders; with `created:
    /// false`, the updates alone (for orders already in the store).
    async fn fill(orders: usize, updates: usize, created: bool) -> Result<Self, Error> {
        let broker = TestBroker::start();
        let (topic, empty, dlq) = (
            unique_topic("backlog"),
            unique_topic("none"),
            unique_topic("dlq"),
        );
        ensure_topics(
            &broker.bootstrap(),
            &[&topic, &empty, &dlq],
            &TopicSettings::new(PARTITIONS),
            Duration::from_secs(20),
        )
        .await?;
        let mut config = ProducerConfig::new(broker.bootstrap());
        config.delivery_timeout = Duration::from_secs(120);
        config.overrides.push(("linger.ms".into(), "20".into()));
        let producer = KafkaProducer::new(&config)?;
        let codec = AvroCodec::new()?;
        let mut rng = rand::rng();
        let id = |n: usize| OrderId::parse(&format!("ORD-{n:07}"));
        let events = (0..if created { orders } else { 0 })
            .map(|n| -> Result<OrderEvent, Error> {
                let items = NumItems::new(1 + (n % 3) as i64)?;
                Ok(OrderEvent::Created(generate_order(
                    id(n)?,
                    items,
                    "2026-01-30T12:00:00Z".into(),
                    &mut rng,
                )))
            })
            .chain((0..updates).map(|u| -> Result<OrderEvent, Error> {
                let status = Status::parse(&format!("step-{:06}", u / orders.max(1)))?;
                Ok(OrderEvent::StatusUpdated(StatusUpdate::new(
                    &id(u % orders.max(1))?,
                    &status,
                    "2026-01-30T12:00:01Z".into(),
                )))
            }));
        let mut in_flight = FuturesUnordered::new();
        for event in events {
            let event = event?;
            let payload = codec.encode(&event)?;
            let key = event.order_id().to_owned();
            let (producer, topic) = (producer.clone(), topic.clone());
            in_flight.push(async move {
                producer
                    .send(&topic, Some(key.as_bytes()), &payload, &[])
                    .await
            });
            if in_flight.len() >= 10_000 {
                in_flight.next().await.transpose()?;
            }
        }
        while let Some(sent) = in_flight.next().await {
            sent?;
        }
        Ok(Self {
            broker,
            topic,
            empty,
            dlq,
            records: (if created { orders } else { 0 } + updates) as u64,
        })
    }

    /// order-shell's settings for draining this backlog into `store` in `group`.
    fn env(&self, store: &str, group: &str) -> Vec<(&'static str, String)> {
        vec![
            ("KAFKA_BOOTSTRAP_SERVERS", self.broker.bootstrap()),
            ("KAFKA_TOPIC", self.topic.clone()),
            ("KAFKA_STATUS_UPDATE_TOPIC", self.empty.clone()),
            ("KAFKA_DLQ_TOPIC", self.dlq.clone()),
            ("KAFKA_CONSUMER_GROUP", group.to_owned()),
            ("ORDER_STORE_URL", store.to_owned()),
            ("RUST_LOG", "warn".to_owned()),
        ]
    }

    /// Starts order-shell on `store` in a new group and waits until it applied the backlog.
    /// Returns the process (still running) and the records/s.
    async fn drain(&self, store: &str) -> Result<(ShellProcess, f64), Error> {
        let shell = ShellProcess::start(&order_shell(), &self.env(store, &unique_topic("drain")));
        let counters = || async {
            let info = get(&shell.url("/api/dlq/info")).await.json;
            let stats = &info["consumerStats"];
            let n = |name: &str| stats[name].as_u64().unwrap_or(0);
            (n("received"), n("applied"), n("deadLettered"))
        };
        let (started, applied_at_start) = loop {
            let (received, applied, _) = counters().await;
            if received > 0 {
                break (Instant::now(), applied);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        loop {
            let (_, applied, dead) = counters().await;
            if dead > 0 {
                return Err(format!("{dead} records were dead-lettered on {store}").into());
            }
            if applied >= self.records {
                let rate = (applied - applied_at_start) as f64 / started.elapsed().as_secs_f64();
                return Ok((shell, rate));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn rates(orders: usize, updates: usize, rounds: usize) -> Result<(), Error> {
    let backlog = Backlog::fill(orders, updates, true).await?;
    println!(
        "backlog: {orders} orders then {updates} status updates in one topic ({PARTITIONS} partitions)"
    );
    let pg = TestPostgres::shared();
    let dir = tempfile::tempdir()?;
    let names = ["memory", "sqlite", "postgres"];
    let mut all: [Vec<f64>; 3] = Default::default();
    for round in 0..rounds {
        let mut rates = [0.0; 3];
        for i in 0..3 {
            let which = (i + round) % 3;
            let store = match which {
                0 => "memory://".to_owned(),
                1 => format!(
                    "sqlite://{}",
                    dir.path().join(format!("r{round}.db")).display()
                ),
                _ => pg.create_database().await,
            };
            let (mut shell, rate) = backlog.drain(&store).await?;
            shell.terminate();
            rates[which] = rate;
        }
        println!(
            "round {round}: memory {:>8.0}/s  sqlite {:>8.0}/s  postgres {:>8.0}/s  sqlite/memory {:.2}  postgres/memory {:.2}",
            rates[0],
            rates[1],
            rates[2],
            rates[1] / rates[0],
            rates[2] / rates[0]
        );
        for (list, rate) in all.iter_mut().zip(rates) {
            list.push(rate);
        }
    }
    let [memory, sqlite, postgres] = all.map(|mut r| median(&mut r));
    println!(
        "median: {} {memory:.0}/s, {} {sqlite:.0}/s ({:.2}), {} {postgres:.0}/s ({:.2})",
        names[0],
        names[1],
        sqlite / memory,
        names[2],
        postgres / memory
    );
    Ok(())
}

/// Resident memory of order-shell holding few and many orders. SQLite: the database is
/// filled beforehand through the store (so the broker's backlog, and librdkafka's prefetch of
/// it, is the same small one either way), then order-shell applies 10 000 status updates and
/// serves 1000 reads spread over every order. Memory: the orders themselves come through the
/// broker, as they must.
async fn rss(orders: usize) -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let few = 10_000.min(orders);
    let updates = Backlog::fill(few, 10_000, false).await?;
    for count in [few, orders] {
        let path = dir.path().join(format!("{count}.db"));
        let url = format!("sqlite://{}", path.display());
        prefill(&url, count).await?;
        let (mut shell, rate) = updates.drain(&url).await?;
        let kib = resident_after_reads(&shell, count).await?;
        println!(
            "sqlite with {count:>8} orders: RSS {:>6.1} MiB (10 000 updates at {rate:.0}/s)",
            kib as f64 / 1024.0
        );
        shell.terminate();
    }
    for count in [few, orders] {
        let backlog = Backlog::fill(count, 0, true).await?;
        let (mut shell, rate) = backlog.drain("memory://").await?;
        let kib = resident_after_reads(&shell, count).await?;
        println!(
            "memory with {count:>8} orders: RSS {:>6.1} MiB (created at {rate:.0}/s)",
            kib as f64 / 1024.0
        );
        shell.terminate();
    }
    Ok(())
}

/// Stores `count` orders through the SQLite store, 4096 writes at a time.
async fn prefill(url: &str, count: usize) -> Result<(), Error> {
    let store = ordering_store::StoreUrl::parse(url)?.open().await?;
    let mut rng = rand::rng();
    let mut in_flight = FuturesUnordered::new();
    for n in 0..count {
        let id = OrderId::parse(&format!("ORD-{n:07}"))?;
        let order = generate_order(
            id,
            NumItems::new(2)?,
            "2026-01-30T12:00:00Z".into(),
            &mut rng,
        );
        let store = store.clone();
        in_flight.push(async move {
            store
                .create(
                    &order,
                    ordering_core::Position::new("order-events", 0, n as i64),
                )
                .await
        });
        if in_flight.len() >= 4096 {
            in_flight.next().await.transpose()?;
        }
    }
    while let Some(done) = in_flight.next().await {
        done?;
    }
    Ok(())
}

/// Reads 1000 orders spread over all `count`, then the process's resident memory.
async fn resident_after_reads(shell: &ShellProcess, count: usize) -> Result<u64, Error> {
    for n in (0..count).step_by((count / 1000).max(1)) {
        let reply = get(&shell.url(&format!("/api/order-details?orderId=ORD-{n:07}"))).await;
        if reply.status != 200 {
            return Err(format!("ORD-{n:07}: {}", reply.text).into());
        }
    }
    let pid = shell.pid().ok_or("order-shell is not running")?;
    rss_kib(pid)
}

/// One and two order-shells in one group draining the backlog into one PostgreSQL database,
/// `rounds` times each. Done when every order shows its last status (read from the
/// database): with two instances, the first rebalance and its replays are part of the cost.
async fn instances(orders: usize, updates: usize, rounds: usize) -> Result<(), Error> {
    let backlog = Backlog::fill(orders, updates, true).await?;
    println!(
        "backlog: {orders} orders then {updates} status updates in one topic ({PARTITIONS} partitions)"
    );
    let pg = TestPostgres::shared();
    let last = format!("step-{:06}", (updates.max(1) - 1) / orders.max(1));
    let finished = if updates.is_multiple_of(orders.max(1)) {
        orders
    } else {
        updates % orders
    };
    let mut all: [Vec<f64>; 2] = Default::default();
    for round in 0..rounds {
        for i in 0..2 {
            let count = 1 + (i + round) % 2;
            let url = pg.create_database().await;
            let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            let group = unique_topic("scale");
            let mut shells: Vec<ShellProcess> = (0..count)
                .map(|_| ShellProcess::start(&order_shell(), &backlog.env(&url, &group)))
                .collect();
            let started = loop {
                let mut received = 0;
                for shell in &shells {
                    let info = get(&shell.url("/api/dlq/info")).await.json;
                    received += info["consumerStats"]["received"].as_u64().unwrap_or(0);
                }
                if received > 0 {
                    break Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            loop {
                let done: i64 = db
                    .query_one(
                        "SELECT count(*) FROM order_status WHERE status = $1",
                        &[&last],
                    )
                    .await?
                    .get(0);
                if done as usize >= finished {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let rate = backlog.records as f64 / started.elapsed().as_secs_f64();
            for shell in &mut shells {
                shell.terminate();
            }
            println!("round {round}: {count} instance(s): {rate:.0}/s");
            all[count - 1].push(rate);
        }
    }
    let [one, two] = all.map(|mut r| median(&mut r));
    println!(
        "median: 1 instance {one:.0}/s, 2 instances {two:.0}/s, ratio {:.2}",
        two / one
    );
    Ok(())
}

/// The stores alone, in this process: 2000 orders, then 200 000 status updates from 8192
/// concurrent writers.
async fn direct() -> Result<(), Error> {
    let pg = TestPostgres::shared();
    let dir = tempfile::tempdir()?;
    for url in [
        "memory://".to_owned(),
        format!("sqlite://{}", dir.path().join("direct.db").display()),
        pg.create_database().await,
    ] {
        let store = ordering_store::StoreUrl::parse(&url)?.open().await?;
        let rate = ordering_benches::update_rate(store, 200_000).await?;
        println!(
            "{:>8}: {rate:.0} updates/s",
            url.split(':').next().unwrap_or(""),
        );
    }
    Ok(())
}

fn rss_kib(pid: u32) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS in /proc/PID/status".into())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
