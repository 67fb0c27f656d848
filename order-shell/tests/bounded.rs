//! Public endpoints bounded in memory, on the real process: topic scans hold only the page of
//! ids they answer with, so eight clients paging at once through thousands of large orders
//! barely move order-shell's peak memory, whatever the number of orders; and on a store of 200 000 orders, lookups, `/health` and
//! `/api/stats` keep answering while the scans run.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{System, eventually};
use futures::StreamExt;
use ordering_core::order::{NumItems, OrderId, OrderStore, generate_order};
use ordering_core::{Position, Sink};
use ordering_http::testing::get;
use ordering_kafka::order::AvroCodec;
use ordering_kafka::testing::{Storage, TestBroker};
use ordering_kafka::{KafkaProducer, ProducerConfig};
use ordering_store::SqliteStore;

/// Orders already in the store when order-shell starts.
const STORED: usize = 200_000;
/// Large orders on the topic, which the scans read, and their items: 4 000 of 100 unless
/// `BOUNDED_SCAN_ORDERS` and `BOUNDED_SCAN_ITEMS` say otherwise (BENCHMARKS.md compares
/// 40 000 of 10 in a release build).
fn scan_orders() -> (usize, i64) {
    let var = |name, default| {
        std::env::var(name)
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(default)
    };
    (
        var("BOUNDED_SCAN_ORDERS", 4000),
        var("BOUNDED_SCAN_ITEMS", 100) as i64,
    )
}
const SCANS: usize = 8;

/// The process's peak resident memory so far (`VmHWM`), in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_scans_of_thousands_of_large_orders_keep_only_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.db");
    seed(&path).await;
    let store = format!("sqlite://{}", path.display());
    let system = System::start_with(
        TestBroker::start_with(Storage::Memory),
        &[
            ("ORDER_STORE_URL", store),
            ("SCAN_CONCURRENCY", SCANS.to_string()),
        ],
    );
    system.wait_until_consuming().await;

    // 4 000 orders of 100 items, straight onto the topic.
    let producer = KafkaProducer::new(&ProducerConfig::new(system.broker.bootstrap())).unwrap();
    let orders = producer.sink(&system.topics[0], AvroCodec::new().unwrap());
    let (orders_on_topic, items) = scan_orders();
    let items = NumItems::new(items).unwrap();
    let sends = (0..orders_on_topic).map(|n| {
        let order = generate_order(
            OrderId::parse(&format!("ORD-BIG-{n:05}")).unwrap(),
            items,
            "2026-11-29T12:00:00Z".into(),
            &mut rand::rng(),
        );
        let orders = &orders;
        async move { orders.publish(&order).await }
    });
    for sent in futures::future::join_all(sends).await {
        sent.unwrap();
    }
    // Consumed and stored first, so that what the scans cost is all that grows next.
    eventually("every order stored", || async {
        let stats = get(&system.order.url("/api/stats?limit=1")).await;
        (stats.json["totalOrders"] == STORED + orders_on_topic).then_some(())
    })
    .await;
    // The cheap requests once before measuring: the store's read connections fill their
    // page caches, which is the store's memory, not the scans'.
    for _ in 0..4 {
        for path in cheap_requests() {
            assert_eq!(get(&system.order.url(&path)).await.status, 200, "{path}");
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = system.order.pid().unwrap();
    let before = peak_kib(pid);

    let url = system.order.url(&format!(
        "/api/getAllOrderIdsFromTopic?topicName={}",
        system.topics[0]
    ));
    // Each scan a client paging through every id of the topic, a page of 1 000 at a time.
    let scans: Vec<_> = (0..SCANS)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut ids = std::collections::HashSet::new();
                let mut cursor = String::new();
                loop {
                    let reply = get(&format!("{url}&cursor={cursor}")).await;
                    assert_eq!(reply.status, 200, "{}", reply.text);
                    let page = reply.json["orderIds"].as_array().unwrap();
                    assert!(page.len() <= 1000, "a page of {} ids", page.len());
                    ids.extend(page.iter().map(|id| id.as_str().unwrap().to_owned()));
                    match reply.json["nextCursor"].as_str() {
                        Some(next) => cursor = next.to_owned(),
                        None => return ids.len(),
                    }
                }
            })
        })
        .collect();
    // Meanwhile, the cheap requests take no turn and answer: health, lookups, and a page of
    // stats over the whole store. Had they queued behind the scans, the first round would end
    // only after the last scan; they keep answering while every scan still runs.
    let mut slowest = Duration::ZERO;
    let mut rounds = 0;
    while scans.iter().any(|scan| !scan.is_finished()) {
        for path in cheap_requests() {
            let started = std::time::Instant::now();
            let reply = get(&system.order.url(&path)).await;
            slowest = slowest.max(started.elapsed());
            assert_eq!(reply.status, 200, "{path} during the scans: {}", reply.text);
            if path.starts_with("/api/stats") {
                assert_eq!(reply.json["totalOrders"], STORED + orders_on_topic);
                assert_eq!(reply.json["orderIds"].as_array().unwrap().len(), 10_000);
            }
        }
        if scans.iter().all(|scan| !scan.is_finished()) {
            rounds += 1;
        }
    }
    eprintln!(
        "{rounds} rounds of health, two lookups and stats while all {SCANS} scans ran; \
         slowest answer {slowest:?}"
    );
    assert!(
        rounds >= 3,
        "only {rounds} rounds of cheap requests answered while the scans ran"
    );
    for scan in scans {
        assert_eq!(scan.await.unwrap(), orders_on_topic, "every id");
    }
    let grown_mib = peak_kib(pid).saturating_sub(before) / 1024;
    eprintln!(
        "{SCANS} scans of {orders_on_topic} orders of {} items: peak memory +{grown_mib} MiB (from {} MiB)",
        items.get(),
        before / 1024
    );
    // Keeping the decoded orders, as scans did, grew it by 344 MB here.
    assert!(
        grown_mib < 50,
        "eight scans grew order-shell's peak memory by {grown_mib} MiB"
    );
}

/// Health, a lookup of a large order and of a stored one, a page of 10 000 ids of the store.
fn cheap_requests() -> [String; 4] {
    [
        "/health".to_owned(),
        "/api/order-details?orderId=ORD-BIG-00042".to_owned(),
        format!("/api/order-details?orderId={}", seeded(STORED / 2)),
        "/api/stats?limit=10000".to_owned(),
    ]
}

fn seeded(n: usize) -> String {
    format!("ORD-STORED-{n:06}")
}

/// [`STORED`] small orders written to the SQLite store at `path` before order-shell opens it.
async fn seed(path: &std::path::Path) {
    let store = SqliteStore::open(path).unwrap();
    let one = NumItems::new(1).unwrap();
    // Many at once: the store's writer commits them in batches.
    futures::stream::iter(0..STORED)
        .map(|n| {
            let order = generate_order(
                OrderId::parse(&seeded(n)).unwrap(),
                one,
                "2026-11-29T12:00:00Z".into(),
                &mut rand::rng(),
            );
            let store = &store;
            async move {
                store
                    .create(&order, Position::new("seed", 0, n as i64))
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(512)
        .collect::<()>()
        .await;
    assert_eq!(store.count().await.unwrap(), STORED as u64);
}
