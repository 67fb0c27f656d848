//! The embedded store: one SQLite file in WAL mode with `synchronous=FULL`, so a write that
//! was answered survives `kill -9` and power loss alike. One writer thread applies writes in
//! group-committed batches; reads use their own connection (WAL lets them run beside it).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ordering_core::order::{Order, OrderId, OrderStore, Status, StatusWrite};
use ordering_core::{Claim, LetterId, Position, RedriveLedger, Redriven, StoreError, Written};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::batch::{self, Batches, Done, Op, Queue, Write};
use crate::{OpenError, migrations};

/// How long a statement waits for a lock held by another connection before it fails as
/// unavailable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const CREATE: &str = "
    INSERT INTO orders (order_id, body, created_partition, created_offset)
    VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT (order_id) DO UPDATE SET
        body = excluded.body,
        created_partition = excluded.created_partition, created_offset = excluded.created_offset
    WHERE orders.created_partition <> excluded.created_partition
       OR orders.created_offset < excluded.created_offset";

// A created (or re-created) order takes the event's status; the position of the last status
// update stays, so that update's redeliveries still change nothing.
const SET_CREATED_STATUS: &str = "
    INSERT INTO order_status (order_id, status) VALUES (?1, ?2)
    ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, status_reason = NULL";

const UPDATE_STATUS: &str = "
    UPDATE order_status SET status = ?2, status_partition = ?3, status_offset = ?4,
        status_reason = ?5
    WHERE order_id = ?1
      AND (status_partition IS NULL OR status_partition <> ?3 OR status_offset < ?4)";

const EXISTS: &str = "SELECT 1 FROM order_status WHERE order_id = ?1";

const GET: &str = "
    SELECT orders.body, order_status.status, order_status.status_reason
    FROM orders JOIN order_status USING (order_id)
    WHERE orders.order_id = ?1";

const CLAIM: &str = "
    INSERT INTO redriven_letters (dlq_topic, dlq_partition, dlq_offset, times, last_at_ms)
    VALUES (?1, ?2, ?3, 1, ?4)
    ON CONFLICT (dlq_topic, dlq_partition, dlq_offset) DO NOTHING";

const CLAIM_AGAIN: &str = "
    INSERT INTO redriven_letters (dlq_topic, dlq_partition, dlq_offset, times, last_at_ms)
    VALUES (?1, ?2, ?3, 1, ?4)
    ON CONFLICT (dlq_topic, dlq_partition, dlq_offset) DO UPDATE SET
        times = redriven_letters.times + 1, last_at_ms = excluded.last_at_ms";

const RELEASE: &str = "
    UPDATE redriven_letters SET times = times - 1
    WHERE dlq_topic = ?1 AND dlq_partition = ?2 AND dlq_offset = ?3";

const FORGET: &str = "
    DELETE FROM redriven_letters
    WHERE dlq_topic = ?1 AND dlq_partition = ?2 AND dlq_offset = ?3 AND times <= 0";

const LOOKUP: &str = "
    SELECT times, last_at_ms FROM redriven_letters
    WHERE dlq_topic = ?1 AND dlq_partition = ?2 AND dlq_offset = ?3";

/// Orders in a SQLite file.
pub struct SqliteStore {
    writes: Queue,
    reader: Arc<Mutex<Connection>>,
    /// For the redrive ledger: rare, small writes, so a connection of their own rather than
    /// the orders' group-commit queue (SQLite serialises it with the writer thread).
    ledger: Arc<Mutex<Connection>>,
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
        let failed = |e: rusqlite::Error| OpenError::Sqlite {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| OpenError::Sqlite {
                path: path.to_owned(),
                reason: format!("cannot create {}: {e}", dir.display()),
            })?;
        }
        let mut writer = Connection::open(path).map_err(failed)?;
        writer.busy_timeout(BUSY_TIMEOUT).map_err(failed)?;
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

        let reader = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(failed)?;
        reader.busy_timeout(BUSY_TIMEOUT).map_err(failed)?;
        let ledger = Connection::open(path).map_err(failed)?;
        ledger.busy_timeout(BUSY_TIMEOUT).map_err(failed)?;
        ledger
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
            reader: Arc::new(Mutex::new(reader)),
            ledger: Arc::new(Mutex::new(ledger)),
            path: path.to_owned(),
        })
    }

    /// Runs `read` on the reader connection, off the async runtime.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            // A panic elsewhere cannot leave a connection half-used: keep serving.
            let conn = reader.lock().unwrap_or_else(|e| e.into_inner());
            read(&conn).map_err(classify)
        })
        .await
        .map_err(|e| StoreError::unavailable(format!("the read task failed: {e}")))?
    }

    /// Runs `write` in one immediate transaction on the ledger's connection, off the runtime.
    async fn ledger<T: Send + 'static>(
        &self,
        write: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let ledger = self.ledger.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = ledger.lock().unwrap_or_else(|e| e.into_inner());
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(classify)?;
            let done = write(&tx).map_err(classify)?;
            tx.commit().map_err(classify)?;
            Ok(done)
        })
        .await
        .map_err(|e| StoreError::unavailable(format!("the ledger task failed: {e}")))?
    }
}

