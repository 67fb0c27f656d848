//! The keys in a SQLite file: one instance's (or several on one host sharing the file).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    Begin, Decision, IdempotencyError, IdempotencyKey, KeyClaim, Request, Row, Settled, State,
    Unanswered, decide, settled,
};

/// How long a statement waits for a lock held by another connection (another instance on
/// the same file) before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS idempotency_keys (
        key TEXT PRIMARY KEY NOT NULL,
        fingerprint BLOB NOT NULL,
        created_at_ms INTEGER NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('in_flight', 'failed', 'done')),
        attempt INTEGER NOT NULL,
        lease_until_ms INTEGER,
        status INTEGER,
        body BLOB,
        CHECK ((state = 'in_flight') = (lease_until_ms IS NOT NULL)),
        CHECK ((state = 'done') = (status IS NOT NULL AND body IS NOT NULL))
    );
    CREATE INDEX IF NOT EXISTS idempotency_keys_by_age ON idempotency_keys (created_at_ms);
    -- The number of keys, kept by triggers: COUNT(*) would read the whole table per request.
    CREATE TABLE IF NOT EXISTS idempotency_count (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        keys INTEGER NOT NULL
    );
    INSERT OR IGNORE INTO idempotency_count (one, keys)
        VALUES (1, (SELECT COUNT(*) FROM idempotency_keys));
    CREATE TRIGGER IF NOT EXISTS idempotency_keys_added AFTER INSERT ON idempotency_keys
        BEGIN UPDATE idempotency_count SET keys = keys + 1; END;
    CREATE TRIGGER IF NOT EXISTS idempotency_keys_removed AFTER DELETE ON idempotency_keys
        BEGIN UPDATE idempotency_count SET keys = keys - 1; END;";

// Expired keys go, except one whose request is still running: forgetting it would let a
// retry publish a second, different payload beside it.
const PRUNE: &str = "
    DELETE FROM idempotency_keys
    WHERE created_at_ms <= ?1 AND (state <> 'in_flight' OR lease_until_ms <= ?2)";

const FIND: &str = "
    SELECT fingerprint, state, attempt, lease_until_ms, payload, status, body
    FROM idempotency_keys WHERE key = ?1";

const COUNT: &str = "SELECT keys FROM idempotency_count WHERE one = 1";

// Only answered keys, oldest first. A failed key (or an in-flight one whose lease ran out)
// may have been published after all: forgotten, its retry would publish a new order under
// its id. Those stay until they expire.
const EVICT: &str = "
    DELETE FROM idempotency_keys WHERE key IN (
        SELECT key FROM idempotency_keys
        WHERE state = 'done'
        ORDER BY created_at_ms LIMIT ?1)";

// Only when full: what the keys are instead of answered.
const UNANSWERED: &str = "
    SELECT
        COUNT(*) FILTER (WHERE state = 'in_flight'),
        COUNT(*) FILTER (WHERE state = 'failed'),
        MIN(lease_until_ms) FILTER (WHERE state = 'in_flight' AND lease_until_ms > ?1),
        MIN(created_at_ms) FILTER (WHERE state = 'failed')
    FROM idempotency_keys WHERE state <> 'done'";

const INSERT: &str = "
    INSERT INTO idempotency_keys
        (key, fingerprint, created_at_ms, payload, state, attempt, lease_until_ms)
    VALUES (?1, ?2, ?3, ?4, 'in_flight', 1, ?5)";

const RESUME: &str = "
    UPDATE idempotency_keys SET state = 'in_flight', attempt = ?2, lease_until_ms = ?3
    WHERE key = ?1";

// Only the attempt that holds the key may settle it: one whose lease ran out and was taken
// over by a retry must not overwrite that retry's outcome.
const FINISH: &str = "
    UPDATE idempotency_keys SET state = 'done', lease_until_ms = NULL, status = ?3, body = ?4
    WHERE key = ?1 AND attempt = ?2 AND state = 'in_flight'";

const FAIL: &str = "
    UPDATE idempotency_keys SET state = 'failed', lease_until_ms = NULL
    WHERE key = ?1 AND attempt = ?2 AND state = 'in_flight'";

const RELEASE: &str = "
    DELETE FROM idempotency_keys WHERE key = ?1 AND attempt = ?2 AND state = 'in_flight'";

