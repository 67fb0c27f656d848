//! Configuration: each setting is a command-line flag and an environment variable (clap
//! reads both, and `--help` lists them with their defaults), looked up here by the variable's
//! name. A value that does not parse stops the service with a message naming the variable; it
//! never falls back to the default silently.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt::Display;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};

/// A variable whose value is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {name}={value:?}: {reason}")]
pub struct EnvError {
    /// The variable, by its environment name (`KAFKA_TOPIC`).
    pub name: &'static str,
    /// The value as given: empty when a required variable is missing, `(hidden)` for a
    /// secret.
    pub value: String,
    /// Why the value is refused, for a person to act on.
    pub reason: String,
}

/// Settings read from the environment only, never from a flag: secrets. `--help` names them
/// in its closing text ([`ENVIRONMENT_ONLY_HELP`]).
pub const ENVIRONMENT_ONLY: &[&str] = &[
    "OPERATOR_TOKEN",
    "OPERATOR_TOKEN_FILE",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SASL_PASSWORD_FILE",
    "KAFKA_SSL_KEY_PASSWORD_FILE",
    "ORDER_STORE_PASSWORD_FILE",
    "IDEMPOTENCY_STORE_PASSWORD_FILE",
    "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
    "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE",
];

// The pieces of the help texts below, as macros: `concat!` takes literals only.
macro_rules! environment_only_heading {
    () => {
        "Environment only (never a flag, which would show in the process list):\n  "
    };
}
macro_rules! kafka_secrets_help {
    () => {
        "KAFKA_SASL_PASSWORD  the SASL password\n  \
         KAFKA_SASL_PASSWORD_FILE  a file holding it, instead of KAFKA_SASL_PASSWORD\n  \
         KAFKA_SSL_KEY_PASSWORD_FILE  a file holding the passphrase of KAFKA_SSL_KEY_LOCATION\n  \
         OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER, ...\n  \
                              OpenTelemetry's own: traces over OTLP (README, \"Tracing\")"
    };
}

macro_rules! registry_secrets_help {
    () => {
        "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO  <user>:<password> for the schema registry (an API key and secret)\n  \
         SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE  a file holding it, instead\n  "
    };
}

/// What order-shell's `--help` says of its [`ENVIRONMENT_ONLY`] settings.
pub const ENVIRONMENT_ONLY_HELP: &str = concat!(
    environment_only_heading!(),
    "OPERATOR_TOKEN       the bearer token (16+ characters) of the operator endpoints\n  \
     OPERATOR_TOKEN_FILE  a file holding it, instead of OPERATOR_TOKEN\n  \
     ORDER_STORE_PASSWORD_FILE  a file holding the PostgreSQL store's password\n  ",
    registry_secrets_help!(),
    kafka_secrets_help!()
);

/// What cart-shell's `--help` says of its [`ENVIRONMENT_ONLY`] settings: the Kafka secrets and
/// the idempotency store's password.
pub const CART_ENVIRONMENT_ONLY_HELP: &str = concat!(
    environment_only_heading!(),
    "IDEMPOTENCY_STORE_PASSWORD_FILE  a file holding the PostgreSQL key store's password\n  ",
    registry_secrets_help!(),
    kafka_secrets_help!()
);

/// What the `--help` of a service with no operator endpoints and no store (an
/// `ordering-service`) says of its [`ENVIRONMENT_ONLY`] settings: the Kafka secrets.
pub const KAFKA_ENVIRONMENT_ONLY_HELP: &str =
    concat!(environment_only_heading!(), kafka_secrets_help!());

/// Looks a variable up.
type Lookup = Box<dyn Fn(&str) -> Option<String>>;

/// Where settings are looked up: a shell's command line and environment, or a fixed list in
/// tests.
pub struct Env {
    lookup: Lookup,
    /// Every name asked for, so a test can check each is a declared setting.
    asked: Mutex<BTreeSet<&'static str>>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env").finish_non_exhaustive()
    }
}

impl Env {
    /// The settings `command` declares, from this process's flags, else its environment
    /// variables, else the declared defaults. `--help`, `--version` and a malformed command
    /// line come back as clap's error, to be shown with [`clap::Error::exit`].
    pub fn from_command_line(command: clap::Command) -> Result<Self, clap::Error> {
        Self::from_args(command, std::env::args_os())
    }

    /// [`from_command_line`](Self::from_command_line) with the arguments given (the first is
    /// the program's name).
    pub fn from_args<I, T>(command: clap::Command, args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Self::parse_args(command, args).map(|(env, _)| env)
    }

