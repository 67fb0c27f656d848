//! The Confluent Schema Registry settings (README, "Wire formats"): where the registry is,
//! how to authenticate and trust it, how subjects are named, whether a writer registers its
//! schemas, and which framing a service writes.

use std::time::Duration;

use ordering_kafka::{
    BasicAuth, Registration, Registry, RegistryConfig, RegistryError, SubjectStrategy, WireFormat,
};
use serde_json::{Value, json};

use crate::env::{Env, EnvError};
use crate::security::{readable, secret};

/// The flags and variables of the schema registry, for a shell's command line
/// (`#[command(flatten)]`). Their values are read by [`RegistrySettings::from_env`].
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Schema registry")]
pub struct RegistryArgs {
    /// The Avro framing this service writes: single-object (no registry needed) or confluent
    /// (a schema registry's ids, as Java's and Python's serializers write; needs
    /// SCHEMA_REGISTRY_URL). Records in either are read
    #[arg(long, env, default_value = "single-object")]
    pub avro_wire_format: Option<String>,
    /// A Confluent-compatible schema registry (http:// or https://): records in its framing
    /// are read with its schemas (basic auth: SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO or
    /// SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE, environment only)
    #[arg(long, env)]
    pub schema_registry_url: Option<String>,
    /// The CA certificates (PEM file) that sign the registry's certificate [default: the
    /// system's]
    #[arg(long, env)]
    pub schema_registry_ssl_ca_location: Option<String>,
    /// Register the schemas this service writes when the registry lacks them; false looks
    /// them up only, and refuses to start without them
    #[arg(long, env, default_value = "false")]
    pub schema_registry_auto_register: Option<String>,
    /// How subjects are named: topic (TOPIC-value), record (the record's full name) or
    /// topic-record (TOPIC-RECORD)
    #[arg(long, env, default_value = "topic")]
    pub schema_registry_subject_strategy: Option<String>,
}

/// What the registry settings say.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// `AVRO_WIRE_FORMAT`, default single-object: what the service writes.
    pub wire_format: WireFormat,
    /// The registry, if `SCHEMA_REGISTRY_URL` names one.
    pub registry: Option<RegistryConfig>,
}

impl RegistrySettings {
    /// The settings `env` gives: a URL that is not http(s), an unreadable CA file, user info
    /// that is not `<user>:<password>`, an unknown strategy or framing, or the Confluent
    /// framing without a registry are an error naming the setting (a secret's value hidden).
    pub fn from_env(env: &Env) -> Result<Self, EnvError> {
        // Every setting is read and checked, used or not: a bad one is named even before
        // the registry it belongs to is configured.
        let wire_format = env.check("AVRO_WIRE_FORMAT", WireFormat::SingleObject, |_| Ok(()))?;
        let url = env.text("SCHEMA_REGISTRY_URL", "");
        let url = url.trim().trim_end_matches('/');
        let ca_file = readable(env, "SCHEMA_REGISTRY_SSL_CA_LOCATION")?;
        let strategy = env.check(
            "SCHEMA_REGISTRY_SUBJECT_STRATEGY",
            SubjectStrategy::TopicName,
            |_| Ok(()),
        )?;
        let registration = match env.check("SCHEMA_REGISTRY_AUTO_REGISTER", false, |_| Ok(()))? {
            true => Registration::AutoRegister,
            false => Registration::LookUpOnly,
        };
        let user_info = secret(
            env,
            Some("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"),
            "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE",
        )?;
        let basic_auth = match user_info {
            None => None,
            Some(user_info) => {
                use ordering_kafka::ExposeSecret;
                let auth: BasicAuth =
                    user_info
                        .expose_secret()
                        .parse()
                        .map_err(|reason| EnvError {
                            name: "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
                            value: crate::security::HIDDEN.into(),
                            reason,
                        })?;
                Some(auth)
            }
        };
        if url.is_empty() {
            if wire_format == WireFormat::Confluent {
                return Err(EnvError {
                    name: "AVRO_WIRE_FORMAT",
                    value: "confluent".into(),
                    reason: "needs SCHEMA_REGISTRY_URL: the registry that gives the schema ids"
                        .into(),
                });
            }
            return Ok(Self {
                wire_format,
                registry: None,
            });
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(EnvError {
                name: "SCHEMA_REGISTRY_URL",
                value: url.into(),
                reason: "must start with http:// or https://".into(),
            });
        }
        let authority = url.split_once("://").map_or("", |(_, rest)| rest);
        if authority
            .split('/')
            .next()
            .is_some_and(|host| host.contains('@'))
        {
            // A URL is shown in logs, errors and the process list; credentials are not.
            return Err(EnvError {
                name: "SCHEMA_REGISTRY_URL",
                value: crate::security::HIDDEN.into(),
                reason: "must not hold credentials: give them in SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO or SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE".into(),
            });
        }
        let mut config = RegistryConfig::new(url);
        config.ca_file = ca_file;
        config.strategy = strategy;
        config.registration = registration;
        config.basic_auth = basic_auth;
        Ok(Self {
            wire_format,
            registry: Some(config),
        })
    }

