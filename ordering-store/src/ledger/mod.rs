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

// The table as the order stores' migrations leave it (`0007_incarnations.sql`), for a
// database with no order store in it; the same words in both dialects.
const TABLE: &str = "
    CREATE TABLE IF NOT EXISTS redriven_records (
        origin_topic       TEXT    NOT NULL,
        origin_incarnation INTEGER NOT NULL,
        origin_partition   INTEGER NOT NULL,
        origin_offset      BIGINT  NOT NULL,
        redrive_count      INTEGER NOT NULL,
        times              INTEGER NOT NULL,
        last_at_ms         BIGINT  NOT NULL,
        PRIMARY KEY (origin_topic, origin_incarnation, origin_partition, origin_offset,
                     redrive_count)
    )";

/// The ledger `url` names: `sqlite://PATH`, `postgres://…` or `memory://` (gone with the
/// process: for tests).
pub async fn open_ledger(url: &StoreUrl) -> Result<Arc<dyn RedriveLedger>, OpenError> {
    Ok(match url {
        StoreUrl::Memory => Arc::new(MemoryLedger::default()),
        StoreUrl::Sqlite(path) => Arc::new(SqliteLedger::open(path)?),
        StoreUrl::Postgres(url) => Arc::new(PostgresLedger::open(url).await?),
    })
}
