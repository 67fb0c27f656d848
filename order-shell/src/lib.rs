//! order-shell as a library: consumes `order-events` and `order-status-updates` through the
//! `ordering-core` dispatcher (retries, dead letters to `order-events-dlq`), keeps orders in
//! the store `ORDER_STORE_URL` names (SQLite by default) and answers queries over HTTP.
//!
//! [`App`] is the service, built from its settings, a store and a metrics handle; `main.rs`
//! only reads settings, wires and serves. `routes` translates HTTP (endpoints: [`ROUTES`],
//! documented in `docs/openapi.yaml`); every rule lives in the libraries.

pub mod config;
mod console;
mod redrive;
mod routes;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ordering_core::order::{
    OrderEvent, OrderEventHandler, OrderRedriveGuard, prune_history_older_than,
};
use ordering_core::{DispatcherConfig, LaneMode, Stats};
use ordering_http::cached::Cached;
use ordering_http::metrics::Metrics;
use ordering_http::openapi::OpenApi;
use ordering_kafka::order::AvroCodec;
use ordering_kafka::{Codec, KafkaProducer, ProducerConfig, Redriver, SourceStatus};
use ordering_service::ConsumerSpec;
use ordering_store::{OpenError, Store};

use config::Config;

pub use console::{Asset, Page};
pub use routes::{Endpoint, Heavy, Quick, ROUTES};

/// The service's name, in logs, health answers and the OpenAPI tags.
pub const SERVICE: &str = "order-shell";

/// Where this shell's operations are documented: the repository's `docs/openapi.yaml`.
pub const API: ordering_http::openapi::Documented = ordering_http::openapi::Documented {
    document: include_str!("../../docs/openapi.yaml"),
    service: SERVICE,
};

/// What the routes read.
pub struct App {
    config: Config,
    metrics: Metrics,
    store: Arc<dyn Store>,
    producer: KafkaProducer,
    codec: AvroCodec,
    /// Sends dead letters back to the service's own topics (`POST /api/dlq/redrive`).
    redriver: Arc<Redriver>,
    /// Set once the consumer runs (after the topics exist).
    consumer: OnceLock<(Stats, SourceStatus)>,
    openapi: OpenApi,
    /// The console's pages, parsed once.
    pages: console::Pages,
    /// The console's charts: the last hour of the metrics, sampled by `App::sample_metrics`.
    series: console::series::Series,
    /// The consumer group's members as last asked, and when (the console's overview).
    members: tokio::sync::Mutex<Option<GroupMembers>>,
    /// `/health`'s probes of the broker and the store, at most one a second.
    probes: Cached<routes::Probes>,
}

/// How often `/health` probes the broker and the store, at most.
const PROBE_PERIOD: Duration = Duration::from_secs(1);

type GroupMembers = (
    std::time::Instant,
    Result<Vec<ordering_kafka::GroupMember>, String>,
);

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

/// Opens (and migrates) the order store. A server that is not up yet is waited for; a bad
/// database (or one a newer version wrote) is an error naming the setting.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StoreOpenError> {
    let url = &config.store;
    let place = url.describe();
    let open = || url.open();
    let store = ordering_http::wait::open_when_up("order store", &place, open, |e: &OpenError| {
        e.is_transient()
    })
    .await
    .map_err(|source| StoreOpenError {
        url: place.clone(),
        source,
    })?;
    tracing::info!(store = %place, "order store open");
    Ok(store)
}

/// The order store could not be opened, for a reason waiting cannot fix.
#[derive(Debug, thiserror::Error)]
#[error("ORDER_STORE_URL={url}: {source}{}", store_hint(source))]
pub struct StoreOpenError {
    /// The URL, with any password hidden.
    url: String,
    #[source]
    source: ordering_store::OpenError,
}

/// What to look at when the store refuses the service.
fn store_hint(error: &ordering_store::OpenError) -> &'static str {
    use ordering_store::Refusal;
    match error {
        ordering_store::OpenError::Refused(refusal) => match refusal {
            Refusal::Authentication(_) => {
                "; check the user in ORDER_STORE_URL and its password (ORDER_STORE_PASSWORD_FILE)"
            }
            Refusal::TlsRequired(_) => "; set sslmode=verify-full (or require) in ORDER_STORE_URL",
            Refusal::NoTls => "; the server has no TLS: check sslmode in ORDER_STORE_URL",
            _ => "; check sslmode and sslrootcert in ORDER_STORE_URL",
        },
        _ => "",
    }
}

