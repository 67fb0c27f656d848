//! The handlers of the order flow, for any service that keeps orders in an [`OrderStore`].

use std::sync::Arc;

use async_trait::async_trait;

use super::model::{InvalidOrder, Order, OrderEvent, OrderId, StatusUpdate, ValidationError};
use super::store::{CreateWrite, OrderStore, StatusChange, StatusWrite};
use crate::dead_letter::DeadLetter;
use crate::handler::{Classify, ErrorClass, Handler};
use crate::record::{DecodeError, RecordMeta};
use crate::redrive::RedriveGuard;
use crate::storage::{StoreError, Written};

/// Why an order event was not applied.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OrderError {
    /// The order may simply not have arrived yet (it travels on another topic): retryable.
    #[error("Order {0} not found")]
    OrderNotFound(OrderId),
    /// The update's status is blank or too long: permanent.
    #[error("invalid status: {0}")]
    InvalidStatus(ValidationError),
    /// The order id is blank or too long: permanent.
    #[error("invalid order id: {0}")]
    InvalidOrderId(ValidationError),
    /// The order breaks a business rule ([`Order::check`]): permanent.
    #[error("invalid order: {0}")]
    InvalidOrder(#[from] InvalidOrder),
    /// Another order with this id exists: the first create wins, and this one is kept as a
    /// dead letter for a person to look at.
    #[error("order {0} already exists with other contents; the first one stays")]
    DuplicateOrder(OrderId),
    /// The store failed: an outage is waited out, a refused write is permanent
    /// ([`StoreError::class`]).
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
    /// A handler that creates orders in `store`.
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
    /// A handler that applies status updates to the orders in `store`.
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
    /// Both handlers, on one `store`.
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

/// Reads a letter's record back into an order event: the codec its records were written with
/// (asynchronous, as a codec may first fetch a writer schema from a registry).
pub type DecodeEvent = dyn Fn(Vec<u8>) -> futures::future::BoxFuture<'static, Result<OrderEvent, DecodeError>>
    + Send
    + Sync;

/// The order flow's [`RedriveGuard`]: a letter is superseded when applying its record now would
/// change an order that moved on. An order's letter is superseded once an order with its id
/// exists (the first create wins); a status update's once the order holds a status applied
/// from the same partition at or after the letter's origin. What a letter holds is told by
/// decoding its record, never by its topic's name, which settings may share or rename.
pub struct OrderRedriveGuard {
    store: Arc<dyn OrderStore>,
    decode: Box<DecodeEvent>,
}

impl std::fmt::Debug for OrderRedriveGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderRedriveGuard").finish_non_exhaustive()
    }
}

impl OrderRedriveGuard {
    /// Guards letters whose records `decode` reads, against the orders in `store`.
    pub fn new<F, Fut>(store: Arc<dyn OrderStore>, decode: F) -> Self
    where
        F: Fn(Vec<u8>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<OrderEvent, DecodeError>> + Send + 'static,
    {
        use futures::FutureExt as _;
        Self {
            store,
            decode: Box::new(move |payload| decode(payload).boxed()),
        }
    }
}

#[async_trait]
impl RedriveGuard for OrderRedriveGuard {
    async fn superseded(&self, letter: &DeadLetter) -> Result<bool, StoreError> {
        // A record that does not decode, or names no valid order, cannot have been applied:
        // sent back, it fails again as it did.
        let Ok(event) = (self.decode)(letter.original_value.clone()).await else {
            return Ok(false);
        };
        let id = match &event {
            OrderEvent::Created(order) => order.order_id.clone(),
            OrderEvent::StatusUpdated(update) => match OrderId::parse(&update.order_id) {
                Ok(id) => id,
                Err(_) => return Ok(false),
            },
        };
        let Some(positions) = self.store.positions(&id).await? else {
            return Ok(false);
        };
        if matches!(event, OrderEvent::Created(_)) {
            return Ok(true);
        }
        Ok(letter.origin().is_covered_by(positions.status.as_ref()))
    }
}
