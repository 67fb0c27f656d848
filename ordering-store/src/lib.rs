//! Durable [`OrderStore`] backends for `ordering-core`, chosen by one URL:
//!
//! | URL | store |
//! |---|---|
//! | `sqlite://PATH` | [`SqliteStore`]: one file, WAL, `synchronous=FULL`; embedded, for one instance |
//! | `postgres://USER@HOST:PORT/DB` | [`PostgresStore`]: pooled, bounded timeouts; shared by several instances |
//! | `memory://` | `ordering_core::order::MemoryStore`: gone with the process; for tests and demos |
//!
//! Every durable write is group-committed: writes queued while a transaction commits share the
//! next one, and each is answered only once its own transaction is durable. Migrations ship
//! in the crate and run when a store opens; a database written by a newer version is refused.
//! Store failures say whether the record is at fault ([`StoreError::Rejected`]) or the store is
//! down ([`StoreError::Unavailable`], which the dispatcher waits out without dead-lettering).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = ordering_store::StoreUrl::parse("sqlite://data/orders.db")?.open().await?;
//! let handler = ordering_core::order::OrderEventHandler::new(store);
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod batch;
mod ledger;
mod migrations;
mod postgres;
mod postgres_url;
mod sqlite;
mod statements;
#[cfg(feature = "testing")]
pub mod testing;
mod timed;

use std::path::PathBuf;
use std::sync::Arc;

use ordering_core::order::{MemoryStore, OrderId, OrderStore};
use ordering_core::{RedriveLedger, StoreError, TopicIncarnations};

/// The pool [`PostgresUrl::pool`] makes, for a crate that keeps tables of its own beside the
/// store's (the same TLS, passwords and timeouts).
pub use deadpool_postgres;
pub use ledger::{PostgresLedger, SqliteLedger, open_ledger};
pub use postgres::{PostgresStore, connect_error, first_connection};
pub use postgres_url::{PostgresUrl, Refusal, SslMode};
pub use secrecy::{ExposeSecret, SecretString};
pub use sqlite::SqliteStore;
use timed::Timed;

/// What a service keeps in its store: orders, the ledger of dead letters sent back
/// (`ordering_core::RedriveLedger`) and the numbers of its topics' incarnations
/// (`ordering_core::TopicIncarnations`). An `Arc<dyn Store>` converts to an
/// `Arc<dyn OrderStore>` (or either of the others).
pub trait Store: OrderStore + RedriveLedger + TopicIncarnations {}

impl<T: OrderStore + RedriveLedger + TopicIncarnations + ?Sized> Store for T {}

/// Which store to open, parsed from a URL.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreUrl {
    /// `memory://` (or `memory:`): a store gone with the process.
    Memory,
    /// `sqlite://PATH`: the SQLite file at `PATH`, relative to the working directory unless
    /// absolute (`sqlite:///var/lib/orders.db`).
    Sqlite(PathBuf),
    /// `postgres://` or `postgresql://`: a PostgreSQL database.
    Postgres(Box<PostgresUrl>),
}

// By hand: a PostgreSQL URL may carry a password, which must not reach a log.
impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// A store URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// The URL is none of `memory://`, `sqlite://PATH` or `postgres://USER@HOST:PORT/DB`.
    #[error(
        "unsupported store URL; expected memory://, sqlite://PATH or postgres://USER@HOST:PORT/DB"
    )]
    Scheme,
    /// A `sqlite://` URL without a file path.
    #[error("sqlite:// needs a file path, e.g. sqlite://data/orders.db")]
    NoPath,
    /// A `postgres://` URL that cannot be used (no host or user, an unknown `sslmode`, an
    /// unreadable `sslrootcert`), or a password given twice or to a store that takes none.
    #[error("not a valid PostgreSQL URL: {0}")]
    Postgres(String),
}

/// Why a store could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The database was migrated by a newer version of this crate: upgrade the service or
    /// point it at another database. Not transient.
    #[error(
        "the database was written by a newer version (schema version {found}; this version knows up to {known}); upgrade this service or point it at another database"
    )]
    NewerSchema {
        /// The database's schema version.
        found: u32,
        /// The newest schema version this build knows.
        known: u32,
    },
    /// The SQLite database cannot be opened, created or migrated (its directory cannot be
    /// made, the file is not a database, WAL is not available). Not transient.
    #[error("cannot open the SQLite database {}: {reason}", path.display())]
    Sqlite {
        /// The database file (empty when the task opening it failed).
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// Worth trying again later: the server is not up (yet), or busy.
    #[error("the PostgreSQL server cannot be reached: {0}")]
    Unreachable(String),
    /// The server refuses the connection for a reason a person fixes: the login, TLS.
    #[error("cannot connect to PostgreSQL: {0}")]
    Refused(Refusal),
    /// Opening failed for a reason waiting does not fix: the TLS connector or the pool
    /// cannot be built (an unreadable `sslrootcert`, say), or a statement run while opening
    /// failed for its data (SQLSTATE class 22 or 23).
    #[error("cannot open the PostgreSQL store: {0}")]
    Postgres(String),
}

