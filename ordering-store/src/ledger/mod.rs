//! The redrive ledger (`ordering_core::RedriveLedger`) on its own, for a service whose state
//! is its own: one table, `redriven_records`, in the service's SQLite file or PostgreSQL
//! database, and nothing of the order flow. The order stores keep theirs in the same table,
//! with the same statements.

mod postgres;
mod sqlite;

use std::sync::Arc;

use ordering_core::{MemoryLedger, RedriveLedger};

pub use postgres::PostgresLedger;
pub use sqlite::SqliteLedger;

use crate::{OpenError, StoreUrl};

/// The ledger `url` names: `sqlite://PATH`, `postgres://…` or `memory://` (gone with the
/// process: for tests).
pub async fn open_ledger(url: &StoreUrl) -> Result<Arc<dyn RedriveLedger>, OpenError> {
    Ok(match url {
        StoreUrl::Memory => Arc::new(MemoryLedger::default()),
        StoreUrl::Sqlite(path) => Arc::new(SqliteLedger::open(path)?),
        StoreUrl::Postgres(url) => Arc::new(PostgresLedger::open(url).await?),
    })
}
