//! cart-shell as a library: the service, its routing table and its HTTP translation, built
//! from any sinks and broker check (Kafka in `main.rs`, in-memory ones in the route tests).
//! It answers `201`/`202` only once the sink has the event (for Kafka: acks=all). A create
//! with an `Idempotency-Key` is done once per key: its order is stored before it is
//! published and its answer replayed to every retry (`cart_shell::idempotency`).
//!
//! Endpoints: [`ROUTES`], documented in `docs/openapi.yaml`.

pub mod idempotency;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::idempotency::{
    Begin, Fingerprint, IdempotencyError, IdempotencyKey, IdempotencyStore, Policy,
    REPLAYED_HEADER, Settled,
};
use async_trait::async_trait;
use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use ordering_core::order::{
    NumItems, Order, OrderId, Status, StatusUpdate, ValidationError, generate_order, parse_reason,
};
use ordering_core::{Sink, SinkError, now_iso8601};
use ordering_http::body::{required, text, whole_number};
use ordering_http::cached::Cached;
use ordering_http::env::{Env, EnvError};
use ordering_http::metrics::Metrics;
use ordering_http::openapi::{OpenApi, OpenApiError};
use ordering_http::registry::{RegistryArgs, RegistrySettings, until_answered};
use ordering_http::router::{Route, Routes};
use ordering_http::security::{redacted_url, secret};
use ordering_http::settings::{
    KafkaArgs, KafkaSettings, ServiceArgs, TopicRole, avro_codec, distinct_topics, listen_addr,
    max_connections,
};
use ordering_http::{ApiError, HttpRequest, Response, json, json_bytes, read_typed};
use ordering_kafka::order::{AvroCodec, SchemaFamily};
use ordering_kafka::{KafkaProducer, ProducerConfig, WireFormat};
use ordering_store::{PostgresUrl, StoreUrl};
use serde::Deserialize;
use serde_json::json;
use tracing::Instrument;

/// The service's name, in logs, health answers and the OpenAPI tags.
pub const SERVICE: &str = "cart-shell";

/// Where this shell's operations are documented: the repository's `docs/openapi.yaml`.
pub const API: ordering_http::openapi::Documented = ordering_http::openapi::Documented {
    document: include_str!("../../docs/openapi.yaml"),
    service: SERVICE,
};

/// Request bodies above this get `413`.
const BODY_LIMIT: usize = 64 * 1024;

/// How long `/health` waits for the broker.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// How often `/health` asks the broker, at most.
const PROBE_PERIOD: Duration = Duration::from_secs(1);

/// `IDEMPOTENCY_DB`'s default.
const IDEMPOTENCY_DB: &str = "data/cart-idempotency.db";

/// `IDEMPOTENCY_KEY_TTL`'s default: 24 h.
const IDEMPOTENCY_KEY_TTL: Duration = Duration::from_secs(24 * 3600);

/// `IDEMPOTENCY_MAX_KEYS`'s default.
const IDEMPOTENCY_MAX_KEYS: usize = 100_000;

/// Added to a keyed create's lease for the store's writes and scheduling.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// `PUBLISH_MAX_IN_FLIGHT`'s default: below the 1 024 connections served at once, so that a
/// flood waits for (and is shed at) the broker's pace rather than all piling into librdkafka.
const PUBLISH_MAX_IN_FLIGHT: usize = 256;

/// `PUBLISH_QUEUE_WAIT_MS`'s default. A publish normally starts at once and is acknowledged in
/// a few ms; at the ~5 000 acknowledgements/s of BENCHMARKS.md, 250 ms drains every request the
/// served connections can hold, so only a broker that cannot keep up sheds, and the client
/// hears "not now" long before the delivery timeout (5 s).
const PUBLISH_QUEUE_WAIT_MS: u64 = 250;

/// `Retry-After` of a shed request: the shortest the header can say. A publish that found no
/// room waited at most `PUBLISH_QUEUE_WAIT_MS`, so the flood is measured in those, not in
/// seconds.
const OVERLOADED_RETRY_AFTER: Duration = Duration::from_secs(1);

