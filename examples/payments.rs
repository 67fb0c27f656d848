//! A service of another domain on `ordering-core` and `ordering-kafka`, with no order type in
//! sight: it books payments from the `payments` topic (its own `Payment` type and Avro
//! schema) into a ledger file, refuses negative amounts (dead-lettered at once to
//! `payments-dlq`) and waits out a ledger it cannot write. Retries, dead letters, per-key
//! order, commits and shutdown come from the library.
//!
//! `cargo run -p ordering-examples --example payments` (`-- --help` lists the service's
//! settings: `KAFKA_BOOTSTRAP_SERVERS`, `API_PORT` for `/health` and `/metrics`, ..., and its
//! own: `PAYMENTS_TOPIC`, `PAYMENTS_DLQ_TOPIC`, `PAYMENTS_GROUP`, `PAYMENTS_LEDGER`). `/health`
//! also checks that the ledger can be written. SIGTERM or Ctrl-C stops it after committing.
//! `examples/tests/payments.rs` runs it against a real broker.

use std::io::Write;
use std::process::ExitCode;

use async_trait::async_trait;
use ordering_core::{Classify, ErrorClass, Handler, RecordMeta};
use ordering_kafka::{Avro, SchemaVersions};
use ordering_service::ConsumerService;
use serde::{Deserialize, Serialize};

/// The event, as its Avro schema names it (the record's name is the type's, or `rename`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename = "Payment", rename_all = "camelCase")]
struct Payment {
    payment_id: String,
    account: String,
    amount_cents: i64,
}

/// Every published version of the schema, oldest first: a change is a new version.
const PAYMENT_VERSIONS: SchemaVersions = SchemaVersions {
    name: "payment",
    record: "com.example.payments.Payment",
    published: &[
        r#"{"type": "record", "name": "Payment", "namespace": "com.example.payments",
      "fields": [{"name": "paymentId", "type": "string"}, {"name": "account", "type": "string"},
                 {"name": "amountCents", "type": "long"}]}"#,
    ],
};

/// One rule for the class: the record's fault is `Retryable` or `Permanent` (retried, then
/// dead-lettered), the world's fault is `Unavailable` (waited out, never dead-lettered).
#[derive(Debug, thiserror::Error)]
enum BookingError {
    #[error("a negative amount: {0} cents")]
    Negative(i64),
    #[error("the ledger cannot be written: {0}")]
    LedgerDown(#[from] std::io::Error),
}

impl Classify for BookingError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Negative(_) => ErrorClass::Permanent,
            Self::LedgerDown(_) => ErrorClass::Unavailable,
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            Self::Negative(_) => "NegativeAmount",
            Self::LedgerDown(_) => "LedgerDown",
        }
    }
}

/// Books each payment as a line of the ledger file, durably, before it is committed.
struct Ledger(std::path::PathBuf);

#[async_trait]
impl Handler<Payment> for Ledger {
    type Error = BookingError;

    async fn handle(&self, payment: &Payment, _meta: &RecordMeta) -> Result<(), BookingError> {
        if payment.amount_cents < 0 {
            return Err(BookingError::Negative(payment.amount_cents));
        }
        let line = format!(
            "{} {} {}\n",
            payment.payment_id, payment.account, payment.amount_cents
        );
        let path = self.0.clone();
        // File writes block: off the runtime's workers.
        tokio::task::spawn_blocking(move || {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            file.write_all(line.as_bytes())?;
            file.sync_data()
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(())
    }
}

/// The service's own settings, listed by `--help` beside the library's.
#[derive(clap::Args)]
struct Settings {
    /// The topic of the payments
    #[arg(long, env = "PAYMENTS_TOPIC", default_value = "payments")]
    payments_topic: String,
    /// Where payments that cannot be booked go
    #[arg(long, env = "PAYMENTS_DLQ_TOPIC", default_value = "payments-dlq")]
    payments_dlq_topic: String,
    /// The consumer group of the instances
    #[arg(long, env = "PAYMENTS_GROUP", default_value = "payments")]
    payments_group: String,
    /// The ledger file, one line per booked payment
    #[arg(long, env = "PAYMENTS_LEDGER", default_value = "payments-ledger.txt")]
    payments_ledger: std::path::PathBuf,
}

/// `/health`'s look at the ledger: can it be opened for appending?
async fn ledger_writable(path: std::path::PathBuf) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map(drop)
            .map_err(|e| format!("the ledger {} cannot be written: {e}", path.display()))
    })
    .await
    .map_err(|e| e.to_string())?
}

#[tokio::main]
async fn main() -> ExitCode {
    // Nothing of this runs on `--help`: the settings are parsed first.
    ordering_service::run_with_settings("payments", |settings: Settings| async move {
        let path = settings.payments_ledger;
        let codec = Avro::<Payment>::new(PAYMENT_VERSIONS)?;
        let check = path.clone();
        // Topics, dead letters, signals, session timeout, /health, /metrics and logs: wired
        // once.
        Ok(ConsumerService::new("payments", Ledger(path), codec)
            .topics([settings.payments_topic])
            .dead_letters(settings.payments_dlq_topic)
            .group(settings.payments_group)
            .health_check("ledger", move || ledger_writable(check.clone())))
    })
    .await
}
