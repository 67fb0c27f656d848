//! The shared store: a PostgreSQL database that several order-shell instances use at once.
//! A pool of connections with bounded timeouts serves reads; one writer task group-commits
//! writes, pipelining a batch's statements in one transaction.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures::future::try_join_all;
use ordering_core::{
    Order, OrderId, OrderStore, Position, Status, StatusWrite, StoreError, Written,
};
use tokio_postgres::NoTls;

use crate::batch::{self, Batches, Done, Op, Queue, Write};
use crate::{OpenError, migrations};

/// The longest any one store operation (taking a connection included) may take.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Connecting, and waiting for a pooled connection, at most.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Per statement, enforced by the server.
const STATEMENT_TIMEOUT_MS: u32 = 5000;
/// Connections per store: the writer's plus readers.
const POOL_SIZE: usize = 8;
/// Serializes migrations of instances starting together (any constant unique to this crate).
const MIGRATION_LOCK: i64 = 0x6f72_6465_7273; // "orders"

const CREATE: &str = "
    INSERT INTO orders (order_id, body, status, created_partition, created_offset)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (order_id) DO UPDATE SET
        body = EXCLUDED.body, status = EXCLUDED.status,
        created_partition = EXCLUDED.created_partition, created_offset = EXCLUDED.created_offset
    WHERE orders.created_partition <> EXCLUDED.created_partition
       OR orders.created_offset < EXCLUDED.created_offset";

// One round trip tells applied, already applied and not found apart: the outer query sees
// the table as it was before the update.
const UPDATE_STATUS: &str = "
    WITH updated AS (
        UPDATE orders SET status = $2, status_partition = $3, status_offset = $4
        WHERE order_id = $1
          AND (status_partition IS NULL OR status_partition <> $3 OR status_offset < $4)
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM updated), EXISTS (SELECT 1 FROM orders WHERE order_id = $1)";

/// Orders in a PostgreSQL database.
pub struct PostgresStore {
    pool: Pool,
    writes: Queue,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects with `config` (from a `postgres://` URL), migrates, and starts the writer
    /// task on the current tokio runtime.
    pub async fn open(mut config: tokio_postgres::Config) -> Result<Self, OpenError> {
        config.connect_timeout(CONNECT_TIMEOUT);
        config.keepalives(true);
        if config.get_application_name().is_none() {
            config.application_name("ordering-store");
        }
        if config.get_options().is_none() {
            config.options(format!("-c statement_timeout={STATEMENT_TIMEOUT_MS}"));
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| OpenError::Postgres(e.to_string()))?;
        migrate(&pool).await?;
        let (writes, batches) = batch::queue();
        tokio::spawn(write_loop(pool.clone(), batches));
        Ok(Self { pool, writes })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }
}

fn pool_error(error: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Unavailable(format!("no database connection: {error}"))
}

/// Connection lost, server shutting down or overloaded, lock or serialization conflicts,
/// timeouts: unavailable. Anything else (bad data, constraint) is about the write itself.
fn classify(error: &tokio_postgres::Error) -> StoreError {
    let Some(state) = error.code() else {
        return StoreError::Unavailable(error.to_string()); // I/O, closed connection
    };
    let code = state.code();
    let transient = ["08", "40", "53", "57", "58"]
        .iter()
        .any(|class| code.starts_with(class))
        || code == "55P03";
    let message = format!("{error} (SQLSTATE {code})");
    if transient {
        StoreError::Unavailable(message)
    } else {
        StoreError::Rejected(message)
    }
}

/// Bounds `op` by [`OP_TIMEOUT`]: a server that stopped answering is unavailable.
async fn bounded<T>(op: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    tokio::time::timeout(OP_TIMEOUT, op)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!(
                "no answer from the database within {OP_TIMEOUT:?}"
            )))
        })
}

