//! The embedded store: one SQLite file in WAL mode with `synchronous=FULL`, so a write that
//! was answered survives `kill -9` and power loss alike. One writer thread applies writes in
//! group-committed batches; reads use their own connection (WAL lets them run beside it).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ordering_core::order::{
    CreateWrite, HistoryEntry, Order, OrderId, OrderPositions, OrderStore, StatusChange,
    StatusWrite,
};
use ordering_core::{
    Claim, Position, RedriveKey, RedriveLedger, Redriven, StoreError, TopicIncarnations, Written,
};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::batch::{self, Batches, Done, Op, Queue, Write};
use crate::ledger::SqliteLedger;
use crate::statements::{
    GET, HEALTH_WRITE, HISTORY, INCARNATION, POSITIONS, PRUNE_HISTORY, status_covers,
};
use crate::{OpenError, migrations};

/// How long a statement waits for a lock held by another connection before it fails as
/// unavailable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

// The first create of an id wins: an order event for an id that exists changes nothing.
const CREATE: &str = "
    INSERT INTO orders (order_id, body, created_topic, created_partition, created_offset,
                        created_incarnation)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)
    ON CONFLICT (order_id) DO NOTHING";

const SET_CREATED_STATUS: &str = "
    INSERT INTO order_status (order_id, status) VALUES (?1, ?2)
    ON CONFLICT (order_id) DO NOTHING";

const ADD_HISTORY: &str = "
    INSERT INTO order_history (order_id, status, reason, event_time, applied_at_ms, src_topic,
                               src_partition, src_offset, src_incarnation)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

const SAME_BODY: &str = "SELECT body = ?2 FROM orders WHERE order_id = ?1";

// Applied unless the position is covered (`Position::is_covered_by`).
const UPDATE_STATUS: &str = concat!(
    "UPDATE order_status SET status = ?2, status_topic = ?3, status_partition = ?4,
        status_offset = ?5, status_reason = ?6, status_incarnation = ?7
    WHERE order_id = ?1 AND NOT ",
    status_covers!("", topic: "?3", partition: "?4", offset: "?5", incarnation: "?7")
);

// The primary key's index is in byte order (SQLite's BINARY collation): a page is a range.
const IDS: &str = "SELECT order_id FROM orders WHERE order_id > ?1 ORDER BY order_id LIMIT ?2";

const EXISTS: &str = "SELECT 1 FROM order_status WHERE order_id = ?1";

// One more than the topic's highest: the write transaction numbers one new id at a time.
const NEW_INCARNATION: &str = "
    INSERT INTO topic_incarnations (topic, topic_id, incarnation, first_seen_ms)
    SELECT ?1, ?2, COALESCE(MAX(incarnation), 0) + 1, ?3 FROM topic_incarnations WHERE topic = ?1
    RETURNING incarnation";

/// Read connections: each read takes one for its time, so a slow read (a page of ids, a
/// count) never holds up an order lookup or a health check (WAL lets them all read beside
/// the writer).
const READERS: usize = 4;

