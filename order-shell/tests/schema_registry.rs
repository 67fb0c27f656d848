//! The Confluent Schema Registry framing with the real processes: both shells beside
//! Confluent's own Python serializer and deserializer (`confluent_kafka`), against a registry
//! serving Confluent's REST API (`TestRegistry`); a registry down holds records without a
//! dead letter; a record of an id the registry lacks is dead-lettered and redriven once the
//! schema is registered.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{System, eventually};
use ordering_core::order::OrderEvent;
use ordering_http::testing::get;
use ordering_kafka::order::{AvroCodec, SchemaFamily};
use ordering_kafka::testing::{
    STATUS_UPDATE_V3, Storage, TestBroker, TestRegistry, confluent_python,
};
use ordering_kafka::{Codec, KafkaProducer, ProducerConfig, read_topic};
use serde_json::{Value, json};

fn history(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas/history")
        .join(file)
}

fn serialize(url: &str, topic: &str, schema: &Path, record: &Value) -> Vec<u8> {
    confluent_python::serialize(url, topic, schema, record, None)
}

async fn publish(system: &System, topic: usize, key: &str, payload: &[u8]) {
    let producer = KafkaProducer::new(&ProducerConfig::new(system.broker.bootstrap())).unwrap();
    producer
        .send(&system.topics[topic], Some(key.as_bytes()), payload, &[])
        .await
        .unwrap();
}

async fn status_becomes(system: &System, id: &str, status: &str) -> Value {
    eventually(&format!("{id} {status}"), || async {
        let reply = system.order_details(id).await;
        (reply.status == 200 && reply.json["data"]["status"] == status)
            .then(|| reply.json["data"].clone())
    })
    .await
}

