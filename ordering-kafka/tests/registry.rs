//! The Confluent Schema Registry framing, checked against Confluent's own Python serializer
//! and deserializer (`confluent_kafka`, installed by `scripts/test`) and a registry serving
//! Confluent's REST API (`testing::TestRegistry`).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use ordering_core::DecodeErrorKind;
use ordering_core::order::{OrderEvent, OrderId, Status, StatusUpdate};
use ordering_kafka::order::{AvroCodec, SchemaFamily};
use ordering_kafka::testing::{STATUS_UPDATE_V3, TestRegistry, confluent_python, status_update_v3};
use ordering_kafka::{
    BasicAuth, Codec, Registration, Registry, RegistryConfig, RegistryError, SchemaSource,
    SubjectStrategy,
};
use serde_json::{Value, json};

fn history(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas/history")
        .join(file)
}

fn serialize(url: &str, topic: &str, schema: &Path, record: &Value) -> Vec<u8> {
    confluent_python::serialize(url, topic, schema, record, None)
}

fn update(id: &str, reason: Option<&str>) -> StatusUpdate {
    StatusUpdate::new(
        &OrderId::parse(id).unwrap(),
        &Status::parse("shipped").unwrap(),
        "2026-12-05T10:00:00Z".into(),
    )
    .with_reason(reason.map(str::to_owned))
}

fn update_json(id: &str) -> Value {
    json!({
        "orderId": id, "status": "shipped", "updateTimestamp": "2026-12-05T10:00:00Z",
            "eventType": "STATUS_UPDATE", "reason": "late",
    })
}

fn client(url: String, registration: Registration) -> &'static Registry {
    let mut config = RegistryConfig::new(url);
    config.registration = registration;
    Registry::new(&config).unwrap()
}

