//! Several order-shell instances in one consumer group on one PostgreSQL: each answers for
//! every order; one killed with `kill -9` or a third joining and leaving under load loses
//! nothing, dead-letters nothing and never moves a status backwards.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use common::load::{
    Accepted, ORDERS, ROUNDS, assert_nothing_dead_lettered, converge, create_orders, order_id,
    rounds_done, start_load,
};
use common::{System, assigned, eventually};
use ordering_http::testing::{ShellProcess, get};
use ordering_kafka::testing::{Storage, TestBroker};
use ordering_store::testing::TestPostgres;

/// Every partition of both topics (3 each), held by exactly one of `instances`.
async fn wait_until_split(instances: &[&ShellProcess]) {
    eventually("the group to split every partition", || async {
        let mut held = Vec::new();
        for instance in instances {
            let mine = assigned(instance).await;
            if mine.is_empty() {
                return None;
            }
            held.extend(mine);
        }
        let distinct: HashSet<&String> = held.iter().collect();
        (held.len() == 6 && distinct.len() == 6).then_some(())
    })
    .await;
}

/// Each instance answers for every order, whichever consumed it.
async fn every_instance_answers_for_every_order(instances: &[&ShellProcess]) {
    for instance in instances {
        for n in 0..ORDERS {
            let id = order_id(n);
            let reply = get(&instance.url(&format!("/api/order-details?orderId={id}"))).await;
            assert_eq!(reply.status, 200, "{id}: {}", reply.text);
        }
        let stats = get(&instance.url("/api/stats")).await.json;
        assert_eq!(stats["totalOrders"], ORDERS);
        assert_eq!(
            common::operator_get(&instance.url("/api/dlq/messages"))
                .await
                .status,
            200
        );
    }
}

async fn two_instances_on_postgres(pg: &TestPostgres) -> (System, ShellProcess) {
    let system = System::start_with(
        TestBroker::start_with(Storage::Memory),
        &[
            ("ORDER_STORE_URL", pg.create_database().await),
            // A killed member is noticed after 6 s rather than librdkafka's 45 s.
            ("KAFKA_SESSION_TIMEOUT_MS", "6000".into()),
        ],
    );
    let second = system.another_order_shell();
    wait_until_split(&[&system.order, &second]).await;
    create_orders(&system).await;
    every_instance_answers_for_every_order(&[&system.order, &second]).await;
    (system, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_one_killed_under_load_lose_nothing() {
    let pg = TestPostgres::shared();
    let (mut system, second) = two_instances_on_postgres(&pg).await;

    let accepted = Accepted::default();
    let rounds = Arc::new(AtomicUsize::new(0));
    let load = start_load(system.cart.url(""), accepted.clone(), rounds.clone());
    rounds_done(&rounds, ROUNDS / 3).await;
    tokio::task::block_in_place(|| system.kill_order_shell());
    load.await.expect("the load ran to its end");

    converge(&second, &accepted).await;
    assert_nothing_dead_lettered(&second).await;
    let held = assigned(&second).await;
    assert_eq!(
        held.len(),
        6,
        "the survivor took every partition over: {held:?}"
    );
    every_instance_answers_for_every_order(&[&second]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_third_instance_joining_and_leaving_under_load_loses_nothing() {
    let pg = TestPostgres::shared();
    let (system, second) = two_instances_on_postgres(&pg).await;

    let accepted = Accepted::default();
    let rounds = Arc::new(AtomicUsize::new(0));
    let load = start_load(system.cart.url(""), accepted.clone(), rounds.clone());
    rounds_done(&rounds, ROUNDS / 4).await;
    let mut third = tokio::task::block_in_place(|| system.another_order_shell());
    eventually("the third instance to get partitions", || async {
        (!assigned(&third).await.is_empty()).then_some(())
    })
    .await;
    every_instance_answers_for_every_order(&[&system.order, &second, &third]).await;
    rounds_done(&rounds, 2 * ROUNDS / 3).await;
    let status = tokio::task::block_in_place(|| third.terminate());
    assert!(status.success(), "SIGTERM: exit {status}:\n{}", third.log());
    load.await.expect("the load ran to its end");

    converge(&system.order, &accepted).await;
    converge(&second, &accepted).await;
    assert_nothing_dead_lettered(&system.order).await;
    wait_until_split(&[&system.order, &second]).await;
}
