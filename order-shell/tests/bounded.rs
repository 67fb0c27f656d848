//! Public endpoints bounded in memory, on the real process: topic scans hold only the ids
//! they answer with, so eight at once over thousands of large orders barely move
//! order-shell's peak memory.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{System, eventually};
use ordering_core::Sink;
use ordering_core::order::{NumItems, OrderId, generate_order};
use ordering_kafka::testing::{Storage, TestBroker};
use ordering_kafka::{AvroCodec, KafkaProducer, ProducerConfig};
use shell_http::testing::get;

const ORDERS: usize = 4000;
const ITEMS: i64 = 100;
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
    let store = format!("sqlite://{}", dir.path().join("orders.db").display());
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
    let items = NumItems::new(ITEMS).unwrap();
    let sends = (0..ORDERS).map(|n| {
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
        (stats.json["totalOrders"] == ORDERS).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = system.order.pid().unwrap();
    let before = peak_kib(pid);

    let url = system.order.url(&format!(
        "/api/getAllOrderIdsFromTopic?topicName={}",
        system.topics[0]
    ));
    let scans: Vec<_> = (0..SCANS)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    // Meanwhile, the cheap requests take no turn and answer: health, lookups, stats.
    let mut slowest = Duration::ZERO;
    while scans.iter().any(|scan| !scan.is_finished()) {
        for path in [
            "/health".to_owned(),
            "/api/order-details?orderId=ORD-BIG-00042".to_owned(),
            "/api/stats?limit=1000".to_owned(),
        ] {
            let started = std::time::Instant::now();
            let reply = get(&system.order.url(&path)).await;
            slowest = slowest.max(started.elapsed());
            assert_eq!(reply.status, 200, "{path} during the scans: {}", reply.text);
        }
    }
    eprintln!("slowest health, lookup or stats answer during the scans: {slowest:?}");
    for scan in scans {
        let reply = scan.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.json["count"], ORDERS, "every id, once");
        assert_eq!(reply.json["truncated"], false);
    }
    let grown_mib = peak_kib(pid).saturating_sub(before) / 1024;
    eprintln!(
        "{SCANS} scans of {ORDERS} orders: peak memory +{grown_mib} MiB (from {} MiB)",
        before / 1024
    );
    // Keeping the decoded orders, as scans did, grew it by 344 MB here.
    assert!(
        grown_mib < 50,
        "eight scans grew order-shell's peak memory by {grown_mib} MiB"
    );
}
