//! Throughput and latency when handlers wait (issue "throughput when handlers wait"): the
//! in-memory source, handlers that sleep 1, 10 or 100 ms (waiting, not CPU), keys uniform or
//! Zipf-distributed over 10 000, partition lanes and key lanes, 6 partitions.
//!
//! `cargo run --release -p ordering-benches --bin waiting` (all cells, a few minutes), or
//! `-- --quick` (the 1 ms and 10 ms cells only), `-- --broker [--quick]` (the throughput
//! cells through a real broker, which it starts: `scripts/broker install`), or
//! `-- --fairness` (a hot key failing: what the other keys' latency pays), or `-- --memory`
//! (what a record in flight costs in memory).
//! `WAITING_ONLY=10:uniform:Key` runs one cell alone; through the broker, `WAITING_RECORDS`
//! sets the backlog and `WAITING_PARKED` the source's parking bound.
//!
//! Per cell: the records/s reached over a backlog, and the two limits no engine can beat,
//! computed from the run's own settings and key counts: `W / L` (W records in flight, each
//! taking L) and `1 / (L × share of the hottest lane)` (a lane's records run one at a time:
//! the hottest key with key lanes, the hottest partition with partition lanes); the ratio of
//! the figure to the smaller limit. Then the end-to-end latency of each record from its
//! intended send time (p50, p99), at an offered load of 50 % and 90 % of that limit: the
//! records are sent on a schedule, and a late start counts against the engine.

#![allow(clippy::unwrap_used)]

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use ordering_core::testing::{MemorySink, MemorySource};
use ordering_core::{
    Classify, DeadLetter, Dispatcher, DispatcherConfig, ErrorClass, Handler, LaneMode, Record,
    RecordMeta, TopicPartition,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Zipf};
use serde::Serialize;
use tokio::time::Instant;

const PARTITIONS: usize = 6;
const KEYS: u64 = 10_000;
/// The dispatcher's default in-flight bound per partition (`WAITING_IN_FLIGHT` overrides it,
/// to see what the bound costs).
static IN_FLIGHT_PER_PARTITION: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
    std::env::var("WAITING_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
});
/// The fairness run's hot key (outside the 10 000 others).
const HOT_KEY: u64 = u64::MAX;

#[derive(Clone, Copy, Debug)]
enum Keys {
    Uniform,
    Zipf(f64),
}

impl std::fmt::Display for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Uniform => write!(f, "uniform"),
            Self::Zipf(s) => write!(f, "zipf {s}"),
        }
    }
}

#[derive(Serialize)]
struct Ev {
    /// Microseconds since the run's start at which the record was meant to be sent.
    intended_us: u64,
    /// The hot key of the fairness run, whose handler may fail.
    hot: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl Classify for Never {
    fn class(&self) -> ErrorClass {
        ErrorClass::Retryable
    }
    fn kind(&self) -> &'static str {
        "Never"
    }
}

/// Waits `wait`, then notes how long after its intended send time the record was done.
struct Waits {
    wait: Duration,
    start: Instant,
    latencies_us: std::sync::Mutex<Vec<u64>>,
    done: AtomicU64,
    /// The handlers' own time, summed: a timer's sleep is not exactly its nominal wait
    /// (tokio's timers tick in milliseconds, and round up), and the limits are the real one's.
    waited_ns: AtomicU64,
    /// The hot key's records fail (retried, then dead-lettered): the fairness run.
    hot_fails: bool,
    /// Latencies of the records of every other key, in the fairness run.
    others_us: std::sync::Mutex<Vec<u64>>,
}

#[async_trait]
impl Handler<Ev> for Waits {
    type Error = Never;