    /// [`from_args`](Self::from_args), also giving clap's matches: for settings a service
    /// declares of its own (`clap::Args`), read with `FromArgMatches`.
    pub fn parse_args<I, T>(
        command: clap::Command,
        args: I,
    ) -> Result<(Self, clap::ArgMatches), clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = command.clone().try_get_matches_from(args)?;
        let mut pairs: Vec<(String, String)> = command
            .get_arguments()
            .filter_map(|arg| {
                let name = arg.get_env()?.to_str()?.to_owned();
                // `try_`: an argument that is not text is skipped (a test catches it), never a panic.
                let value = matches
                    .try_get_one::<String>(arg.get_id().as_str())
                    .ok()
                    .flatten()?;
                Some((name, value.clone()))
            })
            .collect();
        // Secrets come from the environment only: a flag would show them to every user of
        // the machine in the process list.
        pairs.extend(
            ENVIRONMENT_ONLY
                .iter()
                .filter_map(|name| Some(((*name).to_owned(), std::env::var(name).ok()?))),
        );
        Ok((Self::from_owned(pairs), matches))
    }

    /// Settings from `(variable, value)` pairs only, for tests: neither the command line nor
    /// the environment is read.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self::from_owned(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    fn from_owned(pairs: Vec<(String, String)>) -> Self {
        Self {
            lookup: Box::new(move |name| {
                pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            }),
            asked: Mutex::default(),
        }
    }

    /// Every setting looked up so far, by variable name.
    pub fn asked(&self) -> Vec<&'static str> {
        self.names().iter().copied().collect()
    }

    fn names(&self) -> std::sync::MutexGuard<'_, BTreeSet<&'static str>> {
        self.asked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn raw(&self, name: &'static str) -> Option<String> {
        self.names().insert(name);
        (self.lookup)(name)
    }

    /// `name` parsed, or `default` when it is unset or empty.
    pub fn get<T>(&self, name: &'static str, default: T) -> Result<T, EnvError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.check(name, default, |_| Ok(()))
    }

    /// Like [`get`](Self::get), with a further check of the parsed value.
    pub fn check<T>(
        &self,
        name: &'static str,
        default: T,
        valid: impl Fn(&T) -> Result<(), String>,
    ) -> Result<T, EnvError>
    where
        T: FromStr,
        T::Err: Display,
    {
        Ok(self.optional(name, valid)?.unwrap_or(default))
    }

    /// `name` parsed and checked, or `None` when it is unset or empty.
    pub fn optional<T>(
        &self,
        name: &'static str,
        valid: impl Fn(&T) -> Result<(), String>,
    ) -> Result<Option<T>, EnvError>
    where
        T: FromStr,
        T::Err: Display,
    {
        let Some(raw) = self.raw(name).filter(|v| !v.trim().is_empty()) else {
            return Ok(None);
        };
        let error = |reason: String| EnvError {
            name,
            value: raw.clone(),
            reason,
        };
        let value: T = raw
            .trim()
            .parse()
            .map_err(|e: T::Err| error(e.to_string()))?;
        valid(&value).map_err(error)?;
        Ok(Some(value))
    }

    /// A non-empty string, trimmed.
    pub fn text(&self, name: &'static str, default: &str) -> String {
        self.raw(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_or_empty_means_the_default() {
        let env = Env::from_pairs(&[("EMPTY", " ")]);
        assert_eq!(env.get("UNSET", 3u32), Ok(3));
        assert_eq!(env.get("EMPTY", 3u32), Ok(3));
        assert_eq!(env.text("UNSET", "x"), "x");
    }

    #[test]
    fn a_bad_value_names_the_variable() {
        let env = Env::from_pairs(&[("DLQ_MAX_RETRIES", "abc"), ("PARTS", "0")]);
        let error = env.get("DLQ_MAX_RETRIES", 3u32).unwrap_err();
        assert_eq!(error.name, "DLQ_MAX_RETRIES");
        assert!(
            error
                .to_string()
                .starts_with("invalid DLQ_MAX_RETRIES=\"abc\""),
            "{error}"
        );
        let error = env
            .check("PARTS", 3i32, |n| {
                if *n > 0 {
                    Ok(())
                } else {
                    Err("must be positive".into())
                }
            })
            .unwrap_err();
        assert_eq!(error.reason, "must be positive");
    }

    #[test]
    fn the_command_line_gives_flags_and_defaults_by_variable_name() {
        let command = || {
            clap::Command::new("shell")
                .arg(
                    clap::Arg::new("api_port")
                        .long("api-port")
                        .env("API_PORT_FOR_THIS_TEST")
                        .default_value("80"),
                )
                .arg(
                    clap::Arg::new("other")
                        .long("other")
                        .env("OTHER_FOR_THIS_TEST"),
                )
        };
        let env = Env::from_args(command(), ["shell"]).unwrap();
        assert_eq!(env.get("API_PORT_FOR_THIS_TEST", 1u16), Ok(80));
        assert_eq!(env.get("OTHER_FOR_THIS_TEST", 7u16), Ok(7));
        let env = Env::from_args(command(), ["shell", "--api-port", "81"]).unwrap();
        assert_eq!(env.get("API_PORT_FOR_THIS_TEST", 1u16), Ok(81));
        assert_eq!(
            env.asked(),
            vec!["API_PORT_FOR_THIS_TEST"],
            "only what was looked up"
        );
        assert!(Env::from_args(command(), ["shell", "--nope"]).is_err());
    }

    #[test]
    fn values_are_trimmed() {
        let env = Env::from_pairs(&[("PORT", " 8000 ")]);
        assert_eq!(env.get("PORT", 1u16), Ok(8000));
    }
}
