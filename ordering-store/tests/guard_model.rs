//! The position guard against a model, on every store: proptest generates interleavings of
//! creates, status updates, replays (a redelivery after a crash, or a redrive, which carries
//! its origin's position) and rebalances (the next writes come through a second store handle
//! on the same data, as from another instance), runs each on the memory store, on SQLite and
//! on PostgreSQL, and checks every write's answer and the final orders against the model:
//! the first create of an id wins; an update applies unless its topic and partition are those
//! of the order's last applied update and its offset is not above it; an order's status,
//! reason and positions are those of the last update applied.
//!
//! `GUARD_CASES` (default 48) and `GUARD_SEED` choose the run; a failure prints its seed and
//! the smallest history proptest shrank it to. PostgreSQL runs on a throwaway server (or
//! `TEST_POSTGRES_URL`), a database per history.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;

use ordering_core::order::{
    CreateWrite, HistoryEntry, Order, OrderId, OrderItem, OrderPositions, Status, StatusChange,
    StatusWrite,
};
use ordering_core::testing::Seeded;
use ordering_core::{Position, Written};
use ordering_store::testing::TestPostgres;
use ordering_store::{Store, StoreUrl};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const IDS: usize = 3;
const STATUSES: [&str; 5] = ["pending", "paid", "shipped", "delivered", "cancelled"];
const TOPICS: [&str; 2] = ["order-status-updates", "order-status-updates-v2"];

#[derive(Debug, Clone)]
struct At {
    topic: usize,
    partition: i32,
    offset: i64,
}

