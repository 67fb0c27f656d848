//! Idempotency keys (draft-ietf-httpapi-idempotency-key-header): a client sends
//! `Idempotency-Key` with a request it may retry, and every retry with that key gets the first
//! answer instead of doing the work again.
//!
//! Keys live in one of two stores with the same rules: a SQLite file (WAL,
//! `synchronous=FULL`) for one instance, or PostgreSQL for several behind a load balancer,
//! where a client's retry lands on any of them. Either way, what a request prepared (for
//! cart-shell, the generated order) is durable before it is published, and its answer before
//! it is sent, so neither a restart, `kill -9` nor another instance can make a retry publish
//! something else. Per key it keeps the request's [`Fingerprint`], a state (in flight until a
//! lease deadline, failed, done), the payload, the final answer and when the key was first
//! seen.
//!
//! A request [`begin`](IdempotencyStore::begin)s, and gets a [`KeyClaim`] only when it is the one
//! to do the work ([`Begin::Fresh`], [`Begin::Resume`]); the claim is spent by
//! [`finish`](IdempotencyStore::finish), [`fail`](IdempotencyStore::fail) or, when the work
//! surely sent nothing, [`release`](IdempotencyStore::release).

mod postgres;
mod sqlite;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::HeaderMap;
use ordering_store::PostgresUrl;
use sha2::{Digest, Sha256};

/// The request header (case-insensitive, as every header name).
pub const KEY_HEADER: &str = "idempotency-key";

/// The response header that marks an answer replayed from the store.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

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
    /// At most this many keys; beyond, the oldest answered ones are forgotten first. With
    /// several instances on one PostgreSQL store, requests beginning at the same moment may
    /// each take the last room: the bound can be passed by as many.
    pub max_keys: usize,
    /// How long a request holds its key while it works; past it, the request is presumed
    /// dead (a crash) and a retry takes the key over.
    pub lease: Duration,
}

/// The right and the duty to do a key's work: publish [`payload`](Self::payload), then spend
/// the claim with [`IdempotencyStore::finish`], [`IdempotencyStore::fail`] or
/// [`IdempotencyStore::release`].
#[derive(Debug)]
#[must_use = "a claim must be finished or failed, or its key stays in flight until the lease ends"]
pub struct KeyClaim {
    key: IdempotencyKey,
    /// 1 for the key's first attempt; each resumption adds one.
    attempt: i64,
    payload: String,
}

impl KeyClaim {
    /// What to do: the payload given to [`IdempotencyStore::begin`] for a fresh key, the one
    /// stored by the first attempt for a resumed one.
    pub fn payload(&self) -> &str {
        &self.payload
    }

    pub fn key(&self) -> &IdempotencyKey {
        &self.key
    }

    /// Whether no attempt before this one may have sent the payload.
    fn is_first(&self) -> bool {
        self.attempt == 1
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
    Fresh(KeyClaim),
    /// An earlier attempt failed, or its lease ran out (its process died): do the work again
    /// with the payload that attempt stored, never a new one.
    Resume(KeyClaim),
    /// Done before: send its answer again.
    Replay(Replay),
    /// The key was used for another request.
    Mismatch,
    /// Another request with this key is at work and its lease has not run out.
    InFlight { retry_after: Duration },
    /// The store holds `max_keys` keys and none is answered: `in_flight` are at work, and
    /// `failed` failed in a way that may have published, so they are kept (until they
    /// expire) for their retries to publish the same thing. `retry_after` is when the first
    /// of them frees its room: a lease that ends, or a failed key that expires.
    Full {
        retry_after: Duration,
        in_flight: u64,
        failed: u64,
    },
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
    #[error("{place} was written by a newer version (schema {version}, this one knows {known})")]
    NewerSchema {
        place: String,
        version: i64,
        known: i64,
    },
    /// The PostgreSQL store refused this service (the login, TLS) or could not be prepared:
    /// a setting or a database to fix.
    #[error("cannot open the PostgreSQL idempotency store: {0}")]
    PostgresOpen(#[from] ordering_store::OpenError),
    #[error("the idempotency store failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A statement failed, or no connection could be had: worth trying again.
    #[error("the idempotency store failed: {0}")]
    Postgres(String),
    /// The database refuses a statement for a reason a person fixes (a missing grant or
    /// table): not worth trying again as it is.
    #[error("the idempotency store refuses this service: {0}")]
    PostgresRefused(String),
    #[error("the idempotency store holds a bad row: {0}")]
    Corrupt(String),
    #[error("the idempotency store's task stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl IdempotencyError {
    /// Whether the same call may succeed later (a lock, a full disk, a lost connection).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Sqlite(_) | Self::Task(_) | Self::Postgres(_) => true,
            Self::PostgresOpen(error) => error.is_transient(),
            _ => false,
        }
    }
}

