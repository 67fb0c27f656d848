//! One contract, three backends: every `OrderStore` behaves the same, and the durable ones
//! keep it across a reopen. PostgreSQL runs on a throwaway server (or `TEST_POSTGRES_URL`).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ordering_core::order::{
    CreateWrite, Order, OrderId, OrderItem, OrderPositions, OrderStore, Status, StatusChange,
    StatusWrite,
};
use ordering_core::{Claim, Position, RedriveKey, RedriveLedger, Redriven, StoreError, Written};
use ordering_store::testing::TestPostgres;
use ordering_store::{OpenError, Store, StoreUrl, open_ledger};

fn id(s: &str) -> OrderId {
    OrderId::parse(s).unwrap()
}

fn status(s: &str) -> Status {
    Status::parse(s).unwrap()
}

fn at(partition: i32, offset: i64) -> Position {
    Position::new("t", partition, offset)
}

fn order(order_id: &str, items: i32) -> Order {
    Order {
        order_id: id(order_id),
        customer_id: "CUST-0042".into(),
        order_date: "2026-01-30T12:00:00Z".into(),
        items: (0..items)
            .map(|i| OrderItem {
                item_id: format!("ITEM-{i}"),
                quantity: 1,
                price: 2.5,
            })
            .collect(),
        total_amount: 2.5 * f64::from(items),
        currency: "EUR".into(),
        status: status("pending"),
        status_reason: None,
    }
}

async fn current_status(store: &dyn OrderStore, order_id: &str) -> String {
    store
        .get(&id(order_id))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{order_id} is stored"))
        .status
        .to_string()
}

/// A status update that must be answered.
async fn set(s: &dyn OrderStore, order_id: &str, new_status: &str, at: Position) -> StatusWrite {
    s.update_status(&id(order_id), StatusChange::new(status(new_status), at))
        .await
        .unwrap()
}

/// An order creation that must be answered.
async fn put(s: &dyn OrderStore, order_id: &str, items: i32, at: Position) -> CreateWrite {
    s.create(&order(order_id, items), at).await.unwrap()
}

/// Every id, read `page` at a time.
async fn all_ids(s: &dyn OrderStore, page: usize) -> Vec<OrderId> {
    let mut ids: Vec<OrderId> = Vec::new();
    loop {
        let next = s.ids(ids.last().cloned(), page).await.unwrap();
        assert!(next.len() <= page);
        if next.is_empty() {
            return ids;
        }
        ids.extend(next);
    }
}

const CREATED: CreateWrite = CreateWrite::Written(Written::Applied);
const SAME_ORDER: CreateWrite = CreateWrite::Written(Written::AlreadyApplied);
const APPLIED: StatusWrite = StatusWrite::Written(Written::Applied);
const ALREADY: StatusWrite = StatusWrite::Written(Written::AlreadyApplied);

