//! Idempotency keys (draft-ietf-httpapi-idempotency-key-header): a client sends
//! `Idempotency-Key` with a request it may retry, and every retry with that key gets the first
//! answer instead of doing the work again.
//!
//! The store is one SQLite file (WAL, `synchronous=FULL`): what a request prepared (for
//! cart-shell, the generated order) is on disk before it is published, and its answer before
//! it is sent, so neither a restart nor `kill -9` can make a retry publish something else.
//! Per key it keeps the request's [`Fingerprint`], a state (in flight until a lease deadline,
//! failed, done), the payload, the final answer and when the key was first seen.
//!
//! A request [`begin`](IdempotencyStore::begin)s, and gets a [`Claim`] only when it is the one
//! to do the work ([`Begin::Fresh`], [`Begin::Resume`]); the claim is spent by
//! [`finish`](IdempotencyStore::finish) or [`fail`](IdempotencyStore::fail).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::HeaderMap;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sha2::{Digest, Sha256};

/// The request header (case-insensitive, as every header name).
pub const KEY_HEADER: &str = "idempotency-key";

/// The response header that marks an answer replayed from the store.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

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

const NEXT_LEASE_END: &str = "
    SELECT MIN(lease_until_ms) FROM idempotency_keys
    WHERE state = 'in_flight' AND lease_until_ms > ?1";

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

/// An `Idempotency-Key`: 1 to 255 visible ASCII characters, taken as sent (quotes included,
/// so a client must send the same bytes on every retry).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// Why an `Idempotency-Key` header is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidKey {
    #[error("Idempotency-Key must be 1 to {MAX_KEY_LEN} characters, got {0}")]
    Length(usize),
    #[error(
        "Idempotency-Key must be visible ASCII characters only (no spaces or control characters)"
    )]
    Characters,
    #[error("Idempotency-Key must be sent once, got {0} of them")]
    Repeated(usize),
}

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, InvalidKey> {
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidKey::Characters);
        }
        // All ASCII by now: bytes are characters.
        if raw.is_empty() || raw.len() > MAX_KEY_LEN {
            return Err(InvalidKey::Length(raw.len()));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The key of a request, if it has one.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, InvalidKey> {
        let mut values = headers.get_all(KEY_HEADER).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        let more = values.count();
        if more > 0 {
            return Err(InvalidKey::Repeated(more + 1));
        }
        let raw = value.to_str().map_err(|_| InvalidKey::Characters)?;
        Self::parse(raw).map(Some)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a request asks for, reduced to what makes it the same request: a SHA-256 over its
/// typed, normalised fields (so whitespace or field order in the body do not count).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of `fields`, in order. Each is length-prefixed, so `("ab", "c")` and
    /// `("a", "bc")` differ.
    pub fn of(fields: &[&[u8]]) -> Self {
        let mut hash = Sha256::new();
        for field in fields {
            hash.update((field.len() as u64).to_be_bytes());
            hash.update(field);
        }
        Self(hash.finalize().into())
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        write!(f, "Fingerprint({hex})")
    }
}

/// How long keys are kept, how many, and how long a request may hold one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// A key is forgotten this long after its first request (unless that request still runs).
    pub ttl: Duration,
    /// At most this many keys; beyond, the oldest finished ones are forgotten first.
    pub max_keys: usize,
    /// How long a request holds its key while it works; past it, the request is presumed
    /// dead (a crash) and a retry takes the key over.
    pub lease: Duration,
}

/// The right and the duty to do a key's work: publish [`payload`](Self::payload), then spend
/// the claim with [`IdempotencyStore::finish`] or [`IdempotencyStore::fail`].
#[derive(Debug)]
#[must_use = "a claim must be finished or failed, or its key stays in flight until the lease ends"]
pub struct Claim {
    key: IdempotencyKey,
    attempt: i64,
    payload: String,
}

impl Claim {
    /// What to do: the payload given to [`IdempotencyStore::begin`] for a fresh key, the one
    /// stored by the first attempt for a resumed one.
    pub fn payload(&self) -> &str {
        &self.payload
    }

    pub fn key(&self) -> &IdempotencyKey {
        &self.key
    }
}

/// The first answer to a key, to send again byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub status: StatusCode,
    pub body: Bytes,
}

