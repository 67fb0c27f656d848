//! `POST /api/dlq/redrive` against the real processes: dead letters for orders that did not
//! exist yet are sent back once the orders do, and applied; nothing is sent twice, not even
//! by a restarted instance; a record that keeps failing stops at `DLQ_MAX_REDRIVES`.

mod common;

use std::time::Duration;

use common::{System, eventually, operator_post};
use ordering_core::order::{OrderEvent, StatusUpdate};
use ordering_core::{
    Header, REDRIVE_ORIGIN_OFFSET_HEADER, REDRIVE_ORIGIN_PARTITION_HEADER,
    REDRIVE_ORIGIN_TOPIC_HEADER,
};
use ordering_http::testing::Reply;
use ordering_kafka::order::AvroCodec;
use ordering_kafka::testing::{Storage, TestBroker, committed_offset};
use ordering_kafka::{Codec, KafkaProducer, ProducerConfig, read_topic};
use serde_json::{Value, json};

async fn redrive(system: &System, body: Value) -> Reply {
    operator_post(&system.order.url("/api/dlq/redrive"), &body).await
}

fn header(record: &ordering_core::Record<OrderEvent>, name: &str) -> Option<String> {
    record
        .meta
        .headers
        .iter()
        .find(|h| h.name == name)
        .and_then(|h| h.value.as_deref())
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn letters_are_redriven_once_their_orders_exist_and_never_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("orders.db").display());
    let mut system = System::start_with(
        TestBroker::start_with(Storage::Memory),
        &[
            ("ORDER_STORE_URL", store),
            ("DLQ_MAX_RETRIES", "0".into()),
            ("DLQ_MAX_REDRIVES", "1".into()),
        ],
    );
    system.wait_until_consuming().await;
    let started =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() - Duration::from_secs(60))
            .to_string();

    // Updates for orders that do not exist yet: dead letters, one each.
    let ids = ["RD-1", "RD-2", "RD-3", "RD-NEVER"];
    for id in ids {
        assert_eq!(system.update(id, "shipped").await.status, 202);
    }
    eventually("four dead letters", || async {
        (system.dead_letters().await.len() == 4).then_some(())
    })
    .await;

    // Bad filters are refused, naming the field.
    for (body, field) in [
        (json!({"errorClass": "sometimes"}), "errorClass"),
        (json!({"fromTimestamp": "last tuesday"}), "fromTimestamp"),
        (json!({"maxMessages": "many"}), "maxMessages"),
        (json!({"dryRun": "yes"}), "dryRun"),
        (json!({"orderID": "RD-1"}), "orderID"),
    ] {
        let reply = redrive(&system, body.clone()).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        let details = reply.json["details"].as_str().unwrap_or_default();
        assert!(details.contains(field), "{body}: {details}");
    }

    // A dry run says what would happen and changes nothing.
    let filter = json!({"errorType": "OrderNotFound", "fromTimestamp": started});
    let mut dry = filter.clone();
    dry["dryRun"] = json!(true);
    let reply = redrive(&system, dry.clone()).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["redrive"]["matched"], 4, "{}", reply.text);
    assert_eq!(reply.json["redrive"]["wouldRepublish"], 4);
    assert_eq!(reply.json["redrive"]["republished"], 0);

    // The orders arrive; a filtered redrive sends the three letters back, and they apply.
    for id in &ids[..3] {
        assert_eq!(system.create(id, 1).await.status, 201);
    }
    for id in &ids[..3] {
        eventually("the order stored", || async {
            (system.order_details(id).await.status == 200).then_some(())
        })
        .await;
    }
    let reply = redrive(&system, filter.clone()).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let report = &reply.json["redrive"];
    assert_eq!(report["matched"], 4, "{report}");
    assert_eq!(report["republished"], 4, "{report}");
    assert_eq!(report["skipped"], 0, "{report}");
    for id in &ids[..3] {
        eventually("the redriven update applied", || async {
            let reply = system.order_details(id).await;
            (reply.json["data"]["status"] == "shipped").then_some(())
        })
        .await;
    }
    // RD-NEVER fails again: a new letter, carrying its redrive count.
    let again = eventually("RD-NEVER dead-lettered again", || async {
        let letters = system.dead_letters().await;
        letters.into_iter().find(|l| l["redriveCount"] == 1)
    })
    .await;
    assert_eq!(again["originalKey"], "RD-NEVER");

    // The republished records are the letters' bytes, with the redrive headers.
    let records = read_topic::<OrderEvent, _>(
        &system.broker.bootstrap(),
        &system.topics[1],
        AvroCodec::new().unwrap(),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let redriven: Vec<_> = records
        .iter()
        .filter(|r| header(r, "redrive-count").is_some())
        .collect();
    assert_eq!(redriven.len(), 4);
    for record in &redriven {
        assert_eq!(header(record, "redrive-count").as_deref(), Some("1"));
        assert_eq!(
            header(record, "redrive-dlq-topic").as_deref(),
            Some(system.topics[2].as_str())
        );
        assert!(header(record, "redrive-dlq-offset").is_some());
        assert!(record.event.is_ok(), "the original bytes, decodable");
    }

    // A second run, and one by a restarted instance (same store), send nothing again: the
    // first letters were sent, and RD-NEVER's new one reached DLQ_MAX_REDRIVES=1.
    for restart in [false, true] {
        if restart {
            system.kill_order_shell();
            system.start_order_shell();
            system.wait_until_consuming().await;
        }
        let reply = redrive(&system, filter.clone()).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let report = &reply.json["redrive"];
        assert_eq!(report["matched"], 5, "{report}");
        assert_eq!(report["republished"], 0, "{report}");
        // The three applied are superseded (their orders hold them); RD-NEVER's first letter
        // was sent already.
        assert_eq!(report["skippedByReason"]["superseded"], 3, "{report}");
        assert_eq!(report["skippedByReason"]["alreadyRedriven"], 1, "{report}");
        assert_eq!(report["skippedByReason"]["maxRedrives"], 1, "{report}");
    }

    // Forced, and again, RD-NEVER's letters go back once more.
    let reply = redrive(
        &system,
        json!({"orderId": "RD-NEVER", "force": true, "again": true, "ratePerSecond": 5}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["redrive"]["republished"], 2, "{}", reply.text);
}

/// The story: `shipped` for an unknown order is dead-lettered; the order is created
/// and then `delivered`; "send back the OrderNotFound letters" must not make it `shipped`
/// again. Nor may a redriven copy that raced past the check, nor a redriven create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_never_moves_an_order_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("orders.db").display());
    let system = System::start_with(
        TestBroker::start_with(Storage::Memory),
        &[("ORDER_STORE_URL", store), ("DLQ_MAX_RETRIES", "0".into())],
    );
    system.wait_until_consuming().await;
    let status = |reply: Reply| reply.json["data"]["status"].as_str().map(str::to_owned);

    assert_eq!(system.update("ORD-BACK", "shipped").await.status, 202);
    let letter = eventually("the dead letter of shipped", || async {
        system.dead_letters().await.into_iter().next()
    })
    .await;
    assert_eq!(letter["errorType"], "OrderNotFound");
    assert_eq!(system.create("ORD-BACK", 2).await.status, 201);
    eventually("the order stored", || async {
        (system.order_details("ORD-BACK").await.status == 200).then_some(())
    })
    .await;
    assert_eq!(system.update("ORD-BACK", "delivered").await.status, 202);
    eventually("delivered", || async {
        (status(system.order_details("ORD-BACK").await).as_deref() == Some("delivered"))
            .then_some(())
    })
    .await;

    // The README's example: send back the OrderNotFound letters.
    let reply = redrive(&system, json!({"errorType": "OrderNotFound"})).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let report = &reply.json["redrive"];
    assert_eq!(report["republished"], 0, "{report}");
    assert_eq!(report["skippedByReason"]["superseded"], 1, "{report}");
    assert_eq!(report["letters"][0]["outcome"], "skipped", "{report}");
    assert_eq!(report["letters"][0]["reason"], "superseded", "{report}");

    // A copy that got past the check (sent before `delivered`, arriving after) carries its
    // origin; the consumer does not apply it either.
    let partition = letter["originalPartition"].as_i64().unwrap() as i32;
    let origin_offset = letter["originalOffset"].as_i64().unwrap();
    let producer = KafkaProducer::new(&ProducerConfig::new(system.broker.bootstrap())).unwrap();
    let copy = Codec::<StatusUpdate>::encode(
        &AvroCodec::new().unwrap(),
        &StatusUpdate::new(
            &ordering_core::order::OrderId::parse("ORD-BACK").unwrap(),
            &ordering_core::order::Status::parse("shipped").unwrap(),
            "2026-01-30T12:00:00Z".into(),
        ),
    )
    .unwrap();
    let origin = |name: &str, value: String| Header {
        name: name.into(),
        value: Some(value.into_bytes()),
    };
    let sent = producer
        .send(
            &system.topics[1],
            Some(b"ORD-BACK"),
            &copy,
            &[
                origin(REDRIVE_ORIGIN_TOPIC_HEADER, system.topics[1].clone()),
                origin(REDRIVE_ORIGIN_PARTITION_HEADER, partition.to_string()),
                origin(REDRIVE_ORIGIN_OFFSET_HEADER, origin_offset.to_string()),
            ],
        )
        .await
        .unwrap();
    eventually("the copy consumed and committed", || async {
        let (bootstrap, group, topic) = (
            system.broker.bootstrap(),
            system.group.clone(),
            system.topics[1].clone(),
        );
        let committed = tokio::task::spawn_blocking(move || {
            committed_offset(&bootstrap, &group, &topic, sent.partition)
        })
        .await
        .unwrap();
        committed.is_some_and(|c| c > sent.offset).then_some(())
    })
    .await;
    assert_eq!(
        status(system.order_details("ORD-BACK").await).as_deref(),
        Some("delivered"),
        "never backwards"
    );

    // A second create of the id (another order: cart-shell makes new items) is a duplicate:
    // dead-lettered, the first order kept, its status too; redriving it changes nothing.
    let before = system.order_details("ORD-BACK").await.json["data"]["items"].clone();
    assert_eq!(system.create("ORD-BACK", 5).await.status, 201);
    eventually("the duplicate's dead letter", || async {
        let letters = system.dead_letters().await;
        letters
            .into_iter()
            .find(|l| l["errorType"] == "DuplicateOrder")
    })
    .await;
    let reply = redrive(&system, json!({"errorType": "DuplicateOrder"})).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json["redrive"]["skippedByReason"]["superseded"], 1,
        "{}",
        reply.text
    );
    let after = system.order_details("ORD-BACK").await;
    assert_eq!(after.json["data"]["items"], before);
    assert_eq!(after.json["data"]["status"], "delivered");
}
