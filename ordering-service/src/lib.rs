#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Arg, Command};
use hyper::{Method, StatusCode};
use ordering_core::{
    Dispatcher, DispatcherConfig, Handler, LaneMode, RetryPolicy, Stats, TopicIncarnations,
};
use ordering_http::cached::Cached;
use ordering_http::env::Env;
use ordering_http::metrics::Metrics;
use ordering_http::security::{kafka_problem, kafka_security};
use ordering_http::{HttpRequest, Response, json};
use ordering_kafka::{
    Cluster, Codec, DeadLetterCodec, KafkaProducer, KafkaSource, ProducerConfig, SourceConfig,
    SourceStatus, TopicSettings, ensure_topics_when_ready,
};
use serde::Serialize;
use serde_json::json;

/// How long `/health` waits for the broker, and for each of the service's checks.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// How often `/health` asks the broker and each check at most, whatever the rate of requests.
const HEALTH_PERIOD: Duration = Duration::from_secs(1);

/// A consumer service: what it consumes, how it handles it, where dead letters go.
pub struct ConsumerService<H, C> {
    name: String,
    handler: H,
    codec: C,
    topics: Vec<String>,
    dead_letters: String,
    group: String,
    lanes: LaneMode,
    retry: RetryPolicy,
    partitions: i32,
    checks: Vec<(String, Arc<dyn HealthCheck>)>,
}

/// A dependency of the service that `/health` looks at besides the broker: its database, a
/// downstream API. Asked at most once a second however often `/health` is (the answers in
/// between are the last one), and given 2 s to answer. Any `Fn() -> impl Future<Output =
/// Result<(), String>>` is one.
#[async_trait::async_trait]
pub trait HealthCheck: Send + Sync {
    /// `Ok` while the dependency works; else what is wrong, for a person to read (never a
    /// secret: `/health` shows it).
    async fn check(&self) -> Result<(), String>;
}

#[async_trait::async_trait]
impl<F, Fut> HealthCheck for F
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), String>> + Send,
{
    async fn check(&self) -> Result<(), String> {
        self().await
    }
}