/// cart-shell: takes orders and status updates over HTTP and publishes them to Kafka as Avro
/// events. Every setting is a flag or an environment variable; a flag wins.
#[derive(Debug, clap::Parser)]
#[command(name = "cart-shell", version, after_help = ordering_http::env::CART_ENVIRONMENT_ONLY_HELP)]
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
    /// The SQLite file of the Idempotency-Key store (created, with its directory), for one
    /// instance [default: data/cart-idempotency.db]
    #[arg(long, env)]
    pub idempotency_db: Option<String>,
    /// Where Idempotency-Keys are kept, shared by every instance: postgres://USER@HOST/DB
    /// (sslmode and sslrootcert as libpq spells them), or sqlite://PATH; instead of
    /// IDEMPOTENCY_DB
    #[arg(long, env)]
    pub idempotency_store_url: Option<String>,
    /// How long an Idempotency-Key is remembered after its first request (e.g. 24h, 90m)
    #[arg(long, env, default_value = "24h")]
    pub idempotency_key_ttl: Option<String>,
    /// Most Idempotency-Keys remembered; beyond, the oldest finished ones are forgotten
    #[arg(long, env, default_value = "100000")]
    pub idempotency_max_keys: Option<String>,
    /// Publishes sent to the broker and not yet acknowledged, at most; beyond, a request waits
    /// its turn (PUBLISH_QUEUE_WAIT_MS)
    #[arg(long, env, default_value = "256")]
    pub publish_max_in_flight: Option<String>,
    /// The longest a request waits for its publish to start, in milliseconds; past it (or
    /// with the producer's queue full) the answer is 503 with Retry-After, nothing published
    #[arg(long, env, default_value = "250")]
    pub publish_queue_wait_ms: Option<String>,
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
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
    /// `AVRO_WIRE_FORMAT` and the `SCHEMA_REGISTRY_*` settings.
    pub registry: RegistrySettings,
    pub idempotency: IdempotencySettings,
    pub publish: PublishSettings,
    /// `TLS_CERT_FILE` and `TLS_KEY_FILE`: HTTPS only; `None`: plain HTTP.
    pub https: Option<ordering_http::tls::Https>,
}

/// How much publishing may be under way before requests are shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishSettings {
    /// `PUBLISH_MAX_IN_FLIGHT`, default 256: publishes sent and not yet acknowledged.
    pub max_in_flight: usize,
    /// `PUBLISH_QUEUE_WAIT_MS`, default 250: how long a request waits for its publish to
    /// start before it is answered `503`.
    pub queue_wait: Duration,
}

impl PublishSettings {
    pub fn from_env(env: &Env) -> Result<Self, EnvError> {
        let max_in_flight = env.check("PUBLISH_MAX_IN_FLIGHT", PUBLISH_MAX_IN_FLIGHT, |n| {
            if *n > 0 {
                Ok(())
            } else {
                Err("must be greater than 0".into())
            }
        })?;
        // 0 is allowed: a request is shed whenever every publish slot is taken.
        let queue_wait = env.get("PUBLISH_QUEUE_WAIT_MS", PUBLISH_QUEUE_WAIT_MS)?;
        Ok(Self {
            max_in_flight,
            queue_wait: Duration::from_millis(queue_wait),
        })
    }

    /// Sets `config` to shed load by these settings.
    pub fn apply(&self, config: &mut ProducerConfig) {
        config.max_in_flight = Some(self.max_in_flight);
        config.queue_wait = self.queue_wait;
    }
}

/// Where `Idempotency-Key`s are kept and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencySettings {
    pub store: KeyStore,
    /// `IDEMPOTENCY_KEY_TTL` (humantime: `24h`, `90m`), default 24 h.
    pub ttl: Duration,
    /// `IDEMPOTENCY_MAX_KEYS`, default 100 000.
    pub max_keys: usize,
}

/// The store of the keys: a SQLite file of this instance, or a PostgreSQL database every
/// instance shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStore {
    /// `IDEMPOTENCY_DB`, default `data/cart-idempotency.db`.
    Sqlite(PathBuf),
    /// `IDEMPOTENCY_STORE_URL=sqlite://PATH`.
    SqliteUrl(PathBuf),
    /// `IDEMPOTENCY_STORE_URL=postgres://…`, with the password of
    /// `IDEMPOTENCY_STORE_PASSWORD_FILE` if set.
    Postgres(Box<PostgresUrl>),
}

