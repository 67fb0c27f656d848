//! The whole system as real processes: a broker, cart-shell and order-shell, driven over HTTP
//! through the spec's three test cases, bad input, a poison record, a broker outage and
//! shutdown. Short backoffs come from the environment, as a deployment would set them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ordering_kafka::testing::{Storage, TestBroker, unique_topic};
use ordering_kafka::{KafkaProducer, ProducerConfig};
use serde_json::{Value, json};
use shell_http::testing::{Reply, ShellProcess, call, get, send_json};

const WAIT: Duration = Duration::from_secs(60);

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

struct System {
    broker: TestBroker,
    cart: ShellProcess,
    order: ShellProcess,
    topics: [String; 3],
    group: String,
}

impl System {
    fn start(storage: Storage) -> Self {
        Self::start_around(TestBroker::start_with(storage))
    }

    /// Starts the shells against `broker`, running or not.
    fn start_around(broker: TestBroker) -> Self {
        let topics = [
            unique_topic("orders"),
            unique_topic("updates"),
            unique_topic("dlq"),
        ];
        let group = unique_topic("group");
        let env = vec![
            ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
            ("KAFKA_TOPIC", topics[0].clone()),
            ("KAFKA_STATUS_UPDATE_TOPIC", topics[1].clone()),
            ("KAFKA_DLQ_TOPIC", topics[2].clone()),
            ("KAFKA_CONSUMER_GROUP", group.clone()),
            ("KAFKA_DELIVERY_TIMEOUT_MS", "3000".into()),
            // The spec's 1 s, 2 s, 4 s, ten times faster.
            ("DLQ_RETRY_BACKOFF_MS", "100".into()),
        ];
        let cart = ShellProcess::start(&cart_binary(), &env);
        let order = ShellProcess::start(Path::new(env!("CARGO_BIN_EXE_order-shell")), &env);
        Self {
            broker,
            cart,
            order,
            topics,
            group,
        }
    }

    async fn create(&self, id: &str, items: i64) -> Reply {
        send_json(
            "POST",
            &self.cart.url("/api/create-order"),
            &json!({"orderId": id, "numItems": items}),
        )
        .await
    }

    async fn update(&self, id: &str, status: &str) -> Reply {
        send_json(
            "PUT",
            &self.cart.url("/api/update-order"),
            &json!({"orderId": id, "status": status}),
        )
        .await
    }

    async fn order_details(&self, id: &str) -> Reply {
        get(&self.order.url(&format!("/api/order-details?orderId={id}"))).await
    }

