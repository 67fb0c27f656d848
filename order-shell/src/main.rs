//! order-shell: consumes `order-events` and `order-status-updates` through the
//! `ordering-core` dispatcher (retries, dead letters to `order-events-dlq`), keeps orders in
//! the store `ORDER_STORE_URL` names (SQLite by default) and answers queries over HTTP.
//!
//! This file wires the pieces; `routes` translates HTTP; every rule lives in `ordering-core`.

mod config;
mod redrive;
mod routes;

use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ordering_core::order::{OrderEvent, OrderEventHandler};
use ordering_core::{Dispatcher, DispatcherConfig, LaneMode, Stats};
use ordering_kafka::{
    AvroCodec, KafkaProducer, KafkaSource, ProducerConfig, Redriver, SourceConfig, SourceStatus,
    ensure_topics_when_ready,
};
use ordering_store::Store;
use shell_http::env::Env;
use shell_http::metrics::Metrics;
use shell_http::{Stop, serve, shutdown_signal};
use tokio::sync::watch;

use config::Config;

/// Records of one partition received and not yet committed, at most. Store writes wait for
/// their group commit, so many must be in flight to fill a commit: at the library's 1024 a
/// SQLite-backed drain ran at 250 k/s, at 8192 at 300 k/s, beyond that no faster
/// (BENCHMARKS.md); 8192 small records are a few MB per partition.
// In a const: checked when compiling.
const MAX_IN_FLIGHT_PER_PARTITION: NonZeroUsize = NonZeroUsize::new(8192).unwrap();

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
}

#[tokio::main]
async fn main() -> ExitCode {
    let env = Env::process();
    let config = match shell_http::init_tracing(&env).and_then(|()| Config::from_env(&env)) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("order-shell: {error}");
            return ExitCode::from(2);
        }
    };
    let metrics = match Metrics::install() {
        Ok(metrics) => metrics,
        Err(error) => {
            eprintln!("order-shell: {error}");
            return ExitCode::from(2);
        }
    };
    // One signal stops everything: the wait for the store, the HTTP server, the consumer.
    let (stop, stopping) = watch::channel(false);
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            let _ = stop.send(true);
        }
    });
    let stopped = |mut stopping: watch::Receiver<bool>| async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };

    let store = tokio::select! {
        store = open_store(&config) => match store {
            Ok(store) => store,
            Err(code) => return code,
        },
        () = stopped(stopping.clone()) => return ExitCode::SUCCESS,
    };
    let app = match App::new(config, store, metrics) {
        Ok(app) => Arc::new(app),
        Err(error) => {
            eprintln!("order-shell: {error}");
            return ExitCode::from(2);
        }
    };
    // So does a producer that failed for good (no dead letter could be written any more):
    // the shell exits non-zero for its supervisor to start a new one.
    let failed = tokio::spawn({
        let (app, stop) = (app.clone(), stop.clone());
        async move {
            let error = app.producer.fatal().await;
            tracing::error!(%error, "the producer failed for good; stopping, so that a supervisor restarts this service");
            let _ = stop.send(true);
            Stop::ProducerFailed(error)
        }
    });
    let addr = app.config.listen;
    let listener = match shell_http::listen("order-shell", addr).await {
        Ok(listener) => listener,
        Err(code) => return code,
    };

    // A consumer that stops with an error stops the shell too, with a non-zero exit code: a
    // service that no longer consumes must not look alive to its supervisor.
    let consumer = tokio::spawn({
        let (app, stop, stopping) = (app.clone(), stop.clone(), stopping.clone());
        async move {
            let consumed = consume(app, stopped(stopping)).await;
            if consumed.is_err() {
                let _ = stop.send(true);
            }
            consumed
        }
    });
    let routes = app.clone();
    serve(
        listener,
        app.config.max_connections,
        routes::ROUTES,
        move |request| {
            let app = routes.clone();
            async move { app.route(request).await }
        },
        stopped(stopping),
    )
    .await;

    let mut code = ExitCode::SUCCESS;
    match consumer.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::error!(%error, "the consumer stopped with an error");
            code = ExitCode::FAILURE;
        }
        Err(error) => {
            tracing::error!(%error, "the consumer task failed");
            code = ExitCode::FAILURE;
        }
    }
    if let Err(error) = app.producer.flush().await {
        tracing::warn!(%error, "flushing the producer at shutdown failed");
    }
    if failed.is_finished() {
        if let Ok(stop) = failed.await {
            code = stop.exit_code();
        }
    } else {
        failed.abort();
    }
    tracing::info!("order-shell stopped");
    code
}

