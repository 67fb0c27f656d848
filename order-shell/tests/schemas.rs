//! Schema evolution with the real processes: records of the first versions (written by the
//! project and by fastavro, an independent Avro implementation) still apply; a writer pinned
//! to version 1 is read by the current reader; a record of a version order-shell does not know
//! is dead-lettered as `UnknownSchema` and applied by a redrive once order-shell knows it.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{System, eventually};
use ordering_http::testing::{ShellProcess, send_json};
use ordering_kafka::testing::{STATUS_UPDATE_V3, Storage, TestBroker, status_update_v3};
use ordering_kafka::{KafkaProducer, ProducerConfig};
use serde_json::{Value as Json, json};

fn history(file: &str) -> String {
    format!("{}/../schemas/history/{file}", env!("CARGO_MANIFEST_DIR"))
}

/// `record` in single-object encoding, written by fastavro (Python).
fn fastavro(schema_file: &str, record: &Json) -> Vec<u8> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fastavro/single_object.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg(history(schema_file))
        .arg(record.to_string())
        .output()
        .expect("python3 runs (scripts/test installs fastavro)");
    assert!(
        output.status.success(),
        "fastavro failed (scripts/test installs it: pip install fastavro): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let hex = String::from_utf8_lossy(&output.stdout);
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex from the script"))
        .collect()
}

async fn publish(system: &System, topic: usize, key: &str, payload: &[u8]) {
    let producer = KafkaProducer::new(&ProducerConfig::new(system.broker.bootstrap())).unwrap();
    producer
        .send(&system.topics[topic], Some(key.as_bytes()), payload, &[])
        .await
        .unwrap();
}

async fn status_of(system: &System, id: &str) -> Json {
    eventually("the order", || async {
        let reply = system.order_details(id).await;
        (reply.status == 200).then_some(reply.json["data"].clone())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_version_records_written_by_fastavro_still_apply() {
    let system = System::start(Storage::Memory);
    system.wait_until_consuming().await;
    let order = json!({
        "orderId": "ORD-PY-1", "customerId": "CUST-0001", "orderDate": "2026-11-25T10:00:00Z",
        "items": [{"itemId": "ITEM-PY-001", "quantity": 2, "price": 10.5}],
        "totalAmount": 21.0, "currency": "EUR", "status": "pending",
    });
    publish(&system, 0, "ORD-PY-1", &fastavro("order.v1.avsc", &order)).await;
    assert_eq!(status_of(&system, "ORD-PY-1").await["totalAmount"], 21.0);
    let update = json!({
        "orderId": "ORD-PY-1", "status": "shipped",
        "updateTimestamp": "2026-11-25T10:01:00Z", "eventType": "STATUS_UPDATE",
    });
    publish(
        &system,
        1,
        "ORD-PY-1",
        &fastavro("status_update.v1.avsc", &update),
    )
    .await;
    let order = eventually("the v1 update applied", || async {
        let data = status_of(&system, "ORD-PY-1").await;
        (data["status"] == "shipped").then_some(data)
    })
    .await;
    assert_eq!(order["statusReason"], Json::Null, "version 1 has no reason");

    // The current version carries a reason from the client to order-details.
    assert_eq!(system.create("ORD-PY-2", 1).await.status, 201);
    status_of(&system, "ORD-PY-2").await;
    let reply = send_json(
        "PUT",
        &system.cart.url("/api/update-order"),
        &json!({"orderId": "ORD-PY-2", "status": "cancelled", "reason": " customer asked "}),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    assert_eq!(reply.json["data"]["reason"], "customer asked");
    let order = eventually("the reason applied", || async {
        let data = status_of(&system, "ORD-PY-2").await;
        (data["status"] == "cancelled").then_some(data)
    })
    .await;
    assert_eq!(order["statusReason"], "customer asked");
    let too_long = json!({"orderId": "ORD-PY-2", "status": "x", "reason": "r".repeat(300)});
    let reply = send_json("PUT", &system.cart.url("/api/update-order"), &too_long).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert!(reply.text.contains("reason"), "{}", reply.text);
    assert!(system.dead_letters().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_shell_pinned_to_version_1_is_read_by_the_current_order_shell() {
    let mut system = System::start(Storage::Memory);
    system.wait_until_consuming().await;
    // cart-shell first, pinned to what every reader knows; then the same with a bad pin.
    let mut env = system.env.clone();
    env.push(("AVRO_STATUS_UPDATE_VERSION", "1".into()));
    system.cart = ShellProcess::start(&cart_binary(), &env);
    assert_eq!(system.create("ORD-PIN", 1).await.status, 201);
    status_of(&system, "ORD-PIN").await;
    let reply = send_json(
        "PUT",
        &system.cart.url("/api/update-order"),
        &json!({"orderId": "ORD-PIN", "status": "shipped", "reason": "dropped by v1"}),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let order = eventually("the pinned update applied", || async {
        let data = status_of(&system, "ORD-PIN").await;
        (data["status"] == "shipped").then_some(data)
    })
    .await;
    assert_eq!(
        order["statusReason"],
        Json::Null,
        "version 1 cannot carry it"
    );

    let bad = Command::new(cart_binary())
        .env("AVRO_STATUS_UPDATE_VERSION", "9")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("invalid AVRO_STATUS_UPDATE_VERSION=\"9\""),
        "{stderr}"
    );
    assert!(stderr.contains("no version 9"), "{stderr}");
}

fn cart_binary() -> std::path::PathBuf {
    Path::new(env!("CARGO_BIN_EXE_order-shell")).with_file_name("cart-shell")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_version_is_dead_lettered_then_redriven_once_order_shell_knows_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("orders.db").display());
    let mut system = System::start_with(
        TestBroker::start_with(Storage::Memory),
        &[("ORDER_STORE_URL", store)],
    );
    system.wait_until_consuming().await;
    assert_eq!(system.create("ORD-V3", 1).await.status, 201);
    status_of(&system, "ORD-V3").await;

    publish(&system, 1, "ORD-V3", &status_update_v3("ORD-V3", "late")).await;
    let letter = eventually("the UnknownSchema letter", || async {
        system.dead_letters().await.into_iter().next()
    })
    .await;
    assert_eq!(letter["errorType"], "UnknownSchema", "{letter}");
    assert_eq!(letter["errorClass"], "poison");

    // The upgrade: order-shell restarted knowing version 3.
    let schemas = tempfile::tempdir().unwrap();
    std::fs::write(
        schemas.path().join("status_update.v3.avsc"),
        STATUS_UPDATE_V3,
    )
    .unwrap();
    system
        .env
        .push(("AVRO_SCHEMA_DIR", schemas.path().display().to_string()));
    system.kill_order_shell();
    system.start_order_shell();
    system.wait_until_consuming().await;

    let reply = common::operator_post(
        &system.order.url("/api/dlq/redrive"),
        &json!({"errorType": "UnknownSchema"}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["redrive"]["republished"], 1, "{}", reply.text);
    let order = eventually("the v3 update applied", || async {
        let data = status_of(&system, "ORD-V3").await;
        (data["status"] == "shipped").then_some(data)
    })
    .await;
    assert_eq!(order["statusReason"], "late");
}