/// Idempotency keys in a SQLite file or a PostgreSQL database. Cheap to clone.
#[derive(Clone)]
pub struct IdempotencyStore {
    backend: Backend,
    policy: Policy,
}

#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::Keys),
    Postgres(postgres::Keys),
}

impl std::fmt::Debug for IdempotencyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyStore")
            .field("store", &self.describe())
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

impl State {
    /// A row's state from its columns; `None` for a combination the schema forbids.
    fn from_columns(
        state: &str,
        lease_until_ms: Option<i64>,
        status: Option<i64>,
        body: Option<Vec<u8>>,
    ) -> Option<Self> {
        Some(match (state, lease_until_ms, status, body) {
            ("in_flight", Some(lease_until_ms), _, _) => Self::InFlight { lease_until_ms },
            ("failed", _, _, _) => Self::Failed,
            ("done", _, Some(status), Some(body)) => Self::Done(Replay {
                status: StatusCode::from_u16(u16::try_from(status).ok()?).ok()?,
                body: Bytes::from(body),
            }),
            _ => return None,
        })
    }
}

struct Row {
    fingerprint: Vec<u8>,
    attempt: i64,
    payload: String,
    state: State,
}

impl Row {
    /// Whether a key first seen at `created_at_ms` is past its TTL at the request's time, and
    /// may go: the prune's rule (a request still running within its lease keeps its key).
    fn expired(&self, created_at_ms: i64, request: &Request) -> bool {
        created_at_ms <= request.expired_before_ms()
            && match self.state {
                State::InFlight { lease_until_ms } => lease_until_ms <= request.now_ms,
                State::Failed | State::Done(_) => true,
            }
    }
}

/// What a key's row says a request is to do, before the store writes anything: the one rule
/// both stores follow.
enum Decision {
    /// Answer without a claim: a replay, a mismatch, a key in flight.
    Answer(Begin),
    /// Take the key over as `attempt`, with the payload the first attempt stored.
    Resume { attempt: i64, payload: String },
    /// No such key: store it, if there is room.
    New,
}

fn decide(row: Option<Row>, fingerprint: &Fingerprint, now_ms: i64) -> Decision {
    match row {
        None => Decision::New,
        Some(row) if row.fingerprint != fingerprint.0 => Decision::Answer(Begin::Mismatch),
        Some(Row {
            state: State::Done(replay),
            ..
        }) => Decision::Answer(Begin::Replay(replay)),
        Some(Row {
            state: State::InFlight { lease_until_ms },
            ..
        }) if lease_until_ms > now_ms => Decision::Answer(Begin::InFlight {
            retry_after: until(lease_until_ms, now_ms),
        }),
        // Failed, or its lease ran out: its process died mid-publish.
        Some(row) => Decision::Resume {
            attempt: row.attempt.saturating_add(1),
            payload: row.payload,
        },
    }
}

/// What a full store holds instead of answered keys, to say so truthfully.
struct Unanswered {
    in_flight: u64,
    failed: u64,
    /// The first lease to end after now, if any key is in flight.
    next_lease_end_ms: Option<i64>,
    /// When the oldest failed key was first seen, if any.
    oldest_failed_ms: Option<i64>,
}

