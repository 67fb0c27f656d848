//! The keys in PostgreSQL: shared by every instance, so a client's retry may land on any.
//!
//! Each `begin` is one transaction that first takes an advisory lock on its key (two
//! instances with one key take turns; two keys never wait for each other), then reads the
//! key's row and writes as [`decide`] says. The number of keys is kept in 16 counter rows,
//! one per slot of the key's hash, so concurrent inserts rarely wait on one counter and the
//! bound is read without a scan.

use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;
use ordering_store::PostgresUrl;
use ordering_store::deadpool_postgres::tokio_postgres;
use ordering_store::deadpool_postgres::{GenericClient, Object, Pool, PoolError};
use sha2::{Digest, Sha256};

use super::{
    Begin, Decision, IdempotencyError, IdempotencyKey, KeyClaim, Request, Row, Settled, State,
    Unanswered, decide, settled,
};

/// Connections per instance: each request holds one for a short transaction.
const POOL_SIZE: usize = 8;
/// The longest any one call (waiting for a connection included) may take.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// The counter slots: a power of two, at most 256 (the slot is a hash byte).
const SLOTS: i16 = 16;
/// The schema this code writes.
const SCHEMA_VERSION: i64 = 1;
/// The first key of the advisory locks taken here: a class of our own, so a key's lock
/// never meets another application's (the second key is the key's hash).
const LOCK_CLASS: i32 = 0x6964_656d; // "idem"
/// Other expired keys removed per `begin`, at most: enough to keep ahead of new keys, short
/// enough never to stall a request (the request's own key is checked on its own).
const PRUNE_BATCH: i64 = 64;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS idempotency_keys (
        key TEXT PRIMARY KEY,
        slot SMALLINT NOT NULL,
        fingerprint BYTEA NOT NULL,
        created_at_ms BIGINT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('in_flight', 'failed', 'done')),
        attempt BIGINT NOT NULL,
        lease_until_ms BIGINT,
        status INTEGER,
        body BYTEA,
        CHECK ((state = 'in_flight') = (lease_until_ms IS NOT NULL)),
        CHECK ((state = 'done') = (status IS NOT NULL AND body IS NOT NULL))
    );
    CREATE INDEX IF NOT EXISTS idempotency_keys_by_age ON idempotency_keys (created_at_ms);
    CREATE INDEX IF NOT EXISTS idempotency_keys_answered_by_age
        ON idempotency_keys (created_at_ms) WHERE state = 'done';
    CREATE TABLE IF NOT EXISTS idempotency_count (
        slot SMALLINT PRIMARY KEY,
        keys BIGINT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS idempotency_schema (version BIGINT NOT NULL);";

// Deletes return their keys' slots: the counters are updated at the end of the transaction,
// all together in slot order, so two transactions never wait for each other's counters.
const PRUNE: &str = "
    DELETE FROM idempotency_keys WHERE key IN (
        SELECT key FROM idempotency_keys
        WHERE created_at_ms <= $1 AND (state <> 'in_flight' OR lease_until_ms <= $2)
        ORDER BY created_at_ms LIMIT $3
        FOR UPDATE SKIP LOCKED)
    RETURNING slot";

// Only answered keys, oldest first (see the SQLite store for why).
const EVICT: &str = "
    DELETE FROM idempotency_keys WHERE key IN (
        SELECT key FROM idempotency_keys WHERE state = 'done'
        ORDER BY created_at_ms LIMIT $1
        FOR UPDATE SKIP LOCKED)
    RETURNING slot";

const RELEASE: &str = "
    WITH gone AS (
        DELETE FROM idempotency_keys WHERE key = $1 AND attempt = $2 AND state = 'in_flight'
        RETURNING slot)
    UPDATE idempotency_count c SET keys = c.keys - 1 FROM gone g WHERE c.slot = g.slot";

const FIND: &str = "
    SELECT fingerprint, state, attempt, lease_until_ms, payload, status, body, created_at_ms
    FROM idempotency_keys WHERE key = $1 FOR UPDATE";

const FORGET: &str = "DELETE FROM idempotency_keys WHERE key = $1 RETURNING slot";

const COUNT: &str = "SELECT COALESCE(SUM(keys), 0)::BIGINT FROM idempotency_count";

const UNANSWERED: &str = "
    SELECT
        COUNT(*) FILTER (WHERE state = 'in_flight'),
        COUNT(*) FILTER (WHERE state = 'failed'),
        MIN(lease_until_ms) FILTER (WHERE state = 'in_flight' AND lease_until_ms > $1),
        MIN(created_at_ms) FILTER (WHERE state = 'failed')
    FROM idempotency_keys WHERE state <> 'done'";

const INSERT: &str = "
    INSERT INTO idempotency_keys
        (key, slot, fingerprint, created_at_ms, payload, state, attempt, lease_until_ms)
    VALUES ($1, $2, $3, $4, $5, 'in_flight', 1, $6)";

const COUNTED: &str = "UPDATE idempotency_count SET keys = keys + $2 WHERE slot = $1";

const RESUME: &str = "
    UPDATE idempotency_keys SET state = 'in_flight', attempt = $2, lease_until_ms = $3
    WHERE key = $1";

const FINISH: &str = "
    UPDATE idempotency_keys SET state = 'done', lease_until_ms = NULL, status = $3, body = $4
    WHERE key = $1 AND attempt = $2 AND state = 'in_flight'";

const FAIL: &str = "
    UPDATE idempotency_keys SET state = 'failed', lease_until_ms = NULL
    WHERE key = $1 AND attempt = $2 AND state = 'in_flight'";

/// A pool of connections to the database holding the keys.
#[derive(Clone)]
pub(super) struct Keys {
    pool: Pool,
    described: String,
}

impl Keys {
    /// Connects (a refused login or TLS is an error now, not at the first request) and
    /// creates the tables under a lock, so instances starting together create them once.
    pub(super) async fn open(url: &PostgresUrl) -> Result<Self, IdempotencyError> {
        let pool = url.pool(POOL_SIZE, "idempotency-keys")?;
        let mut client = ordering_store::first_connection(&pool).await?;
        let tx = client.transaction().await.map_err(failed)?;
        tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&LOCK_CLASS])
            .await
            .map_err(failed)?;
        tx.batch_execute(SCHEMA).await.map_err(failed)?;
        let version: Option<i64> = tx
            .query_one("SELECT MAX(version) FROM idempotency_schema", &[])
            .await
            .map_err(failed)?
            .get(0);
        match version {
            Some(version) if version > SCHEMA_VERSION => {
                return Err(IdempotencyError::NewerSchema {
                    place: url.describe(),
                    version,
                    known: SCHEMA_VERSION,
                });
            }
            Some(_) => {}
            None => {
                tx.execute(
                    "INSERT INTO idempotency_schema (version) VALUES ($1)",
                    &[&SCHEMA_VERSION],
                )
                .await
                .map_err(failed)?;
                tx.execute(
                    "INSERT INTO idempotency_count (slot, keys)
                     SELECT s, 0 FROM generate_series(0, $1 - 1) s ON CONFLICT DO NOTHING",
                    &[&i32::from(SLOTS)],
                )
                .await
                .map_err(failed)?;
            }
        }
        tx.commit().await.map_err(failed)?;
        Ok(Self {
            pool,
            described: url.describe(),
        })
    }

    pub(super) fn describe(&self) -> String {
        self.described.clone()
    }

    pub(super) async fn begin(&self, request: Request) -> Result<Begin, IdempotencyError> {
        bounded(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(failed)?;
            let begin = begin(&tx, request).await?;
            tx.commit().await.map_err(failed)?;
            Ok(begin)
        })
        .await
    }

    pub(super) async fn finish(
        &self,
        claim: KeyClaim,
        status: StatusCode,
        body: Bytes,
    ) -> Result<Settled, IdempotencyError> {
        let status = i32::from(status.as_u16());
        self.settle(
            FINISH,
            &[&claim.key.as_str(), &claim.attempt, &status, &body.as_ref()],
        )
        .await
    }

    pub(super) async fn fail(&self, claim: KeyClaim) -> Result<Settled, IdempotencyError> {
        self.settle(FAIL, &[&claim.key.as_str(), &claim.attempt])
            .await
    }

    pub(super) async fn release(&self, claim: KeyClaim) -> Result<Settled, IdempotencyError> {
        self.settle(RELEASE, &[&claim.key.as_str(), &claim.attempt])
            .await
    }

    pub(super) async fn count(&self) -> Result<usize, IdempotencyError> {
        bounded(async {
            let keys: i64 = self
                .client()
                .await?
                .query_one(COUNT, &[])
                .await
                .map_err(failed)?
                .get(0);
            Ok(usize::try_from(keys).unwrap_or(0))
        })
        .await
    }

    async fn settle(
        &self,
        statement: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Settled, IdempotencyError> {
        bounded(async {
            let changed = self
                .client()
                .await?
                .execute(statement, params)
                .await
                .map_err(failed)?;
            Ok(settled(changed))
        })
        .await
    }

    async fn client(&self) -> Result<Object, IdempotencyError> {
        self.pool.get().await.map_err(|e: PoolError| {
            IdempotencyError::Postgres(format!(
                "no database connection: {}",
                ordering_store::connect_error(&e)
            ))
        })
    }
}

