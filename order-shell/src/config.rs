//! order-shell's configuration (README, "Configuration").

use std::net::SocketAddr;
use std::time::Duration;

use ordering_core::{PolicyError, RetryPolicy};
use ordering_http::auth::OperatorToken;
use ordering_http::env::{Env, EnvError};
use ordering_http::limit::WorkLimit;
use ordering_http::registry::{RegistryArgs, RegistrySettings};
use ordering_http::security::{redacted_url, secret};
use ordering_http::settings::{
    KafkaArgs, KafkaSettings, ServiceArgs, TopicRole, avro_codec, distinct_topics, listen_addr,
    max_connections,
};
use ordering_kafka::Registry;
use ordering_kafka::order::{AvroCodec, ORDER_FLOW_DLQ_VERSION, SchemaFamily};
use ordering_kafka::{DEFAULT_FETCH_WAIT_MAX, REDRIVABLE_DLQ_VERSION};
use ordering_store::StoreUrl;

/// order-shell: consumes order events and status updates from Kafka, keeps the orders,
/// retries and dead-letters what cannot be applied, and answers queries over HTTP. Every
/// setting is a flag or an environment variable; a flag wins.
#[derive(Debug, clap::Parser)]
#[command(name = "order-shell", version, after_help = ordering_http::env::ENVIRONMENT_ONLY_HELP)]
pub struct Cli {
    /// Port to listen on
    #[arg(long, env, default_value = "8001")]
    pub api_port: Option<String>,
    /// Where orders are kept: sqlite://PATH, postgres://USER@HOST:PORT/DB or memory://
    #[arg(long, env, default_value = DEFAULT_STORE_URL)]
    pub order_store_url: Option<String>,
    /// Days an order's history entries are kept (0: kept for good); orders themselves stay
    #[arg(long, env, default_value = "90")]
    pub order_history_retention_days: Option<String>,
    #[command(flatten)]
    pub dead_letters: DeadLetterArgs,
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Expensive requests at once, per kind; beyond, a request waits a little, then gets 503.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Limits on expensive requests")]
pub struct LimitArgs {
    /// GET /api/getAllOrderIdsFromTopic scans at once
    #[arg(long, env, default_value = "2")]
    pub scan_concurrency: Option<String>,
    /// GET /api/stats at once
    #[arg(long, env, default_value = "4")]
    pub stats_concurrency: Option<String>,
    /// GET /api/dlq/messages pages at once
    #[arg(long, env, default_value = "4")]
    pub dlq_page_concurrency: Option<String>,
    /// POST /api/dlq/redrive runs at once
    #[arg(long, env, default_value = "1")]
    pub redrive_concurrency: Option<String>,
    /// How long such a request waits for its turn (milliseconds) before it gets 503
    #[arg(long, env, default_value = "2000")]
    pub busy_wait_ms: Option<String>,
}

/// Retries, dead letters and the operator endpoints.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Retries and dead letters")]
pub struct DeadLetterArgs {
    /// Retries of a record that failed, before its dead letter
    #[arg(long, env, default_value = "3")]
    pub dlq_max_retries: Option<String>,
    /// The first retry's delay, in milliseconds; each next one doubles
    #[arg(long, env, default_value = "1000")]
    pub dlq_retry_backoff_ms: Option<String>,
    /// The longest delay between retries, in milliseconds
    #[arg(long, env, default_value = "30000")]
    pub dlq_max_backoff_ms: Option<String>,
    /// Topic of the dead letters
    #[arg(long, env, default_value = "order-events-dlq")]
    pub kafka_dlq_topic: Option<String>,
    /// Dead letters failing for longer than this (milliseconds) make /health answer 503
    #[arg(long, env, default_value = "30000")]
    pub dlq_unhealthy_after_ms: Option<String>,
    /// Times a letter may be redriven before only `force` sends it again
    #[arg(long, env, default_value = "3")]
    pub dlq_max_redrives: Option<String>,
    /// The published version of the dead-letter schema to write (unset: 3, the newest named
    /// `com.ecommerce.dlq.DeadLetter` as the contract says; 4 is the library's `ordering.dlq`)
    #[arg(long, env)]
    pub avro_dlq_version: Option<String>,
}

/// The consumer.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Consumer")]
pub struct ConsumerArgs {
    /// Topic of the order events
    #[arg(long, env, default_value = "order-events")]
    pub kafka_topic: Option<String>,
    /// Topic of the status updates
    #[arg(long, env, default_value = "order-status-updates")]
    pub kafka_status_update_topic: Option<String>,
    /// Consumer group
    #[arg(long, env, default_value = "order-service-group")]
    pub kafka_consumer_group: Option<String>,
    /// How long the group waits for a member that stopped answering before moving its
    /// partitions, in milliseconds, 1000 to 3600000 [default: librdkafka's, 45000]
    #[arg(long, env)]
    pub kafka_session_timeout_ms: Option<String>,
    /// The longest the broker may hold a fetch that finds nothing new, in milliseconds
    /// (README, "Latency": use 500 on Apache Kafka)
    #[arg(long, env, default_value = "5")]
    pub kafka_fetch_wait_max_ms: Option<String>,
    /// Records of one partition held in memory (running or waiting in their lane), at most
    /// (1 to 1048576); at the bound the partition is paused. Records received and not yet
    /// committed are bounded at 8 times this. Size it as target rate × handler latency ÷
    /// partitions (README, "Sizing the in-flight bound")
    #[arg(long, env, default_value = "8192")]
    pub max_in_flight_per_partition: Option<String>,
}

#[derive(Debug)]
pub struct Config {
    pub kafka: KafkaSettings,
    /// `KAFKA_TOPIC`, default `order-events`: orders are consumed from here.
    pub order_topic: String,
    /// `KAFKA_STATUS_UPDATE_TOPIC`, default `order-status-updates`.
    pub status_topic: String,
    /// `KAFKA_DLQ_TOPIC`, default `order-events-dlq`.
    pub dlq_topic: String,
    /// `KAFKA_CONSUMER_GROUP`, default `order-service-group`.
    pub consumer_group: String,
    /// `MAX_IN_FLIGHT_PER_PARTITION`, default 8192: records of a partition held in memory
    /// (running or waiting in their lane), at most. Store writes wait for their group commit, so many must be in
    /// flight to fill one: a SQLite-backed drain ran at 250 k/s at 1024, 300 k/s at 8192, no
    /// faster beyond (BENCHMARKS.md); 8192 small records are a few MB per partition.
    pub max_in_flight_per_partition: std::num::NonZeroUsize,
    /// `DLQ_MAX_RETRIES` (3), `DLQ_RETRY_BACKOFF_MS` (1000), `DLQ_MAX_BACKOFF_MS` (30000).
    pub retry: RetryPolicy,
    pub listen: SocketAddr,
    /// `HTTP_MAX_CONNECTIONS`, default 1024.
    pub max_connections: usize,
    /// `ORDER_STORE_URL`, default `sqlite://data/orders.db`: where orders are kept.
    pub store: StoreUrl,
    /// `ORDER_HISTORY_RETENTION_DAYS`, default 90: history entries older than this are
    /// deleted (`None`, from 0: kept for good).
    pub history_retention: Option<Duration>,
    /// `KAFKA_SESSION_TIMEOUT_MS`, default librdkafka's (45 s): how long the group waits for a
    /// member that stopped answering (a crashed instance) before moving its partitions.
    pub session_timeout: Option<Duration>,
    /// `KAFKA_FETCH_WAIT_MAX_MS`, default `ordering_kafka::DEFAULT_FETCH_WAIT_MAX`: the
    /// longest the broker may hold a fetch that finds nothing new (README, "Latency").
    pub fetch_wait_max: Duration,
    /// `DLQ_UNHEALTHY_AFTER_MS`, default 30000: dead letters failing (none written) for longer
    /// than this make `/health` answer `503`.
    pub dlq_unhealthy_after: Duration,
    /// `DLQ_MAX_REDRIVES`, default 3: a record redriven this many times that failed again is
    /// not redriven any more unless the request forces it.
    pub max_redrives: u32,
    /// `AVRO_SCHEMA_DIR` (more schema versions to read), `AVRO_DLQ_VERSION` (the version of
    /// the dead letters written; default the newest).
    pub codec: AvroCodec,
    /// `SCHEMA_REGISTRY_URL` and its settings: the registry whose records are read beside
    /// single-object ones, if any.
    pub registry: Option<&'static Registry>,
    /// `OPERATOR_TOKEN` or `OPERATOR_TOKEN_FILE`: the bearer token of the operator endpoints
    /// (redrive, dead letters with their contents). Without one, redrive is refused and dead
    /// letters are listed without their contents.
    pub operator_token: Option<OperatorToken>,
    /// `TLS_CERT_FILE` and `TLS_KEY_FILE`: HTTPS only; `None`: plain HTTP.
    pub https: Option<ordering_http::tls::Https>,
    /// `SCAN_CONCURRENCY` (2), `STATS_CONCURRENCY` (4), `DLQ_PAGE_CONCURRENCY` (4),
    /// `REDRIVE_CONCURRENCY` (1),
    /// `BUSY_WAIT_MS` (2000): expensive requests at once per kind, and how long one waits
    /// for its turn before `503`.
    pub limits: Limits,
}

/// The limits on expensive requests, one per kind.
#[derive(Debug, Clone)]
pub struct Limits {
    pub scans: WorkLimit,
    pub stats: WorkLimit,
    pub dlq_pages: WorkLimit,
    pub redrives: WorkLimit,
}

impl Limits {
    fn from_env(env: &Env) -> Result<Self, EnvError> {
        let at_least_one = |n: &usize| match n {
            1..=1024 => Ok(()),
            _ => Err("must be from 1 to 1024".to_owned()),
        };
        let wait = Duration::from_millis(env.check("BUSY_WAIT_MS", 2000u64, |ms| match ms {
            0..=60_000 => Ok(()),
            _ => Err("must be at most 60000 milliseconds".into()),
        })?);
        Ok(Self {
            scans: WorkLimit::new(
                "topic scans",
                env.check("SCAN_CONCURRENCY", 2, at_least_one)?,
                wait,
            ),
            stats: WorkLimit::new(
                "order stats",
                env.check("STATS_CONCURRENCY", 4, at_least_one)?,
                wait,
            ),
            dlq_pages: WorkLimit::new(
                "dead-letter pages",
                env.check("DLQ_PAGE_CONCURRENCY", 4, at_least_one)?,
                wait,
            ),
            redrives: WorkLimit::new(
                "redrives",
                env.check("REDRIVE_CONCURRENCY", 1, at_least_one)?,
                wait,
            ),
        })
    }
}

/// Where order-shell keeps orders unless told otherwise: a file under `data/`.
pub const DEFAULT_STORE_URL: &str = "sqlite://data/orders.db";

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, EnvError> {
        // Records in the registry's framing are read beside single-object ones; what
        // order-shell writes (dead letters) stays single-object whatever AVRO_WIRE_FORMAT says:
        // a letter keeps its record's bytes as they came.
        let registry = RegistrySettings::from_env(env)?.connect()?;
        let codec = match registry {
            Some(registry) => dlq_codec(env)?.reading_registry(registry),
            None => dlq_codec(env)?,
        };
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
        let order_topic = env.text("KAFKA_TOPIC", "order-events");
        let status_topic = env.text("KAFKA_STATUS_UPDATE_TOPIC", "order-status-updates");
        let dlq_topic = env.text("KAFKA_DLQ_TOPIC", "order-events-dlq");
        distinct_topics(&[
            ("KAFKA_TOPIC", &order_topic, TopicRole::Records),
            (
                "KAFKA_STATUS_UPDATE_TOPIC",
                &status_topic,
                TopicRole::Records,
            ),
            ("KAFKA_DLQ_TOPIC", &dlq_topic, TopicRole::DeadLetters),
        ])?;
        Ok(Self {
            kafka: KafkaSettings::from_env(env)?,
            order_topic,
            status_topic,
            dlq_topic,
            consumer_group: env.text("KAFKA_CONSUMER_GROUP", "order-service-group"),
            retry,
            listen: listen_addr(env, 8001)?,
            max_connections: max_connections(env)?,
            store: store_url(env)?,
            history_retention: history_retention(env)?,
            session_timeout: session_timeout(env)?,
            fetch_wait_max: Duration::from_millis(env.check(
                "KAFKA_FETCH_WAIT_MAX_MS",
                u64::try_from(DEFAULT_FETCH_WAIT_MAX.as_millis()).unwrap_or(u64::MAX),
                |ms| match ms {
                    // librdkafka's bounds for fetch.wait.max.ms.
                    1..=300_000 => Ok(()),
                    _ => Err("must be from 1 to 300000 milliseconds".into()),
                },
            )?),
            dlq_unhealthy_after: Duration::from_millis(env.check(
                "DLQ_UNHEALTHY_AFTER_MS",
                30_000u64,
                |ms| {
                    if *ms > 0 {
                        Ok(())
                    } else {
                        Err("must be greater than 0".into())
                    }
                },
            )?),
            max_redrives: env.get("DLQ_MAX_REDRIVES", 3)?,
            codec,
            registry,
            max_in_flight_per_partition: env.check(
                "MAX_IN_FLIGHT_PER_PARTITION",
                std::num::NonZeroUsize::new(8192).unwrap_or(std::num::NonZeroUsize::MIN),
                |n| match n.get() {
                    1..=1_048_576 => Ok(()),
                    _ => Err("must be from 1 to 1048576".into()),
                },
            )?,
            operator_token: OperatorToken::from_env(env)?,
            limits: Limits::from_env(env)?,
            https: ordering_http::tls::https(env)?,
        })
    }
}