impl<H, C> std::fmt::Debug for ConsumerService<H, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerService")
            .field("name", &self.name)
            .field("topics", &self.topics)
            .field("dead_letters", &self.dead_letters)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl<H, C> ConsumerService<H, C> {
    /// The service `name`: by default it consumes the topic `name` in the group `name`, dead
    /// letters go to `name-dlq`, one lane per key, the default retry policy.
    pub fn new(name: &str, handler: H, codec: C) -> Self {
        Self {
            name: name.to_owned(),
            handler,
            codec,
            topics: vec![name.to_owned()],
            dead_letters: format!("{name}-dlq"),
            group: name.to_owned(),
            lanes: LaneMode::Key,
            retry: RetryPolicy::default(),
            partitions: 3,
            checks: Vec::new(),
        }
    }

    /// The topics it consumes (instead of the one named after the service). Refused at
    /// start-up if the dead-letter topic is among them.
    pub fn topics<T: Into<String>>(mut self, topics: impl IntoIterator<Item = T>) -> Self {
        self.topics = topics.into_iter().map(Into::into).collect();
        self
    }

    /// The topic its dead letters go to (instead of `NAME-dlq`), created with the others.
    pub fn dead_letters(mut self, topic: impl Into<String>) -> Self {
        self.dead_letters = topic.into();
        self
    }

    /// Its consumer group (instead of the service's name): instances in one group share the
    /// partitions.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// What is handled in order: one lane per record key (the default: one key's retries
    /// hold back no other key) or per partition.
    pub fn lanes(mut self, lanes: LaneMode) -> Self {
        self.lanes = lanes;
        self
    }

    /// How a failing record is retried before it is dead-lettered.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Adds a dependency `/health` looks at, shown under `checks` by `name`: `/health` is
    /// `503` while it fails. Build it from the service's own handles (a pool, a client).
    pub fn health_check(
        mut self,
        name: impl Into<String>,
        check: impl HealthCheck + 'static,
    ) -> Self {
        self.checks.push((name.into(), Arc::new(check)));
        self
    }

    /// Partitions of the topics it creates (those that exist are left as they are).
    pub fn partitions(mut self, partitions: i32) -> Self {
        self.partitions = partitions;
        self
    }

    /// The settings it reads, for `--help` and the environment.
    pub fn command(&self) -> Command {
        command(&self.name)
    }

    /// Runs the service until SIGTERM or Ctrl-C (exit code 0), a producer that failed for
    /// good (3), a bad setting (2) or a consumer that cannot go on (1).
    pub async fn run<E>(self) -> ExitCode
    where
        E: Serialize + Send + Sync + 'static,
        H: Handler<E> + 'static,
        C: Codec<E> + 'static,
    {
        let env = match Env::from_command_line(self.command()) {
            Ok(env) => env,
            Err(error) => error.exit(),
        };
        self.run_parsed(&env).await
    }

    async fn run_parsed<E>(self, env: &Env) -> ExitCode
    where
        E: Serialize + Send + Sync + 'static,
        H: Handler<E> + 'static,
        C: Codec<E> + 'static,
    {
        let name = self.name.clone();
        match self.run_with(env).await {
            Ok(code) => code,
            Err(error) => {
                tracing::error!(%error, "{name} stopped");
                eprintln!("{name}: {error}");
                error.exit_code()
            }
        }
    }

    async fn run_with<E>(self, env: &Env) -> Result<ExitCode, ServiceError>
    where
        E: Serialize + Send + Sync + 'static,
        H: Handler<E> + 'static,
        C: Codec<E> + 'static,
    {
        // Kept to the end: dropping it flushes the traces not yet exported.
        let _telemetry =
            ordering_http::init_tracing(env, &self.name).map_err(ServiceError::Setting)?;
        // Its own letters consumed as records would be dead-lettered again, forever.
        if self.topics.contains(&self.dead_letters) {
            return Err(ServiceError::Start(format!(
                "the dead-letter topic {:?} is also a consumed topic (.topics and .dead_letters); give the letters a topic of their own",
                self.dead_letters
            )));
        }
        let cluster = Cluster::new(env.text("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
            .with_security(kafka_security(env).map_err(ServiceError::Setting)?);
        let https = ordering_http::tls::https(env).map_err(ServiceError::Setting)?;
        let session: u64 = env
            .check("KAFKA_SESSION_TIMEOUT_MS", 10_000, |ms: &u64| {
                if (1000..=3_600_000).contains(ms) {
                    Ok(())
                } else {
                    Err("must be 1000 to 3600000".into())
                }
            })
            .map_err(ServiceError::Setting)?;
        let host: std::net::IpAddr = env
            .get("API_HOST", std::net::Ipv4Addr::LOCALHOST.into())
            .map_err(ServiceError::Setting)?;
        let port: u16 = env.get("API_PORT", 8080).map_err(ServiceError::Setting)?;
        let metrics = Metrics::install().map_err(|e| ServiceError::Start(e.to_string()))?;

        let producer = KafkaProducer::new(&ProducerConfig::new(&cluster))
            .map_err(|e| ServiceError::Start(kafka_problem(&e)))?;
        // Settings a person must fix stop the start; brokers that are down are waited for.
        producer
            .check_access(ordering_http::security::ACCESS_CHECK)
            .await
            .map_err(|failure| {
                ServiceError::Start(format!(
                    "cannot connect to Kafka: {failure}; {}",
                    ordering_http::security::kafka_hint(&failure)
                ))
            })?;
        let codec = DeadLetterCodec::new().map_err(|e| ServiceError::Start(e.to_string()))?;
        let dead_letters = producer.sink(&self.dead_letters, codec);
        let spec = ConsumerSpec {
            cluster,
            group: self.group,
            topics: self.topics,
            dead_letters: self.dead_letters,
            topic_settings: TopicSettings::new(self.partitions),
            session_timeout: Some(Duration::from_millis(session)),
            fetch_wait_max: None,
            dispatcher: DispatcherConfig {
                lanes: self.lanes,
                retry: self.retry,
                ..DispatcherConfig::default()
            },
            incarnations: None,
        };
        let health = Arc::new(Health {
            consumer: std::sync::OnceLock::new(),
            producer: producer.clone(),
            topic: spec.topics.first().cloned().unwrap_or_default(),
            probe: Cached::new(HEALTH_PERIOD),
            checks: (self.checks.into_iter())
                .map(|(name, check)| (name, check, Cached::new(HEALTH_PERIOD)))
                .collect(),
            metrics,
        });
        let listener = ordering_http::listen(&self.name, SocketAddr::new(host, port), https)
            .await
            .map_err(|_| ServiceError::Start(format!("cannot listen on {host}:{port}")))?;
        let consuming = health.clone();
        let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
        let http = tokio::spawn(ordering_http::serve(
            listener,
            ordering_http::MAX_CONNECTIONS,
            route,
            move |request| {
                let health = health.clone();
                async move { health.answer(&request).await }
            },
            async {
                let _ = http_stopped.await;
            },
        ));

        let stop = std::sync::Mutex::new(None);
        let consumed = consume(
            &spec,
            self.codec,
            self.handler,
            dead_letters,
            |stats, status| drop(consuming.consumer.set((stats, status))),
            async {
                let reason = ordering_http::stop_reason(&producer).await;
                *stop.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
            },
        )
        .await;
        let _ = stop_http.send(());
        let _ = http.await;
        consumed.map_err(|e| ServiceError::Consumer(e.to_string()))?;
        let reason = stop.lock().unwrap_or_else(|e| e.into_inner()).take();
        tracing::info!("{} stopped; what was done is committed", self.name);
        Ok(reason.map_or(ExitCode::SUCCESS, |r| r.exit_code()))
    }
}

/// Where and how a consumer consumes. [`ConsumerService`] and a service with its own HTTP
/// routes (order-shell) both hand one to [`consume`], so a consumer is wired one way.
#[derive(Clone)]
pub struct ConsumerSpec {
    /// The brokers and how every client gets in.
    pub cluster: Cluster,
    /// The consumer group.
    pub group: String,
    /// The topics consumed.
    pub topics: Vec<String>,
    /// The dead-letter topic, created with the others.
    pub dead_letters: String,
    /// How missing topics are created (those that exist are left as they are).
    pub topic_settings: TopicSettings,
    /// librdkafka's `session.timeout.ms`; `None` keeps its default (45 s).
    pub session_timeout: Option<Duration>,
    /// `fetch.wait.max.ms`; `None` keeps `KafkaSource`'s default.
    pub fetch_wait_max: Option<Duration>,
    /// Lanes, retries, bounds of the dispatcher.
    pub dispatcher: DispatcherConfig,
    /// Where the incarnations of the topics are numbered, when the handler orders records by
    /// their positions: the store those positions are kept in
    /// ([`KafkaSource::with_incarnations`]). `None`: every record is in its topic's first.
    pub incarnations: Option<Arc<dyn TopicIncarnations>>,
}

impl std::fmt::Debug for ConsumerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerSpec")
            .field("group", &self.group)
            .field("topics", &self.topics)
            .field("dead_letters", &self.dead_letters)
            .field("incarnations", &self.incarnations.is_some())
            .finish_non_exhaustive()
    }
}