/// Applies the missing migrations under an advisory lock, so instances starting together
/// migrate once.
async fn migrate(pool: &Pool) -> Result<(), OpenError> {
    let failed = |e: tokio_postgres::Error| match classify(&e) {
        StoreError::Unavailable(reason) => OpenError::Unreachable(reason),
        StoreError::Rejected(reason) => OpenError::Postgres(reason),
    };
    let mut client = pool
        .get()
        .await
        .map_err(|e| OpenError::Unreachable(e.to_string()))?;
    let tx = client.transaction().await.map_err(failed)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(failed)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS order_store_schema (version INTEGER NOT NULL);")
        .await
        .map_err(failed)?;
    let current: Option<i32> = tx
        .query_opt("SELECT max(version) FROM order_store_schema", &[])
        .await
        .map_err(failed)?
        .and_then(|row| row.get(0));
    let current = u32::try_from(current.unwrap_or(0)).unwrap_or(0);
    for migration in migrations::pending(migrations::POSTGRES, current)? {
        tx.batch_execute(migration.sql).await.map_err(failed)?;
        let version = i32::try_from(migration.version).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO order_store_schema (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(failed)?;
        tracing::info!(version = migration.version, "postgres order store migrated");
    }
    tx.commit().await.map_err(failed)
}

/// The writer task: one transaction per batch, every write answered after the commit.
async fn write_loop(pool: Pool, mut batches: Batches) {
    while let Some(batch) = batch::next_batch(&mut batches).await {
        match bounded(apply(&pool, &batch)).await {
            Ok(results) => answer_all(batch, results),
            Err(StoreError::Rejected(reason)) if batch.len() > 1 => {
                // One write spoiled the transaction: apply each alone to find it, so the
                // others are not blamed for it.
                tracing::debug!(%reason, "postgres batch refused; applying its writes one by one");
                for write in batch {
                    let result = bounded(apply(&pool, std::slice::from_ref(&write)))
                        .await
                        .and_then(|mut results| results.pop().unwrap_or_else(|| Err(empty())));
                    write.answer(result);
                }
            }
            Err(error) => {
                tracing::warn!(%error, writes = batch.len(), "postgres batch not committed");
                for write in batch {
                    write.answer(Err(error.clone()));
                }
            }
        }
    }
}

fn answer_all(batch: Vec<Write>, results: Vec<Result<Done, StoreError>>) {
    for (write, result) in batch.into_iter().zip(results) {
        write.answer(result);
    }
}

fn empty() -> StoreError {
    StoreError::Unavailable("the database gave no result".into())
}

/// Applies `batch` in one transaction, its statements pipelined.
async fn apply(pool: &Pool, batch: &[Write]) -> Result<Vec<Result<Done, StoreError>>, StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(|e| classify(&e))?;
    let create = tx.prepare_cached(CREATE).await.map_err(|e| classify(&e))?;
    let update = tx
        .prepare_cached(UPDATE_STATUS)
        .await
        .map_err(|e| classify(&e))?;
    let results = try_join_all(batch.iter().map(|write| {
        let (tx, create, update) = (&tx, &create, &update);
        async move {
            match &write.op {
                Op::Create {
                    order_id,
                    body,
                    status,
                    at,
                } => {
                    let changed = tx
                        .execute(create, &[order_id, body, status, &at.partition, &at.offset])
                        .await?;
                    Ok(Done::Created(if changed > 0 {
                        Written::Applied
                    } else {
                        Written::AlreadyApplied
                    }))
                }
                Op::Status {
                    order_id,
                    status,
                    at,
                } => {
                    let row = tx
                        .query_one(update, &[order_id, status, &at.partition, &at.offset])
                        .await?;
                    let (applied, found): (bool, bool) = (row.get(0), row.get(1));
                    Ok(Done::Status(match (applied, found) {
                        (true, _) => StatusWrite::Written(Written::Applied),
                        (false, true) => StatusWrite::Written(Written::AlreadyApplied),
                        (false, false) => StatusWrite::NotFound,
                    }))
                }
            }
        }
    }))
    .await
    .map_err(|e: tokio_postgres::Error| classify(&e))?;
    tx.commit().await.map_err(|e| classify(&e))?;
    Ok(results.into_iter().map(Ok).collect())
}

#[async_trait]
impl OrderStore for PostgresStore {
    async fn get(&self, id: &OrderId) -> Result<Option<Order>, StoreError> {
        let row = bounded(async {
            self.client()
                .await?
                .query_opt(
                    "SELECT body, status FROM orders WHERE order_id = $1",
                    &[&id.as_str()],
                )
                .await
                .map_err(|e| classify(&e))
        })
        .await?;
        row.map(|row| batch::order_from_row(row.get(0), row.get(1)))
            .transpose()
    }

    async fn create(&self, order: &Order, at: Position) -> Result<Written, StoreError> {
        self.writes.create(order, at).await
    }

    async fn update_status(
        &self,
        id: &OrderId,
        status: &Status,
        at: Position,
    ) -> Result<StatusWrite, StoreError> {
        self.writes.update_status(id, status, at).await
    }

    async fn ids(&self) -> Result<Vec<OrderId>, StoreError> {
        let rows = bounded(async {
            self.client()
                .await?
                // Byte order, as everywhere else, whatever the database's collation.
                .query(
                    "SELECT order_id FROM orders ORDER BY order_id COLLATE \"C\"",
                    &[],
                )
                .await
                .map_err(|e| classify(&e))
        })
        .await?;
        crate::parse_ids(rows.iter().map(|row| row.get(0)).collect())
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let row = bounded(async {
            self.client()
                .await?
                .query_one("SELECT COUNT(*) FROM orders", &[])
                .await
                .map_err(|e| classify(&e))
        })
        .await?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        bounded(async {
            self.client()
                .await?
                .simple_query("SELECT 1")
                .await
                .map(drop)
                .map_err(|e| classify(&e))
        })
        .await
    }
}