/// The contract every store keeps.
async fn contract(store: Arc<dyn Store>) {
    ledger_contract(store.as_ref()).await;
    let whole = store.clone();
    let store: Arc<dyn OrderStore> = store;
    let s = store.as_ref();
    store.check_writable().await.unwrap();
    assert_eq!(s.get(&id("ORD-1")).await.unwrap(), None);
    assert_eq!(s.count().await.unwrap(), 0);

    // Created, read back whole.
    assert_eq!(put(s, "ORD-1", 2, at(0, 5)).await, CREATED);
    assert_eq!(s.get(&id("ORD-1")).await.unwrap(), Some(order("ORD-1", 2)));

    // A status update of an unknown order finds nothing and changes nothing.
    let unknown = s
        .update_status(&id("NOPE"), StatusChange::new(status("shipped"), at(0, 1)))
        .await;
    assert_eq!(unknown.unwrap(), StatusWrite::NotFound);
    assert_eq!(s.get(&id("NOPE")).await.unwrap(), None);

    // Updates apply in position order; redeliveries at or below the last position do not.
    assert_eq!(set(s, "ORD-1", "paid", at(1, 10)).await, APPLIED);
    assert_eq!(set(s, "ORD-1", "shipped", at(1, 11)).await, APPLIED);
    assert_eq!(set(s, "ORD-1", "paid", at(1, 10)).await, ALREADY);
    assert_eq!(set(s, "ORD-1", "shipped", at(1, 11)).await, ALREADY);
    assert_eq!(
        current_status(s, "ORD-1").await,
        "shipped",
        "never backwards"
    );

    // The order event delivered again (or redriven, wherever from) changes nothing: the
    // status stays.
    assert_eq!(put(s, "ORD-1", 2, at(0, 5)).await, SAME_ORDER);
    assert_eq!(put(s, "ORD-1", 2, at(3, 40)).await, SAME_ORDER);
    assert_eq!(current_status(s, "ORD-1").await, "shipped");

    // Another order under the id is a duplicate, wherever it comes from: the first stays,
    // status and all.
    assert_eq!(put(s, "ORD-1", 9, at(0, 4)).await, CreateWrite::Duplicate);
    assert_eq!(put(s, "ORD-1", 3, at(0, 8)).await, CreateWrite::Duplicate);
    let kept = s.get(&id("ORD-1")).await.unwrap().unwrap();
    assert_eq!((kept.items.len(), kept.status.as_str()), (2, "shipped"));
    assert_eq!(set(s, "ORD-1", "paid", at(1, 10)).await, ALREADY);
    assert_eq!(set(s, "ORD-1", "delivered", at(1, 12)).await, APPLIED);

    // Another partition, or another topic, is another sequence: applied.
    assert_eq!(set(s, "ORD-1", "returned", at(2, 0)).await, APPLIED);
    assert_eq!(current_status(s, "ORD-1").await, "returned");
    let elsewhere = Position::new("u", 2, 0);
    assert_eq!(
        set(s, "ORD-1", "refunded", elsewhere.clone()).await,
        APPLIED
    );
    assert_eq!(
        set(s, "ORD-1", "refunded", elsewhere.clone()).await,
        ALREADY
    );

    // The positions of the last writes, topics included.
    assert_eq!(
        s.positions(&id("ORD-1")).await.unwrap(),
        Some(OrderPositions {
            created: at(0, 5),
            status: Some(elsewhere),
        })
    );
    assert_eq!(s.positions(&id("NOPE")).await.unwrap(), None);

    // Many writers at once (they share commits where the store group-commits): each is
    // answered with its own outcome.
    let writes = (0..300).map(|n| {
        let store = store.clone();
        async move {
            let name = format!("ORD-C{n:03}");
            let created = store.create(&order(&name, 1), at(0, 100 + n)).await?;
            let updated = store
                .update_status(
                    &id(&name),
                    StatusChange::new(status("shipped"), at(1, 100 + n)),
                )
                .await?;
            let again = store
                .update_status(
                    &id(&name),
                    StatusChange::new(status("paid"), at(1, 100 + n)),
                )
                .await?;
            Ok::<_, StoreError>((created, updated, again))
        }
    });
    for result in futures::future::join_all(writes).await {
        assert_eq!(result.unwrap(), (CREATED, APPLIED, ALREADY));
    }
    assert_eq!(s.count().await.unwrap(), 301);
    let ids = all_ids(s, 1000).await;
    assert_eq!(ids.len(), 301);
    // Page by page, small pages cover the same ids, each once, in order.
    assert_eq!(all_ids(s, 7).await, ids);
    assert_eq!(s.ids(None, 2).await.unwrap(), ids[..2]);
    assert_eq!(s.ids(Some(ids[299].clone()), 10).await.unwrap(), ids[300..]);
    assert_eq!(s.ids(Some(ids[300].clone()), 10).await.unwrap(), []);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "sorted");
    assert_eq!(ids[0], id("ORD-1"));
    assert_eq!(current_status(s, "ORD-C299").await, "shipped");

    // Two writes of one order at once (as two lanes or two instances could send them): each
    // is answered, and the later position wins whatever the order they are applied in.
    let (c000, packed, delivered) = (id("ORD-C000"), status("packed"), status("delivered"));
    let (first, second) = tokio::join!(
        s.update_status(&c000, StatusChange::new(packed.clone(), at(1, 5000))),
        s.update_status(&c000, StatusChange::new(delivered.clone(), at(1, 5001))),
    );
    assert!(matches!(first.unwrap(), StatusWrite::Written(_)));
    assert_eq!(second.unwrap(), APPLIED);
    assert_eq!(current_status(s, "ORD-C000").await, "delivered");

    // Ids that sort differently under locale collations still come out in byte order.
    put(s, "ord-lower", 1, at(0, 1000)).await;
    put(s, "ORD_underscore", 1, at(0, 1001)).await;
    let ids: Vec<String> = all_ids(s, 50).await.iter().map(|i| i.to_string()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    history_contract(s).await;
    batch_order_contract(s).await;
    coverage_contract(s).await;
    incarnation_contract(whole.as_ref()).await;
}

