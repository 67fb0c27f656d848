//! The settings of production connectivity (README, "Running against a production
//! cluster"): Kafka's TLS, SASL and `client.properties`, a store's password file, and what a
//! person sees when a cluster or a store refuses the service.

use std::path::{Path, PathBuf};

use ordering_kafka::{
    ClientCertificate, ClientSecurity, ConnectFailure, KafkaError, SaslCredentials, SaslMechanism,
    SecretString, SecurityProtocol,
};

use crate::env::{Env, EnvError};

/// What an `EnvError` shows instead of a secret.
pub(crate) const HIDDEN: &str = "(hidden)";

fn error(name: &'static str, value: impl Into<String>, reason: impl Into<String>) -> EnvError {
    EnvError {
        name,
        value: value.into(),
        reason: reason.into(),
    }
}

/// A file a setting names: it must exist and be readable now, not at the first connection.
pub(crate) fn readable(env: &Env, name: &'static str) -> Result<Option<PathBuf>, EnvError> {
    let path = env.text(name, "");
    if path.is_empty() {
        return Ok(None);
    }
    let checked = if Path::new(&path).is_dir() {
        std::fs::read_dir(&path).map(drop)
    } else {
        std::fs::File::open(&path).map(drop)
    };
    checked.map_err(|e| error(name, path.clone(), format!("cannot be read: {e}")))?;
    Ok(Some(PathBuf::from(path)))
}

/// A secret given inline (`name`) or in a file (`file`), not both; never shown.
pub fn secret(
    env: &Env,
    name: Option<&'static str>,
    file: &'static str,
) -> Result<Option<SecretString>, EnvError> {
    let inline = name.and_then(|name| {
        Some(env.text(name, ""))
            .filter(|t| !t.is_empty())
            .map(|t| (name, t))
    });
    let path = env.text(file, "");
    match (inline, path.is_empty()) {
        (None, true) => Ok(None),
        (Some((name, _)), false) => Err(error(
            name,
            HIDDEN,
            format!("set {name} or {file}, not both"),
        )),
        (Some((_, value)), true) => Ok(Some(SecretString::from(value))),
        (None, false) => first_line(Path::new(&path))
            .map(Some)
            .map_err(|e| error(file, path.clone(), format!("cannot be read: {e}"))),
    }
}

/// A secret file's first line, without its line ending (as `*_FILE` secrets are written by
/// orchestrators, with or without a newline).
fn first_line(path: &Path) -> std::io::Result<SecretString> {
    let text = std::fs::read_to_string(path)?;
    Ok(SecretString::from(
        text.lines().next().unwrap_or_default().to_owned(),
    ))
}

