//! The shared store: a PostgreSQL database that several order-shell instances use at once.
//! A pool of connections with bounded timeouts serves reads; one writer task group-commits
//! writes: a batch is one transaction of one statement per kind of write.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use ordering_core::order::{Order, OrderId, OrderStore, Status, StatusWrite};
use ordering_core::{Claim, LetterId, Position, RedriveLedger, Redriven, StoreError, Written};
use std::collections::{HashMap, HashSet};
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

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

// A batch is applied with one statement per kind of write, its values passed as arrays: a
// statement per write (even pipelined) costs the server a parse-bind-execute round each, and
// measured 3 to 4 times slower.
//
// A created (or re-created) order takes the event's status; the position of the last status
// update stays, so that update's redeliveries still change nothing. Returns the orders applied.
const CREATE_MANY: &str = "
    WITH input (order_id, body, status, part, off) AS (
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int4[], $5::int8[])
    ), created AS (
        INSERT INTO orders AS o (order_id, body, created_partition, created_offset)
        SELECT order_id, body, part, off FROM input
        ON CONFLICT (order_id) DO UPDATE SET
            body = EXCLUDED.body,
            created_partition = EXCLUDED.created_partition,
            created_offset = EXCLUDED.created_offset
        WHERE o.created_partition <> EXCLUDED.created_partition
           OR o.created_offset < EXCLUDED.created_offset
        RETURNING o.order_id
    ), statuses AS (
        INSERT INTO order_status AS s (order_id, status)
        SELECT input.order_id, input.status FROM input JOIN created USING (order_id)
        ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status, status_reason = NULL
    )
    SELECT order_id FROM created";

// Per input row: applied, and whether the order exists (the outer query sees the table as it
// was before this statement), which tells applied, already applied and not found apart.
const UPDATE_MANY: &str = "
    WITH input (order_id, status, part, off, reason) AS (
        SELECT * FROM unnest($1::text[], $2::text[], $3::int4[], $4::int8[], $5::text[])
    ), updated AS (
        UPDATE order_status AS s SET status = input.status, status_partition = input.part,
                                     status_offset = input.off, status_reason = input.reason
        FROM input
        WHERE s.order_id = input.order_id
          AND (s.status_partition IS NULL OR s.status_partition <> input.part
               OR s.status_offset < input.off)
        RETURNING s.order_id
    )
    SELECT input.order_id, updated.order_id IS NOT NULL, existing.order_id IS NOT NULL
    FROM input
    LEFT JOIN updated ON updated.order_id = input.order_id
    LEFT JOIN order_status AS existing ON existing.order_id = input.order_id";

const GET: &str = "
    SELECT orders.body, order_status.status, order_status.status_reason
    FROM orders JOIN order_status USING (order_id)
    WHERE orders.order_id = $1";

const CLAIM: &str = "
    INSERT INTO redriven_letters (dlq_topic, dlq_partition, dlq_offset, times, last_at_ms)
    VALUES ($1, $2, $3, 1, $4)
    ON CONFLICT (dlq_topic, dlq_partition, dlq_offset) DO NOTHING";

const CLAIM_AGAIN: &str = "
    INSERT INTO redriven_letters (dlq_topic, dlq_partition, dlq_offset, times, last_at_ms)
    VALUES ($1, $2, $3, 1, $4)
    ON CONFLICT (dlq_topic, dlq_partition, dlq_offset) DO UPDATE SET
        times = redriven_letters.times + 1, last_at_ms = excluded.last_at_ms";

const RELEASE: &str = "
    UPDATE redriven_letters SET times = times - 1
    WHERE dlq_topic = $1 AND dlq_partition = $2 AND dlq_offset = $3";

const FORGET: &str = "
    DELETE FROM redriven_letters
    WHERE dlq_topic = $1 AND dlq_partition = $2 AND dlq_offset = $3 AND times <= 0";

const LOOKUP: &str = "
    SELECT times, last_at_ms FROM redriven_letters
    WHERE dlq_topic = $1 AND dlq_partition = $2 AND dlq_offset = $3";

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
    StoreError::unavailable(format!("no database connection: {error}"))
}

