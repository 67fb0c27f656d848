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
use crate::dead_letter::RedriveKey;
use crate::position::Position;
use crate::redrive::{Claim, MemoryLedger, RedriveLedger, Redriven};
use crate::storage::{MemoryIncarnations, StoreError, TopicIncarnations, Written};

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
    /// The order exists: `Applied` set the status, `AlreadyApplied` means this position (or
    /// a later one) was applied already and nothing changed.
    Written(Written),
    /// There is no such order (yet).
    NotFound,
}

/// A status to apply to an order, and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// The status to set.
    pub status: Status,
    /// Why, when the client said; `None` clears an earlier reason.
    pub reason: Option<String>,
    /// When the client says it happened (a status update's `updateTimestamp`), as sent.
    pub event_time: Option<String>,
    /// The record that carries it: what makes the write idempotent.
    pub at: Position,
}

impl StatusChange {
    /// `status` from the record at `at`, with no reason and no event time.
    pub fn new(status: Status, at: Position) -> Self {
        Self {
            status,
            reason: None,
            event_time: None,
            at,
        }
    }

    /// This change with `reason`; `None` clears an earlier reason when it is applied.
    pub fn with_reason(mut self, reason: Option<String>) -> Self {
        self.reason = reason;
        self
    }

    /// This change with the time the client says it happened, as sent.
    pub fn with_event_time(mut self, event_time: impl Into<String>) -> Self {
        self.event_time = Some(event_time.into());
        self
    }
}

/// One status an order took: a row of its history. The creation is the first (with the
/// order's own status and date); each status update applied adds one. Redeliveries and
/// superseded updates, which change nothing, add none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Orders the entries of one order; the cursor of a page.
    pub seq: i64,
    /// The status the order took.
    pub status: String,
    /// The reason given with it, if any.
    pub reason: Option<String>,
    /// When the client says it happened, as sent (an order's `orderDate`, an update's
    /// `updateTimestamp`).
    pub event_time: Option<String>,
    /// When the store applied it, in milliseconds since the Unix epoch.
    pub applied_at_ms: i64,
    /// The record it came from.
    pub at: Position,
}

/// Orders by id. Object-safe so services can hold an `Arc<dyn OrderStore>`.
///
/// A write returns only once it is durable (for a durable store): the record it came from
/// may be committed right after.
#[async_trait]
pub trait OrderStore: Send + Sync {
    /// The order as it stands (its last status applied); `None` if there is no such order.
    async fn get(&self, id: &OrderId) -> Result<Option<Order>, StoreError>;

    /// Stores `order`, created by the order event at `at`, unless an order with its id is
    /// there already: the same order is [`Written::AlreadyApplied`], another is
    /// [`CreateWrite::Duplicate`]; either way nothing stored changes.
    async fn create(&self, order: &Order, at: Position) -> Result<CreateWrite, StoreError>;

    /// Sets the status of an existing order, and the reason given for it (`None` clears an
    /// earlier one), from the status update at `change.at`, unless that was already applied.
    /// An applied change adds an entry to the order's history in the same transaction.
    async fn update_status(
        &self,
        id: &OrderId,
        change: StatusChange,
    ) -> Result<StatusWrite, StoreError>;

    /// Where the last writes of the order came from; `None` if there is no such order.
    async fn positions(&self, id: &OrderId) -> Result<Option<OrderPositions>, StoreError>;

    /// Up to `limit` order ids after `after` (from the first without it), in byte order: one
    /// page of them, so that a store of any size is listed in bounded pieces.
    async fn ids(&self, after: Option<OrderId>, limit: usize) -> Result<Vec<OrderId>, StoreError>;

    /// How many orders the store holds.
    async fn count(&self) -> Result<u64, StoreError>;

    /// Up to `limit` entries of the order's history after `after` (a [`HistoryEntry::seq`];
    /// from the first without it), oldest first. Empty for an unknown order.
    ///
    /// The default is for stores that keep no history: it says so as an error.
    async fn history(
        &self,
        id: &OrderId,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let _ = (id, after, limit);
        Err(StoreError::rejected("this store keeps no order history"))
    }

    /// Deletes up to `limit` history entries applied before `before_ms` (milliseconds since
    /// the Unix epoch) and says how many it deleted: the retention of history.
    /// Orders themselves are never deleted.
    async fn prune_history(&self, before_ms: i64, limit: usize) -> Result<u64, StoreError> {
        let _ = (before_ms, limit);
        Ok(0)
    }

    /// Answers when the store can serve reads *and* take writes (a database that went
    /// read-only, a revoked grant, a full disk fail it), for health checks; the error says why.
    async fn check_writable(&self) -> Result<(), StoreError>;
}

/// History entries one prune deletes at most: a long backlog goes in many short
/// transactions, never one that holds the store.
const PRUNE_BATCH: usize = 2_000;

/// The shortest pause between two prune batches. A store's writer that found the store busy
/// (SQLite's busy handler) sleeps up to 100 ms between its tries; a shorter pause would let
/// the next batch take the lock before it wakes, again and again, for the whole backlog.
const PRUNE_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Deletes the history entries applied longer than `retention` ago, a batch at a time, and
/// says how many: the retention of order history, for a service to run now and then.
pub async fn prune_history_older_than(
    store: &dyn OrderStore,
    retention: std::time::Duration,
) -> Result<u64, StoreError> {
    let age = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let before = crate::now_ms().saturating_sub(age);
    let mut deleted = 0;
    loop {
        let started = tokio::time::Instant::now();
        let n = store.prune_history(before, PRUNE_BATCH).await?;
        deleted += n;
        if n < PRUNE_BATCH as u64 {
            return Ok(deleted);
        }
        // Yield the store to its writer for at least as long as the batch held it: pruning
        // takes at most half of the store's time, however long the backlog.
        tokio::time::sleep(started.elapsed().max(PRUNE_PAUSE)).await;
    }
}

