//! Production connectivity against real servers: a broker that requires TLS and SASL/SCRAM, a
//! PostgreSQL that accepts only TLS with a SCRAM password (`verify-full`), both shells serving
//! HTTPS only. The order flow end to end; every way the connection can be refused, said in
//! words a person acts on; and no secret in anything the processes wrote or answered.

#![allow(clippy::unwrap_used)] // a test: a failure is a panic with its message

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{System, eventually};
use ordering_http::testing::{Pki, Reply, call_with, get, trust};
use ordering_kafka::testing::TestBroker;
use ordering_store::testing::TestPostgres;
use serde_json::{Value, json};

/// Secrets, each recognisable wherever it would leak.
const SASL_PASSWORD: &str = "SECRET-sasl-pw-7e1d9c";
const PG_PASSWORD: &str = "SECRET-pg-pw-4a2b8f";
const TOKEN: &str = "SECRET-operator-token-91c2d3";
const SECRETS: [&str; 3] = [SASL_PASSWORD, PG_PASSWORD, TOKEN];
const SASL_USER: &str = "order-service";
const PG_USER: &str = "app";

/// The settings of a service on the secured broker and store.
fn secured_env(
    pki: &Pki,
    broker: &TestBroker,
    store: &str,
    dir: &Path,
) -> Vec<(&'static str, String)> {
    let password_file = dir.join("pg-password");
    std::fs::write(&password_file, format!("{PG_PASSWORD}\n")).unwrap();
    vec![
        ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
        ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL".into()),
        ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512".into()),
        ("KAFKA_SASL_USERNAME", SASL_USER.into()),
        ("KAFKA_SASL_PASSWORD", SASL_PASSWORD.into()),
        ("KAFKA_SSL_CA_LOCATION", pki.file("ca.pem")),
        ("ORDER_STORE_URL", store.to_owned()),
        (
            "ORDER_STORE_PASSWORD_FILE",
            password_file.display().to_string(),
        ),
        // cart-shell's Idempotency-Keys in the same database, reached the same way.
        ("IDEMPOTENCY_STORE_URL", store.to_owned()),
        (
            "IDEMPOTENCY_STORE_PASSWORD_FILE",
            password_file.display().to_string(),
        ),
        ("TLS_CERT_FILE", pki.file("server.pem")),
        ("TLS_KEY_FILE", pki.file("server.key")),
        ("OPERATOR_TOKEN", TOKEN.into()),
        ("DLQ_MAX_RETRIES", "1".into()),
        // Every line the processes can write.
        ("RUST_LOG", "trace".into()),
    ]
}

/// A broker that requires SASL_SSL and a PostgreSQL that accepts only TLS with a password,
/// both with `pki`'s server certificate, and a database on it.
async fn secured_servers(pki: &Pki) -> (TestBroker, TestPostgres, String) {
    let broker = TestBroker::start_secured(
        &pki.path("server.pem"),
        &pki.path("server.key"),
        &[(SASL_USER, SASL_PASSWORD)],
    );
    let mut pg = TestPostgres::start();
    let database = pg
        .require_tls(&pki.cert_pem, &pki.key_pem, PG_USER, PG_PASSWORD)
        .await;
    (broker, pg, database)
}

/// A store URL for `database` as a managed server is reached: by name, checked in full.
fn verify_full(pg: &TestPostgres, pki: &Pki, database: &str) -> String {
    format!(
        "postgres://{PG_USER}@localhost:{}/{database}?sslmode=verify-full&sslrootcert={}",
        pg.port().unwrap(),
        pki.file("ca.pem")
    )
}

/// Everything a test heard back, to search for secrets at the end.
#[derive(Default)]
struct Heard(Vec<String>);

impl Heard {
    fn keep(&mut self, reply: Reply) -> Reply {
        self.0.push(reply.text.clone());
        self.0.push(format!("{:?}", reply.headers));
        reply
    }

    fn assert_no_secret(&self, what: &str) {
        for text in &self.0 {
            for secret in SECRETS {
                assert!(
                    !text.contains(secret),
                    "{what} shows a secret ({secret}):\n{text}"
                );
            }
        }
    }
}