    async fn handle(&self, ev: &Ev, _meta: &RecordMeta) -> Result<(), Never> {
        let began = Instant::now();
        tokio::time::sleep(self.wait).await;
        let waited = u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.waited_ns.fetch_add(waited, Ordering::Relaxed);
        if ev.hot && self.hot_fails {
            return Err(Never);
        }
        let now = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.latencies_us
            .lock()
            .unwrap()
            .push(now.saturating_sub(ev.intended_us));
        if !ev.hot {
            let now = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.others_us
                .lock()
                .unwrap()
                .push(now.saturating_sub(ev.intended_us));
        }
        self.done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// `n` keys drawn from `keys`, each with its partition (the key's hash, as Kafka's default
/// partitioner places it).
fn draw(keys: Keys, n: usize, seed: u64) -> Vec<(u64, usize)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let zipf = match keys {
        Keys::Uniform => None,
        Keys::Zipf(s) => Some(Zipf::new(KEYS as f64, s).unwrap()),
    };
    (0..n)
        .map(|_| {
            let key = match &zipf {
                // Ranks 1..=KEYS: rank 1 is the hottest key.
                Some(zipf) => zipf.sample(&mut rng) as u64 - 1,
                None => rand::Rng::random_range(&mut rng, 0..KEYS),
            };
            let partition = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33) as usize % PARTITIONS;
            (key, partition)
        })
        .collect()
}

/// The share of the records the hottest lane holds.
fn hottest_share(drawn: &[(u64, usize)], lanes: LaneMode) -> f64 {
    let mut counts = std::collections::HashMap::<u64, u64>::new();
    for (key, partition) in drawn {
        let lane = match lanes {
            LaneMode::Key => *key,
            _ => *partition as u64,
        };
        *counts.entry(lane).or_default() += 1;
    }
    let hottest = counts.values().copied().max().unwrap_or(0);
    hottest as f64 / drawn.len() as f64
}

fn records(drawn: &[(u64, usize)], intended_us: impl Fn(usize) -> u64) -> Vec<Record<Ev>> {
    let tps: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new("waiting", p as i32))
        .collect();
    let mut offsets = [0i64; PARTITIONS];
    drawn
        .iter()
        .enumerate()
        .map(|(i, (key, partition))| {
            let mut meta = RecordMeta::new(tps[*partition].clone(), offsets[*partition]);
            offsets[*partition] += 1;
            meta.key = Some(key.to_be_bytes().to_vec());
            Record::new(
                meta,
                Vec::new(),
                Ok(Ev {
                    intended_us: intended_us(i),
                    hot: *key == HOT_KEY,
                }),
            )
        })
        .collect()
}

fn config(lanes: LaneMode) -> DispatcherConfig {
    DispatcherConfig {
        lanes,
        // Three retries 100, 200, 400 ms apart, then a dead letter.
        retry: ordering_core::RetryPolicy::new(
            3,
            Duration::from_millis(100),
            2.0,
            Duration::from_secs(1),
        )
        .unwrap(),
        max_in_flight_per_partition: NonZeroUsize::new(*IN_FLIGHT_PER_PARTITION).unwrap(),
        ..DispatcherConfig::default()
    }
}

/// Runs `records`, fed at their intended times if `paced`, to the end; the handler.
async fn run(records: Vec<Record<Ev>>, lanes: LaneMode, wait: Duration, paced: bool) -> Arc<Waits> {
    run_with(records, lanes, wait, paced, false).await
}

