//! How every client of a process reaches the cluster: its address and its security (TLS,
//! SASL, any other librdkafka property), given once as a [`Cluster`] and applied to the
//! consumer, the producers, the admin client, the topic readers and the redriver alike.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rdkafka::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode as Code};
use secrecy::{ExposeSecret, SecretString};

/// The cluster every client of a process talks to: where it is and how to get in.
/// `Cluster::from("host:9092")` is a plaintext cluster without authentication.
#[derive(Clone, PartialEq, Eq)]
pub struct Cluster {
    bootstrap_servers: String,
    security: ClientSecurity,
}

impl Cluster {
    /// A cluster at `bootstrap_servers` (comma-separated `host:port`), plaintext until
    /// [`with_security`](Self::with_security).
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            security: ClientSecurity::default(),
        }
    }

    /// The same cluster, reached with `security` (in place of any given before).
    #[must_use]
    pub fn with_security(mut self, security: ClientSecurity) -> Self {
        self.security = security;
        self
    }

    /// The bootstrap servers as given: comma-separated `host:port`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    /// How every client gets in.
    pub fn security(&self) -> &ClientSecurity {
        &self.security
    }

    /// A librdkafka configuration with the address and the security set: where every client
    /// of this crate starts.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        self.security.apply(&mut config);
        // librdkafka says that a listener hung up on a plaintext client only at its info
        // level (see `Connectivity::logged`): at least that, whatever the log filter says;
        // the tracing filter still decides what is written.
        if (config.log_level as i32) < (RDKafkaLogLevel::Info as i32) {
            config.set_log_level(RDKafkaLogLevel::Info);
        }
        config
    }
}

impl From<&str> for Cluster {
    fn from(bootstrap_servers: &str) -> Self {
        Self::new(bootstrap_servers)
    }
}

impl From<String> for Cluster {
    fn from(bootstrap_servers: String) -> Self {
        Self::new(bootstrap_servers)
    }
}

impl From<&String> for Cluster {
    fn from(bootstrap_servers: &String) -> Self {
        Self::new(bootstrap_servers.as_str())
    }
}

impl From<&Cluster> for Cluster {
    fn from(cluster: &Cluster) -> Self {
        cluster.clone()
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("security", &self.security)
            .finish()
    }
}

/// `security.protocol`: whether connections are encrypted (TLS) and authenticated (SASL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// Neither TLS nor SASL.
    Plaintext,
    /// TLS, without SASL (a client certificate may authenticate).
    Ssl,
    /// SASL without TLS: nothing is encrypted (with `PLAIN`, not even the password).
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// librdkafka's (and Kafka's) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    /// Whether connections are encrypted (`ssl`, `sasl_ssl`).
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// Whether clients log in with SASL (`sasl_plaintext`, `sasl_ssl`).
    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl std::fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SecurityProtocol {
    type Err = String;
    /// Any case, as Kafka's clients accept it (`SASL_SSL`, `sasl_ssl`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "plaintext" => Ok(Self::Plaintext),
            "ssl" => Ok(Self::Ssl),
            "sasl_plaintext" => Ok(Self::SaslPlaintext),
            "sasl_ssl" => Ok(Self::SaslSsl),
            _ => Err("must be plaintext, ssl, sasl_plaintext or sasl_ssl".into()),
        }
    }
}

/// `sasl.mechanism`: librdkafka's own, with nothing else to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// `PLAIN`: the password itself is sent, so only over TLS.
    Plain,
    /// `SCRAM-SHA-256`: the password is proven, never sent.
    ScramSha256,
    /// `SCRAM-SHA-512`: as `SCRAM-SHA-256`, with SHA-512.
    ScramSha512,
}

impl SaslMechanism {
    /// The name `sasl.mechanism` takes (`SCRAM-SHA-256`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl std::fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SaslMechanism {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().replace('_', "-").as_str() {
            "PLAIN" => Ok(Self::Plain),
            "SCRAM-SHA-256" => Ok(Self::ScramSha256),
            "SCRAM-SHA-512" => Ok(Self::ScramSha512),
            _ => Err("must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512".into()),
        }
    }
}