async fn operator(method: &str, url: &str, body: Option<&Value>) -> Reply {
    let bearer = format!("Bearer {TOKEN}");
    let body = body.map(Value::to_string);
    call_with(
        method,
        url,
        body.as_deref().map(str::as_bytes),
        &[("authorization", &bearer)],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_order_flow_runs_over_sasl_ssl_a_verify_full_store_and_https_and_shows_no_secret() {
    let pki = Pki::new();
    trust(&pki.ca_pem);
    let (broker, pg, database) = secured_servers(&pki).await;
    let store = verify_full(&pg, &pki, &database);
    let env = secured_env(&pki, &broker, &store, &pki.path(""));
    let mut system = System::start_with(broker, &env);
    assert!(system.order.url("/").starts_with("https://"));
    system.wait_until_consuming().await;
    let mut heard = Heard::default();

    // Creates and updates, over HTTPS, through SASL_SSL, into the TLS store.
    for n in 0..5 {
        let id = format!("TLS-{n}");
        assert_eq!(heard.keep(system.create(&id, n + 1).await).status, 201);
        assert_eq!(heard.keep(system.update(&id, "shipped").await).status, 202);
    }
    for n in 0..5 {
        let id = format!("TLS-{n}");
        eventually("the update applied", || async {
            let reply = system.order_details(&id).await;
            (reply.json["data"]["status"] == "shipped").then_some(())
        })
        .await;
    }
    // An update for an order that does not exist: retried, then a dead letter; the order
    // arrives and the redrive applies it.
    assert_eq!(
        heard
            .keep(system.update("TLS-LATE", "delivered").await)
            .status,
        202
    );
    let letters = eventually("a dead letter", || async {
        let reply = operator("GET", &system.order.url("/api/dlq/messages"), None).await;
        let letters = reply.json["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (!letters.is_empty()).then_some(reply)
    })
    .await;
    heard.keep(letters);
    assert_eq!(heard.keep(system.create("TLS-LATE", 1).await).status, 201);
    eventually("the late order stored", || async {
        (system.order_details("TLS-LATE").await.status == 200).then_some(())
    })
    .await;
    let redrive = heard.keep(
        operator(
            "POST",
            &system.order.url("/api/dlq/redrive"),
            Some(&json!({"orderId": "TLS-LATE"})),
        )
        .await,
    );
    assert_eq!(redrive.status, 200, "{}", redrive.text);
    assert_eq!(
        redrive.json["redrive"]["republished"], 1,
        "{}",
        redrive.text
    );
    eventually("the redriven update applied", || async {
        let reply = system.order_details("TLS-LATE").await;
        (reply.json["data"]["status"] == "delivered").then_some(())
    })
    .await;

    // The id scans, the console and its API, health, metrics, the contract: every endpoint.
    let ids = heard.keep(
        get(&system.order.url(&format!(
            "/api/getAllOrderIdsFromTopic?topicName={}",
            system.topics[0]
        )))
        .await,
    );
    assert_eq!(ids.status, 200, "{}", ids.text);
    assert!(ids.text.contains("TLS-4"), "{}", ids.text);
    for path in [
        "/api/dlq/info",
        "/api/stats",
        "/api/order-history?orderId=TLS-0",
        "/api/console/overview",
        "/console",
        "/console/dead-letters",
        "/console/redrive",
        "/console/orders",
        "/console/assets/console.js",
        "/openapi.json",
        "/metrics",
        "/health",
    ] {
        let reply = heard.keep(operator("GET", &system.order.url(path), None).await);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        heard.keep(get(&system.order.url(path)).await);
    }
    for path in ["/health", "/metrics", "/openapi.json"] {
        let reply = heard.keep(get(&system.cart.url(path)).await);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
    }
    // Errors too: a bad body, a wrong token.
    heard.keep(
        call_with(
            "POST",
            &system.cart.url("/api/create-order"),
            Some(b"{"),
            &[],
        )
        .await,
    );
    heard.keep(
        call_with(
            "POST",
            &system.order.url("/api/dlq/redrive"),
            Some(b"{}"),
            &[("authorization", "Bearer not-the-token-at-all")],
        )
        .await,
    );
    // Plain HTTP to an HTTPS-only shell gets nothing served.
    let plain = ordering_http::testing::try_call_with(
        "GET",
        &system.order.url("/health").replace("https://", "http://"),
        None,
        &[],
    )
    .await;
    assert!(!matches!(plain, Ok(reply) if reply.status == 200));

    // Every connection of the service to PostgreSQL is encrypted.
    let (encrypted, plaintext) = pg_connections(&pg).await;
    assert!(encrypted > 0, "order-shell has no connection to the store");
    assert_eq!(
        plaintext, 0,
        "order-shell has unencrypted store connections"
    );

    // A password rotated on the server: new connections are refused; that is the world's
    // fault, waited out with /health red and the reason, and nothing is dead-lettered.
    pg.execute(&[
        &format!("ALTER ROLE {PG_USER} PASSWORD 'rotated-elsewhere'"),
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{PG_USER}'"
        ),
    ])
    .await;
    assert_eq!(
        heard.keep(system.update("TLS-0", "returned").await).status,
        202
    );
    let red = eventually("/health red with the reason", || async {
        let reply = get(&system.order.url("/health")).await;
        (reply.status == 503).then_some(reply)
    })
    .await;
    let red = heard.keep(red);
    let reason = red.json["store"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.contains("refused the login"), "{}", red.text);
    pg.execute(&[&format!("ALTER ROLE {PG_USER} PASSWORD '{}'", PG_PASSWORD)])
        .await;
    eventually(
        "the update applied once the password is right again",
        || async {
            let reply = system.order_details("TLS-0").await;
            (reply.json["data"]["status"] == "returned").then_some(())
        },
    )
    .await;
    let letters = heard.keep(operator("GET", &system.order.url("/api/dlq/messages"), None).await);
    let count = letters.json["messages"].as_array().map_or(0, Vec::len);
    assert_eq!(count, 1, "only TLS-LATE's letter: {}", letters.text);

    // A clean stop of both, then every line they wrote.
    assert!(system.order.terminate().success(), "{}", system.order.log());
    assert!(system.cart.terminate().success(), "{}", system.cart.log());
    heard.0.push(system.order.log());
    heard.0.push(system.cart.log());
    assert!(
        system.order.log().contains("TRACE") || system.order.log().contains("trace"),
        "the processes ran at RUST_LOG=trace"
    );
    // --help, with every secret in the environment.
    for binary in [order_binary(), cart_binary()] {
        let help = Command::new(&binary)
            .arg("--help")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        heard
            .0
            .push(String::from_utf8_lossy(&help.stdout).into_owned());
        heard
            .0
            .push(String::from_utf8_lossy(&help.stderr).into_owned());
    }
    heard.assert_no_secret("a reply, a log line or --help");
}

/// order-shell's connections to PostgreSQL: (encrypted, not encrypted).
async fn pg_connections(pg: &TestPostgres) -> (i64, i64) {
    let rows = pg
        .query(&format!(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
             FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.usename = '{PG_USER}'"
        ))
        .await;
    (rows[0][0].parse().unwrap(), rows[0][1].parse().unwrap())
}

fn order_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_order-shell"))
}

fn cart_binary() -> PathBuf {
    order_binary().with_file_name("cart-shell")
}

/// Runs `binary` with `env` until it exits (at most 90 s): its exit code and what it printed.
fn run_to_exit(binary: &Path, env: &[(&str, String)]) -> (Option<i32>, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let mut child = Command::new(binary)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "info")
        .env("API_HOST", "127.0.0.1")
        .env("API_PORT", port.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "{} still runs after 90 s:\n{}{}",
                binary.display(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), printed)
}

