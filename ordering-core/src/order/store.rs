//! Where orders live: the `OrderStore` trait, its error and write outcomes, and an in-memory
//! implementation. Durable backends (SQLite, PostgreSQL) are in the `ordering-store` crate.
//!
//! Writes are idempotent:
//! - **Creates by content.** The first create of an id wins. The same order again (a
//!   redelivery, a redrive, a client's retry) changes nothing; a different order under an id
//!   that exists is a [`CreateWrite::Duplicate`] and changes nothing either: nothing already
//!   stored is replaced or reset.
//! - **Status updates by position.** Each order remembers the position (topic, partition,
//!   offset) of the last status update applied to it, and an update at or below it changes
//!   nothing. At-least-once delivery after a crash or a rebalance therefore never moves a
//!   status backwards, nor does a redrive: a redriven update carries the position of the
//!   record it copies ([`RecordMeta::position`](crate::RecordMeta::position)).

use std::collections::HashMap;
use std::sync::RwLock;

use async_trait::async_trait;

use super::model::{Order, OrderId, Status};
use crate::redrive::{Claim, MemoryLedger, RedriveKey, RedriveLedger, Redriven};
use crate::storage::{Position, StoreError, Written};

/// What a create did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CreateWrite {
    /// `Applied`: a new order; `AlreadyApplied`: the very same order was there.
    Written(Written),
    /// Another order has this id: the first stays, this one is not applied.
    Duplicate,
}

/// Where the last writes of an order came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPositions {
    /// The order event that created it.
    pub created: Position,
    /// The status update last applied; `None` before the first. A position written before
    /// the store kept topics has an empty topic.
    pub status: Option<Position>,
}

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

    /// Stores `order`, created by the order event at `at`, unless an order with its id is
    /// there already: the same order is [`Written::AlreadyApplied`], another is
    /// [`CreateWrite::Duplicate`]; either way nothing stored changes.
    async fn create(&self, order: &Order, at: Position) -> Result<CreateWrite, StoreError>;

    /// Sets the status of an existing order, and the reason given for it (`None` clears an
    /// earlier one), from the status update at `at`, unless `at` was already applied.
    async fn update_status(
        &self,
        id: &OrderId,
        status: &Status,
        reason: Option<String>,
        at: Position,
    ) -> Result<StatusWrite, StoreError>;

    /// Where the last writes of the order came from; `None` if there is no such order.
    async fn positions(&self, id: &OrderId) -> Result<Option<OrderPositions>, StoreError>;

    /// Up to `limit` order ids after `after` (from the first without it), in byte order: one
    /// page of them, so that a store of any size is listed in bounded pieces.
    async fn ids(&self, after: Option<OrderId>, limit: usize) -> Result<Vec<OrderId>, StoreError>;

    async fn count(&self) -> Result<u64, StoreError>;

    /// Answers when the store can serve reads *and* take writes (a database that went
    /// read-only, a revoked grant, a full disk fail it), for health checks; the error says why.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// An order with the positions that last wrote it.
#[derive(Debug, Clone)]
struct Stored {
    /// The order as created, to tell the same order from another under its id.
    created: Order,
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
        records: &[RedriveKey],
        again: bool,
        at_ms: i64,
    ) -> Result<Vec<Claim>, StoreError> {
        self.redrives.claim(records, again, at_ms).await
    }

    async fn release(&self, records: &[RedriveKey]) -> Result<(), StoreError> {
        self.redrives.release(records).await
    }

    async fn lookup(&self, records: &[RedriveKey]) -> Result<Vec<Option<Redriven>>, StoreError> {
        self.redrives.lookup(records).await
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

    async fn create(&self, order: &Order, at: Position) -> Result<CreateWrite, StoreError> {
        let mut orders = self.write();
        if let Some(stored) = orders.get(&order.order_id) {
            return Ok(if stored.created == *order {
                CreateWrite::Written(Written::AlreadyApplied)
            } else {
                CreateWrite::Duplicate
            });
        }
        let stored = Stored {
            created: order.clone(),
            order: order.clone(),
            created_at: at,
            status_at: None,
        };
        orders.insert(order.order_id.clone(), stored);
        Ok(CreateWrite::Written(Written::Applied))
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
        if at.is_covered_by(stored.status_at.as_ref()) {
            return Ok(StatusWrite::Written(Written::AlreadyApplied));
        }
        stored.order.status = status.clone();
        stored.order.status_reason = reason;
        stored.status_at = Some(at);
        Ok(StatusWrite::Written(Written::Applied))
    }

    async fn positions(&self, id: &OrderId) -> Result<Option<OrderPositions>, StoreError> {
        Ok(self.read().get(id).map(|stored| OrderPositions {
            created: stored.created_at.clone(),
            status: stored.status_at.clone(),
        }))
    }

    async fn ids(&self, after: Option<OrderId>, limit: usize) -> Result<Vec<OrderId>, StoreError> {
        let orders = self.read();
        let mut ids: Vec<&OrderId> = orders
            .keys()
            .filter(|id| {
                after
                    .as_ref()
                    .is_none_or(|after| id.as_str() > after.as_str())
            })
            .collect();
        ids.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(ids.into_iter().take(limit).cloned().collect())
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
    fn a_position_is_covered_only_within_its_topic_and_partition() {
        let last = Position::new("t", 1, 10);
        let last = Some(&last);
        assert!(Position::new("t", 1, 10).is_covered_by(last));
        assert!(Position::new("t", 1, 9).is_covered_by(last));
        assert!(!Position::new("t", 1, 11).is_covered_by(last));
        assert!(!Position::new("t", 2, 3).is_covered_by(last));
        assert!(!Position::new("u", 1, 3).is_covered_by(last));
        assert!(!Position::new("t", 1, 0).is_covered_by(None));
    }
}
