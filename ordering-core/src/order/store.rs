//! Where orders live: the `OrderStore` trait, its error and write outcomes, and an in-memory
//! implementation. Durable backends (SQLite, PostgreSQL) are in the `ordering-store` crate.
//!
//! Writes are idempotent by position: each order remembers the position (partition, offset)
//! of the last order event and of the last status update applied to it, and a record
//! delivered again at or below that position changes nothing. At-least-once delivery after
//! a crash or a rebalance therefore never moves a status backwards.

use std::collections::HashMap;
use std::sync::RwLock;

use async_trait::async_trait;

use super::model::{Order, OrderId, Status};
use crate::redrive::{Claim, LetterId, MemoryLedger, RedriveLedger, Redriven};
use crate::storage::{Position, StoreError, Written};

/// What a status update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatusWrite {
    Written(Written),
    /// There is no such order (yet).
    NotFound,
}

/// Orders by id. Object-safe so services can hold an `Arc<dyn OrderStore>`.
///
/// A write returns only once it is durable (for a durable store): the record it came from
/// may be committed right after.
#[async_trait]
pub trait OrderStore: Send + Sync {
    async fn get(&self, id: &OrderId) -> Result<Option<Order>, StoreError>;

    /// Stores `order`, created by the order event at `at`, replacing any order with the same
    /// id unless `at` was already applied.
    async fn create(&self, order: &Order, at: Position) -> Result<Written, StoreError>;

    /// Sets the status of an existing order, and the reason given for it (`None` clears an
    /// earlier one), from the status update at `at`, unless `at` was already applied.
    async fn update_status(
        &self,
        id: &OrderId,
        status: &Status,
        reason: Option<String>,
        at: Position,
    ) -> Result<StatusWrite, StoreError>;

    /// Every order id, sorted.
    async fn ids(&self) -> Result<Vec<OrderId>, StoreError>;

    async fn count(&self) -> Result<u64, StoreError>;

    /// Answers when the store can serve: for health checks.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// An order with the positions that last wrote it.
#[derive(Debug, Clone)]
struct Stored {
    order: Order,
    created_at: Position,
    status_at: Option<Position>,
}

/// A process-local store: fast, and gone with the process. It keeps a [`MemoryLedger`] of
/// redrives too, so it can stand for a whole durable store in tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    orders: RwLock<HashMap<OrderId, Stored>>,
    redrives: MemoryLedger,
}

#[async_trait]
impl RedriveLedger for MemoryStore {
    async fn claim(
        &self,
        letters: &[LetterId],
        again: bool,
        at_ms: i64,
    ) -> Result<Vec<Claim>, StoreError> {
        self.redrives.claim(letters, again, at_ms).await
    }

    async fn release(&self, letters: &[LetterId]) -> Result<(), StoreError> {
        self.redrives.release(letters).await
    }

    async fn lookup(&self, letters: &[LetterId]) -> Result<Vec<Option<Redriven>>, StoreError> {
        self.redrives.lookup(letters).await
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    // A poisoned lock only means a panic elsewhere mid-update of a plain map; the map itself
    // is still consistent, so keep serving rather than failing every later call.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<OrderId, Stored>> {
        self.orders.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<OrderId, Stored>> {
        self.orders.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl OrderStore for MemoryStore {
    async fn get(&self, id: &OrderId) -> Result<Option<Order>, StoreError> {
        Ok(self.read().get(id).map(|stored| stored.order.clone()))
    }

    async fn create(&self, order: &Order, at: Position) -> Result<Written, StoreError> {
        let mut orders = self.write();
        let status_at = match orders.get(&order.order_id) {
            Some(stored) if at.is_covered_by(Some(stored.created_at)) => {
                return Ok(Written::AlreadyApplied);
            }
            // Updates already applied stay applied: their redeliveries must not apply again.
            Some(stored) => stored.status_at,
            None => None,
        };
        let stored = Stored {
            order: order.clone(),
            created_at: at,
            status_at,
        };
        orders.insert(order.order_id.clone(), stored);
        Ok(Written::Applied)
    }

    async fn update_status(
        &self,
        id: &OrderId,
        status: &Status,
        reason: Option<String>,
        at: Position,
    ) -> Result<StatusWrite, StoreError> {
        let mut orders = self.write();
        let Some(stored) = orders.get_mut(id) else {
            return Ok(StatusWrite::NotFound);
        };
        if at.is_covered_by(stored.status_at) {
            return Ok(StatusWrite::Written(Written::AlreadyApplied));
        }
        stored.order.status = status.clone();
        stored.order.status_reason = reason;
        stored.status_at = Some(at);
        Ok(StatusWrite::Written(Written::Applied))
    }

    async fn ids(&self) -> Result<Vec<OrderId>, StoreError> {
        let mut ids: Vec<OrderId> = self.read().keys().cloned().collect();
        ids.sort();
        Ok(ids)
    }

    async fn count(&self) -> Result<u64, StoreError> {
        Ok(self.read().len() as u64)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_is_covered_only_within_its_partition() {
        let last = Some(Position::new(1, 10));
        assert!(Position::new(1, 10).is_covered_by(last));
        assert!(Position::new(1, 9).is_covered_by(last));
        assert!(!Position::new(1, 11).is_covered_by(last));
        assert!(!Position::new(2, 3).is_covered_by(last));
        assert!(!Position::new(1, 0).is_covered_by(None));
    }
}