/// An order's history: its creation, then each status applied, once, oldest first, paged by
/// `seq`; redeliveries, superseded updates and updates of unknown orders add nothing; the
/// retention deletes by age and never touches the orders. Leaves no orders behind but HIST-*.
async fn history_contract(s: &dyn OrderStore) {
    let h = id("HIST-1");
    assert_eq!(s.history(&h, None, 10).await.unwrap(), []);
    // Past the millisecond of the writes before, so that `before` tells them apart.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let before = ordering_core::now_ms();
    assert_eq!(put(s, "HIST-1", 1, at(0, 1)).await, CREATED);
    let shipped = StatusChange::new(status("shipped"), at(1, 10))
        .with_reason(Some("left the depot".into()))
        .with_event_time("2026-01-30T13:00:00Z");
    assert_eq!(s.update_status(&h, shipped.clone()).await.unwrap(), APPLIED);
    // A redelivery, and an older update of the same partition: nothing new.
    assert_eq!(s.update_status(&h, shipped).await.unwrap(), ALREADY);
    assert_eq!(set(s, "HIST-1", "paid", at(1, 9)).await, ALREADY);
    assert_eq!(
        set(s, "HIST-2", "paid", at(1, 11)).await,
        StatusWrite::NotFound
    );
    assert_eq!(set(s, "HIST-1", "delivered", at(1, 12)).await, APPLIED);
    // Created again (a redelivered order event): nothing new either.
    assert_eq!(put(s, "HIST-1", 1, at(0, 1)).await, SAME_ORDER);

    let all = s.history(&h, None, 10).await.unwrap();
    let seen: Vec<(&str, Option<&str>, Option<&str>, Position)> = all
        .iter()
        .map(|e| {
            (
                e.status.as_str(),
                e.reason.as_deref(),
                e.event_time.as_deref(),
                e.at.clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("pending", None, Some("2026-01-30T12:00:00Z"), at(0, 1)),
            (
                "shipped",
                Some("left the depot"),
                Some("2026-01-30T13:00:00Z"),
                at(1, 10)
            ),
            ("delivered", None, None, at(1, 12)),
        ]
    );
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "{all:?}");
    assert!(all.iter().all(|e| e.applied_at_ms >= before), "{all:?}");
    // Page by page from the last seq seen.
    let first = s.history(&h, None, 2).await.unwrap();
    let rest = s.history(&h, Some(first[1].seq), 2).await.unwrap();
    assert_eq!([first, rest].concat(), all);

    // Retention: what was applied before `before` (the other orders' histories) goes, in
    // pieces; HIST-1's stays until its time comes, then goes too.
    while s.prune_history(before, 100).await.unwrap() > 0 {}
    assert_eq!(s.history(&h, None, 10).await.unwrap(), all);
    let deleted = s
        .prune_history(ordering_core::now_ms() + 1, 2)
        .await
        .unwrap();
    assert_eq!(deleted, 2, "at most `limit` at a time");
    assert_eq!(
        s.prune_history(ordering_core::now_ms() + 1, 100)
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.history(&h, None, 10).await.unwrap(), []);
    assert_eq!(
        current_status(s, "HIST-1").await,
        "delivered",
        "the order stays"
    );
}

fn letter(offset: i64) -> RedriveKey {
    RedriveKey {
        origin: Position::new("order-status-updates", 1, offset),
        redrive_count: 0,
    }
}

