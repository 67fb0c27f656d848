//! cart-shell as a library: the service, its routing table and its HTTP translation, built
//! from any sinks and broker check (Kafka in `main.rs`, in-memory ones in the route tests).
//! It answers `201`/`202` only once the sink has the event (for Kafka: acks=all).
//!
//! Endpoints: [`ROUTES`], documented in `docs/openapi.yaml`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hyper::{Method, StatusCode};
use ordering_core::order::{
    NumItems, Order, OrderId, Status, StatusUpdate, ValidationError, generate_order, parse_reason,
};
use ordering_core::{Sink, SinkError, now_iso8601};
use ordering_kafka::{AvroCodec, KafkaProducer, SchemaFamily};
use serde::Deserialize;
use serde_json::json;
use shell_http::body::{required, text, whole_number};
use shell_http::env::{Env, EnvError};
use shell_http::metrics::Metrics;
use shell_http::openapi::{OpenApi, OpenApiError};
use shell_http::router::{Route, Routes};
use shell_http::settings::{
    KafkaArgs, KafkaSettings, ServiceArgs, avro_codec, listen_addr, max_connections,
};
use shell_http::{ApiError, HttpRequest, Response, json, read_typed};
use tokio::net::TcpListener;

/// The service's name, in logs, health answers and the OpenAPI tags.
pub const SERVICE: &str = "cart-shell";

/// Request bodies above this get `413`.
const BODY_LIMIT: usize = 64 * 1024;

/// How long `/health` waits for the broker.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// cart-shell: takes orders and status updates over HTTP and publishes them to Kafka as Avro
/// events. Every setting is a flag or an environment variable; a flag wins.
#[derive(Debug, clap::Parser)]
#[command(name = "cart-shell", version)]
pub struct Cli {
    /// Port to listen on
    #[arg(long, env, default_value = "8000")]
    pub api_port: Option<String>,
    /// The published version of the order schema to write instead of the newest, while
    /// readers are upgraded (README, "Changing a schema")
    #[arg(long, env)]
    pub avro_order_version: Option<String>,
    /// The published version of the status-update schema to write instead of the newest
    #[arg(long, env)]
    pub avro_status_update_version: Option<String>,
    /// Topic of the order events
    #[arg(long, env, default_value = "order-events")]
    pub kafka_topic: Option<String>,
    /// Topic of the status updates
    #[arg(long, env, default_value = "order-status-updates")]
    pub kafka_status_update_topic: Option<String>,
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// cart-shell's settings, checked.
#[derive(Debug)]
pub struct Settings {
    pub kafka: KafkaSettings,
    /// `KAFKA_TOPIC`: where orders are published.
    pub order_topic: String,
    /// `KAFKA_STATUS_UPDATE_TOPIC`: where status updates are published.
    pub status_topic: String,
    pub listen: SocketAddr,
    pub max_connections: usize,
    pub codec: AvroCodec,
}

impl Settings {
    /// Reads and checks every setting; an error names the variable.
    pub fn from_env(env: &Env) -> Result<Self, EnvError> {
        Ok(Self {
            kafka: KafkaSettings::from_env(env)?,
            order_topic: env.text("KAFKA_TOPIC", "order-events"),
            status_topic: env.text("KAFKA_STATUS_UPDATE_TOPIC", "order-status-updates"),
            listen: listen_addr(env, 8000)?,
            max_connections: max_connections(env)?,
            codec: avro_codec(
                env,
                &[
                    (SchemaFamily::Order, "AVRO_ORDER_VERSION"),
                    (SchemaFamily::StatusUpdate, "AVRO_STATUS_UPDATE_VERSION"),
                ],
            )?,
        })
    }
}

/// The body of `POST /api/create-order`. Fields are optional here so that a missing one is
/// `400` "orderId is required" rather than serde's wording; other fields are ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateOrder {
    #[serde(default, deserialize_with = "text")]
    order_id: Option<String>,
    #[serde(default, deserialize_with = "whole_number")]
    num_items: Option<i64>,
}

/// The body of `PUT /api/update-order`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateOrder {
    #[serde(default, deserialize_with = "text")]
    order_id: Option<String>,
    #[serde(default, deserialize_with = "text")]
    status: Option<String>,
    #[serde(default, deserialize_with = "text")]
    reason: Option<String>,
}

/// What serves a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    CreateOrder,
    UpdateOrder,
    Health,
    Metrics,
    OpenApi,
}

