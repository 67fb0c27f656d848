//! cart-shell's routes in-process: the service from `lib.rs` on in-memory sinks and a broker
//! check the test controls, served on a local port. No broker, no child process: routing,
//! validation, error bodies, health, `Idempotency-Key`s and the OpenAPI document. The real
//! flow is in `api.rs`.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cart_shell::idempotency::{IdempotencyStore, Policy};
use cart_shell::{API, Broker, Cart, ROUTES};
use ordering_core::order::{Order, StatusUpdate};
use ordering_core::testing::MemorySink;
use ordering_core::{Sink, SinkError};
use ordering_http::metrics::Metrics;
use ordering_http::testing::{Reply, call, call_documented, check_openapi, get};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};

/// A broker whose health the test sets.
#[derive(Default)]
struct FakeBroker {
    down: AtomicBool,
    fatal: std::sync::Mutex<Option<String>>,
}

#[async_trait]
impl Broker for FakeBroker {
    fn fatal_error(&self) -> Option<String> {
        self.fatal.lock().unwrap().clone()
    }

    async fn ping(&self, _timeout: Duration) -> Result<(), String> {
        if self.down.load(Ordering::SeqCst) {
            Err("no broker answered".into())
        } else {
            Ok(())
        }
    }
}

/// The cart's order sink: a [`MemorySink`] behind a gate the test can hold shut, which also
/// keeps every order it was handed (failed publishes included).
#[derive(Clone, Default)]
struct GatedSink {
    inner: MemorySink<Order>,
    handed: Arc<Mutex<Vec<Order>>>,
    hold: Arc<AtomicBool>,
    entered: Arc<Notify>,
    release: Arc<Notify>,
}

impl GatedSink {
    /// Publishes wait at the gate from now on, until [`release`](Self::release).
    fn hold(&self) {
        self.hold.store(true, Ordering::SeqCst);
    }

    /// Waits until a publish is waiting at the gate.
    async fn entered(&self) {
        tokio::time::timeout(Duration::from_secs(10), self.entered.notified())
            .await
            .expect("a publish reached the gate");
    }

    /// Lets one waiting publish through, and the next ones straight away.
    fn release(&self) {
        self.hold.store(false, Ordering::SeqCst);
        self.release.notify_one();
    }

    fn handed(&self) -> Vec<Order> {
        self.handed.lock().unwrap().clone()
    }
}

#[async_trait]
impl Sink<Order> for GatedSink {
    async fn publish(&self, order: &Order) -> Result<(), SinkError> {
        self.handed.lock().unwrap().push(order.clone());
        if self.hold.load(Ordering::SeqCst) {
            self.entered.notify_one();
            self.release.notified().await;
        }
        self.inner.publish(order).await
    }

    async fn flush(&self) -> Result<(), SinkError> {
        self.inner.flush().await
    }
}

struct Served {
    base: String,
    orders: MemorySink<Order>,
    gate: GatedSink,
    updates: MemorySink<StatusUpdate>,
    broker: Arc<FakeBroker>,
    _keys: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

impl Served {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A call to one of the routes, whose answer must be documented.
    async fn call(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        call_documented(API, method, &self.base, path, Some(body), &[]).await
    }

    async fn send_json(&self, method: &str, path: &str, body: &serde_json::Value) -> Reply {
        self.call(method, path, body.to_string().as_bytes()).await
    }