async fn begin(
    tx: &ordering_store::deadpool_postgres::Transaction<'_>,
    request: Request,
) -> Result<Begin, IdempotencyError> {
    let now_ms = request.now_ms;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&LOCK_CLASS, &request.key.as_str()],
    )
    .await
    .map_err(failed)?;
    let mut counts = Counts::default();
    // The key's own row first, and forgotten if it expired (as a prune would): after this,
    // nothing here waits for a row lock, so two begins never wait for each other's rows.
    let row = match find(tx, &request.key).await? {
        Some((row, created_at_ms)) if row.expired(created_at_ms, &request) => {
            let gone = tx
                .query(FORGET, &[&request.key.as_str()])
                .await
                .map_err(failed)?;
            counts.removed(&gone);
            None
        }
        found => found.map(|(row, _)| row),
    };
    // Then a few other expired keys, skipping any another request holds.
    let gone = tx
        .query(
            PRUNE,
            &[&request.expired_before_ms(), &now_ms, &PRUNE_BATCH],
        )
        .await
        .map_err(failed)?;
    counts.removed(&gone);
    let begin = match decide(row, &request.fingerprint, now_ms) {
        Decision::Answer(begin) => begin,
        Decision::Resume { attempt, payload } => {
            tx.execute(
                RESUME,
                &[&request.key.as_str(), &attempt, &request.lease_until_ms()],
            )
            .await
            .map_err(failed)?;
            Begin::Resume(request.claim(attempt, payload))
        }
        Decision::New => {
            let max = request.max_keys();
            let keys = count(tx).await? + counts.total();
            if keys >= max {
                let gone = tx
                    .query(EVICT, &[&(keys - max + 1)])
                    .await
                    .map_err(failed)?;
                counts.removed(&gone);
            }
            if count(tx).await? + counts.total() >= max {
                unanswered(tx, now_ms).await?.full(request.policy, now_ms)
            } else {
                let slot = slot(&request.key);
                tx.execute(
                    INSERT,
                    &[
                        &request.key.as_str(),
                        &slot,
                        &&request.fingerprint.0[..],
                        &now_ms,
                        &request.payload,
                        &request.lease_until_ms(),
                    ],
                )
                .await
                .map_err(failed)?;
                counts.added(slot);
                let payload = request.payload.clone();
                Begin::Fresh(request.claim(1, payload))
            }
        }
    };
    counts.write(tx).await?;
    Ok(begin)
}