impl KeyStore {
    /// The setting that chose the store, for messages.
    fn setting(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "IDEMPOTENCY_DB",
            Self::SqliteUrl(_) | Self::Postgres(_) => "IDEMPOTENCY_STORE_URL",
        }
    }

    /// Where the keys are, without secrets.
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(path) => path.display().to_string(),
            Self::SqliteUrl(path) => format!("sqlite://{}", path.display()),
            Self::Postgres(url) => url.describe(),
        }
    }

    fn from_env(env: &Env) -> Result<Self, EnvError> {
        let db = env.text("IDEMPOTENCY_DB", "");
        let raw = env.text("IDEMPOTENCY_STORE_URL", "");
        let password = secret(env, None, "IDEMPOTENCY_STORE_PASSWORD_FILE")?;
        if raw.is_empty() {
            if password.is_some() {
                return Err(EnvError {
                    name: "IDEMPOTENCY_STORE_PASSWORD_FILE",
                    value: env.text("IDEMPOTENCY_STORE_PASSWORD_FILE", ""),
                    reason: "is for a postgres:// IDEMPOTENCY_STORE_URL, which is not set".into(),
                });
            }
            let path = if db.is_empty() { IDEMPOTENCY_DB } else { &db };
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        let invalid = |reason: String| EnvError {
            name: "IDEMPOTENCY_STORE_URL",
            value: redacted_url(&raw),
            reason,
        };
        if !db.is_empty() {
            return Err(invalid(format!(
                "and IDEMPOTENCY_DB={db:?} both say where the keys are; set one"
            )));
        }
        let mut url = match StoreUrl::parse(&raw) {
            Ok(StoreUrl::Sqlite(path)) => return Ok(Self::SqliteUrl(path)),
            Ok(StoreUrl::Postgres(url)) => url,
            Ok(_) => {
                return Err(invalid(
                    "keys must survive a restart: use postgres://… (shared by every instance) or sqlite://PATH".into(),
                ));
            }
            Err(error) => return Err(invalid(error.to_string())),
        };
        if let Some(password) = password {
            url = Box::new(url.with_password(&password).map_err(|error| EnvError {
                name: "IDEMPOTENCY_STORE_PASSWORD_FILE",
                value: env.text("IDEMPOTENCY_STORE_PASSWORD_FILE", ""),
                reason: error.to_string(),
            })?);
        }
        Ok(Self::Postgres(url))
    }
}

impl IdempotencySettings {
    pub fn from_env(env: &Env) -> Result<Self, EnvError> {
        let ttl: humantime::Duration = env.check(
            "IDEMPOTENCY_KEY_TTL",
            IDEMPOTENCY_KEY_TTL.into(),
            |ttl: &humantime::Duration| {
                if ttl.is_zero() {
                    Err("must be longer than 0 (e.g. 24h)".into())
                } else {
                    Ok(())
                }
            },
        )?;
        Ok(Self {
            store: KeyStore::from_env(env)?,
            ttl: ttl.into(),
            max_keys: env.check("IDEMPOTENCY_MAX_KEYS", IDEMPOTENCY_MAX_KEYS, |n| {
                if *n > 0 {
                    Ok(())
                } else {
                    Err("must be greater than 0".into())
                }
            })?,
        })
    }

    /// The store's policy, for a producer whose publish waits at most `delivery_timeout`.
    pub fn policy(&self, delivery_timeout: Duration) -> Policy {
        Policy {
            ttl: self.ttl,
            max_keys: self.max_keys,
            lease: lease(delivery_timeout),
        }
    }

    /// Opens the store. A PostgreSQL server that is not up yet is waited for (a request
    /// cannot be answered without its keys); anything a person must fix is an error naming
    /// the setting.
    pub async fn open(&self, delivery_timeout: Duration) -> Result<IdempotencyStore, EnvError> {
        let policy = self.policy(delivery_timeout);
        let open = || async move {
            match &self.store {
                KeyStore::Sqlite(path) | KeyStore::SqliteUrl(path) => {
                    IdempotencyStore::open(path, policy)
                }
                KeyStore::Postgres(url) => IdempotencyStore::open_postgres(url, policy).await,
            }
        };
        let place = self.store.describe();
        ordering_http::wait::open_when_up("idempotency store", &place, open, |e| {
            IdempotencyError::is_retryable(e)
        })
        .await
        .map_err(|error| EnvError {
            name: self.store.setting(),
            value: place.clone(),
            reason: format!("{error}{}", key_store_hint(&error)),
        })
    }
}

