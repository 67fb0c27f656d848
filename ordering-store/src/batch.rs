//! Group commit: writers queue their writes; one writer (a thread for SQLite, a task for
//! PostgreSQL) takes whatever has queued up, applies it in one transaction, and answers each
//! write only after that transaction is durable. Under load many records share one commit;
//! alone, a write is committed at once (no timer, no added latency).

use ordering_core::order::{CreateWrite, OrderId, StatusChange, StatusWrite};
use ordering_core::{Position, StoreError};
use tokio::sync::{mpsc, oneshot};

/// Writes taken into one transaction, at most. Larger batches amortize a commit and a
/// statement over more writes: a PostgreSQL-backed drain ran at 120 k/s with 512, 200 k/s with
/// 2048, no faster with 4096 (BENCHMARKS.md).
pub(crate) const MAX_BATCH: usize = 2048;
/// Writes waiting for the writer, at most: past that, callers wait (backpressure).
const QUEUE: usize = 4096;

/// One write, ready to bind.
#[derive(Debug)]
pub(crate) enum Op {
    Create {
        order_id: String,
        /// The order as JSON.
        body: String,
        status: String,
        /// The order's date: its history's first event time.
        event_time: String,
        at: Position,
    },
    Status {
        order_id: String,
        status: String,
        reason: Option<String>,
        event_time: Option<String>,
        at: Position,
    },
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Done {
    Created(CreateWrite),
    Status(StatusWrite),
}

pub(crate) struct Write {
    pub(crate) op: Op,
    reply: oneshot::Sender<Result<Done, StoreError>>,
}

impl Write {
    pub(crate) fn answer(self, result: Result<Done, StoreError>) {
        // The caller may have gone (its record was revoked or shut down): nothing to tell.
        let _ = self.reply.send(result);
    }
}

/// The callers' end of the queue.
#[derive(Clone)]
pub(crate) struct Queue(mpsc::Sender<Write>);

/// The writer's end.
pub(crate) type Batches = mpsc::Receiver<Write>;

pub(crate) fn queue() -> (Queue, Batches) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (Queue(tx), rx)
}

impl Queue {
    async fn submit(&self, op: Op) -> Result<Done, StoreError> {
        let (reply, answer) = oneshot::channel();
        let gone = || StoreError::unavailable("the store's writer has stopped");
        self.0.send(Write { op, reply }).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    pub(crate) async fn create(
        &self,
        order: &ordering_core::order::Order,
        at: Position,
    ) -> Result<CreateWrite, StoreError> {
        let body = serde_json::to_string(order)
            .map_err(|e| StoreError::rejected(format!("the order cannot be serialized: {e}")))?;
        let op = Op::Create {
            order_id: order.order_id.to_string(),
            body,
            status: order.status.to_string(),
            event_time: order.order_date.clone(),
            at,
        };
        match self.submit(op).await? {
            Done::Created(written) => Ok(written),
            Done::Status(_) => Err(mismatch()),
        }
    }

    pub(crate) async fn update_status(
        &self,
        id: &OrderId,
        change: StatusChange,
    ) -> Result<StatusWrite, StoreError> {
        let op = Op::Status {
            order_id: id.to_string(),
            status: change.status.to_string(),
            reason: change.reason,
            event_time: change.event_time,
            at: change.at,
        };
        match self.submit(op).await? {
            Done::Status(write) => Ok(write),
            Done::Created(_) => Err(mismatch()),
        }
    }
}

fn mismatch() -> StoreError {
    StoreError::rejected("the writer answered a different kind of write")
}

/// Takes the next batch: waits for one write, then takes what else is queued, up to
/// [`MAX_BATCH`]. `None` when every caller is gone.
pub(crate) async fn next_batch(batches: &mut Batches) -> Option<Vec<Write>> {
    let first = batches.recv().await?;
    Some(drain_after(first, batches))
}

/// [`next_batch`] for a writer thread.
pub(crate) fn next_batch_blocking(batches: &mut Batches) -> Option<Vec<Write>> {
    let first = batches.blocking_recv()?;
    Some(drain_after(first, batches))
}

fn drain_after(first: Write, batches: &mut Batches) -> Vec<Write> {
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match batches.try_recv() {
            Ok(write) => batch.push(write),
            Err(_) => break,
        }
    }
    batch
}

/// Reads a stored order back: the body as created, with its current status and its reason.
pub(crate) fn order_from_row(
    body: &str,
    status: &str,
    reason: Option<String>,
) -> Result<ordering_core::order::Order, StoreError> {
    let mut order: ordering_core::order::Order = serde_json::from_str(body)
        .map_err(|e| StoreError::rejected(format!("a stored order does not parse: {e}")))?;
    order.status = ordering_core::order::Status::parse(status)
        .map_err(|e| StoreError::rejected(format!("a stored status is invalid: {e}")))?;
    order.status_reason = reason;
    Ok(order)
}

/// History entries one read returns at most, whatever the caller asks.
pub(crate) const MAX_HISTORY_PAGE: usize = 1000;

/// A history row as read: seq, status, reason, event time, applied at, topic, partition,
/// offset, incarnation.
pub(crate) type HistoryRow = (
    i64,
    String,
    Option<String>,
    Option<String>,
    i64,
    String,
    i32,
    i64,
    u32,
);

pub(crate) fn history_entry(row: HistoryRow) -> ordering_core::order::HistoryEntry {
    let (seq, status, reason, event_time, applied_at_ms, topic, partition, offset, incarnation) =
        row;
    ordering_core::order::HistoryEntry {
        seq,
        status,
        reason,
        event_time,
        applied_at_ms,
        at: Position::new(topic, partition, offset).in_incarnation(incarnation),
    }
}
