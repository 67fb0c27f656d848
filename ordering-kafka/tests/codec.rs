//! The Avro codec, without a broker: round trips, the fingerprint against the Avro
//! specification, and payloads that must fail cleanly.

#![allow(clippy::unwrap_used)]

use apache_avro::Schema;
use apache_avro::types::Value;
use ordering_core::order::{Order, OrderEvent, OrderId, OrderItem, Status, StatusUpdate};
use ordering_core::{DeadLetter, DecodeErrorKind, FailureClass};
use ordering_kafka::order::{AvroCodec, STATUS_UPDATE_SCHEMA};
use ordering_kafka::{Codec, MAGIC};

mod common;
use common::crc64_avro;

fn order() -> Order {
    Order {
        order_id: OrderId::parse("ORD-123").unwrap(),
        customer_id: "CUST-0042".into(),
        order_date: "2026-01-30T12:00:00.000Z".into(),
        items: vec![
            OrderItem {
                item_id: "ITEM-LAMP-007".into(),
                quantity: 2,
                price: 24.5,
            },
            OrderItem {
                item_id: "ITEM-PEN-101".into(),
                quantity: 5,
                price: 1.99,
            },
        ],
        total_amount: 58.95,
        currency: "EUR".into(),
        status: Status::parse("pending").unwrap(),
        status_reason: None,
    }
}

fn update() -> StatusUpdate {
    StatusUpdate::new(
        &OrderId::parse("ORD-123").unwrap(),
        &Status::parse("shipped").unwrap(),
        "2026-01-30T12:00:00Z".into(),
    )
}

