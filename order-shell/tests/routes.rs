//! order-shell's routes in-process: the service from `lib.rs` on an in-memory store, served on
//! a local port, with no broker (its address answers nothing) and no child process: routing,
//! validation, the operator token, error bodies and the OpenAPI document. The real flow is in
//! `e2e.rs` and the other process-level tests.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use order_shell::config::Config;
use order_shell::{API, App, ROUTES};
use ordering_core::Position;
use ordering_core::order::{
    MemoryStore, Order, OrderId, OrderItem, OrderStore, Status, StatusChange,
};
use ordering_http::env::Env;
use ordering_http::metrics::Metrics;
use ordering_http::testing::{Reply, call, call_documented, check_openapi, get};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const TOKEN: &str = "in-process-operator-token-7d2a";

struct Served {
    base: String,
    store: Arc<MemoryStore>,
    _stop: oneshot::Sender<()>,
}

impl Served {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A call to one of the routes, whose answer must be documented.
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> Reply {
        call_documented(API, method, &self.base, path, body, headers).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None, &[]).await
    }
}

/// The service with `settings` on top of a broker address where nothing listens.
async fn serve(settings: &[(&str, &str)]) -> Served {
    // The first of a name wins: `settings` before the defaults.
    let mut pairs = settings.to_vec();
    pairs.extend_from_slice(&[
        ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9"),
        ("LOG_FORMAT", "text"),
    ]);
    let config = Config::from_env(&Env::from_pairs(&pairs)).unwrap();
    let store = Arc::new(MemoryStore::new());
    let app = Arc::new(App::new(config, store.clone(), Metrics::detached()).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.serve(listener, async {
        let _ = stopped.await;
    }));
    Served {
        base,
        store,
        _stop: stop,
    }
}

