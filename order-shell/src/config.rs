//! order-shell's configuration (CONTRACT.md, "Configuration").

use std::net::SocketAddr;
use std::time::Duration;

use ordering_core::{PolicyError, RetryPolicy};
use shell_http::env::{Env, EnvError};
use shell_http::settings::{KafkaSettings, listen_addr};

pub struct Config {
    pub kafka: KafkaSettings,
    /// `KAFKA_DLQ_TOPIC`, default `order-events-dlq`.
    pub dlq_topic: String,
    /// `KAFKA_CONSUMER_GROUP`, default `order-service-group`.
    pub consumer_group: String,
    /// `DLQ_MAX_RETRIES` (3), `DLQ_RETRY_BACKOFF_MS` (1000), `DLQ_MAX_BACKOFF_MS` (30000).
    pub retry: RetryPolicy,
    pub listen: SocketAddr,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, EnvError> {
        let max_retries: u32 = env.get("DLQ_MAX_RETRIES", 3)?;
        let initial_ms: u64 = env.get("DLQ_RETRY_BACKOFF_MS", 1000)?;
        let max_ms: u64 = env.get("DLQ_MAX_BACKOFF_MS", 30_000)?;
        let retry = RetryPolicy::new(
            max_retries,
            Duration::from_millis(initial_ms),
            2.0,
            Duration::from_millis(max_ms),
        )
        .map_err(|error| {
            let (name, value) = match error {
                PolicyError::ZeroInitialBackoff => ("DLQ_RETRY_BACKOFF_MS", initial_ms),
                _ => ("DLQ_MAX_BACKOFF_MS", max_ms),
            };
            EnvError {
                name,
                value: value.to_string(),
                reason: error.to_string(),
            }
        })?;
        Ok(Self {
            kafka: KafkaSettings::from_env(env)?,
            dlq_topic: env.text("KAFKA_DLQ_TOPIC", "order-events-dlq"),
            consumer_group: env.text("KAFKA_CONSUMER_GROUP", "order-service-group"),
            retry,
            listen: listen_addr(env, 8001)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_specs() {
        let config = Config::from_env(&Env::from_pairs(&[])).unwrap();
        assert_eq!(config.retry, RetryPolicy::default());
        assert_eq!(config.dlq_topic, "order-events-dlq");
        assert_eq!(config.consumer_group, "order-service-group");
        assert_eq!(config.listen.port(), 8001);
    }

    #[test]
    fn bad_retry_settings_name_their_variable() {
        let cases = [
            (("DLQ_MAX_RETRIES", "abc"), "DLQ_MAX_RETRIES"),
            (("DLQ_RETRY_BACKOFF_MS", "0"), "DLQ_RETRY_BACKOFF_MS"),
            (("DLQ_MAX_BACKOFF_MS", "10"), "DLQ_MAX_BACKOFF_MS"),
            (("DLQ_MAX_BACKOFF_MS", "-1"), "DLQ_MAX_BACKOFF_MS"),
        ];
        for ((name, value), expected) in cases {
            let error = Config::from_env(&Env::from_pairs(&[(name, value)]))
                .err()
                .unwrap_or_else(|| panic!("{name}={value} was accepted"));
            assert_eq!(error.name, expected);
        }
    }
}