async fn run_with(
    records: Vec<Record<Ev>>,
    lanes: LaneMode,
    wait: Duration,
    paced: bool,
    hot_fails: bool,
) -> Arc<Waits> {
    let failing = if hot_fails {
        records
            .iter()
            .filter(|r| r.event.as_ref().is_ok_and(|e| e.hot))
            .count() as u64
    } else {
        0
    };
    let n = records.len() as u64 - failing;
    let start = Instant::now();
    let handler = Arc::new(Waits {
        wait,
        start,
        latencies_us: std::sync::Mutex::new(Vec::with_capacity(records.len())),
        done: AtomicU64::new(0),
        waited_ns: AtomicU64::new(0),
        hot_fails,
        others_us: std::sync::Mutex::new(Vec::new()),
    });
    let shared = SharedHandler(handler.clone());
    let dead_letters = MemorySink::<DeadLetter>::new();
    let dead_letters_seen = dead_letters.clone();
    if paced {
        let (source, feed) = MemorySource::live();
        let dispatcher = Dispatcher::new(source, shared, dead_letters, config(lanes));
        let running = tokio::spawn(dispatcher.run(std::future::pending()));
        for record in records {
            let due =
                start + Duration::from_micros(record.event.as_ref().map_or(0, |e| e.intended_us));
            tokio::time::sleep_until(due).await;
            assert!(feed.send(record), "the dispatcher runs");
        }
        // The fairness run stops 10 s after the last send whatever is left: a failing hot
        // key's records take 0.74 s each, one at a time, and may never all be done.
        let give_up = Instant::now() + Duration::from_secs(10);
        while handler.done.load(Ordering::Relaxed) < n
            || (!hot_fails && dead_letters_count(&dead_letters_seen) < failing)
        {
            if hot_fails && Instant::now() > give_up {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        running.abort();
        if hot_fails {
            return handler;
        }
    } else {
        let source = MemorySource::from_records(records);
        let dispatcher = Dispatcher::new(source, shared, dead_letters, config(lanes));
        dispatcher.run(std::future::pending()).await.unwrap();
    }
    assert_eq!(
        handler.done.load(Ordering::Relaxed),
        n,
        "every record handled"
    );
    handler
}

struct SharedHandler(Arc<Waits>);

#[async_trait]
impl Handler<Ev> for SharedHandler {
    type Error = Never;

    async fn handle(&self, ev: &Ev, meta: &RecordMeta) -> Result<(), Never> {
        self.0.handle(ev, meta).await
    }
}

/// The bench's events on the wire: the intended send time, 8 bytes big-endian.
struct WireCodec;

impl ordering_kafka::Codec<Ev> for WireCodec {
    fn encode(&self, ev: &Ev) -> Result<Vec<u8>, ordering_kafka::KafkaError> {
        Ok(ev.intended_us.to_be_bytes().to_vec())
    }

    fn decode(&self, payload: &[u8]) -> Result<Ev, ordering_core::DecodeError> {
        let bytes: [u8; 8] = payload
            .try_into()
            .map_err(|_| ordering_core::DecodeError::new("not 8 bytes"))?;
        Ok(Ev {
            intended_us: u64::from_be_bytes(bytes),
            hot: false,
        })
    }
}

/// Part 1 through a real broker: the throughput cells with `KafkaSource` on a 6-partition
/// topic (a backlog produced first, each key on its hash's partition), timed from the first
/// record handled to the last (the group's join is not the engine's).
async fn broker(waits: &[u64]) {
    use futures::StreamExt as _;
    use ordering_kafka::testing::{TestBroker, unique_topic};
    use ordering_kafka::{Cluster, KafkaSource, SourceConfig, TopicSettings, ensure_topics};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let broker = TestBroker::start();
    let cluster = Cluster::new(broker.bootstrap());
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("linger.ms", "20")
        .create()
        .unwrap();
    println!("\nThrough the broker (KafkaSource, {PARTITIONS} partitions):\n");
    println!(
        "| handler L (measured) | keys | lanes | records/s | W/L | 1/(L×hottest) | hottest lane | ratio to the smaller |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let w = (*IN_FLIGHT_PER_PARTITION * PARTITIONS) as f64;
    for &wait_ms in waits {
        let wait = Duration::from_millis(wait_ms);
        for keys in [Keys::Uniform, Keys::Zipf(1.0), Keys::Zipf(1.2)] {
            for lanes in [LaneMode::Partition, LaneMode::Key] {
                if skipped(wait_ms, keys, lanes) {
                    continue;
                }
                let probe = draw(keys, 100_000, 7);
                let l = wait.as_secs_f64() * 1.1;
                let limit = (w / l).min(1.0 / (l * hottest_share(&probe, lanes)));
                // `WAITING_RECORDS` sets the backlog (a longer run for the fast cells).
                let n = std::env::var("WAITING_RECORDS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(((limit * 3.0) as usize).clamp(2_000, 100_000));
                let drawn = draw(keys, n, 11);
                let share = hottest_share(&drawn, lanes);
                let topic = unique_topic("waiting");
                ensure_topics(
                    &broker.bootstrap(),
                    &[&topic],
                    &TopicSettings::new(PARTITIONS as i32),
                    Duration::from_secs(20),
                )
                .await
                .unwrap();
                let key_bytes: Vec<[u8; 8]> = drawn.iter().map(|(k, _)| k.to_be_bytes()).collect();
                let mut sends = futures::stream::FuturesUnordered::new();
                for ((_, partition), key) in drawn.iter().zip(&key_bytes) {
                    let record = FutureRecord::to(&topic)
                        .key(&key[..])
                        .partition(*partition as i32)
                        .payload(&[0u8; 8][..]);
                    sends.push(producer.send(record, Duration::from_secs(30)));
                    if sends.len() >= 5_000 {
                        sends.next().await.unwrap().unwrap();
                    }
                }
                while let Some(sent) = sends.next().await {
                    sent.unwrap();
                }

                let start = Instant::now();
                let handler = Arc::new(Waits {
                    wait,
                    start,
                    latencies_us: std::sync::Mutex::new(Vec::new()),
                    done: AtomicU64::new(0),
                    waited_ns: AtomicU64::new(0),
                    hot_fails: false,
                    others_us: std::sync::Mutex::new(Vec::new()),
                });
                let mut config = SourceConfig::new(&cluster, unique_topic("group"), [&topic]);
                // `WAITING_PARKED` (bytes per partition) to see what parking costs.
                if let Some(parked) = std::env::var("WAITING_PARKED")
                    .ok()
                    .and_then(|v| v.parse().ok())
                {
                    config.max_parked_bytes_per_partition = parked;
                }
                if let Ok(o) = std::env::var("WAITING_OVERRIDE") {
                    let (k, v) = o.split_once('=').unwrap();
                    config.overrides.push((k.into(), v.into()));
                }
                let source = KafkaSource::new(&config, WireCodec).unwrap();
                let dispatcher = Dispatcher::new(
                    source,
                    SharedHandler(handler.clone()),
                    MemorySink::<DeadLetter>::new(),
                    self::config(lanes),
                );
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let running = tokio::spawn(dispatcher.run(async {
                    let _ = stopped.await;
                }));
                while handler.done.load(Ordering::Relaxed) == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let first = Instant::now();
                while handler.done.load(Ordering::Relaxed) < n as u64 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let rate = (n - 1) as f64 / first.elapsed().as_secs_f64();
                let _ = stop.send(());
                let _ = running.await;
                let l = handler.waited_ns.load(Ordering::Relaxed) as f64 / 1e9 / n as f64;
                let (in_flight_limit, lane_limit) = (w / l, 1.0 / (l * share));
                let limit = in_flight_limit.min(lane_limit);
                println!(
                    "| {wait_ms} ms ({:.2} ms) | {keys} | {lanes:?} | {rate:.0} | {in_flight_limit:.0} | {lane_limit:.0} | {:.2} % | {:.2} |",
                    l * 1e3,
                    share * 100.0,
                    rate / limit,
                );
            }
        }
    }
}

/// Part 3: what a record in flight costs in memory. 100 000 order-status updates (as
/// order-shell holds them: the payload, its key, the decoded event) are put in flight at once
/// behind a handler that never finishes; the resident set is read before the records exist,
/// once they do (what a record is), and once they are all in flight (what holding one costs
/// on top: its future, its lane, its place in the watermark).
async fn memory() {
    use ordering_core::order::{OrderEvent, StatusUpdate};
    const N: usize = 100_000;
    fn rss_kib() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .unwrap();
        line.trim().trim_end_matches("kB").trim().parse().unwrap()
    }
    struct Stuck;
    #[async_trait]
    impl Handler<OrderEvent> for Stuck {
        type Error = Never;
        async fn handle(&self, _: &OrderEvent, _: &RecordMeta) -> Result<(), Never> {
            std::future::pending().await
        }
    }
    let before = rss_kib();
    let records: Vec<Record<OrderEvent>> = (0..N)
        .map(|n| {
            let id = format!("ORD-{n:08}");
            let mut meta =
                RecordMeta::new(TopicPartition::new("order-status-updates", 0), n as i64);
            meta.key = Some(id.clone().into_bytes());
            let event = OrderEvent::StatusUpdated(StatusUpdate {
                order_id: id,
                status: "shipped".into(),
                update_timestamp: "2026-12-05T09:00:00Z".into(),
                event_type: "ORDER_STATUS_UPDATE".into(),
                reason: None,
            });
            // The Avro single-object payload of such an update is 75 bytes.
            Record::new(meta, vec![0u8; 75], Ok(event))
        })
        .collect();
    let made = rss_kib();
    let config = DispatcherConfig {
        lanes: LaneMode::Key,
        max_in_flight_per_partition: NonZeroUsize::new(N + 1).unwrap(),
        handler_latency: false,
        ..DispatcherConfig::default()
    };
    let dispatcher = Dispatcher::new(
        MemorySource::from_records(records),
        Stuck,
        MemorySink::<DeadLetter>::new(),
        config,
    );
    let stats = dispatcher.stats();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(dispatcher.run(async {
        let _ = stopped.await;
    }));
    while stats.snapshot().in_flight < N as u64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let held = rss_kib();
    let per = |kib: usize| kib as f64 * 1024.0 / N as f64;
    println!("{N} order-status updates in flight (key lanes):");
    println!("| | bytes per record |\n|---|---|");
    println!(
        "| the record (payload, key, decoded event) | {:.0} |",
        per(made - before)
    );
    println!(
        "| holding it in flight (future, lane, watermark) | {:.0} |",
        per(held - made)
    );
    println!("| total | {:.0} |", per(held - before));
    let _ = stop.send(());
    running.abort();
}

/// Whether `WAITING_ONLY` (`10:uniform:Key`) names another cell.
fn skipped(wait_ms: u64, keys: Keys, lanes: LaneMode) -> bool {
    let cell = format!("{wait_ms}:{keys}:{lanes:?}");
    std::env::var("WAITING_ONLY").is_ok_and(|only| only != cell)
}

fn dead_letters_count(sink: &MemorySink<DeadLetter>) -> u64 {
    sink.len() as u64
}

/// Part 4: one key takes 30 % of the records; its handler succeeds, then fails (retried
/// three times, then dead-lettered). The other keys' p99, both ways, at the same offered load.
async fn fairness() {
    let wait = Duration::from_millis(10);
    // Key lanes: the hot key's lane caps the total at 1 / (10 ms × 30 %) ≈ 333/s; half.
    let offered = 150.0;
    let n = 4_500; // 30 s
    let mut rng = StdRng::seed_from_u64(17);
    let drawn: Vec<(u64, usize)> = (0..n)
        .map(|_| {
            let key = if rand::Rng::random_bool(&mut rng, 0.3) {
                HOT_KEY
            } else {
                rand::Rng::random_range(&mut rng, 0..KEYS)
            };
            let partition = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33) as usize % PARTITIONS;
            (key, partition)
        })
        .collect();
    let gap_us = 1e6 / offered;
    println!(
        "\n| hot key (30 %) | others' p50 | others' p99 | others' max | others not done 10 s after the last send |\n|---|---|---|---|---|"
    );
    let mut p99s = Vec::new();
    for hot_fails in [false, true] {
        let handler = run_with(
            records(&drawn, |i| (i as f64 * gap_us) as u64),
            LaneMode::Key,
            wait,
            true,
            hot_fails,
        )
        .await;
        let sent_others = drawn.iter().filter(|(k, _)| *k != HOT_KEY).count();
        let mut others = handler.others_us.lock().unwrap().clone();
        // Records of other keys not done by the end count as the longest wait possible.
        let unfinished = sent_others.saturating_sub(others.len());
        let to_end = u64::try_from(handler.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        others.extend(std::iter::repeat_n(to_end, unfinished));
        others.sort_unstable();
        let p99 = percentile(&others, 0.99);
        p99s.push(p99);
        println!(
            "| {} | {:.1?} | {p99:.1?} | {:.1?} | {unfinished} of {sent_others} |",
            if hot_fails {
                "fails (3 retries, then a dead letter)"
            } else {
                "succeeds"
            },
            percentile(&others, 0.5),
            percentile(&others, 1.0),
        );
    }
    println!(
        "\nothers' p99 with the hot key failing: {:.2}× the run where it succeeds",
        p99s[1].as_secs_f64() / p99s[0].as_secs_f64()
    );
}

fn percentile(sorted: &[u64], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    Duration::from_micros(sorted[i])
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--memory") {
        memory().await;
        return;
    }
    if std::env::args().any(|a| a == "--fairness") {
        fairness().await;
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    if std::env::args().any(|a| a == "--broker") {
        broker(if quick { &[1, 10] } else { &[1, 10, 100] }).await;
        return;
    }
    let waits: &[u64] = if quick { &[1, 10] } else { &[1, 10, 100] };
    let w = (*IN_FLIGHT_PER_PARTITION * PARTITIONS) as f64;
    println!(
        "{} partitions, {} keys, in flight W = {} ({} per partition)\n",
        PARTITIONS, KEYS, w, *IN_FLIGHT_PER_PARTITION
    );
    println!(
        "| handler L (measured) | keys | lanes | records/s | W/L | 1/(L×hottest) | hottest lane | ratio to the smaller | p50 / p99 at 50 % | p50 / p99 at 90 % |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &wait_ms in waits {
        let wait = Duration::from_millis(wait_ms);
        let l = wait.as_secs_f64();
        for keys in [Keys::Uniform, Keys::Zipf(1.0), Keys::Zipf(1.2)] {
            for lanes in [LaneMode::Partition, LaneMode::Key] {
                if skipped(wait_ms, keys, lanes) {
                    continue;
                }
                // About 3 s of work at the limit, at least 2 000 records.
                let probe = draw(keys, 100_000, 7);
                let share = hottest_share(&probe, lanes);
                let limit = (w / l).min(1.0 / (l * share));
                let n = ((limit * 3.0) as usize).clamp(2_000, 300_000);
                let drawn = draw(keys, n, 11);
                let share = hottest_share(&drawn, lanes);

                let started = Instant::now();
                let handler = run(records(&drawn, |_| 0), lanes, wait, false).await;
                let rate = n as f64 / started.elapsed().as_secs_f64();
                // The limits of the handler's real wait.
                let l = handler.waited_ns.load(Ordering::Relaxed) as f64 / 1e9 / n as f64;
                let (in_flight_limit, lane_limit) = (w / l, 1.0 / (l * share));
                let limit = in_flight_limit.min(lane_limit);

                let mut at = Vec::new();
                for load in [0.5, 0.9] {
                    let offered = limit * load;
                    // 2 s of offered load, at least 500 records.
                    let m = ((offered * 2.0) as usize).clamp(500, 200_000);
                    let drawn = draw(keys, m, 13);
                    let gap_us = 1e6 / offered;
                    let handler = run(
                        records(&drawn, |i| (i as f64 * gap_us) as u64),
                        lanes,
                        wait,
                        true,
                    )
                    .await;
                    let mut latencies = handler.latencies_us.lock().unwrap().clone();
                    latencies.sort_unstable();
                    at.push(format!(
                        "{:.1?} / {:.1?}",
                        percentile(&latencies, 0.5),
                        percentile(&latencies, 0.99)
                    ));
                }
                println!(
                    "| {wait_ms} ms ({:.2} ms) | {keys} | {lanes:?} | {rate:.0} | {in_flight_limit:.0} | {lane_limit:.0} | {:.2} % | {:.2} | {} | {} |",
                    l * 1e3,
                    share * 100.0,
                    rate / limit,
                    at[0],
                    at[1]
                );
            }
        }
    }
}