fn update(id: &str, status: &str) -> Value {
    json!({
        "orderId": id, "status": status, "updateTimestamp": "2026-12-05T10:00:00Z",
        "eventType": "STATUS_UPDATE", "reason": null,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_flow_interoperates_with_confluents_avro_clients() {
    let registry = TestRegistry::start().await;
    let url = registry.url();
    let system = System::start_with(
        TestBroker::start_with(Storage::Memory),
        &[
            ("ORDER_STORE_URL", "memory://".into()),
            ("SCHEMA_REGISTRY_URL", url.clone()),
            ("AVRO_WIRE_FORMAT", "confluent".into()),
            ("SCHEMA_REGISTRY_AUTO_REGISTER", "true".into()),
        ],
    );
    system.wait_until_consuming().await;
    let health = get(&system.order.url("/health")).await.json;
    assert_eq!(health["schemaRegistry"]["state"], "ok", "{health}");

    // cart-shell writes the registry's framing; order-shell reads it.
    assert_eq!(system.create("ORD-CS", 2).await.status, 201);
    status_becomes(&system, "ORD-CS", "pending").await;
    assert_eq!(system.update("ORD-CS", "shipped").await.status, 202);
    status_becomes(&system, "ORD-CS", "shipped").await;

    // Confluent's deserializer reads what cart-shell wrote.
    let records = read_topic::<OrderEvent, _>(
        system.broker.bootstrap(),
        &system.topics[1],
        AvroCodec::new().unwrap(),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let written = &records.last().unwrap().payload;
    assert_eq!(written[0], 0, "the Confluent framing");
    let read = confluent_python::deserialize(&url, &system.topics[1], written);
    assert_eq!(read["orderId"], "ORD-CS");
    assert_eq!(read["status"], "shipped");

    // Confluent's serializer writes an order and its update; order-shell applies them.
    let order = json!({
        "orderId": "ORD-PY", "customerId": "CUST-0001", "orderDate": "2026-12-05T10:00:00Z",
        "items": [{"itemId": "ITEM-PY-001", "quantity": 2, "price": 10.5}],
        "totalAmount": 21.0, "currency": "EUR", "status": "pending",
    });
    let payload = serialize(&url, &system.topics[0], &history("order.v1.avsc"), &order);
    publish(&system, 0, "ORD-PY", &payload).await;
    assert_eq!(
        status_becomes(&system, "ORD-PY", "pending").await["totalAmount"],
        21.0
    );
    let payload = serialize(
        &url,
        &system.topics[1],
        &history("status_update.v2.avsc"),
        &update("ORD-PY", "paid"),
    );
    publish(&system, 1, "ORD-PY", &payload).await;
    status_becomes(&system, "ORD-PY", "paid").await;

    // A single-object record on the same topic, as before a rolling move: applied too.
    let single = Codec::<ordering_core::order::StatusUpdate>::encode(
        &AvroCodec::new().unwrap(),
        &ordering_core::order::StatusUpdate::new(
            &ordering_core::order::OrderId::parse("ORD-PY").unwrap(),
            &ordering_core::order::Status::parse("delivered").unwrap(),
            "2026-12-05T10:05:00Z".into(),
        ),
    )
    .unwrap();
    publish(&system, 1, "ORD-PY", &single).await;
    status_becomes(&system, "ORD-PY", "delivered").await;
    assert!(system.dead_letters().await.is_empty());
    assert!(registry.requests() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_down_holds_records_and_an_unknown_id_is_redriven_once_registered() {
    let mut registry = TestRegistry::start().await;
    let url = registry.url();
    let system = System::start_with(
        TestBroker::start_with(Storage::Memory),
        &[
            ("ORDER_STORE_URL", "memory://".into()),
            ("SCHEMA_REGISTRY_URL", url.clone()),
        ],
    );
    system.wait_until_consuming().await;
    assert_eq!(system.create("ORD-W", 1).await.status, 201);
    status_becomes(&system, "ORD-W", "pending").await;

    // A new version (3), registered by its writer; order-shell has never fetched it.
    let dir = tempfile::tempdir().unwrap();
    let v3 = dir.path().join("status_update.v3.avsc");
    std::fs::write(&v3, STATUS_UPDATE_V3).unwrap();
    let mut record = update("ORD-W", "shipped");
    record["channel"] = json!("phone");
    let payload = serialize(&url, &system.topics[1], &v3, &record);

    // The registry goes down before order-shell reads the record: it waits, /health says
    // why, and nothing is dead-lettered.
    registry.stop();
    publish(&system, 1, "ORD-W", &payload).await;
    let health = eventually("/health red for the registry", || async {
        let reply = common::operator_get(&system.order.url("/health")).await;
        (reply.status == 503 && reply.json["schemaRegistry"]["state"] == "unavailable")
            .then_some(reply.json)
    })
    .await;
    assert!(health["schemaRegistry"]["error"].is_string(), "{health}");
    let public = get(&system.order.url("/health")).await.json;
    assert_eq!(public["schemaRegistry"]["state"], "unavailable");
    assert!(
        public["schemaRegistry"]["error"].is_null(),
        "its address, for the operator only"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        system.order_details("ORD-W").await.json["data"]["status"],
        "pending"
    );
    assert!(system.dead_letters().await.is_empty(), "the world's fault");

    // Back: the record is applied, once.
    registry.start_again().await;
    status_becomes(&system, "ORD-W", "shipped").await;
    system.wait_until_consuming().await;

    // An id the registry does not have: the record's fault, dead-lettered as UnknownSchema.
    let mut unknown = vec![0];
    unknown.extend_from_slice(&777u32.to_be_bytes());
    let datum = AvroCodec::new()
        .unwrap()
        .encode(&ordering_core::order::StatusUpdate::new(
            &ordering_core::order::OrderId::parse("ORD-W").unwrap(),
            &ordering_core::order::Status::parse("delivered").unwrap(),
            "2026-12-05T10:05:00Z".into(),
        ))
        .unwrap();
    unknown.extend_from_slice(&datum[10..]);
    publish(&system, 1, "ORD-W", &unknown).await;
    let letters = eventually("the unknown id dead-lettered", || async {
        let letters = system.dead_letters().await;
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["errorType"], "UnknownSchema", "{}", letters[0]);

    // Registered with that id (copied from the registry its writer used), then redriven.
    let v2 = std::fs::read_to_string(history("status_update.v2.avsc")).unwrap();
    let family = SchemaFamily::StatusUpdate;
    assert_eq!(family.file_stem(), "status_update");
    registry
        .import(&format!("{}-value", system.topics[1]), &v2, 777)
        .unwrap_or_else(|e| panic!("{e}"));
    let reply = common::operator_post(
        &system.order.url("/api/dlq/redrive"),
        &json!({"errorType": "UnknownSchema"}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    status_becomes(&system, "ORD-W", "delivered").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_over_https_is_trusted_through_its_ca_file_only() {
    let pki = ordering_http::testing::Pki::new();
    let registry = TestRegistry::with_tls(&pki.cert_pem, &pki.key_pem).await;
    assert!(registry.url().starts_with("https://"));
    let subject = "over-tls-value";
    let v2 = std::fs::read_to_string(history("status_update.v2.avsc")).unwrap();
    let id = registry.register(subject, &v2).unwrap();

    // The client: trusted through the CA file given; refused with another CA (the world's
    // fault: the record would wait, never a dead letter).
    let client = |ca: &str| {
        let mut config = ordering_kafka::RegistryConfig::new(registry.url());
        config.ca_file = Some(pki.path(ca));
        ordering_kafka::Registry::new(&config).unwrap()
    };
    client("ca.pem").fetch_schema(id).await.unwrap();
    let refused = client("rogue-ca.pem").fetch_schema(id).await.unwrap_err();
    assert!(refused.is_retryable(), "{refused}");

    // order-shell with the same settings applies a framed record of that schema.
    let system = System::start_with(
        TestBroker::start_with(Storage::Memory),
        &[
            ("ORDER_STORE_URL", "memory://".into()),
            ("SCHEMA_REGISTRY_URL", registry.url()),
            ("SCHEMA_REGISTRY_SSL_CA_LOCATION", pki.file("ca.pem")),
        ],
    );
    system.wait_until_consuming().await;
    assert_eq!(system.create("ORD-TLS", 1).await.status, 201);
    status_becomes(&system, "ORD-TLS", "pending").await;
    let single = AvroCodec::new()
        .unwrap()
        .encode(&ordering_core::order::StatusUpdate::new(
            &ordering_core::order::OrderId::parse("ORD-TLS").unwrap(),
            &ordering_core::order::Status::parse("shipped").unwrap(),
            "2026-12-05T10:05:00Z".into(),
        ))
        .unwrap();
    let mut framed = vec![0];
    framed.extend_from_slice(&id.to_be_bytes());
    framed.extend_from_slice(&single[10..]);
    publish(&system, 1, "ORD-TLS", &framed).await;
    status_becomes(&system, "ORD-TLS", "shipped").await;
    assert!(system.dead_letters().await.is_empty());
}