    /// `POST /api/create-order` with `body` as written and `Idempotency-Key: key`.
    async fn create(&self, key: &str, body: &str) -> Reply {
        create(&self.base, key, body).await
    }
}

async fn create(base: &str, key: &str, body: &str) -> Reply {
    let headers = [("Idempotency-Key", key)];
    call_documented(
        API,
        "POST",
        base,
        "/api/create-order",
        Some(body.as_bytes()),
        &headers,
    )
    .await
}

fn replayed(reply: &Reply) -> bool {
    reply
        .headers
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true")
}

fn retry_after(reply: &Reply) -> u64 {
    reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn serve() -> Served {
    serve_with(Policy {
        ttl: Duration::from_secs(3600),
        max_keys: 1000,
        lease: Duration::from_secs(30),
    })
    .await
}

async fn serve_with(policy: Policy) -> Served {
    serve_limited(policy, ordering_http::MAX_CONNECTIONS).await
}

/// A cart with at most `keyed_creates` keyed creates at work at once.
async fn serve_limited(policy: Policy, keyed_creates: usize) -> Served {
    let (gate, updates) = (GatedSink::default(), MemorySink::new());
    let orders = gate.inner.clone();
    let broker = Arc::new(FakeBroker::default());
    let dir = tempfile::tempdir().unwrap();
    let keys = IdempotencyStore::open(&dir.path().join("keys.db"), policy).unwrap();
    let cart = Arc::new(
        Cart::new(
            Arc::new(gate.clone()),
            Arc::new(updates.clone()),
            broker.clone(),
            keys,
            Metrics::detached(),
        )
        .unwrap()
        .with_keyed_create_limit(keyed_creates),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(cart.serve(listener, 64, async {
        let _ = stopped.await;
    }));
    Served {
        base,
        orders,
        gate,
        updates,
        broker,
        _keys: dir,
        _stop: stop,
    }
}

#[tokio::test]
async fn bad_input_gets_a_4xx_that_says_what_is_wrong_and_nothing_is_published() {
    let cart = serve().await;
    let create = "/api/create-order".to_owned();
    let update = "/api/update-order".to_owned();
    let long = "x".repeat(129);
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "POST",
            &create,
            b"{not json".to_vec(),
            400,
            "not valid JSON",
        ),
        (
            "POST",
            &create,
            b"[1, 2]".to_vec(),
            400,
            "must be a JSON object",
        ),
        (
            "POST",
            &create,
            br#"{"numItems": 2}"#.to_vec(),
            400,
            "orderId is required",
        ),
        (
            "POST",
            &create,
            br#"{"orderId": 7, "numItems": 2}"#.to_vec(),
            400,
            "orderId: must be a string, got a number",
        ),
        (
            "POST",
            &create,
            br#"{"orderId": "A"}"#.to_vec(),
            400,
            "numItems is required",
        ),
        (
            "POST",
            &create,
            br#"{"orderId": "A", "numItems": "2"}"#.to_vec(),
            400,
            "numItems: must be a whole number, got a string",
        ),
        (
            "POST",
            &create,
            br#"{"orderId": "A", "numItems": 2.5}"#.to_vec(),
            400,
            "numItems: must be a whole number, got 2.5",
        ),
        (
            "POST",
            &create,
            br#"{"orderId": "A", "numItems": 0}"#.to_vec(),
            400,
            "numItems must be between 1 and 100",
        ),
        (
            "POST",
            &create,
            br#"{"orderId": "A", "numItems": 101}"#.to_vec(),
            400,
            "numItems must be between 1 and 100",
        ),
        (
            "POST",
            &create,
            br#"{"orderId": "  ", "numItems": 1}"#.to_vec(),
            400,
            "orderId must not be empty",
        ),
        (
            "POST",
            &create,
            format!(r#"{{"orderId": "{long}", "numItems": 1}}"#).into_bytes(),
            400,
            "limit is 128",
        ),
        (
            "PUT",
            &update,
            br#"{"orderId": "ORD-001", "status": "   "}"#.to_vec(),
            400,
            "status must not be empty",
        ),
        (
            "PUT",
            &update,
            br#"{"orderId": "ORD-001"}"#.to_vec(),
            400,
            "status is required",
        ),
        (
            "PUT",
            &update,
            br#"{"orderId": "ORD-001", "status": null}"#.to_vec(),
            400,
            "status is required",
        ),
        (
            "PUT",
            &update,
            br#"{"orderId": "ORD-001", "status": ["a"]}"#.to_vec(),
            400,
            "status: must be a string, got an array",
        ),
        (
            "PUT",
            &update,
            format!(r#"{{"orderId": "A", "status": "{}"}}"#, "s".repeat(65)).into_bytes(),
            400,
            "limit is 64",
        ),
        (
            "PUT",
            &update,
            vec![b' '; 70 * 1024],
            413,
            "at most 65536 bytes",
        ),
        ("PUT", &update, Vec::new(), 400, "not valid JSON"),
    ];
    for (method, url, body, status, details) in cases {
        let reply = cart.call(method, url, &body).await;
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        assert_eq!(reply.status, status, "{method} {shown}: {}", reply.text);
        assert_eq!(reply.json["success"], false, "{shown}");
        let got = reply.json["details"].as_str().unwrap_or_default();
        assert!(
            got.contains(details),
            "{shown}: details {got:?} should say {details:?}"
        );
    }

    let reply = get(&cart.url("/api/nothing-here")).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json["success"], false);
    let reply = get(&cart.url(&create)).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.headers["allow"], "POST");
    let reply = call("DELETE", &cart.url("/health"), None).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.headers["allow"], "GET");

