//! The shared store: a PostgreSQL database that several order-shell instances use at once.
//! A pool of connections with bounded timeouts serves reads; one writer task group-commits
//! writes: a batch is one transaction of one statement per kind of write.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use ordering_core::order::{
    CreateWrite, HistoryEntry, Order, OrderId, OrderPositions, OrderStore, StatusChange,
    StatusWrite,
};
use ordering_core::{
    Claim, FIRST_INCARNATION, Position, RedriveKey, RedriveLedger, Redriven, StoreError,
    TopicIncarnations, Written,
};
use std::collections::{HashMap, HashSet};

use crate::batch::{self, Batches, Done, Op, Queue, Write};
use crate::ledger::PostgresLedger;
use crate::statements::{
    GET, HEALTH_WRITE, HISTORY, INCARNATION, POSITIONS, PRUNE_HISTORY, status_covers,
};
use crate::{OpenError, PostgresUrl, Refusal, migrations};

/// The longest any one store operation (taking a connection included) may take.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Connecting, and waiting for a pooled connection, at most.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Per statement, enforced by the server.
const STATEMENT_TIMEOUT_MS: u32 = 5000;
/// Connections per store for reads, the ledger and health; the writer has one of its own.
const POOL_SIZE: usize = 8;
/// Serializes migrations of instances starting together (any constant unique to this crate).
const MIGRATION_LOCK: i64 = 0x6f72_6465_7273; // "orders"

// A batch is applied with one statement per kind of write, its values passed as arrays: a
// statement per write (even pipelined) costs the server a parse-bind-execute round each, and
// measured 3 to 4 times slower.
//
// The first create of an id wins: an order event for an id that exists changes nothing. Per
// input row: created, whether an order was there, and whether it has the same body, which
// tells applied, already applied (the same order again) and duplicate (another order under
// that id) apart. The outer query sees the table as it was when the statement began: an
// order another transaction created meanwhile is neither created nor there (see `apply`).
const CREATE_MANY: &str = "
    WITH input (order_id, body, status, topic, part, off, event_time, inc) AS (
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[],
                             $6::int8[], $7::text[], $9::int4[])
    ), created AS (
        INSERT INTO orders AS o (order_id, body, created_topic, created_partition, created_offset,
                                 created_incarnation)
        SELECT order_id, body, topic, part, off, inc FROM input
        ON CONFLICT (order_id) DO NOTHING
        RETURNING o.order_id
    ), statuses AS (
        INSERT INTO order_status (order_id, status)
        SELECT input.order_id, input.status FROM input JOIN created USING (order_id)
        ON CONFLICT (order_id) DO NOTHING
    ), history AS (
        INSERT INTO order_history (order_id, status, event_time, applied_at_ms, src_topic,
                                   src_partition, src_offset, src_incarnation)
        SELECT input.order_id, input.status, input.event_time, $8, input.topic, input.part,
               input.off, input.inc
        FROM input JOIN created USING (order_id)
    )
    SELECT input.order_id, created.order_id IS NOT NULL, existing.order_id IS NOT NULL,
           COALESCE(existing.body = input.body, false)
    FROM input
    LEFT JOIN created ON created.order_id = input.order_id
    LEFT JOIN orders AS existing ON existing.order_id = input.order_id";

// Per input row: applied, and whether the order exists (the outer query sees the table as it
// was before this statement), which tells applied, already applied and not found apart.
// Applied unless the position is covered (`Position::is_covered_by`).
const UPDATE_MANY: &str = concat!(
    "
    WITH input (order_id, status, topic, part, off, reason, event_time, inc) AS (
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int4[], $5::int8[],
                             $6::text[], $7::text[], $9::int4[])
    ), updated AS (
        UPDATE order_status AS s SET status = input.status, status_topic = input.topic,
                                     status_partition = input.part, status_offset = input.off,
                                     status_reason = input.reason,
                                     status_incarnation = input.inc
        FROM input
        WHERE s.order_id = input.order_id AND NOT ",
    status_covers!("s.", topic: "input.topic", partition: "input.part", offset: "input.off",
                   incarnation: "input.inc"),
    "
        RETURNING s.order_id
    ), history AS (
        INSERT INTO order_history (order_id, status, reason, event_time, applied_at_ms,
                                   src_topic, src_partition, src_offset, src_incarnation)
        SELECT input.order_id, input.status, input.reason, input.event_time, $8, input.topic,
               input.part, input.off, input.inc
        FROM input JOIN updated USING (order_id)
    )
    SELECT input.order_id, updated.order_id IS NOT NULL, existing.order_id IS NOT NULL
    FROM input
    LEFT JOIN updated ON updated.order_id = input.order_id
    LEFT JOIN order_status AS existing ON existing.order_id = input.order_id"
);

