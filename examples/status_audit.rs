//! A service of your own on `ordering-core` and `ordering-kafka`: it reads the status updates
//! from Kafka, refuses statuses it does not know (dead-lettered at once, as permanent) and logs
//! the others. Retries, dead letters, ordering and commits come from the library.
//!
//! With the system running (`scripts/start`):
//! `cargo run -p ordering-examples --example status_audit`, then send updates with curl;
//! Ctrl-C stops it after committing.

use async_trait::async_trait;
use ordering_core::order::OrderEvent;
use ordering_core::{Classify, Dispatcher, DispatcherConfig, ErrorClass, Handler, RecordMeta};
use std::time::Duration;

use ordering_kafka::order::AvroCodec;
use ordering_kafka::{
    KafkaProducer, KafkaSource, ProducerConfig, SourceConfig, TopicSettings, ensure_topics,
};

const KNOWN: &[&str] = &["pending", "paid", "shipped", "delivered", "cancelled"];

#[derive(Debug, thiserror::Error)]
#[error("unknown status {0:?}")]
struct UnknownStatus(String);

impl Classify for UnknownStatus {
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent // retrying will not make it known
    }
    fn kind(&self) -> &'static str {
        "UnknownStatus"
    }
}

struct Audit;

#[async_trait]
impl Handler<OrderEvent> for Audit {
    type Error = UnknownStatus;

    async fn handle(&self, event: &OrderEvent, meta: &RecordMeta) -> Result<(), UnknownStatus> {
        if let OrderEvent::StatusUpdated(update) = event {
            let status = update.status.trim().to_lowercase();
            if !KNOWN.contains(&status.as_str()) {
                return Err(UnknownStatus(update.status.clone()));
            }
            println!(
                "{} -> {status} ({}@{})",
                update.order_id, meta.tp, meta.offset
            );
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The library logs through `tracing` (retries, dead letters, rebalances): without a
    // subscriber those logs go nowhere.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let bootstrap =
        std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let codec = AvroCodec::new()?;
    ensure_topics(
        &bootstrap,
        &["status-audit-dlq"],
        &TopicSettings::new(3),
        Duration::from_secs(10),
    )
    .await?;
    let source = KafkaSource::<OrderEvent, _>::new(
        &SourceConfig::new(&bootstrap, "status-audit", ["order-status-updates"]),
        codec,
    )?;
    let dead_letters =
        KafkaProducer::new(&ProducerConfig::new(&bootstrap))?.sink("status-audit-dlq", codec);

    println!("auditing order-status-updates on {bootstrap}; Ctrl-C to stop");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    Dispatcher::new(source, Audit, dead_letters, DispatcherConfig::default())
        .run(shutdown)
        .await?;
    Ok(())
}
