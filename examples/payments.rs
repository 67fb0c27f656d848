//! A service of another domain on `ordering-core` and `ordering-kafka`, with no order type in
//! sight: it books payments from the `payments` topic (its own `Payment` type and Avro
//! schema) into a ledger file, refuses negative amounts (dead-lettered at once to
//! `payments-dlq`) and waits out a ledger it cannot write. Retries, dead letters, per-key
//! order, commits and shutdown come from the library.
//!
//! `cargo run -p ordering-examples --example payments` (`-- --help` lists the service's
//! settings: `KAFKA_BOOTSTRAP_SERVERS`, `API_PORT` for `/health` and `/metrics`, ...), and
//! `PAYMENTS_TOPIC`, `PAYMENTS_DLQ_TOPIC`, `PAYMENTS_GROUP`, `PAYMENTS_LEDGER` to change the
//! defaults. SIGTERM or Ctrl-C stops it after committing. `examples/tests/payments.rs` runs
//! it against a real broker.

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

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let setting =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let ledger = Ledger(setting("PAYMENTS_LEDGER", "payments-ledger.txt").into());
    let codec = Avro::<Payment>::new(PAYMENT_VERSIONS)?;
    // Topics, dead letters, signals, session timeout, /health, /metrics and logs: wired once.
    Ok(ConsumerService::new("payments", ledger, codec)
        .topics([setting("PAYMENTS_TOPIC", "payments")])
        .dead_letters(setting("PAYMENTS_DLQ_TOPIC", "payments-dlq"))
        .group(setting("PAYMENTS_GROUP", "payments"))
        .run()
        .await)
}