/// The codec of the dead letters this service writes, and redrives: never pinned below the
/// version that keeps a record's key bytes and headers (its origin, after a redrive). Unset,
/// it writes the version the contract names (`com.ecommerce.dlq.DeadLetter`), not the
/// library's newest.
fn dlq_codec(env: &Env) -> Result<AvroCodec, EnvError> {
    let mut codec = avro_codec(env, &[(SchemaFamily::DeadLetter, "AVRO_DLQ_VERSION")])?;
    if env
        .optional::<u32>("AVRO_DLQ_VERSION", |_| Ok(()))?
        .is_none()
    {
        codec = codec
            .pin(SchemaFamily::DeadLetter, ORDER_FLOW_DLQ_VERSION)
            .map_err(|e| EnvError {
                name: "AVRO_DLQ_VERSION",
                value: String::new(),
                reason: e.to_string(),
            })?;
    }
    let version = codec.writes(SchemaFamily::DeadLetter);
    if version < REDRIVABLE_DLQ_VERSION {
        return Err(EnvError {
            name: "AVRO_DLQ_VERSION",
            value: version.to_string(),
            reason: format!(
                "must be {REDRIVABLE_DLQ_VERSION} or later: older versions drop the key's bytes and the headers a redrive needs to keep a record's order"
            ),
        });
    }
    Ok(codec)
}