// Byte order, as everywhere else, whatever the database's collation; the index
// `orders_id_bytes` makes a page a range scan.
const IDS: &str = "
    SELECT order_id FROM orders WHERE order_id COLLATE \"C\" > $1
    ORDER BY order_id COLLATE \"C\" LIMIT $2";

// Kept by triggers (migration 6): no scan of the orders.
const COUNT: &str = "SELECT COALESCE(SUM(orders), 0)::BIGINT FROM order_count";

// Numbers one new id at a time (the lock conflicts with itself, not with reads): one more
// than the topic's highest.
const LOCK_INCARNATIONS: &str = "LOCK TABLE topic_incarnations IN SHARE ROW EXCLUSIVE MODE";
const NEW_INCARNATION: &str = "
    INSERT INTO topic_incarnations (topic, topic_id, incarnation, first_seen_ms)
    SELECT $1, $2, COALESCE(MAX(incarnation), 0) + 1, $3 FROM topic_incarnations WHERE topic = $1
    ON CONFLICT (topic, topic_id) DO NOTHING";

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
    /// Connects as `url` says (TLS included), migrates, and starts the writer task on the
    /// current tokio runtime.
    pub async fn open(url: &PostgresUrl) -> Result<Self, OpenError> {
        let pool = url.pool(POOL_SIZE, "ordering-store")?;
        migrate(&pool).await?;
        // The writer's own connection: however many requests want one from the pool (a
        // flood of /health and /api/stats), the consumer's writes never wait behind them.
        let writer = url.pool(1, "ordering-store writer")?;
        let (writes, batches) = batch::queue();
        tokio::spawn(write_loop(writer, batches));
        Ok(Self { pool, writes })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// The redrive ledger, on the store's pool.
    fn ledger(&self) -> PostgresLedger {
        PostgresLedger::on(self.pool.clone())
    }
}

impl PostgresUrl {
    /// A pool of up to `size` connections as this URL says (TLS included), with bounded
    /// waits for a connection and a per-statement timeout on the server unless the URL sets
    /// `options`; connections are made when first needed. `application_name` unless the URL
    /// names one.
    pub fn pool(&self, size: usize, application_name: &str) -> Result<Pool, OpenError> {
        let mut config = self.config();
        let tls = self.tls().map_err(OpenError::Postgres)?;
        config.connect_timeout(CONNECT_TIMEOUT);
        config.keepalives(true);
        if config.get_application_name().is_none() {
            config.application_name(application_name);
        }
        if config.get_options().is_none() {
            config.options(format!("-c statement_timeout={STATEMENT_TIMEOUT_MS}"));
        }
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| OpenError::Postgres(e.to_string()))
    }
}

/// A first connection from `pool`, for a start-up: a refusal (login, TLS) is a setting to
/// fix, anything else is worth waiting for.
pub async fn first_connection(pool: &Pool) -> Result<deadpool_postgres::Object, OpenError> {
    pool.get().await.map_err(|e| match &e {
        deadpool_postgres::PoolError::Backend(backend) => match Refusal::of(backend) {
            Some(refusal) => OpenError::Refused(refusal),
            None => OpenError::Unreachable(connect_error(&e)),
        },
        _ => OpenError::Unreachable(connect_error(&e)),
    })
}

pub(crate) fn pool_error(error: deadpool_postgres::PoolError) -> StoreError {
    StoreError::unavailable(format!("no database connection: {}", connect_error(&error)))
}

/// Why no connection could be had, in words a person can act on: tokio-postgres's own
/// display of a server's refusal is only "db error".
pub fn connect_error(error: &deadpool_postgres::PoolError) -> String {
    match error {
        deadpool_postgres::PoolError::Backend(e) => match (Refusal::of(e), e.as_db_error()) {
            (Some(refusal), _) => refusal.to_string(),
            (None, Some(db)) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
            (None, None) => e.to_string(),
        },
        other => other.to_string(),
    }
}

/// Only bad data (SQLSTATE class 22) and a broken constraint (class 23) are the write's
/// fault. Everything else is the database's state, not the record's, and waits as
/// unavailable: a lost connection, a server shutting down or overloaded, conflicts and
/// timeouts, and also a standby's read-only transactions after a failover (25006), a revoked
/// grant (42501), a missing table (42P01) and internal errors (XX000), which a person fixes.
pub(crate) fn classify(error: &tokio_postgres::Error) -> StoreError {
    let Some(state) = error.code() else {
        return StoreError::unavailable(error.to_string()); // I/O, closed connection
    };
    let code = state.code();
    // The server's own words ("cannot execute INSERT in a read-only transaction"), which
    // tokio-postgres's display leaves out.
    let message = match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {code})", db.message()),
        None => format!("{error} (SQLSTATE {code})"),
    };
    if code.starts_with("22") || code.starts_with("23") {
        StoreError::rejected(message)
    } else {
        StoreError::unavailable(message)
    }
}