/// Why [`consume`] stopped other than by its shutdown signal.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    /// The topics could not be created as asked.
    #[error(
        "the topics could not be created (their partitions, replication factor and min.insync.replicas settings): {0}"
    )]
    Topics(#[source] ordering_kafka::KafkaError),
    /// The consumer could not be made (its settings).
    #[error("the consumer could not be created: {0}")]
    Consumer(#[source] ordering_kafka::KafkaError),
    /// The dispatcher stopped: the source failed for good, or the last commit did.
    #[error(transparent)]
    Dispatch(#[from] ordering_core::DispatchError),
}

/// Creates the topics when the broker is ready, then consumes `spec.topics` with `codec`
/// through `handler`, dead letters to `dead_letters`, until `shutdown` (then what is done is
/// committed). `started` gets the dispatcher's counters and the source's status once
/// consuming, for a health check.
pub async fn consume<E, C, H, D>(
    spec: &ConsumerSpec,
    codec: C,
    handler: H,
    dead_letters: D,
    started: impl FnOnce(Stats, SourceStatus),
    shutdown: impl Future<Output = ()>,
) -> Result<(), ConsumeError>
where
    E: Serialize + Send + Sync + 'static,
    C: Codec<E> + 'static,
    H: Handler<E> + 'static,
    D: ordering_core::DeadLetterSink + 'static,
{
    let mut topics: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
    topics.push(&spec.dead_letters);
    let ready = ensure_topics_when_ready(&spec.cluster, &topics, &spec.topic_settings);
    let mut shutdown = std::pin::pin!(shutdown);
    tokio::select! {
        // Topics that exist with other settings were logged as warnings: left as they are.
        ready = ready => drop(ready.map_err(ConsumeError::Topics)?),
        () = &mut shutdown => return Ok(()),
    }
    let mut config = SourceConfig::new(&spec.cluster, &spec.group, &spec.topics);
    if let Some(wait) = spec.fetch_wait_max {
        config.fetch_wait_max = wait;
    }
    if let Some(timeout) = spec.session_timeout {
        config
            .overrides
            .push(("session.timeout.ms".into(), timeout.as_millis().to_string()));
    }
    let mut source = KafkaSource::new(&config, codec).map_err(ConsumeError::Consumer)?;
    if let Some(registry) = &spec.incarnations {
        source = source.with_incarnations(registry.clone());
    }
    let status = source.status();
    let dispatcher = Dispatcher::new(source, handler, dead_letters, spec.dispatcher.clone());
    started(dispatcher.stats(), status);
    tracing::info!(group = %spec.group, topics = ?spec.topics, "consumer running");
    Ok(dispatcher.run(shutdown).await?)
}

/// The settings every consumer service reads, for `--help` and the environment.
fn command(name: &str) -> Command {
    Command::new(name.to_owned())
        .about(format!("The {name} consumer service."))

        .arg(setting(
            "KAFKA_BOOTSTRAP_SERVERS",
            "127.0.0.1:9092",
            "Kafka brokers",
        ))
        .arg(setting(
            "KAFKA_SESSION_TIMEOUT_MS",
            "10000",
            "How long the group waits for a member that stopped answering, in milliseconds",
        ))
        .arg(setting(
            "API_HOST",
            "127.0.0.1",
            "Address /health and /metrics are served on",
        ))
        .arg(setting(
            "API_PORT",
            "8080",
            "Port /health and /metrics are served on",
        ))
        .arg(setting(
            "LOG_FORMAT",
            "text",
            "text or json; RUST_LOG filters",
        ))
        .args(
            [
                ("KAFKA_SECURITY_PROTOCOL", "plaintext, ssl, sasl_plaintext or sasl_ssl [default: plaintext]"),
                ("KAFKA_SASL_MECHANISM", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (the password: KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE, environment only)"),
                ("KAFKA_SASL_USERNAME", "The SASL user name"),
                ("KAFKA_SSL_CA_LOCATION", "The CA certificates (PEM) that sign the brokers' certificates [default: the system's]"),
                ("KAFKA_SSL_CERTIFICATE_LOCATION", "A client certificate (PEM), for mutual TLS"),
                ("KAFKA_SSL_KEY_LOCATION", "The client certificate's key (PEM; its passphrase: KAFKA_SSL_KEY_PASSWORD_FILE, environment only)"),
                ("KAFKA_PROPERTIES_FILE", "A Kafka client.properties file of librdkafka properties, applied to every client first"),
                ("TLS_CERT_FILE", "The certificate chain (PEM) to serve /health and /metrics over HTTPS with"),
                ("TLS_KEY_FILE", "The certificate's private key (PEM)"),
            ]
            .map(|(name, help)| optional_setting(name, help)),
        )
        .after_help(ordering_http::env::KAFKA_ENVIRONMENT_ONLY_HELP)
}

/// A setting without a default.
fn optional_setting(name: &'static str, help: &'static str) -> Arg {
    Arg::new(name)
        .long(name.to_ascii_lowercase().replace('_', "-"))
        .env(name)
        .help(help)
}

fn setting(name: &'static str, default: &'static str, help: &'static str) -> Arg {
    Arg::new(name)
        .long(name.to_ascii_lowercase().replace('_', "-"))
        .env(name)
        .default_value(default)
        .help(help)
}

fn route(path: &str) -> &'static str {
    match path {
        "/health" => "/health",
        "/metrics" => "/metrics",
        _ => "other",
    }
}

/// Why a service stopped other than by a signal.
#[derive(Debug, thiserror::Error)]
enum ServiceError {
    #[error("{0}")]
    Setting(ordering_http::env::EnvError),
    #[error("cannot start: {0}")]
    Start(String),
    #[error("the consumer stopped: {0}")]
    Consumer(String),
}

impl ServiceError {
    fn exit_code(&self) -> ExitCode {
        match self {
            Self::Setting(_) => ExitCode::from(2),
            Self::Start(_) | Self::Consumer(_) => ExitCode::from(1),
        }
    }
}

/// What `/health` and `/metrics` read.
/// The last answer of a part of `/health`.
type Probe = Cached<Result<(), String>>;

struct Health {
    /// The dispatcher's counters and the source's status, once consuming.
    consumer: std::sync::OnceLock<(Stats, SourceStatus)>,
    producer: KafkaProducer,
    /// A consumed topic, whose metadata `/health` asks for (not every topic's).
    topic: String,
    /// The broker's answer, asked at most once a second whatever the rate of `/health`.
    probe: Probe,
    /// The service's own checks, each with its last answer.
    checks: Vec<(String, Arc<dyn HealthCheck>, Probe)>,
    metrics: Metrics,
}

impl Health {
    async fn answer(&self, request: &HttpRequest) -> Response {
        match (request.method(), request.uri().path()) {
            (&Method::GET, "/metrics") => self.metrics.response(),
            (&Method::GET, "/health") => self.health().await,
            (_, "/health" | "/metrics") => ordering_http::method_not_allowed("GET"),
            (_, path) => ordering_http::no_such_path(path),
        }
    }

    /// `200` while the consumer runs, the broker answers, the producer works and every check
    /// passes; else `503`. Each part says `ok` or what is wrong.
    async fn health(&self) -> Response {
        let (stats, assigned) = match self.consumer.get() {
            Some((stats, status)) => (
                Some(stats.snapshot()),
                status.assigned().iter().map(ToString::to_string).collect(),
            ),
            None => (None, Vec::new()), // still creating the topics
        };
        let running = stats.is_some_and(|s| s.is_running);
        let ping = || async {
            let pinged = self.producer.ping_topic(&self.topic, HEALTH_TIMEOUT).await;
            pinged.map_err(|e| kafka_problem(&e))
        };
        let broker = self.probe.get(ping).await;
        let producer = self.producer.fatal_error();
        let mut checks = serde_json::Map::new();
        let mut checks_pass = true;
        for (name, check, last) in &self.checks {
            let answer = last
                .get(|| async {
                    tokio::time::timeout(HEALTH_TIMEOUT, check.check())
                        .await
                        .unwrap_or_else(|_| Err(format!("no answer within {HEALTH_TIMEOUT:?}")))
                })
                .await;
            checks_pass &= answer.is_ok();
            checks.insert(name.clone(), state(answer.err()));
        }
        let healthy = running && broker.is_ok() && producer.is_none() && checks_pass;
        let mut body = json!({
            "status": if healthy { "healthy" } else { "unhealthy" },
            "consumer": {"isRunning": running, "assignedPartitions": assigned},
            "stats": stats,
            "broker": state(broker.err()),
            "producer": state(producer),
        });
        if !checks.is_empty() {
            body["checks"] = serde_json::Value::Object(checks);
        }
        let status = if healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        json(status, &body)
    }
}

/// A part of `/health`: `ok`, or what is wrong with it.
fn state(problem: Option<String>) -> serde_json::Value {
    serde_json::Value::String(problem.unwrap_or_else(|| "ok".into()))
}

/// Runs a service whose parts are built from settings of its own, `S` (a `clap::Args`: a
/// `#[derive(clap::Args)]` struct whose fields are `#[arg(long, env = "…")]`). They are listed
/// in `--help` beside the service's own and read from flags or the environment; `build` runs
/// only once they are parsed, never on `--help`, and makes the service from them (opening
/// its database, say). An error from `build` stops the start (exit code 1) with its message.
///
/// ```no_run
/// # use ordering_kafka::Json;
/// # use ordering_core::{Classify, ErrorClass, Handler, RecordMeta};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Reservation { sku: String }
/// # #[derive(Debug, thiserror::Error)] #[error("out of stock")] struct OutOfStock;
/// # impl Classify for OutOfStock {
/// #     fn class(&self) -> ErrorClass { ErrorClass::Permanent }
/// #     fn kind(&self) -> &'static str { "OutOfStock" }
/// # }
/// # struct Reserve(std::path::PathBuf);
/// # #[async_trait::async_trait]
/// # impl Handler<Reservation> for Reserve {
/// #     type Error = OutOfStock;
/// #     async fn handle(&self, _: &Reservation, _: &RecordMeta) -> Result<(), OutOfStock> { Ok(()) }
/// # }
/// #[derive(clap::Args)]
/// struct Settings {
///     /// Where the stock is kept
///     #[arg(long, env = "INVENTORY_DB", default_value = "inventory.db")]
///     inventory_db: std::path::PathBuf,
/// }
///
/// #[tokio::main]
/// async fn main() -> std::process::ExitCode {
///     ordering_service::run_with_settings("inventory", |settings: Settings| async move {
///         let handler = Reserve(settings.inventory_db);
///         Ok(ordering_service::ConsumerService::new("inventory", handler, Json::new()))
///     })
///     .await
/// }
/// ```
pub async fn run_with_settings<S, E, H, C, F, Fut>(name: &str, build: F) -> ExitCode
where
    S: clap::Args + clap::FromArgMatches,
    E: Serialize + Send + Sync + 'static,
    H: Handler<E> + 'static,
    C: Codec<E> + 'static,
    F: FnOnce(S) -> Fut,
    Fut: Future<Output = Result<ConsumerService<H, C>, Box<dyn std::error::Error + Send + Sync>>>,
{
    let command = S::augment_args(command(name));
    let (env, matches) = match Env::parse_args(command, std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(error) => error.exit(),
    };
    let settings = match S::from_arg_matches(&matches) {
        Ok(settings) => settings,
        Err(error) => error.exit(),
    };
    match build(settings).await {
        Ok(service) => service.run_parsed(&env).await,
        Err(error) => {
            eprintln!("{name}: cannot start: {error}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use ordering_core::{Classify, DecodeError, ErrorClass, RecordMeta};
    use ordering_kafka::KafkaError;

    struct Text;
    impl Codec<String> for Text {
        fn encode(&self, message: &String) -> Result<Vec<u8>, KafkaError> {
            Ok(message.as_bytes().to_vec())
        }
        fn decode(&self, payload: &[u8]) -> Result<String, DecodeError> {
            String::from_utf8(payload.to_vec()).map_err(|e| DecodeError::new(e.to_string()))
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("never")]
    struct Never;
    impl Classify for Never {
        fn class(&self) -> ErrorClass {
            ErrorClass::Permanent
        }
        fn kind(&self) -> &'static str {
            "Never"
        }
    }

    struct Accept;
    #[async_trait::async_trait]
    impl Handler<String> for Accept {
        type Error = Never;
        async fn handle(&self, _: &String, _: &RecordMeta) -> Result<(), Never> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_bad_setting_stops_it_with_exit_code_2_naming_the_setting() {
        for (name, value) in [
            ("API_PORT", "eighty"),
            ("KAFKA_SESSION_TIMEOUT_MS", "5"),
            ("API_HOST", "not an address"),
            ("LOG_FORMAT", "xml"),
        ] {
            let env = Env::from_pairs(&[(name, value)]);
            let service = ConsumerService::new("test", Accept, Text);
            let error = service.run_with(&env).await.unwrap_err();
            assert!(error.to_string().contains(name), "{name}: {error}");
            assert_eq!(error.exit_code(), ExitCode::from(2));
        }
    }

    #[test]
    fn help_lists_every_setting_it_reads() {
        let help = ConsumerService::new("test", Accept, Text)
            .command()
            .render_help()
            .to_string();
        for name in [
            "KAFKA_BOOTSTRAP_SERVERS",
            "KAFKA_SESSION_TIMEOUT_MS",
            "API_HOST",
            "API_PORT",
            "LOG_FORMAT",
        ] {
            assert!(help.contains(name), "{name} missing from:\n{help}");
        }
    }
}