/// The security of every Kafka client, from `KAFKA_PROPERTIES_FILE` first, then
/// `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*` and `KAFKA_SSL_*`. Settings that cannot work
/// together stop the start naming one of them.
pub fn kafka_security(env: &Env) -> Result<ClientSecurity, EnvError> {
    let mut security = ClientSecurity::plaintext();
    if let Some(path) = readable(env, "KAFKA_PROPERTIES_FILE")? {
        security = security.with_properties_file(&path).map_err(|e| {
            error(
                "KAFKA_PROPERTIES_FILE",
                path.display().to_string(),
                e.to_string(),
            )
        })?;
    }
    if let Some(protocol) =
        env.optional::<SecurityProtocol>("KAFKA_SECURITY_PROTOCOL", |_| Ok(()))?
    {
        security = security.with_protocol(protocol);
    }
    let protocol = security.protocol();
    let shown = |p: SecurityProtocol| format!("KAFKA_SECURITY_PROTOCOL is {p}");

    let mechanism = env.optional::<SaslMechanism>("KAFKA_SASL_MECHANISM", |_| {
        if protocol.uses_sasl() {
            Ok(())
        } else {
            Err(format!(
                "{}, which does not use SASL: set it to sasl_ssl (or sasl_plaintext)",
                shown(protocol)
            ))
        }
    })?;
    let username = env.text("KAFKA_SASL_USERNAME", "");
    let password = secret(env, Some("KAFKA_SASL_PASSWORD"), "KAFKA_SASL_PASSWORD_FILE")?;
    match mechanism {
        Some(mechanism) => {
            if username.is_empty() {
                return Err(error(
                    "KAFKA_SASL_USERNAME",
                    "",
                    format!("is required with KAFKA_SASL_MECHANISM={mechanism}"),
                ));
            }
            let Some(password) = password else {
                return Err(error(
                    "KAFKA_SASL_PASSWORD",
                    "",
                    format!(
                        "is required with KAFKA_SASL_MECHANISM={mechanism} (or KAFKA_SASL_PASSWORD_FILE)"
                    ),
                ));
            };
            security = security.with_sasl(SaslCredentials {
                mechanism,
                username,
                password,
            });
        }
        None if !username.is_empty() || password.is_some() => {
            return Err(error(
                "KAFKA_SASL_MECHANISM",
                "",
                "is required when a SASL user name or password is given (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)",
            ));
        }
        None if protocol.uses_sasl() && security.sasl_mechanism().is_none() => {
            return Err(error(
                "KAFKA_SASL_MECHANISM",
                "",
                format!(
                    "is required: {} (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)",
                    shown(protocol)
                ),
            ));
        }
        None => {}
    }

    let needs_tls = |name: &'static str, path: &Path| {
        if protocol.uses_tls() {
            Ok(())
        } else {
            Err(error(
                name,
                path.display().to_string(),
                format!(
                    "{}, which does not use TLS: set it to ssl or sasl_ssl",
                    shown(protocol)
                ),
            ))
        }
    };
    if let Some(ca) = readable(env, "KAFKA_SSL_CA_LOCATION")? {
        needs_tls("KAFKA_SSL_CA_LOCATION", &ca)?;
        security = security.with_ca_location(&ca);
    }
    let certificate = readable(env, "KAFKA_SSL_CERTIFICATE_LOCATION")?;
    let key = readable(env, "KAFKA_SSL_KEY_LOCATION")?;
    let key_password = secret(env, None, "KAFKA_SSL_KEY_PASSWORD_FILE")?;
    match (certificate, key) {
        (Some(certificate), Some(key)) => {
            needs_tls("KAFKA_SSL_CERTIFICATE_LOCATION", &certificate)?;
            security = security.with_client_certificate(ClientCertificate {
                certificate,
                key,
                key_password,
            });
        }
        (None, Some(key)) => {
            return Err(error(
                "KAFKA_SSL_CERTIFICATE_LOCATION",
                "",
                format!(
                    "is required with KAFKA_SSL_KEY_LOCATION={}: a key is used with its certificate",
                    key.display()
                ),
            ));
        }
        (Some(certificate), None) => {
            return Err(error(
                "KAFKA_SSL_KEY_LOCATION",
                "",
                format!(
                    "is required with KAFKA_SSL_CERTIFICATE_LOCATION={}: a certificate is used with its key",
                    certificate.display()
                ),
            ));
        }
        (None, None) if key_password.is_some() => {
            return Err(error(
                "KAFKA_SSL_KEY_PASSWORD_FILE",
                "",
                "is set but there is no KAFKA_SSL_KEY_LOCATION to decrypt",
            ));
        }
        (None, None) => {}
    }
    // Every property, the file's included, as librdkafka sees them.
    security.check().map_err(|e| {
        let name = env_name(&e.to_string()).unwrap_or("KAFKA_PROPERTIES_FILE");
        error(name, HIDDEN, e.to_string())
    })?;
    Ok(security)
}