/// Orders in a SQLite file.
pub struct SqliteStore {
    writes: Queue,
    readers: Arc<[Mutex<Connection>]>,
    /// One permit per idle reader: a read waits here, not on a connection's lock.
    idle_readers: Arc<tokio::sync::Semaphore>,
    /// For writes apart from the orders (the redrive ledger, health checks, pruning): rare
    /// and small, so a connection of their own rather than the orders' group-commit queue
    /// (SQLite serialises it with the writer thread).
    apart: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating it and its directory if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let failed = |e: rusqlite::Error| open_failed(path, e);
        let mut writer = open_file(path)?;
        let mode: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(failed)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(OpenError::Sqlite {
                path: path.to_owned(),
                reason: format!("the database cannot use WAL (journal mode {mode})"),
            });
        }
        // FULL: a commit is on disk before it is answered, whatever crashes next.
        writer
            .pragma_update(None, "synchronous", "FULL")
            .map_err(failed)?;
        migrate(&mut writer).map_err(|e| match e {
            MigrateError::Sqlite(e) => failed(e),
            MigrateError::Open(e) => e,
        })?;

        let readers = (0..READERS)
            .map(|_| {
                let reader = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                reader.busy_timeout(BUSY_TIMEOUT)?;
                Ok(Mutex::new(reader))
            })
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(failed)?;
        let apart = Connection::open(path).map_err(failed)?;
        apart.busy_timeout(BUSY_TIMEOUT).map_err(failed)?;
        apart
            .pragma_update(None, "synchronous", "FULL")
            .map_err(failed)?;

        let (writes, batches) = batch::queue();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(writer, batches))
            .map_err(|e| OpenError::Sqlite {
                path: path.to_owned(),
                reason: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(Self {
            writes,
            readers: readers.into(),
            idle_readers: Arc::new(tokio::sync::Semaphore::new(READERS)),
            apart: Arc::new(Mutex::new(apart)),
            path: path.to_owned(),
        })
    }

    /// Runs `read` on an idle reader connection, off the async runtime.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let turn = self
            .idle_readers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::unavailable("the store is closed"))?;
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            // With a permit, at least one reader is idle.
            let conn = readers
                .iter()
                .find_map(|reader| match reader.try_lock() {
                    Ok(conn) => Some(conn),
                    // A panic elsewhere cannot leave a connection half-used: keep serving.
                    Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
                    Err(std::sync::TryLockError::WouldBlock) => None,
                })
                .ok_or_else(|| StoreError::unavailable("no idle read connection"))?;
            let result = read(&conn).map_err(classify);
            drop(conn);
            drop(turn);
            result
        })
        .await
        .map_err(|e| StoreError::unavailable(format!("the read task failed: {e}")))?
    }

    /// Runs `write` in one immediate transaction on the connection for writes apart from the
    /// orders, off the runtime.
    async fn write_apart<T: Send + 'static>(
        &self,
        write: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        write_on(&self.apart, write).await
    }

    /// The redrive ledger, on the connection for writes apart from the orders.
    fn ledger(&self) -> SqliteLedger {
        SqliteLedger::on(self.apart.clone())
    }
}

enum MigrateError {
    Sqlite(rusqlite::Error),
    Open(OpenError),
}

impl From<rusqlite::Error> for MigrateError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

/// Applies the missing migrations; the version is SQLite's `user_version`.
fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let current: u32 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let pending = migrations::pending(migrations::SQLITE, current).map_err(MigrateError::Open)?;
    for migration in pending {
        tx.execute_batch(migration.sql)?;
        tx.pragma_update(None, "user_version", migration.version)?;
        tracing::info!(version = migration.version, "sqlite order store migrated");
    }
    tx.commit()?;
    Ok(())
}

/// The writer thread: one transaction per batch, every write answered after the commit.
fn write_loop(mut conn: Connection, mut batches: Batches) {
    while let Some(batch) = batch::next_batch_blocking(&mut batches) {
        tracing::trace!(writes = batch.len(), "sqlite batch");
        match apply(&mut conn, &batch) {
            Ok(results) => {
                for (write, result) in batch.into_iter().zip(results) {
                    write.answer(result);
                }
            }
            Err(error) => {
                // Nothing of the batch was committed. That is never a write's own fault (its
                // own errors stay in its savepoint): every write waits, and is tried again.
                let error = StoreError::unavailable(error);
                tracing::warn!(%error, writes = batch.len(), "sqlite batch not committed");
                for write in batch {
                    write.answer(Err(error.clone()));
                }
            }
        }
    }
}

/// Applies `batch` in one transaction, each write in a savepoint of its own: a write that
/// fails leaves nothing of itself behind and gets its own error; the others still commit.
fn apply(
    conn: &mut Connection,
    batch: &[Write],
) -> rusqlite::Result<Vec<Result<Done, StoreError>>> {
    let mut tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(batch.len());
    let now = crate::now_ms();
    for write in batch {
        let savepoint = tx.savepoint()?;
        let result = apply_one(&savepoint, &write.op, now);
        match result {
            Ok(done) => {
                savepoint.commit()?;
                results.push(Ok(done));
            }
            Err(error) => {
                // Dropping the savepoint rolls it back.
                drop(savepoint);
                results.push(Err(classify(error)));
            }
        }
    }
    tx.commit()?;
    Ok(results)
}

