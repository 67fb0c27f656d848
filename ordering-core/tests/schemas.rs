//! The schemas in `schemas/` are valid Avro and carry every field the contract names.

use apache_avro::Schema;

fn parse(name: &str) -> Schema {
    let path = format!("{}/../schemas/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Schema::parse_str(&text).unwrap_or_else(|e| panic!("{name} is not valid Avro: {e}"))
}

fn field_names(schema: &Schema) -> Vec<String> {
    match schema {
        Schema::Record(record) => record.fields.iter().map(|f| f.name.clone()).collect(),
        other => panic!("expected a record, got {other:?}"),
    }
}

fn full_name(schema: &Schema) -> String {
    match schema {
        Schema::Record(record) => record.name.fullname(None),
        other => panic!("expected a record, got {other:?}"),
    }
}

#[test]
fn status_update_schema_is_the_specs() {
    let schema = parse("status_update.avsc");
    assert_eq!(full_name(&schema), "com.ecommerce.order.OrderStatusUpdate");
    assert_eq!(
        field_names(&schema),
        [
            "orderId",
            "status",
            "updateTimestamp",
            "eventType",
            "reason"
        ]
    );
}

#[test]
fn order_schema_has_the_contract_fields() {
    let schema = parse("order.avsc");
    assert_eq!(full_name(&schema), "com.ecommerce.order.Order");
    assert_eq!(
        field_names(&schema),
        [
            "orderId",
            "customerId",
            "orderDate",
            "items",
            "totalAmount",
            "currency",
            "status"
        ]
    );
}

#[test]
fn dlq_schema_has_everything_needed_to_replay() {
    let schema = parse("dlq.avsc");
    assert_eq!(full_name(&schema), "com.ecommerce.dlq.DeadLetter");
    assert_eq!(
        field_names(&schema),
        [
            "originalTopic",
            "originalPartition",
            "originalOffset",
            "originalKey",
            "originalTimestamp",
            "originalValue",
            "originalMessage",
            "errorType",
            "errorClass",
            "errorMessage",
            "retryCount",
            "failedAttempts",
            "firstFailureTimestamp",
            "lastFailureTimestamp",
            "consumerGroup",
            "redriveCount",
            "reduced",
            "originalValueSize",
            "originalKeyBytes",
            "originalHeaders",
        ]
    );
}

/// Letters already in a DLQ were written with the first version: it must stay readable, so
/// the new fields must have defaults.
#[test]
fn dlq_schema_reads_letters_of_the_first_version() {
    let old = parse("history/dlq.v1.avsc");
    let new = parse("dlq.avsc");
    apache_avro::schema_compatibility::SchemaCompatibility::can_read(&old, &new)
        .unwrap_or_else(|e| panic!("dlq.avsc cannot read dlq.v1.avsc letters: {e}"));
}
