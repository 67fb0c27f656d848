//! Inventory reservations: a service of its own domain built from the kit, as a newcomer
//! would write it. JSON events keyed by SKU (one SKU's reservations in order, one lane each),
//! its own SQLite stock table, its own setting (`INVENTORY_DB`) and health check (the stock
//! database answers), permanent failures (`OutOfStock`, `UnknownSku`: dead-lettered at once)
//! and outages (the database busy: waited out, never dead-lettered). `inventory_redrive`
//! sends the letters back once the stock is replenished, with a durable ledger.
//!
//! `cargo run -p ordering-examples --example inventory -- --help` lists its settings.
//! `examples/tests/inventory.rs` runs it against a real broker, `kill -9` included.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ordering_core::{Classify, ErrorClass, Handler, RecordMeta};
use ordering_kafka::Json;
use ordering_service::ConsumerService;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

/// A reservation of `quantity` units of `sku`, applied once whatever the deliveries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    pub reservation_id: String,
    pub sku: String,
    pub quantity: u32,
}

#[derive(Debug, thiserror::Error)]
enum ReserveError {
    #[error("{sku}: {wanted} wanted, {left} left")]
    OutOfStock { sku: String, wanted: u32, left: i64 },
    #[error("no SKU {0} in stock")]
    UnknownSku(String),
    #[error("the stock database: {0}")]
    Database(#[from] rusqlite::Error),
}

impl Classify for ReserveError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::OutOfStock { .. } | Self::UnknownSku(_) => ErrorClass::Permanent,
            // Busy, locked, full: the world's fault, waited out.
            Self::Database(_) => ErrorClass::Unavailable,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::OutOfStock { .. } => "OutOfStock",
            Self::UnknownSku(_) => "UnknownSku",
            Self::Database(_) => "StockDatabase",
        }
    }
}

/// The stock, in the service's own SQLite file.
#[derive(Clone)]
struct Stock(Arc<Mutex<Connection>>);

impl Stock {
    fn open(path: &std::path::Path) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, units INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS reservations (
                 reservation_id TEXT PRIMARY KEY, sku TEXT NOT NULL, quantity INTEGER NOT NULL);",
        )?;
        Ok(Self(Arc::new(Mutex::new(conn))))
    }

    /// Takes the units and records the reservation in one transaction; a reservation already
    /// recorded (a redelivery, a redrive) changes nothing.
    fn reserve(&self, r: &Reservation) -> Result<(), ReserveError> {
        let mut conn = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let done: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM reservations WHERE reservation_id = ?1",
                params![r.reservation_id],
                |row| row.get(0),
            )
            .optional()?;
        if done.is_some() {
            return Ok(());
        }
        let left: i64 = tx
            .query_row(
                "SELECT units FROM stock WHERE sku = ?1",
                params![r.sku],
                |row| row.get(0),
            )
            .optional()?
            .ok_or_else(|| ReserveError::UnknownSku(r.sku.clone()))?;
        if left < i64::from(r.quantity) {
            return Err(ReserveError::OutOfStock {
                sku: r.sku.clone(),
                wanted: r.quantity,
                left,
            });
        }
        tx.execute(
            "UPDATE stock SET units = units - ?2 WHERE sku = ?1",
            params![r.sku, r.quantity],
        )?;
        tx.execute(
            "INSERT INTO reservations (reservation_id, sku, quantity) VALUES (?1, ?2, ?3)",
            params![r.reservation_id, r.sku, r.quantity],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// `/health`'s look: the database answers.
    fn answers(&self) -> Result<(), String> {
        let conn = self.0.lock().unwrap_or_else(|e| e.into_inner());
        conn.query_row("SELECT count(*) FROM stock", [], |row| row.get::<_, i64>(0))
            .map(drop)
            .map_err(|e| format!("the stock database does not answer: {e}"))
    }
}

struct Reserve(Stock);

#[async_trait]
impl Handler<Reservation> for Reserve {
    type Error = ReserveError;

    async fn handle(&self, r: &Reservation, _meta: &RecordMeta) -> Result<(), ReserveError> {
        let (stock, r) = (self.0.clone(), r.clone());
        // SQLite blocks: off the runtime's workers.
        tokio::task::spawn_blocking(move || stock.reserve(&r))
            .await
            .map_err(|e| {
                ReserveError::Database(rusqlite::Error::ToSqlConversionFailure(e.into()))
            })?
    }
}

/// The service's own settings, listed by `--help` beside the kit's.
#[derive(clap::Args)]
struct Settings {
    /// The SQLite file of the stock
    #[arg(long, env = "INVENTORY_DB", default_value = "inventory.db")]
    inventory_db: PathBuf,
    /// The topic of the reservations
    #[arg(long, env = "INVENTORY_TOPIC", default_value = "reservations")]
    inventory_topic: String,
    /// Where reservations that cannot be made go
    #[arg(long, env = "INVENTORY_DLQ_TOPIC", default_value = "reservations-dlq")]
    inventory_dlq_topic: String,
    /// The consumer group of the instances
    #[arg(long, env = "INVENTORY_GROUP", default_value = "inventory")]
    inventory_group: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    ordering_service::run_with_settings("inventory", |settings: Settings| async move {
        let stock = Stock::open(&settings.inventory_db)?;
        let check = stock.clone();
        let codec = Json::<Reservation>::new().invalid_as("InvalidReservation");
        Ok(ConsumerService::new("inventory", Reserve(stock), codec)
            .topics([settings.inventory_topic])
            .dead_letters(settings.inventory_dlq_topic)
            .group(settings.inventory_group)
            .health_check("stock", move || {
                let check = check.clone();
                async move {
                    tokio::task::spawn_blocking(move || check.answers())
                        .await
                        .map_err(|e| e.to_string())?
                }
            }))
    })
    .await
}
