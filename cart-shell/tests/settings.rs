//! cart-shell's settings: every one a flag and a variable, listed by `--help` with its
//! default, the command line's defaults the same as the code's, and a bad value named.

use std::path::Path;
use std::process::Command;

use cart_shell::{Cli, Settings};
use clap::CommandFactory;
use shell_http::env::Env;
use shell_http::testing::check_settings;

const BINARY: &str = env!("CARGO_BIN_EXE_cart-shell");

#[test]
fn every_setting_is_a_flag_and_a_variable_listed_by_help_with_the_codes_default() {
    let help = check_settings(Cli::command(), Path::new(BINARY), Settings::from_env);
    for default in [
        "[default: 8000]",
        "[default: order-events]",
        "[default: 5000]",
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

    // A flag the shell does not have stops it at once, with clap's usage error.
    let output = Command::new(BINARY).arg("--no-such-flag").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--no-such-flag"));
}