/// One connection to the file, used off the async threads.
#[derive(Clone)]
pub(super) struct Keys {
    connection: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl Keys {
    pub(super) fn open(path: &Path) -> Result<Self, IdempotencyError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| IdempotencyError::Directory {
                path: path.to_owned(),
                source,
            })?;
        }
        let open = |source| IdempotencyError::Open {
            path: path.to_owned(),
            source,
        };
        let mut connection = Connection::open(path).map_err(open)?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(open)?;
        let mode: String = connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(open)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(IdempotencyError::NoWal {
                path: path.to_owned(),
                mode,
            });
        }
        // FULL: a key's payload is on disk before it is published, its answer before it is sent.
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(open)?;
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(open)?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(open)?;
        if version > SCHEMA_VERSION {
            return Err(IdempotencyError::NewerSchema {
                place: path.display().to_string(),
                version,
                known: SCHEMA_VERSION,
            });
        }
        tx.execute_batch(SCHEMA).map_err(open)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(open)?;
        tx.commit().map_err(open)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            path: path.to_owned(),
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) async fn begin(&self, request: Request) -> Result<Begin, IdempotencyError> {
        self.run(move |connection| begin(connection, request)).await
    }

    pub(super) async fn finish(
        &self,
        claim: KeyClaim,
        status: StatusCode,
        body: Bytes,
    ) -> Result<Settled, IdempotencyError> {
        self.settle(move |c| {
            c.execute(
                FINISH,
                params![
                    claim.key.as_str(),
                    claim.attempt,
                    status.as_u16(),
                    body.as_ref()
                ],
            )
        })
        .await
    }

    pub(super) async fn fail(&self, claim: KeyClaim) -> Result<Settled, IdempotencyError> {
        self.settle(move |c| c.execute(FAIL, params![claim.key.as_str(), claim.attempt]))
            .await
    }

    pub(super) async fn release(&self, claim: KeyClaim) -> Result<Settled, IdempotencyError> {
        self.settle(move |c| c.execute(RELEASE, params![claim.key.as_str(), claim.attempt]))
            .await
    }

    pub(super) async fn count(&self) -> Result<usize, IdempotencyError> {
        self.run(|connection| {
            let keys: i64 = connection.query_row(COUNT, [], |row| row.get(0))?;
            Ok(usize::try_from(keys).unwrap_or(0))
        })
        .await
    }

    async fn settle(
        &self,
        statement: impl FnOnce(&Connection) -> rusqlite::Result<usize> + Send + 'static,
    ) -> Result<Settled, IdempotencyError> {
        self.run(move |connection| {
            let changed = statement(connection)?;
            Ok(settled(u64::try_from(changed).unwrap_or(0)))
        })
        .await
    }

    /// Runs `work` on the connection, off the async threads (SQLite blocks, and fsyncs).
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, IdempotencyError> + Send + 'static,
    ) -> Result<T, IdempotencyError> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
            work(&mut connection)
        })
        .await?
    }
}

fn begin(connection: &mut Connection, request: Request) -> Result<Begin, IdempotencyError> {
    let now_ms = request.now_ms;
    // Immediate: two instances sharing the file cannot both see a key as new.
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(PRUNE, params![request.expired_before_ms(), now_ms])?;
    let row = find(&tx, &request.key)?;
    let begin = match decide(row, &request.fingerprint, now_ms) {
        Decision::Answer(begin) => begin,
        Decision::Resume { attempt, payload } => {
            tx.execute(
                RESUME,
                params![request.key.as_str(), attempt, request.lease_until_ms()],
            )?;
            Begin::Resume(request.claim(attempt, payload))
        }
        Decision::New => {
            let max = request.max_keys();
            let keys: i64 = tx.query_row(COUNT, [], |row| row.get(0))?;
            if keys >= max {
                tx.execute(EVICT, params![keys - max + 1])?;
            }
            let keys: i64 = tx.query_row(COUNT, [], |row| row.get(0))?;
            if keys >= max {
                unanswered(&tx, now_ms)?.full(request.policy, now_ms)
            } else {
                tx.execute(
                    INSERT,
                    params![
                        request.key.as_str(),
                        &request.fingerprint.0[..],
                        now_ms,
                        &request.payload,
                        request.lease_until_ms()
                    ],
                )?;
                let payload = request.payload.clone();
                Begin::Fresh(request.claim(1, payload))
            }
        }
    };
    tx.commit()?;
    Ok(begin)
}

fn unanswered(tx: &rusqlite::Transaction<'_>, now_ms: i64) -> Result<Unanswered, IdempotencyError> {
    Ok(tx.query_row(UNANSWERED, params![now_ms], |row| {
        Ok(Unanswered {
            in_flight: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
            failed: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
            next_lease_end_ms: row.get(2)?,
            oldest_failed_ms: row.get(3)?,
        })
    })?)
}

fn find(
    tx: &rusqlite::Transaction<'_>,
    key: &IdempotencyKey,
) -> Result<Option<Row>, IdempotencyError> {
    let raw = tx
        .query_row(FIND, params![key.as_str()], |row| {
            Ok((
                row.get::<_, Vec<u8>>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, Option<i64>>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, Option<i64>>(5)?,
                row.get::<_, Option<Vec<u8>>>(6)?,
            ))
        })
        .optional()?;
    let Some((fingerprint, state, attempt, lease_until_ms, payload, status, body)) = raw else {
        return Ok(None);
    };
    let state = State::from_columns(&state, lease_until_ms, status, body)
        .ok_or_else(|| IdempotencyError::Corrupt(format!("key {key:?} in state {state:?}")))?;
    Ok(Some(Row {
        fingerprint,
        attempt,
        payload,
        state,
    }))
}
