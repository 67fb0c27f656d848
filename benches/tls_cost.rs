//! What production connectivity costs, each pair in one run on one machine:
//!
//! - **ingest**: `PUT /api/update-order` on cart-shell over plain HTTP to a plaintext broker,
//!   against cart-shell over HTTPS to a broker that requires TLS and SASL/SCRAM-SHA-512
//!   (rounds alternate which goes first);
//! - **Kafka drain**: the engine draining a pre-filled topic (`KafkaSource` + `Dispatcher`,
//!   no-op handler) from each of the two brokers;
//! - **store drain**: status updates applied to a PostgreSQL store over `sslmode=disable`
//!   against `sslmode=verify-full`, on the same server, with the same SCRAM password.
//!
//! ```text
//! cargo build --release -p cart-shell
//! cargo run --release -p ordering-benches --bin tls_cost -- [CONCURRENCY] [SECONDS] [RECORDS] [ROUNDS]
//! ```
//! (defaults 16, 10, 200000, 2). Starts its own brokers and PostgreSQL server.

use std::time::Duration;

use ordering_benches::{Error, cart_ingest, drain_engine, fill, release_binary, update_rate};
use ordering_http::testing::{Pki, ShellProcess};
use ordering_kafka::testing::{Storage, TestBroker, unique_topic};
use ordering_kafka::{
    ClientSecurity, Cluster, SaslCredentials, SaslMechanism, SecurityProtocol, TopicSettings,
    ensure_topics,
};
use ordering_store::StoreUrl;
use ordering_store::testing::TestPostgres;

const USER: &str = "bench";
const PASSWORD: &str = "bench-password-1f2e";

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let concurrency: usize = arg(0, "16").parse()?;
    let seconds: u64 = arg(1, "10").parse()?;
    let records: usize = arg(2, "200000").parse()?;
    let rounds: usize = arg(3, "2").parse()?;
    if rounds == 0 {
        return Err("at least one round".into());
    }
    let cart = release_binary("cart-shell")?;
    let pki = Pki::new();

    // The same storage as the secured broker, whose users must survive its restart: Nisshi's
    // sqlite storage is far slower than its memory storage, and would be taken for TLS's cost.
    let plain_broker = TestBroker::start_with(Storage::Sqlite);
    let secured_broker = TestBroker::start_secured(
        &pki.path("server.pem"),
        &pki.path("server.key"),
        &[(USER, PASSWORD)],
    );
    let plain = Cluster::new(plain_broker.bootstrap());
    let secured = Cluster::new(secured_broker.bootstrap()).with_security(
        ClientSecurity::plaintext()
            .with_protocol(SecurityProtocol::SaslSsl)
            .with_sasl(SaslCredentials {
                mechanism: SaslMechanism::ScramSha512,
                username: USER.into(),
                password: PASSWORD.to_owned().into(),
            })
            .with_ca_location(&pki.path("ca.pem")),
    );
    let (orders, updates) = (unique_topic("orders"), unique_topic("updates"));
    for cluster in [&plain, &secured] {
        ensure_topics(
            cluster,
            &[&orders, &updates],
            &TopicSettings::new(3),
            Duration::from_secs(20),
        )
        .await?;
    }
    let env = |broker: &TestBroker| {
        vec![
            ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
            ("KAFKA_TOPIC", orders.clone()),
            ("KAFKA_STATUS_UPDATE_TOPIC", updates.clone()),
            ("RUST_LOG", "warn".to_owned()),
        ]
    };
    let plain_shell = ShellProcess::start(&cart, &env(&plain_broker));
    let mut secured_env = env(&secured_broker);
    secured_env.extend([
        ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl".to_owned()),
        ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512".to_owned()),
        ("KAFKA_SASL_USERNAME", USER.to_owned()),
        ("KAFKA_SASL_PASSWORD", PASSWORD.to_owned()),
        ("KAFKA_SSL_CA_LOCATION", pki.file("ca.pem")),
        ("TLS_CERT_FILE", pki.file("server.pem")),
        ("TLS_KEY_FILE", pki.file("server.key")),
    ]);
    let secured_shell = ShellProcess::start(&cart, &secured_env);
    ordering_http::testing::trust(&pki.ca_pem);
    println!(
        "{concurrency} at a time, {seconds} s per ingest measurement, {records} records per drain, {rounds} rounds"
    );

    let mut ingest = Ratios::new("ingest", "http+plaintext", "https+sasl_ssl");
    for round in 0..rounds {
        let (p, t) = if round % 2 == 0 {
            let p = cart_ingest(&plain_shell, concurrency, seconds).await?;
            (p, cart_ingest(&secured_shell, concurrency, seconds).await?)
        } else {
            let t = cart_ingest(&secured_shell, concurrency, seconds).await?;
            (cart_ingest(&plain_shell, concurrency, seconds).await?, t)
        };
        ingest.round(round, p, t);
    }

    let mut drain = Ratios::new("kafka drain", "plaintext", "sasl_ssl");
    for round in 0..rounds {
        let mut pair = [0.0; 2];
        for (i, cluster) in [&plain, &secured].into_iter().enumerate() {
            let topic = unique_topic("drain");
            ensure_topics(
                cluster,
                &[&topic],
                &TopicSettings::new(3),
                Duration::from_secs(20),
            )
            .await?;
            fill(cluster, &topic, records).await?;
            pair[i] = drain_engine(cluster, &topic, records, &unique_topic("group")).await?;
        }
        drain.round(round, pair[0], pair[1]);
    }

    let mut pg = TestPostgres::start();
    let database = pg
        .require_tls(&pki.cert_pem, &pki.key_pem, USER, PASSWORD)
        .await;
    pg.allow_plaintext().await;
    let port = pg.port().ok_or("no port")?;
    let url = |mode: &str| {
        format!(
            "postgres://{USER}:{PASSWORD}@localhost:{port}/{database}?sslmode={mode}&sslrootcert={}",
            pki.file("ca.pem")
        )
    };
    let mut store = Ratios::new("store drain", "sslmode=disable", "verify-full");
    for round in 0..rounds {
        let mut pair = [0.0; 2];
        for (i, mode) in ["disable", "verify-full"].into_iter().enumerate() {
            let store = StoreUrl::parse(&url(mode))?.open().await?;
            pair[i] = update_rate(store, records).await?;
        }
        store.round(round, pair[0], pair[1]);
    }
    for ratios in [ingest, drain, store] {
        ratios.summary();
    }
    Ok(())
}

/// One measurement's rounds, plaintext against TLS: each round's rates and ratio are
/// printed as they come; the summary is the median of the ratios, each taken within one
/// round (never a ratio of medians, which could mix a cold round with a warm one).
struct Ratios {
    what: &'static str,
    plain: &'static str,
    tls: &'static str,
    ratios: Vec<f64>,
}

impl Ratios {
    fn new(what: &'static str, plain: &'static str, tls: &'static str) -> Self {
        Self {
            what,
            plain,
            tls,
            ratios: Vec::new(),
        }
    }

    fn round(&mut self, round: usize, plain: f64, tls: f64) {
        let (what, p, t) = (self.what, self.plain, self.tls);
        let ratio = tls / plain;
        println!("{what} round {round}: {p} {plain:>8.0}/s  {t} {tls:>8.0}/s  ratio {ratio:.2}");
        self.ratios.push(ratio);
    }

    fn summary(mut self) {
        self.ratios.sort_by(f64::total_cmp);
        if let Some(median) = self.ratios.get(self.ratios.len() / 2) {
            println!(
                "{}: median ratio {median:.2} over {} rounds",
                self.what,
                self.ratios.len()
            );
        }
    }
}