/// An order with the positions that last wrote it, and its history.
#[derive(Debug, Clone)]
struct Stored {
    /// The order as created, to tell the same order from another under its id.
    created: Order,
    order: Order,
    created_at: Position,
    status_at: Option<Position>,
    history: Vec<HistoryEntry>,
}

/// A process-local store: fast, and gone with the process. It keeps a [`MemoryLedger`] of
/// redrives and the numbers of topic incarnations too, so it can stand for a whole durable
/// store in tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    orders: RwLock<HashMap<OrderId, Stored>>,
    /// The last history sequence number given.
    seq: std::sync::atomic::AtomicI64,
    redrives: MemoryLedger,
    incarnations: MemoryIncarnations,
}

#[async_trait]
impl TopicIncarnations for MemoryStore {
    async fn incarnation(&self, topic: &str, topic_id: &str) -> Result<u32, StoreError> {
        self.incarnations.incarnation(topic, topic_id).await
    }
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
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn next_seq(&self) -> i64 {
        self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
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
        let entry = HistoryEntry {
            seq: self.next_seq(),
            status: order.status.to_string(),
            reason: None,
            event_time: Some(order.order_date.clone()),
            applied_at_ms: crate::now_ms(),
            at: at.clone(),
        };
        let stored = Stored {
            created: order.clone(),
            order: order.clone(),
            created_at: at,
            status_at: None,
            history: vec![entry],
        };
        orders.insert(order.order_id.clone(), stored);
        Ok(CreateWrite::Written(Written::Applied))
    }

    async fn update_status(
        &self,
        id: &OrderId,
        change: StatusChange,
    ) -> Result<StatusWrite, StoreError> {
        let mut orders = self.write();
        let Some(stored) = orders.get_mut(id) else {
            return Ok(StatusWrite::NotFound);
        };
        if change.at.is_covered_by(stored.status_at.as_ref()) {
            return Ok(StatusWrite::Written(Written::AlreadyApplied));
        }
        stored.history.push(HistoryEntry {
            seq: self.next_seq(),
            status: change.status.to_string(),
            reason: change.reason.clone(),
            event_time: change.event_time,
            applied_at_ms: crate::now_ms(),
            at: change.at.clone(),
        });
        stored.order.status = change.status;
        stored.order.status_reason = change.reason;
        stored.status_at = Some(change.at);
        Ok(StatusWrite::Written(Written::Applied))
    }

    async fn history(
        &self,
        id: &OrderId,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        Ok(self.read().get(id).map_or_else(Vec::new, |stored| {
            stored
                .history
                .iter()
                .filter(|entry| after.is_none_or(|after| entry.seq > after))
                .take(limit)
                .cloned()
                .collect()
        }))
    }

    async fn prune_history(&self, before_ms: i64, limit: usize) -> Result<u64, StoreError> {
        let mut orders = self.write();
        let mut left = limit;
        for stored in orders.values_mut() {
            let old = stored
                .history
                .iter()
                .take_while(|entry| entry.applied_at_ms < before_ms)
                .count()
                .min(left);
            stored.history.drain(..old);
            left -= old;
        }
        Ok((limit - left) as u64)
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

    async fn check_writable(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn old_history_is_pruned_batch_after_batch_and_the_orders_stay() {
        let store = MemoryStore::new();
        let order = |n: usize| Order {
            order_id: OrderId::parse(&format!("ORD-{n}")).unwrap(),
            customer_id: "CUST-1".into(),
            order_date: "2026-11-30T12:00:00Z".into(),
            items: vec![],
            total_amount: 0.0,
            currency: "EUR".into(),
            status: Status::parse("pending").unwrap(),
            status_reason: None,
        };
        let orders = PRUNE_BATCH + 5;
        for n in 0..orders {
            let at = Position::new("order-events", 0, n as i64);
            store.create(&order(n), at).await.unwrap();
        }
        let hour = std::time::Duration::from_secs(3600);
        assert_eq!(prune_history_older_than(&store, hour).await.unwrap(), 0);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        let zero = std::time::Duration::ZERO;
        let deleted = prune_history_older_than(&store, zero).await.unwrap();
        assert_eq!(deleted, orders as u64, "more than one batch");
        let id = OrderId::parse("ORD-7").unwrap();
        assert_eq!(store.history(&id, None, 10).await.unwrap(), []);
        assert_eq!(store.count().await.unwrap(), orders as u64);
    }

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
        // A position kept before topics were: taken as the same topic.
        let untold = Position::new("", 1, 10);
        assert!(Position::new("u", 1, 10).is_covered_by(Some(&untold)));
        assert!(!Position::new("u", 1, 11).is_covered_by(Some(&untold)));
    }

    #[test]
    fn a_later_incarnation_comes_after_every_offset_of_an_earlier_one() {
        let last = Position::new("t", 1, 10).in_incarnation(2);
        let last = Some(&last);
        assert!(
            !Position::new("t", 1, 0)
                .in_incarnation(3)
                .is_covered_by(last)
        );
        assert!(
            Position::new("t", 1, 500).is_covered_by(last),
            "the first is older"
        );
        assert!(
            Position::new("t", 1, 10)
                .in_incarnation(2)
                .is_covered_by(last)
        );
        assert!(
            !Position::new("t", 1, 11)
                .in_incarnation(2)
                .is_covered_by(last)
        );
    }
}
