//! cart-shell's routes in-process: the service from `lib.rs` on in-memory sinks and a broker
//! check the test controls, served on a local port. No broker, no child process: routing,
//! validation, error bodies, health and the OpenAPI document. The real flow is in `api.rs`.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cart_shell::{Broker, Cart, ROUTES, SERVICE};
use ordering_core::order::{Order, StatusUpdate};
use ordering_core::testing::MemorySink;
use serde_json::json;
use shell_http::metrics::Metrics;
use shell_http::testing::{Reply, call, call_documented, check_openapi, get};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

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

struct Served {
    base: String,
    orders: MemorySink<Order>,
    updates: MemorySink<StatusUpdate>,
    broker: Arc<FakeBroker>,
    _stop: oneshot::Sender<()>,
}

impl Served {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A call to one of the routes, whose answer must be documented.
    async fn call(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        call_documented(SERVICE, method, &self.base, path, Some(body), &[]).await
    }

    async fn send_json(&self, method: &str, path: &str, body: &serde_json::Value) -> Reply {
        self.call(method, path, body.to_string().as_bytes()).await
    }
}

async fn serve() -> Served {
    let (orders, updates) = (MemorySink::new(), MemorySink::new());
    let broker = Arc::new(FakeBroker::default());
    let cart = Arc::new(
        Cart::new(
            Arc::new(orders.clone()),
            Arc::new(updates.clone()),
            broker.clone(),
            Metrics::detached(),
        )
        .unwrap(),
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
        updates,
        broker,
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
    check_openapi(SERVICE, &ROUTES, &cart.base).await;
}
