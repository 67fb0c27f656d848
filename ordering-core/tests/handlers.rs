//! The order-flow handlers against a mocked store: what they ask of it and how they classify.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use async_trait::async_trait;
use mockall::{mock, predicate::eq};
use ordering_core::order::{
    CreateWrite, MemoryStore, Order, OrderCreatedHandler, OrderError, OrderEvent,
    OrderEventHandler, OrderId, OrderItem, OrderPositions, OrderRedriveGuard, OrderStore, Status,
    StatusChange, StatusUpdate, StatusUpdateHandler, StatusWrite,
};
use ordering_core::{
    Classify, DeadLetter, DecodeError, ErrorClass, FailureClass, Handler, Header, LetterId,
    Position, RecordMeta, RedriveGuard, StoreError, TopicPartition, Written,
};

mock! {
    Store {}
    #[async_trait]
    impl OrderStore for Store {
        async fn get(&self, id: &OrderId) -> Result<Option<Order>, StoreError>;
        async fn create(&self, order: &Order, at: Position) -> Result<CreateWrite, StoreError>;
        async fn update_status(&self, id: &OrderId, change: StatusChange) -> Result<StatusWrite, StoreError>;
        async fn positions(&self, id: &OrderId) -> Result<Option<OrderPositions>, StoreError>;
        async fn ids(&self, after: Option<OrderId>, limit: usize) -> Result<Vec<OrderId>, StoreError>;
        async fn count(&self) -> Result<u64, StoreError>;
        async fn check_writable(&self) -> Result<(), StoreError>;
    }
}

fn meta() -> RecordMeta {
    RecordMeta::new(TopicPartition::new("order-status-updates", 2), 17)
}

fn id(s: &str) -> OrderId {
    OrderId::parse(s).unwrap()
}

fn status(s: &str) -> Status {
    Status::parse(s).unwrap()
}

fn update(order_id: &str, new_status: &str) -> StatusUpdate {
    StatusUpdate {
        order_id: order_id.into(),
        status: new_status.into(),
        update_timestamp: "2026-01-30T12:00:00Z".into(),
        event_type: "STATUS_UPDATE".into(),
        reason: None,
    }
}

fn order(order_id: &str) -> Order {
    Order {
        order_id: id(order_id),
        customer_id: "CUST-0042".into(),
        order_date: "2026-01-30T12:00:00Z".into(),
        items: vec![OrderItem {
            item_id: "ITEM-PEN-001".into(),
            quantity: 2,
            price: 1.25,
        }],
        total_amount: 2.5,
        currency: "EUR".into(),
        status: status("pending"),
        status_reason: None,
    }
}

#[tokio::test]
async fn a_status_update_of_an_existing_order_is_applied() {
    let mut store = MockStore::new();
    store
        .expect_update_status()
        .with(
            eq(id("ORD-1")),
            eq(StatusChange::new(
                status("shipped"),
                Position::new("order-status-updates", 2, 17),
            )
            .with_event_time("2026-01-30T12:00:00Z")),
        )
        .times(1)
        .returning(|_, _| Ok(StatusWrite::Written(Written::Applied)));
    let handler = StatusUpdateHandler::new(Arc::new(store));
    handler
        .handle(&update(" ORD-1 ", " shipped "), &meta())
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unknown_order_is_a_retryable_order_not_found() {
    let mut store = MockStore::new();
    store
        .expect_update_status()
        .times(1)
        .returning(|_, _| Ok(StatusWrite::NotFound));
    let handler = StatusUpdateHandler::new(Arc::new(store));
    let error = handler
        .handle(&update("DOES-NOT-EXIST", "shipped"), &meta())
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "Order DOES-NOT-EXIST not found");
    assert_eq!(error.class(), ErrorClass::Retryable);
    assert_eq!(error.kind(), "OrderNotFound");
}

#[tokio::test]
async fn a_blank_status_is_permanent_and_never_touches_the_store() {
    let store = MockStore::new(); // any call would fail the test
    let handler = StatusUpdateHandler::new(Arc::new(store));
    let error = handler
        .handle(&update("ORD-1", "   "), &meta())
        .await
        .unwrap_err();
    assert!(matches!(error, OrderError::InvalidStatus(_)));
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert_eq!(error.kind(), "InvalidStatus");

    let error = handler
        .handle(&update("", "shipped"), &meta())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "InvalidOrderId");
    assert_eq!(error.class(), ErrorClass::Permanent);
}