/// The setting behind a librdkafka property named in `message`, if it has one.
fn env_name(message: &str) -> Option<&'static str> {
    [
        ("security.protocol", "KAFKA_SECURITY_PROTOCOL"),
        ("sasl.mechanism", "KAFKA_SASL_MECHANISM"),
        ("sasl.username", "KAFKA_SASL_USERNAME"),
        ("sasl.password", "KAFKA_SASL_PASSWORD"),
        ("ssl.ca.location", "KAFKA_SSL_CA_LOCATION"),
        ("ssl.certificate.location", "KAFKA_SSL_CERTIFICATE_LOCATION"),
        ("ssl.key.location", "KAFKA_SSL_KEY_LOCATION"),
        ("ssl.key.password", "KAFKA_SSL_KEY_PASSWORD_FILE"),
    ]
    .into_iter()
    .find(|(property, _)| message.contains(property))
    .map(|(_, name)| name)
}

/// `url` with any password replaced by `***`, for messages: `scheme://user:***@host/...`.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            // A password may also be a query parameter.
            let path = match path.split_once('?') {
                Some((p, query)) => format!("{p}?{}", redacted_query(query)),
                None => path.to_owned(),
            };
            format!("{scheme}://{user}{hidden}@{host}{path}")
        }
        None => match path.split_once('?') {
            Some((p, query)) => format!("{scheme}://{authority}{p}?{}", redacted_query(query)),
            None => url.to_owned(),
        },
    }
}

fn redacted_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// How long a shell waits at start-up for the brokers to answer before it starts anyway
/// (a refusal ends the wait at once): long enough for a TLS handshake and a SASL exchange
/// over a slow link.
pub const ACCESS_CHECK: std::time::Duration = std::time::Duration::from_secs(20);

/// What to look at when the brokers refuse the service.
pub fn kafka_hint(failure: &ConnectFailure) -> &'static str {
    match failure {
        ConnectFailure::Authentication(_) => {
            "check KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)"
        }
        ConnectFailure::UntrustedCertificate(_) => {
            "check KAFKA_SSL_CA_LOCATION (it must hold the CA that signs the brokers' certificates) and that the brokers' certificate has not expired"
        }
        ConnectFailure::ExpiredCertificate(_) => {
            "renew the expired certificate (the brokers', or KAFKA_SSL_CERTIFICATE_LOCATION's)"
        }
        ConnectFailure::WrongProtocol(_) => {
            "check KAFKA_SECURITY_PROTOCOL against the listener at KAFKA_BOOTSTRAP_SERVERS"
        }
        _ => {
            "check KAFKA_SECURITY_PROTOCOL, KAFKA_SSL_CA_LOCATION and KAFKA_SSL_CERTIFICATE_LOCATION / KAFKA_SSL_KEY_LOCATION"
        }
    }
}

