//! A service of another domain on `ordering-core` and `ordering-kafka`, with no order type in
//! sight: it books payments from the `payments` topic (its own `Payment` type and Avro
//! schema) into a ledger file, refuses negative amounts (dead-lettered at once to
//! `payments-dlq`) and waits out a ledger it cannot write. Retries, dead letters, per-key
//! order, commits and shutdown come from the library.
//!
//! `cargo run -p ordering-examples --example payments` with `KAFKA_BOOTSTRAP_SERVERS` (default
//! `127.0.0.1:9092`), and `PAYMENTS_TOPIC`, `PAYMENTS_DLQ_TOPIC`, `PAYMENTS_GROUP`,
//! `PAYMENTS_LEDGER` to change the defaults. SIGTERM or Ctrl-C stops it after committing.
//! `examples/tests/payments.rs` runs it against a real broker.

use std::io::Write;
use std::time::Duration;

use async_trait::async_trait;
use ordering_core::{
    Classify, Dispatcher, DispatcherConfig, ErrorClass, Handler, LaneMode, RecordMeta,
};
use ordering_kafka::{
    Avro, DeadLetterCodec, KafkaProducer, KafkaSource, ProducerConfig, SchemaVersions,
    SourceConfig, TopicSettings, ensure_topics,
};
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
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The library logs through `tracing`: without a subscriber its logs go nowhere.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let setting =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let bootstrap = setting("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092");
    let (topic, dlq) = (
        setting("PAYMENTS_TOPIC", "payments"),
        setting("PAYMENTS_DLQ_TOPIC", "payments-dlq"),
    );
    let ledger = Ledger(setting("PAYMENTS_LEDGER", "payments-ledger.txt").into());

    ensure_topics(
        &bootstrap,
        &[&topic, &dlq],
        &TopicSettings::new(3),
        Duration::from_secs(30),
    )
    .await?;
    let mut config = SourceConfig::new(&bootstrap, setting("PAYMENTS_GROUP", "payments"), [&topic]);
    // A restarted instance rejoins fast instead of waiting out librdkafka's 45 s.
    config
        .overrides
        .push(("session.timeout.ms".into(), "10000".into()));
    let source = KafkaSource::new(&config, Avro::<Payment>::new(PAYMENT_VERSIONS)?)?;
    let dead_letters =
        KafkaProducer::new(&ProducerConfig::new(&bootstrap))?.sink(&dlq, DeadLetterCodec::new()?);
    // Per account: one account's retries hold back only that account.
    let config = DispatcherConfig {
        lanes: LaneMode::Key,
        ..DispatcherConfig::default()
    };

    tracing::info!(%topic, %dlq, "booking payments");
    Dispatcher::new(source, ledger, dead_letters, config)
        .run(stop_signal())
        .await?;
    tracing::info!("stopped; everything booked is committed");
    Ok(())
}

/// SIGTERM (a service manager stopping it) or Ctrl-C.
async fn stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        Some(()) = async { term.as_mut()?.recv().await } => {}
    }
}