/// Each refusal a person must fix stops the start, in words naming what to look at, within
/// a minute, and shows no secret.
#[tokio::test(flavor = "multi_thread")]
async fn refused_connections_stop_the_start_naming_the_setting() {
    let pki = Pki::new();
    let (broker, pg, database) = secured_servers(&pki).await;
    let good = secured_env(
        &pki,
        &broker,
        &verify_full(&pg, &pki, &database),
        &pki.path(""),
    );
    let with = |changes: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        let mut env: Vec<_> = good
            .iter()
            .filter(|(k, _)| !changes.iter().any(|(c, _)| c == k))
            .cloned()
            .collect();
        env.extend(changes.iter().map(|(k, v)| (*k, (*v).to_owned())));
        env
    };
    let rogue = pki.file("rogue-ca.pem");
    let plaintext_store = verify_full(&pg, &pki, &database).replace("verify-full", "disable");
    let wrong_password = pki.path("").join("wrong-pg-password");
    std::fs::write(&wrong_password, "not-it\n").unwrap();
    let wrong_password = wrong_password.display().to_string();
    type Case<'a> = (&'a str, PathBuf, Vec<(&'static str, String)>, &'a [&'a str]);
    let cases: Vec<Case> = vec![
        (
            "a wrong SASL password",
            cart_binary(),
            with(&[("KAFKA_SASL_PASSWORD", "not-the-password")]),
            &["authentication failed", "KAFKA_SASL_PASSWORD"],
        ),
        (
            "a CA that does not sign the broker's certificate",
            cart_binary(),
            with(&[("KAFKA_SSL_CA_LOCATION", &rogue)]),
            &["not signed by a trusted CA", "KAFKA_SSL_CA_LOCATION"],
        ),
        (
            "plaintext to a TLS listener",
            cart_binary(),
            with(&[
                ("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext"),
                ("KAFKA_SSL_CA_LOCATION", ""),
            ]),
            &["another security protocol", "KAFKA_SECURITY_PROTOCOL"],
        ),
        (
            "a store that requires TLS reached with sslmode=disable",
            order_binary(),
            with(&[("ORDER_STORE_URL", &plaintext_store)]),
            &["accepts only TLS", "sslmode", "ORDER_STORE_URL"],
        ),
        (
            "a store whose CA is not sslrootcert",
            order_binary(),
            with(&[(
                "ORDER_STORE_URL",
                &verify_full(&pg, &pki, &database).replace("ca.pem", "rogue-ca.pem"),
            )]),
            &["not signed by a CA in sslrootcert", "ORDER_STORE_URL"],
        ),
        (
            "a wrong store password",
            order_binary(),
            with(&[(
                "ORDER_STORE_URL",
                &verify_full(&pg, &pki, &database)
                    .replace(&format!("{PG_USER}@"), &format!("{PG_USER}:not-it@")),
            )]),
            &["ORDER_STORE_PASSWORD_FILE"],
        ),
        (
            "a key store that requires TLS reached with sslmode=disable",
            cart_binary(),
            with(&[("IDEMPOTENCY_STORE_URL", &plaintext_store)]),
            &["accepts only TLS", "sslmode", "IDEMPOTENCY_STORE_URL"],
        ),
        (
            "a wrong key store password",
            cart_binary(),
            with(&[("IDEMPOTENCY_STORE_PASSWORD_FILE", &wrong_password)]),
            &["refused the login", "IDEMPOTENCY_STORE_PASSWORD_FILE"],
        ),
    ];
    for (what, binary, env, expected) in cases {
        eprintln!("{what}");
        let started = Instant::now();
        let (code, printed) = run_to_exit(&binary, &env);
        assert!(
            code.is_some_and(|c| c != 0),
            "{what}: exit {code:?}\n{printed}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what}: took {:?}",
            started.elapsed()
        );
        for words in expected {
            assert!(
                printed.contains(words),
                "{what}: no {words:?} in:\n{printed}"
            );
        }
        for secret in SECRETS {
            assert!(
                !printed.contains(secret),
                "{what} shows a secret:\n{printed}"
            );
        }
    }
    drop(broker);

    // An expired broker certificate.
    let expired = TestBroker::start_secured(
        &pki.path("expired.pem"),
        &pki.path("expired.key"),
        &[(SASL_USER, SASL_PASSWORD)],
    );
    let mut env = good.clone();
    for (k, v) in &mut env {
        if *k == "KAFKA_BOOTSTRAP_SERVERS" {
            *v = expired.bootstrap();
        }
    }
    let (code, printed) = run_to_exit(&cart_binary(), &env);
    assert!(
        code.is_some_and(|c| c != 0),
        "expired: exit {code:?}\n{printed}"
    );
    assert!(printed.contains("expired"), "{printed}");
    for secret in SECRETS {
        assert!(
            !printed.contains(secret),
            "expired: shows a secret:\n{printed}"
        );
    }
}