/// What to look at when the key store refuses the service.
fn key_store_hint(error: &IdempotencyError) -> &'static str {
    use ordering_store::{OpenError, Refusal};
    match error {
        IdempotencyError::PostgresOpen(OpenError::Refused(Refusal::Authentication(_))) => {
            "; check the user in IDEMPOTENCY_STORE_URL and its password (IDEMPOTENCY_STORE_PASSWORD_FILE)"
        }
        IdempotencyError::PostgresOpen(OpenError::Refused(_)) => {
            "; check sslmode and sslrootcert in IDEMPOTENCY_STORE_URL"
        }
        _ => "",
    }
}

/// How long a keyed create holds its key. librdkafka may wait the delivery timeout for room
/// in its queue and then again for the acknowledgement, hence twice, plus a margin.
pub fn lease(delivery_timeout: Duration) -> Duration {
    delivery_timeout
        .saturating_mul(2)
        .saturating_add(LEASE_MARGIN)
}

impl Settings {
    /// Reads and checks every setting; an error names the variable.
    pub fn from_env(env: &Env) -> Result<Self, EnvError> {
        let order_topic = env.text("KAFKA_TOPIC", "order-events");
        let status_topic = env.text("KAFKA_STATUS_UPDATE_TOPIC", "order-status-updates");
        distinct_topics(&[
            ("KAFKA_TOPIC", &order_topic, TopicRole::Records),
            (
                "KAFKA_STATUS_UPDATE_TOPIC",
                &status_topic,
                TopicRole::Records,
            ),
        ])?;
        Ok(Self {
            kafka: KafkaSettings::from_env(env)?,
            order_topic,
            status_topic,
            listen: listen_addr(env, 8000)?,
            max_connections: max_connections(env)?,
            codec: avro_codec(
                env,
                &[
                    (SchemaFamily::Order, "AVRO_ORDER_VERSION"),
                    (SchemaFamily::StatusUpdate, "AVRO_STATUS_UPDATE_VERSION"),
                ],
            )?,
            registry: RegistrySettings::from_env(env)?,
            idempotency: IdempotencySettings::from_env(env)?,
            publish: PublishSettings::from_env(env)?,
            https: ordering_http::tls::https(env)?,
        })
    }
}

/// The codec cart-shell writes with. With `AVRO_WIRE_FORMAT=confluent`, orders and status
/// updates go out in the registry's framing, under the ids of their topics' subjects: looked
/// up (or registered, if allowed) now, once, waiting while the registry does not answer. A
/// schema the registry does not have, or refuses, stops the start naming the subject.
pub async fn writing_codec(
    codec: AvroCodec,
    registry: &RegistrySettings,
    order_topic: &str,
    status_topic: &str,
) -> Result<AvroCodec, String> {
    let Some(client) = registry.connect().map_err(|e| e.to_string())? else {
        return Ok(codec);
    };
    let codec = codec.reading_registry(client);
    if registry.wire_format != WireFormat::Confluent {
        return Ok(codec);
    }
    let mut codec = codec;
    for (family, topic) in [
        (SchemaFamily::Order, order_topic),
        (SchemaFamily::StatusUpdate, status_topic),
    ] {
        codec = until_answered("looking up the schemas cart-shell writes", || {
            codec.write_registered(client, family, topic)
        })
        .await
        .map_err(|e| format!("AVRO_WIRE_FORMAT=confluent: {e}"))?;
    }
    Ok(codec)
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

/// The producer as `/health` sees it: the brokers answer for the order topic's metadata (not
/// every topic's: a cluster may hold thousands).
#[derive(Debug)]
pub struct ProducerHealth {
    producer: KafkaProducer,
    topic: String,
}

impl ProducerHealth {
    pub fn new(producer: KafkaProducer, topic: &str) -> Self {
        Self {
            producer,
            topic: topic.to_owned(),
        }
    }
}

#[async_trait]
impl Broker for ProducerHealth {
    fn fatal_error(&self) -> Option<String> {
        self.producer.fatal_error()
    }

    async fn ping(&self, timeout: Duration) -> Result<(), String> {
        self.producer
            .ping_topic(&self.topic, timeout)
            .await
            .map_err(|e| ordering_http::security::kafka_problem(&e))
    }
}

/// The service.
pub struct Cart {
    orders: Arc<dyn Sink<Order>>,
    updates: Arc<dyn Sink<StatusUpdate>>,
    broker: Arc<dyn Broker>,
    keys: IdempotencyStore,
    /// The broker's answer, asked at most once a second whatever the rate of `/health`.
    probe: Cached<Result<(), String>>,
    /// Keyed creates at work, which outlive a client that hung up: a turn each.
    keyed_creates: Arc<tokio::sync::Semaphore>,
    metrics: Metrics,
    openapi: OpenApi,
}

impl std::fmt::Debug for Cart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cart").finish_non_exhaustive()
    }
}