/// A SASL login: all three parts or none.
#[derive(Clone)]
pub struct SaslCredentials {
    /// How the login is made.
    pub mechanism: SaslMechanism,
    /// The SASL user name.
    pub username: String,
    /// Its password; `Debug` never shows it.
    pub password: SecretString,
}

impl std::fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslCredentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"[REDACTED]")
            .finish()
    }
}

/// A client certificate (mutual TLS): the certificate and its key go together.
#[derive(Clone)]
pub struct ClientCertificate {
    /// PEM.
    pub certificate: PathBuf,
    /// PEM; encrypted if `key_password` is given.
    pub key: PathBuf,
    /// The password of an encrypted `key`; `None` for a key in the clear.
    pub key_password: Option<SecretString>,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("certificate", &self.certificate)
            .field("key", &self.key)
            .field(
                "key_password",
                &self.key_password.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

/// A property value, kept secret when its name says it is one.
#[derive(Clone)]
enum Value {
    Plain(String),
    Secret(SecretString),
}

impl Value {
    fn of(key: &str, value: String) -> Self {
        if is_secret(key) {
            Self::Secret(value.into())
        } else {
            Self::Plain(value)
        }
    }

    fn expose(&self) -> &str {
        match self {
            Self::Plain(value) => value,
            Self::Secret(value) => value.expose_secret(),
        }
    }
}

/// Properties whose values are never shown: passwords, keys, tokens.
fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password")
        || key.contains("secret")
        || key.contains("token")
        || key.ends_with(".pem") && key.contains("key")
        || key == "sasl.oauthbearer.config"
        || key == "sasl.jaas.config"
}

/// The security of every client: librdkafka properties in the order given, a later one
/// overriding an earlier one of the same name (a `client.properties` file first, then the
/// settings that name a protocol, a login or certificates). `Debug` never shows a secret.
#[derive(Clone, Default)]
pub struct ClientSecurity {
    properties: Vec<(String, Value)>,
}

impl PartialEq for ClientSecurity {
    fn eq(&self, other: &Self) -> bool {
        self.properties.len() == other.properties.len()
            && self
                .properties
                .iter()
                .zip(&other.properties)
                .all(|((k1, v1), (k2, v2))| k1 == k2 && v1.expose() == v2.expose())
    }
}

impl Eq for ClientSecurity {}

impl std::fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut map = f.debug_map();
        for (key, value) in &self.properties {
            match value {
                Value::Plain(value) => map.entry(key, value),
                Value::Secret(_) => map.entry(key, &"[REDACTED]"),
            };
        }
        map.finish()
    }
}

/// A `client.properties` file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PropertiesError {
    /// The file cannot be read (missing, not readable by this process).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not in the `.properties` format.
    #[error("{} is not a properties file: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Which line does not parse; never its text, which may hold a password.
        reason: String,
    },
}

impl ClientSecurity {
    /// No TLS, no authentication: librdkafka's default.
    pub fn plaintext() -> Self {
        Self::default()
    }

    /// Every `key=value` of a Kafka `client.properties` file (librdkafka's property names;
    /// `#` and `!` comments, Java's escapes and continuation lines), in the file's order.
    pub fn with_properties_file(mut self, path: &Path) -> Result<Self, PropertiesError> {
        let file = std::fs::File::open(path).map_err(|source| PropertiesError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut read = Vec::new();
        java_properties::PropertiesIter::new(std::io::BufReader::new(file))
            .read_into(|key, value| read.push((key, value)))
            .map_err(|e| PropertiesError::Parse {
                path: path.to_owned(),
                // Its line number and kind; never the line, which may hold a password.
                reason: match e.line_number() {
                    Some(line) => format!("line {line} does not parse"),
                    None => "it does not parse".into(),
                },
            })?;
        for (key, value) in read {
            self = self.with_property(key, value);
        }
        Ok(self)
    }

    /// One librdkafka property, after those given so far.
    #[must_use]
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        let value = Value::of(&key, value.into());
        self.properties.push((key, value));
        self
    }

    /// Sets `security.protocol`.
    #[must_use]
    pub fn with_protocol(self, protocol: SecurityProtocol) -> Self {
        self.with_property("security.protocol", protocol.as_str())
    }