impl OpenError {
    /// Worth trying again later, rather than a setting or a database to fix.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable(_))
    }
}

impl StoreUrl {
    /// Parses a store URL, surrounding whitespace ignored; the crate's documentation lists
    /// the forms.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let url = url.trim();
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(UrlError::NoPath);
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if url == "memory://" || url == "memory:" {
            return Ok(Self::Memory);
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(Box::new(PostgresUrl::parse(url)?)));
        }
        Err(UrlError::Scheme)
    }

    /// The store's password from elsewhere than the URL (`ORDER_STORE_PASSWORD_FILE`): only
    /// a PostgreSQL store has one, and only one place may give it.
    pub fn with_password(self, password: &SecretString) -> Result<Self, UrlError> {
        match self {
            Self::Postgres(url) => Ok(Self::Postgres(Box::new(url.with_password(password)?))),
            _ => Err(UrlError::Postgres(
                "a password is for postgres:// stores only".into(),
            )),
        }
    }

    /// The URL without secrets, for logs and `/health`.
    pub fn describe(&self) -> String {
        match self {
            Self::Memory => "memory://".into(),
            Self::Sqlite(path) => format!("sqlite://{}", path.display()),
            Self::Postgres(url) => url.describe(),
        }
    }

    /// The kind of store: `memory`, `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Opens the store, creating and migrating its database as needed. PostgreSQL needs a
    /// running tokio runtime (its writer is a task).
    pub async fn open(&self) -> Result<Arc<dyn Store>, OpenError> {
        let kind = self.kind();
        Ok(match self {
            Self::Memory => Arc::new(Timed::new(MemoryStore::new(), kind)),
            Self::Sqlite(path) => {
                let path = path.clone();
                let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path))
                    .await
                    .map_err(|e| OpenError::Sqlite {
                        path: PathBuf::new(),
                        reason: e.to_string(),
                    })??;
                Arc::new(Timed::new(store, kind))
            }
            Self::Postgres(url) => {
                let store = PostgresStore::open(url).await?;
                Arc::new(Timed::new(store, kind))
            }
        })
    }
}

/// Ids as stored; one that no longer parses is skipped with a warning rather than failing
/// the whole listing.
fn parse_ids(raw: Vec<String>) -> Result<Vec<OrderId>, StoreError> {
    Ok(raw
        .into_iter()
        .filter_map(|id| match OrderId::parse(&id) {
            Ok(id) => Some(id),
            Err(error) => {
                tracing::warn!(%id, %error, "a stored order id is invalid; not listed");
                None
            }
        })
        .collect())
}

use ordering_core::now_ms;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_their_store() {
        assert_eq!(StoreUrl::parse("memory://").unwrap(), StoreUrl::Memory);
        assert_eq!(
            StoreUrl::parse("sqlite://data/orders.db").unwrap(),
            StoreUrl::Sqlite("data/orders.db".into())
        );
        assert_eq!(
            StoreUrl::parse("sqlite:///var/lib/orders.db").unwrap(),
            StoreUrl::Sqlite("/var/lib/orders.db".into())
        );
        let pg = StoreUrl::parse("postgres://app:secret@db.local:6543/orders").unwrap();
        assert_eq!(pg.kind(), "postgres");
        assert_eq!(
            pg.describe(),
            "postgres://app@db.local:6543/orders?sslmode=prefer"
        );
        assert!(!format!("{pg:?}").contains("secret"));
    }

    #[test]
    fn bad_urls_say_what_is_expected() {
        assert_eq!(StoreUrl::parse("mysql://x").unwrap_err(), UrlError::Scheme);
        assert_eq!(StoreUrl::parse("").unwrap_err(), UrlError::Scheme);
        assert_eq!(StoreUrl::parse("sqlite://").unwrap_err(), UrlError::NoPath);
        assert!(matches!(
            StoreUrl::parse("postgres://@:notaport/x"),
            Err(UrlError::Postgres(_))
        ));
        assert!(UrlError::Scheme.to_string().contains("sqlite://PATH"));
    }
}