/// Opens (and migrates) the order store. A server that is not up yet is waited for; a bad
/// database (or one a newer version wrote) stops the shell with a message naming the setting.
async fn open_store(config: &Config) -> Result<Arc<dyn Store>, ExitCode> {
    let url = &config.store;
    let mut delay = Duration::from_millis(250);
    loop {
        match url.open().await {
            Ok(store) => {
                tracing::info!(store = %url.describe(), "order store open");
                return Ok(store);
            }
            Err(error) if error.is_transient() => {
                tracing::warn!(store = %url.describe(), %error, ?delay, "waiting for the order store");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(error) => {
                eprintln!("order-shell: ORDER_STORE_URL={}: {error}", url.describe());
                return Err(ExitCode::from(2));
            }
        }
    }
}

impl App {
    fn new(
        config: Config,
        store: Arc<dyn Store>,
        metrics: Metrics,
    ) -> Result<Self, ordering_kafka::KafkaError> {
        let mut producer = ProducerConfig::new(&config.kafka.bootstrap_servers);
        producer.delivery_timeout = config.kafka.delivery_timeout;
        let producer = KafkaProducer::new(&producer)?;
        let kafka = &config.kafka;
        let redriver = Arc::new(
            Redriver::new(
                producer.clone(),
                &kafka.bootstrap_servers,
                &config.dlq_topic,
                vec![kafka.order_topic.clone(), kafka.status_topic.clone()],
                config.max_redrives,
                store.clone(),
            )?
            .with_codec(config.codec),
        );
        Ok(Self {
            producer,
            codec: config.codec,
            redriver,
            metrics,
            store,
            consumer: OnceLock::new(),
            config,
        })
    }
}

/// Waits for the broker and the topics, then runs the dispatcher until `shutdown`.
async fn consume(app: Arc<App>, shutdown: impl Future<Output = ()> + Send) -> Result<(), String> {
    let kafka = &app.config.kafka;
    let topics = [
        kafka.order_topic.as_str(),
        kafka.status_topic.as_str(),
        app.config.dlq_topic.as_str(),
    ];
    let settings = kafka.topics();
    let ready = ensure_topics_when_ready(&kafka.bootstrap_servers, &topics, &settings);
    let mut shutdown = std::pin::pin!(shutdown);
    tokio::select! {
        // Topics that exist with other settings were logged as warnings: left as they are.
        ready = ready => drop(ready.map_err(|e| format!(
            "the topics could not be created (KAFKA_TOPIC_PARTITIONS, KAFKA_REPLICATION_FACTOR, KAFKA_MIN_INSYNC_REPLICAS): {e}"
        ))?),
        () = &mut shutdown => return Ok(()),
    }
    let mut source_config = SourceConfig::new(
        &kafka.bootstrap_servers,
        &app.config.consumer_group,
        [&kafka.order_topic, &kafka.status_topic],
    );
    source_config.fetch_wait_max = app.config.fetch_wait_max;
    if let Some(timeout) = app.config.session_timeout {
        source_config
            .overrides
            .push(("session.timeout.ms".into(), timeout.as_millis().to_string()));
    }
    let source =
        KafkaSource::<OrderEvent, _>::new(&source_config, app.codec).map_err(|e| e.to_string())?;
    let status = source.status();
    let dispatcher = Dispatcher::new(
        source,
        OrderEventHandler::new(app.store.clone()),
        app.producer.sink(&app.config.dlq_topic, app.codec),
        DispatcherConfig {
            retry: app.config.retry.clone(),
            // Per order: a retrying update (an order not there yet) holds back only its own
            // order, and many orders' writes can share one store commit.
            lanes: LaneMode::Key,
            max_in_flight_per_partition: MAX_IN_FLIGHT_PER_PARTITION,
            ..DispatcherConfig::default()
        },
    );
    let _ = app.consumer.set((dispatcher.stats(), status));
    tracing::info!(group = %app.config.consumer_group, "consumer running");
    dispatcher.run(shutdown).await.map_err(|e| e.to_string())
}