/// Decodes `payload` as a consumer does: whatever it must fetch first, then the record.
async fn read(codec: &AvroCodec, payload: &[u8]) -> Result<OrderEvent, ordering_core::DecodeError> {
    if let Some(fetch) = Codec::<OrderEvent>::prepare(codec, payload) {
        fetch.await.unwrap();
    }
    codec.decode(payload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluents_serializer_and_ours_read_each_other() {
    let server = TestRegistry::start().await;
    let url = server.url();
    let registry = client(url.clone(), Registration::AutoRegister);
    let reader = AvroCodec::new().unwrap().reading_registry(registry);

    // Written by Python's AvroSerializer, registered by it under updates-value.
    let theirs = serialize(
        &url,
        "updates",
        &history("status_update.v2.avsc"),
        &update_json("ORD-PY"),
    );
    assert_eq!(theirs[0], 0, "the Confluent framing");
    assert!(
        Codec::<OrderEvent>::prepare(&reader, &theirs).is_some(),
        "an id not seen yet is fetched first"
    );
    let event = read(&reader, &theirs).await.unwrap();
    assert_eq!(
        event,
        OrderEvent::StatusUpdated(update("ORD-PY", Some("late")))
    );
    assert!(
        Codec::<OrderEvent>::prepare(&reader, &theirs).is_none(),
        "then kept"
    );

    // Ours, under the same subject: the same schema, so the same id; read by Python.
    let writer = AvroCodec::new()
        .unwrap()
        .write_registered(registry, SchemaFamily::StatusUpdate, "updates")
        .await
        .unwrap();
    let ours = writer.encode(&update("ORD-RS", None)).unwrap();
    assert_eq!(ours[..5], theirs[..5], "one schema, one id");
    let read_by_python = confluent_python::deserialize(&url, "updates", &ours);
    assert_eq!(read_by_python["orderId"], "ORD-RS");
    assert_eq!(read_by_python["status"], "shipped");
    assert_eq!(read_by_python["reason"], Value::Null);

    // An order, both ways, on its own topic.
    let order = json!({
        "orderId": "ORD-PY-2", "customerId": "CUST-0001", "orderDate": "2026-12-05T10:00:00Z",
        "items": [{"itemId": "ITEM-001", "quantity": 2, "price": 10.5}],
        "totalAmount": 21.0, "currency": "EUR", "status": "pending",
    });
    let theirs = serialize(&url, "orders", &history("order.v1.avsc"), &order);
    let OrderEvent::Created(created) = read(&reader, &theirs).await.unwrap() else {
        panic!("an order")
    };
    assert_eq!(created.order_id.as_str(), "ORD-PY-2");
    let writer = writer
        .write_registered(registry, SchemaFamily::Order, "orders")
        .await
        .unwrap();
    let read_by_python =
        confluent_python::deserialize(&url, "orders", &writer.encode(&created).unwrap());
    assert_eq!(read_by_python["totalAmount"], 21.0);

    // Single-object records on the same topic are read as ever.
    let plain = AvroCodec::new()
        .unwrap()
        .encode(&update("ORD-SO", None))
        .unwrap();
    assert_eq!(
        read(&reader, &plain).await.unwrap(),
        OrderEvent::StatusUpdated(update("ORD-SO", None))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_look_up_only_writer_needs_its_schema_registered_first() {
    let server = TestRegistry::start().await;
    let registry = client(server.url(), Registration::LookUpOnly);
    let error = AvroCodec::new()
        .unwrap()
        .write_registered(registry, SchemaFamily::Order, "orders")
        .await
        .unwrap_err();
    match &error {
        RegistryError::NotRegistered { subject, .. } => assert_eq!(subject, "orders-value"),
        other => panic!("{other}"),
    }
    assert!(!error.is_retryable());
    assert!(
        error.to_string().contains("SCHEMA_REGISTRY_AUTO_REGISTER"),
        "{error}"
    );

    let schema = std::fs::read_to_string(history("order.v1.avsc")).unwrap();
    let id = server.register("orders-value", &schema).unwrap();
    let codec = AvroCodec::new()
        .unwrap()
        .write_registered(registry, SchemaFamily::Order, "orders")
        .await
        .unwrap();
    let order: ordering_core::order::Order = serde_json::from_value(json!({
        "orderId": "ORD-1", "customerId": "CUST-0001", "orderDate": "2026-12-05T10:00:00Z",
        "items": [{"itemId": "ITEM-001", "quantity": 1, "price": 10.0}],
        "totalAmount": 10.0, "currency": "EUR", "status": "pending",
    }))
    .unwrap();
    let payload = codec.encode(&order).unwrap();
    assert_eq!(payload[1..5], id.to_be_bytes());

    // The other strategies name other subjects.
    assert_eq!(
        SubjectStrategy::RecordName.subject("orders", "com.ecommerce.order.Order"),
        "com.ecommerce.order.Order"
    );
    assert_eq!(
        SubjectStrategy::TopicRecordName.subject("orders", "com.ecommerce.order.Order"),
        "orders-com.ecommerce.order.Order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_through_the_registry_is_resolved_into_the_current_one() {
    let server = TestRegistry::start().await;
    let url = server.url();
    let registry = client(url.clone(), Registration::LookUpOnly);
    let reader = AvroCodec::new().unwrap().reading_registry(registry);
    let dir = tempfile::tempdir().unwrap();
    let v3 = dir.path().join("status_update.v3.avsc");
    std::fs::write(&v3, STATUS_UPDATE_V3).unwrap();

    // Version 2, then version 3 (a new optional field, which the registry's compatibility
    // check lets through), on one topic: a version this build does not embed is read through
    // the registry's schema.
    let old = serialize(
        &url,
        "updates",
        &history("status_update.v2.avsc"),
        &update_json("ORD-V2"),
    );
    let mut v3_record = update_json("ORD-V3");
    v3_record["channel"] = json!("phone");
    let new = serialize(&url, "updates", &v3, &v3_record);
    assert_ne!(old[1..5], new[1..5], "two versions, two ids");
    assert_eq!(
        read(&reader, &old).await.unwrap(),
        OrderEvent::StatusUpdated(update("ORD-V2", Some("late")))
    );
    assert_eq!(
        read(&reader, &new).await.unwrap(),
        OrderEvent::StatusUpdated(update("ORD-V3", Some("late"))),
        "the field it does not know is dropped"
    );
    // The same version 3 in single-object encoding is unknown to this build: the registry
    // is what makes it readable.
    let plain = status_update_v3("ORD-V3", "late");
    assert_eq!(
        Codec::<OrderEvent>::decode(&reader, &plain)
            .unwrap_err()
            .kind(),
        DecodeErrorKind::UnknownSchema
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_id_is_the_records_fault_and_a_registry_down_is_not() {
    let mut server = TestRegistry::start().await;
    let registry = client(server.url(), Registration::LookUpOnly);
    let reader = AvroCodec::new().unwrap().reading_registry(registry);
    // A status update framed with `id`, its datum as published version `version` writes it.
    let writes = |id: u32, version: u32| {
        let mut payload = vec![0];
        payload.extend_from_slice(&id.to_be_bytes());
        let codec = AvroCodec::new().unwrap();
        let codec = codec.pin(SchemaFamily::StatusUpdate, version).unwrap();
        let single = codec.encode(&update("ORD-ID", None)).unwrap();
        payload.extend_from_slice(&single[10..]);
        payload
    };
    let v1 = std::fs::read_to_string(history("status_update.v1.avsc")).unwrap();
    let v2 = std::fs::read_to_string(history("status_update.v2.avsc")).unwrap();

    // An id the registry does not have: it answered, so the record is at fault.
    let unknown = writes(42, 2);
    let error = read(&reader, &unknown).await.unwrap_err();
    assert_eq!(error.kind(), DecodeErrorKind::UnknownSchema, "{error}");
    assert!(registry.health().is_ok(), "the registry answered");
    // Registered since (copied from another registry with its id): read on the next try.
    server.import("updates-value", &v2, 42).unwrap();
    assert_eq!(
        read(&reader, &unknown).await.unwrap(),
        OrderEvent::StatusUpdated(update("ORD-ID", None))
    );

    // The registry down: the fetch fails (the record waits), and health says so.
    server.import("other-value", &v1, 43).unwrap();
    server.stop();
    let waiting = writes(43, 1);
    let fetch = Codec::<OrderEvent>::prepare(&reader, &waiting).expect("a fetch");
    assert!(fetch.await.is_err());
    let (_, why) = registry.health().unwrap_err();
    assert!(!why.is_empty());
    server.start_again().await;
    let fetch = Codec::<OrderEvent>::prepare(&reader, &waiting).expect("a fetch");
    fetch.await.unwrap();
    assert!(registry.health().is_ok());
    assert!(read(&reader, &waiting).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_and_a_bounded_cache() {
    let server = TestRegistry::with_user("API-KEY", "s3cr:et").await;
    let v2 = std::fs::read_to_string(history("status_update.v2.avsc")).unwrap();
    let id = server.register("updates-value", &v2).unwrap();

    // Without credentials: refused, which is not the record's fault.
    let anonymous = client(server.url(), Registration::LookUpOnly);
    assert!(anonymous.fetch(id).await.is_err());
    assert!(anonymous.writer(id).is_none());

    let mut config = RegistryConfig::new(server.url());
    config.basic_auth = Some("API-KEY:s3cr:et".parse::<BasicAuth>().unwrap());
    config.max_schemas = 2;
    assert!(!format!("{config:?}").contains("s3cr:et"), "never shown");
    let registry = Registry::new(&config).unwrap();
    registry.fetch(id).await.unwrap();
    assert!(registry.writer(id).is_some());

    // Python's client with the same user info.
    let record = json!({"orderId": "ORD-A", "status": "paid", "updateTimestamp": "t", "eventType": "STATUS_UPDATE"});
    let payload = confluent_python::serialize(
        &server.url(),
        "more",
        &history("status_update.v1.avsc"),
        &record,
        Some("API-KEY:s3cr:et"),
    );
    assert_eq!(payload[0], 0);

    // At most two schemas kept: the oldest is dropped, and fetched again when needed.
    let order = std::fs::read_to_string(history("order.v1.avsc")).unwrap();
    let v1 = std::fs::read_to_string(history("status_update.v1.avsc")).unwrap();
    let others = [
        server.register("orders-value", &order).unwrap(),
        server.register("more-value", &v1).unwrap(),
    ];
    for other in others {
        registry.fetch(other).await.unwrap();
    }
    assert!(registry.writer(id).is_none(), "dropped");
    assert!(others.iter().all(|o| registry.writer(*o).is_some()));
    registry.fetch(id).await.unwrap();
    assert!(registry.writer(id).is_some());
}