fn details(reply: &Reply) -> &str {
    reply.json["details"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_are_refused_with_the_error_body() {
    let shell = serve(&[]).await;
    let reply = get(&shell.url("/api/nothing-here")).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json["success"], false);
    assert!(
        details(&reply).contains("/api/nothing-here"),
        "{}",
        reply.text
    );
    for (method, path, allow) in [
        ("GET", "/api/dlq/redrive", "POST"),
        ("POST", "/api/stats", "GET"),
        ("DELETE", "/api/order-details", "GET"),
        ("PUT", "/health", "GET"),
        ("POST", "/openapi.json", "GET"),
    ] {
        let reply = call(method, &shell.url(path), None).await;
        assert_eq!(reply.status, 405, "{method} {path}");
        assert_eq!(reply.headers["allow"], allow, "{method} {path}");
        assert_eq!(reply.json["success"], false);
    }
}

#[tokio::test]
async fn order_queries_validate_and_read_the_store() {
    let shell = serve(&[]).await;
    let reply = shell.get("/api/order-details").await;
    assert_eq!(reply.status, 400);
    assert!(details(&reply).contains("orderId"), "{}", reply.text);
    let reply = shell.get("/api/order-details?orderId=ORD-404").await;
    assert_eq!(reply.status, 404);
    assert_eq!(details(&reply), "Order ORD-404 not found");

    let order = Order {
        order_id: OrderId::parse("ORD-1").unwrap(),
        customer_id: "CUST-1".into(),
        order_date: "2026-11-25T12:00:00Z".into(),
        items: vec![OrderItem {
            item_id: "ITEM-1".into(),
            quantity: 2,
            price: 10.0,
        }],
        total_amount: 20.0,
        currency: "USD".into(),
        status: Status::parse("pending").unwrap(),
        status_reason: None,
    };
    shell
        .store
        .create(&order, Position::new("order-events", 0, 0))
        .await
        .unwrap();
    let reply = shell.get("/api/order-details?orderId=ORD-1").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["data"]["orderId"], "ORD-1");
    assert_eq!(reply.json["data"]["status"], "pending");
    assert!(reply.json["data"]["shippingCost"].is_number());
    let reply = shell.get("/api/stats").await;
    assert_eq!(reply.json["totalOrders"], 1);
    assert_eq!(reply.json["orderIds"], json!(["ORD-1"]));
    assert_eq!(reply.json["nextCursor"], Value::Null);
    // Page by page: the count is the whole store's, the ids one page of it.
    for n in 2..=5 {
        let mut more = order.clone();
        more.order_id = OrderId::parse(&format!("ORD-{n}")).unwrap();
        let at = Position::new("order-events", 0, n);
        shell.store.create(&more, at).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut path = "/api/stats?limit=2".to_owned();
    loop {
        let reply = shell.get(&path).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.json["totalOrders"], 5);
        let page = reply.json["orderIds"].as_array().unwrap().clone();
        assert!(page.len() <= 2);
        seen.extend(page);
        match reply.json["nextCursor"].as_str() {
            Some(cursor) => path = format!("/api/stats?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        json!(["ORD-1", "ORD-2", "ORD-3", "ORD-4", "ORD-5"])
            .as_array()
            .unwrap()
            .clone()
    );
    for query in ["limit=0", "limit=10001", "limit=lots", "cursor=%20%20"] {
        let reply = shell.get(&format!("/api/stats?{query}")).await;
        let blank_cursor_is_first_page = query.starts_with("cursor");
        if blank_cursor_is_first_page {
            assert_eq!(reply.status, 200, "{query}: {}", reply.text);
        } else {
            assert_eq!(reply.status, 400, "{query}: {}", reply.text);
            assert!(details(&reply).contains("limit"), "{query}: {}", reply.text);
        }
    }

    let reply = shell.get("/api/getAllOrderIdsFromTopic").await;
    assert_eq!(reply.status, 400);
    assert!(details(&reply).contains("topicName"), "{}", reply.text);
    let reply = shell
        .get("/api/getAllOrderIdsFromTopic?topicName=elsewhere")
        .await;
    assert_eq!(reply.status, 400);
    assert!(details(&reply).contains("order-events"), "{}", reply.text);
    let reply = shell
        .get("/api/getAllOrderIdsFromTopic?topicName=order-events&cursor=0:x")
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert!(details(&reply).contains("cursor"), "{}", reply.text);
    for (query, named) in [
        ("limit=0", "limit"),
        ("limit=many", "limit"),
        ("offset=-1", "offset"),
        ("errorClass=sometimes", "errorClass"),
        ("cursor=nonsense", "cursor"),
    ] {
        let reply = shell.get(&format!("/api/dlq/messages?{query}")).await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.text);
        assert!(details(&reply).contains(named), "{query}: {}", reply.text);
    }
}

#[tokio::test]
async fn operator_endpoints_need_the_token() {
    let open = serve(&[]).await;
    let reply = open
        .call("POST", "/api/dlq/redrive", Some(b"{}"), &[])
        .await;
    assert_eq!(reply.status, 403);
    assert!(details(&reply).contains("OPERATOR_TOKEN"), "{}", reply.text);

    let guarded = serve(&[("OPERATOR_TOKEN", TOKEN)]).await;
    for (method, path) in [("POST", "/api/dlq/redrive"), ("GET", "/api/dlq/messages")] {
        let reply = guarded.call(method, path, None, &[]).await;
        assert_eq!(reply.status, 401, "{method} {path}");
        assert_eq!(
            reply.headers["www-authenticate"],
            "Bearer realm=\"operator\""
        );
        let wrong = guarded
            .call(
                method,
                path,
                None,
                &[("authorization", "Bearer not-the-token-at-all")],
            )
            .await;
        assert_eq!(wrong.status, 401, "{method} {path}");
    }
    // With the token, the body is checked before anything is read from the broker.
    let bearer = format!("Bearer {TOKEN}");
    for (body, named) in [
        (json!({"maxMessages": 0}), "maxMessages"),
        (json!({"errorClass": "sometimes"}), "errorClass"),
        (json!({"dryRun": "yes"}), "dryRun"),
        (json!({"surprise": 1}), "surprise"),
    ] {
        let reply = guarded
            .call(
                "POST",
                "/api/dlq/redrive",
                Some(body.to_string().as_bytes()),
                &[("authorization", &bearer)],
            )
            .await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        assert!(details(&reply).contains(named), "{body}: {}", reply.text);
    }
}

#[tokio::test]
async fn the_openapi_document_and_the_routes_agree() {
    let shell = serve(&[]).await;
    check_openapi(API, &ROUTES, &shell.base).await;
}

/// Scans beyond their limit wait a little, then are told to come back (`503` with
/// `Retry-After`); order lookups, stats and metrics never wait behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expensive_requests_beyond_their_limit_are_told_to_come_back_and_lookups_never_wait() {
    let shell = Arc::new(
        serve(&[
            ("SCAN_CONCURRENCY", "2"),
            ("BUSY_WAIT_MS", "200"),
            ("OPERATOR_TOKEN", TOKEN),
        ])
        .await,
    );
    const SCAN: &str = "/api/getAllOrderIdsFromTopic?topicName=order-events";
    // Nothing listens at the broker's address: each scan holds its turn until its read
    // gives up (30 s), long enough for what follows.
    let held: Vec<_> = (0..2)
        .map(|_| {
            let shell = shell.clone();
            tokio::spawn(async move { shell.get(SCAN).await })
        })
        .collect();
    let mut busy = None;
    // Let them take their turns first (a probe that got one would hold it for 5 s).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for _ in 0..20 {
        let reply = shell.get(SCAN).await;
        if reply.json["error"] == "Busy" {
            busy = Some(reply);
            break;
        }
    }
    let busy = busy.expect("a third scan is turned away while two run");
    assert_eq!(busy.status, 503, "{}", busy.text);
    assert_eq!(busy.headers["retry-after"], "1");
    assert!(details(&busy).contains("at most 2"), "{}", busy.text);

    // Meanwhile the cheap requests answer as ever.
    let lookup = shell.get("/api/order-details?orderId=ORD-1").await;
    assert_eq!(lookup.status, 404, "{}", lookup.text);
    assert_eq!(shell.get("/api/stats").await.status, 200);
    assert_eq!(shell.get("/metrics").await.status, 200);
    let bearer = format!("Bearer {TOKEN}");
    let page = shell
        .call(
            "GET",
            "/api/dlq/messages",
            None,
            &[("authorization", &bearer)],
        )
        .await;
    assert_ne!(
        page.json["error"], "Busy",
        "another kind has turns of its own"
    );

    // Clients that hang up do not free their turns: the reads go on to their end, so never
    // more than SCAN_CONCURRENCY reader clients run, whoever waits for them.
    for scan in held {
        scan.abort();
        let _ = scan.await;
    }
    let still = shell.get(SCAN).await;
    assert_eq!(still.json["error"], "Busy", "{}", still.text);
}