fn lookup(conn: &Connection, id: &LetterId) -> rusqlite::Result<Option<Redriven>> {
    conn.prepare_cached(LOOKUP)?
        .query_row(params![id.topic, id.partition, id.offset], |row| {
            Ok(Redriven {
                times: u32::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                last_at_ms: row.get(1)?,
            })
        })
        .optional()
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
                // Nothing of the batch was committed: every write fails, and is tried again.
                let error = classify(error);
                tracing::warn!(%error, writes = batch.len(), "sqlite batch not committed");
                for write in batch {
                    write.answer(Err(error.clone()));
                }
            }
        }
    }
}

/// Applies `batch` in one transaction. A write that fails alone gets its own error; the
/// others still commit.
fn apply(
    conn: &mut Connection,
    batch: &[Write],
) -> rusqlite::Result<Vec<Result<Done, StoreError>>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let results = batch
        .iter()
        .map(|write| apply_one(&tx, &write.op).map_err(classify))
        .collect();
    tx.commit()?;
    Ok(results)
}

fn apply_one(conn: &Connection, op: &Op) -> rusqlite::Result<Done> {
    match op {
        Op::Create {
            order_id,
            body,
            status,
            at,
        } => {
            let changed = conn.prepare_cached(CREATE)?.execute(params![
                order_id,
                body,
                at.partition,
                at.offset
            ])?;
            if changed > 0 {
                conn.prepare_cached(SET_CREATED_STATUS)?
                    .execute(params![order_id, status])?;
            }
            Ok(Done::Created(written(changed)))
        }
        Op::Status {
            order_id,
            status,
            reason,
            at,
        } => {
            let changed = conn.prepare_cached(UPDATE_STATUS)?.execute(params![
                order_id,
                status,
                at.partition,
                at.offset,
                reason
            ])?;
            if changed > 0 {
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

fn written(changed: usize) -> Written {
    if changed > 0 {
        Written::Applied
    } else {
        Written::AlreadyApplied
    }
}

/// Busy, locked, I/O, full disk, cannot open: the store is unavailable. Anything else is
/// about the write itself.
fn classify(error: rusqlite::Error) -> StoreError {
    let code = error.sqlite_error_code();
    match code {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen
            | ErrorCode::OutOfMemory
            | ErrorCode::ReadOnly
            | ErrorCode::FileLockingProtocolFailed,
        ) => StoreError::unavailable(error),
        _ => StoreError::rejected(error),
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
        let raw = self
            .read(|conn| {
                let mut stmt =
                    conn.prepare_cached("SELECT order_id FROM orders ORDER BY order_id")?;
                let ids = stmt
                    .query_map([], |row| row.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()?;
                Ok(ids)
            })
            .await?;
        crate::parse_ids(raw)
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.read(|conn| conn.query_row("SELECT COUNT(*) FROM orders", [], |row| row.get(0)))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
            .await
    }
}

#[async_trait]
impl RedriveLedger for SqliteStore {
    async fn claim(
        &self,
        letters: &[LetterId],
        again: bool,
        at_ms: i64,
    ) -> Result<Vec<Claim>, StoreError> {
        let letters = letters.to_vec();
        self.ledger(move |tx| {
            let sql = if again { CLAIM_AGAIN } else { CLAIM };
            let mut claims = Vec::with_capacity(letters.len());
            for id in &letters {
                let inserted = tx.prepare_cached(sql)?.execute(params![
                    id.topic,
                    id.partition,
                    id.offset,
                    at_ms
                ])?;
                let known = if inserted == 0 { lookup(tx, id)? } else { None };
                claims.push(known.map_or(Claim::Claimed, Claim::Already));
            }
            Ok(claims)
        })
        .await
    }

    async fn release(&self, letters: &[LetterId]) -> Result<(), StoreError> {
        let letters = letters.to_vec();
        self.ledger(move |tx| {
            for id in &letters {
                let key = params![id.topic, id.partition, id.offset];
                tx.prepare_cached(RELEASE)?.execute(key)?;
                tx.prepare_cached(FORGET)?.execute(key)?;
            }
            Ok(())
        })
        .await
    }

    async fn lookup(&self, letters: &[LetterId]) -> Result<Vec<Option<Redriven>>, StoreError> {
        let letters = letters.to_vec();
        self.read(move |conn| letters.iter().map(|id| lookup(conn, id)).collect())
            .await
    }
}