    // Still serving, and nothing bad reached the sinks.
    let reply = cart.call("GET", "/health", b"").await;
    assert_eq!(
        reply.json,
        json!({"status": "healthy", "service": "cart-shell"})
    );
    assert_eq!(cart.orders.attempts(), 0);
    assert_eq!(cart.updates.attempts(), 0);
}

#[tokio::test]
async fn good_input_is_published_before_the_answer() {
    let cart = serve().await;
    let reply = cart
        .send_json(
            "POST",
            "/api/create-order",
            &json!({"orderId": " ORD-7 ", "numItems": 3}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let orders = cart.orders.messages();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].order_id.as_str(), "ORD-7");
    assert_eq!(orders[0].items.len(), 3);
    assert_eq!(reply.json["data"]["orderId"], "ORD-7");

    let reply = cart
        .send_json(
            "PUT",
            "/api/update-order",
            &json!({"orderId": "ORD-7", "status": "shipped", "reason": " on its way "}),
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let updates = cart.updates.messages();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].status.as_str(), "shipped");
    assert_eq!(updates[0].reason.as_deref(), Some("on its way"));
    assert_eq!(reply.json["data"]["reason"], "on its way");
}

#[tokio::test]
async fn a_failing_sink_is_503_and_health_says_why() {
    let cart = serve().await;
    cart.updates.set_failing(true);
    let update = json!({"orderId": "ORD-1", "status": "shipped"});
    let reply = cart.send_json("PUT", "/api/update-order", &update).await;
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert!(
        reply.json["details"]
            .as_str()
            .unwrap_or_default()
            .contains("not published"),
        "{}",
        reply.text
    );
    cart.updates.set_failing(false);
    let reply = cart.send_json("PUT", "/api/update-order", &update).await;
    assert_eq!(reply.status, 202);

    cart.broker.down.store(true, Ordering::SeqCst);
    let reply = cart.call("GET", "/health", b"").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json["broker"], "unavailable");
    cart.broker.down.store(false, Ordering::SeqCst);
    *cart.broker.fatal.lock().unwrap() = Some("fenced".into());
    let reply = cart.call("GET", "/health", b"").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json["producer"], "failed");
    assert_eq!(reply.json["details"], "fenced");
}

#[tokio::test]
async fn the_openapi_document_and_the_routes_agree() {
    let cart = serve().await;
    check_openapi(API, &ROUTES, &cart.base).await;
}