    /// A SASL login (the protocol is set apart: `sasl_ssl` or `sasl_plaintext`).
    #[must_use]
    pub fn with_sasl(mut self, credentials: SaslCredentials) -> Self {
        self = self
            .with_property("sasl.mechanism", credentials.mechanism.as_str())
            .with_property("sasl.username", credentials.username);
        self.properties
            .push(("sasl.password".into(), Value::Secret(credentials.password)));
        self
    }

    /// The certificate authorities (PEM file or directory) that sign the brokers'
    /// certificates, instead of the system's.
    #[must_use]
    pub fn with_ca_location(self, path: &Path) -> Self {
        self.with_property("ssl.ca.location", path.display().to_string())
    }

    /// A client certificate, for brokers that require one (mutual TLS).
    #[must_use]
    pub fn with_client_certificate(mut self, certificate: ClientCertificate) -> Self {
        self = self
            .with_property(
                "ssl.certificate.location",
                certificate.certificate.display().to_string(),
            )
            .with_property("ssl.key.location", certificate.key.display().to_string());
        if let Some(password) = certificate.key_password {
            self.properties
                .push(("ssl.key.password".into(), Value::Secret(password)));
        }
        self
    }

    /// The protocol in effect: the last `security.protocol` given, else plaintext.
    pub fn protocol(&self) -> SecurityProtocol {
        self.get("security.protocol")
            .and_then(|p| p.parse().ok())
            .unwrap_or(SecurityProtocol::Plaintext)
    }

    /// The SASL mechanism in effect, if any.
    pub fn sasl_mechanism(&self) -> Option<&str> {
        self.get("sasl.mechanism").or(self.get("sasl.mechanisms"))
    }

    /// The value in effect of a property that is not secret.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| match v {
                Value::Plain(v) => Some(v.as_str()),
                Value::Secret(_) => None,
            })
    }

    /// Whether a property is given at all (secret or not).
    pub fn has(&self, key: &str) -> bool {
        self.properties.iter().any(|(k, _)| k == key)
    }

    /// Checks every property with librdkafka, without connecting: an unknown name or a value
    /// librdkafka refuses is an error naming the property (never its value).
    pub fn check(&self) -> Result<(), crate::KafkaError> {
        let mut config = ClientConfig::new();
        for (key, value) in &self.properties {
            config.set(key, value.expose());
            if let Err(error) = config.create_native_config() {
                let reason = match error {
                    RdError::ClientConfig(_, message, _, _) if !is_secret(key) => message,
                    _ => "librdkafka refuses it".into(),
                };
                return Err(crate::KafkaError::Config(format!(
                    "the property {key}: {reason}"
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn apply(&self, config: &mut ClientConfig) {
        for (key, value) in &self.properties {
            config.set(key, value.expose());
        }
    }
}

/// Why the brokers refuse this client: something a person fixes in the settings, not an
/// outage waiting cures. Reported by librdkafka as it connects; see [`Connectivity`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// The SASL login was refused: a wrong mechanism, user name or password.
    #[error("authentication failed (wrong SASL mechanism, user name or password): {0}")]
    Authentication(String),
    /// librdkafka says only that verification failed: an untrusted CA and an expired (or
    /// not yet valid) certificate read the same.
    #[error(
        "the broker's TLS certificate could not be verified: not signed by a trusted CA, or expired: {0}"
    )]
    UntrustedCertificate(String),
    /// A certificate of the TLS handshake has expired.
    #[error("a TLS certificate has expired: {0}")]
    ExpiredCertificate(String),
    /// The TLS handshake failed for another reason than a certificate above.
    #[error("the TLS handshake failed: {0}")]
    Tls(String),
    /// The client and the broker's listener disagree on TLS: `security.protocol` does not
    /// match the listener.
    #[error(
        "the broker's listener speaks another security protocol (plaintext to a TLS listener, or TLS to a plaintext one): {0}"
    )]
    WrongProtocol(String),
}

