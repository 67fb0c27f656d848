//! order-shell's settings: every one a flag and a variable, listed by `--help` with its
//! default (the operator token's value never shown), the command line's defaults the same as
//! the code's, and a bad value named.

use std::path::Path;
use std::process::Command;

use clap::CommandFactory;
use order_shell::config::{Cli, Config};
use ordering_http::env::Env;
use ordering_http::testing::check_settings;
use ordering_kafka::order::SchemaFamily;

const BINARY: &str = env!("CARGO_BIN_EXE_order-shell");

#[test]
fn every_setting_is_a_flag_and_a_variable_listed_by_help_with_the_codes_default() {
    let help = check_settings(Cli::command(), Path::new(BINARY), Config::from_env);
    for default in [
        "[default: 8001]",
        "[default: sqlite://data/orders.db]",
        "[default: order-events-dlq]",
        "[default: 5]",
    ] {
        assert!(
            help.contains(default),
            "{default} missing from --help:\n{help}"
        );
    }

    let token = "a-token-nobody-may-see-0042";
    let output = Command::new(BINARY)
        .arg("--help")
        .env("OPERATOR_TOKEN", token)
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("  OPERATOR_TOKEN "), "{help}");
    assert!(
        !help.contains("--operator-token"),
        "no flag for a secret:\n{help}"
    );
    assert!(
        !help.contains(token),
        "--help shows the operator token:\n{help}"
    );
}

#[test]
fn a_flag_sets_its_setting_and_a_bad_one_is_named() {
    let env = Env::from_args(
        Cli::command(),
        [
            "order-shell",
            "--order-store-url",
            "memory://",
            "--kafka-fetch-wait-max-ms",
            "500",
        ],
    )
    .unwrap();
    let config = Config::from_env(&env).unwrap();
    assert_eq!(config.store, ordering_store::StoreUrl::Memory);
    assert_eq!(config.fetch_wait_max, std::time::Duration::from_millis(500));

    let env = Env::from_args(Cli::command(), ["order-shell", "--dlq-max-retries", "many"]);
    let error = Config::from_env(&env.unwrap()).err().unwrap();
    assert_eq!(error.name, "DLQ_MAX_RETRIES");

    // Dead letters older than version 3 would drop what a redrive needs.
    let env = Env::from_args(Cli::command(), ["order-shell", "--avro-dlq-version", "2"]);
    let error = Config::from_env(&env.unwrap()).err().unwrap();
    assert_eq!(error.name, "AVRO_DLQ_VERSION");
    assert!(error.reason.contains("redrive"), "{error}");
    let env = Env::from_args(Cli::command(), ["order-shell", "--avro-dlq-version", "4"]);
    let config = Config::from_env(&env.unwrap()).unwrap();
    assert_eq!(config.codec.writes(SchemaFamily::DeadLetter), 4);
    // Unset: the contract's letters, `com.ecommerce.dlq.DeadLetter` (version 3), not the
    // library's newest.
    let env = Env::from_args(Cli::command(), ["order-shell"]);
    let config = Config::from_env(&env.unwrap()).unwrap();
    assert_eq!(config.codec.writes(SchemaFamily::DeadLetter), 3);

    // Topics that contradict each other: refused at start-up, naming both settings.
    for (flags, named, other) in [
        (
            ["--kafka-status-update-topic", "order-events"],
            "KAFKA_STATUS_UPDATE_TOPIC",
            "KAFKA_TOPIC",
        ),
        (
            ["--kafka-dlq-topic", "order-status-updates"],
            "KAFKA_DLQ_TOPIC",
            "KAFKA_STATUS_UPDATE_TOPIC",
        ),
        (
            ["--kafka-dlq-topic", "order-events"],
            "KAFKA_DLQ_TOPIC",
            "KAFKA_TOPIC",
        ),
    ] {
        let args = ["order-shell", flags[0], flags[1]];
        let error = Config::from_env(&Env::from_args(Cli::command(), args).unwrap())
            .err()
            .unwrap();
        assert_eq!(error.name, named, "{error}");
        assert!(error.to_string().contains(other), "{error}");
    }
    let output = Command::new(BINARY)
        .args(["--kafka-dlq-topic", "order-events"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("KAFKA_DLQ_TOPIC") && stderr.contains("KAFKA_TOPIC"),
        "{stderr}"
    );

    // Exit 2 and the variable named, from the real binary.
    let output = Command::new(BINARY)
        .args(["--dlq-retry-backoff-ms", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("DLQ_RETRY_BACKOFF_MS"),
        "{output:?}"
    );
}
