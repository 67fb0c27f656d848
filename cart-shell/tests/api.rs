//! cart-shell as a real process on a real broker, driven over HTTP: what it accepts, what it
//! refuses and how, how it rides out a broker outage, and how an `Idempotency-Key` holds
//! across a `kill -9`.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ordering_core::order::{Order, StatusUpdate};
use ordering_http::testing::{Reply, ShellProcess, call_with, get, send_json};
use ordering_kafka::order::AvroCodec;
use ordering_kafka::read_topic;
use ordering_kafka::testing::{Storage, TestBroker, unique_topic};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

struct Cart {
    shell: ShellProcess,
    orders: String,
    updates: String,
    /// The Idempotency-Key store's file, in `_keys`.
    db: PathBuf,
    _keys: tempfile::TempDir,
}

fn start(broker: &TestBroker) -> Cart {
    let (orders, updates) = (unique_topic("orders"), unique_topic("updates"));
    let keys = tempfile::tempdir().unwrap();
    let db = keys.path().join("cart-idempotency.db");
    let shell = launch(broker, &orders, &updates, &db);
    Cart {
        shell,
        orders,
        updates,
        db,
        _keys: keys,
    }
}

/// A cart-shell process on `broker`'s topics `orders` and `updates`, its keys in `db`.
fn launch(broker: &TestBroker, orders: &str, updates: &str, db: &Path) -> ShellProcess {
    let keys = ("IDEMPOTENCY_DB", db.display().to_string());
    launch_with(broker, orders, updates, keys)
}

/// A cart-shell process keeping its keys in the PostgreSQL database at `keys`.
fn launch_shared(broker: &TestBroker, orders: &str, updates: &str, keys: &str) -> ShellProcess {
    let keys = ("IDEMPOTENCY_STORE_URL", keys.to_owned());
    launch_with(broker, orders, updates, keys)
}

fn launch_with(
    broker: &TestBroker,
    orders: &str,
    updates: &str,
    keys: (&'static str, String),
) -> ShellProcess {
    ShellProcess::start(
        Path::new(env!("CARGO_BIN_EXE_cart-shell")),
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
            ("KAFKA_TOPIC", orders.to_owned()),
            ("KAFKA_STATUS_UPDATE_TOPIC", updates.to_owned()),
            ("KAFKA_DELIVERY_TIMEOUT_MS", "3000".into()),
            keys,
        ],
    )
}

/// `POST /api/create-order` with `body` and `Idempotency-Key: key`.
async fn create(shell: &ShellProcess, key: &str, body: &serde_json::Value) -> Reply {
    call_with(
        "POST",
        &shell.url("/api/create-order"),
        Some(body.to_string().as_bytes()),
        &[("Idempotency-Key", key)],
    )
    .await
}

/// The orders on `topic` whose id is `id`.
async fn orders_of(broker: &TestBroker, topic: &str, id: &str) -> Vec<Order> {
    read::<Order>(broker, topic)
        .await
        .into_iter()
        .map(|record| record.event.unwrap())
        .filter(|order| order.order_id.as_str() == id)
        .collect()
}

