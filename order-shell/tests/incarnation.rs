//! A topic deleted and created again under a running order-shell is a new incarnation of its
//! partitions, not a redelivery of the old one: its updates are applied at offsets the old
//! topic had used already, the dead letters of its records are redriven though the ledger
//! holds an old letter at the same offset, and the numbering holds across a `kill -9`.

mod common;

use common::{System, eventually, operator_post};
use ordering_http::testing::{Reply, get};
use ordering_kafka::testing::{Storage, TestBroker, recreate_topic};
use serde_json::{Value, json};

fn status(reply: &Reply) -> Option<&str> {
    reply.json["data"]["status"].as_str()
}

async fn wait_for_status(system: &System, id: &str, wanted: &str) {
    eventually(&format!("{id} {wanted}"), || async {
        (status(&system.order_details(id).await) == Some(wanted)).then_some(())
    })
    .await;
}

async fn create(system: &System, id: &str) {
    assert_eq!(system.create(id, 1).await.status, 201);
    eventually(&format!("{id} stored"), || async {
        (system.order_details(id).await.status == 200).then_some(())
    })
    .await;
}

/// The one letter of `id`, once there.
async fn letter_of(system: &System, id: &str) -> Value {
    eventually(&format!("the dead letter of {id}"), || async {
        let letters = system.dead_letters().await;
        letters.into_iter().find(|l| l["originalKey"] == id)
    })
    .await
}

async fn redrive(system: &System, id: &str) -> Value {
    let reply = operator_post(
        &system.order.url("/api/dlq/redrive"),
        &json!({"orderId": id}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json["redrive"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_created_again_is_read_as_a_new_incarnation() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("orders.db").display());
    let mut system = System::start_with(
        TestBroker::start_with(Storage::Memory),
        &[
            ("ORDER_STORE_URL", store),
            ("DLQ_MAX_RETRIES", "0".into()),
            // One partition: every update of either incarnation lands on it, in order.
            ("KAFKA_TOPIC_PARTITIONS", "1".into()),
            // The killed member's partitions come back after this, not librdkafka's 45 s.
            ("KAFKA_SESSION_TIMEOUT_MS", "6000".into()),
        ],
    );
    system.wait_until_consuming().await;
    let updates = system.topics[1].clone();

    // The first incarnation: INC-1 goes through four statuses (offsets 0 to 3); an update of
    // INC-LATE, not there yet, is dead-lettered (offset 4) and redriven once it is.
    create(&system, "INC-1").await;
    for n in 1..=4 {
        assert_eq!(
            system.update("INC-1", &format!("old-{n}")).await.status,
            202
        );
    }
    wait_for_status(&system, "INC-1", "old-4").await;
    assert_eq!(system.update("INC-LATE", "late").await.status, 202);
    let old_letter = letter_of(&system, "INC-LATE").await;
    assert_eq!(old_letter["originalOffset"], 4, "{old_letter}");
    create(&system, "INC-LATE").await;
    assert_eq!(redrive(&system, "INC-LATE").await["republished"], 1);
    wait_for_status(&system, "INC-LATE", "late").await;

    let (before, after) = recreate_topic(&system.broker.bootstrap(), &updates, 1).await;
    assert_ne!(before, after);

    // The second incarnation starts over at offset 0, below every position INC-1 holds: each
    // update is applied all the same, in order.
    for n in 1..=4 {
        let status = format!("new-{n}");
        // Published once cart-shell's producer has found the new topic.
        eventually("the update accepted", || async {
            (system.update("INC-1", &status).await.status == 202).then_some(())
        })
        .await;
        wait_for_status(&system, "INC-1", &status).await;
    }
    // INC-LATER's update, dead-lettered, sits at offset 4 of the new topic: where INC-LATE's
    // did in the old one, whose record the ledger remembers as redriven.
    assert_eq!(system.update("INC-LATER", "later").await.status, 202);
    let new_letter = letter_of(&system, "INC-LATER").await;
    assert_eq!(new_letter["originalOffset"], 4, "{new_letter}");
    create(&system, "INC-LATER").await;
    let report = redrive(&system, "INC-LATER").await;
    assert_eq!(report["republished"], 1, "{report}");
    wait_for_status(&system, "INC-LATER", "later").await;

    // After a kill -9, the restarted instance numbers the topic as before: records it gets
    // again are redeliveries (nothing applied twice), a new one is applied.
    system.kill_order_shell();
    system.start_order_shell();
    system.wait_until_consuming().await;
    assert_eq!(system.update("INC-1", "new-5").await.status, 202);
    wait_for_status(&system, "INC-1", "new-5").await;

    let history = get(&system.order.url("/api/order-history?orderId=INC-1")).await;
    assert_eq!(history.status, 200, "{}", history.text);
    let entries = history.json["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let applied: Vec<(String, i64)> = entries
        .iter()
        .skip(1) // the create
        .map(|e| {
            let status = e["status"].as_str().unwrap_or_default().to_owned();
            (status, e["incarnation"].as_i64().unwrap_or_default())
        })
        .collect();
    let expected: Vec<(String, i64)> = (1..=4)
        .map(|n| (format!("old-{n}"), 1))
        .chain((1..=5).map(|n| (format!("new-{n}"), 2)))
        .collect();
    assert_eq!(applied, expected, "{}", history.text);
    // Only the two letters of orders that were not there: nothing of INC-1 was refused.
    let letters = system.dead_letters().await;
    assert_eq!(letters.len(), 2, "{letters:?}");
}
