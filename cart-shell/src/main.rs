//! cart-shell: reads its settings, wires the Kafka producer into the service
//! (`cart_shell::Cart`, in `lib.rs`) and serves until SIGINT/SIGTERM or a producer that
//! failed for good. Settings: README, "Configuration".

use std::process::ExitCode;
use std::sync::Arc;

use cart_shell::{Cart, Cli, ProducerHealth, Settings};
use clap::CommandFactory;
use ordering_http::env::Env;
use ordering_http::metrics::Metrics;
use ordering_http::{Stop, stop_reason};
use ordering_kafka::{KafkaProducer, ProducerConfig, ensure_topics_when_ready};

fn main() -> ExitCode {
    ordering_http::memory::run("cart-shell", start)
}

async fn start() -> ExitCode {
    match run().await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("cart-shell: {error}");
            ExitCode::from(2)
        }
    }
}

/// Runs the shell; an error is a setting or a start-up failure, reported with exit code 2.
async fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    // `--help`, `--version` and a malformed command line end here (exit 0 or 2).
    let env = Env::from_command_line(Cli::command()).unwrap_or_else(|e| e.exit());
    // Kept to the end: dropping it flushes the traces not yet exported.
    let _telemetry = ordering_http::init_tracing(&env, cart_shell::SERVICE)?;
    let Settings {
        kafka,
        order_topic,
        status_topic,
        listen,
        max_connections,
        codec,
        registry,
        idempotency,
        publish,
        https,
    } = Settings::from_env(&env)?;
    let codec = cart_shell::writing_codec(codec, &registry, &order_topic, &status_topic).await?;
    let keys = idempotency.open(kafka.delivery_timeout).await?;
    tracing::info!(store = %idempotency.store.describe(), "idempotency keys open");
    let metrics = Metrics::install()?;

    let mut config = ProducerConfig::new(&kafka.cluster);
    config.delivery_timeout = kafka.delivery_timeout;
    publish.apply(&mut config);
    let producer =
        KafkaProducer::new(&config).map_err(|e| ordering_http::security::kafka_problem(&e))?;
    // A login or a certificate the brokers refuse stops the start, saying which setting to
    // look at; brokers that are merely down are waited for.
    if let Err(failure) = producer
        .check_access(ordering_http::security::ACCESS_CHECK)
        .await
    {
        eprintln!(
            "cart-shell: cannot connect to Kafka: {failure}; {}",
            ordering_http::security::kafka_hint(&failure)
        );
        return Ok(ExitCode::from(1));
    }
    let cart = Arc::new(
        Cart::new(
            Arc::new(producer.sink(&order_topic, codec)),
            Arc::new(producer.sink(&status_topic, codec)),
            Arc::new(ProducerHealth::new(producer.clone(), &order_topic)),
            keys,
            metrics,
        )?
        .with_keyed_create_limit(max_connections),
    );
    tokio::spawn(async move {
        let topics = [order_topic.as_str(), status_topic.as_str()];
        if let Err(error) = ensure_topics_when_ready(&kafka.cluster, &topics, &kafka.topics()).await
        {
            tracing::error!(
                %error, partitions = kafka.partitions, replication_factor = ?kafka.replication_factor,
                min_insync_replicas = ?kafka.min_insync_replicas,
                "the topics could not be created (KAFKA_TOPIC_PARTITIONS, KAFKA_REPLICATION_FACTOR, KAFKA_MIN_INSYNC_REPLICAS)"
            );
        }
    });
    let listener = match ordering_http::listen(cart_shell::SERVICE, listen, https).await {
        Ok(listener) => listener,
        Err(code) => return Ok(code),
    };

    let stop = std::sync::OnceLock::new();
    cart.serve(listener, max_connections, async {
        let _ = stop.set(stop_reason(&producer).await);
    })
    .await;
    if let Err(error) = producer.flush().await {
        tracing::warn!(%error, "flushing the producer at shutdown failed");
    }
    tracing::info!("cart-shell stopped");
    Ok(stop.get().map_or(ExitCode::SUCCESS, Stop::exit_code))
}
