//! The whole system as real processes: a broker, cart-shell and order-shell, driven over HTTP.
#![allow(dead_code)]

pub mod load;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ordering_http::testing::{Reply, ShellProcess, call_with, get, send_json};
use ordering_kafka::testing::{Storage, TestBroker, unique_topic};
use serde_json::{Value, json};

pub const WAIT: Duration = Duration::from_secs(60);

/// The operator token every test system starts order-shell with.
pub const OPERATOR_TOKEN: &str = "test-operator-token-5b1f0c2e";

/// `GET url` with the operator token.
pub async fn operator_get(url: &str) -> Reply {
    let bearer = format!("Bearer {OPERATOR_TOKEN}");
    call_with("GET", url, None, &[("authorization", &bearer)]).await
}

/// `POST url` of `body` with the operator token.
pub async fn operator_post(url: &str, body: &Value) -> Reply {
    let bearer = format!("Bearer {OPERATOR_TOKEN}");
    let body = body.to_string();
    call_with(
        "POST",
        url,
        Some(body.as_bytes()),
        &[("authorization", &bearer)],
    )
    .await
}

/// cart-shell is built by `cargo test --workspace` (its own tests need it) next to this one.
fn cart_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_order-shell")).with_file_name("cart-shell");
    assert!(
        path.is_file(),
        "{} is missing: run the tests with `scripts/test` (cargo test --workspace)",
        path.display()
    );
    path
}

pub struct System {
    pub broker: TestBroker,
    pub cart: ShellProcess,
    pub order: ShellProcess,
    pub topics: [String; 3],
    pub group: String,
    /// What both shells were started with.
    pub env: Vec<(&'static str, String)>,
    /// cart-shell's idempotency-key file lives here, one per system.
    _data: tempfile::TempDir,
}

fn order_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_order-shell"))
}

impl System {
    /// Both shells on a new broker, orders in memory.
    pub fn start(storage: Storage) -> Self {
        Self::start_around(TestBroker::start_with(storage))
    }

    /// Starts the shells against `broker`, running or not, orders in memory.
    pub fn start_around(broker: TestBroker) -> Self {
        Self::start_with(broker, &[("ORDER_STORE_URL", "memory://".into())])
    }

    /// Starts the shells against `broker` with `extra` settings on top of the test defaults.
    pub fn start_with(broker: TestBroker, extra: &[(&'static str, String)]) -> Self {
        let topics = [
            unique_topic("orders"),
            unique_topic("updates"),
            unique_topic("dlq"),
        ];
        let group = unique_topic("group");
        let data = tempfile::tempdir().expect("a temporary directory");
        let keys = data.path().join("cart-idempotency.db");
        let env = vec![
            ("IDEMPOTENCY_DB", keys.display().to_string()),
            ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
            ("KAFKA_TOPIC", topics[0].clone()),
            ("KAFKA_STATUS_UPDATE_TOPIC", topics[1].clone()),
            ("KAFKA_DLQ_TOPIC", topics[2].clone()),
            ("KAFKA_CONSUMER_GROUP", group.clone()),
            ("KAFKA_DELIVERY_TIMEOUT_MS", "3000".into()),
            // The spec's 1 s, 2 s, 4 s, ten times faster.
            ("DLQ_RETRY_BACKOFF_MS", "100".into()),
            ("OPERATOR_TOKEN", OPERATOR_TOKEN.into()),
        ];
        // Keys in a shared store replace the file (both set is refused).
        let shared_keys = extra.iter().any(|(n, _)| *n == "IDEMPOTENCY_STORE_URL");
        let mut env: Vec<(&'static str, String)> = env
            .into_iter()
            .filter(|(name, _)| !extra.iter().any(|(n, _)| n == name))
            .filter(|(name, _)| !(shared_keys && *name == "IDEMPOTENCY_DB"))
            .collect();
        env.extend(extra.iter().cloned());
        let cart = ShellProcess::start(&cart_binary(), &env);
        let order = ShellProcess::start(order_binary(), &env);
        Self {
            broker,
            cart,
            order,
            topics,
            group,
            env,
            _data: data,
        }
    }

    /// `kill -9` of order-shell: no shutdown, no final commit, no flush.
    pub fn kill_order_shell(&mut self) {
        self.order.kill();
    }

    /// Starts order-shell again with the same settings (on a new HTTP port).
    pub fn start_order_shell(&mut self) {
        self.order = self.another_order_shell();
    }

    /// One more order-shell instance with the same settings: same group, same store.
    pub fn another_order_shell(&self) -> ShellProcess {
        self.another_order_shell_with(&[])
    }

    /// [`another_order_shell`](Self::another_order_shell) with `extra` settings on top.
    pub fn another_order_shell_with(&self, extra: &[(&'static str, String)]) -> ShellProcess {
        let mut env = self.env.clone();
        env.extend(extra.iter().cloned());
        ShellProcess::start(order_binary(), &env)
    }

    pub async fn create(&self, id: &str, items: i64) -> Reply {
        send_json(
            "POST",
            &self.cart.url("/api/create-order"),
            &json!({"orderId": id, "numItems": items}),
        )
        .await
    }

    pub async fn update(&self, id: &str, status: &str) -> Reply {
        send_json(
            "PUT",
            &self.cart.url("/api/update-order"),
            &json!({"orderId": id, "status": status}),
        )
        .await
    }

    pub async fn order_details(&self, id: &str) -> Reply {
        get(&self.order.url(&format!("/api/order-details?orderId={id}"))).await
    }

    pub async fn dead_letters(&self) -> Vec<Value> {
        let reply = operator_get(&self.order.url("/api/dlq/messages")).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub async fn wait_until_consuming(&self) {
        eventually("order-shell healthy", || async {
            (get(&self.order.url("/health")).await.status == 200).then_some(())
        })
        .await;
    }
}

/// The partitions an order-shell instance holds, from its `/health`.
pub async fn assigned(order_shell: &ShellProcess) -> Vec<String> {
    let health = get(&order_shell.url("/health")).await.json;
    health["consumer"]["assignedPartitions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `check` until it gives a value, for at most a minute.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
