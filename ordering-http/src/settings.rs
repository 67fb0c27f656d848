//! The settings both shells read (README, "Configuration").

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

#[cfg(feature = "order")]
use ordering_kafka::order::{AvroCodec, SchemaFamily};
use ordering_kafka::{Cluster, TopicSettings};

use crate::env::{Env, EnvError};

/// The flags and variables of the broker and topic settings, for a shell's command line
/// (`#[command(flatten)]`). Their values are read by [`KafkaSettings::from_env`].
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Kafka")]
pub struct KafkaArgs {
    /// Brokers to bootstrap from, comma-separated host:port
    #[arg(long, env, default_value = "127.0.0.1:9092")]
    pub kafka_bootstrap_servers: Option<String>,
    /// Partitions of the topics created at start-up
    #[arg(long, env, default_value = "3")]
    pub kafka_topic_partitions: Option<String>,
    /// The longest a publish waits for the broker, in milliseconds
    #[arg(long, env, default_value = "5000")]
    pub kafka_delivery_timeout_ms: Option<String>,
    /// Copies of each partition of the topics created at start-up [default: the broker's]
    #[arg(long, env)]
    pub kafka_replication_factor: Option<String>,
    /// Copies that must have a record before an acks=all write succeeds, for the topics
    /// created at start-up [default: the broker's]
    #[arg(long, env)]
    pub kafka_min_insync_replicas: Option<String>,
    /// plaintext, ssl, sasl_plaintext or sasl_ssl, any case [default: plaintext, or
    /// KAFKA_PROPERTIES_FILE's security.protocol]
    #[arg(long, env)]
    pub kafka_security_protocol: Option<String>,
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, with a SASL protocol (the password:
    /// KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE, environment only)
    #[arg(long, env)]
    pub kafka_sasl_mechanism: Option<String>,
    /// The SASL user name
    #[arg(long, env)]
    pub kafka_sasl_username: Option<String>,
    /// The CA certificates (PEM file or directory) that sign the brokers' certificates
    /// [default: the system's]
    #[arg(long, env)]
    pub kafka_ssl_ca_location: Option<String>,
    /// A client certificate (PEM), for brokers that require one (mutual TLS)
    #[arg(long, env)]
    pub kafka_ssl_certificate_location: Option<String>,
    /// The client certificate's key (PEM; its passphrase: KAFKA_SSL_KEY_PASSWORD_FILE,
    /// environment only)
    #[arg(long, env)]
    pub kafka_ssl_key_location: Option<String>,
    /// A Kafka client.properties file of librdkafka properties, applied to every client
    /// before the settings above
    #[arg(long, env)]
    pub kafka_properties_file: Option<String>,
}

/// The flags and variables of serving and logging, for a shell's command line. The port is
/// each shell's own (its default differs).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "HTTP and logs")]
pub struct ServiceArgs {
    /// Address to listen on
    #[arg(long, env, default_value = "0.0.0.0")]
    pub api_host: Option<String>,
    /// Connections served at once; beyond, new ones wait
    #[arg(long, env, default_value = "1024")]
    pub http_max_connections: Option<String>,
    /// Log format: text or json (RUST_LOG filters, default info,rdkafka=warn)
    #[arg(long, env, default_value = "text")]
    pub log_format: Option<String>,
    /// A directory of .avsc files: schema versions published after this build, to read as
    /// well
    #[arg(long, env)]
    pub avro_schema_dir: Option<String>,
    /// The certificate chain (PEM) to serve HTTPS with; with TLS_KEY_FILE, HTTPS only
    #[arg(long, env)]
    pub tls_cert_file: Option<String>,
    /// The certificate's private key (PEM)
    #[arg(long, env)]
    pub tls_key_file: Option<String>,
}

/// Where the broker is, and how topics created at start-up are set up. Which topics a shell
/// uses is its own setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `KAFKA_BOOTSTRAP_SERVERS`, default `127.0.0.1:9092`, and the security of every client
    /// (`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_*`, `KAFKA_PROPERTIES_FILE`).
    pub cluster: Cluster,
    /// `KAFKA_TOPIC_PARTITIONS`, default 3: for topics created at start-up.
    pub partitions: i32,
    /// `KAFKA_DELIVERY_TIMEOUT_MS`, default 5000: the longest a publish waits for the broker.
    pub delivery_timeout: Duration,
    /// `KAFKA_REPLICATION_FACTOR`, default the broker's: copies of each partition of topics
    /// created at start-up.
    pub replication_factor: Option<i32>,
    /// `KAFKA_MIN_INSYNC_REPLICAS`, default the broker's: copies that must have a record before
    /// an `acks=all` write succeeds, for topics created at start-up.
    pub min_insync_replicas: Option<i32>,
}