/// Every endpoint, once.
pub static ROUTES: Routes<Endpoint> = Routes(&[
    Route::new(Method::POST, "/api/create-order", Endpoint::CreateOrder),
    Route::new(Method::PUT, "/api/update-order", Endpoint::UpdateOrder),
    Route::new(Method::GET, "/health", Endpoint::Health),
    Route::new(Method::GET, "/metrics", Endpoint::Metrics),
    Route::new(Method::GET, "/openapi.json", Endpoint::OpenApi),
]);

/// What `/health` asks of the connection to the broker.
#[async_trait]
pub trait Broker: Send + Sync {
    /// A failure that will not go away (librdkafka's fatal state), if there is one.
    fn fatal_error(&self) -> Option<String>;

    /// Whether the broker answers within `timeout`.
    async fn ping(&self, timeout: Duration) -> Result<(), String>;
}

#[async_trait]
impl Broker for KafkaProducer {
    fn fatal_error(&self) -> Option<String> {
        KafkaProducer::fatal_error(self)
    }

    async fn ping(&self, timeout: Duration) -> Result<(), String> {
        KafkaProducer::ping(self, timeout)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The service.
pub struct Cart {
    orders: Arc<dyn Sink<Order>>,
    updates: Arc<dyn Sink<StatusUpdate>>,
    broker: Arc<dyn Broker>,
    metrics: Metrics,
    openapi: OpenApi,
}

impl std::fmt::Debug for Cart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cart").finish_non_exhaustive()
    }
}

impl Cart {
    /// Orders go to `orders`, status updates to `updates`.
    pub fn new(
        orders: Arc<dyn Sink<Order>>,
        updates: Arc<dyn Sink<StatusUpdate>>,
        broker: Arc<dyn Broker>,
        metrics: Metrics,
    ) -> Result<Self, OpenApiError> {
        Ok(Self {
            orders,
            updates,
            broker,
            metrics,
            openapi: OpenApi::for_service(SERVICE)?,
        })
    }

    /// Serves on `listener` until `shutdown` completes, then lets requests in flight finish.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        max_connections: usize,
        shutdown: impl Future<Output = ()>,
    ) {
        shell_http::serve(
            listener,
            max_connections,
            |path| ROUTES.label(path),
            move |request| {
                let cart = self.clone();
                async move { cart.handle(request).await }
            },
            shutdown,
        )
        .await;
    }

    /// Answers one request.
    pub async fn handle(&self, request: HttpRequest) -> Response {
        let endpoint = match ROUTES.find(request.method(), request.uri().path()) {
            Ok(endpoint) => endpoint,
            Err(unrouted) => return unrouted.into_response(),
        };
        let result = match endpoint {
            Endpoint::CreateOrder => self.create_order(request).await,
            Endpoint::UpdateOrder => self.update_order(request).await,
            Endpoint::Health => Ok(self.health().await),
            Endpoint::Metrics => Ok(self.metrics.response()),
            Endpoint::OpenApi => Ok(self.openapi.response()),
        };
        result.unwrap_or_else(ApiError::into_response)
    }

    async fn create_order(&self, request: HttpRequest) -> Result<Response, ApiError> {
        let body: CreateOrder = read_typed(request, BODY_LIMIT).await?;
        let id = OrderId::parse(&required(body.order_id, "orderId")?).map_err(invalid)?;
        let num_items = NumItems::new(required(body.num_items, "numItems")?).map_err(invalid)?;
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
        let body: UpdateOrder = read_typed(request, BODY_LIMIT).await?;
        let id = OrderId::parse(&required(body.order_id, "orderId")?).map_err(invalid)?;
        let status = Status::parse(&required(body.status, "status")?).map_err(invalid)?;
        let reason = parse_reason(body.reason.as_deref()).map_err(invalid)?;
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
        if let Some(error) = self.broker.fatal_error() {
            return json(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({
                    "status": "unhealthy",
                    "service": SERVICE,
                    "producer": "failed",
                    "details": error,
                }),
            );
        }
        match self.broker.ping(HEALTH_TIMEOUT).await {
            Ok(()) => json(
                StatusCode::OK,
                &json!({"status": "healthy", "service": SERVICE}),
            ),
            Err(error) => json(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({
                    "status": "unhealthy",
                    "service": SERVICE,
                    "broker": "unavailable",
                    "details": error,
                }),
            ),
        }
    }
}

fn invalid(error: ValidationError) -> ApiError {
    ApiError::bad_request(error.to_string())
}

/// Nothing was published, whatever the reason: the client may try again.
fn unpublished(error: SinkError) -> ApiError {
    tracing::warn!(%error, "publish failed");
    ApiError::unavailable(format!("the event was not published: {error}"))
}
