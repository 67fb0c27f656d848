//! cart-shell: takes orders and status updates over HTTP and publishes them as Avro events.
//! It answers `201`/`202` only once the broker has the event (acks=all).
//!
//! Routes (README, "The services"): `POST /api/create-order`, `PUT /api/update-order`, `GET /health`,
//! `GET /metrics`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, StatusCode};
use ordering_core::now_iso8601;
use ordering_core::order::parse_reason;
use ordering_core::order::{NumItems, Order, OrderId, Status, StatusUpdate, generate_order};
use ordering_core::{Sink, SinkError};
use ordering_kafka::{
    AvroCodec, KafkaProducer, KafkaSink, ProducerConfig, SchemaFamily, ensure_topics_when_ready,
};
use serde_json::json;
use shell_http::env::Env;
use shell_http::metrics::Metrics;
use shell_http::settings::{KafkaSettings, avro_codec, listen_addr, max_connections};
use shell_http::{
    ApiError, HttpRequest, Response, Stop, json, method_not_allowed, no_such_path, optional_str,
    read_json, required_int, required_str, serve, stop_reason,
};

/// Request bodies above this get `413`.
const BODY_LIMIT: usize = 64 * 1024;

/// The paths served, for the HTTP metrics' `route` label.
const ROUTES: &[&str] = &[
    "/api/create-order",
    "/api/update-order",
    "/health",
    "/metrics",
];

struct Cart {
    metrics: Metrics,
    producer: KafkaProducer,
    orders: KafkaSink<Order, AvroCodec>,
    updates: KafkaSink<StatusUpdate, AvroCodec>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let env = Env::process();
    if let Err(error) = shell_http::init_tracing(&env) {
        eprintln!("cart-shell: {error}");
        return ExitCode::from(2);
    }
    let settings = (|| {
        Ok::<_, shell_http::env::EnvError>((
            KafkaSettings::from_env(&env)?,
            listen_addr(&env, 8000)?,
            max_connections(&env)?,
            avro_codec(&env, &[SchemaFamily::Order, SchemaFamily::StatusUpdate])?,
        ))
    })();
    let (kafka, addr, max_connections, codec) = match settings {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("cart-shell: {error}");
            return ExitCode::from(2);
        }
    };
    let metrics = match Metrics::install() {
        Ok(metrics) => metrics,
        Err(error) => {
            eprintln!("cart-shell: {error}");
            return ExitCode::from(2);
        }
    };
    let cart = match Cart::new(&kafka, codec, metrics) {
        Ok(cart) => Arc::new(cart),
        Err(error) => {
            eprintln!("cart-shell: {error}");
            return ExitCode::from(2);
        }
    };
    tokio::spawn(async move {
        let topics = [kafka.order_topic.as_str(), kafka.status_topic.as_str()];
        if let Err(error) =
            ensure_topics_when_ready(&kafka.bootstrap_servers, &topics, &kafka.topics()).await
        {
            tracing::error!(
                %error, partitions = kafka.partitions, replication_factor = ?kafka.replication_factor,
                min_insync_replicas = ?kafka.min_insync_replicas,
                "the topics could not be created (KAFKA_TOPIC_PARTITIONS, KAFKA_REPLICATION_FACTOR, KAFKA_MIN_INSYNC_REPLICAS)"
            );
        }
    });
    let listener = match shell_http::listen("cart-shell", addr).await {
        Ok(listener) => listener,
        Err(code) => return code,
    };

    let routes = cart.clone();
    let stop = std::sync::OnceLock::new();
    serve(
        listener,
        max_connections,
        ROUTES,
        move |request| {
            let cart = routes.clone();
            async move { cart.route(request).await }
        },
        async {
            let _ = stop.set(stop_reason(&cart.producer).await);
        },
    )
    .await;
    if let Err(error) = cart.producer.flush().await {
        tracing::warn!(%error, "flushing the producer at shutdown failed");
    }
    tracing::info!("cart-shell stopped");
    stop.get().map_or(ExitCode::SUCCESS, Stop::exit_code)
}