impl ConnectFailure {
    /// The failure an error librdkafka reported is, if it is one.
    pub(crate) fn from_reported(error: &RdError, reason: &str) -> Option<Self> {
        let text = reason.to_owned();
        let lower = reason.to_ascii_lowercase();
        let code = error.rdkafka_error_code();
        if matches!(
            code,
            Some(Code::Authentication | Code::SaslAuthenticationFailed)
        ) || lower.contains("sasl authentication")
            || lower.contains("authentication failed")
        {
            return Some(Self::Authentication(text));
        }
        if lower.contains("certificate has expired") || lower.contains("certificate expired") {
            return Some(Self::ExpiredCertificate(text));
        }
        if lower.contains("certificate verify failed")
            || lower.contains("unable to get local issuer")
            || lower.contains("self-signed certificate")
            || lower.contains("self signed certificate")
        {
            return Some(Self::UntrustedCertificate(text));
        }
        if lower.contains("security.protocol")
            || lower.contains("wrong version number")
            || lower.contains("packet length too large")
            || lower.contains("record layer failure")
        {
            return Some(Self::WrongProtocol(text));
        }
        // A connection cut during the handshake (a broker restarting) is an outage.
        let cut = [
            "disconnected",
            "connection reset",
            "broken pipe",
            "connection refused",
        ]
        .iter()
        .any(|cut| lower.contains(cut));
        if !cut && (matches!(code, Some(Code::SSL)) || lower.contains("ssl handshake failed")) {
            return Some(Self::Tls(text));
        }
        None
    }
}

/// What librdkafka reported of the connections of one client: the last failure a person must
/// fix, cleared once the cluster answered again. Every client of this crate has one; clones
/// share it (the client's context and its owner).
#[derive(Debug, Default, Clone)]
pub struct Connectivity {
    failure: Arc<Mutex<Option<ConnectFailure>>>,
    /// Whether the client speaks TLS: a broker that hangs up on its very first request is
    /// then an outage, else most likely a TLS listener.
    tls: bool,
}

impl Connectivity {
    /// The last failure reported since the cluster last answered.
    pub fn failure(&self) -> Option<ConnectFailure> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// For a client of `cluster`.
    pub(crate) fn of(cluster: &Cluster) -> Self {
        Self {
            failure: Arc::default(),
            tls: cluster.security().protocol().uses_tls(),
        }
    }

    /// The cluster answered: what failed before is over.
    pub(crate) fn answered(&self) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Called from a client context's `error`: records a failure a person must fix, and
    /// logs it once (librdkafka repeats it at every reconnect).
    pub(crate) fn reported(&self, error: &RdError, reason: &str) {
        let Some(failure) = ConnectFailure::from_reported(error, reason) else {
            tracing::error!(target: "librdkafka", %error, reason, "librdkafka error");
            return;
        };
        self.record(failure);
    }

    /// Called from a client context's `log`: librdkafka tells a plaintext client that a TLS
    /// listener hung up on it only in a log line (a `FAIL` in the first request's state).
    pub(crate) fn logged(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        use RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", "librdkafka: {facility} {message}");
            }
            L::Warning => tracing::warn!(target: "librdkafka", "librdkafka: {facility} {message}"),
            L::Notice | L::Info => {
                tracing::info!(target: "librdkafka", "librdkafka: {facility} {message}");
            }
            L::Debug => tracing::debug!(target: "librdkafka", "librdkafka: {facility} {message}"),
        }
        if !self.tls
            && facility == "FAIL"
            && message.contains("Disconnected")
            && message.contains("APIVERSION_QUERY")
        {
            self.record(ConnectFailure::WrongProtocol(format!(
                "the broker hung up on the first request, as a TLS listener does: {message}"
            )));
        }
    }

    fn record(&self, failure: ConnectFailure) {
        let mut last = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_ref() != Some(&failure) {
            tracing::error!(%failure, "cannot connect to Kafka");
        }
        *last = Some(failure);
    }
}

impl rdkafka::ClientContext for Connectivity {
    fn error(&self, error: RdError, reason: &str) {
        self.reported(&error, reason);
    }

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.logged(level, facility, message);
    }
}

impl rdkafka::consumer::ConsumerContext for Connectivity {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn login() -> SaslCredentials {
        SaslCredentials {
            mechanism: SaslMechanism::ScramSha512,
            username: "svc".into(),
            password: "hunter2-secret".to_owned().into(),
        }
    }