/// Bounds `op` by [`OP_TIMEOUT`]: a server that stopped answering is unavailable.
pub(crate) async fn bounded<T>(
    op: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(OP_TIMEOUT, op)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::unavailable(format!(
                "no answer from the database within {OP_TIMEOUT:?}"
            )))
        })
}

/// A statement that failed while opening: worth waiting for, or for a person to fix.
pub(crate) fn open_failed(e: tokio_postgres::Error) -> OpenError {
    let error = classify(&e);
    let reason = error.cause().to_string();
    if error.is_retryable() {
        OpenError::Unreachable(reason)
    } else {
        OpenError::Postgres(reason)
    }
}

/// Applies the missing migrations under an advisory lock, so instances starting together
/// migrate once.
async fn migrate(pool: &Pool) -> Result<(), OpenError> {
    let failed = open_failed;
    let mut client = first_connection(pool).await?;
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
    let now = crate::now_ms();
    for round in rounds(batch) {
        let mut creates = Columns::default();
        let mut updates = Columns::default();
        for &i in &round {
            match &batch[i].op {
                Op::Create {
                    order_id,
                    body,
                    status,
                    event_time,
                    at,
                } => {
                    creates.push(i, order_id, Some(body), status, at);
                    creates.event_times.push(Some(event_time));
                }
                Op::Status {
                    order_id,
                    status,
                    reason,
                    event_time,
                    at,
                } => {
                    updates.push(i, order_id, None, status, at);
                    updates.reasons.push(reason.as_deref());
                    updates.event_times.push(event_time.as_deref());
                }
            }
        }
        if !creates.index.is_empty() {
            let c = &creates;
            let rows = tx
                .query(
                    &create,
                    &[
                        &c.ids,
                        &c.bodies,
                        &c.statuses,
                        &c.topics,
                        &c.partitions,
                        &c.offsets,
                        &c.event_times,
                        &now,
                        &c.incarnations,
                    ],
                )
                .await
                .map_err(failed)?;
            let outcome: HashMap<&str, (bool, bool, bool)> = rows
                .iter()
                .map(|row| (row.get(0), (row.get(1), row.get(2), row.get(3))))
                .collect();
            for (&i, id) in c.index.iter().zip(&c.ids) {
                done[i] = outcome.get(id).and_then(|&(created, existed, same)| {
                    Some(Done::Created(match (created, existed, same) {
                        (true, _, _) => CreateWrite::Written(Written::Applied),
                        (false, true, true) => CreateWrite::Written(Written::AlreadyApplied),
                        (false, true, false) => CreateWrite::Duplicate,
                        // Created by another transaction while this statement ran (two
                        // instances replaying one record): not known yet whether it is the
                        // same order. Left unanswered, the write fails as unavailable and
                        // its retry reads the order.
                        (false, false, _) => return None,
                    }))
                });
            }
        }
        if !updates.index.is_empty() {
            let u = &updates;
            let rows = tx
                .query(
                    &update,
                    &[
                        &u.ids,
                        &u.statuses,
                        &u.topics,
                        &u.partitions,
                        &u.offsets,
                        &u.reasons,
                        &u.event_times,
                        &now,
                        &u.incarnations,
                    ],
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
    topics: Vec<&'a str>,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    incarnations: Vec<i32>,
    /// Status updates only.
    reasons: Vec<Option<&'a str>>,
    event_times: Vec<Option<&'a str>>,
}

impl<'a> Columns<'a> {
    fn push(
        &mut self,
        i: usize,
        id: &'a str,
        body: Option<&'a str>,
        status: &'a str,
        at: &'a Position,
    ) {
        self.index.push(i);
        self.ids.push(id);
        self.bodies.extend(body);
        self.statuses.push(status);
        self.topics.push(&at.topic);
        self.partitions.push(at.partition);
        self.offsets.push(at.offset);
        self.incarnations.push(sql_int(at.incarnation));
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
        // A round applies its creates before its updates: a create of an order that an
        // earlier write of the round updates starts a round of its own, so the update finds
        // nothing, as it would applied in batch order (as SQLite does).
        let updated_before = key.0 && seen.contains(&(false, key.1));
        if !seen.insert(key) || updated_before || rounds.is_empty() {
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

    async fn create(&self, order: &Order, at: Position) -> Result<CreateWrite, StoreError> {
        self.writes.create(order, at).await
    }

    async fn update_status(
        &self,
        id: &OrderId,
        change: StatusChange,
    ) -> Result<StatusWrite, StoreError> {
        self.writes.update_status(id, change).await
    }

    async fn history(
        &self,
        id: &OrderId,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let limit = limit.min(batch::MAX_HISTORY_PAGE) as i64;
        let rows = bounded(async {
            let client = self.client().await?;
            client
                .query(HISTORY, &[&id.as_str(), &after.unwrap_or(0), &limit])
                .await
                .map_err(|e| classify(&e))
        })
        .await?;
        Ok(rows
            .iter()
            .map(|row| {
                batch::history_entry((
                    row.get(0),
                    row.get(1),
                    row.get(2),
                    row.get(3),
                    row.get(4),
                    row.get(5),
                    row.get(6),
                    row.get(7),
                    u32::try_from(row.get::<_, i32>(8)).unwrap_or(FIRST_INCARNATION),
                ))
            })
            .collect())
    }

    async fn prune_history(&self, before_ms: i64, limit: usize) -> Result<u64, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        bounded(async {
            let client = self.client().await?;
            client
                .execute(PRUNE_HISTORY, &[&before_ms, &limit])
                .await
                .map_err(|e| classify(&e))
        })
        .await
    }

    async fn positions(&self, id: &OrderId) -> Result<Option<OrderPositions>, StoreError> {
        let row = bounded(async {
            self.client()
                .await?
                .query_opt(POSITIONS, &[&id.as_str()])
                .await
                .map_err(|e| classify(&e))
        })
        .await?;
        Ok(row.map(|row| {
            let position = |topic: Option<String>, partition, offset, incarnation: i32| {
                Position::new(topic.unwrap_or_default(), partition, offset)
                    .in_incarnation(u32::try_from(incarnation).unwrap_or(FIRST_INCARNATION))
            };
            let status = match (row.get(5), row.get(6), row.get(7)) {
                (Some(partition), Some(offset), Some(incarnation)) => {
                    Some(position(row.get(4), partition, offset, incarnation))
                }
                _ => None,
            };
            OrderPositions {
                created: position(row.get(0), row.get(1), row.get(2), row.get(3)),
                status,
            }
        }))
    }

    async fn ids(&self, after: Option<OrderId>, limit: usize) -> Result<Vec<OrderId>, StoreError> {
        // No id is empty: "" is before the first.
        let after = after.map(String::from).unwrap_or_default();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = bounded(async {
            self.client()
                .await?
                .query(IDS, &[&after, &limit])
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
                .query_one(COUNT, &[])
                .await
                .map_err(|e| classify(&e))
        })
        .await?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        bounded(async {
            self.client()
                .await?
                .execute(HEALTH_WRITE, &[&crate::now_ms()])
                .await
                .map(drop)
                .map_err(|e| classify(&e))
        })
        .await
    }
}

/// A count as PostgreSQL's `INTEGER`; counts past its range do not occur.
pub(crate) fn sql_int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[async_trait]
impl TopicIncarnations for PostgresStore {
    async fn incarnation(&self, topic: &str, topic_id: &str) -> Result<u32, StoreError> {
        let n: i32 = bounded(async {
            let mut client = self.client().await?;
            let run = async {
                if let Some(row) = client.query_opt(INCARNATION, &[&topic, &topic_id]).await? {
                    return Ok(row.get(0));
                }
                // Another instance may number it meanwhile: look again under the lock.
                let tx = client.transaction().await?;
                tx.batch_execute(LOCK_INCARNATIONS).await?;
                tx.execute(NEW_INCARNATION, &[&topic, &topic_id, &crate::now_ms()])
                    .await?;
                let row = tx.query_one(INCARNATION, &[&topic, &topic_id]).await?;
                tx.commit().await?;
                Ok(row.get(0))
            };
            run.await.map_err(|e: tokio_postgres::Error| classify(&e))
        })
        .await?;
        u32::try_from(n).map_err(|_| {
            StoreError::rejected(format!("incarnation {n} of topic {topic} is out of range"))
        })
    }
}

#[async_trait]
impl RedriveLedger for PostgresStore {
    async fn claim(
        &self,
        records: &[RedriveKey],
        again: bool,
        at_ms: i64,
    ) -> Result<Vec<Claim>, StoreError> {
        self.ledger().claim(records, again, at_ms).await
    }

    async fn release(&self, records: &[RedriveKey]) -> Result<(), StoreError> {
        self.ledger().release(records).await
    }

    async fn lookup(&self, records: &[RedriveKey]) -> Result<Vec<Option<Redriven>>, StoreError> {
        self.ledger().lookup(records).await
    }
}