impl KafkaSettings {
    /// The settings `env` gives. A value that does not parse, a count or timeout that is not
    /// positive, more in-sync replicas than copies, or security settings that cannot work
    /// together are an error naming the variable.
    pub fn from_env(env: &Env) -> Result<Self, EnvError> {
        let replication_factor = env.optional("KAFKA_REPLICATION_FACTOR", |n: &i32| {
            positive(i64::from(*n))
        })?;
        let min_insync_replicas = env.optional("KAFKA_MIN_INSYNC_REPLICAS", |n: &i32| {
            positive(i64::from(*n))?;
            match replication_factor {
                Some(copies) if *n > copies => Err(format!(
                    "must not exceed KAFKA_REPLICATION_FACTOR ({copies}): no write could succeed"
                )),
                _ => Ok(()),
            }
        })?;
        Ok(Self {
            cluster: Cluster::new(env.text("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
                .with_security(crate::security::kafka_security(env)?),
            partitions: env.check("KAFKA_TOPIC_PARTITIONS", 3, |n| positive(i64::from(*n)))?,
            delivery_timeout: Duration::from_millis(env.check(
                "KAFKA_DELIVERY_TIMEOUT_MS",
                5000u64,
                |ms| positive(i64::try_from(*ms).unwrap_or(i64::MAX)),
            )?),
            replication_factor,
            min_insync_replicas,
        })
    }
}

impl KafkaSettings {
    /// How the topics the shells create are set up.
    pub fn topics(&self) -> TopicSettings {
        TopicSettings {
            partitions: self.partitions,
            replication_factor: self.replication_factor,
            min_insync_replicas: self.min_insync_replicas,
        }
    }
}

pub(crate) fn positive(n: i64) -> Result<(), String> {
    if n > 0 {
        Ok(())
    } else {
        Err("must be greater than 0".into())
    }
}

/// What a topic setting is for, to say why two of them may not name one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicRole {
    /// A topic of records this service consumes, or publishes for its consumer.
    Records,
    /// The dead-letter topic.
    DeadLetters,
}

/// Refuses two topic settings that name one topic, naming both: two record topics in one
/// would mix their records (and a redrive guard tells them apart by topic), and a dead-letter
/// topic that is also consumed would take its letters for records and dead-letter them again,
/// forever.
pub fn distinct_topics(topics: &[(&'static str, &str, TopicRole)]) -> Result<(), EnvError> {
    for (i, &(name, topic, role)) in topics.iter().enumerate() {
        let earlier = topics[..i].iter().find(|(_, other, _)| *other == topic);
        if let Some(&(other, _, other_role)) = earlier {
            let why = if role == TopicRole::DeadLetters || other_role == TopicRole::DeadLetters {
                "its dead letters would be consumed as records and dead-lettered again, forever"
            } else {
                "the two kinds of record would share one topic and one order"
            };
            return Err(EnvError {
                name,
                value: topic.to_owned(),
                reason: format!("is the same topic as {other}: {why}; give each its own topic"),
            });
        }
    }
    Ok(())
}

/// `HTTP_MAX_CONNECTIONS` (default 1024): connections served at once; beyond, new ones wait.
pub fn max_connections(env: &Env) -> Result<usize, EnvError> {
    env.check("HTTP_MAX_CONNECTIONS", crate::serve::MAX_CONNECTIONS, |n| {
        positive(i64::try_from(*n).unwrap_or(i64::MAX))
    })
}

/// `API_HOST` (default `0.0.0.0`) and `API_PORT` (default `default_port`).
pub fn listen_addr(env: &Env, default_port: u16) -> Result<SocketAddr, EnvError> {
    let host: IpAddr = env.get("API_HOST", IpAddr::from([0, 0, 0, 0]))?;
    let port: u16 = env.get("API_PORT", default_port)?;
    Ok(SocketAddr::new(host, port))
}

/// The Avro codec of the order flow the settings ask for (feature `order`). `AVRO_SCHEMA_DIR`: a directory of `.avsc` files,
/// schema versions published after this build, to read as well. For each `(family, variable)`
/// of `writes` (the shell's own settings), the published version of `family` to write instead
/// of the newest, for a rollout that upgrades the readers first (README, "Changing a schema").
#[cfg(feature = "order")]
pub fn avro_codec(
    env: &Env,
    writes: &[(SchemaFamily, &'static str)],
) -> Result<AvroCodec, EnvError> {
    let dir = env.text("AVRO_SCHEMA_DIR", "");
    let mut codec = if dir.is_empty() {
        AvroCodec::new().map_err(|e| EnvError {
            name: "AVRO_SCHEMA_DIR",
            value: String::new(),
            reason: e.to_string(),
        })?
    } else {
        AvroCodec::with_schema_dir(std::path::Path::new(&dir)).map_err(|e| EnvError {
            name: "AVRO_SCHEMA_DIR",
            value: dir.clone(),
            reason: e.to_string(),
        })?
    };
    for &(family, name) in writes {
        if let Some(version) = env.optional::<u32>(name, |_| Ok(()))? {
            codec = codec.pin(family, version).map_err(|e| EnvError {
                name,
                value: version.to_string(),
                reason: e.to_string(),
            })?;
        }
    }
    Ok(codec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_contracts() {
        let env = Env::from_pairs(&[]);
        let kafka = KafkaSettings::from_env(&env).unwrap();
        assert_eq!(kafka.cluster, Cluster::new("127.0.0.1:9092"));
        assert_eq!(kafka.partitions, 3);
        assert_eq!(kafka.replication_factor, None);
        assert_eq!(kafka.min_insync_replicas, None);
        assert_eq!(listen_addr(&env, 8001).unwrap().to_string(), "0.0.0.0:8001");
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("KAFKA_TOPIC_PARTITIONS", "0"),
            ("KAFKA_TOPIC_PARTITIONS", "three"),
            ("KAFKA_DELIVERY_TIMEOUT_MS", "-5"),
            ("KAFKA_REPLICATION_FACTOR", "0"),
            ("KAFKA_REPLICATION_FACTOR", "three"),
            ("KAFKA_MIN_INSYNC_REPLICAS", "-1"),
        ] {
            let error = KafkaSettings::from_env(&Env::from_pairs(&[(name, value)])).unwrap_err();
            assert_eq!(error.name, name);
        }
        let zero = Env::from_pairs(&[("HTTP_MAX_CONNECTIONS", "0")]);
        assert_eq!(
            max_connections(&zero).unwrap_err().name,
            "HTTP_MAX_CONNECTIONS"
        );
        assert_eq!(max_connections(&Env::from_pairs(&[])), Ok(1024));
        let more_than_copies = Env::from_pairs(&[
            ("KAFKA_REPLICATION_FACTOR", "3"),
            ("KAFKA_MIN_INSYNC_REPLICAS", "4"),
        ]);
        let error = KafkaSettings::from_env(&more_than_copies).unwrap_err();
        assert_eq!(error.name, "KAFKA_MIN_INSYNC_REPLICAS");
        let cluster = Env::from_pairs(&[
            ("KAFKA_REPLICATION_FACTOR", "3"),
            ("KAFKA_MIN_INSYNC_REPLICAS", "2"),
        ]);
        let kafka = KafkaSettings::from_env(&cluster).unwrap();
        assert_eq!(
            (kafka.replication_factor, kafka.min_insync_replicas),
            (Some(3), Some(2))
        );
        assert_eq!(
            listen_addr(&Env::from_pairs(&[("API_PORT", "70000")]), 1)
                .unwrap_err()
                .name,
            "API_PORT"
        );
        assert_eq!(
            listen_addr(&Env::from_pairs(&[("API_HOST", "nowhere")]), 1)
                .unwrap_err()
                .name,
            "API_HOST"
        );
    }

    #[cfg(feature = "order")]
    #[test]
    fn schema_settings_pin_versions_and_name_the_bad_one() {
        let writes = [(SchemaFamily::StatusUpdate, "AVRO_STATUS_UPDATE_VERSION")];
        let codec = avro_codec(&Env::from_pairs(&[]), &writes).unwrap();
        assert_eq!(codec.writes(SchemaFamily::StatusUpdate), 2);
        let env = Env::from_pairs(&[("AVRO_STATUS_UPDATE_VERSION", "1")]);
        let codec = avro_codec(&env, &writes).unwrap();
        assert_eq!(codec.writes(SchemaFamily::StatusUpdate), 1);
        // Only the families a shell writes are read from the environment.
        let env = Env::from_pairs(&[("AVRO_ORDER_VERSION", "7")]);
        assert!(avro_codec(&env, &writes).is_ok());
        for (name, value) in [
            ("AVRO_STATUS_UPDATE_VERSION", "3"),
            ("AVRO_STATUS_UPDATE_VERSION", "v2"),
            ("AVRO_SCHEMA_DIR", "/no/such/directory"),
        ] {
            let error = avro_codec(&Env::from_pairs(&[(name, value)]), &writes).unwrap_err();
            assert_eq!(error.name, name, "{error}");
        }
    }

    #[test]
    fn two_settings_naming_one_topic_are_refused_naming_both() {
        use TopicRole::{DeadLetters, Records};
        let ok = [
            ("KAFKA_TOPIC", "orders", Records),
            ("KAFKA_STATUS_UPDATE_TOPIC", "updates", Records),
            ("KAFKA_DLQ_TOPIC", "dlq", DeadLetters),
        ];
        assert_eq!(distinct_topics(&ok), Ok(()));
        let same = [
            ("KAFKA_TOPIC", "orders", Records),
            ("KAFKA_STATUS_UPDATE_TOPIC", "orders", Records),
        ];
        let error = distinct_topics(&same).unwrap_err();
        assert_eq!(error.name, "KAFKA_STATUS_UPDATE_TOPIC");
        assert!(
            error.to_string().contains("same topic as KAFKA_TOPIC"),
            "{error}"
        );
        let looped = [
            ("KAFKA_TOPIC", "orders", Records),
            ("KAFKA_STATUS_UPDATE_TOPIC", "updates", Records),
            ("KAFKA_DLQ_TOPIC", "updates", DeadLetters),
        ];
        let error = distinct_topics(&looped).unwrap_err();
        assert_eq!(error.name, "KAFKA_DLQ_TOPIC");
        let message = error.to_string();
        assert!(message.contains("KAFKA_STATUS_UPDATE_TOPIC"), "{message}");
        assert!(message.contains("dead-lettered again"), "{message}");
    }
}