    #[test]
    fn names_parse_in_any_case() {
        assert_eq!("SASL_SSL".parse(), Ok(SecurityProtocol::SaslSsl));
        assert_eq!("Plaintext".parse(), Ok(SecurityProtocol::Plaintext));
        assert!("tls".parse::<SecurityProtocol>().is_err());
        assert_eq!("scram-sha-512".parse(), Ok(SaslMechanism::ScramSha512));
        assert_eq!("PLAIN".parse(), Ok(SaslMechanism::Plain));
        assert!("GSSAPI".parse::<SaslMechanism>().is_err());
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let security = ClientSecurity::plaintext()
            .with_property("sasl.oauthbearer.config", "token-secret")
            .with_protocol(SecurityProtocol::SaslSsl)
            .with_sasl(login())
            .with_client_certificate(ClientCertificate {
                certificate: "c.pem".into(),
                key: "k.pem".into(),
                key_password: Some("passphrase-secret".to_owned().into()),
            });
        let shown = format!(
            "{:?}",
            Cluster::new("b:9093").with_security(security.clone())
        );
        assert!(!shown.contains("secret"), "{shown}");
        assert!(
            shown.contains("sasl_ssl") && shown.contains("svc"),
            "{shown}"
        );
        assert!(!format!("{:?}", login()).contains("secret"));
        assert_eq!(security.get("sasl.password"), None);
        assert!(security.has("sasl.password"));
        assert_eq!(security.protocol(), SecurityProtocol::SaslSsl);
        assert_eq!(security.sasl_mechanism(), Some("SCRAM-SHA-512"));
    }

    #[test]
    fn later_properties_win_and_files_read_as_java_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.properties");
        std::fs::write(
            &path,
            "# a comment\n! another\nsecurity.protocol=SASL_SSL\nsasl.mechanism = PLAIN\nsasl.username:svc\nsasl.password=hunter\\\n  42-value\nclient.id=a\\:b\n",
        )
        .unwrap();
        let security = ClientSecurity::plaintext()
            .with_properties_file(&path)
            .unwrap();
        assert_eq!(security.protocol(), SecurityProtocol::SaslSsl);
        assert_eq!(security.get("sasl.username"), Some("svc"));
        assert_eq!(security.get("client.id"), Some("a:b"));
        // The continuation line joined ("hunter42-value"), and never shown.
        assert!(!format!("{security:?}").contains("hunter"));
        security.check().unwrap();
        let overridden = security.with_protocol(SecurityProtocol::Ssl);
        assert_eq!(overridden.protocol(), SecurityProtocol::Ssl);

        let missing = ClientSecurity::plaintext().with_properties_file(&dir.path().join("none"));
        assert!(matches!(missing, Err(PropertiesError::Read { .. })));
    }

    #[test]
    fn librdkafka_checks_every_property_without_showing_secrets() {
        let unknown = ClientSecurity::plaintext().with_property("no.such.property", "1");
        let error = unknown.check().unwrap_err().to_string();
        assert!(error.contains("no.such.property"), "{error}");
        let bad = ClientSecurity::plaintext().with_property("security.protocol", "tls");
        assert!(bad.check().is_err());
        // With the `ssl` feature, librdkafka knows TLS and SCRAM.
        ClientSecurity::plaintext()
            .with_protocol(SecurityProtocol::SaslSsl)
            .with_sasl(login())
            .check()
            .unwrap();
    }

    #[test]
    fn reported_errors_are_told_apart() {
        let auth = RdError::Global(Code::Authentication);
        let failure = ConnectFailure::from_reported(
            &auth,
            "sasl_ssl://127.0.0.1:9093/bootstrap: SASL authentication error: Authentication failed",
        );
        assert!(matches!(failure, Some(ConnectFailure::Authentication(_))));
        let ssl = RdError::Global(Code::SSL);
        let untrusted = ConnectFailure::from_reported(
            &ssl,
            "ssl://b:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified",
        );
        assert!(matches!(
            untrusted,
            Some(ConnectFailure::UntrustedCertificate(_))
        ));
        let down = RdError::Global(Code::AllBrokersDown);
        assert_eq!(
            ConnectFailure::from_reported(&down, "1/1 brokers are down"),
            None
        );
    }
}
