//! Durable state, for real: order-shell killed with `kill -9` under a steady load of updates
//! (SQLite and PostgreSQL), PostgreSQL stopped and made read-only under load, a restart that keeps every order,
//! unknown orders that retry side by side. Every `202` is checked against the final state.

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use common::load::{
    Accepted, ORDERS, ROUNDS, assert_nothing_dead_lettered, converge, create_orders, rounds_done,
    start_load,
};
use common::{System, eventually};
use ordering_http::testing::get;
use ordering_kafka::testing::{Storage, TestBroker};
use ordering_store::testing::TestPostgres;

/// order-shell is killed with SIGKILL a third of the way through the load and started again
/// while the load goes on.
async fn kill_9_under_load_loses_nothing(store_url: String) {
    let mut system = System::start_with(
        TestBroker::start_with(Storage::Memory),
        &[
            ("ORDER_STORE_URL", store_url),
            // The killed member is noticed after 6 s rather than librdkafka's 45 s.
            ("KAFKA_SESSION_TIMEOUT_MS", "6000".into()),
        ],
    );
    system.wait_until_consuming().await;
    create_orders(&system).await;

    let accepted = Accepted::default();
    let rounds = Arc::new(AtomicUsize::new(0));
    let load = start_load(system.cart.url(""), accepted.clone(), rounds.clone());
    rounds_done(&rounds, ROUNDS / 3).await;
    tokio::task::block_in_place(|| {
        system.kill_order_shell();
        system.start_order_shell();
    });
    load.await.expect("the load ran to its end");

    converge(&system.order, &accepted).await;
    assert_nothing_dead_lettered(&system.order).await;
    let stats = get(&system.order.url("/api/stats")).await;
    assert_eq!(
        stats.json["totalOrders"], ORDERS,
        "no order lost, none invented"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_loses_nothing_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("orders.db").display());
    kill_9_under_load_loses_nothing(url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_loses_nothing_on_postgres() {
    let pg = TestPostgres::shared();
    kill_9_under_load_loses_nothing(pg.create_database().await).await;
}

/// What happens to PostgreSQL under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// Stopped: nothing answers.
    Stopped,
    /// A failover left the connections on a read-only standby: every write fails with
    /// SQLSTATE 25006 while reads (and `SELECT 1`) still work.
    ReadOnly,
}

/// PostgreSQL is taken away (`outage`) a quarter of the way through a load of updates: nothing
/// may be dead-lettered for it, `/health` must say why, and every `202` must apply once it is
/// back.
async fn postgres_outage_under_load(outage: Outage) {
    let mut pg = TestPostgres::start();
    let system = System::start_with(
        TestBroker::start_with(Storage::Memory),
        &[
            ("ORDER_STORE_URL", pg.create_database().await),
            // Outage waits: 100 ms doubling to at most 1 s, so the test is quick once it is back.
            ("DLQ_MAX_BACKOFF_MS", "1000".into()),
        ],
    );
    system.wait_until_consuming().await;
    create_orders(&system).await;

    let accepted = Accepted::default();
    let rounds = Arc::new(AtomicUsize::new(0));
    let load = start_load(system.cart.url(""), accepted.clone(), rounds.clone());
    rounds_done(&rounds, ROUNDS / 4).await;
    match outage {
        Outage::Stopped => tokio::task::block_in_place(|| pg.stop()),
        Outage::ReadOnly => pg.set_read_only(true).await,
    }

    let health = eventually("/health to report the store unavailable", || async {
        let health = get(&system.order.url("/health")).await;
        (health.json["store"]["state"] == "unavailable").then_some(health)
    })
    .await;
    assert_eq!(health.status, 503, "{}", health.text);
    assert_eq!(health.json["status"], "unhealthy");
    if outage == Outage::ReadOnly {
        let why = health.json["store"]["error"].as_str().unwrap_or_default();
        assert!(why.contains("read-only"), "{}", health.text);
    }
    // Far longer than 100 + 200 + 400 ms of retries: were the outage the records' fault,
    // they would be dead letters by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let waiting = get(&system.order.url("/api/dlq/info")).await.json;
    assert_eq!(waiting["consumerStats"]["deadLettered"], 0, "{waiting}");
    assert!(
        waiting["consumerStats"]["unavailableWaits"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "the updates waited: {waiting}"
    );
    assert_nothing_dead_lettered(&system.order).await;

    match outage {
        Outage::Stopped => tokio::task::block_in_place(|| pg.restart()),
        Outage::ReadOnly => pg.set_read_only(false).await,
    }
    load.await.expect("the load ran to its end");
    converge(&system.order, &accepted).await;
    assert_nothing_dead_lettered(&system.order).await;
    eventually("/health to be green again", || async {
        (get(&system.order.url("/health")).await.status == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_stopped_under_load_dead_letters_nothing_and_applies_everything() {
    postgres_outage_under_load(Outage::Stopped).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_read_only_under_load_dead_letters_nothing_and_applies_everything() {
    postgres_outage_under_load(Outage::ReadOnly).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_unknown_orders_in_one_partition_are_dead_lettered_side_by_side() {
    let system = System::start_with(
        TestBroker::start_with(Storage::Memory),
        &[
            ("ORDER_STORE_URL", "memory://".into()),
            ("KAFKA_TOPIC_PARTITIONS", "1".into()),
            // 300 + 600 + 1200 ms: one unknown order takes 2.1 s to reach the DLQ.
            ("DLQ_RETRY_BACKOFF_MS", "300".into()),
        ],
    );
    system.wait_until_consuming().await;
    assert_eq!(system.create("ORD-KNOWN", 1).await.status, 201);
    eventually("the known order", || async {
        (system.order_details("ORD-KNOWN").await.status == 200).then_some(())
    })
    .await;

    assert_eq!(system.update("UNKNOWN-1", "shipped").await.status, 202);
    assert_eq!(system.update("UNKNOWN-2", "shipped").await.status, 202);
    assert_eq!(system.update("ORD-KNOWN", "shipped").await.status, 202);
    // The known order, behind both in the one partition, is not held back by them.
    eventually("the known order shipped", || async {
        let reply = system.order_details("ORD-KNOWN").await;
        (reply.json["data"]["status"] == "shipped").then_some(())
    })
    .await;
    assert_nothing_dead_lettered(&system.order).await;

    let letters = eventually("both dead letters", || async {
        let letters = system.dead_letters().await;
        (letters.len() == 2).then_some(letters)
    })
    .await;
    // Side by side: the second one's retries began before the first one's ended (one after
    // the other, the second would start only when the first was dead-lettered).
    let by_key = |key: &str| {
        letters
            .iter()
            .find(|l| l["originalKey"] == key)
            .unwrap_or_else(|| panic!("a letter for {key}: {letters:#?}"))
    };
    let (one, two) = (by_key("UNKNOWN-1"), by_key("UNKNOWN-2"));
    for letter in [one, two] {
        assert_eq!(letter["errorType"], "OrderNotFound");
        assert_eq!(letter["retryCount"], 3);
    }
    let first_of_two = two["firstFailureTimestamp"].as_str().unwrap();
    let last_of_one = one["lastFailureTimestamp"].as_str().unwrap();
    assert!(
        first_of_two < last_of_one,
        "UNKNOWN-2 waited for UNKNOWN-1: {first_of_two} vs {last_of_one}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_and_statuses_survive_a_restart_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("orders.db").display());
    let mut system = System::start_with(
        TestBroker::start_with(Storage::Memory),
        &[("ORDER_STORE_URL", url)],
    );
    system.wait_until_consuming().await;
    assert_eq!(system.create("ORD-KEEP", 2).await.status, 201);
    assert_eq!(system.update("ORD-KEEP", "shipped").await.status, 202);
    eventually("the order shipped", || async {
        let reply = system.order_details("ORD-KEEP").await;
        (reply.json["data"]["status"] == "shipped").then_some(())
    })
    .await;

    // A clean stop commits every offset: after it, only the store can know the order.
    assert!(system.order.terminate().success());
    system.start_order_shell();
    let reply = system.order_details("ORD-KEEP").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["data"]["status"], "shipped");
    assert_eq!(
        reply.json["data"]["items"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(
        get(&system.order.url("/api/stats")).await.json["totalOrders"],
        1
    );
    let health = get(&system.order.url("/health")).await.json;
    assert_eq!(health["store"]["kind"], "sqlite");
    assert_eq!(health["producer"]["state"], "ok");
}

#[tokio::test]
async fn a_database_from_a_newer_version_stops_order_shell_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.db");
    let url = ordering_store::StoreUrl::parse(&format!("sqlite://{}", path.display())).unwrap();
    drop(url.open().await.unwrap());
    // As a newer release would leave it.
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_order-shell"))
        .env("ORDER_STORE_URL", format!("sqlite://{}", path.display()))
        .env("API_PORT", "0")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ORDER_STORE_URL=sqlite://"), "{stderr}");
    assert!(stderr.contains("newer version"), "{stderr}");
}
