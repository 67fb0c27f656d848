//! order-shell's settings: every one a flag and a variable, listed by `--help` with its
//! default (the operator token's value never shown), the command line's defaults the same as
//! the code's, and a bad value named.

use std::path::Path;
use std::process::Command;

use clap::CommandFactory;
use order_shell::config::{Cli, Config};
use shell_http::env::Env;
use shell_http::testing::{declared_variables, help_lists};

const BINARY: &str = env!("CARGO_BIN_EXE_order-shell");

#[test]
fn every_setting_read_is_a_flag_and_a_variable_listed_by_help() {
    let env = Env::from_args(Cli::command(), ["order-shell"]).unwrap();
    Config::from_env(&env).unwrap();
    shell_http::init_tracing(&env).unwrap();
    let mut asked: Vec<String> = env.asked().into_iter().map(str::to_owned).collect();
    asked.sort();
    assert_eq!(asked, declared_variables(&Cli::command()));
    let help = help_lists(Path::new(BINARY), &asked);
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
    assert!(help.contains("[env: OPERATOR_TOKEN]"), "{help}");
    assert!(
        !help.contains(token),
        "--help shows the operator token:\n{help}"
    );
}

#[test]
fn the_command_lines_defaults_are_the_codes() {
    let from_command_line = Env::from_args(Cli::command(), ["order-shell"]).unwrap();
    let from_nothing = Env::from_pairs(&[]);
    assert_eq!(
        format!("{:?}", Config::from_env(&from_command_line).unwrap()),
        format!("{:?}", Config::from_env(&from_nothing).unwrap())
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