/// `ORDER_STORE_URL`, with the password of `ORDER_STORE_PASSWORD_FILE` if set. Messages
/// show the URL without its password.
fn store_url(env: &Env) -> Result<StoreUrl, EnvError> {
    let raw = env.text("ORDER_STORE_URL", DEFAULT_STORE_URL);
    let url = StoreUrl::parse(&raw).map_err(|error| EnvError {
        name: "ORDER_STORE_URL",
        value: redacted_url(&raw),
        reason: error.to_string(),
    })?;
    match secret(env, None, "ORDER_STORE_PASSWORD_FILE")? {
        None => Ok(url),
        Some(password) => url.with_password(&password).map_err(|error| EnvError {
            name: "ORDER_STORE_PASSWORD_FILE",
            value: env.text("ORDER_STORE_PASSWORD_FILE", ""),
            reason: error.to_string(),
        }),
    }
}

fn history_retention(env: &Env) -> Result<Option<Duration>, EnvError> {
    let days: u64 = env.check("ORDER_HISTORY_RETENTION_DAYS", 90, |days| match days {
        0..=36_500 => Ok(()),
        _ => Err("must be from 0 (kept for good) to 36500 days".into()),
    })?;
    Ok((days > 0).then(|| Duration::from_secs(days * 24 * 3600)))
}

