//! Topic administration: create what is missing with the settings asked for, check what
//! exists against them.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;

use crate::error::KafkaError;
use crate::security::{Cluster, Connectivity};

/// How topics are created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSettings {
    /// Partitions of each topic created. Not checked on an existing topic: its count is
    /// never reported as a drift.
    pub partitions: i32,
    /// Copies of each partition, on as many brokers. `None`: the broker's default
    /// (`default.replication.factor`, 1 on a stock Apache Kafka).
    pub replication_factor: Option<i32>,
    /// Copies that must have a record before an `acks=all` write of it succeeds: with a
    /// replication factor of 3 and 2 here, one broker can fail with no acknowledged record
    /// lost and writes still accepted. `None`: the broker's default (1).
    pub min_insync_replicas: Option<i32>,
}

impl TopicSettings {
    /// `partitions` partitions, replication as the broker's defaults.
    pub fn new(partitions: i32) -> Self {
        Self {
            partitions,
            replication_factor: None,
            min_insync_replicas: None,
        }
    }
}

/// An existing topic whose setting differs from what was asked for: topics are never
/// changed behind an operator's back, so this is reported, not corrected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDrift {
    /// The topic's name.
    pub topic: String,
    /// `replication.factor` or `min.insync.replicas`.
    pub setting: &'static str,
    /// The value asked for in [`TopicSettings`].
    pub wanted: i32,
    /// What the broker reports; `None` when it reports nothing for it.
    pub actual: Option<String>,
}

impl std::fmt::Display for TopicDrift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "topic {} has {} = {}, not {} as configured",
            self.topic,
            self.setting,
            self.actual.as_deref().unwrap_or("(not reported)"),
            self.wanted
        )
    }
}

/// Creates each of `topics` that does not exist yet, with `settings`. Existing topics are
/// left as they are, and checked: each setting they do not have as asked is returned (and
/// logged as a warning). Works on a broker with topic auto-creation off.
pub async fn ensure_topics(
    cluster: impl Into<Cluster>,
    topics: &[&str],
    settings: &TopicSettings,
    timeout: Duration,
) -> Result<Vec<TopicDrift>, KafkaError> {
    let cluster = cluster.into();
    let admin: Arc<AdminClient<Connectivity>> = Arc::new(
        cluster
            .client_config()
            .create_with_context(Connectivity::of(&cluster))
            .map_err(KafkaError::client("creating the admin client"))?,
    );
    let ensured = ensure_with(&admin, topics, settings, timeout).await;
    // A refusal (a login, a certificate) says more than the timeout it caused.
    match (ensured, admin.inner().context().failure()) {
        (Err(error), Some(failure)) if error.is_retryable() => Err(KafkaError::Connect(failure)),
        (ensured, _) => ensured,
    }
}

async fn ensure_with(
    admin: &Arc<AdminClient<Connectivity>>,
    topics: &[&str],
    settings: &TopicSettings,
    timeout: Duration,
) -> Result<Vec<TopicDrift>, KafkaError> {
    // -1: the broker's default replication factor (Kafka 2.4+), right for one local broker
    // and for a cluster alike.
    let replication = settings.replication_factor.unwrap_or(-1);
    let min_insync = settings.min_insync_replicas.map(|n| n.to_string());
    let new_topics: Vec<_> = topics
        .iter()
        .map(|name| {
            let topic = NewTopic::new(
                name,
                settings.partitions,
                TopicReplication::Fixed(replication),
            );
            match &min_insync {
                Some(n) => topic.set("min.insync.replicas", n),
                None => topic,
            }
        })
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
    let mut existing = Vec::new();
    for result in created {
        match result {
            Ok(name) => tracing::info!(topic = %name, ?settings, "topic created"),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => existing.push(name),
            Err((name, code)) => {
                tracing::error!(topic = %name, ?code, ?settings, "topic not created");
                return Err(KafkaError::Client {
                    operation: "creating topics",
                    source: rdkafka::error::KafkaError::AdminOp(code),
                });
            }
        }
    }
    let drifts = check_existing(admin, &existing, settings, &options, timeout).await?;
    for drift in &drifts {
        tracing::warn!("{drift}");
    }
    Ok(drifts)
}

/// The settings of `topics` (which exist) that differ from `settings`.
async fn check_existing(
    admin: &Arc<AdminClient<Connectivity>>,
    topics: &[String],
    settings: &TopicSettings,
    options: &AdminOptions,
    timeout: Duration,
) -> Result<Vec<TopicDrift>, KafkaError> {
    let mut drifts = Vec::new();
    if topics.is_empty() {
        return Ok(drifts);
    }
    if let Some(wanted) = settings.replication_factor {
        // Metadata calls block their thread: off the runtime.
        let client = admin.clone();
        let metadata =
            tokio::task::spawn_blocking(move || client.inner().fetch_metadata(None, timeout))
                .await
                .map_err(|e| KafkaError::Config(format!("the metadata task failed: {e}")))?
                .map_err(KafkaError::client("reading topic metadata"))?;
        for topic in metadata
            .topics()
            .iter()
            .filter(|t| topics.iter().any(|n| n == t.name()))
        {
            let copies = topic.partitions().iter().map(|p| p.replicas().len()).min();
            if copies != Some(wanted as usize) {
                drifts.push(TopicDrift {
                    topic: topic.name().to_owned(),
                    setting: "replication.factor",
                    wanted,
                    actual: copies.map(|n| n.to_string()),
                });
            }
        }
    }
    if let Some(wanted) = settings.min_insync_replicas {
        let resources: Vec<_> = topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
        let described = tokio::time::timeout(timeout, admin.describe_configs(&resources, options))
            .await
            .map_err(|_| KafkaError::Timeout {
                operation: "describing topics",
                after: timeout,
            })?
            .map_err(KafkaError::client("describing topics"))?;
        for (topic, result) in topics.iter().zip(described) {
            let actual = result.ok().and_then(|config| {
                config
                    .get("min.insync.replicas")
                    .and_then(|e| e.value.clone())
            });
            if actual.as_deref() != Some(wanted.to_string().as_str()) {
                drifts.push(TopicDrift {
                    topic: topic.clone(),
                    setting: "min.insync.replicas",
                    wanted,
                    actual,
                });
            }
        }
    }
    Ok(drifts)
}

/// [`ensure_topics`] until it succeeds: a service started before its broker waits for it
/// instead of failing. Gives up only on an error retrying cannot fix.
pub async fn ensure_topics_when_ready(
    cluster: impl Into<Cluster>,
    topics: &[&str],
    settings: &TopicSettings,
) -> Result<Vec<TopicDrift>, KafkaError> {
    let cluster = cluster.into();
    let mut wait = Duration::from_millis(500);
    loop {
        match ensure_topics(&cluster, topics, settings, Duration::from_secs(5)).await {
            Ok(drifts) => return Ok(drifts),
            Err(error) if error.is_retryable() => {
                tracing::warn!(%error, ?wait, "topics not ready; the broker may be down, trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            Err(error) => return Err(error),
        }
    }
}