/// Connection lost, server shutting down or overloaded, lock or serialization conflicts,
/// timeouts: unavailable. Anything else (bad data, constraint) is about the write itself.
fn classify(error: &tokio_postgres::Error) -> StoreError {
    let Some(state) = error.code() else {
        return StoreError::unavailable(error.to_string()); // I/O, closed connection
    };
    let code = state.code();
    let transient = ["08", "40", "53", "57", "58"]
        .iter()
        .any(|class| code.starts_with(class))
        || code == "55P03";
    let message = format!("{error} (SQLSTATE {code})");
    if transient {
        StoreError::unavailable(message)
    } else {
        StoreError::rejected(message)
    }
}

/// Bounds `op` by [`OP_TIMEOUT`]: a server that stopped answering is unavailable.
async fn bounded<T>(op: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    tokio::time::timeout(OP_TIMEOUT, op)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::unavailable(format!(
                "no answer from the database within {OP_TIMEOUT:?}"
            )))
        })
}

/// Applies the missing migrations under an advisory lock, so instances starting together
/// migrate once.
async fn migrate(pool: &Pool) -> Result<(), OpenError> {
    let failed = |e: tokio_postgres::Error| {
        let error = classify(&e);
        let reason = error.cause().to_string();
        if error.is_retryable() {
            OpenError::Unreachable(reason)
        } else {
            OpenError::Postgres(reason)
        }
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
        tracing::trace!(writes = batch.len(), "postgres batch");
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
    StoreError::unavailable("the database gave no result")
}

/// Applies `batch` in one transaction, a statement per kind of write per round.
async fn apply(pool: &Pool, batch: &[Write]) -> Result<Vec<Result<Done, StoreError>>, StoreError> {
    let failed = |e: tokio_postgres::Error| classify(&e);
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(failed)?;
    let create = tx.prepare_cached(CREATE_MANY).await.map_err(failed)?;
    let update = tx.prepare_cached(UPDATE_MANY).await.map_err(failed)?;
    let mut done: Vec<Option<Done>> = vec![None; batch.len()];
    for round in rounds(batch) {
        let mut creates = Columns::default();
        let mut updates = Columns::default();
        for &i in &round {
            match &batch[i].op {
                Op::Create {
                    order_id,
                    body,
                    status,
                    at,
                } => creates.push(i, order_id, Some(body), status, *at),
                Op::Status {
                    order_id,
                    status,
                    reason,
                    at,
                } => {
                    updates.push(i, order_id, None, status, *at);
                    updates.reasons.push(reason.as_deref());
                }
            }
        }
        if !creates.index.is_empty() {
            let c = &creates;
            let rows = tx
                .query(
                    &create,
                    &[&c.ids, &c.bodies, &c.statuses, &c.partitions, &c.offsets],
                )
                .await
                .map_err(failed)?;
            let applied: HashSet<&str> = rows.iter().map(|row| row.get(0)).collect();
            for (&i, id) in c.index.iter().zip(&c.ids) {
                done[i] = Some(Done::Created(if applied.contains(id) {
                    Written::Applied
                } else {
                    Written::AlreadyApplied
                }));
            }
        }
        if !updates.index.is_empty() {
            let u = &updates;
            let rows = tx
                .query(
                    &update,
                    &[&u.ids, &u.statuses, &u.partitions, &u.offsets, &u.reasons],
                )
                .await
                .map_err(failed)?;
            let outcome: HashMap<&str, (bool, bool)> = rows
                .iter()
                .map(|row| (row.get(0), (row.get(1), row.get(2))))
                .collect();
            for (&i, id) in u.index.iter().zip(&u.ids) {
                done[i] = outcome.get(id).map(|&(applied, found)| {
                    Done::Status(match (applied, found) {
                        (true, _) => StatusWrite::Written(Written::Applied),
                        (false, true) => StatusWrite::Written(Written::AlreadyApplied),
                        (false, false) => StatusWrite::NotFound,
                    })
                });
            }
        }
    }
    tx.commit().await.map_err(failed)?;
    Ok(done.into_iter().map(|d| d.ok_or_else(empty)).collect())
}

/// The writes of one kind in one round, as the statement's arrays.
#[derive(Default)]
struct Columns<'a> {
    /// Where each row's write sits in the batch.
    index: Vec<usize>,
    ids: Vec<&'a str>,
    bodies: Vec<&'a str>,
    statuses: Vec<&'a str>,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    /// Status updates only.
    reasons: Vec<Option<&'a str>>,
}

