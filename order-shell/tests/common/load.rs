//! A steady load of status updates through cart-shell, and the checks every `202` must pass.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ordering_http::testing::{ShellProcess, get, send_json};
use serde_json::json;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::{System, eventually};

pub const ORDERS: usize = 12;
pub const ROUNDS: usize = 30;

pub fn order_id(n: usize) -> String {
    format!("ORD-DUR-{n:02}")
}

/// Statuses sort in the order they are sent: `step-001`, `step-002`, ...
pub fn step(round: usize) -> String {
    format!("step-{round:03}")
}

/// Creates the orders and waits until order-shell has them all.
pub async fn create_orders(system: &System) {
    for n in 0..ORDERS {
        let reply = system.create(&order_id(n), 1 + n as i64 % 3).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
    }
    eventually("every order in order-shell", || async {
        let stats = get(&system.order.url("/api/stats")).await;
        (stats.json["totalOrders"] == ORDERS).then_some(())
    })
    .await;
}

/// The last status each order was sent with a `202`, shared with the load task.
pub type Accepted = Arc<Mutex<HashMap<String, String>>>;

/// Sends `ROUNDS` rounds of updates through cart-shell at `cart`, each round one update per
/// order (concurrently), counting finished rounds in `rounds`. Only a `202` counts.
pub fn start_load(cart: String, accepted: Accepted, rounds: Arc<AtomicUsize>) -> JoinHandle<()> {
    tokio::spawn(async move {
        for round in 1..=ROUNDS {
            let sends = (0..ORDERS).map(|n| {
                let url = format!("{cart}/api/update-order");
                async move {
                    let body = json!({"orderId": order_id(n), "status": step(round)});
                    (n, send_json("PUT", &url, &body).await.status)
                }
            });
            for (n, status) in futures::future::join_all(sends).await {
                assert_eq!(status, 202, "cart-shell is not the one under test here");
                accepted.lock().await.insert(order_id(n), step(round));
            }
            rounds.store(round, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// Waits until the load has finished `n` rounds.
pub async fn rounds_done(rounds: &AtomicUsize, n: usize) {
    while rounds.load(Ordering::SeqCst) < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until every order shows its last accepted status, checking on every look that no
/// status ever moves backwards.
pub async fn converge(order_shell: &ShellProcess, accepted: &Accepted) {
    let expected = accepted.lock().await.clone();
    assert_eq!(expected.len(), ORDERS);
    let seen: Mutex<HashMap<String, String>> = Mutex::default();
    eventually("every accepted update applied", || async {
        let mut done = true;
        for (id, last) in &expected {
            let reply = get(&order_shell.url(&format!("/api/order-details?orderId={id}"))).await;
            assert_ne!(reply.status, 404, "{id} was lost: {}", reply.text);
            if reply.status != 200 {
                done = false; // the store or the shell is not back yet
                continue;
            }
            let now = reply.json["data"]["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let mut seen = seen.lock().await;
            let before = seen.insert(id.clone(), now.clone()).unwrap_or_default();
            assert!(now >= before, "{id} went backwards: {before} then {now}");
            done &= &now == last;
        }
        done.then_some(())
    })
    .await;
}

/// The DLQ, as `order_shell` reads it, is empty.
pub async fn assert_nothing_dead_lettered(order_shell: &ShellProcess) {
    let reply = super::operator_get(&order_shell.url("/api/dlq/messages")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let letters = reply.json["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(letters.is_empty(), "dead letters: {letters:#?}");
}
