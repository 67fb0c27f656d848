//! The status-update flow of the spec on the in-memory source and sink: an order is created,
//! an update of it is applied, an update of an unknown order is retried and dead-lettered.
//!
//! `cargo run -p ordering-examples --example status_flow`

use std::sync::Arc;
use std::time::Duration;

use ordering_core::order::{
    MemoryStore, Order, OrderEvent, OrderEventHandler, OrderId, OrderItem, OrderStore, Status,
    StatusUpdate,
};
use ordering_core::testing::{MemorySink, MemorySource};
use ordering_core::{
    DeadLetter, Dispatcher, DispatcherConfig, Record, RecordMeta, RetryPolicy, TopicPartition,
    now_iso8601,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_target(false).init();

    let order = Order {
        order_id: OrderId::parse("ORD-TEST-001")?,
        customer_id: "CUST-0042".into(),
        order_date: now_iso8601(),
        items: vec![OrderItem {
            item_id: "ITEM-LAMP-007".into(),
            quantity: 2,
            price: 24.5,
        }],
        total_amount: 49.0,
        currency: "USD".into(),
        status: Status::parse("pending")?,
        status_reason: None,
    };
    let shipped = Status::parse("shipped")?;
    let update = |id: &str| -> Result<OrderEvent, Box<dyn std::error::Error>> {
        Ok(OrderEvent::StatusUpdated(StatusUpdate::new(
            &OrderId::parse(id)?,
            &shipped,
            now_iso8601(),
        )))
    };

    // What the broker would deliver: the order on one topic, two updates on another.
    let orders = TopicPartition::new("order-events", 0);
    let updates = TopicPartition::new("order-status-updates", 0);
    let records = vec![
        record(&orders, 0, OrderEvent::Created(order)),
        record(&updates, 0, update("ORD-TEST-001")?),
        record(&updates, 1, update("DOES-NOT-EXIST")?),
    ];

    let store = Arc::new(MemoryStore::new());
    let dead_letters = MemorySink::<DeadLetter>::new();
    let config = DispatcherConfig {
        // The spec's 1 s, 2 s, 4 s, scaled down to keep the example short.
        retry: RetryPolicy::new(3, Duration::from_millis(100), 2.0, Duration::from_secs(30))?,
        ..DispatcherConfig::default()
    };
    let source = MemorySource::from_records(records).with_group("order-service-group");
    let committed = source.observer();
    let dispatcher = Dispatcher::new(
        source,
        OrderEventHandler::new(store.clone()),
        dead_letters.clone(),
        config,
    );
    dispatcher.run(std::future::pending()).await?;

    let stored = store.get(&OrderId::parse("ORD-TEST-001")?).await?;
    println!(
        "ORD-TEST-001 is now {:?}",
        stored.map(|o| o.status.to_string())
    );
    for letter in dead_letters.messages() {
        println!(
            "dead letter: {} ({}), {} retries, {} attempts, from {}/{}@{}",
            letter.error_message,
            letter.error_class,
            letter.retry_count,
            letter.failed_attempts,
            letter.original_topic,
            letter.original_partition,
            letter.original_offset
        );
    }
    println!(
        "committed order-status-updates/0 up to {:?}",
        committed.committed(&updates)
    );
    Ok(())
}

fn record(tp: &TopicPartition, offset: i64, event: OrderEvent) -> Record<OrderEvent> {
    let meta = RecordMeta {
        key: Some(event.order_id().as_bytes().to_vec()),
        ..RecordMeta::new(tp.clone(), offset)
    };
    // The raw bytes would be the Avro payload; JSON stands in for it here.
    let payload = serde_json::to_vec(&event).unwrap_or_default();
    Record::new(meta, payload, Ok(event))
}
