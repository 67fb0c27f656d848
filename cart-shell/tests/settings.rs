//! cart-shell's settings: every one a flag and a variable, listed by `--help` with its
//! default, the command line's defaults the same as the code's, and a bad value named.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cart_shell::{Cli, KeyStore, Settings};
use clap::CommandFactory;
use ordering_http::env::Env;
use ordering_http::testing::check_settings;
use ordering_store::SslMode;

const BINARY: &str = env!("CARGO_BIN_EXE_cart-shell");

#[test]
fn every_setting_is_a_flag_and_a_variable_listed_by_help_with_the_codes_default() {
    let help = check_settings(Cli::command(), Path::new(BINARY), Settings::from_env);
    for default in [
        "[default: 8000]",
        "[default: order-events]",
        "[default: 5000]",
        "[default: data/cart-idempotency.db]",
        "[default: 24h]",
        "[default: 100000]",
        "[default: 256]",
        "[default: 250]",
    ] {
        assert!(
            help.contains(default),
            "{default} missing from --help:\n{help}"
        );
    }
}

#[test]
fn a_flag_sets_its_setting_and_a_bad_one_is_named() {
    let env = Env::from_args(
        Cli::command(),
        [
            "cart-shell",
            "--kafka-topic",
            "elsewhere",
            "--api-port",
            "9100",
        ],
    )
    .unwrap();
    let settings = Settings::from_env(&env).unwrap();
    assert_eq!(settings.order_topic, "elsewhere");
    assert_eq!(settings.listen.port(), 9100);

    let env = Env::from_args(
        Cli::command(),
        ["cart-shell", "--kafka-topic-partitions", "0"],
    );
    let error = Settings::from_env(&env.unwrap()).unwrap_err();
    assert_eq!(error.name, "KAFKA_TOPIC_PARTITIONS");

    let env = Env::from_args(
        Cli::command(),
        [
            "cart-shell",
            "--idempotency-key-ttl",
            "90m",
            "--idempotency-max-keys",
            "7",
            "--idempotency-db",
            "/tmp/keys.db",
        ],
    )
    .unwrap();
    let keys = Settings::from_env(&env).unwrap().idempotency;
    assert_eq!(keys.ttl, Duration::from_secs(90 * 60));
    assert_eq!(keys.max_keys, 7);
    assert_eq!(keys.store, KeyStore::Sqlite(PathBuf::from("/tmp/keys.db")));
    // A keyed create holds its key through a publish's two waits, plus a margin.
    let policy = keys.policy(Duration::from_secs(3));
    assert_eq!(policy.lease, Duration::from_secs(11));
    for (name, value) in [
        ("IDEMPOTENCY_KEY_TTL", "0s"),
        ("IDEMPOTENCY_KEY_TTL", "tomorrow"),
        ("IDEMPOTENCY_KEY_TTL", "24"),
        ("IDEMPOTENCY_MAX_KEYS", "0"),
        ("IDEMPOTENCY_MAX_KEYS", "-1"),
        ("IDEMPOTENCY_STORE_URL", "memory://"),
        ("IDEMPOTENCY_STORE_URL", "mysql://db/keys"),
        (
            "IDEMPOTENCY_STORE_URL",
            "postgres://app@db/keys?sslmode=sometimes",
        ),
    ] {
        let error = Settings::from_env(&Env::from_pairs(&[(name, value)])).unwrap_err();
        assert_eq!(error.name, name, "{value}: {error}");
    }
    // Shared keys in PostgreSQL, with the order store's TLS and password handling.
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "key-store-secret\n").unwrap();
    let password = password.display().to_string();
    let env = Env::from_pairs(&[
        (
            "IDEMPOTENCY_STORE_URL",
            "postgres://cart@db.internal:5432/keys?sslmode=verify-full",
        ),
        ("IDEMPOTENCY_STORE_PASSWORD_FILE", &password),
    ]);
    let keys = Settings::from_env(&env).unwrap().idempotency;
    let KeyStore::Postgres(url) = &keys.store else {
        panic!("{:?}", keys.store)
    };
    assert_eq!(url.ssl_mode(), SslMode::VerifyFull);
    let shown = format!("{:?} {}", keys, keys.store.describe());
    assert!(!shown.contains("key-store-secret"), "{shown}");
    assert_eq!(
        Settings::from_env(&Env::from_pairs(&[(
            "IDEMPOTENCY_STORE_URL",
            "sqlite:///tmp/other.db"
        )]))
        .unwrap()
        .idempotency
        .store,
        KeyStore::SqliteUrl(PathBuf::from("/tmp/other.db"))
    );
    // Two settings that both say where the keys are, or a password for no server: refused.
    let both = Env::from_pairs(&[
        ("IDEMPOTENCY_STORE_URL", "postgres://cart@db/keys"),
        ("IDEMPOTENCY_DB", "/tmp/keys.db"),
    ]);
    let error = Settings::from_env(&both).unwrap_err();
    assert_eq!(error.name, "IDEMPOTENCY_STORE_URL");
    assert!(error.to_string().contains("IDEMPOTENCY_DB"), "{error}");
    let stray = Env::from_pairs(&[("IDEMPOTENCY_STORE_PASSWORD_FILE", password.as_str())]);
    assert_eq!(
        Settings::from_env(&stray).unwrap_err().name,
        "IDEMPOTENCY_STORE_PASSWORD_FILE"
    );
    // Order and status updates on one topic: refused, naming both.
    let same = Env::from_pairs(&[
        ("KAFKA_TOPIC", "events"),
        ("KAFKA_STATUS_UPDATE_TOPIC", "events"),
    ]);
    let error = Settings::from_env(&same).unwrap_err();
    assert_eq!(error.name, "KAFKA_STATUS_UPDATE_TOPIC");
    assert!(error.to_string().contains("KAFKA_TOPIC"), "{error}");

    let env = Env::from_args(
        Cli::command(),
        [
            "cart-shell",
            "--publish-max-in-flight",
            "8",
            "--publish-queue-wait-ms",
            "0",
        ],
    )
    .unwrap();
    let publish = Settings::from_env(&env).unwrap().publish;
    assert_eq!(publish.max_in_flight, 8);
    assert_eq!(
        publish.queue_wait,
        Duration::ZERO,
        "0: shed whenever no slot is free"
    );
    let defaults = Settings::from_env(&Env::from_pairs(&[])).unwrap().publish;
    assert_eq!(
        (defaults.max_in_flight, defaults.queue_wait),
        (256, Duration::from_millis(250))
    );
    for (name, value) in [
        ("PUBLISH_MAX_IN_FLIGHT", "0"),
        ("PUBLISH_MAX_IN_FLIGHT", "many"),
        ("PUBLISH_QUEUE_WAIT_MS", "-1"),
        ("PUBLISH_QUEUE_WAIT_MS", "250ms"),
    ] {
        let error = Settings::from_env(&Env::from_pairs(&[(name, value)])).unwrap_err();
        assert_eq!(error.name, name, "{value}: {error}");
    }

    // A flag the shell does not have stops it at once, with clap's usage error.
    let output = Command::new(BINARY).arg("--no-such-flag").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--no-such-flag"));
}