/// Adds a row to an order's history, in the write's own savepoint.
fn add_history(
    conn: &Connection,
    order_id: &str,
    (status, reason, event_time): (&str, Option<&str>, Option<&str>),
    at: &Position,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(ADD_HISTORY)?
        .execute(params![
            order_id,
            status,
            reason,
            event_time,
            now,
            &*at.topic,
            at.partition,
            at.offset,
            at.incarnation
        ])
        .map(drop)
}

fn apply_one(conn: &Connection, op: &Op, now: i64) -> rusqlite::Result<Done> {
    match op {
        Op::Create {
            order_id,
            body,
            status,
            event_time,
            at,
        } => {
            let created = conn.prepare_cached(CREATE)?.execute(params![
                order_id,
                body,
                &*at.topic,
                at.partition,
                at.offset,
                at.incarnation
            ])?;
            if created > 0 {
                conn.prepare_cached(SET_CREATED_STATUS)?
                    .execute(params![order_id, status])?;
                let entry = (status.as_str(), None, Some(event_time.as_str()));
                add_history(conn, order_id, entry, at, now)?;
                return Ok(Done::Created(CreateWrite::Written(Written::Applied)));
            }
            let same: bool = conn
                .prepare_cached(SAME_BODY)?
                .query_row(params![order_id, body], |row| row.get(0))?;
            Ok(Done::Created(if same {
                CreateWrite::Written(Written::AlreadyApplied)
            } else {
                CreateWrite::Duplicate
            }))
        }
        Op::Status {
            order_id,
            status,
            reason,
            event_time,
            at,
        } => {
            let changed = conn.prepare_cached(UPDATE_STATUS)?.execute(params![
                order_id,
                status,
                &*at.topic,
                at.partition,
                at.offset,
                reason,
                at.incarnation
            ])?;
            if changed > 0 {
                let entry = (status.as_str(), reason.as_deref(), event_time.as_deref());
                add_history(conn, order_id, entry, at, now)?;
                return Ok(Done::Status(StatusWrite::Written(Written::Applied)));
            }
            let exists = conn
                .prepare_cached(EXISTS)?
                .query_row(params![order_id], |_| Ok(()))
                .optional()?
                .is_some();
            Ok(Done::Status(if exists {
                StatusWrite::Written(Written::AlreadyApplied)
            } else {
                StatusWrite::NotFound
            }))
        }
    }
}

/// What went wrong opening the file at `path`.
pub(crate) fn open_failed(path: &Path, e: rusqlite::Error) -> OpenError {
    OpenError::Sqlite {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// A connection to the SQLite file at `path` (made, with its directory, if missing) that
/// waits [`BUSY_TIMEOUT`] for another connection's lock.
pub(crate) fn open_file(path: &Path) -> Result<Connection, OpenError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| OpenError::Sqlite {
            path: path.to_owned(),
            reason: format!("cannot create {}: {e}", dir.display()),
        })?;
    }
    let conn = Connection::open(path).map_err(|e| open_failed(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| open_failed(path, e))?;
    Ok(conn)
}

/// Runs `write` in one immediate transaction on `conn`, off the runtime.
pub(crate) async fn write_on<T: Send + 'static>(
    conn: &Arc<Mutex<Connection>>,
    write: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
) -> Result<T, StoreError> {
    let conn = conn.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(classify)?;
        let done = write(&tx).map_err(classify)?;
        tx.commit().map_err(classify)?;
        Ok(done)
    })
    .await
    .map_err(|e| StoreError::unavailable(format!("the write task failed: {e}")))?
}