#[test]
fn random_requests_get_documented_answers_and_never_a_5xx_but_503() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // A broker that answers: reads of a broker that does not would each wait for their
    // timeout (seconds), and the fuzz is about the routes.
    let broker = ordering_kafka::testing::TestBroker::start();
    let bootstrap = broker.bootstrap();
    let served = runtime.block_on(serve(&[
        ("OPERATOR_TOKEN", TOKEN),
        ("KAFKA_BOOTSTRAP_SERVERS", &bootstrap),
    ]));
    runtime.block_on(async {
        let order = ordering_core::order::generate_order(
            OrderId::parse("ORD-FUZZ-1").unwrap(),
            ordering_core::order::NumItems::new(2).unwrap(),
            "2026-11-30T12:00:00Z".into(),
            &mut rand::rng(),
        );
        served
            .store
            .create(&order, Position::new("t", 0, 1))
            .await
            .unwrap();
    });
    let bearer = format!("Bearer {TOKEN}");
    ordering_http::fuzz::run(
        &runtime,
        &ordering_http::fuzz::Target {
            api: API,
            base: &served.base,
            routes: &ROUTES,
            params: &[
                "orderId",
                "topicName",
                "cursor",
                "limit",
                "offset",
                "errorType",
                "errorClass",
            ],
            fields: &[
                "errorType",
                "errorClass",
                "orderId",
                "fromTimestamp",
                "toTimestamp",
                "maxMessages",
                "ratePerSecond",
                "dryRun",
                "again",
                "force",
            ],
            headers: &[
                ("authorization", bearer.as_str()),
                ("accept", "application/json"),
            ],
            samples: &[
                "ORD-FUZZ-1",
                "order-events",
                "order-status-updates",
                "order-events-dlq",
                "OrderNotFound",
                "retryable",
                "permanent",
                "poison",
                "0:0",
                "2026-11-30T12:00:00Z",
            ],
        },
        300,
    );
}

