//! The handlers of the order flow, for any service that keeps orders in an [`OrderStore`].

use std::sync::Arc;

use async_trait::async_trait;

use super::model::{InvalidOrder, Order, OrderEvent, OrderId, StatusUpdate, ValidationError};
use super::store::{CreateWrite, OrderStore, StatusChange, StatusWrite};
use crate::dead_letter::DeadLetter;
use crate::handler::{Classify, ErrorClass, Handler};
use crate::record::RecordMeta;
use crate::redrive::RedriveGuard;
use crate::storage::{StoreError, Written};

/// Why an order event was not applied.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OrderError {
    /// The order may simply not have arrived yet (it travels on another topic): retryable.
    #[error("Order {0} not found")]
    OrderNotFound(OrderId),
    #[error("invalid status: {0}")]
    InvalidStatus(ValidationError),
    #[error("invalid order id: {0}")]
    InvalidOrderId(ValidationError),
    #[error("invalid order: {0}")]
    InvalidOrder(#[from] InvalidOrder),
    /// Another order with this id exists: the first create wins, and this one is kept as a
    /// dead letter for a person to look at.
    #[error("order {0} already exists with other contents; the first one stays")]
    DuplicateOrder(OrderId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for OrderError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::OrderNotFound(_) => ErrorClass::Retryable,
            Self::Store(error) => error.class(),
            Self::InvalidStatus(_)
            | Self::InvalidOrderId(_)
            | Self::InvalidOrder(_)
            | Self::DuplicateOrder(_) => ErrorClass::Permanent,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::OrderNotFound(_) => "OrderNotFound",
            Self::InvalidStatus(_) => "InvalidStatus",
            Self::InvalidOrderId(_) => "InvalidOrderId",
            Self::InvalidOrder(_) => "InvalidOrder",
            Self::DuplicateOrder(_) => "DuplicateOrder",
            Self::Store(error) if error.is_retryable() => "StoreUnavailable",
            Self::Store(_) => "StoreRejected",
        }
    }
}

impl From<ValidationError> for OrderError {
    fn from(error: ValidationError) -> Self {
        match error.field() {
            "status" => Self::InvalidStatus(error),
            _ => Self::InvalidOrderId(error),
        }
    }
}

/// Stores created orders. The first create of an id wins: the same order again changes
/// nothing, another order under that id is refused as [`OrderError::DuplicateOrder`] (see
/// [`OrderStore::create`]).
#[derive(Clone)]
pub struct OrderCreatedHandler {
    store: Arc<dyn OrderStore>,
}

impl std::fmt::Debug for OrderCreatedHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderCreatedHandler")
            .finish_non_exhaustive()
    }
}

impl OrderCreatedHandler {
    pub fn new(store: Arc<dyn OrderStore>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl Handler<Order> for OrderCreatedHandler {
    type Error = OrderError;

    async fn handle(&self, order: &Order, meta: &RecordMeta) -> Result<(), OrderError> {
        order.check()?;
        match self.store.create(order, meta.position()).await? {
            CreateWrite::Written(_) => Ok(()),
            CreateWrite::Duplicate => Err(OrderError::DuplicateOrder(order.order_id.clone())),
        }
    }
}

/// Applies a status update to an existing order; a redelivered update, or a redriven one that
/// a newer update superseded, changes nothing.
#[derive(Clone)]
pub struct StatusUpdateHandler {
    store: Arc<dyn OrderStore>,
}

impl std::fmt::Debug for StatusUpdateHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusUpdateHandler")
            .finish_non_exhaustive()
    }
}

impl StatusUpdateHandler {
    pub fn new(store: Arc<dyn OrderStore>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl Handler<StatusUpdate> for StatusUpdateHandler {
    type Error = OrderError;

    async fn handle(&self, update: &StatusUpdate, meta: &RecordMeta) -> Result<(), OrderError> {
        let (id, status) = update.validate()?;
        let change = StatusChange::new(status.clone(), meta.position())
            .with_reason(update.reason.clone())
            .with_event_time(update.update_timestamp.clone());
        match self.store.update_status(&id, change).await? {
            StatusWrite::Written(Written::AlreadyApplied) if meta.origin().is_some() => {
                tracing::info!(order = %id, status = %status, "redriven status update superseded by a newer one; not applied");
                Ok(())
            }
            StatusWrite::Written(_) => Ok(()),
            StatusWrite::NotFound => Err(OrderError::OrderNotFound(id)),
        }
    }
}

/// Both handlers behind one, for a consumer of both topics.
#[derive(Clone)]
pub struct OrderEventHandler {
    created: OrderCreatedHandler,
    updates: StatusUpdateHandler,
}

impl std::fmt::Debug for OrderEventHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderEventHandler").finish_non_exhaustive()
    }
}

impl OrderEventHandler {
    pub fn new(store: Arc<dyn OrderStore>) -> Self {
        Self {
            created: OrderCreatedHandler::new(store.clone()),
            updates: StatusUpdateHandler::new(store),
        }
    }
}

#[async_trait]
impl Handler<OrderEvent> for OrderEventHandler {
    type Error = OrderError;

    async fn handle(&self, event: &OrderEvent, meta: &RecordMeta) -> Result<(), OrderError> {
        match event {
            OrderEvent::Created(order) => self.created.handle(order, meta).await,
            OrderEvent::StatusUpdated(update) => self.updates.handle(update, meta).await,
        }
    }
}

/// The order flow's [`RedriveGuard`]: a letter is superseded when applying its record now would
/// change an order that moved on. An order event's letter is superseded once an order with its
/// id exists (the first create wins); a status update's once the order holds a status applied
/// from the same partition at or after the letter's origin.
pub struct OrderRedriveGuard {
    store: Arc<dyn OrderStore>,
    orders_topic: String,
    status_topic: String,
}

impl std::fmt::Debug for OrderRedriveGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderRedriveGuard")
            .field("orders_topic", &self.orders_topic)
            .field("status_topic", &self.status_topic)
            .finish_non_exhaustive()
    }
}

impl OrderRedriveGuard {
    pub fn new(
        store: Arc<dyn OrderStore>,
        orders_topic: impl Into<String>,
        status_topic: impl Into<String>,
    ) -> Self {
        Self {
            store,
            orders_topic: orders_topic.into(),
            status_topic: status_topic.into(),
        }
    }
}

#[async_trait]
impl RedriveGuard for OrderRedriveGuard {
    async fn superseded(&self, letter: &DeadLetter) -> Result<bool, StoreError> {
        let origin = letter.origin();
        let for_orders = *origin.topic == *self.orders_topic;
        if !for_orders && *origin.topic != *self.status_topic {
            return Ok(false);
        }
        // A key that is no order id cannot have been applied: its record fails again.
        let Some(id) = letter.key_str().and_then(|key| OrderId::parse(&key).ok()) else {
            return Ok(false);
        };
        let Some(positions) = self.store.positions(&id).await? else {
            return Ok(false);
        };
        // A position written before stores kept topics has none: it was of this topic, as
        // the stores' own guard takes it.
        let status = positions.status.map(|mut last| {
            if last.topic.is_empty() {
                last.topic = origin.topic.clone();
            }
            last
        });
        Ok(for_orders || origin.is_covered_by(status.as_ref()))
    }
}