impl<'a> Columns<'a> {
    fn push(
        &mut self,
        i: usize,
        id: &'a str,
        body: Option<&'a str>,
        status: &'a str,
        at: Position,
    ) {
        self.index.push(i);
        self.ids.push(id);
        self.bodies.extend(body);
        self.statuses.push(status);
        self.partitions.push(at.partition);
        self.offsets.push(at.offset);
    }
}

/// Splits a batch, in order, into rounds in which no order id comes twice for the same kind
/// of write: one statement cannot touch a row twice. (Writes of one order come from one lane
/// per kind and wait for each other, so a batch rarely needs more than one round.)
fn rounds(batch: &[Write]) -> Vec<Vec<usize>> {
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    let mut seen: HashSet<(bool, &str)> = HashSet::new();
    for (i, write) in batch.iter().enumerate() {
        let key = match &write.op {
            Op::Create { order_id, .. } => (true, order_id.as_str()),
            Op::Status { order_id, .. } => (false, order_id.as_str()),
        };
        if !seen.insert(key) || rounds.is_empty() {
            seen.clear();
            seen.insert(key);
            rounds.push(Vec::new());
        }
        if let Some(round) = rounds.last_mut() {
            round.push(i);
        }
    }
    rounds
}

#[async_trait]
impl OrderStore for PostgresStore {
    async fn get(&self, id: &OrderId) -> Result<Option<Order>, StoreError> {
        let row = bounded(async {
            self.client()
                .await?
                .query_opt(GET, &[&id.as_str()])
                .await
                .map_err(|e| classify(&e))
        })
        .await?;
        row.map(|row| batch::order_from_row(row.get(0), row.get(1), row.get(2)))
            .transpose()
    }

    async fn create(&self, order: &Order, at: Position) -> Result<Written, StoreError> {
        self.writes.create(order, at).await
    }

    async fn update_status(
        &self,
        id: &OrderId,
        status: &Status,
        reason: Option<String>,
        at: Position,
    ) -> Result<StatusWrite, StoreError> {
        self.writes.update_status(id, status, reason, at).await
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

async fn lookup(
    client: &impl GenericClient,
    id: &LetterId,
) -> Result<Option<Redriven>, tokio_postgres::Error> {
    let row = client
        .query_opt(LOOKUP, &[&id.topic, &id.partition, &id.offset])
        .await?;
    Ok(row.map(|row| Redriven {
        times: u32::try_from(row.get::<_, i32>(0)).unwrap_or(0),
        last_at_ms: row.get(1),
    }))
}

// Claims run in one transaction: a racing run's insert of the same letter waits for it, then
// finds the row (`DO NOTHING`), so only one of them republishes the letter.
#[async_trait]
impl RedriveLedger for PostgresStore {
    async fn claim(
        &self,
        letters: &[LetterId],
        again: bool,
        at_ms: i64,
    ) -> Result<Vec<Claim>, StoreError> {
        bounded(async {
            let mut client = self.client().await?;
            let run = async {
                let tx = client.transaction().await?;
                let sql = if again { CLAIM_AGAIN } else { CLAIM };
                let mut claims = Vec::with_capacity(letters.len());
                for id in letters {
                    let inserted = tx
                        .execute(sql, &[&id.topic, &id.partition, &id.offset, &at_ms])
                        .await?;
                    let known = if inserted == 0 {
                        lookup(&tx, id).await?
                    } else {
                        None
                    };
                    claims.push(known.map_or(Claim::Claimed, Claim::Already));
                }
                tx.commit().await?;
                Ok(claims)
            };
            run.await.map_err(|e: tokio_postgres::Error| classify(&e))
        })
        .await
    }

    async fn release(&self, letters: &[LetterId]) -> Result<(), StoreError> {
        bounded(async {
            let mut client = self.client().await?;
            let run = async {
                let tx = client.transaction().await?;
                for id in letters {
                    let key: [&(dyn ToSql + Sync); 3] = [&id.topic, &id.partition, &id.offset];
                    tx.execute(RELEASE, &key).await?;
                    tx.execute(FORGET, &key).await?;
                }
                tx.commit().await
            };
            run.await.map_err(|e| classify(&e))
        })
        .await
    }

    async fn lookup(&self, letters: &[LetterId]) -> Result<Vec<Option<Redriven>>, StoreError> {
        bounded(async {
            let client = self.client().await?;
            let mut known = Vec::with_capacity(letters.len());
            for id in letters {
                known.push(lookup(&client, id).await.map_err(|e| classify(&e))?);
            }
            Ok(known)
        })
        .await
    }
}