    async fn dead_letters(&self) -> Vec<Value> {
        let reply = get(&self.order.url("/api/dlq/messages")).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn wait_until_consuming(&self) {
        eventually("order-shell healthy", || async {
            (get(&self.order.url("/health")).await.status == 200).then_some(())
        })
        .await;
    }
}

/// Polls `check` until it gives a value, for at most a minute.
async fn eventually<T, F, Fut>(what: &str, check: F) -> T
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_case_1_an_existing_order_is_updated() {
    let system = System::start(Storage::Memory);
    system.wait_until_consuming().await;
    let created = system.create("ORD-TEST-001", 2).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let total = created.json["data"]["totalAmount"].as_f64().unwrap();

    // The order arrives on its own topic; the update may overtake it and is then retried.
    assert_eq!(system.update("ORD-TEST-001", "shipped").await.status, 202);
    let order = eventually("the order to be shipped", || async {
        let reply = system.order_details("ORD-TEST-001").await;
        (reply.status == 200 && reply.json["data"]["status"] == "shipped").then_some(reply.json)
    })
    .await;
    assert_eq!(order["success"], true);
    assert_eq!(order["data"]["items"].as_array().unwrap().len(), 2);
    let shipping = order["data"]["shippingCost"].as_f64().unwrap();
    assert_eq!(shipping, ordering_core::model::shipping_cost(total));

    let stats = get(&system.order.url("/api/stats")).await.json;
    assert_eq!(stats["totalOrders"], 1);
    assert_eq!(stats["orderIds"], json!(["ORD-TEST-001"]));
    let ids = get(&system.order.url(&format!(
        "/api/getAllOrderIdsFromTopic?topicName={}",
        system.topics[0]
    )))
    .await;
    assert_eq!(ids.status, 200, "{}", ids.text);
    assert_eq!(ids.json["orderIds"], json!(["ORD-TEST-001"]));
    assert_eq!(ids.json["count"], 1);
    assert!(system.dead_letters().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_case_2_an_unknown_order_is_retried_then_dead_lettered() {
    let system = System::start(Storage::Memory);
    system.wait_until_consuming().await;
    let reply = system.update("DOES-NOT-EXIST", "shipped").await;
    assert_eq!(
        reply.status, 202,
        "202 even though the order does not exist"
    );

    let letters = eventually("a dead letter", || async {
        let letters = system.dead_letters().await;
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter["errorMessage"], "Order DOES-NOT-EXIST not found");
    assert_eq!(letter["errorType"], "OrderNotFound");
    assert_eq!(letter["errorClass"], "retryable");
    assert_eq!(letter["retryCount"], 3);
    assert_eq!(letter["failedAttempts"], 4);
    assert_eq!(letter["originalTopic"], system.topics[1]);
    assert_eq!(letter["originalKey"], "DOES-NOT-EXIST");
    let original: Value =
        serde_json::from_str(letter["originalMessage"].as_str().unwrap()).unwrap();
    assert_eq!(original["status"], "shipped");

    let info = get(&system.order.url("/api/dlq/info")).await.json;
    assert_eq!(info["dlqConfig"]["dlqTopic"], system.topics[2]);
    assert_eq!(info["dlqConfig"]["maxRetries"], 3);
    assert_eq!(info["dlqConfig"]["initialBackoffMs"], 100);
    assert_eq!(info["dlqConfig"]["retryStrategy"], "exponential_backoff");
    assert_eq!(info["consumerStats"]["isRunning"], true);
    assert_eq!(info["consumerStats"]["deadLettered"], 1);
    assert_eq!(info["consumerStats"]["retries"], 3);
    assert_eq!(system.order_details("DOES-NOT-EXIST").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_case_3_a_blank_status_is_refused_at_once() {
    let system = System::start(Storage::Memory);
    let reply = system.update("ORD-001", "   ").await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json["success"], false);
    assert!(reply.json["details"].as_str().unwrap().contains("status"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_on_the_topic_is_dead_lettered_with_its_bytes() {
    let system = System::start(Storage::Memory);
    system.wait_until_consuming().await;
    let producer = KafkaProducer::new(&ProducerConfig::new(system.broker.bootstrap())).unwrap();
    producer
        .send(
            &system.topics[1],
            Some(b"ORD-POISON"),
            b"\x00garbage\xff",
            &[],
        )
        .await
        .unwrap();

    let letters = eventually("a dead letter", || async {
        let letters = system.dead_letters().await;
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    let letter = &letters[0];
    assert_eq!(letter["errorClass"], "poison");
    assert_eq!(letter["errorType"], "DecodeError");
    assert_eq!(letter["retryCount"], 0);
    assert_eq!(letter["originalMessage"], Value::Null);
    assert_eq!(
        letter["originalValue"], "AGdhcmJhZ2X/",
        "base64 of the bytes as sent"
    );

    // The consumer goes on: a good order after the poison one is applied.
    assert_eq!(system.create("ORD-AFTER", 1).await.status, 201);
    eventually("the next order", || async {
        (system.order_details("ORD-AFTER").await.status == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_shell_refuses_bad_queries_with_4xx() {
    let system = System::start(Storage::Memory);
    let url = |path: &str| system.order.url(path);
    let cases = [
        ("/api/order-details", 400, "orderId must not be empty"),
        (
            "/api/order-details?orderId=%20%20",
            400,
            "orderId must not be empty",
        ),
        (
            "/api/order-details?orderId=NOPE",
            404,
            "Order NOPE not found",
        ),
        (
            "/api/dlq/messages?limit=0",
            400,
            "limit must be a whole number from 1 to 1000",
        ),
        ("/api/dlq/messages?limit=abc", 400, "limit"),
        ("/api/dlq/messages?offset=-1", 400, "offset"),
        ("/api/getAllOrderIdsFromTopic", 400, "topicName"),
        (
            "/api/getAllOrderIdsFromTopic?topicName=%20",
            400,
            "topicName",
        ),
        ("/api/unknown", 404, "no endpoint"),
    ];
    for (path, status, details) in cases {
        let reply = get(&url(path)).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.text);
        let got = reply.json["details"].as_str().unwrap_or_default();
        assert!(
            got.contains(details),
            "{path}: {got:?} should say {details:?}"
        );
    }
    let reply = call("POST", &url("/api/stats"), Some(b"{}")).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.headers["allow"], "GET");
    assert_eq!(get(&url("/api/stats")).await.json["totalOrders"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_shells_ride_out_a_broker_restart() {
    let mut system = System::start(Storage::Sqlite);
    system.wait_until_consuming().await;
    assert_eq!(system.create("ORD-BEFORE", 1).await.status, 201);
    eventually("the first order", || async {
        (system.order_details("ORD-BEFORE").await.status == 200).then_some(())
    })
    .await;

    system.broker.stop();
    assert_eq!(system.update("ORD-BEFORE", "shipped").await.status, 503);
    let health = get(&system.order.url("/health")).await;
    assert_eq!(health.status, 503, "{}", health.text);
    assert_eq!(health.json["broker"], "unavailable");
    assert_eq!(
        get(&system.order.url("/api/dlq/messages")).await.status,
        503
    );
    // What is already known is still served.
    assert_eq!(system.order_details("ORD-BEFORE").await.status, 200);

    system.broker.restart();
    eventually("cart-shell to publish again", || async {
        (system.update("ORD-BEFORE", "shipped").await.status == 202).then_some(())
    })
    .await;
    eventually("order-shell to consume again", || async {
        let reply = system.order_details("ORD-BEFORE").await;
        (reply.json["data"]["status"] == "shipped").then_some(())
    })
    .await;
    assert_eq!(system.create("ORD-AFTER", 1).await.status, 201);
    eventually("a new order after the restart", || async {
        (system.order_details("ORD-AFTER").await.status == 200).then_some(())
    })
    .await;
    system.wait_until_consuming().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shells_start_before_the_broker_and_wait_for_it() {
    let mut broker = TestBroker::start();
    broker.stop();
    let mut system = System::start_around(broker);
    let health = get(&system.order.url("/health")).await;
    assert_eq!(health.status, 503);
    assert_eq!(health.json["consumer"]["state"], "waiting for the broker");
    assert_eq!(system.create("ORD-1", 1).await.status, 503);

    system.broker.restart();
    system.wait_until_consuming().await;
    eventually("cart-shell to publish", || async {
        (system.create("ORD-1", 1).await.status == 201).then_some(())
    })
    .await;
    eventually("the order", || async {
        (system.order_details("ORD-1").await.status == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_order_shell_cleanly_and_commits() {
    let mut system = System::start(Storage::Memory);
    system.wait_until_consuming().await;
    assert_eq!(system.create("ORD-1", 1).await.status, 201);
    eventually("the order", || async {
        (system.order_details("ORD-1").await.status == 200).then_some(())
    })
    .await;
    let status = system.order.terminate();
    assert!(status.success(), "exit {status}:\n{}", system.order.log());
    assert!(system.order.log().contains("order-shell stopped"));
    // The one record was committed on the way out (the default commit interval is 1 s).
    let committed: i64 = (0..3)
        .filter_map(|p| {
            ordering_kafka::testing::committed_offset(
                &system.broker.bootstrap(),
                &system.group,
                &system.topics[0],
                p,
            )
        })
        .sum();
    assert_eq!(committed, 1);
    assert!(system.cart.terminate().success());
}

#[test]
fn a_bad_setting_stops_order_shell_at_start_up_naming_the_variable() {
    for (name, value) in [
        ("DLQ_MAX_RETRIES", "abc"),
        ("DLQ_RETRY_BACKOFF_MS", "0"),
        ("DLQ_MAX_BACKOFF_MS", "1"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_order-shell"))
            .env(name, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{name}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("invalid {name}=\"{value}\"")),
            "{stderr}"
        );
    }
}