impl Cart {
    /// Orders go to `orders`, status updates to `updates`; `Idempotency-Key`s are kept in
    /// `keys`.
    pub fn new(
        orders: Arc<dyn Sink<Order>>,
        updates: Arc<dyn Sink<StatusUpdate>>,
        broker: Arc<dyn Broker>,
        keys: IdempotencyStore,
        metrics: Metrics,
    ) -> Result<Self, OpenApiError> {
        Ok(Self {
            orders,
            updates,
            broker,
            keys,
            probe: Cached::new(PROBE_PERIOD),
            keyed_creates: Arc::new(tokio::sync::Semaphore::new(ordering_http::MAX_CONNECTIONS)),
            metrics,
            openapi: OpenApi::for_service(API)?,
        })
    }

    /// At most `limit` keyed creates at work at once (default 1 024, the connections served
    /// at once); beyond, a keyed create is answered `503` with nothing done. A keyed create
    /// runs to its end even when its client hangs up, so the connection limit alone does not
    /// bound them.
    pub fn with_keyed_create_limit(mut self, limit: usize) -> Self {
        self.keyed_creates = Arc::new(tokio::sync::Semaphore::new(limit.max(1)));
        self
    }

    /// Serves on `listener` until `shutdown` completes, then lets requests in flight finish.
    pub async fn serve(
        self: Arc<Self>,
        listener: impl Into<ordering_http::Listener>,
        max_connections: usize,
        shutdown: impl Future<Output = ()>,
    ) {
        ordering_http::serve(
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
        let key = IdempotencyKey::from_headers(request.headers())
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let body: CreateOrder = read_typed(request, BODY_LIMIT).await?;
        let id = OrderId::parse(&required(body.order_id, "orderId")?).map_err(invalid)?;
        let num_items = NumItems::new(required(body.num_items, "numItems")?).map_err(invalid)?;
        // The typed, trimmed request: what makes two requests with one key the same one.
        let fingerprint = Fingerprint::of(&[
            b"POST /api/create-order",
            id.as_str().as_bytes(),
            &num_items.get().to_be_bytes(),
        ]);
        let order = generate_order(id, num_items, now_iso8601(), &mut rand::rng());
        let Some(key) = key else {
            self.orders.publish(&order).await.map_err(unpublished)?;
            return Ok(json(StatusCode::CREATED, &created(&order)));
        };
        let Ok(turn) = self.keyed_creates.clone().try_acquire_owned() else {
            return Err(ApiError::overloaded(
                "too many keyed creates in progress; nothing was done, try again",
                OVERLOADED_RETRY_AFTER,
            ));
        };
        // In a task of its own: a client that hangs up must not cancel it between storing the
        // key and settling it, which would leave the key in flight until its lease ends.
        let once = create_once(
            self.orders.clone(),
            self.keys.clone(),
            key,
            fingerprint,
            order,
        );
        // In the request's span: the publish stays in the client's trace.
        let once = async move {
            let answer = once.await;
            drop(turn);
            answer
        };
        tokio::spawn(once.in_current_span()).await.map_err(|e| {
            ApiError::internal(format!("the create stopped before it was answered: {e}"))
        })?
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
        match self.probe.get(|| self.broker.ping(HEALTH_TIMEOUT)).await {
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

/// A create with an `Idempotency-Key`: the order is stored with the key before it is
/// published, and the answer after, so every retry gets the first order.
async fn create_once(
    orders: Arc<dyn Sink<Order>>,
    keys: IdempotencyStore,
    key: IdempotencyKey,
    fingerprint: Fingerprint,
    order: Order,
) -> Result<Response, ApiError> {
    let payload = serde_json::to_string(&order).map_err(|e| {
        keys_failed(IdempotencyError::Corrupt(format!(
            "the order cannot be written as JSON: {e}"
        )))
    })?;
    let began = Instant::now();
    let begin = keys
        .begin(key, fingerprint, payload, SystemTime::now())
        .await
        .map_err(keys_failed)?;
    let claim = match begin {
        Begin::Fresh(claim) => claim,
        Begin::Resume(claim) => {
            tracing::info!(key = %claim.key(), "publishing the stored order of an earlier attempt again");
            claim
        }
        Begin::Replay(replay) => {
            let mut response = json_bytes(replay.status, replay.body);
            response
                .headers_mut()
                .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
            return Ok(response);
        }
        Begin::Mismatch => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Idempotency key reused",
                "this Idempotency-Key was sent with another request (orderId, numItems); \
                 use a new key for a new request",
            ));
        }
        Begin::InFlight { retry_after } => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "Request in progress",
                "a request with this Idempotency-Key is still being published; \
                 retry once it is answered",
            )
            .with_retry_after(retry_after));
        }
        Begin::Full {
            retry_after,
            in_flight,
            failed,
        } => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Idempotency-Key store full",
                format!(
                    "the store holds IDEMPOTENCY_MAX_KEYS keys and none is answered yet: \
                     {in_flight} in flight, {failed} failed and kept until they expire so \
                     that their retries publish the same order; nothing was done, try again \
                     when the first frees its room (Retry-After)"
                ),
            )
            .with_retry_after(retry_after));
        }
    };
    // The stored order, read back: what is published is exactly what a retry would publish.
    let order: Order = match serde_json::from_str(claim.payload()) {
        Ok(order) => order,
        Err(error) => {
            tracing::error!(key = %claim.key(), %error, "a stored order does not read back");
            let _ = keys.fail(claim).await;
            return Err(keys_failed(IdempotencyError::Corrupt(error.to_string())));
        }
    };
    // Bounded by what is left of the lease (it began before the store answered): past it a
    // retry may take the key over, and a late outcome of this attempt is dropped
    // (`Settled::Superseded`).
    let bound = keys.policy().lease.saturating_sub(began.elapsed());
    let published = match tokio::time::timeout(bound, orders.publish(&order)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error @ SinkError::Overloaded(_))) => Err(Unpublished::Shed(unpublished(error))),
        Ok(Err(error)) => Err(Unpublished::Failed(unpublished(error))),
        Err(_) => Err(Unpublished::Failed(ApiError::broker_unavailable(format!(
            "the event was not acknowledged within {bound:?}"
        )))),
    };
    let body = Bytes::from(created(&order).to_string());
    let settled = match &published {
        Ok(()) => keys.finish(claim, StatusCode::CREATED, body.clone()).await,
        // A shed publish surely sent nothing: the key need not be kept for its retry.
        Err(Unpublished::Shed(_)) => keys.release(claim).await,
        Err(Unpublished::Failed(_)) => keys.fail(claim).await,
    };
    match settled {
        Ok(Settled::Recorded) => {}
        // The order is published either way: a retry after the lease publishes the same
        // order again, which the consumer takes as already applied.
        Ok(Settled::Superseded) => {
            tracing::warn!(order = %order.order_id, "a later attempt took this key over");
        }
        Err(error) => {
            tracing::warn!(order = %order.order_id, %error, "the outcome of a keyed create was not recorded");
        }
    }
    match published {
        Ok(()) => Ok(json_bytes(StatusCode::CREATED, body)),
        Err(Unpublished::Shed(error) | Unpublished::Failed(error)) => Err(error),
    }
}