    /// The registry client, if one is configured: kept for the process. A CA file that is
    /// not PEM is an error naming `SCHEMA_REGISTRY_SSL_CA_LOCATION`.
    pub fn connect(&self) -> Result<Option<&'static Registry>, EnvError> {
        let Some(config) = &self.registry else {
            return Ok(None);
        };
        Registry::new(config).map(Some).map_err(|e| EnvError {
            name: match e {
                RegistryError::Config(_) if config.ca_file.is_some() => {
                    "SCHEMA_REGISTRY_SSL_CA_LOCATION"
                }
                _ => "SCHEMA_REGISTRY_URL",
            },
            value: config.url.clone(),
            reason: e.to_string(),
        })
    }
}

/// Asks `ask` until the registry answers: while it is unavailable, logs and waits (doubling,
/// up to 10 s); any other failure (a schema not registered, refused) is returned.
pub async fn until_answered<T, F, Fut>(what: &str, mut ask: F) -> Result<T, RegistryError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RegistryError>>,
{
    let mut wait = Duration::from_millis(250);
    loop {
        match ask().await {
            Err(error) if error.is_retryable() => {
                tracing::warn!(%error, retry_in = ?wait, "{what}: the schema registry does not answer");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            answered => return answered,
        }
    }
}

/// The registry's part of a `/health` answer, and whether it is healthy: `not used` without
/// a registry; unhealthy while its calls fail (records that need it wait). The error, which
/// names the registry's address, only for the `operator`.
pub fn health(registry: Option<&Registry>, operator: bool) -> (Value, bool) {
    match registry.map(Registry::health) {
        None => (json!({"state": "not used"}), true),
        Some(Ok(())) => (json!({"state": "ok"}), true),
        Some(Err((failing_for, error))) => {
            let mut part = json!({
                "state": "unavailable",
                "failingForMs": u64::try_from(failing_for.as_millis()).unwrap_or(u64::MAX),
            });
            if operator {
                part["error"] = json!(error);
            }
            (part, false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_registry_and_bad_settings_are_named() {
        let settings = RegistrySettings::from_env(&Env::from_pairs(&[])).unwrap();
        assert_eq!(settings.wire_format, WireFormat::SingleObject);
        assert!(settings.registry.is_none());

        let refused = |pairs: &[(&str, &str)]| {
            RegistrySettings::from_env(&Env::from_pairs(pairs))
                .err()
                .map(|e| (e.name, e.value))
        };
        assert_eq!(
            refused(&[("AVRO_WIRE_FORMAT", "confluent")]).map(|e| e.0),
            Some("AVRO_WIRE_FORMAT")
        );
        assert_eq!(
            refused(&[("AVRO_WIRE_FORMAT", "protobuf")]).map(|e| e.0),
            Some("AVRO_WIRE_FORMAT")
        );
        assert_eq!(
            refused(&[("SCHEMA_REGISTRY_URL", "registry:8081")]).map(|e| e.0),
            Some("SCHEMA_REGISTRY_URL")
        );
        let (name, value) =
            refused(&[("SCHEMA_REGISTRY_URL", "https://KEY:hunter2@registry:8081")]).unwrap();
        assert_eq!(name, "SCHEMA_REGISTRY_URL");
        assert!(!value.contains("hunter2"), "credentials are never shown");
        let url = ("SCHEMA_REGISTRY_URL", "https://registry:8081/");
        assert_eq!(
            refused(&[url, ("SCHEMA_REGISTRY_SUBJECT_STRATEGY", "by-topic")]).map(|e| e.0),
            Some("SCHEMA_REGISTRY_SUBJECT_STRATEGY")
        );
        assert_eq!(
            refused(&[url, ("SCHEMA_REGISTRY_SSL_CA_LOCATION", "/no/such.pem")]).map(|e| e.0),
            Some("SCHEMA_REGISTRY_SSL_CA_LOCATION")
        );
        // User info without a colon: named, its value never shown.
        let secret = "apikeywithoutsecret";
        let (name, value) =
            refused(&[url, ("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", secret)]).unwrap();
        assert_eq!(name, "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO");
        assert!(!value.contains(secret));

        let settings = RegistrySettings::from_env(&Env::from_pairs(&[
            url,
            ("AVRO_WIRE_FORMAT", "confluent"),
            ("SCHEMA_REGISTRY_AUTO_REGISTER", "true"),
            (
                "SCHEMA_REGISTRY_SUBJECT_STRATEGY",
                "io.confluent.kafka.serializers.subject.TopicRecordNameStrategy",
            ),
            ("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", "KEY:se:cret"),
        ]))
        .unwrap();
        assert_eq!(settings.wire_format, WireFormat::Confluent);
        let config = settings.registry.unwrap();
        assert_eq!(config.url, "https://registry:8081");
        assert_eq!(config.registration, Registration::AutoRegister);
        assert_eq!(config.strategy, SubjectStrategy::TopicRecordName);
        let auth = config.basic_auth.unwrap();
        assert_eq!(auth.user, "KEY");
        assert!(!format!("{auth:?}").contains("se:cret"));
    }
}