/// Why the consumer stopped other than by its shutdown signal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumeError {
    #[error(
        "the topics could not be created (KAFKA_TOPIC_PARTITIONS, KAFKA_REPLICATION_FACTOR, KAFKA_MIN_INSYNC_REPLICAS): {0}"
    )]
    Topics(#[source] ordering_kafka::KafkaError),
    #[error("the consumer could not be created: {0}")]
    Consumer(#[source] ordering_kafka::KafkaError),
    #[error(transparent)]
    Dispatch(#[from] ordering_core::DispatchError),
}

/// Why the service could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    #[error(transparent)]
    Kafka(#[from] ordering_kafka::KafkaError),
    #[error(transparent)]
    OpenApi(#[from] ordering_http::openapi::OpenApiError),
    #[error("the console's templates do not parse: {0}")]
    Console(#[from] minijinja::Error),
}

impl App {
    /// The service over `store`. Nothing is contacted yet: the producer connects when it
    /// first sends, the consumer starts with [`consume`].
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        metrics: Metrics,
    ) -> Result<Self, BuildError> {
        let mut producer = ProducerConfig::new(&config.kafka.cluster);
        producer.delivery_timeout = config.kafka.delivery_timeout;
        let producer = KafkaProducer::new(&producer)?;
        let redriver = Arc::new(
            Redriver::builder(producer.clone(), config.codec.dead_letters(), store.clone())
                .dead_letters(&config.dlq_topic)
                .topics([&config.order_topic, &config.status_topic])
                .max_redrives(config.max_redrives)
                // A letter whose order moved on is skipped, never sent back to move it back.
                .guard(Arc::new(OrderRedriveGuard::new(store.clone(), {
                    let codec = config.codec;
                    move |payload: Vec<u8>| async move {
                        // A registry's writer schema first, as the consumer would.
                        if let Some(fetch) = Codec::<OrderEvent>::prepare(&codec, &payload) {
                            let _ = fetch.await;
                        }
                        Codec::<OrderEvent>::decode(&codec, &payload)
                    }
                })))
                .build()?,
        );
        Ok(Self {
            producer,
            codec: config.codec,
            redriver,
            metrics,
            store,
            consumer: OnceLock::new(),
            openapi: OpenApi::for_service(API)?,
            pages: console::Pages::new()?,
            series: console::series::Series::default(),
            members: tokio::sync::Mutex::new(None),
            probes: Cached::new(PROBE_PERIOD),
            config,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn producer(&self) -> &KafkaProducer {
        &self.producer
    }

    /// Serves on `listener` until `shutdown` completes, then lets requests in flight finish.
    /// Meanwhile samples the metrics for the console and prunes old order history.
    pub async fn serve(
        self: Arc<Self>,
        listener: impl Into<ordering_http::Listener>,
        shutdown: impl Future<Output = ()>,
    ) {
        let max_connections = self.config.max_connections;
        let sampling = tokio::spawn(self.clone().sample_metrics());
        let pruning = tokio::spawn(self.clone().prune_history());
        ordering_http::serve(
            listener,
            max_connections,
            |path| ROUTES.label(path),
            move |request| {
                let app = self.clone();
                async move { app.handle(request).await }
            },
            shutdown,
        )
        .await;
        sampling.abort();
        pruning.abort();
    }

    /// Samples the metrics for the console's charts, every [`console::series::EVERY`]; a
    /// tick missed (a busy runtime) is skipped, not made up in a burst that would read as a
    /// spike.
    async fn sample_metrics(self: Arc<Self>) {
        let mut every = tokio::time::interval(console::series::EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            every.tick().await;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.series.sample(&self.metrics.render(), now);
        }
    }

    /// Deletes order history past `ORDER_HISTORY_RETENTION_DAYS`, every [`PRUNE_EVERY`].
    async fn prune_history(self: Arc<Self>) {
        let Some(retention) = self.config.history_retention else {
            return;
        };
        let mut every = tokio::time::interval(PRUNE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match prune_history_older_than(self.store.as_ref(), retention).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, ?retention, "order history pruned"),
                // Tried again at the next tick; history only grows meanwhile.
                Err(error) => tracing::warn!(%error, "order history not pruned"),
            }
        }
    }
}

/// How often history past its retention is deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Waits for the broker and the topics, then runs the dispatcher until `shutdown`.
pub async fn consume(
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ConsumeError> {
    let kafka = &app.config.kafka;
    let spec = ConsumerSpec {
        cluster: kafka.cluster.clone(),
        group: app.config.consumer_group.clone(),
        topics: vec![
            app.config.order_topic.clone(),
            app.config.status_topic.clone(),
        ],
        dead_letters: app.config.dlq_topic.clone(),
        topic_settings: kafka.topics(),
        session_timeout: app.config.session_timeout,
        fetch_wait_max: Some(app.config.fetch_wait_max),
        dispatcher: DispatcherConfig {
            retry: app.config.retry.clone(),
            // Per order: a retrying update (an order not there yet) holds back only its own
            // order, and many orders' writes can share one store commit.
            lanes: LaneMode::Key,
            max_in_flight_per_partition: app.config.max_in_flight_per_partition,
            ..DispatcherConfig::default()
        },
        // Updates are applied by position: a re-created topic's must come after the old's.
        incarnations: Some(app.store.clone()),
    };
    // Wired as every consumer service is (ordering-service); the HTTP side is this shell's.
    ordering_service::consume::<OrderEvent, _, _, _>(
        &spec,
        app.codec,
        OrderEventHandler::new(app.store.clone()),
        app.producer.sink(&app.config.dlq_topic, app.codec),
        |stats, status| drop(app.consumer.set((stats, status))),
        shutdown,
    )
    .await
    .map_err(|error| match error {
        ordering_service::ConsumeError::Topics(e) => ConsumeError::Topics(e),
        ordering_service::ConsumeError::Consumer(e) => ConsumeError::Consumer(e),
        ordering_service::ConsumeError::Dispatch(e) => ConsumeError::Dispatch(e),
    })
}