/// Why a keyed create's order was not published, as its key must remember it.
enum Unpublished {
    /// Shed before it was sent (`SinkError::Overloaded`): surely nothing went out.
    Shed(ApiError),
    /// Failed or timed out: it may have gone out after all.
    Failed(ApiError),
}

/// The body of a `201` to a create.
fn created(order: &Order) -> serde_json::Value {
    json!({
        "success": true,
        "message": format!("Order '{}' created and published.", order.order_id),
        "data": order,
    })
}

/// The key store failed: nothing was published.
fn keys_failed(error: IdempotencyError) -> ApiError {
    tracing::warn!(%error, "the idempotency store failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "Idempotency store unavailable",
        format!("nothing was published: {error}"),
    )
}

fn invalid(error: ValidationError) -> ApiError {
    ApiError::bad_request(error.to_string())
}

/// Nothing was published, whatever the reason: the client may try again (soon, if the
/// sink is only overloaded).
fn unpublished(error: SinkError) -> ApiError {
    if matches!(error, SinkError::Overloaded(_)) {
        // Expected under a flood, one per shed request: not worth a warning each.
        tracing::debug!(%error, "publish shed");
        return ApiError::overloaded(
            format!("publishing cannot keep up; nothing was published, try again: {error}"),
            OVERLOADED_RETRY_AFTER,
        );
    }
    tracing::warn!(%error, "publish failed");
    ApiError::broker_unavailable(format!("the event was not published: {error}"))
}