impl Unanswered {
    fn full(self, policy: Policy, now_ms: i64) -> Begin {
        let expires = self
            .oldest_failed_ms
            .map(|created| created.saturating_add(millis(policy.ttl)));
        let first_free = match (self.next_lease_end_ms, expires) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Begin::Full {
            retry_after: first_free.map_or(policy.lease, |end| until(end, now_ms)),
            in_flight: self.in_flight,
            failed: self.failed,
        }
    }
}

impl IdempotencyStore {
    /// Opens (creating it and its directory if needed) the SQLite store at `path`: for one
    /// instance.
    pub fn open(path: &Path, policy: Policy) -> Result<Self, IdempotencyError> {
        Ok(Self {
            backend: Backend::Sqlite(sqlite::Keys::open(path)?),
            policy,
        })
    }

    /// Opens the PostgreSQL store at `url` (TLS and password as the URL says), creating its
    /// tables if needed: for several instances sharing keys.
    pub async fn open_postgres(
        url: &PostgresUrl,
        policy: Policy,
    ) -> Result<Self, IdempotencyError> {
        Ok(Self {
            backend: Backend::Postgres(postgres::Keys::open(url).await?),
            policy,
        })
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Where the keys are, without secrets: `sqlite://PATH` or the PostgreSQL URL described.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Sqlite(keys) => format!("sqlite://{}", keys.path().display()),
            Backend::Postgres(keys) => keys.describe(),
        }
    }

    /// Looks `key` up for a request with `fingerprint` at `now`, pruning expired keys and, when
    /// the store is full, the oldest answered ones. A new key is stored in flight with
    /// `payload` (durably, before this returns); an existing one says what to do instead.
    pub async fn begin(
        &self,
        key: IdempotencyKey,
        fingerprint: Fingerprint,
        payload: String,
        now: SystemTime,
    ) -> Result<Begin, IdempotencyError> {
        let request = Request {
            key,
            fingerprint,
            payload,
            now_ms: millis_since_epoch(now),
            policy: self.policy,
        };
        match &self.backend {
            Backend::Sqlite(keys) => keys.begin(request).await,
            Backend::Postgres(keys) => keys.begin(request).await,
        }
    }

    /// Records the answer of the claim's work, to be replayed to every retry.
    pub async fn finish(
        &self,
        claim: KeyClaim,
        status: StatusCode,
        body: Bytes,
    ) -> Result<Settled, IdempotencyError> {
        match &self.backend {
            Backend::Sqlite(keys) => keys.finish(claim, status, body).await,
            Backend::Postgres(keys) => keys.finish(claim, status, body).await,
        }
    }

    /// Records that the claim's work failed, perhaps after it sent something: the next retry
    /// does it again with the same payload.
    pub async fn fail(&self, claim: KeyClaim) -> Result<Settled, IdempotencyError> {
        match &self.backend {
            Backend::Sqlite(keys) => keys.fail(claim).await,
            Backend::Postgres(keys) => keys.fail(claim).await,
        }
    }

    /// Records that the claim's work surely sent nothing (a publish shed before it left): the
    /// key of a first attempt is forgotten at once, freeing its room, and a retry starts
    /// afresh; a resumed one is [failed](Self::fail), since an attempt before it may have
    /// sent its payload.
    pub async fn release(&self, claim: KeyClaim) -> Result<Settled, IdempotencyError> {
        if !claim.is_first() {
            return self.fail(claim).await;
        }
        match &self.backend {
            Backend::Sqlite(keys) => keys.release(claim).await,
            Backend::Postgres(keys) => keys.release(claim).await,
        }
    }

    /// Keys stored, whatever their state.
    pub async fn count(&self) -> Result<usize, IdempotencyError> {
        match &self.backend {
            Backend::Sqlite(keys) => keys.count().await,
            Backend::Postgres(keys) => keys.count().await,
        }
    }
}

/// One [`IdempotencyStore::begin`], as the backends take it.
struct Request {
    key: IdempotencyKey,
    fingerprint: Fingerprint,
    payload: String,
    now_ms: i64,
    policy: Policy,
}

impl Request {
    /// Expired keys are those first seen at or before this.
    fn expired_before_ms(&self) -> i64 {
        self.now_ms.saturating_sub(millis(self.policy.ttl))
    }

