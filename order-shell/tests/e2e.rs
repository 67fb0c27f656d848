//! The whole system as real processes: a broker, cart-shell and order-shell, driven over HTTP
//! through the spec's three test cases, bad input, a poison record, a broker outage and
//! shutdown. Short backoffs come from the environment, as a deployment would set them.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::{System, eventually, operator_get};
use ordering_core::REDUCED_LETTER_PAYLOAD;
use ordering_http::testing::{call, get};
use ordering_kafka::testing::{Storage, TestBroker};
use ordering_kafka::{KafkaProducer, ProducerConfig};
use serde_json::{Value, json};

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
    assert_eq!(shipping, ordering_core::order::shipping_cost(total));

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
            // Neither framing: `00` would open the registry's.
            b"\x07garbage\xff",
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
        letter["originalValue"], "B2dhcmJhZ2X/",
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
        (
            "/api/getAllOrderIdsFromTopic?topicName=__consumer_offsets",
            400,
            "one of this service's topics",
        ),
        ("/api/dlq/messages?errorClass=bogus", 400, "errorClass"),
        ("/api/dlq/messages?cursor=0:x", 400, "cursor"),
        ("/api/unknown", 404, "no endpoint"),
    ];
    for (path, status, details) in cases {
        let reply = operator_get(&url(path)).await;
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
        operator_get(&system.order.url("/api/dlq/messages"))
            .await
            .status,
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
                system.broker.bootstrap(),
                &system.group,
                &system.topics[0],
                p,
            )
        })
        .sum();
    assert_eq!(committed, 1);
    assert!(system.cart.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_topics_with_other_settings_are_reported_at_start_up() {
    let system = System::start(Storage::Memory);
    system.wait_until_consuming().await; // the topics exist, with the broker's defaults
    let mut strict = system.another_order_shell_with(&[
        ("KAFKA_REPLICATION_FACTOR", "3".into()),
        ("KAFKA_MIN_INSYNC_REPLICAS", "2".into()),
    ]);
    let log = eventually("the warnings", || async {
        let log = strict.log();
        log.contains("min.insync.replicas").then_some(log)
    })
    .await;
    for topic in &system.topics {
        assert!(
            log.contains(&format!("topic {topic} has replication.factor = 1, not 3")),
            "{log}"
        );
    }
    // Created without one, the topics report none (the broker's default applies).
    assert!(
        log.contains("min.insync.replicas = (not reported), not 2"),
        "{log}"
    );
    // Reported, not fatal: the instance goes on and consumes.
    assert_eq!(strict.exited(), None);
    eventually("the strict instance to hold partitions", || async {
        let health = get(&strict.url("/health")).await;
        let held = health.json["consumer"]["assignedPartitions"]
            .as_array()
            .map(Vec::len);
        (held > Some(0)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_too_large_for_the_broker_is_written_reduced() {
    let system = System::start_with(
        TestBroker::start_with(Storage::Memory),
        &[("ORDER_STORE_URL", "memory://".into())],
    );
    system.wait_until_consuming().await;
    // A poison record just under the producer's 1 MB limit: its dead letter (the bytes plus
    // the failure's details) is over it, so the full letter can never be written.
    let producer = KafkaProducer::new(&ProducerConfig::new(system.broker.bootstrap())).unwrap();
    let payload = vec![0xffu8; 999_700];
    producer
        .send(&system.topics[1], Some(b"ORD-HUGE"), &payload, &[])
        .await
        .unwrap();

    let letters = eventually("the reduced dead letter", || async {
        let letters = system.dead_letters().await;
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    let letter = &letters[0];
    assert_eq!(letter["reduced"], true, "{letter}");
    assert_eq!(letter["originalValueSize"], 999_700);
    assert_eq!(letter["originalMessage"], Value::Null);
    assert_eq!(letter["errorType"], "DecodeError");
    assert_eq!(letter["originalKey"], "ORD-HUGE");
    let kept = BASE64
        .decode(letter["originalValue"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        kept,
        payload[..REDUCED_LETTER_PAYLOAD],
        "the first bytes, exactly"
    );

    // Its lane goes on: the same order's next events are applied.
    assert_eq!(system.create("ORD-HUGE", 1).await.status, 201);
    assert_eq!(system.update("ORD-HUGE", "shipped").await.status, 202);
    eventually("the later update applied", || async {
        let reply = system.order_details("ORD-HUGE").await;
        (reply.json["data"]["status"] == "shipped").then_some(())
    })
    .await;
    let health = get(&system.order.url("/health")).await;
    assert_eq!(health.status, 200, "{}", health.text);
    assert_eq!(health.json["consumer"]["deadLettersReduced"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_turns_red_while_a_dead_letter_keeps_failing() {
    let mut system = System::start_with(
        TestBroker::start_with(Storage::Sqlite),
        &[
            ("ORDER_STORE_URL", "memory://".into()),
            ("DLQ_UNHEALTHY_AFTER_MS", "1000".into()),
            // One retry, late enough to stop the broker before the letter is written.
            ("DLQ_MAX_RETRIES", "1".into()),
            ("DLQ_RETRY_BACKOFF_MS", "2000".into()),
        ],
    );
    system.wait_until_consuming().await;
    assert_eq!(system.update("ORD-NOWHERE", "shipped").await.status, 202);
    eventually("the update received", || async {
        let health = get(&system.order.url("/health")).await;
        (health.json["consumer"]["received"].as_u64() >= Some(1)).then_some(())
    })
    .await;
    system.broker.stop();

    let health = eventually("/health to report the failing dead letter", || async {
        let health = get(&system.order.url("/health")).await;
        (health.json["deadLetters"]["state"] == "failing").then_some(health)
    })
    .await;
    assert_eq!(health.status, 503, "{}", health.text);
    assert_eq!(health.json["status"], "unhealthy");
    let error = health.json["deadLetters"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("DLQ_UNHEALTHY_AFTER_MS=1000"), "{error}");
    assert!(
        health.json["consumer"]["deadLetterFailures"].as_u64() > Some(0),
        "{}",
        health.text
    );

    // Once the broker is back, the letter is written and the shell is healthy again.
    system.broker.restart();
    eventually("the dead letter written and /health green", || async {
        let health = get(&system.order.url("/health")).await;
        (health.status == 200 && health.json["deadLetters"]["state"] == "ok").then_some(())
    })
    .await;
    let letters = system.dead_letters().await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["originalKey"], "ORD-NOWHERE");
    assert_eq!(letters[0]["errorType"], "OrderNotFound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_browsed_page_by_page_with_filters_and_a_cursor() {
    let system = System::start_with(
        TestBroker::start_with(Storage::Memory),
        &[
            ("ORDER_STORE_URL", "memory://".into()),
            ("DLQ_MAX_RETRIES", "0".into()),
            ("KAFKA_TOPIC_PARTITIONS", "1".into()),
        ],
    );
    system.wait_until_consuming().await;
    for n in 0..5 {
        let reply = system.update(&format!("NOPE-{n}"), "shipped").await;
        assert_eq!(reply.status, 202);
    }
    let producer = KafkaProducer::new(&ProducerConfig::new(system.broker.bootstrap())).unwrap();
    producer
        .send(&system.topics[1], Some(b"ORD-POISON"), b"garbage", &[])
        .await
        .unwrap();
    let page = |query: String| {
        let url = system.order.url(&format!("/api/dlq/messages?{query}"));
        async move {
            let reply = operator_get(&url).await;
            assert_eq!(reply.status, 200, "{}", reply.text);
            reply.json
        }
    };
    eventually("six dead letters", || async {
        (page("limit=100".into()).await["messageCount"] == 6).then_some(())
    })
    .await;

    // Two at a time, each page going on where the last one stopped.
    let mut keys = Vec::new();
    let mut cursor = String::new();
    for _ in 0..10 {
        let answer = page(format!("limit=2{cursor}")).await;
        assert!(answer["messageCount"].as_u64() <= Some(2), "{answer}");
        assert_eq!(answer["totalCount"], 6);
        for letter in answer["messages"].as_array().unwrap() {
            keys.push(
                letter["originalKey"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        match answer["nextCursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    let expected: Vec<String> = (0..5)
        .map(|n| format!("NOPE-{n}"))
        .chain(["ORD-POISON".to_owned()])
        .collect();
    assert_eq!(keys, expected, "every letter once, in order");

    // Filters.
    let one = page("orderId=NOPE-3".into()).await;
    assert_eq!(one["messageCount"], 1, "{one}");
    assert_eq!(one["messages"][0]["originalKey"], "NOPE-3");
    let poison = page("errorClass=poison".into()).await;
    assert_eq!(poison["messageCount"], 1, "{poison}");
    assert_eq!(poison["messages"][0]["errorType"], "DecodeError");
    let missing = page("errorType=OrderNotFound&offset=1&limit=2".into()).await;
    let keys: Vec<&str> = missing["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["originalKey"].as_str())
        .collect();
    assert_eq!(keys, ["NOPE-1", "NOPE-2"], "{missing}");

    let ids = get(&system.order.url(&format!(
        "/api/getAllOrderIdsFromTopic?topicName={}",
        system.topics[2]
    )))
    .await;
    assert_eq!(ids.status, 200, "{}", ids.text);
    assert_eq!(ids.json["count"], 6);
    assert_eq!(ids.json["truncated"], false);
    // Pages of `limit` distinct ids, the next from where the last stopped.
    let url = |rest: &str| {
        system.order.url(&format!(
            "/api/getAllOrderIdsFromTopic?topicName={}&limit=4{rest}",
            system.topics[2]
        ))
    };
    let first = get(&url("")).await;
    assert_eq!(first.json["count"], 4, "{}", first.text);
    assert_eq!(first.json["truncated"], true);
    let cursor = first.json["nextCursor"].as_str().unwrap().to_owned();
    let second = get(&url(&format!("&cursor={cursor}"))).await;
    assert_eq!(second.json["count"], 2, "{}", second.text);
    assert_eq!(second.json["truncated"], false);
    let paged: Vec<&str> = [&first, &second]
        .iter()
        .flat_map(|page| page.json["orderIds"].as_array().unwrap())
        .filter_map(|id| id.as_str())
        .collect();
    assert_eq!(paged, expected, "each id once, in topic order");
    let too_many = get(&url("&limit=10001")).await;
    assert_eq!(too_many.status, 400, "{}", too_many.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_say_which_record_each_line_is_about() {
    let system = System::start_with(
        TestBroker::start_with(Storage::Memory),
        &[
            ("ORDER_STORE_URL", "memory://".into()),
            ("LOG_FORMAT", "json".into()),
        ],
    );
    system.wait_until_consuming().await;
    assert_eq!(system.update("NOPE-LOG", "shipped").await.status, 202);
    eventually("the dead letter", || async {
        (!system.dead_letters().await.is_empty()).then_some(())
    })
    .await;
    let log = system.order.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let letter = lines
        .iter()
        .find(|l| l["fields"]["message"] == "dead-lettered")
        .unwrap_or_else(|| panic!("no dead-lettered line in:\n{log}"));
    let span = &letter["span"];
    assert_eq!(span["name"], "record");
    assert_eq!(span["key"], "NOPE-LOG");
    assert_eq!(span["topic"], system.topics[1].as_str());
    assert_eq!(span["offset"], 0);
}

#[test]
fn a_consumer_that_cannot_start_stops_order_shell_with_a_non_zero_exit() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let broker = TestBroker::start();
    let mut order = Command::new(env!("CARGO_BIN_EXE_order-shell"))
        .env("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap())
        .env("KAFKA_DLQ_TOPIC", "not a topic name!")
        .env("ORDER_STORE_URL", "memory://")
        .env("API_HOST", "127.0.0.1")
        .env("API_PORT", "0")
        .stdout(Stdio::piped()) // the log
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = order.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = order.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    if let Some(mut out) = order.stdout.take() {
        let _ = out.read_to_string(&mut log);
    }
    let status = status.unwrap_or_else(|| panic!("still running without a consumer:\n{log}"));
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("the consumer stopped with an error"), "{log}");
    assert!(log.contains("KAFKA_REPLICATION_FACTOR"), "{log}");
    assert!(log.contains("InvalidTopic"), "{log}");
}

#[test]
fn a_bad_setting_stops_order_shell_at_start_up_naming_the_variable() {
    for (name, value) in [
        ("DLQ_MAX_RETRIES", "abc"),
        ("DLQ_RETRY_BACKOFF_MS", "0"),
        ("DLQ_MAX_BACKOFF_MS", "1"),
        ("ORDER_STORE_URL", "mysql://db/orders"),
        ("ORDER_STORE_URL", "sqlite://"),
        ("KAFKA_REPLICATION_FACTOR", "0"),
        ("DLQ_UNHEALTHY_AFTER_MS", "never"),
        ("LOG_FORMAT", "xml"),
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
    // The sampler is read where traces are exported: the libraries decide by it before a
    // record's span is built.
    for (sampler, arg, bad) in [
        ("sometimes", "", "OTEL_TRACES_SAMPLER=\"sometimes\""),
        ("traceidratio", "1.5", "OTEL_TRACES_SAMPLER_ARG=\"1.5\""),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_order-shell"))
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
            .env("OTEL_TRACES_SAMPLER", sampler)
            .env("OTEL_TRACES_SAMPLER_ARG", arg)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&format!("invalid {bad}")), "{stderr}");
    }
}
