//! Sends the inventory's dead letters back to its topic, once each (a durable ledger beside
//! the stock), skipping none the service did not refuse: what an operator runs after
//! replenishing the stock. Prints the report as JSON.
//!
//! `INVENTORY_DB`, `INVENTORY_TOPIC`, `INVENTORY_DLQ_TOPIC`, `KAFKA_BOOTSTRAP_SERVERS` as the
//! service reads them.

use std::process::ExitCode;
use std::sync::Arc;

use ordering_kafka::{DeadLetterCodec, KafkaProducer, ProducerConfig, Redrive, Redriver};
use ordering_store::SqliteLedger;

#[tokio::main]
async fn main() -> ExitCode {
    let setting =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    match redrive(setting).await {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("inventory_redrive: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn redrive(
    setting: impl Fn(&str, &str) -> String,
) -> Result<String, Box<dyn std::error::Error>> {
    let ledger = SqliteLedger::open(setting("INVENTORY_DB", "inventory.db").as_ref())?;
    let producer = KafkaProducer::new(&ProducerConfig::new(setting(
        "KAFKA_BOOTSTRAP_SERVERS",
        "127.0.0.1:9092",
    )))?;
    let redriver = Redriver::builder(producer, DeadLetterCodec::new()?, Arc::new(ledger))
        .dead_letters(setting("INVENTORY_DLQ_TOPIC", "reservations-dlq"))
        .topics([setting("INVENTORY_TOPIC", "reservations")])
        .build()?;
    let report = redriver.run(&Redrive::default()).await?;
    Ok(serde_json::json!({
        "matched": report.matched,
        "republished": report.republished,
        "skipped": report.skipped,
        "failed": report.failed,
    })
    .to_string())
}