/// The redrive ledger: a record is claimed once unless `again`, a release takes a claim back;
/// the record redriven once more is another key.
async fn ledger_contract(ledger: &dyn RedriveLedger) {
    let (a, b) = (letter(10), letter(11));
    let a_again = RedriveKey {
        redrive_count: 1,
        ..a.clone()
    };
    assert_eq!(
        ledger.lookup(std::slice::from_ref(&a)).await.unwrap(),
        [None]
    );
    let claims = ledger.claim(&[a.clone(), b.clone()], false, 1000).await;
    assert_eq!(claims.unwrap(), [Claim::Claimed, Claim::Claimed]);
    let first = Redriven {
        times: 1,
        last_at_ms: 1000,
    };
    let claims = ledger.claim(std::slice::from_ref(&a), false, 2000).await;
    assert_eq!(claims.unwrap(), [Claim::Already(first)]);
    let claims = ledger.claim(std::slice::from_ref(&a), true, 3000).await;
    assert_eq!(claims.unwrap(), [Claim::Claimed], "again claims it anyway");
    let known = ledger.lookup(&[a.clone(), b.clone()]).await.unwrap();
    assert_eq!(
        known,
        [
            Some(Redriven {
                times: 2,
                last_at_ms: 3000
            }),
            Some(first)
        ]
    );
    ledger.release(&[a.clone(), b.clone()]).await.unwrap();
    let known = ledger.lookup(&[a.clone(), b.clone()]).await.unwrap();
    assert_eq!(known[0].map(|r| r.times), Some(1));
    assert_eq!(known[1], None, "released: as if never sent");
    let claims = ledger.claim(&[b], false, 4000).await;
    assert_eq!(claims.unwrap(), [Claim::Claimed]);
    let claims = ledger.claim(&[a_again.clone(), a_again], false, 5000).await;
    assert!(
        matches!(claims.unwrap()[..], [Claim::Claimed, Claim::Already(_)]),
        "a key claimed twice in one call is claimed once"
    );
}

/// Writes queued together (and so, mostly, committed in one batch) take effect in the order
/// they were queued, on every store: an update queued before its order's create finds
/// nothing, and the create then applies.
async fn batch_order_contract(s: &dyn OrderStore) {
    let ids: Vec<String> = (0..50).map(|n| format!("ORD-BATCH-{n}")).collect();
    let writes = ids.iter().map(|order_id| async move {
        let change = StatusChange::new(status("shipped"), at(1, 500));
        let (key, new) = (id(order_id), order(order_id, 1));
        let (updated, created) =
            tokio::join!(s.update_status(&key, change), s.create(&new, at(0, 500)),);
        (updated.unwrap(), created.unwrap())
    });
    for (updated, created) in futures::future::join_all(writes).await {
        assert_eq!(updated, StatusWrite::NotFound, "queued before its create");
        assert_eq!(created, CREATED);
    }
    for order_id in &ids {
        assert_eq!(current_status(s, order_id).await, "pending");
    }
}

/// A status update is applied exactly when `Position::is_covered_by` says its position is
/// not covered by the last applied one: the stores' SQL and the Rust rule agree, case by case.
async fn coverage_contract(s: &dyn OrderStore) {
    let p = |topic: &str, partition, offset, incarnation| {
        Position::new(topic, partition, offset).in_incarnation(incarnation)
    };
    let lasts = [p("t", 1, 10, 1), p("t", 1, 10, 2)];
    let news = [
        p("t", 1, 9, 1),
        p("t", 1, 10, 1),
        p("t", 1, 11, 1),
        p("t", 1, 500, 1),
        p("t", 2, 3, 1),
        p("u", 1, 3, 1),
        p("t", 1, 0, 2),
        p("t", 1, 10, 2),
        p("t", 1, 11, 2),
        p("t", 1, 0, 3),
    ];
    let mut both = [0, 0];
    for (i, last) in lasts.iter().enumerate() {
        for (j, new) in news.iter().enumerate() {
            let order_id = format!("ORD-COVER-{i}-{j}");
            assert_eq!(put(s, &order_id, 1, at(0, 0)).await, CREATED);
            assert_eq!(set(s, &order_id, "first", last.clone()).await, APPLIED);
            let covered = new.is_covered_by(Some(last));
            both[usize::from(covered)] += 1;
            let expected = if covered { ALREADY } else { APPLIED };
            let written = set(s, &order_id, "second", new.clone()).await;
            assert_eq!(written, expected, "{new} after {last}");
        }
    }
    assert!(
        both[0] > 4 && both[1] > 4,
        "both outcomes exercised: {both:?}"
    );
}