impl Cart {
    fn new(
        kafka: &KafkaSettings,
        codec: AvroCodec,
        metrics: Metrics,
    ) -> Result<Self, ordering_kafka::KafkaError> {
        let mut config = ProducerConfig::new(&kafka.bootstrap_servers);
        config.delivery_timeout = kafka.delivery_timeout;
        let producer = KafkaProducer::new(&config)?;
        Ok(Self {
            orders: producer.sink(&kafka.order_topic, codec),
            updates: producer.sink(&kafka.status_topic, codec),
            producer,
            metrics,
        })
    }

    async fn route(&self, request: HttpRequest) -> Response {
        let path = request.uri().path().to_owned();
        let result = match (request.method(), path.as_str()) {
            (&Method::POST, "/api/create-order") => self.create_order(request).await,
            (_, "/api/create-order") => return method_not_allowed("POST"),
            (&Method::PUT, "/api/update-order") => self.update_order(request).await,
            (_, "/api/update-order") => return method_not_allowed("PUT"),
            (&Method::GET, "/health") => return self.health().await,
            (_, "/health") => return method_not_allowed("GET"),
            (&Method::GET, "/metrics") => return self.metrics.response(),
            (_, "/metrics") => return method_not_allowed("GET"),
            (_, path) => return no_such_path(path),
        };
        result.unwrap_or_else(ApiError::into_response)
    }

    async fn create_order(&self, request: HttpRequest) -> Result<Response, ApiError> {
        let body = read_json(request, BODY_LIMIT).await?;
        let id = OrderId::parse(required_str(&body, "orderId")?).map_err(invalid)?;
        let num_items = NumItems::new(required_int(&body, "numItems")?).map_err(invalid)?;
        let order = generate_order(id, num_items, now_iso8601(), &mut rand::rng());
        self.orders.publish(&order).await.map_err(unpublished)?;
        Ok(json(
            StatusCode::CREATED,
            &json!({
                "success": true,
                "message": format!("Order '{}' created and published.", order.order_id),
                "data": order,
            }),
        ))
    }

    async fn update_order(&self, request: HttpRequest) -> Result<Response, ApiError> {
        let body = read_json(request, BODY_LIMIT).await?;
        let id = OrderId::parse(required_str(&body, "orderId")?).map_err(invalid)?;
        let status = Status::parse(required_str(&body, "status")?).map_err(invalid)?;
        let reason = parse_reason(optional_str(&body, "reason")?).map_err(invalid)?;
        let update = StatusUpdate::new(&id, &status, now_iso8601()).with_reason(reason);
        self.updates.publish(&update).await.map_err(unpublished)?;
        let mut body = json!({
            "success": true,
            "message": format!(
                "Status update event published for order '{id}'. Processing asynchronously."
            ),
            "data": {
                "orderId": update.order_id,
                "status": update.status,
                "message": "Status update event published. Processing asynchronously.",
                "eventType": update.event_type,
            },
        });
        // The spec's body exactly, unless the client gave a reason.
        if let Some(reason) = &update.reason {
            body["data"]["reason"] = json!(reason);
        }
        Ok(json(StatusCode::ACCEPTED, &body))
    }

    async fn health(&self) -> Response {
        if let Some(error) = self.producer.fatal_error() {
            return json(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({
                    "status": "unhealthy",
                    "service": "cart-shell",
                    "producer": "failed",
                    "details": error,
                }),
            );
        }
        match self.producer.ping(Duration::from_secs(2)).await {
            Ok(()) => json(
                StatusCode::OK,
                &json!({"status": "healthy", "service": "cart-shell"}),
            ),
            Err(error) => json(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({
                    "status": "unhealthy",
                    "service": "cart-shell",
                    "broker": "unavailable",
                    "details": error.to_string(),
                }),
            ),
        }
    }
}

fn invalid(error: ordering_core::order::ValidationError) -> ApiError {
    ApiError::bad_request(error.to_string())
}

/// Nothing was published, whatever the reason: the client may try again.
fn unpublished(error: SinkError) -> ApiError {
    tracing::warn!(%error, "publish failed");
    ApiError::unavailable(format!("the event was not published: {error}"))
}
