//! `POST /api/dlq/redrive` against the real processes: dead letters for orders that did not
//! exist yet are sent back once the orders do, and applied; nothing is sent twice, not even
//! by a restarted instance; a record that keeps failing stops at `DLQ_MAX_REDRIVES`.

mod common;

use std::time::Duration;

use common::{System, eventually, operator_post};
use ordering_core::order::OrderEvent;
use ordering_kafka::testing::{Storage, TestBroker};
use ordering_kafka::{AvroCodec, read_topic};
use serde_json::{Value, json};
use shell_http::testing::Reply;

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
        assert_eq!(report["skippedByReason"]["alreadyRedriven"], 4, "{report}");
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