    fn lease_until_ms(&self) -> i64 {
        self.now_ms.saturating_add(millis(self.policy.lease))
    }

    fn max_keys(&self) -> i64 {
        i64::try_from(self.policy.max_keys).unwrap_or(i64::MAX)
    }

    fn claim(self, attempt: i64, payload: String) -> KeyClaim {
        KeyClaim {
            key: self.key,
            attempt,
            payload,
        }
    }
}

fn settled(changed: u64) -> Settled {
    if changed == 1 {
        Settled::Recorded
    } else {
        Settled::Superseded
    }
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

    /// Where a test's stores live: both backends run every test.
    enum Backing {
        Sqlite(tempfile::TempDir),
        Postgres {
            server: ordering_store::testing::TestPostgres,
            databases: std::collections::HashMap<String, String>,
        },
    }

    impl Backing {
        fn sqlite() -> Self {
            Self::Sqlite(tempfile::tempdir().unwrap())
        }

        fn postgres() -> Self {
            Self::Postgres {
                server: ordering_store::testing::TestPostgres::shared(),
                databases: Default::default(),
            }
        }

        /// The store called `name` (a file, a database), opened again if it was before.
        async fn open(&mut self, name: &str, policy: Policy) -> IdempotencyStore {
            match self {
                Self::Sqlite(dir) => {
                    IdempotencyStore::open(&dir.path().join(format!("sub/{name}.db")), policy)
                        .unwrap()
                }
                Self::Postgres { server, databases } => {
                    if !databases.contains_key(name) {
                        databases.insert(name.to_owned(), server.create_database().await);
                    }
                    let url = PostgresUrl::parse(&databases[name]).unwrap();
                    IdempotencyStore::open_postgres(&url, policy).await.unwrap()
                }
            }
        }
    }

    fn fresh(begin: Begin) -> KeyClaim {
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
        a_key_is_fresh_then_in_flight_then_replayed_in(Backing::sqlite()).await;
        a_key_is_fresh_then_in_flight_then_replayed_in(Backing::postgres()).await;
    }

    async fn a_key_is_fresh_then_in_flight_then_replayed_in(mut backing: Backing) {
        let store = backing.open("keys", policy()).await;
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
        resumed_in(Backing::sqlite()).await;
        resumed_in(Backing::postgres()).await;
    }

    async fn resumed_in(mut backing: Backing) {
        let print = Fingerprint::of(&[b"order"]);
        {
            let store = backing.open("keys", policy()).await;
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
        let store = backing.open("keys", policy()).await;
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
        expiry_in(Backing::sqlite()).await;
        expiry_in(Backing::postgres()).await;
    }

    async fn expiry_in(mut backing: Backing) {
        let store = backing
            .open(
                "keys",
                Policy {
                    ttl: Duration::from_secs(100),
                    max_keys: 2,
                    lease: LEASE,
                },
            )
            .await;
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
            Begin::Full {
                retry_after,
                in_flight,
                failed,
            } => {
                assert_eq!(retry_after, Duration::from_secs(8));
                assert_eq!((in_flight, failed), (2, 0));
            }
            other => panic!("{other:?}"),
        }
        store.fail(c).await.unwrap();
        // A failed key may have been published after all: never evicted for room, so its
        // retry republishes the stored order rather than a new one. The answer says so.
        match store
            .begin(key("d"), print, "d".into(), at(5))
            .await
            .unwrap()
        {
            Begin::Full {
                in_flight, failed, ..
            } => assert_eq!((in_flight, failed), (1, 1)),
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
        let store = backing.open("other", long).await;
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

    #[tokio::test]
    async fn a_first_attempt_that_sent_nothing_frees_its_key_and_a_resumed_one_keeps_it() {
        released_in(Backing::sqlite()).await;
        released_in(Backing::postgres()).await;
    }

    async fn released_in(mut backing: Backing) {
        let store = backing
            .open(
                "keys",
                Policy {
                    ttl: Duration::from_secs(3600),
                    max_keys: 1,
                    lease: LEASE,
                },
            )
            .await;
        let print = Fingerprint::of(&[b"same"]);
        let shed = fresh(
            store
                .begin(key("a"), print, "a".into(), at(0))
                .await
                .unwrap(),
        );
        assert_eq!(store.release(shed).await.unwrap(), Settled::Recorded);
        assert_eq!(store.count().await.unwrap(), 0);
        // Its room is free at once, and the key itself is new again.
        let b = fresh(
            store
                .begin(key("b"), print, "b".into(), at(1))
                .await
                .unwrap(),
        );
        store.fail(b).await.unwrap();
        let Begin::Resume(resumed) = store
            .begin(key("b"), print, "b2".into(), at(2))
            .await
            .unwrap()
        else {
            panic!("not resumed")
        };
        // The first attempt may have published: a shed retry keeps the key, as failed.
        assert_eq!(store.release(resumed).await.unwrap(), Settled::Recorded);
        match store
            .begin(key("c"), print, "c".into(), at(3))
            .await
            .unwrap()
        {
            Begin::Full {
                in_flight,
                failed,
                retry_after,
            } => {
                assert_eq!((in_flight, failed), (0, 1));
                // Nothing in flight: the room frees when the failed key expires.
                assert_eq!(retry_after, Duration::from_secs(3600 - 2));
            }
            other => panic!("{other:?}"),
        }
        let Begin::Resume(again) = store
            .begin(key("b"), print, "b3".into(), at(4))
            .await
            .unwrap()
        else {
            panic!("not resumed")
        };
        assert_eq!(again.payload(), "b");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn instances_sharing_postgres_race_for_a_key_and_exactly_one_wins() {
        let mut backing = Backing::postgres();
        let one = backing.open("shared", policy()).await;
        let other = backing.open("shared", policy()).await;
        let print = Fingerprint::of(&[b"same"]);
        let mut races = Vec::new();
        for n in 0..40 {
            for (instance, store) in [(0, &one), (1, &other)] {
                let store = store.clone();
                races.push(tokio::spawn(async move {
                    let payload = format!("order from instance {instance}");
                    let begin = store
                        .begin(key(&format!("k{n}")), print, payload, at(0))
                        .await
                        .unwrap();
                    (n, begin)
                }));
            }
        }
        let mut winners = std::collections::HashMap::new();
        for race in races {
            let (n, begin) = race.await.unwrap();
            match begin {
                Begin::Fresh(claim) => {
                    assert!(winners.insert(n, claim).is_none(), "key k{n} won twice");
                }
                Begin::InFlight { .. } => {}
                other => panic!("k{n}: {other:?}"),
            }
        }
        assert_eq!(winners.len(), 40, "every key has exactly one winner");
        assert_eq!(one.count().await.unwrap(), 40);
        // The winner's answer is what the other instance replays.
        let body = Bytes::from_static(b"first");
        let claim = winners.remove(&0).unwrap();
        let payload = claim.payload().to_owned();
        one.finish(claim, StatusCode::CREATED, body.clone())
            .await
            .unwrap();
        match other
            .begin(key("k0"), print, "other".into(), at(1))
            .await
            .unwrap()
        {
            Begin::Replay(replay) => assert_eq!(replay.body, body),
            other => panic!("{other:?}"),
        }
        assert!(payload.starts_with("order from instance"));
    }

    #[tokio::test]
    async fn a_database_that_refuses_the_tables_is_an_error_to_fix_not_a_wait() {
        let server = ordering_store::testing::TestPostgres::shared();
        let url = server.create_database().await;
        let role = format!("keys_{}", std::process::id());
        server
            .execute(&[&format!("CREATE ROLE {role} LOGIN")])
            .await;
        // PostgreSQL 15 lets only the owner create tables in `public`: this role may not.
        let (_, rest) = url.split_once('@').unwrap();
        let url = PostgresUrl::parse(&format!("postgres://{role}@{rest}")).unwrap();
        let error = IdempotencyStore::open_postgres(&url, policy())
            .await
            .unwrap_err();
        assert!(!error.is_retryable(), "{error}");
        assert!(error.to_string().contains("42501"), "{error}");
    }
}