/// The changes to the key counters a transaction makes, written at its end in slot order.
#[derive(Default)]
struct Counts(std::collections::BTreeMap<i16, i64>);

impl Counts {
    fn removed(&mut self, rows: &[tokio_postgres::Row]) {
        for row in rows {
            *self.0.entry(row.get(0)).or_default() -= 1;
        }
    }

    fn added(&mut self, slot: i16) {
        *self.0.entry(slot).or_default() += 1;
    }

    /// The change to the number of keys, not yet written.
    fn total(&self) -> i64 {
        self.0.values().sum()
    }

    async fn write(self, client: &impl GenericClient) -> Result<(), IdempotencyError> {
        for (slot, change) in self.0 {
            if change != 0 {
                client
                    .execute(COUNTED, &[&slot, &change])
                    .await
                    .map_err(failed)?;
            }
        }
        Ok(())
    }
}

async fn count(client: &impl GenericClient) -> Result<i64, IdempotencyError> {
    Ok(client.query_one(COUNT, &[]).await.map_err(failed)?.get(0))
}

async fn unanswered(
    client: &impl GenericClient,
    now_ms: i64,
) -> Result<Unanswered, IdempotencyError> {
    let row = client
        .query_one(UNANSWERED, &[&now_ms])
        .await
        .map_err(failed)?;
    Ok(Unanswered {
        in_flight: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
        failed: u64::try_from(row.get::<_, i64>(1)).unwrap_or(0),
        next_lease_end_ms: row.get(2),
        oldest_failed_ms: row.get(3),
    })
}