#[tokio::test]
async fn a_store_outage_is_unavailable_not_the_records_fault() {
    let mut store = MockStore::new();
    store
        .expect_update_status()
        .returning(|_, _| Err(StoreError::unavailable("connection reset")));
    let handler = StatusUpdateHandler::new(Arc::new(store));
    let error = handler
        .handle(&update("ORD-1", "shipped"), &meta())
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Unavailable);
    assert_eq!(error.kind(), "StoreUnavailable");
}

#[tokio::test]
async fn a_write_the_store_refuses_is_permanent() {
    let mut store = MockStore::new();
    store
        .expect_create()
        .returning(|_, _| Err(StoreError::rejected("value too long")));
    let handler = OrderCreatedHandler::new(Arc::new(store));
    let error = handler.handle(&order("ORD-1"), &meta()).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert_eq!(error.kind(), "StoreRejected");
}

#[tokio::test]
async fn a_redelivered_update_is_success_without_a_change() {
    let mut store = MockStore::new();
    store
        .expect_update_status()
        .times(1)
        .returning(|_, _| Ok(StatusWrite::Written(Written::AlreadyApplied)));
    let handler = StatusUpdateHandler::new(Arc::new(store));
    handler
        .handle(&update("ORD-1", "shipped"), &meta())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_created_order_is_stored() {
    let mut store = MockStore::new();
    store
        .expect_create()
        .withf(|order_, at| {
            *order_ == order("ORD-9") && *at == Position::new("order-status-updates", 2, 17)
        })
        .times(1)
        .returning(|_, _| Ok(CreateWrite::Written(Written::Applied)));
    let handler = OrderCreatedHandler::new(Arc::new(store));
    handler.handle(&order("ORD-9"), &meta()).await.unwrap();
}

#[tokio::test]
async fn an_order_breaking_the_rules_is_permanent_and_not_stored() {
    let store = MockStore::new();
    let handler = OrderCreatedHandler::new(Arc::new(store));
    let mut bad = order("ORD-9");
    bad.total_amount = 99.0;
    let error = handler.handle(&bad, &meta()).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert_eq!(error.kind(), "InvalidOrder");
}

#[tokio::test]
async fn the_event_handler_routes_each_event_to_its_handler() {
    let mut store = MockStore::new();
    store
        .expect_create()
        .times(1)
        .returning(|_, _| Ok(CreateWrite::Written(Written::Applied)));
    store
        .expect_update_status()
        .times(1)
        .returning(|_, _| Ok(StatusWrite::Written(Written::Applied)));
    let handler = OrderEventHandler::new(Arc::new(store));
    handler
        .handle(&OrderEvent::Created(order("ORD-1")), &meta())
        .await
        .unwrap();
    handler
        .handle(
            &OrderEvent::StatusUpdated(update("ORD-1", "shipped")),
            &meta(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_different_order_under_an_existing_id_is_a_permanent_duplicate() {
    let mut store = MockStore::new();
    store
        .expect_create()
        .times(1)
        .returning(|_, _| Ok(CreateWrite::Duplicate));
    let handler = OrderCreatedHandler::new(Arc::new(store));
    let error = handler.handle(&order("ORD-9"), &meta()).await.unwrap_err();
    assert!(matches!(error, OrderError::DuplicateOrder(_)), "{error}");
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert_eq!(error.kind(), "DuplicateOrder");
}

/// The headers a redrive adds to a copy of the record at `origin_offset` of partition 2.
fn redriven_meta(origin_offset: i64, offset: i64) -> RecordMeta {
    let letter = letter("order-status-updates", origin_offset);
    let mut meta = RecordMeta::new(TopicPartition::new("order-status-updates", 2), offset);
    meta.headers = letter.redrive_headers(&LetterId {
        topic: "dlq".into(),
        partition: 0,
        offset: 3,
    });
    meta
}

/// A letter of the record at `offset` of `topic`'s partition 2; its value is `ORDER` or
/// `UPDATE` (see [`decode`]).
fn letter(topic: &str, offset: i64) -> DeadLetter {
    letter_of(topic, offset, UPDATE)
}

const ORDER: &[u8] = b"order ORD-1";
const UPDATE: &[u8] = b"update ORD-1";

/// The guard's view of a letter's record: a stand-in for the Avro codec.
fn decode(payload: &[u8]) -> Result<OrderEvent, DecodeError> {
    match payload {
        ORDER => Ok(OrderEvent::Created(order("ORD-1"))),
        UPDATE => Ok(OrderEvent::StatusUpdated(update("ORD-1", "shipped"))),
        _ => Err(DecodeError::new("not an order event")),
    }
}

fn letter_of(topic: &str, offset: i64, value: &[u8]) -> DeadLetter {
    DeadLetter {
        original_topic: topic.into(),
        original_partition: 2,
        original_offset: offset,
        original_incarnation: 1,
        original_key: Some(b"ORD-1".to_vec()),
        original_headers: vec![Header {
            name: "x-app".into(),
            value: Some(vec![1, 2]),
        }],
        original_timestamp: None,
        original_value: value.to_vec(),
        original_message: None,
        error_type: "OrderNotFound".into(),
        error_class: FailureClass::Retryable,
        error_message: String::new(),
        retry_count: 3,
        failed_attempts: 4,
        first_failure_timestamp: "2026-01-30T12:00:00.000Z".into(),
        last_failure_timestamp: "2026-01-30T12:00:00.000Z".into(),
        consumer_group: "g".into(),
        redrive_count: 0,
        reduced_from: None,
    }
}

#[tokio::test]
async fn a_redriven_update_is_ordered_by_its_origin_and_never_moves_a_status_back() {
    let store = Arc::new(MemoryStore::new());
    let handler = OrderEventHandler::new(store.clone());
    let guard = OrderRedriveGuard::new(store.clone(), |payload: Vec<u8>| {
        std::future::ready(decode(&payload))
    });
    let created = RecordMeta::new(TopicPartition::new("order-events", 2), 0);
    handler
        .handle(&OrderEvent::Created(order("ORD-1")), &created)
        .await
        .unwrap();
    // `shipped` at 5 had failed (the order was unknown then); `delivered` at 9 was applied.
    let at = |offset| RecordMeta::new(TopicPartition::new("order-status-updates", 2), offset);
    handler
        .handle(
            &OrderEvent::StatusUpdated(update("ORD-1", "delivered")),
            &at(9),
        )
        .await
        .unwrap();
    assert!(
        guard
            .superseded(&letter("order-status-updates", 5))
            .await
            .unwrap()
    );
    assert!(
        !guard
            .superseded(&letter("order-status-updates", 12))
            .await
            .unwrap()
    );
    // The topic created again: a letter of its second incarnation at offset 2 is newer than
    // `delivered` at 9 of the first, and so is its redriven copy.
    let mut renewed = letter("order-status-updates", 2);
    renewed.original_incarnation = 2;
    assert!(!guard.superseded(&renewed).await.unwrap());
    assert_eq!(renewed.origin().incarnation, 2);
    // The redriven copy sits at 40, above 9, but carries its origin, 5: not applied.
    let copy = redriven_meta(5, 40);
    assert_eq!(copy.position(), Position::new("order-status-updates", 2, 5));
    handler
        .handle(
            &OrderEvent::StatusUpdated(update("ORD-1", "shipped")),
            &copy,
        )
        .await
        .unwrap();
    let stored = store.get(&id("ORD-1")).await.unwrap().unwrap();
    assert_eq!(stored.status, status("delivered"));
    // A create's letter is superseded as soon as the order exists; a redriven create of it
    // changes nothing, and a different order under its id is a duplicate.
    assert!(
        guard
            .superseded(&letter_of("order-events", 0, ORDER))
            .await
            .unwrap()
    );
    let mut other = order("ORD-1");
    other.customer_id = "CUST-7".into();
    let error = handler
        .handle(&OrderEvent::Created(other), &redriven_meta(7, 41))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "DuplicateOrder");
    assert_eq!(
        store.get(&id("ORD-1")).await.unwrap().unwrap().status,
        status("delivered")
    );
    // What a letter holds is read from its record, not from its topic's name: an update
    // under any topic name is judged as an update, an order as an order.
    assert!(!guard.superseded(&letter("elsewhere", 0)).await.unwrap());
    assert!(
        guard
            .superseded(&letter_of("order-status-updates", 0, ORDER))
            .await
            .unwrap()
    );
    // A record that does not decode cannot have been applied: never superseded.
    assert!(
        !guard
            .superseded(&letter_of("order-events", 0, b"garbage"))
            .await
            .unwrap()
    );
}
