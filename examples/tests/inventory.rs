//! The newcomer's service as its users run it: the inventory example against a real broker.
//! 600 reservations over 20 SKUs of 30 units each, some asking for more than is left; the
//! service is killed (`kill -9`) mid-stream and started again. The stock then equals a model
//! that applies each SKU's reservations in order, every reservation is made once or
//! dead-lettered as `OutOfStock` (permanent); after the stock is replenished, one redrive
//! makes every refused reservation, and a second sends nothing (the durable ledger).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Killed, free_port, start};
use ordering_core::{DeadLetter, FailureClass, Sink};
use ordering_kafka::testing::{TestBroker, unique_topic};
use ordering_kafka::{DeadLetterCodec, Json, KafkaProducer, ProducerConfig, read_topic};
use serde::{Deserialize, Serialize};

const RESERVATIONS: usize = 600;
const SKUS: usize = 20;
const UNITS: i64 = 30;

/// The client's copy of the event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reservation {
    reservation_id: String,
    sku: String,
    quantity: u32,
}

/// Keyed by SKU: one SKU's reservations on one partition, in order.
impl ordering_kafka::Message for Reservation {
    fn key(&self) -> Option<&[u8]> {
        Some(self.sku.as_bytes())
    }
}

fn reservation(n: usize) -> Reservation {
    Reservation {
        reservation_id: format!("RES-{n:04}"),
        sku: format!("SKU-{:02}", n % SKUS),
        // 1 to 3 units: 60 units asked per SKU on average, 30 there.
        quantity: u32::try_from(n * 7 % 3 + 1).unwrap(),
    }
}

/// What the stock must be, and which reservations are refused, applying each SKU's
/// reservations in order.
fn model() -> (BTreeMap<String, i64>, BTreeSet<String>) {
    let mut stock: BTreeMap<String, i64> =
        (0..SKUS).map(|s| (format!("SKU-{s:02}"), UNITS)).collect();
    let mut refused = BTreeSet::new();
    for r in (0..RESERVATIONS).map(reservation) {
        let left = stock.get_mut(&r.sku).unwrap();
        if *left >= i64::from(r.quantity) {
            *left -= i64::from(r.quantity);
        } else {
            refused.insert(r.reservation_id);
        }
    }
    (stock, refused)
}

fn seed(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch("CREATE TABLE stock (sku TEXT PRIMARY KEY, units INTEGER NOT NULL)")
        .unwrap();
    for s in 0..SKUS {
        conn.execute(
            "INSERT INTO stock (sku, units) VALUES (?1, ?2)",
            rusqlite::params![format!("SKU-{s:02}"), UNITS],
        )
        .unwrap();
    }
}

fn stock(db: &Path) -> BTreeMap<String, i64> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut statement = conn.prepare("SELECT sku, units FROM stock").unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn reserved(db: &Path) -> BTreeSet<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut statement = conn
        .prepare("SELECT reservation_id FROM reservations")
        .unwrap();
    statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap_or_default()
}

async fn letters(broker: &TestBroker, dlq: &str) -> Vec<DeadLetter> {
    let codec = DeadLetterCodec::new().unwrap();
    read_topic(&broker.bootstrap(), dlq, codec, Duration::from_secs(10))
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| r.event.ok())
        .collect()
}

/// The reservation a letter holds.
fn refused_id(letter: &DeadLetter) -> String {
    let r: Reservation = serde_json::from_slice(&letter.original_value).unwrap();
    r.reservation_id
}

async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reservation_is_made_once_or_refused_across_a_kill_and_a_redrive() {
    let broker = TestBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inventory.db");
    seed(&db);
    let (topic, dlq) = (
        unique_topic("reservations"),
        unique_topic("reservations-dlq"),
    );
    let env = [
        ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
        ("INVENTORY_TOPIC", topic.clone()),
        ("INVENTORY_DLQ_TOPIC", dlq.clone()),
        ("INVENTORY_GROUP", unique_topic("inventory")),
        ("INVENTORY_DB", db.display().to_string()),
        ("KAFKA_SESSION_TIMEOUT_MS", "6000".into()),
        ("RUST_LOG", "warn".into()),
        ("API_PORT", free_port().to_string()),
    ];
    let health = format!("http://127.0.0.1:{}/health", env[7].1);
    let mut service = Killed(start("inventory", &env));
    eventually("the service healthy", async || {
        let reply = ordering_http::testing::try_call_with("GET", &health, None, &[]).await;
        reply.ok().filter(|r| r.status == 200).map(|r| r.json)
    })
    .await;

    let producer = KafkaProducer::new(&ProducerConfig::new(broker.bootstrap())).unwrap();
    let reservations = producer.sink(&topic, Json::<Reservation>::new());
    for n in 0..RESERVATIONS {
        reservations.publish(&reservation(n)).await.unwrap();
        if n == RESERVATIONS / 2 {
            // kill -9 mid-stream: nothing flushed, nothing committed on the way out.
            drop(service);
            service = Killed(start("inventory", &env));
        }
    }

    let (expected_stock, expected_refused) = model();
    let refused = eventually("every reservation made or refused", async || {
        let letters = letters(&broker, &dlq).await;
        let refused: BTreeSet<String> = letters.iter().map(refused_id).collect();
        (reserved(&db).len() + refused.len() == RESERVATIONS).then_some(letters)
    })
    .await;
    assert_eq!(stock(&db), expected_stock, "the stock is the model's");
    let ids: BTreeSet<String> = refused.iter().map(refused_id).collect();
    assert_eq!(ids, expected_refused);
    for letter in &refused {
        assert_eq!(letter.error_type, "OutOfStock", "{letter:?}");
        assert_eq!(letter.error_class, FailureClass::Permanent);
        assert_eq!(
            letter.original_key.as_deref().map(|k| k.len()),
            Some(6),
            "the SKU"
        );
    }
    let health_now = ordering_http::testing::get(&health).await;
    assert_eq!(
        health_now.json["checks"]["stock"], "ok",
        "{}",
        health_now.text
    );

    // Replenished: one redrive makes every refused reservation (a letter written twice
    // across the kill is sent once); a second sends nothing.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("UPDATE stock SET units = units + 1000", [])
        .unwrap();
    let redrive_env = [
        ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
        ("INVENTORY_TOPIC", topic.clone()),
        ("INVENTORY_DLQ_TOPIC", dlq.clone()),
        ("INVENTORY_DB", db.display().to_string()),
    ];
    let run = || {
        let output = std::process::Command::new(common::example("inventory_redrive"))
            .envs(redrive_env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let first = run();
    assert_eq!(
        first["republished"].as_u64(),
        Some(expected_refused.len() as u64),
        "{first}"
    );
    eventually("every refused reservation made", async || {
        (reserved(&db).len() == RESERVATIONS).then_some(())
    })
    .await;
    let second = run();
    assert_eq!(second["republished"], 0, "{second}");
    let asked: i64 = (0..RESERVATIONS)
        .map(|n| i64::from(reservation(n).quantity))
        .sum();
    let left: i64 = stock(&db).values().sum();
    assert_eq!(left, SKUS as i64 * (UNITS + 1000) - asked, "each made once");
}
