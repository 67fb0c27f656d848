//! Where orders live: the `OrderStore` trait and an in-memory implementation.

use std::collections::HashMap;
use std::sync::RwLock;

use async_trait::async_trait;

use crate::model::{Order, OrderId, Status};

/// A store failure. Stores are infrastructure, so their failures are worth retrying.
#[derive(Debug, Clone, thiserror::Error)]
#[error("order store unavailable: {0}")]
pub struct StoreError(pub String);

/// Orders by id. Object-safe so services can hold an `Arc<dyn OrderStore>`.
#[async_trait]
pub trait OrderStore: Send + Sync {
    async fn get(&self, id: &OrderId) -> Result<Option<Order>, StoreError>;

    /// Stores `order`, replacing any order with the same id.
    async fn put(&self, order: Order) -> Result<(), StoreError>;

    /// Sets the status of an existing order in one step and returns the updated order, or
    /// `None` when there is no such order.
    async fn update_status(
        &self,
        id: &OrderId,
        status: Status,
    ) -> Result<Option<Order>, StoreError>;

    /// Every order id, sorted.
    async fn ids(&self) -> Result<Vec<OrderId>, StoreError>;

    async fn count(&self) -> Result<usize, StoreError>;
}

/// A process-local store: fast, and gone with the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    orders: RwLock<HashMap<OrderId, Order>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    // A poisoned lock only means a panic elsewhere mid-update of a plain map; the map itself
    // is still consistent, so keep serving rather than failing every later call.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<OrderId, Order>> {
        self.orders.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<OrderId, Order>> {
        self.orders.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl OrderStore for MemoryStore {
    async fn get(&self, id: &OrderId) -> Result<Option<Order>, StoreError> {
        Ok(self.read().get(id).cloned())
    }

    async fn put(&self, order: Order) -> Result<(), StoreError> {
        self.write().insert(order.order_id.clone(), order);
        Ok(())
    }

    async fn update_status(
        &self,
        id: &OrderId,
        status: Status,
    ) -> Result<Option<Order>, StoreError> {
        Ok(self.write().get_mut(id).map(|order| {
            order.status = status;
            order.clone()
        }))
    }

    async fn ids(&self) -> Result<Vec<OrderId>, StoreError> {
        let mut ids: Vec<OrderId> = self.read().keys().cloned().collect();
        ids.sort();
        Ok(ids)
    }

    async fn count(&self) -> Result<usize, StoreError> {
        Ok(self.read().len())
    }
}