#[tokio::test]
async fn a_retry_with_the_same_key_gets_the_first_answer_and_nothing_is_published_again() {
    let cart = serve().await;
    let first = cart
        .create("key-1", r#"{"orderId": "ORD-K", "numItems": 3}"#)
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert!(!replayed(&first));
    assert_eq!(first.json["data"]["items"].as_array().unwrap().len(), 3);
    // The same request written otherwise (field order, whitespace) is the same request.
    let retry = cart
        .create("key-1", r#"{ "numItems": 3, "orderId": "  ORD-K " }"#)
        .await;
    assert_eq!(retry.status, 201, "{}", retry.text);
    assert!(replayed(&retry));
    assert_eq!(retry.text, first.text, "byte for byte");
    assert_eq!(retry.headers["content-type"], "application/json");
    assert_eq!(cart.orders.len(), 1);
    assert_eq!(cart.gate.handed().len(), 1);
    assert_eq!(
        serde_json::to_value(&cart.orders.messages()[0]).unwrap(),
        first.json["data"]
    );

    // Another key is another order; without a key, every create is one, as before.
    let other = cart
        .create("key-2", r#"{"orderId": "ORD-K", "numItems": 3}"#)
        .await;
    assert_eq!(other.status, 201);
    assert!(!replayed(&other));
    let body = json!({"orderId": "ORD-K", "numItems": 3});
    for _ in 0..2 {
        let reply = cart.send_json("POST", "/api/create-order", &body).await;
        assert_eq!(reply.status, 201);
        assert!(!replayed(&reply));
    }
    assert_eq!(cart.orders.len(), 4);
}

#[tokio::test]
async fn the_same_key_with_another_request_is_422() {
    let cart = serve().await;
    let first = cart
        .create("reused", r#"{"orderId": "ORD-1", "numItems": 3}"#)
        .await;
    assert_eq!(first.status, 201);
    for other in [
        r#"{"orderId": "ORD-1", "numItems": 4}"#,
        r#"{"orderId": "ORD-2", "numItems": 3}"#,
    ] {
        let reply = cart.create("reused", other).await;
        assert_eq!(reply.status, 422, "{other}: {}", reply.text);
        assert_eq!(reply.json["success"], false);
        assert_eq!(reply.json["error"], "Idempotency key reused");
        assert!(
            reply.json["details"]
                .as_str()
                .unwrap()
                .contains("Idempotency-Key"),
            "{}",
            reply.text
        );
    }
    assert_eq!(cart.gate.handed().len(), 1);
    // The key still answers its own request.
    let retry = cart
        .create("reused", r#"{"orderId": "ORD-1", "numItems": 3}"#)
        .await;
    assert_eq!(retry.text, first.text);
}

#[tokio::test]
async fn a_retry_while_the_first_is_being_published_is_409() {
    let cart = serve().await;
    let body = r#"{"orderId": "ORD-SLOW", "numItems": 2}"#;
    cart.gate.hold();
    let base = cart.base.clone();
    let first = tokio::spawn(async move { create(&base, "slow", body).await });
    cart.gate.entered().await;

    let retry = cart.create("slow", body).await;
    assert_eq!(retry.status, 409, "{}", retry.text);
    assert_eq!(retry.json["success"], false);
    assert_eq!(retry.json["error"], "Request in progress");
    let wait = retry_after(&retry);
    assert!((1..=30).contains(&wait), "Retry-After: {wait}");
    // Another request under that key is still a misuse, in flight or not.
    let other = cart
        .create("slow", r#"{"orderId": "ORD-SLOW", "numItems": 3}"#)
        .await;
    assert_eq!(other.status, 422, "{}", other.text);
    assert_eq!(cart.gate.handed().len(), 1, "the retries published nothing");

    cart.gate.release();
    let first = first.await.unwrap();
    assert_eq!(first.status, 201, "{}", first.text);
    let after = cart.create("slow", body).await;
    assert!(replayed(&after));
    assert_eq!(after.text, first.text);
    assert_eq!(cart.orders.len(), 1);
}

#[tokio::test]
async fn a_failed_publish_is_retried_with_the_same_order() {
    let cart = serve().await;
    let body = r#"{"orderId": "ORD-RETRY", "numItems": 5}"#;
    cart.orders.set_failing(true);
    let failed = cart.create("retry", body).await;
    assert_eq!(failed.status, 503, "{}", failed.text);
    assert_eq!(failed.json["error"], "Broker unavailable");
    assert!(cart.orders.is_empty());

    cart.orders.set_failing(false);
    let retry = cart.create("retry", body).await;
    assert_eq!(retry.status, 201, "{}", retry.text);
    assert!(!replayed(&retry), "published now, not replayed");
    let handed = cart.gate.handed();
    assert_eq!(handed.len(), 2);
    assert_eq!(handed[0], handed[1], "the stored order, not a new one");
    assert_eq!(cart.orders.messages(), vec![handed[0].clone()]);
    assert_eq!(
        retry.json["data"],
        serde_json::to_value(&handed[0]).unwrap()
    );
    let again = cart.create("retry", body).await;
    assert!(replayed(&again));
    assert_eq!(again.text, retry.text);
    assert_eq!(cart.orders.len(), 1);
}

#[tokio::test]
async fn a_publish_that_outlives_its_lease_is_503_and_the_retry_sends_the_same_order() {
    let cart = serve_with(Policy {
        ttl: Duration::from_secs(3600),
        max_keys: 10,
        lease: Duration::from_millis(300),
    })
    .await;
    let body = r#"{"orderId": "ORD-HUNG", "numItems": 2}"#;
    cart.gate.hold();
    let hung = cart.create("hung", body).await;
    assert_eq!(hung.status, 503, "{}", hung.text);
    assert!(
        hung.json["details"]
            .as_str()
            .unwrap()
            .contains("not acknowledged"),
        "{}",
        hung.text
    );
    cart.gate.release();
    let retry = cart.create("hung", body).await;
    assert_eq!(retry.status, 201, "{}", retry.text);
    let handed = cart.gate.handed();
    assert_eq!(handed.len(), 2);
    assert_eq!(handed[0], handed[1]);
    assert_eq!(cart.orders.messages(), vec![handed[0].clone()]);
}

#[tokio::test]
async fn a_full_store_forgets_its_oldest_finished_keys() {
    let cart = serve_with(Policy {
        ttl: Duration::from_secs(3600),
        max_keys: 2,
        lease: Duration::from_secs(30),
    })
    .await;
    let body = r#"{"orderId": "ORD-B", "numItems": 1}"#;
    let mut firsts = Vec::new();
    for key in ["a", "b", "c"] {
        let reply = cart.create(key, body).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        firsts.push(reply);
        tokio::time::sleep(Duration::from_millis(5)).await; // distinct ages
    }
    // "a" was the oldest when "c" came: forgotten, so its retry is a new create.
    let b = cart.create("b", body).await;
    assert!(replayed(&b));
    assert_eq!(b.text, firsts[1].text);
    let c = cart.create("c", body).await;
    assert!(replayed(&c));
    let a = cart.create("a", body).await;
    assert_eq!(a.status, 201);
    assert!(!replayed(&a));
    assert_eq!(cart.orders.len(), 4);
}

#[tokio::test]
async fn a_store_full_of_keys_in_flight_is_503_with_retry_after() {
    let cart = serve_with(Policy {
        ttl: Duration::from_secs(3600),
        max_keys: 1,
        lease: Duration::from_secs(30),
    })
    .await;
    let body = r#"{"orderId": "ORD-F", "numItems": 1}"#;
    cart.gate.hold();
    let base = cart.base.clone();
    let first = tokio::spawn(async move { create(&base, "first", body).await });
    cart.gate.entered().await;
    let second = cart.create("second", body).await;
    assert_eq!(second.status, 503, "{}", second.text);
    assert_eq!(second.json["success"], false);
    let details = second.json["details"].as_str().unwrap();
    assert!(details.contains("IDEMPOTENCY_MAX_KEYS"), "{details}");
    assert!(details.contains("1 in flight, 0 failed"), "{details}");
    assert!((1..=30).contains(&retry_after(&second)));
    assert_eq!(cart.gate.handed().len(), 1);

    cart.gate.release();
    assert_eq!(first.await.unwrap().status, 201);
    // Once the first is done, it is the one forgotten to make room.
    let second = cart.create("second", body).await;
    assert_eq!(second.status, 201, "{}", second.text);
    assert_eq!(cart.orders.len(), 2);
}

#[tokio::test]
async fn keyed_creates_beyond_the_limit_are_shed_with_nothing_done() {
    let policy = Policy {
        ttl: Duration::from_secs(3600),
        max_keys: 100,
        lease: Duration::from_secs(30),
    };
    let cart = serve_limited(policy, 1).await;
    let body = r#"{"orderId": "ORD-L", "numItems": 1}"#;
    cart.gate.hold();
    let base = cart.base.clone();
    let first = tokio::spawn(async move { create(&base, "first", body).await });
    cart.gate.entered().await;
    let second = cart.create("second", body).await;
    assert_eq!(second.status, 503, "{}", second.text);
    assert_eq!(second.json["error"], "Overloaded", "{}", second.text);
    assert_eq!(retry_after(&second), 1);
    // Unkeyed creates are bounded by the connections, not by this limit.
    assert_eq!(cart.gate.handed().len(), 1);
    cart.gate.release();
    assert_eq!(first.await.unwrap().status, 201);
    let second = cart.create("second", body).await;
    assert_eq!(second.status, 201, "{}", second.text);
    assert!(!replayed(&second), "the shed one did nothing");
}

#[tokio::test]
async fn a_key_is_forgotten_after_its_ttl() {
    let cart = serve_with(Policy {
        ttl: Duration::from_millis(300),
        max_keys: 10,
        lease: Duration::from_secs(30),
    })
    .await;
    let body = r#"{"orderId": "ORD-T", "numItems": 2}"#;
    let first = cart.create("brief", body).await;
    assert_eq!(first.status, 201);
    assert!(replayed(&cart.create("brief", body).await));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let later = cart.create("brief", body).await;
    assert_eq!(later.status, 201, "{}", later.text);
    assert!(!replayed(&later), "a new create once the key expired");
    assert_eq!(cart.orders.len(), 2);
}

#[tokio::test]
async fn a_bad_idempotency_key_is_400_naming_the_header() {
    let cart = serve().await;
    let body = br#"{"orderId": "ORD-H", "numItems": 1}"#;
    let long = "k".repeat(256);
    let cases: [&[(&str, &str)]; 4] = [
        &[("Idempotency-Key", "")],
        &[("Idempotency-Key", &long)],
        &[("Idempotency-Key", "two words")],
        &[("Idempotency-Key", "one"), ("Idempotency-Key", "two")],
    ];
    for headers in cases {
        let reply = call_documented(
            API,
            "POST",
            &cart.base,
            "/api/create-order",
            Some(body),
            headers,
        )
        .await;
        assert_eq!(reply.status, 400, "{headers:?}: {}", reply.text);
        assert_eq!(reply.json["success"], false);
        assert!(
            reply.json["details"]
                .as_str()
                .unwrap()
                .contains("Idempotency-Key"),
            "{headers:?}: {}",
            reply.text
        );
    }
    assert_eq!(cart.gate.handed().len(), 0);
    // 255 visible characters are a key.
    let longest = "k".repeat(255);
    let reply = cart
        .create(&longest, std::str::from_utf8(body).unwrap())
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
}

/// A [`MemorySink`] that reports overload while `shedding` is set, as a producer does whose
/// publishing cannot keep up: nothing is kept then.
#[derive(Clone)]
struct Overloadable<M> {
    inner: MemorySink<M>,
    shedding: Arc<AtomicBool>,
}

#[async_trait]
impl<M: Clone + Send + Sync> Sink<M> for Overloadable<M> {
    async fn publish(&self, message: &M) -> Result<(), SinkError> {
        if self.shedding.load(Ordering::SeqCst) {
            return Err(SinkError::overloaded("every publish slot is taken"));
        }
        self.inner.publish(message).await
    }

    async fn flush(&self) -> Result<(), SinkError> {
        self.inner.flush().await
    }
}

#[tokio::test]
async fn an_overloaded_sink_is_503_with_retry_after_and_nothing_is_published() {
    let shedding = Arc::new(AtomicBool::new(true));
    let (orders, updates) = (MemorySink::new(), MemorySink::new());
    let dir = tempfile::tempdir().unwrap();
    let policy = Policy {
        ttl: Duration::from_secs(3600),
        max_keys: 10,
        lease: Duration::from_secs(30),
    };
    let cart = Arc::new(
        Cart::new(
            Arc::new(Overloadable {
                inner: orders.clone(),
                shedding: shedding.clone(),
            }),
            Arc::new(Overloadable {
                inner: updates.clone(),
                shedding: shedding.clone(),
            }),
            Arc::new(FakeBroker::default()),
            IdempotencyStore::open(&dir.path().join("keys.db"), policy).unwrap(),
            Metrics::detached(),
        )
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(cart.serve(listener, 64, async {
        let _ = stopped.await;
    }));
    let update = br#"{"orderId": "ORD-1", "status": "shipped"}"#;
    let order = r#"{"orderId": "ORD-2", "numItems": 2}"#;
    let put = || call_documented(API, "PUT", &base, "/api/update-order", Some(update), &[]);
    let post = || {
        call_documented(
            API,
            "POST",
            &base,
            "/api/create-order",
            Some(order.as_bytes()),
            &[],
        )
    };

    for reply in [put().await, post().await, create(&base, "k", order).await] {
        assert_eq!(reply.status, 503, "{}", reply.text);
        assert_eq!(reply.json["success"], false);
        assert_eq!(reply.json["error"], "Overloaded", "{}", reply.text);
        assert!(reply.json["details"].is_string());
        assert_eq!(retry_after(&reply), 1);
    }
    assert!(orders.is_empty() && updates.is_empty(), "nothing published");
    // A flood of shed keyed creates, more than the store holds: each surely sent nothing,
    // so its key is freed at once and the store never fills.
    for n in 0..25 {
        let reply = create(&base, &format!("shed-{n}"), order).await;
        assert_eq!(reply.status, 503, "{}", reply.text);
        assert_eq!(reply.json["error"], "Overloaded", "{}", reply.text);
    }

    // The flood is over: the same requests go through, the keyed one too (its key was freed).
    shedding.store(false, Ordering::SeqCst);
    assert_eq!(put().await.status, 202);
    assert_eq!(post().await.status, 201);
    let keyed = create(&base, "k", order).await;
    assert_eq!(keyed.status, 201, "{}", keyed.text);
    assert!(!replayed(&keyed));
    assert_eq!((updates.len(), orders.len()), (1, 2));
}

#[test]
fn random_requests_get_documented_answers_and_never_a_5xx_but_503() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cart = runtime.block_on(serve());
    ordering_http::fuzz::run(
        &runtime,
        &ordering_http::fuzz::Target {
            api: API,
            base: &cart.base,
            routes: &ROUTES,
            params: &["orderId"],
            fields: &["orderId", "numItems", "status", "reason"],
            headers: &[
                ("idempotency-key", "fuzz-key-1"),
                ("idempotency-key", "fuzz-key-2"),
            ],
            samples: &["ORD-1", "ORD-FUZZ-2", "shipped", "delivered", "late truck"],
        },
        300,
    );
    // Whatever it was sent, what it published are valid events.
    for order in cart.orders.messages() {
        assert!(order.check().is_ok(), "{order:?}");
    }
}