/// The key's row, locked for this transaction, and when the key was first seen.
async fn find(
    client: &impl GenericClient,
    key: &IdempotencyKey,
) -> Result<Option<(Row, i64)>, IdempotencyError> {
    let Some(row) = client
        .query_opt(FIND, &[&key.as_str()])
        .await
        .map_err(failed)?
    else {
        return Ok(None);
    };
    let state_name: String = row.get(1);
    let status: Option<i32> = row.get(5);
    let state = State::from_columns(&state_name, row.get(3), status.map(i64::from), row.get(6))
        .ok_or_else(|| IdempotencyError::Corrupt(format!("key {key:?} in state {state_name:?}")))?;
    let created_at_ms = row.get(7);
    Ok(Some((
        Row {
            fingerprint: row.get(0),
            attempt: row.get(2),
            payload: row.get(4),
            state,
        },
        created_at_ms,
    )))
}

/// The key's counter slot: a byte of its hash, so keys spread evenly over the slots.
fn slot(key: &IdempotencyKey) -> i16 {
    let hash = Sha256::digest(key.as_str().as_bytes());
    i16::from(hash[0]) % SLOTS
}

/// A failed statement in the server's own words (tokio-postgres's display of a server error
/// is only "db error"). Worth trying again when the connection or the server's state is at
/// fault (a lost connection, a conflict, a timeout, a server shutting down or overloaded, a
/// standby after a failover); anything else (a missing grant or table, bad data) is for a
/// person to fix, and a start-up stops on it rather than wait forever.
fn failed(error: tokio_postgres::Error) -> IdempotencyError {
    let Some(db) = error.as_db_error() else {
        return IdempotencyError::Postgres(error.to_string()); // I/O, closed connection
    };
    let code = db.code().code();
    let message = format!("{} (SQLSTATE {code})", db.message());
    let passing = ["08", "40", "53", "55", "57", "58"]
        .iter()
        .any(|class| code.starts_with(class))
        || code == "25006";
    if passing {
        IdempotencyError::Postgres(message)
    } else {
        IdempotencyError::PostgresRefused(message)
    }
}

/// Bounds `op` by [`OP_TIMEOUT`]: a server that stopped answering is a failure to retry.
async fn bounded<T>(
    op: impl Future<Output = Result<T, IdempotencyError>>,
) -> Result<T, IdempotencyError> {
    tokio::time::timeout(OP_TIMEOUT, op)
        .await
        .unwrap_or_else(|_| {
            Err(IdempotencyError::Postgres(format!(
                "no answer from the database within {OP_TIMEOUT:?}"
            )))
        })
}