/// A Kafka error as `/health` and the start-up say it: with the settings to look at when the
/// brokers refuse the service.
pub fn kafka_problem(error: &KafkaError) -> String {
    match error.connect_failure() {
        Some(failure) => format!("{error}; {}", kafka_hint(failure)),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs)
    }

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(
            redacted_url("postgres://app:pw-secret@db:5432/orders?sslmode=verify-full"),
            "postgres://app:***@db:5432/orders?sslmode=verify-full"
        );
        assert_eq!(
            redacted_url("postgres://app@db/orders?password=pw-secret&sslmode=require"),
            "postgres://app@db/orders?password=***&sslmode=require"
        );
        assert_eq!(
            redacted_url("sqlite://data/orders.db"),
            "sqlite://data/orders.db"
        );
        assert_eq!(redacted_url("orders.db"), "orders.db");
    }

    #[test]
    fn nothing_set_is_plaintext() {
        let security = kafka_security(&env(&[])).unwrap();
        assert_eq!(security, ClientSecurity::plaintext());
    }

    #[test]
    fn a_sasl_ssl_login_is_read_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not checked here").unwrap();
        let ca = ca.display().to_string();
        let security = kafka_security(&env(&[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_SASL_MECHANISM", "scram-sha-512"),
            ("KAFKA_SASL_USERNAME", "svc"),
            ("KAFKA_SASL_PASSWORD", "pw-secret-value"),
            ("KAFKA_SSL_CA_LOCATION", &ca),
        ]))
        .unwrap();
        assert_eq!(security.protocol(), SecurityProtocol::SaslSsl);
        assert_eq!(security.get("ssl.ca.location"), Some(ca.as_str()));
        assert!(!format!("{security:?}").contains("pw-secret-value"));
    }

    #[test]
    fn settings_that_cannot_work_together_name_one_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.pem");
        std::fs::write(&file, "x").unwrap();
        let file = file.display().to_string();
        let missing = dir.path().join("missing.pem").display().to_string();
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (
                vec![("KAFKA_SECURITY_PROTOCOL", "tls")],
                "KAFKA_SECURITY_PROTOCOL",
            ),
            (
                vec![("KAFKA_SECURITY_PROTOCOL", "sasl_ssl")],
                "KAFKA_SASL_MECHANISM",
            ),
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
                    ("KAFKA_SASL_MECHANISM", "PLAIN"),
                ],
                "KAFKA_SASL_USERNAME",
            ),
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
                    ("KAFKA_SASL_MECHANISM", "PLAIN"),
                    ("KAFKA_SASL_USERNAME", "svc"),
                ],
                "KAFKA_SASL_PASSWORD",
            ),
            (
                vec![("KAFKA_SASL_MECHANISM", "PLAIN")],
                "KAFKA_SASL_MECHANISM",
            ),
            (vec![("KAFKA_SASL_USERNAME", "svc")], "KAFKA_SASL_MECHANISM"),
            (
                vec![
                    ("KAFKA_SASL_PASSWORD", "x"),
                    ("KAFKA_SASL_PASSWORD_FILE", &file),
                ],
                "KAFKA_SASL_PASSWORD",
            ),
            (
                vec![("KAFKA_SASL_PASSWORD_FILE", &missing)],
                "KAFKA_SASL_PASSWORD_FILE",
            ),
            (
                vec![("KAFKA_SSL_CA_LOCATION", &file)],
                "KAFKA_SSL_CA_LOCATION",
            ),
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "ssl"),
                    ("KAFKA_SSL_CA_LOCATION", &missing),
                ],
                "KAFKA_SSL_CA_LOCATION",
            ),
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "ssl"),
                    ("KAFKA_SSL_KEY_LOCATION", &file),
                ],
                "KAFKA_SSL_CERTIFICATE_LOCATION",
            ),
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "ssl"),
                    ("KAFKA_SSL_CERTIFICATE_LOCATION", &file),
                ],
                "KAFKA_SSL_KEY_LOCATION",
            ),
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "ssl"),
                    ("KAFKA_SSL_KEY_PASSWORD_FILE", &file),
                ],
                "KAFKA_SSL_KEY_PASSWORD_FILE",
            ),
            (
                vec![("KAFKA_PROPERTIES_FILE", &missing)],
                "KAFKA_PROPERTIES_FILE",
            ),
        ];
        for (pairs, name) in cases {
            let error = kafka_security(&env(&pairs)).unwrap_err();
            assert_eq!(error.name, name, "{pairs:?}: {error}");
            assert!(!error.to_string().contains("pw-secret"), "{error}");
        }
    }

    #[test]
    fn a_properties_file_comes_first_and_is_checked_by_librdkafka() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.properties");
        std::fs::write(
            &path,
            "security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\nsasl.username=svc\nsasl.password=file-secret\n",
        )
        .unwrap();
        let file = path.display().to_string();
        let security = kafka_security(&env(&[("KAFKA_PROPERTIES_FILE", &file)])).unwrap();
        assert_eq!(security.protocol(), SecurityProtocol::SaslSsl);
        let overridden = kafka_security(&env(&[
            ("KAFKA_PROPERTIES_FILE", &file),
            ("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext"),
        ]))
        .unwrap();
        assert_eq!(overridden.protocol(), SecurityProtocol::SaslPlaintext);
        std::fs::write(&path, "no.such.property=1\n").unwrap();
        let error = kafka_security(&env(&[("KAFKA_PROPERTIES_FILE", &file)])).unwrap_err();
        assert_eq!(error.name, "KAFKA_PROPERTIES_FILE");
        assert!(error.to_string().contains("no.such.property"), "{error}");
    }
}