impl At {
    fn position(&self) -> Position {
        Position::new(TOPICS[self.topic], self.partition, self.offset)
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Creates order `id`; `variant` tells two different orders under one id apart.
    Create { id: usize, variant: u8, at: At },
    Update {
        id: usize,
        status: usize,
        reason: Option<u8>,
        at: At,
    },
    /// The `n`-th write so far (modulo their number), again, as it was: a redelivery, or a
    /// redrive (same origin position).
    Replay(usize),
    /// The writes from here on go through the other store handle.
    Rebalance,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Create(CreateWrite),
    Status(StatusWrite),
}

/// What the model holds of an order.
#[derive(Debug, Clone)]
struct Modelled {
    variant: u8,
    created: Position,
    status: String,
    reason: Option<String>,
    status_at: Option<Position>,
    /// Every status applied, oldest first: status, reason, position.
    history: Vec<(String, Option<String>, Position)>,
}

#[derive(Debug, Default)]
struct Model {
    orders: HashMap<usize, Modelled>,
}

impl Model {
    fn apply(&mut self, op: &Op) -> Answer {
        match op {
            Op::Create { id, variant, at } => match self.orders.get(id) {
                Some(order) if order.variant == *variant => {
                    Answer::Create(CreateWrite::Written(Written::AlreadyApplied))
                }
                Some(_) => Answer::Create(CreateWrite::Duplicate),
                None => {
                    self.orders.insert(
                        *id,
                        Modelled {
                            variant: *variant,
                            created: at.position(),
                            status: "pending".into(),
                            reason: None,
                            status_at: None,
                            history: vec![("pending".into(), None, at.position())],
                        },
                    );
                    Answer::Create(CreateWrite::Written(Written::Applied))
                }
            },
            Op::Update {
                id,
                status,
                reason,
                at,
            } => {
                let Some(order) = self.orders.get_mut(id) else {
                    return Answer::Status(StatusWrite::NotFound);
                };
                let at = at.position();
                let covered = order.status_at.as_ref().is_some_and(|last| {
                    last.topic == at.topic
                        && last.partition == at.partition
                        && at.offset <= last.offset
                });
                if covered {
                    return Answer::Status(StatusWrite::Written(Written::AlreadyApplied));
                }
                order.status = STATUSES[*status].into();
                order.reason = reason.map(reason_text);
                let entry = (order.status.clone(), order.reason.clone(), at.clone());
                order.history.push(entry);
                order.status_at = Some(at);
                Answer::Status(StatusWrite::Written(Written::Applied))
            }
            Op::Replay(_) | Op::Rebalance => unreachable!("resolved before the model"),
        }
    }
}

fn reason_text(n: u8) -> String {
    format!("reason {n}")
}

fn order_id(id: usize) -> OrderId {
    OrderId::parse(&format!("ORD-GUARD-{id}")).unwrap()
}

fn order(id: usize, variant: u8) -> Order {
    Order {
        order_id: order_id(id),
        customer_id: "CUST-0001".into(),
        order_date: "2026-11-30T12:00:00Z".into(),
        items: vec![OrderItem {
            item_id: format!("ITEM-{variant}"),
            quantity: 1,
            price: 10.0 + f64::from(variant),
        }],
        total_amount: 10.0 + f64::from(variant),
        currency: "EUR".into(),
        status: Status::parse("pending").unwrap(),
        status_reason: None,
    }
}

async fn write(store: &dyn Store, op: &Op) -> Answer {
    match op {
        Op::Create { id, variant, at } => Answer::Create(
            store
                .create(&order(*id, *variant), at.position())
                .await
                .unwrap(),
        ),
        Op::Update {
            id,
            status,
            reason,
            at,
        } => Answer::Status(
            store
                .update_status(
                    &order_id(*id),
                    StatusChange::new(Status::parse(STATUSES[*status]).unwrap(), at.position())
                        .with_reason(reason.map(reason_text)),
                )
                .await
                .unwrap(),
        ),
        Op::Replay(_) | Op::Rebalance => unreachable!("resolved before writing"),
    }
}

/// Runs `ops` on the two handles `stores` (one data set), checking each answer and the end
/// state against the model.
async fn check(stores: [Arc<dyn Store>; 2], ops: &[Op]) -> Result<(), String> {
    let mut model = Model::default();
    let mut writes: Vec<Op> = Vec::new();
    let mut handle = 0;
    for (n, op) in ops.iter().enumerate() {
        let op = match op {
            Op::Rebalance => {
                handle = 1 - handle;
                continue;
            }
            Op::Replay(k) if writes.is_empty() => {
                let _ = k;
                continue;
            }
            Op::Replay(k) => writes[k % writes.len()].clone(),
            write => write.clone(),
        };
        let expected = model.apply(&op);
        let answer = write(stores[handle].as_ref(), &op).await;
        if answer != expected {
            return Err(format!(
                "step {n}, {op:?} through handle {handle}: the store answered {answer:?}, the model {expected:?}"
            ));
        }
        writes.push(op);
    }
    for id in 0..IDS {
        let stored = stores[0].get(&order_id(id)).await.unwrap();
        let positions = stores[1].positions(&order_id(id)).await.unwrap();
        match (model.orders.get(&id), stored, positions) {
            (None, None, None) => {}
            (Some(m), Some(stored), Some(positions)) => {
                let want = OrderPositions {
                    created: m.created.clone(),
                    status: m.status_at.clone(),
                };
                // Read a page at a time, through the other handle.
                let mut history = Vec::new();
                loop {
                    let after = history.last().map(|e: &HistoryEntry| e.seq);
                    let page = stores[1].history(&order_id(id), after, 3).await.unwrap();
                    if page.is_empty() {
                        break;
                    }
                    history.extend(page);
                }
                let history: Vec<_> = history
                    .into_iter()
                    .map(|e| (e.status, e.reason, e.at))
                    .collect();
                if stored.status.to_string() != m.status
                    || stored.status_reason != m.reason
                    || positions != want
                    || stored.items != order(id, m.variant).items
                    || history != m.history
                {
                    return Err(format!(
                        "order {id}: stored {} {:?} {positions:?} with items {:?} and history {history:?}, the model {m:?}",
                        stored.status, stored.status_reason, stored.items
                    ));
                }
            }
            (m, stored, positions) => {
                return Err(format!(
                    "order {id}: the model has {m:?}, the store {stored:?} / {positions:?}"
                ));
            }
        }
    }
    Ok(())
}

fn at() -> impl Strategy<Value = At> {
    (0..TOPICS.len(), 0..2i32, 0..12i64).prop_map(|(topic, partition, offset)| At {
        topic,
        partition,
        offset,
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..IDS, 0..2u8, at()).prop_map(|(id, variant, at)| Op::Create { id, variant, at }),
        5 => (0..IDS, 0..STATUSES.len(), proptest::option::of(0..3u8), at()).prop_map(
            |(id, status, reason, at)| Op::Update { id, status, reason, at }
        ),
        2 => any::<usize>().prop_map(Op::Replay),
        1 => Just(Op::Rebalance),
    ]
}

/// Runs the generated histories on the stores `open` gives (two handles on fresh data each).
fn run<F>(name: &str, open: F)
where
    F: Fn(&tokio::runtime::Runtime) -> [Arc<dyn Store>; 2],
{
    let Seeded {
        mut runner,
        seed,
        cases,
    } = Seeded::new("GUARD", 48);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let result = runner.run(&proptest::collection::vec(op(), 1..40), |ops| {
        let stores = open(&runtime);
        runtime
            .block_on(check(stores, &ops))
            .map_err(TestCaseError::fail)
    });
    if let Err(failure) = result {
        panic!(
            "{name}, GUARD_SEED={seed} ({cases} cases): {failure}\n\
             replay: GUARD_SEED={seed} GUARD_CASES={cases} cargo test -p ordering-store --test guard_model"
        );
    }
    eprintln!("{name}: {cases} histories, seed {seed}: the guard kept the model");
}

#[test]
fn the_memory_store_keeps_the_guards_model() {
    run("memory", |runtime| {
        let store = runtime.block_on(StoreUrl::Memory.open()).unwrap();
        [store.clone(), store]
    });
}

#[test]
fn the_sqlite_store_keeps_the_guards_model() {
    let dir = tempfile::tempdir().unwrap();
    let count = std::sync::atomic::AtomicU64::new(0);
    run("sqlite", |runtime| {
        let n = count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.path().join(format!("orders-{n}.db"));
        let url = StoreUrl::parse(&format!("sqlite://{}", path.display())).unwrap();
        let first = runtime.block_on(url.open()).unwrap();
        let second = runtime.block_on(url.open()).unwrap();
        [first, second]
    });
}

#[test]
fn the_postgres_store_keeps_the_guards_model() {
    let pg = TestPostgres::shared();
    run("postgres", |runtime| {
        let url = StoreUrl::parse(&runtime.block_on(pg.create_database())).unwrap();
        let first = runtime.block_on(url.open()).unwrap();
        let second = runtime.block_on(url.open()).unwrap();
        [first, second]
    });
}