async fn read<M: Send + 'static>(broker: &TestBroker, topic: &str) -> Vec<ordering_core::Record<M>>
where
    AvroCodec: ordering_kafka::Codec<M>,
{
    read_topic::<M, _>(&broker.bootstrap(), topic, AvroCodec::new().unwrap(), WAIT)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_order_is_on_the_topic_before_201() {
    let broker = TestBroker::start();
    let cart = start(&broker);
    let reply = send_json(
        "POST",
        &cart.shell.url("/api/create-order"),
        &json!({"orderId": "  ORD-TEST-001 ", "numItems": 3}),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.json["success"], true);
    let data = &reply.json["data"];
    assert_eq!(data["orderId"], "ORD-TEST-001", "trimmed");
    assert_eq!(data["status"], "pending");
    assert_eq!(data["items"].as_array().unwrap().len(), 3);

    // Acknowledged by the broker before the answer: it is there now.
    let records = read::<Order>(&broker, &cart.orders).await;
    assert_eq!(records.len(), 1);
    let published = records[0].event.as_ref().unwrap();
    assert_eq!(serde_json::to_value(published).unwrap(), *data);
    assert_eq!(records[0].meta.key.as_deref(), Some(&b"ORD-TEST-001"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_update_gets_202_with_the_specs_body() {
    let broker = TestBroker::start();
    let cart = start(&broker);
    let reply = send_json(
        "PUT",
        &cart.shell.url("/api/update-order"),
        &json!({"orderId": "ORD-123", "status": "shipped"}),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    assert_eq!(
        reply.json,
        json!({
            "success": true,
            "message": "Status update event published for order 'ORD-123'. Processing asynchronously.",
            "data": {
                "orderId": "ORD-123",
                "status": "shipped",
                "message": "Status update event published. Processing asynchronously.",
                "eventType": "STATUS_UPDATE"
            }
        })
    );
    let records = read::<StatusUpdate>(&broker, &cart.updates).await;
    let update = records[0].event.as_ref().unwrap();
    assert_eq!(
        (update.order_id.as_str(), update.status.as_str()),
        ("ORD-123", "shipped")
    );
    assert!(update.update_timestamp.ends_with('Z'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_gives_503_in_bounded_time_and_the_shell_recovers() {
    let mut broker = TestBroker::start_with(Storage::Sqlite);
    let cart = start(&broker);
    let update = cart.shell.url("/api/update-order");
    let body = json!({"orderId": "ORD-1", "status": "shipped"});
    assert_eq!(send_json("PUT", &update, &body).await.status, 202);

    broker.stop();
    let reply = send_json("PUT", &update, &body).await; // `call` fails the test after 30 s
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert_eq!(reply.json["error"], "Broker unavailable");
    let health = get(&cart.shell.url("/health")).await;
    assert_eq!(health.status, 503);
    assert_eq!(health.json["broker"], "unavailable");

    broker.restart();
    let deadline = Instant::now() + WAIT;
    loop {
        let reply = send_json("PUT", &update, &body).await;
        if reply.status == 202 {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {}", reply.text);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // `/health` probes the broker at most once a second: it follows within about that.
    let healthy = Instant::now() + Duration::from_secs(10);
    while get(&cart.shell.url("/health")).await.status != 200 {
        assert!(
            Instant::now() < healthy,
            "/health still 503 after the recovery"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_shell_cleanly() {
    let broker = TestBroker::start();
    let mut cart = start(&broker);
    let reply = send_json(
        "POST",
        &cart.shell.url("/api/create-order"),
        &json!({"orderId": "ORD-1", "numItems": 1}),
    )
    .await;
    assert_eq!(reply.status, 201);
    let status = cart.shell.terminate();
    assert!(status.success(), "exit {status}:\n{}", cart.shell.log());
    assert!(cart.shell.log().contains("cart-shell stopped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_create_is_answered_again_after_kill_9_and_published_once() {
    let broker = TestBroker::start();
    let mut cart = start(&broker);
    let body = json!({"orderId": "ORD-KILL", "numItems": 4});
    let first = create(&cart.shell, "kill-9", &body).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(first.json["data"]["items"].as_array().unwrap().len(), 4);

    // No clean-up of any kind; the next process opens the same file.
    cart.shell.kill();
    cart.shell = launch(&broker, &cart.orders, &cart.updates, &cart.db);
    let retry = create(&cart.shell, "kill-9", &body).await;
    assert_eq!(retry.status, 201, "{}", retry.text);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(retry.text, first.text, "the same answer, byte for byte");
    assert_eq!(retry.json["data"]["items"], first.json["data"]["items"]);
    let other = create(
        &cart.shell,
        "kill-9",
        &json!({"orderId": "ORD-KILL", "numItems": 5}),
    )
    .await;
    assert_eq!(other.status, 422, "{}", other.text);

    let published = orders_of(&broker, &cart.orders, "ORD-KILL").await;
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(
        serde_json::to_value(&published[0]).unwrap(),
        first.json["data"]
    );
}

/// Two instances behind a load balancer that sends each retry to the other one: one key, one
/// order, one answer, whichever instance a request lands on, even with the first killed while
/// it publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_keys_in_postgres_publish_each_key_once_even_after_kill_9() {
    let mut broker = TestBroker::start_with(Storage::Sqlite);
    let postgres = ordering_store::testing::TestPostgres::shared();
    let keys = postgres.create_database().await;
    let (orders, updates) = (unique_topic("orders"), unique_topic("updates"));
    let mut a = launch_shared(&broker, &orders, &updates, &keys);
    let b = launch_shared(&broker, &orders, &updates, &keys);

    // Each retry goes to the other instance: the first answer, byte for byte.
    let mut answers = Vec::new();
    for n in 0..10 {
        let body = json!({"orderId": format!("ORD-LB-{n}"), "numItems": 2});
        let key = format!("lb-{n}");
        let (first, retry) = if n % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let answer = create(first, &key, &body).await;
        assert_eq!(answer.status, 201, "{}", answer.text);
        let again = create(retry, &key, &body).await;
        assert_eq!(again.status, 201, "{}", again.text);
        assert_eq!(again.headers["idempotent-replayed"], "true");
        assert_eq!(again.text, answer.text, "the same answer, byte for byte");
        let misuse = json!({"orderId": format!("ORD-LB-{n}"), "numItems": 3});
        assert_eq!(create(retry, &key, &misuse).await.status, 422);
        answers.push(answer);
    }
    // Both at once: exactly one publishes; the other says so (409) or replays.
    let mut raced = Vec::new();
    for n in 0..10 {
        let body = json!({"orderId": format!("ORD-RACE-{n}"), "numItems": 1});
        let key = format!("race-{n}");
        let (ua, ub) = (a.url("/api/create-order"), b.url("/api/create-order"));
        let send = |url: String, body: serde_json::Value, key: String| async move {
            let headers = [("Idempotency-Key", key.as_str())];
            call_with("POST", &url, Some(body.to_string().as_bytes()), &headers).await
        };
        let (ra, rb) = tokio::join!(
            send(ua, body.clone(), key.clone()),
            send(ub, body.clone(), key.clone())
        );
        let statuses = [ra.status, rb.status];
        assert!(
            statuses.contains(&201) && statuses.iter().all(|s| [201, 409].contains(s)),
            "race-{n}: {statuses:?}: {} / {}",
            ra.text,
            rb.text
        );
        if ra.status == 201 && rb.status == 201 {
            assert_eq!(ra.text, rb.text, "a replay of the one answer");
        }
        raced.push(format!("ORD-RACE-{n}"));
    }

    // `kill -9` of the first instance while it publishes (the broker is down, so the publish
    // waits): the key stays in flight until its lease ends, then the other instance
    // publishes the order the first one stored, never a new one.
    broker.stop();
    let body = json!({"orderId": "ORD-LB-KILL", "numItems": 5});
    let url = a.url("/api/create-order");
    let pending = {
        let body = body.to_string();
        tokio::spawn(async move {
            let headers = [("Idempotency-Key", "lb-kill")];
            call_with("POST", &url, Some(body.as_bytes()), &headers).await
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    a.kill();
    let _ = pending.await;
    let in_flight = create(&b, "lb-kill", &body).await;
    assert_eq!(in_flight.status, 409, "{}", in_flight.text);
    broker.restart();
    let deadline = Instant::now() + WAIT;
    let published = loop {
        let reply = create(&b, "lb-kill", &body).await;
        if reply.status == 201 {
            break reply;
        }
        assert!([409, 503].contains(&reply.status), "{}", reply.text);
        assert!(Instant::now() < deadline, "never published: {}", reply.text);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // A new instance in place of the killed one replays it.
    let a = launch_shared(&broker, &orders, &updates, &keys);
    let replay = create(&a, "lb-kill", &body).await;
    assert_eq!(replay.text, published.text);

    // On the topic: one order per key, each the one answered.
    let all = read::<Order>(&broker, &orders).await;
    let of = |id: &str| -> Vec<serde_json::Value> {
        all.iter()
            .filter_map(|r| r.event.as_ref().ok())
            .filter(|o| o.order_id.as_str() == id)
            .map(|o| serde_json::to_value(o).unwrap())
            .collect()
    };
    for (n, answer) in answers.iter().enumerate() {
        assert_eq!(
            of(&format!("ORD-LB-{n}")),
            vec![answer.json["data"].clone()]
        );
    }
    for id in &raced {
        assert_eq!(of(id).len(), 1, "{id} published once");
    }
    // The killed attempt's publish may have left before the kill: whatever reached the
    // topic is the one stored order.
    let killed = of("ORD-LB-KILL");
    assert!(!killed.is_empty());
    assert!(
        killed.iter().all(|o| *o == published.json["data"]),
        "{killed:?}"
    );
}

/// The shared key store stopped and started again under a running cart-shell: a keyed create
/// meanwhile is `503` with nothing published, a create without a key is not held up, and the
/// same key afterwards creates its order once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_store_outage_is_503_with_nothing_published_and_the_shell_recovers() {
    let broker = TestBroker::start();
    let mut postgres = ordering_store::testing::TestPostgres::start();
    let keys = postgres.create_database().await;
    let (orders, updates) = (unique_topic("orders"), unique_topic("updates"));
    let cart = launch_shared(&broker, &orders, &updates, &keys);
    let body = json!({"orderId": "ORD-KEYS-DOWN", "numItems": 2});
    let warm = create(
        &cart,
        "warm",
        &json!({"orderId": "ORD-WARM", "numItems": 1}),
    )
    .await;
    assert_eq!(warm.status, 201, "{}", warm.text);

    tokio::task::block_in_place(|| postgres.stop());
    let started = Instant::now();
    let down = create(&cart, "keys-down", &body).await;
    assert_eq!(down.status, 503, "{}", down.text);
    assert_eq!(
        down.json["error"], "Idempotency store unavailable",
        "{}",
        down.text
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let unkeyed = send_json(
        "POST",
        &cart.url("/api/create-order"),
        &json!({"orderId": "ORD-NO-KEY", "numItems": 1}),
    )
    .await;
    assert_eq!(unkeyed.status, 201, "{}", unkeyed.text);

    tokio::task::block_in_place(|| postgres.restart());
    let deadline = Instant::now() + WAIT;
    let created = loop {
        let reply = create(&cart, "keys-down", &body).await;
        if reply.status == 201 {
            break reply;
        }
        assert_eq!(reply.status, 503, "{}", reply.text);
        assert!(Instant::now() < deadline, "no recovery: {}", reply.text);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(create(&cart, "keys-down", &body).await.text, created.text);
    let published = orders_of(&broker, &orders, "ORD-KEYS-DOWN").await;
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(
        serde_json::to_value(&published[0]).unwrap(),
        created.json["data"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_while_the_broker_is_down_is_409_and_the_stored_order_is_published_later() {
    let mut broker = TestBroker::start_with(Storage::Sqlite);
    let cart = start(&broker);
    // The topics exist and the producer knows the broker.
    let warm = create(
        &cart.shell,
        "warm",
        &json!({"orderId": "ORD-WARM", "numItems": 1}),
    )
    .await;
    assert_eq!(warm.status, 201, "{}", warm.text);

    broker.stop();
    let body = json!({"orderId": "ORD-OUTAGE", "numItems": 3});
    let url = cart.shell.url("/api/create-order");
    let first = {
        let body = body.to_string();
        tokio::spawn(async move {
            let started = Instant::now();
            let headers = [("Idempotency-Key", "outage")];
            let reply = call_with("POST", &url, Some(body.as_bytes()), &headers).await;
            (reply, started.elapsed())
        })
    };
    // The first publish waits for the broker until its delivery timeout (3 s).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let retry = create(&cart.shell, "outage", &body).await;
    assert_eq!(retry.status, 409, "{}", retry.text);
    assert_eq!(retry.json["error"], "Request in progress");
    let wait: u64 = retry.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait >= 1, "Retry-After: {wait}");
    let (first, took) = first.await.unwrap();
    assert_eq!(first.status, 503, "{}", first.text);
    assert!(took >= Duration::from_secs(2), "answered after {took:?}");

    broker.restart();
    let deadline = Instant::now() + WAIT;
    let published = loop {
        let reply = create(&cart.shell, "outage", &body).await;
        if reply.status == 201 {
            break reply;
        }
        assert_eq!(reply.status, 503, "{}", reply.text);
        assert!(Instant::now() < deadline, "no recovery: {}", reply.text);
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(published.json["data"]["items"].as_array().unwrap().len(), 3);
    let replay = create(&cart.shell, "outage", &body).await;
    assert_eq!(replay.text, published.text);
    // Whatever attempt reached the broker, it carried the one stored order.
    let records = orders_of(&broker, &cart.orders, "ORD-OUTAGE").await;
    assert!(!records.is_empty());
    for order in &records {
        assert_eq!(serde_json::to_value(order).unwrap(), published.json["data"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_shed_with_503_and_every_202_is_on_the_topic() {
    const FLOOD: usize = 1000;
    let broker = TestBroker::start();
    let (orders, updates) = (unique_topic("orders"), unique_topic("updates"));
    let keys = tempfile::tempdir().unwrap();
    // Far fewer connections served than opened, and two publishes at a time with no wait
    // for a turn: a flood of a thousand must be shed in part, whatever the machine's pace.
    // A long delivery timeout: on a busy machine a slow acknowledgement is still a 202.
    let mut shell = ShellProcess::start(
        Path::new(env!("CARGO_BIN_EXE_cart-shell")),
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
            ("KAFKA_TOPIC", orders.clone()),
            ("KAFKA_STATUS_UPDATE_TOPIC", updates.clone()),
            ("KAFKA_DELIVERY_TIMEOUT_MS", "20000".into()),
            (
                "IDEMPOTENCY_DB",
                keys.path().join("keys.db").display().to_string(),
            ),
            ("HTTP_MAX_CONNECTIONS", "64".into()),
            ("PUBLISH_MAX_IN_FLIGHT", "2".into()),
            ("PUBLISH_QUEUE_WAIT_MS", "0".into()),
        ],
    );
    let url = shell.url("/api/update-order");
    let body = |id: &str| json!({"orderId": id, "status": "shipped"}).to_string();
    let warm = call_with("PUT", &url, Some(body("WARM").as_bytes()), &[]).await;
    assert_eq!(warm.status, 202, "{}", warm.text);

    // Each request on a connection of its own, all at once; `Connection: close` frees the
    // shell's slot as soon as it has answered.
    let flood: Vec<_> = (0..FLOOD)
        .map(|i| {
            let (url, id) = (url.clone(), format!("FLOOD-{i:04}"));
            let body = body(&id);
            tokio::spawn(async move {
                let headers = [("Connection", "close")];
                let reply = call_with("PUT", &url, Some(body.as_bytes()), &headers).await;
                (id, reply)
            })
        })
        .collect();
    let (mut accepted, mut shed) = (Vec::new(), Vec::new());
    for request in flood {
        let (id, reply) = request.await.unwrap();
        match reply.status {
            202 => accepted.push(id),
            503 => {
                assert_eq!(reply.json["error"], "Overloaded", "{}", reply.text);
                let wait: u64 = reply.headers["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(wait >= 1, "Retry-After: {wait}");
                shed.push(id);
            }
            other => panic!("{id}: {other} {}", reply.text),
        }
    }
    assert_eq!(accepted.len() + shed.len(), FLOOD);
    assert!(!shed.is_empty(), "nothing was shed");
    assert!(!accepted.is_empty(), "nothing was accepted");

    // Still up, healthy, and taking requests again without a restart.
    assert_eq!(shell.exited(), None, "{}", shell.log());
    let health = get(&shell.url("/health")).await;
    assert_eq!(health.status, 200, "{}", health.text);
    let after = call_with("PUT", &url, Some(body("AFTER").as_bytes()), &[]).await;
    assert_eq!(after.status, 202, "{}", after.text);

    // Every 202 is on the topic (acks=all), and no shed request is.
    let published: std::collections::HashSet<String> = read::<StatusUpdate>(&broker, &updates)
        .await
        .into_iter()
        .map(|record| record.event.unwrap().order_id)
        .collect();
    for id in accepted
        .iter()
        .chain(["WARM".to_owned(), "AFTER".to_owned()].iter())
    {
        assert!(
            published.contains(id),
            "{id} got 202 but is not on the topic"
        );
    }
    for id in &shed {
        assert!(!published.contains(id), "{id} got 503 but was published");
    }
}

#[test]
fn a_bad_setting_stops_the_shell_at_start_up_naming_the_variable() {
    for (name, value) in [
        ("KAFKA_TOPIC_PARTITIONS", "abc"),
        ("API_PORT", "99999"),
        ("IDEMPOTENCY_KEY_TTL", "tomorrow"),
        ("IDEMPOTENCY_MAX_KEYS", "0"),
        ("IDEMPOTENCY_DB", "/dev/null/keys.db"),
        ("PUBLISH_MAX_IN_FLIGHT", "0"),
        ("PUBLISH_QUEUE_WAIT_MS", "soon"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_cart-shell"))
            .env(name, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("invalid {name}=\"{value}\"")),
            "{stderr}"
        );
    }
}

/// A shell with its Idempotency-Key store in a directory removed with it.
struct Alone {
    shell: ShellProcess,
    _keys: tempfile::TempDir,
}

impl std::ops::Deref for Alone {
    type Target = ShellProcess;
    fn deref(&self) -> &ShellProcess {
        &self.shell
    }
}

impl std::ops::DerefMut for Alone {
    fn deref_mut(&mut self) -> &mut ShellProcess {
        &mut self.shell
    }
}

/// cart-shell with no broker behind it: enough for HTTP-level behaviour.
fn cart_alone(extra: &[(&str, String)]) -> Alone {
    let keys = tempfile::tempdir().unwrap();
    let mut env = vec![
        ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9".to_owned()),
        (
            "IDEMPOTENCY_DB",
            keys.path().join("keys.db").display().to_string(),
        ),
    ];
    env.extend(extra.iter().cloned());
    let shell = ShellProcess::start(Path::new(env!("CARGO_BIN_EXE_cart-shell")), &env);
    Alone { shell, _keys: keys }
}

/// Reads from `stream` until the end of the HTTP head (or the connection closes).
fn read_head(stream: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[test]
fn a_client_that_sends_headers_and_then_nothing_gets_408() {
    use std::io::Write;
    let cart = cart_alone(&[]);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", cart.port())).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
        .write_all(
            b"PUT /api/update-order HTTP/1.1\r\nHost: cart\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"orderId\"",
        )
        .unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 408"), "{head:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_beyond_the_limit_wait_and_never_take_the_shell_down() {
    use std::io::Read;
    let mut cart = cart_alone(&[("HTTP_MAX_CONNECTIONS", "8".into())]);
    // Twelve connections that never send a thing: eight are served, four wait.
    let idle: Vec<std::net::TcpStream> = (0..12)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", cart.port())).unwrap())
        .collect();
    // A real request waits for a slot (an idle connection is closed 10 s after it opened,
    // not kept forever) and is answered.
    let health = get(&cart.url("/health")).await;
    assert_eq!(health.status, 503, "{}", health.text); // no broker: answered all the same
    assert_eq!(cart.exited(), None);
    // It was answered only once served idle connections had been closed: the limit held it
    // back (without one it would be answered at once, every idle connection still open).
    let closed_before = idle
        .iter()
        .filter(|stream| {
            let mut byte = [0u8; 1];
            stream.set_nonblocking(true).is_ok()
                && matches!((&mut &**stream).read(&mut byte), Ok(0))
        })
        .count();
    assert!(closed_before >= 1, "the request did not wait for a slot");
    for stream in &idle {
        stream.set_nonblocking(false).unwrap();
    }
    // The idle connections the shell took were closed by it.
    let closed = tokio::task::spawn_blocking(move || {
        idle.into_iter()
            .filter_map(|mut stream| {
                stream.set_read_timeout(Some(WAIT)).ok()?;
                let mut byte = [0u8; 1];
                matches!(stream.read(&mut byte), Ok(0)).then_some(())
            })
            .count()
    })
    .await
    .unwrap();
    assert!(closed >= 8, "only {closed} idle connections were closed");
}