/// A topic created again: its incarnations numbered in the order first seen, per topic;
/// positions of a later one come after every position of an earlier one, in the order
/// store, the history and the ledger.
async fn incarnation_contract(s: &dyn Store) {
    let topic = "order-status-updates";
    assert_eq!(s.incarnation(topic, "id-a").await.unwrap(), 1);
    assert_eq!(
        s.incarnation(topic, "id-a").await.unwrap(),
        1,
        "the same id, the same"
    );
    assert_eq!(
        s.incarnation("order-events", "id-x").await.unwrap(),
        1,
        "per topic"
    );
    assert_eq!(s.incarnation(topic, "id-b").await.unwrap(), 2);
    assert_eq!(
        s.incarnation(topic, "id-a").await.unwrap(),
        1,
        "an old id keeps its number"
    );
    assert_eq!(s.incarnation(topic, "id-c").await.unwrap(), 3);

    let second = |offset| at(1, offset).in_incarnation(2);
    assert_eq!(put(s, "ORD-INC", 1, at(0, 3)).await, CREATED);
    assert_eq!(set(s, "ORD-INC", "old", at(1, 50)).await, APPLIED);
    // The new topic starts over at 0: below the last position, applied all the same.
    assert_eq!(set(s, "ORD-INC", "new", second(0)).await, APPLIED);
    assert_eq!(
        set(s, "ORD-INC", "new", second(0)).await,
        ALREADY,
        "redelivered"
    );
    assert_eq!(
        set(s, "ORD-INC", "old", at(1, 51)).await,
        ALREADY,
        "an old record is older"
    );
    assert_eq!(current_status(s, "ORD-INC").await, "new");
    let positions = s.positions(&id("ORD-INC")).await.unwrap().unwrap();
    assert_eq!(positions.status, Some(second(0)));
    let history = s.history(&id("ORD-INC"), None, 10).await.unwrap();
    let incarnations: Vec<u32> = history.iter().map(|e| e.at.incarnation).collect();
    assert_eq!(incarnations, [1, 1, 2]);

    // A letter of the new topic is not the letter of the old one at the same offset.
    let old = RedriveKey {
        origin: Position::new(topic, 1, 50),
        redrive_count: 0,
    };
    let new = RedriveKey {
        origin: Position::new(topic, 1, 50).in_incarnation(2),
        redrive_count: 0,
    };
    assert_eq!(s.claim(&[old], false, 1).await.unwrap(), [Claim::Claimed]);
    assert_eq!(
        s.claim(std::slice::from_ref(&new), false, 2).await.unwrap(),
        [Claim::Claimed]
    );
    assert!(matches!(
        s.claim(&[new], false, 3).await.unwrap()[..],
        [Claim::Already(_)]
    ));
}

/// What a durable store must still hold after it is closed and opened again.
async fn survives_a_reopen(url: &StoreUrl) {
    {
        let store = url.open().await.unwrap();
        store.create(&order("ORD-KEEP", 1), at(0, 1)).await.unwrap();
        for id in ["id-a", "id-b"] {
            store.incarnation("order-status-updates", id).await.unwrap();
        }
        store
            .update_status(
                &id("ORD-KEEP"),
                StatusChange::new(status("shipped"), at(0, 7)),
            )
            .await
            .unwrap();
    }
    let store = url.open().await.unwrap();
    assert_eq!(current_status(store.as_ref(), "ORD-KEEP").await, "shipped");
    let again = store
        .update_status(&id("ORD-KEEP"), StatusChange::new(status("paid"), at(0, 7)))
        .await;
    assert_eq!(again.unwrap(), ALREADY, "positions are durable too");
    let claims = store.claim(&[letter(99)], false, 1).await.unwrap();
    assert_eq!(claims, [Claim::Claimed]);
    drop(store);
    let store = url.open().await.unwrap();
    assert_eq!(
        store
            .incarnation("order-status-updates", "id-b")
            .await
            .unwrap(),
        2,
        "incarnations are durable"
    );
    let claims = store.claim(&[letter(99)], false, 2).await.unwrap();
    assert!(
        matches!(claims[..], [Claim::Already(_)]),
        "redrives are durable: {claims:?}"
    );
}