/// What a request with a key is to do.
#[derive(Debug)]
pub enum Begin {
    /// The key is new: do the work with the payload given.
    Fresh(Claim),
    /// An earlier attempt failed, or its lease ran out (its process died): do the work again
    /// with the payload that attempt stored, never a new one.
    Resume(Claim),
    /// Done before: send its answer again.
    Replay(Replay),
    /// The key was used for another request.
    Mismatch,
    /// Another request with this key is at work and its lease has not run out.
    InFlight { retry_after: Duration },
    /// The store holds `max_keys` keys and every one is in flight.
    Full { retry_after: Duration },
}

/// Whether a settled claim was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Recorded,
    /// The claim's lease had run out and another request took the key over (or it was
    /// forgotten): that request's outcome stands.
    Superseded,
}

/// The store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdempotencyError {
    #[error("cannot create the directory of {path}: {source}")]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path} cannot use WAL (journal mode {mode})")]
    NoWal { path: PathBuf, mode: String },
    #[error(
        "{path} was written by a newer version (schema {version}, this one knows {SCHEMA_VERSION})"
    )]
    NewerSchema { path: PathBuf, version: i64 },
    #[error("the idempotency store failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the idempotency store holds a bad row: {0}")]
    Corrupt(String),
    #[error("the idempotency store's task stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl IdempotencyError {
    /// Whether the same call may succeed later (a lock, a full disk, an I/O error).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Sqlite(_) | Self::Task(_))
    }
}

/// Idempotency keys in a SQLite file. Cheap to clone.
#[derive(Clone)]
pub struct IdempotencyStore {
    connection: Arc<Mutex<Connection>>,
    policy: Policy,
    path: PathBuf,
}

impl std::fmt::Debug for IdempotencyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyStore")
            .field("path", &self.path)
            .field("policy", &self.policy)
            .finish()
    }
}

/// A row as stored, read into a state that cannot be half one and half another.
enum State {
    InFlight { lease_until_ms: i64 },
    Failed,
    Done(Replay),
}

struct Row {
    fingerprint: Vec<u8>,
    attempt: i64,
    payload: String,
    state: State,
}