/// Only a broken constraint, a value of the wrong type or one too big are the write's fault.
/// Everything else is the database's state and waits as unavailable: busy, locked, I/O, a
/// full disk, a file that cannot be opened or written, and a corrupt database too, which a
/// person must repair (no record is to blame for it).
pub(crate) fn classify(error: rusqlite::Error) -> StoreError {
    match error.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch | ErrorCode::TooBig) => {
            StoreError::rejected(error)
        }
        _ => StoreError::unavailable(error),
    }
}

#[async_trait]
impl OrderStore for SqliteStore {
    async fn get(&self, id: &OrderId) -> Result<Option<Order>, StoreError> {
        let id = id.to_string();
        let row = self
            .read(move |conn| {
                conn.prepare_cached(GET)?
                    .query_row(params![id], |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, Option<String>>(2)?,
                        ))
                    })
                    .optional()
            })
            .await?;
        row.map(|(body, status, reason)| batch::order_from_row(&body, &status, reason))
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
        let id = id.to_string();
        let limit = limit.min(batch::MAX_HISTORY_PAGE) as i64;
        let rows = self
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(HISTORY)?;
                let rows = stmt.query_map(params![id, after.unwrap_or(0), limit], |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                        row.get(6)?,
                        row.get(7)?,
                        row.get(8)?,
                    ))
                })?;
                rows.collect::<rusqlite::Result<Vec<batch::HistoryRow>>>()
            })
            .await?;
        Ok(rows.into_iter().map(batch::history_entry).collect())
    }

    async fn prune_history(&self, before_ms: i64, limit: usize) -> Result<u64, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.write_apart(move |tx| tx.execute(PRUNE_HISTORY, params![before_ms, limit]))
            .await
            .map(|n| n as u64)
    }

    async fn positions(&self, id: &OrderId) -> Result<Option<OrderPositions>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| {
            conn.prepare_cached(POSITIONS)?
                .query_row(params![id], |row| {
                    let position = |topic: Option<String>, partition, offset, incarnation| {
                        Position::new(topic.unwrap_or_default(), partition, offset)
                            .in_incarnation(incarnation)
                    };
                    let status = match (row.get(5)?, row.get(6)?, row.get(7)?) {
                        (Some(partition), Some(offset), Some(incarnation)) => {
                            Some(position(row.get(4)?, partition, offset, incarnation))
                        }
                        _ => None,
                    };
                    Ok(OrderPositions {
                        created: position(row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?),
                        status,
                    })
                })
                .optional()
        })
        .await
    }

    async fn ids(&self, after: Option<OrderId>, limit: usize) -> Result<Vec<OrderId>, StoreError> {
        // No id is empty: "" is before the first.
        let after = after.map(|id| id.to_string()).unwrap_or_default();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let raw = self
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(IDS)?;
                let ids = stmt
                    .query_map(params![after, limit], |row| row.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()?;
                Ok(ids)
            })
            .await?;
        crate::parse_ids(raw)
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            conn.query_row("SELECT orders FROM order_count WHERE one = 1", [], |row| {
                row.get(0)
            })
        })
        .await
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        let now = crate::now_ms();
        self.write_apart(move |tx| tx.execute(HEALTH_WRITE, params![now]).map(drop))
            .await
    }
}

#[async_trait]
impl TopicIncarnations for SqliteStore {
    async fn incarnation(&self, topic: &str, topic_id: &str) -> Result<u32, StoreError> {
        let (name, id, now) = (topic.to_owned(), topic_id.to_owned(), crate::now_ms());
        let n: i64 = self
            .write_apart(move |tx| {
                let known = tx
                    .prepare_cached(INCARNATION)?
                    .query_row(params![name, id], |row| row.get(0))
                    .optional()?;
                match known {
                    Some(n) => Ok(n),
                    None => tx
                        .prepare_cached(NEW_INCARNATION)?
                        .query_row(params![name, id, now], |row| row.get(0)),
                }
            })
            .await?;
        u32::try_from(n).map_err(|_| {
            StoreError::rejected(format!("incarnation {n} of topic {topic} is out of range"))
        })
    }
}

#[async_trait]
impl RedriveLedger for SqliteStore {
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