fn letter() -> DeadLetter {
    DeadLetter {
        original_topic: "order-status-updates".into(),
        original_partition: 2,
        original_offset: 41,
        original_incarnation: 1,
        original_key: Some(b"ORD-404".to_vec()),
        original_headers: Vec::new(),
        original_timestamp: None,
        original_value: vec![0xC3, 0x01, 0, 255, 7],
        original_message: Some(r#"{"orderId":"ORD-404"}"#.into()),
        error_type: "OrderNotFound".into(),
        error_class: FailureClass::Retryable,
        error_message: "Order ORD-404 not found".into(),
        retry_count: 3,
        failed_attempts: 4,
        first_failure_timestamp: "2026-01-30T12:00:00.000Z".into(),
        last_failure_timestamp: "2026-01-30T12:00:07.000Z".into(),
        consumer_group: "order-service-group".into(),
        redrive_count: 0,
        reduced_from: None,
    }
}

#[test]
fn the_fingerprint_is_crc64_avro_of_the_canonical_form() {
    // Parsing Canonical Form by hand, per the specification: full names, no docs or
    // defaults, attributes in the order name, type, fields.
    let canonical = concat!(
        r#"{"name":"com.ecommerce.order.OrderStatusUpdate","type":"record","fields":["#,
        r#"{"name":"orderId","type":"string"},{"name":"status","type":"string"},"#,
        r#"{"name":"updateTimestamp","type":"string"},{"name":"eventType","type":"string"},"#,
        r#"{"name":"reason","type":["null","string"]}]}"#
    );
    let schema = Schema::parse_str(STATUS_UPDATE_SCHEMA).unwrap();
    assert_eq!(schema.canonical_form(), canonical);

    let payload = AvroCodec::new().unwrap().encode(&update()).unwrap();
    assert_eq!(payload[..2], MAGIC);
    assert_eq!(
        payload[2..10],
        crc64_avro(canonical.as_bytes()).to_le_bytes()
    );
}

#[test]
fn the_test_crc_matches_the_published_avro_vectors() {
    // From the Avro project's schema test vectors (canonical form -> 64-bit fingerprint).
    assert_eq!(crc64_avro(br#""null""#) as i64, 7195948357588979594);
    assert_eq!(crc64_avro(br#""int""#) as i64, 8247732601305521295);
    assert_eq!(crc64_avro(br#""boolean""#) as i64, -6970731678124411036);
}

#[test]
fn every_message_type_round_trips() {
    let codec = AvroCodec::new().unwrap();
    let bytes = codec.encode(&order()).unwrap();
    assert_eq!(Codec::<Order>::decode(&codec, &bytes).unwrap(), order());
    let bytes = codec.encode(&update()).unwrap();
    assert_eq!(
        Codec::<StatusUpdate>::decode(&codec, &bytes).unwrap(),
        update()
    );
    let bytes = codec.encode(&letter()).unwrap();
    assert_eq!(
        Codec::<DeadLetter>::decode(&codec, &bytes).unwrap(),
        letter()
    );

    let mut no_key = letter();
    no_key.original_key = None;
    no_key.original_message = None;
    no_key.original_timestamp = Some(1_700_000_000_000);
    no_key.error_class = FailureClass::Poison;
    let bytes = codec.encode(&no_key).unwrap();
    assert_eq!(Codec::<DeadLetter>::decode(&codec, &bytes).unwrap(), no_key);
}

#[test]
fn redrive_counts_and_reduced_letters_round_trip() {
    let codec = AvroCodec::new().unwrap();
    let mut reduced = letter().reduced(2);
    reduced.redrive_count = 2;
    assert_eq!(reduced.reduced_from, Some(5));
    let bytes = codec.encode(&reduced).unwrap();
    assert_eq!(
        Codec::<DeadLetter>::decode(&codec, &bytes).unwrap(),
        reduced
    );
}

/// Letters already in a DLQ were written with the first `dlq.avsc`: they still decode, the
/// fields added since taking their defaults.
#[test]
fn letters_of_the_first_dlq_schema_still_decode() {
    let v1 = Schema::parse_str(include_str!("../../schemas/history/dlq.v1.avsc")).unwrap();
    let mut record = apache_avro::types::Record::new(&v1).unwrap();
    let l = letter();
    record.put("originalTopic", l.original_topic.as_str());
    record.put("originalPartition", l.original_partition);
    record.put("originalOffset", l.original_offset);
    record.put(
        "originalKey",
        Value::Union(1, Box::new(Value::String("ORD-404".into()))),
    );
    record.put("originalTimestamp", Value::Union(0, Box::new(Value::Null)));
    record.put("originalValue", Value::Bytes(l.original_value.clone()));
    record.put(
        "originalMessage",
        Value::Union(
            1,
            Box::new(Value::String(l.original_message.clone().unwrap())),
        ),
    );
    record.put("errorType", l.error_type.as_str());
    record.put("errorClass", "retryable");
    record.put("errorMessage", l.error_message.as_str());
    record.put("retryCount", 3);
    record.put("failedAttempts", 4);
    record.put("firstFailureTimestamp", l.first_failure_timestamp.as_str());
    record.put("lastFailureTimestamp", l.last_failure_timestamp.as_str());
    record.put("consumerGroup", l.consumer_group.as_str());
    let mut payload = MAGIC.to_vec();
    payload.extend_from_slice(&crc64_avro(v1.canonical_form().as_bytes()).to_le_bytes());
    apache_avro::writer::datum::GenericDatumWriter::builder(&v1)
        .build()
        .unwrap()
        .write_value(&mut payload, Value::from(record))
        .unwrap();

    let codec = AvroCodec::new().unwrap();
    assert_eq!(
        Codec::<DeadLetter>::decode(&codec, &payload).unwrap(),
        letter()
    );
}

#[test]
fn order_events_are_told_apart_by_fingerprint() {
    let codec = AvroCodec::new().unwrap();
    let created = codec.encode(&order()).unwrap();
    let updated = codec.encode(&update()).unwrap();
    assert_eq!(
        Codec::<OrderEvent>::decode(&codec, &created).unwrap(),
        OrderEvent::Created(order())
    );
    assert_eq!(
        Codec::<OrderEvent>::decode(&codec, &updated).unwrap(),
        OrderEvent::StatusUpdated(update())
    );
    // An order is not a status update.
    assert!(Codec::<StatusUpdate>::decode(&codec, &created).is_err());
}

#[test]
fn bad_payloads_are_decode_errors() {
    let codec = AvroCodec::new().unwrap();
    let good = codec.encode(&update()).unwrap();
    let decode = |bytes: &[u8]| {
        Codec::<OrderEvent>::decode(&codec, bytes)
            .unwrap_err()
            .to_string()
    };

    assert!(decode(b"").contains("too short"));
    assert!(decode(b"{\"orderId\": \"ORD-1\"}").contains("not Avro single-object"));
    let mut unknown = good.clone();
    unknown[2..10].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    assert!(decode(&unknown).contains("unknown schema fingerprint 0807060504030201"));
    let unknown = Codec::<OrderEvent>::decode(&codec, &unknown).unwrap_err();
    assert_eq!(unknown.kind(), DecodeErrorKind::UnknownSchema);
    assert_eq!(unknown.error_type(), "UnknownSchema");
    let truncated = decode(&good[..good.len() - 3]);
    assert!(truncated.contains("OrderStatusUpdate"), "{truncated}");
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(decode(&trailing).contains("trailing bytes"));
}

#[test]
fn a_blank_order_id_in_an_order_is_a_decode_error() {
    // Encode a raw Avro record with a blank id, bypassing the validated type.
    let schema = Schema::parse_str(ordering_kafka::order::ORDER_SCHEMA).unwrap();
    let codec = AvroCodec::new().unwrap();
    let mut value = apache_avro::to_value(order()).unwrap();
    if let apache_avro::types::Value::Record(fields) = &mut value {
        fields[0].1 = apache_avro::types::Value::String("  ".into());
    }
    let datum = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .unwrap()
        .write_value_to_vec(value)
        .unwrap();
    let payload = [&codec.encode(&order()).unwrap()[..10], &datum[..]].concat();
    let error = Codec::<Order>::decode(&codec, &payload).unwrap_err();
    assert!(error.to_string().contains("orderId"), "{error}");
    assert_eq!(error.error_type(), "DecodeError");
}

#[test]
fn garbage_never_panics() {
    let codec = AvroCodec::new().unwrap();
    let headers: Vec<Vec<u8>> = vec![
        vec![],
        codec.encode(&order()).unwrap()[..10].to_vec(),
        codec.encode(&update()).unwrap()[..10].to_vec(),
        codec.encode(&letter()).unwrap()[..10].to_vec(),
    ];
    // A small deterministic generator: the same garbage every run.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..20_000 {
        let len = (next() % 64) as usize;
        let mut payload = headers[i % headers.len()].clone();
        payload.extend((0..len).map(|_| next() as u8));
        let _ = Codec::<OrderEvent>::decode(&codec, &payload);
        let _ = Codec::<DeadLetter>::decode(&codec, &payload);
    }
}

/// A type of a service of its own, not the order flow's: registered with two versions of its
/// schema, the second adding a field with a default.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Reading {
    sensor: String,
    celsius: f64,
    #[serde(default)]
    unit: String,
}

const READING_V1: &str = r#"{"type": "record", "name": "Reading", "namespace": "com.example",
  "fields": [{"name": "sensor", "type": "string"}, {"name": "celsius", "type": "double"}]}"#;
const READING_V2: &str = r#"{"type": "record", "name": "Reading", "namespace": "com.example",
  "fields": [{"name": "sensor", "type": "string"}, {"name": "celsius", "type": "double"},
             {"name": "unit", "type": "string", "default": "C"}]}"#;

fn reading_versions(published: &'static [&'static str]) -> ordering_kafka::SchemaVersions {
    ordering_kafka::SchemaVersions {
        name: "reading",
        record: "com.example.Reading",
        published,
    }
}

#[test]
fn any_serde_type_registers_its_schema_versions() {
    use ordering_kafka::{Avro, Codec, SchemaError};
    let codec = Avro::<Reading>::new(reading_versions(&[READING_V1, READING_V2])).unwrap();
    assert_eq!(codec.writes(), 2);
    let reading = Reading {
        sensor: "s-1".into(),
        celsius: 21.5,
        unit: "K".into(),
    };
    let payload = codec.encode(&reading).unwrap();
    assert_eq!(payload[..2], ordering_kafka::MAGIC);
    assert_eq!(codec.decode(&payload).unwrap(), reading);

    // Written with version 1 (pinned, as during a rollout): read back with the default.
    let v1 = codec.pin(1).unwrap();
    assert_eq!(v1.writes(), 1);
    let old = v1.encode(&reading).unwrap();
    assert_ne!(old[2..10], payload[2..10], "another fingerprint");
    assert_eq!(codec.decode(&old).unwrap().unit, "C");

    // A reader that knows only version 1 cannot read version 2: an UnknownSchema, not a panic.
    let old_reader = Avro::<Reading>::new(reading_versions(&[READING_V1])).unwrap();
    let error = old_reader.decode(&payload).unwrap_err();
    assert_eq!(error.error_type(), "UnknownSchema");
    assert!(matches!(
        codec.pin(3),
        Err(SchemaError::NoSuchVersion {
            schema: "reading",
            version: 3,
            latest: 2
        })
    ));

    // ... until it is given the newer version at run time.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("reading.v2.avsc"), READING_V2).unwrap();
    let upgraded =
        Avro::<Reading>::with_schema_dir(reading_versions(&[READING_V1]), dir.path()).unwrap();
    assert_eq!(upgraded.decode(&payload).unwrap().sensor, "s-1");
}

/// A type whose serde name is not its schema's record: every decode would fail.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SensorReading {
    sensor: String,
    celsius: f64,
}

#[test]
fn a_type_and_schema_that_do_not_match_are_refused_at_construction_with_the_fix() {
    use ordering_kafka::{Avro, SchemaError, SchemaVersions};
    let error = Avro::<SensorReading>::new(reading_versions(&[READING_V1])).unwrap_err();
    assert!(matches!(error, SchemaError::TypeName { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("SensorReading") && message.contains(r#"#[serde(rename = "Reading")]"#),
        "{message}"
    );

    // `record` must name the schema's record.
    let wrong = SchemaVersions {
        name: "reading",
        record: "com.example.Sensor",
        published: &[READING_V1],
    };
    let error = Avro::<Reading>::new(wrong).unwrap_err();
    assert!(
        matches!(error, SchemaError::RecordMismatch { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("com.example.Reading"), "{error}");
}

#[test]
fn versions_read_at_run_time_are_owned_and_a_bad_datum_names_both_sides() {
    use ordering_kafka::{Avro, Codec, SchemaVersions};
    let texts = vec![READING_V1.to_owned(), READING_V2.to_owned()];
    let versions =
        SchemaVersions::from_owned("reading".into(), "com.example.Reading".into(), texts);
    let codec = Avro::<Reading>::new(versions).unwrap();
    let reading = Reading {
        sensor: "s-2".into(),
        celsius: -4.0,
        unit: "C".into(),
    };
    let payload = codec.encode(&reading).unwrap();
    assert_eq!(codec.decode(&payload).unwrap(), reading);

    // The right header, then a string length past the end: the error says which schema wrote
    // it and which Rust type read it.
    let mut bad = payload[..10].to_vec();
    bad.extend_from_slice(&[0x7E, b'x']);
    let error = codec.decode(&bad).unwrap_err().to_string();
    assert!(
        error.contains("writer: the current com.example.Reading schema")
            && error.contains("reader: the Rust type"),
        "{error}"
    );
}