#[tokio::test]
async fn the_memory_store_keeps_the_contract() {
    contract(StoreUrl::parse("memory://").unwrap().open().await.unwrap()).await;
}

#[tokio::test]
async fn the_sqlite_store_keeps_the_contract_and_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/orders.db");
    let url = StoreUrl::parse(&format!("sqlite://{}", path.display())).unwrap();
    contract(url.open().await.unwrap()).await;

    let reopen = StoreUrl::parse(&format!(
        "sqlite://{}",
        dir.path().join("again.db").display()
    ));
    survives_a_reopen(&reopen.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_keeps_the_contract_and_its_data() {
    let pg = TestPostgres::shared();
    let url = StoreUrl::parse(&pg.create_database().await).unwrap();
    contract(url.open().await.unwrap()).await;

    let reopen = StoreUrl::parse(&pg.create_database().await).unwrap();
    survives_a_reopen(&reopen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_stores_on_one_database_see_each_others_writes() {
    let pg = TestPostgres::shared();
    let url = StoreUrl::parse(&pg.create_database().await).unwrap();
    // Opened together: migrations run once, under the lock.
    let (a, b) = tokio::join!(url.open(), url.open());
    let (a, b) = (a.unwrap(), b.unwrap());
    a.create(&order("ORD-A", 1), at(0, 1)).await.unwrap();
    assert_eq!(
        b.update_status(&id("ORD-A"), StatusChange::new(status("shipped"), at(0, 2)))
            .await
            .unwrap(),
        APPLIED
    );
    assert_eq!(
        a.update_status(&id("ORD-A"), StatusChange::new(status("paid"), at(0, 2)))
            .await
            .unwrap(),
        ALREADY
    );
    assert_eq!(current_status(a.as_ref(), "ORD-A").await, "shipped");
}

#[tokio::test]
async fn a_sqlite_database_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.db");
    let url = StoreUrl::parse(&format!("sqlite://{}", path.display())).unwrap();
    drop(url.open().await.unwrap());
    // As a newer release would leave it.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let error = url.open().await.err().unwrap();
    assert!(
        matches!(error, OpenError::NewerSchema { found: 99, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("newer version"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_database_from_a_newer_version_is_refused() {
    let pg = TestPostgres::shared();
    let raw = pg.create_database().await;
    let url = StoreUrl::parse(&raw).unwrap();
    drop(url.open().await.unwrap());
    let (client, connection) = tokio_postgres::connect(&raw, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .execute("INSERT INTO order_store_schema (version) VALUES (42)", &[])
        .await
        .unwrap();
    let error = url.open().await.err().unwrap();
    assert!(
        matches!(error, OpenError::NewerSchema { found: 42, .. }),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_postgres_is_unavailable_then_serves_again() {
    let mut pg = TestPostgres::start();
    let url = StoreUrl::parse(&pg.create_database().await).unwrap();
    let store = url.open().await.unwrap();
    store.create(&order("ORD-1", 1), at(0, 1)).await.unwrap();

    pg.stop();
    let down = store
        .update_status(&id("ORD-1"), StatusChange::new(status("shipped"), at(0, 2)))
        .await;
    assert!(matches!(down, Err(StoreError::Unavailable(_))), "{down:?}");
    assert!(matches!(
        store.check_writable().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.get(&id("ORD-1")).await,
        Err(StoreError::Unavailable(_))
    ));

    pg.restart();
    let mut result = Err(StoreError::unavailable("not tried"));
    for _ in 0..50 {
        result = store
            .update_status(&id("ORD-1"), StatusChange::new(status("shipped"), at(0, 2)))
            .await;
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(result.unwrap(), APPLIED);
    assert_eq!(current_status(store.as_ref(), "ORD-1").await, "shipped");
}

#[tokio::test]
async fn an_unreachable_postgres_is_a_transient_open_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = StoreUrl::parse(&format!("postgres://postgres@127.0.0.1:{port}/none")).unwrap();
    let error = url.open().await.err().unwrap();
    assert!(error.is_transient(), "{error}");
}

/// Two instances redriving at once on one database: each letter is claimed by exactly one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_claims_on_postgres_claim_each_letter_once() {
    let pg = TestPostgres::shared();
    let url = StoreUrl::parse(&pg.create_database().await).unwrap();
    let (one, two) = (url.open().await.unwrap(), url.open().await.unwrap());
    let letters: Vec<RedriveKey> = (0..200).map(letter).collect();
    let (a, b) = tokio::join!(one.claim(&letters, false, 1), two.claim(&letters, false, 2));
    let claimed = a
        .unwrap()
        .into_iter()
        .chain(b.unwrap())
        .filter(|c| *c == Claim::Claimed)
        .count();
    assert_eq!(claimed, letters.len());
}

/// A failover leaves connections on a read-only standby: every write fails with SQLSTATE
/// 25006. That is the database's state, not the record's: unavailable, never rejected, and
/// the health check says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_postgres_is_unavailable_and_its_health_check_says_why() {
    let pg = TestPostgres::start();
    let raw = pg.create_database().await;
    let store = StoreUrl::parse(&raw).unwrap().open().await.unwrap();
    store.create(&order("ORD-1", 1), at(0, 1)).await.unwrap();
    store.check_writable().await.unwrap();

    pg.set_read_only(true).await;
    let mut down = Ok(APPLIED);
    for _ in 0..50 {
        down = store
            .update_status(&id("ORD-1"), StatusChange::new(status("shipped"), at(0, 2)))
            .await;
        if down.is_err() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let down = down.unwrap_err();
    assert!(matches!(down, StoreError::Unavailable(_)), "{down}");
    assert!(down.to_string().contains("25006"), "{down}");
    let created = store.create(&order("ORD-2", 1), at(0, 3)).await;
    assert!(
        matches!(created, Err(StoreError::Unavailable(_))),
        "{created:?}"
    );
    let health = store.check_writable().await.unwrap_err();
    assert!(matches!(health, StoreError::Unavailable(_)), "{health}");
    assert!(health.to_string().contains("read-only"), "{health}");
    // Reads still work: only a write-checking health probe sees it.
    assert!(store.get(&id("ORD-1")).await.unwrap().is_some());

    pg.set_read_only(false).await;
    let mut up = Err(StoreError::unavailable("not tried"));
    for _ in 0..50 {
        // Another position than the first loop's, one of whose writes may have gone through
        // before the reload reached its connection.
        up = store
            .update_status(
                &id("ORD-1"),
                StatusChange::new(status("delivered"), at(0, 9)),
            )
            .await;
        if up.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(up.unwrap(), APPLIED);
    store.check_writable().await.unwrap();
}

/// Each write of a SQLite group commit has a savepoint of its own: one that fails half-way
/// leaves nothing behind, and the others of its batch commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_write_that_fails_half_way_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.db");
    let url = StoreUrl::parse(&format!("sqlite://{}", path.display())).unwrap();
    drop(url.open().await.unwrap());
    // The second statement of a create (its status row) refused for one order.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER refuse BEFORE INSERT ON order_status WHEN NEW.order_id = 'ORD-HALF'
         BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END;",
    )
    .unwrap();
    drop(conn);
    let store: Arc<dyn Store> = url.open().await.unwrap();
    let half = order("ORD-HALF", 1);
    let whole = order("ORD-WHOLE", 1);
    let (refused, created) = tokio::join!(
        store.create(&half, at(0, 1)),
        store.create(&whole, at(0, 2))
    );
    assert!(
        matches!(refused, Err(StoreError::Rejected(_))),
        "{refused:?}"
    );
    assert_eq!(created.unwrap(), CREATED);
    assert_eq!(store.get(&id("ORD-HALF")).await.unwrap(), None);
    assert_eq!(
        store.positions(&id("ORD-HALF")).await.unwrap(),
        None,
        "no half order"
    );
    assert_eq!(store.count().await.unwrap(), 1);
}

/// Two instances replaying one order event at once (a rebalance hands a partition over while
/// the old owner still runs): both creates race on one PostgreSQL. The same order twice is
/// never a duplicate, whichever transaction commits first; a create that lost the race is
/// retried (unavailable), never dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_create_racing_on_two_postgres_stores_is_never_a_duplicate() {
    let pg = TestPostgres::shared();
    let url = StoreUrl::parse(&pg.create_database().await).unwrap();
    let (a, b) = (url.open().await.unwrap(), url.open().await.unwrap());
    let until_answered = |store: Arc<dyn Store>, order: Order, n: i64| async move {
        loop {
            match store.create(&order, at(0, n)).await {
                Err(StoreError::Unavailable(_)) => continue,
                other => return other.unwrap(),
            }
        }
    };
    for n in 0..200 {
        let order = order(&format!("ORD-RACE-{n:03}"), 2);
        let (one, two) = tokio::join!(
            until_answered(a.clone(), order.clone(), n),
            until_answered(b.clone(), order.clone(), n),
        );
        let mut outcomes = [one, two];
        outcomes.sort_by_key(|o| *o != CREATED);
        assert_eq!(outcomes, [CREATED, SAME_ORDER], "{n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_racing_to_number_new_incarnations_agree() {
    let pg = TestPostgres::shared();
    let url = StoreUrl::parse(&pg.create_database().await).unwrap();
    let (a, b) = tokio::join!(url.open(), url.open());
    let (a, b) = (a.unwrap(), b.unwrap());
    for round in 0..20 {
        let topic = format!("topic-{round}");
        // Two instances see the same two ids at once, in opposite orders.
        let (a1, b1, a2, b2) = tokio::join!(
            a.incarnation(&topic, "first"),
            b.incarnation(&topic, "second"),
            a.incarnation(&topic, "second"),
            b.incarnation(&topic, "first"),
        );
        let (a1, b1, a2, b2) = (a1.unwrap(), b1.unwrap(), a2.unwrap(), b2.unwrap());
        assert_eq!((a1, b1), (b2, a2), "one number per id: {topic}");
        let mut numbers = [a1, b1];
        numbers.sort_unstable();
        assert_eq!(numbers, [1, 2], "{topic}");
    }
}

/// A ledger of its own, beside a service's own tables: the ledger's contract, durable, and
/// not one table of the order flow in the service's database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_of_its_own_keeps_the_contract_and_makes_no_order_table() {
    // SQLite: the service's own file, its own table first.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE stock (sku TEXT PRIMARY KEY, units INTEGER NOT NULL)")
        .unwrap();
    let url = StoreUrl::parse(&format!("sqlite://{}", path.display())).unwrap();
    ledger_contract(open_ledger(&url).await.unwrap().as_ref()).await;
    let reopened = open_ledger(&url).await.unwrap();
    let known = reopened.lookup(&[letter(11)]).await.unwrap();
    assert!(known[0].is_some(), "claims are durable");
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(tables, ["redriven_records", "stock"]);

    // PostgreSQL: a database of its own, shared by two ledgers (instances).
    let pg = TestPostgres::shared();
    let raw = pg.create_database().await;
    let url = StoreUrl::parse(&raw).unwrap();
    let (a, b) = tokio::join!(open_ledger(&url), open_ledger(&url));
    let (a, b) = (a.unwrap(), b.unwrap());
    ledger_contract(a.as_ref()).await;
    let known = b.lookup(&[letter(11)]).await.unwrap();
    assert!(known[0].is_some(), "one ledger for every instance");
    let (client, connection) = tokio_postgres::connect(&raw, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = 'public' ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let tables: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(tables, ["redriven_records"]);
}
