//! The handlers of the order flow, for any service that keeps orders in an [`OrderStore`].

use std::sync::Arc;

use async_trait::async_trait;

use super::model::{InvalidOrder, Order, OrderEvent, OrderId, StatusUpdate, ValidationError};
use super::store::{OrderStore, StatusWrite};
use crate::handler::{Classify, ErrorClass, Handler};
use crate::record::RecordMeta;
use crate::storage::{Position, StoreError};

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
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for OrderError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::OrderNotFound(_) => ErrorClass::Retryable,
            Self::Store(error) => error.class(),
            Self::InvalidStatus(_) | Self::InvalidOrderId(_) | Self::InvalidOrder(_) => {
                ErrorClass::Permanent
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::OrderNotFound(_) => "OrderNotFound",
            Self::InvalidStatus(_) => "InvalidStatus",
            Self::InvalidOrderId(_) => "InvalidOrderId",
            Self::InvalidOrder(_) => "InvalidOrder",
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

/// Stores created orders; an order with the same id is replaced. A redelivered event changes
/// nothing (see [`OrderStore`]).
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
        self.store.create(order, Position::from(meta)).await?;
        Ok(())
    }
}

/// Applies a status update to an existing order; a redelivered update changes nothing.
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
        match self
            .store
            .update_status(&id, &status, update.reason.clone(), Position::from(meta))
            .await?
        {
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