#[tokio::test]
async fn an_orders_history_is_paged_and_checked() {
    let shell = serve(&[]).await;
    for (query, status) in [
        ("", 400),
        ("orderId=%20", 400),
        ("orderId=ORD-404", 404),
        ("orderId=ORD-H&limit=0", 400),
        ("orderId=ORD-H&limit=1001", 400),
        ("orderId=ORD-H&cursor=-1", 400),
        ("orderId=ORD-H&cursor=x", 400),
    ] {
        let reply = shell.get(&format!("/api/order-history?{query}")).await;
        assert_eq!(reply.status, status, "{query}: {}", reply.text);
    }
    let order = Order {
        order_id: OrderId::parse("ORD-H").unwrap(),
        customer_id: "CUST-1".into(),
        order_date: "2026-11-25T12:00:00Z".into(),
        items: vec![],
        total_amount: 0.0,
        currency: "USD".into(),
        status: Status::parse("pending").unwrap(),
        status_reason: None,
    };
    let store = &shell.store;
    store
        .create(&order, Position::new("order-events", 0, 3))
        .await
        .unwrap();
    for (offset, status) in [(7, "paid"), (9, "shipped")] {
        let change = StatusChange::new(
            Status::parse(status).unwrap(),
            Position::new("order-status-updates", 1, offset),
        )
        .with_reason(Some(format!("because {status}")))
        .with_event_time("2026-11-25T13:00:00Z");
        store.update_status(&order.order_id, change).await.unwrap();
    }
    let mut entries = Vec::new();
    let mut path = "/api/order-history?orderId=ORD-H&limit=2".to_owned();
    loop {
        let reply = shell.get(&path).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        entries.extend(reply.json["entries"].as_array().unwrap().clone());
        match reply.json["nextCursor"].as_str() {
            Some(cursor) => {
                path = format!("/api/order-history?orderId=ORD-H&limit=2&cursor={cursor}")
            }
            None => break,
        }
    }
    let seen: Vec<(&str, &str, i64)> = entries
        .iter()
        .map(|e| {
            (
                e["status"].as_str().unwrap(),
                e["topic"].as_str().unwrap(),
                e["offset"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("pending", "order-events", 3),
            ("paid", "order-status-updates", 7),
            ("shipped", "order-status-updates", 9)
        ]
    );
    assert_eq!(entries[2]["reason"], "because shipped");
    assert_eq!(entries[2]["eventTime"], "2026-11-25T13:00:00Z");
    assert!(entries[2]["appliedAt"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn the_console_is_served_from_the_binary_with_a_strict_policy() {
    for (settings, token_form) in [
        (vec![], false),
        (vec![("OPERATOR_TOKEN", "s3cret-operator-token")], true),
    ] {
        let shell = serve(&settings).await;
        for page in [
            "/console",
            "/console/dead-letters",
            "/console/redrive",
            "/console/orders",
        ] {
            let reply = shell.get(page).await;
            assert_eq!(reply.status, 200, "{page}");
            assert!(reply.text.contains("<main id=\"main\""), "{page}");
            assert_eq!(
                reply.text.contains("id=\"token-input\""),
                token_form,
                "{page}"
            );
            assert!(
                !reply.text.contains("s3cret-operator-token"),
                "the token is never in a page"
            );
            let policy = &reply.headers["content-security-policy"];
            assert!(
                policy.to_str().unwrap().contains("script-src 'self'"),
                "{page}"
            );
            assert_eq!(reply.headers["cache-control"], "no-store");
        }
        for (asset, kind) in [
            ("/console/assets/console.js", "text/javascript"),
            ("/console/assets/console.css", "text/css"),
            (
                "/console/assets/vendor/uPlot.iife.min.js",
                "text/javascript",
            ),
            ("/console/assets/vendor/uPlot.min.css", "text/css"),
        ] {
            let reply = shell.get(asset).await;
            assert_eq!(reply.status, 200, "{asset}");
            assert!(
                reply.headers["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with(kind)
            );
            assert!(reply.text.len() > 1000, "{asset}");
        }
        let reply = shell.get("/api/console/overview").await;
        if token_form {
            assert_eq!(
                reply.status, 401,
                "the operator's, with a token: {}",
                reply.text
            );
            let bearer = "Bearer s3cret-operator-token";
            let url = format!("{}/api/console/overview", shell.base);
            let reply =
                ordering_http::testing::call_with("GET", &url, None, &[("authorization", bearer)])
                    .await;
            assert_eq!(reply.status, 200, "{}", reply.text);
            continue;
        }
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(
            reply.json["instances"][0]["thisInstance"], true,
            "{}",
            reply.text
        );
        assert!(reply.json["series"]["t"].is_array(), "{}", reply.text);
    }
}