impl IdempotencyStore {
    /// Opens (creating it and its directory if needed) the store at `path`.
    pub fn open(path: &Path, policy: Policy) -> Result<Self, IdempotencyError> {
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
                path: path.to_owned(),
                version,
            });
        }
        tx.execute_batch(SCHEMA).map_err(open)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(open)?;
        tx.commit().map_err(open)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            policy,
            path: path.to_owned(),
        })
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Looks `key` up for a request with `fingerprint` at `now`, pruning expired keys and, when
    /// the store is full, the oldest finished ones. A new key is stored in flight with
    /// `payload` (on disk before this returns); an existing one says what to do instead.
    pub async fn begin(
        &self,
        key: IdempotencyKey,
        fingerprint: Fingerprint,
        payload: String,
        now: SystemTime,
    ) -> Result<Begin, IdempotencyError> {
        let policy = self.policy;
        self.run(move |connection| begin(connection, policy, key, fingerprint, payload, now))
            .await
    }

    /// Records the answer of the claim's work, to be replayed to every retry.
    pub async fn finish(
        &self,
        claim: Claim,
        status: StatusCode,
        body: Bytes,
    ) -> Result<Settled, IdempotencyError> {
        self.run(move |connection| {
            let changed = connection.execute(
                FINISH,
                params![
                    claim.key.as_str(),
                    claim.attempt,
                    status.as_u16(),
                    body.as_ref()
                ],
            )?;
            Ok(settled(changed))
        })
        .await
    }

    /// Records that the claim's work failed: the next retry does it again with the same
    /// payload.
    pub async fn fail(&self, claim: Claim) -> Result<Settled, IdempotencyError> {
        self.run(move |connection| {
            let changed = connection.execute(FAIL, params![claim.key.as_str(), claim.attempt])?;
            Ok(settled(changed))
        })
        .await
    }

    /// Keys stored, whatever their state.
    pub async fn count(&self) -> Result<usize, IdempotencyError> {
        self.run(|connection| {
            let keys: i64 = connection.query_row(COUNT, [], |row| row.get(0))?;
            Ok(usize::try_from(keys).unwrap_or(0))
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

fn settled(changed: usize) -> Settled {
    if changed == 1 {
        Settled::Recorded
    } else {
        Settled::Superseded
    }
}

fn begin(
    connection: &mut Connection,
    policy: Policy,
    key: IdempotencyKey,
    fingerprint: Fingerprint,
    payload: String,
    now: SystemTime,
) -> Result<Begin, IdempotencyError> {
    let now_ms = millis_since_epoch(now);
    let lease_until_ms = now_ms.saturating_add(millis(policy.lease));
    // Immediate: two instances sharing the file cannot both see a key as new.
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        PRUNE,
        params![now_ms.saturating_sub(millis(policy.ttl)), now_ms],
    )?;
    let begin = match find(&tx, &key)? {
        Some(row) if row.fingerprint != fingerprint.0 => Begin::Mismatch,
        Some(Row {
            state: State::Done(replay),
            ..
        }) => Begin::Replay(replay),
        Some(Row {
            state: State::InFlight { lease_until_ms },
            ..
        }) if lease_until_ms > now_ms => Begin::InFlight {
            retry_after: until(lease_until_ms, now_ms),
        },
        Some(row) => {
            let attempt = row.attempt.saturating_add(1);
            tx.execute(RESUME, params![key.as_str(), attempt, lease_until_ms])?;
            Begin::Resume(Claim {
                key,
                attempt,
                payload: row.payload,
            })
        }
        None => {
            let max = i64::try_from(policy.max_keys).unwrap_or(i64::MAX);
            let keys: i64 = tx.query_row(COUNT, [], |row| row.get(0))?;
            if keys >= max {
                tx.execute(EVICT, params![keys - max + 1])?;
            }
            let keys: i64 = tx.query_row(COUNT, [], |row| row.get(0))?;
            if keys >= max {
                let next: Option<i64> =
                    tx.query_row(NEXT_LEASE_END, params![now_ms], |row| row.get(0))?;
                Begin::Full {
                    retry_after: next.map_or(policy.lease, |end| until(end, now_ms)),
                }
            } else {
                tx.execute(
                    INSERT,
                    params![
                        key.as_str(),
                        &fingerprint.0[..],
                        now_ms,
                        &payload,
                        lease_until_ms
                    ],
                )?;
                Begin::Fresh(Claim {
                    key,
                    attempt: 1,
                    payload,
                })
            }
        }
    };
    tx.commit()?;
    Ok(begin)
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
    let corrupt = || IdempotencyError::Corrupt(format!("key {key:?} in state {state:?}"));
    let state = match (state.as_str(), lease_until_ms, status, body) {
        ("in_flight", Some(lease_until_ms), _, _) => State::InFlight { lease_until_ms },
        ("failed", _, _, _) => State::Failed,
        ("done", _, Some(status), Some(body)) => State::Done(Replay {
            status: u16::try_from(status)
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .ok_or_else(corrupt)?,
            body: Bytes::from(body),
        }),
        _ => return Err(corrupt()),
    };
    Ok(Some(Row {
        fingerprint,
        attempt,
        payload,
        state,
    }))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn millis_since_epoch(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, millis)
}

/// From `now_ms` to `end_ms`, at least 1 ms.
fn until(end_ms: i64, now_ms: i64) -> Duration {
    Duration::from_millis(
        u64::try_from(end_ms.saturating_sub(now_ms))
            .unwrap_or(0)
            .max(1),
    )
}

/// A `Retry-After` value: whole seconds, rounded up, at least 1.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(10);

    fn policy() -> Policy {
        Policy {
            ttl: Duration::from_secs(3600),
            max_keys: 100,
            lease: LEASE,
        }
    }

    fn key(raw: &str) -> IdempotencyKey {
        IdempotencyKey::parse(raw).unwrap()
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn fresh(begin: Begin) -> Claim {
        match begin {
            Begin::Fresh(claim) => claim,
            other => panic!("not fresh: {other:?}"),
        }
    }

    #[test]
    fn keys_are_1_to_255_visible_ascii_characters_sent_once() {
        assert_eq!(key("a").as_str(), "a");
        assert_eq!(key("\"8e03978e-40d5\"").as_str(), "\"8e03978e-40d5\"");
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert_eq!(
            IdempotencyKey::parse(&"k".repeat(256)),
            Err(InvalidKey::Length(256))
        );
        assert_eq!(IdempotencyKey::parse(""), Err(InvalidKey::Length(0)));
        for bad in ["a b", "tab\t", "é", "\u{7f}"] {
            assert_eq!(
                IdempotencyKey::parse(bad),
                Err(InvalidKey::Characters),
                "{bad:?}"
            );
        }
        let mut headers = HeaderMap::new();
        assert_eq!(IdempotencyKey::from_headers(&headers), Ok(None));
        headers.append(KEY_HEADER, "one".parse().unwrap());
        assert_eq!(IdempotencyKey::from_headers(&headers), Ok(Some(key("one"))));
        headers.append(KEY_HEADER, "two".parse().unwrap());
        assert_eq!(
            IdempotencyKey::from_headers(&headers),
            Err(InvalidKey::Repeated(2))
        );
        assert!(
            InvalidKey::Characters
                .to_string()
                .contains("Idempotency-Key")
        );
    }

    #[test]
    fn fingerprints_separate_their_fields() {
        assert_eq!(
            Fingerprint::of(&[b"ab", b"c"]),
            Fingerprint::of(&[b"ab", b"c"])
        );
        assert_ne!(
            Fingerprint::of(&[b"ab", b"c"]),
            Fingerprint::of(&[b"a", b"bc"])
        );
        assert!(format!("{:?}", Fingerprint::of(&[])).len() > 64);
    }

    #[tokio::test]
    async fn a_key_is_fresh_then_in_flight_then_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let store = IdempotencyStore::open(&dir.path().join("sub/keys.db"), policy()).unwrap();
        let print = Fingerprint::of(&[b"order 1"]);
        let claim = fresh(
            store
                .begin(key("k"), print, "first".into(), at(0))
                .await
                .unwrap(),
        );
        assert_eq!(claim.payload(), "first");
        match store
            .begin(key("k"), print, "second".into(), at(3))
            .await
            .unwrap()
        {
            Begin::InFlight { retry_after } => assert_eq!(retry_after, Duration::from_secs(7)),
            other => panic!("{other:?}"),
        }
        let other = Fingerprint::of(&[b"order 2"]);
        assert!(matches!(
            store
                .begin(key("k"), other, "x".into(), at(3))
                .await
                .unwrap(),
            Begin::Mismatch
        ));
        let body = Bytes::from_static(b"{\"the\": \"answer\"}");
        assert_eq!(
            store
                .finish(claim, StatusCode::CREATED, body.clone())
                .await
                .unwrap(),
            Settled::Recorded
        );
        match store
            .begin(key("k"), print, "third".into(), at(4))
            .await
            .unwrap()
        {
            Begin::Replay(replay) => {
                assert_eq!(
                    replay,
                    Replay {
                        status: StatusCode::CREATED,
                        body
                    }
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            store
                .begin(key("k"), other, "x".into(), at(4))
                .await
                .unwrap(),
            Begin::Mismatch
        ));
        assert_eq!(store.count().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_failed_or_lapsed_attempt_is_resumed_with_its_payload_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.db");
        let print = Fingerprint::of(&[b"order"]);
        {
            let store = IdempotencyStore::open(&path, policy()).unwrap();
            let claim = fresh(
                store
                    .begin(key("k"), print, "stored".into(), at(0))
                    .await
                    .unwrap(),
            );
            assert_eq!(store.fail(claim).await.unwrap(), Settled::Recorded);
            let Begin::Resume(claim) = store
                .begin(key("k"), print, "new".into(), at(1))
                .await
                .unwrap()
            else {
                panic!("not resumed")
            };
            assert_eq!(claim.payload(), "stored");
            // The process dies here, mid-publish: the claim is never settled.
            std::mem::forget(claim);
        }
        let store = IdempotencyStore::open(&path, policy()).unwrap();
        assert!(matches!(
            store
                .begin(key("k"), print, "new".into(), at(5))
                .await
                .unwrap(),
            Begin::InFlight { .. }
        ));
        let Begin::Resume(claim) = store
            .begin(key("k"), print, "new".into(), at(12))
            .await
            .unwrap()
        else {
            panic!("not resumed after the lease")
        };
        assert_eq!(claim.payload(), "stored");
        // An attempt whose lease ran out cannot settle the key its successor holds.
        let Begin::Resume(successor) = store
            .begin(key("k"), print, "new".into(), at(30))
            .await
            .unwrap()
        else {
            panic!("not resumed after the second lease")
        };
        assert_eq!(
            store
                .finish(claim, StatusCode::CREATED, Bytes::new())
                .await
                .unwrap(),
            Settled::Superseded
        );
        let body = Bytes::from_static(b"second");
        assert_eq!(
            store
                .finish(successor, StatusCode::CREATED, body.clone())
                .await
                .unwrap(),
            Settled::Recorded
        );
        let Begin::Replay(replay) = store
            .begin(key("k"), print, "new".into(), at(31))
            .await
            .unwrap()
        else {
            panic!("not replayed")
        };
        assert_eq!(replay.body, body);
    }

    #[tokio::test]
    async fn expired_keys_go_and_a_full_store_forgets_its_oldest_finished_keys_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = IdempotencyStore::open(
            &dir.path().join("keys.db"),
            Policy {
                ttl: Duration::from_secs(100),
                max_keys: 2,
                lease: LEASE,
            },
        )
        .unwrap();
        let print = Fingerprint::of(&[b"same"]);
        let done = Bytes::from_static(b"done");
        for (name, second) in [("a", 0), ("b", 1)] {
            let claim = fresh(
                store
                    .begin(key(name), print, name.into(), at(second))
                    .await
                    .unwrap(),
            );
            store
                .finish(claim, StatusCode::CREATED, done.clone())
                .await
                .unwrap();
        }
        // Full: "a", the oldest, goes for "c".
        let c = fresh(
            store
                .begin(key("c"), print, "c".into(), at(2))
                .await
                .unwrap(),
        );
        assert_eq!(store.count().await.unwrap(), 2);
        assert!(matches!(
            store
                .begin(key("b"), print, "b".into(), at(3))
                .await
                .unwrap(),
            Begin::Replay(_)
        ));
        // "b" goes for "a" again, which is new once more.
        let a = fresh(
            store
                .begin(key("a"), print, "a2".into(), at(3))
                .await
                .unwrap(),
        );
        assert_eq!(a.payload(), "a2");
        // Both keys in flight: no room, wait for the first lease to end.
        match store
            .begin(key("d"), print, "d".into(), at(4))
            .await
            .unwrap()
        {
            Begin::Full { retry_after } => assert_eq!(retry_after, Duration::from_secs(8)),
            other => panic!("{other:?}"),
        }
        store.fail(c).await.unwrap();
        // A failed key may have been published after all: never evicted for room, so its
        // retry republishes the stored order rather than a new one.
        match store
            .begin(key("d"), print, "d".into(), at(5))
            .await
            .unwrap()
        {
            Begin::Full { .. } => {}
            other => panic!("{other:?}"),
        }
        match store
            .begin(key("c"), print, "c-new".into(), at(5))
            .await
            .unwrap()
        {
            Begin::Resume(claim) => assert_eq!(claim.payload(), "c"),
            other => panic!("{other:?}"),
        }
        store.finish(a, StatusCode::CREATED, done).await.unwrap();
        // Past the TTL even a done key is forgotten: the same key is new again.
        let again = store
            .begin(key("a"), print, "a3".into(), at(104))
            .await
            .unwrap();
        assert_eq!(fresh(again).payload(), "a3");
        // An in-flight key is never pruned while its lease runs, however old.
        let long = Policy {
            ttl: Duration::from_secs(1),
            ..store.policy()
        };
        let store = IdempotencyStore::open(&dir.path().join("other.db"), long).unwrap();
        let _held = fresh(
            store
                .begin(key("x"), print, "x".into(), at(0))
                .await
                .unwrap(),
        );
        assert!(matches!(
            store
                .begin(key("x"), print, "x".into(), at(5))
                .await
                .unwrap(),
            Begin::InFlight { .. }
        ));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(7)), 7);
        assert_eq!(retry_after_seconds(Duration::from_millis(7001)), 8);
    }
}
