//! Store latency as metrics (through the `metrics` facade): every store [`StoreUrl::open`]
//! returns is wrapped, so each backend is measured the same way, in one place.
//!
//! [`StoreUrl::open`]: crate::StoreUrl::open

use std::sync::Once;
use std::time::Instant;

use async_trait::async_trait;
use metrics::{Histogram, Unit};
use ordering_core::order::{
    CreateWrite, HistoryEntry, Order, OrderId, OrderPositions, OrderStore, StatusChange,
    StatusWrite,
};
use ordering_core::{
    Claim, Position, RedriveKey, RedriveLedger, Redriven, StoreError, TopicIncarnations,
};

use crate::Store;

/// The operations timed, each with its own pair of histograms.
#[derive(Debug, Clone, Copy)]
enum Op {
    Get,
    Create,
    UpdateStatus,
    Positions,
    History,
    PruneHistory,
    Ids,
    Count,
    CheckWritable,
    RedriveClaim,
    RedriveRelease,
    RedriveLookup,
    Incarnation,
}

impl Op {
    const ALL: [Op; 13] = [
        Op::Get,
        Op::Create,
        Op::UpdateStatus,
        Op::Positions,
        Op::History,
        Op::PruneHistory,
        Op::Ids,
        Op::Count,
        Op::CheckWritable,
        Op::RedriveClaim,
        Op::RedriveRelease,
        Op::RedriveLookup,
        Op::Incarnation,
    ];

    /// The `operation` label.
    fn label(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Create => "create",
            Op::UpdateStatus => "update_status",
            Op::Positions => "positions",
            Op::History => "history",
            Op::PruneHistory => "prune_history",
            Op::Ids => "ids",
            Op::Count => "count",
            Op::CheckWritable => "check_writable",
            Op::RedriveClaim => "redrive_claim",
            Op::RedriveRelease => "redrive_release",
            Op::RedriveLookup => "redrive_lookup",
            Op::Incarnation => "incarnation",
        }
    }
}

/// A store whose every operation is timed, by backend, operation and result.
pub(crate) struct Timed<S> {
    inner: S,
    /// Per operation (indexed by [`Op`]): the histograms of successes and of failures, made
    /// once so that timing a write is an atomic add, not a registry lookup.
    histograms: [[Histogram; 2]; Op::ALL.len()],
}

fn describe() {
    static DESCRIBED: Once = Once::new();
    DESCRIBED.call_once(|| {
        metrics::describe_histogram!(
            "order_store_operation_duration_seconds",
            Unit::Seconds,
            "Time of one order-store operation (a write includes its wait for the group commit), by backend, operation and result"
        );
    });
}

impl<S: Store> Timed<S> {
    pub(crate) fn new(inner: S, backend: &'static str) -> Self {
        describe();
        let histogram = |operation: &'static str, result: &'static str| {
            metrics::histogram!(
                "order_store_operation_duration_seconds",
                "backend" => backend, "operation" => operation, "result" => result
            )
        };
        let histograms =
            Op::ALL.map(|op| [histogram(op.label(), "ok"), histogram(op.label(), "error")]);
        Self { inner, histograms }
    }

    async fn time<T>(
        &self,
        op: Op,
        run: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = run.await;
        let [ok, error] = &self.histograms[op as usize];
        let histogram = if result.is_ok() { ok } else { error };
        histogram.record(started.elapsed());
        result
    }
}

#[async_trait]
impl<S: Store> OrderStore for Timed<S> {
    async fn get(&self, id: &OrderId) -> Result<Option<Order>, StoreError> {
        self.time(Op::Get, self.inner.get(id)).await
    }

    async fn create(&self, order: &Order, at: Position) -> Result<CreateWrite, StoreError> {
        self.time(Op::Create, self.inner.create(order, at)).await
    }

    async fn update_status(
        &self,
        id: &OrderId,
        change: StatusChange,
    ) -> Result<StatusWrite, StoreError> {
        self.time(Op::UpdateStatus, self.inner.update_status(id, change))
            .await
    }

    async fn history(
        &self,
        id: &OrderId,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        self.time(Op::History, self.inner.history(id, after, limit))
            .await
    }

    async fn prune_history(&self, before_ms: i64, limit: usize) -> Result<u64, StoreError> {
        self.time(Op::PruneHistory, self.inner.prune_history(before_ms, limit))
            .await
    }

    async fn positions(&self, id: &OrderId) -> Result<Option<OrderPositions>, StoreError> {
        self.time(Op::Positions, self.inner.positions(id)).await
    }

    async fn ids(&self, after: Option<OrderId>, limit: usize) -> Result<Vec<OrderId>, StoreError> {
        self.time(Op::Ids, self.inner.ids(after, limit)).await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.time(Op::Count, self.inner.count()).await
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        self.time(Op::CheckWritable, self.inner.check_writable())
            .await
    }
}

#[async_trait]
impl<S: Store> RedriveLedger for Timed<S> {
    async fn claim(
        &self,
        records: &[RedriveKey],
        again: bool,
        at_ms: i64,
    ) -> Result<Vec<Claim>, StoreError> {
        self.time(Op::RedriveClaim, self.inner.claim(records, again, at_ms))
            .await
    }

    async fn release(&self, records: &[RedriveKey]) -> Result<(), StoreError> {
        self.time(Op::RedriveRelease, self.inner.release(records))
            .await
    }

    async fn lookup(&self, records: &[RedriveKey]) -> Result<Vec<Option<Redriven>>, StoreError> {
        self.time(Op::RedriveLookup, self.inner.lookup(records))
            .await
    }
}

#[async_trait]
impl<S: Store> TopicIncarnations for Timed<S> {
    async fn incarnation(&self, topic: &str, topic_id: &str) -> Result<u32, StoreError> {
        self.time(Op::Incarnation, self.inner.incarnation(topic, topic_id))
            .await
    }
}
