//! Topic administration: create what is missing, leave what exists.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::error::KafkaError;

/// Creates each of `topics` that does not exist yet, with `partitions` partitions and the
/// broker's default replication factor. Existing topics are left as they are. Works on a
/// broker with topic auto-creation off.
pub async fn ensure_topics(
    bootstrap_servers: &str,
    topics: &[&str],
    partitions: i32,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .create()
        .map_err(KafkaError::client("creating the admin client"))?;
    // -1: the broker's default replication factor (Kafka 2.4+), right for one local broker
    // and for a cluster alike.
    let new_topics: Vec<_> = topics
        .iter()
        .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(-1)))
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let created = tokio::time::timeout(timeout, admin.create_topics(&new_topics, &options))
        .await
        .map_err(|_| KafkaError::Timeout {
            operation: "creating topics",
            after: timeout,
        })?
        .map_err(KafkaError::client("creating topics"))?;
    for result in created {
        match result {
            Ok(name) => tracing::info!(topic = %name, partitions, "topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                tracing::error!(topic = %name, ?code, "topic not created");
                return Err(KafkaError::Client {
                    operation: "creating topics",
                    source: rdkafka::error::KafkaError::AdminOp(code),
                });
            }
        }
    }
    Ok(())
}

/// [`ensure_topics`] until it succeeds: a service started before its broker waits for it
/// instead of failing. Gives up only on an error retrying cannot fix.
pub async fn ensure_topics_when_ready(
    bootstrap_servers: &str,
    topics: &[&str],
    partitions: i32,
) -> Result<(), KafkaError> {
    let mut wait = Duration::from_millis(500);
    loop {
        match ensure_topics(
            bootstrap_servers,
            topics,
            partitions,
            Duration::from_secs(5),
        )
        .await
        {
            Ok(()) => return Ok(()),
            Err(error) if error.is_retryable() => {
                tracing::warn!(%error, ?wait, "topics not ready; the broker may be down, trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            Err(error) => return Err(error),
        }
    }
}
