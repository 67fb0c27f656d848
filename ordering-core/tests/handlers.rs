//! The order-flow handlers against a mocked store: what they ask of it and how they classify.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use async_trait::async_trait;
use mockall::{mock, predicate::eq};
use ordering_core::order::{
    Order, OrderCreatedHandler, OrderError, OrderEvent, OrderEventHandler, OrderId, OrderItem,
    OrderStore, Status, StatusUpdate, StatusUpdateHandler, StatusWrite,
};
use ordering_core::{
    Classify, ErrorClass, Handler, Position, RecordMeta, StoreError, TopicPartition, Written,
};

mock! {
    Store {}
    #[async_trait]
    impl OrderStore for Store {
        async fn get(&self, id: &OrderId) -> Result<Option<Order>, StoreError>;
        async fn create(&self, order: &Order, at: Position) -> Result<Written, StoreError>;
        async fn update_status(&self, id: &OrderId, status: &Status, reason: Option<String>, at: Position) -> Result<StatusWrite, StoreError>;
        async fn ids(&self) -> Result<Vec<OrderId>, StoreError>;
        async fn count(&self) -> Result<u64, StoreError>;
        async fn ping(&self) -> Result<(), StoreError>;
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
            eq(status("shipped")),
            eq(None),
            eq(Position::new(2, 17)),
        )
        .times(1)
        .returning(|_, _, _, _| Ok(StatusWrite::Written(Written::Applied)));
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
        .returning(|_, _, _, _| Ok(StatusWrite::NotFound));
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
        .returning(|_, _, _, _| Err(StoreError::unavailable("connection reset")));
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
        .returning(|_, _, _, _| Ok(StatusWrite::Written(Written::AlreadyApplied)));
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
        .withf(|order_, at| *order_ == order("ORD-9") && *at == Position::new(2, 17))
        .times(1)
        .returning(|_, _| Ok(Written::Applied));
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
        .returning(|_, _| Ok(Written::Applied));
    store
        .expect_update_status()
        .times(1)
        .returning(|_, _, _, _| Ok(StatusWrite::Written(Written::Applied)));
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