fn session_timeout(env: &Env) -> Result<Option<Duration>, EnvError> {
    // librdkafka's own bounds; the broker may narrow them further.
    let ms: u64 = env.check("KAFKA_SESSION_TIMEOUT_MS", 0, |ms| match ms {
        0 | 1000..=3_600_000 => Ok(()),
        _ => Err("must be from 1000 to 3600000 milliseconds".into()),
    })?;
    Ok((ms > 0).then(|| Duration::from_millis(ms)))
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
        assert_eq!(config.store, StoreUrl::Sqlite("data/orders.db".into()));
        assert_eq!(config.session_timeout, None);
        assert_eq!(config.fetch_wait_max, DEFAULT_FETCH_WAIT_MAX);
        assert_eq!(
            config.history_retention,
            Some(Duration::from_secs(90 * 24 * 3600))
        );
        let env = Env::from_pairs(&[("KAFKA_FETCH_WAIT_MAX_MS", "5")]);
        let config = Config::from_env(&env).unwrap();
        assert_eq!(config.fetch_wait_max, Duration::from_millis(5));
    }

    #[test]
    fn a_bad_store_url_names_order_store_url() {
        for bad in [
            "mysql://db/orders",
            "sqlite://",
            "orders.db",
            "postgres://x:y:z/",
        ] {
            let error = Config::from_env(&Env::from_pairs(&[("ORDER_STORE_URL", bad)]))
                .err()
                .unwrap_or_else(|| panic!("{bad} was accepted"));
            assert_eq!(error.name, "ORDER_STORE_URL", "{bad}");
            assert!(
                error.to_string().contains("invalid ORDER_STORE_URL"),
                "{error}"
            );
        }
        let memory = Config::from_env(&Env::from_pairs(&[("ORDER_STORE_URL", "memory://")]));
        assert_eq!(memory.unwrap().store, StoreUrl::Memory);
    }

    #[test]
    fn bad_retry_settings_name_their_variable() {
        let cases = [
            (("DLQ_MAX_RETRIES", "abc"), "DLQ_MAX_RETRIES"),
            (("DLQ_RETRY_BACKOFF_MS", "0"), "DLQ_RETRY_BACKOFF_MS"),
            (("DLQ_MAX_BACKOFF_MS", "10"), "DLQ_MAX_BACKOFF_MS"),
            (("DLQ_MAX_BACKOFF_MS", "-1"), "DLQ_MAX_BACKOFF_MS"),
            (
                ("KAFKA_SESSION_TIMEOUT_MS", "10"),
                "KAFKA_SESSION_TIMEOUT_MS",
            ),
            (("KAFKA_FETCH_WAIT_MAX_MS", "0"), "KAFKA_FETCH_WAIT_MAX_MS"),
            (
                ("ORDER_HISTORY_RETENTION_DAYS", "99999"),
                "ORDER_HISTORY_RETENTION_DAYS",
            ),
        ];
        for ((name, value), expected) in cases {
            let error = Config::from_env(&Env::from_pairs(&[(name, value)]))
                .err()
                .unwrap_or_else(|| panic!("{name}={value} was accepted"));
            assert_eq!(error.name, expected);
        }
    }
}
