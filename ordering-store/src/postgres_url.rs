//! A PostgreSQL URL as libpq reads it, TLS included: `sslmode` (`disable`, `prefer`,
//! `require`, `verify-ca`, `verify-full`) and `sslrootcert`, which tokio-postgres does not
//! know, are taken out of the URL here and become an OpenSSL connector. The password may come
//! apart from the URL (a file), and is never shown.

use std::path::PathBuf;
use std::str::FromStr;

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use postgres_openssl::MakeTlsConnector;
use secrecy::{ExposeSecret, SecretString};

use crate::UrlError;

/// `sslmode`, with libpq's meanings: `prefer` (the default) tries TLS and falls back to
/// plaintext; `require` insists on TLS without checking the server's certificate (unless
/// `sslrootcert` is given, as libpq does); `verify-ca` checks that a trusted CA signed it;
/// `verify-full` also checks that it names the host connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, else plaintext; the default.
    Prefer,
    /// TLS, the server's certificate unchecked unless `sslrootcert` is given.
    Require,
    /// TLS, with a server certificate signed by a trusted CA.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    /// The value of `sslmode` in a URL (`verify-full`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

impl FromStr for SslMode {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Self, UrlError> {
        match s {
            "disable" => Ok(Self::Disable),
            "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            // libpq's `allow` tries plaintext first: a downgrade nobody should ask for.
            _ => Err(UrlError::Postgres(format!(
                "sslmode={s} is not one of disable, prefer, require, verify-ca, verify-full"
            ))),
        }
    }
}

/// A `postgres://` URL: the connection settings, how TLS is used, and the password.
#[derive(Clone)]
pub struct PostgresUrl {
    config: tokio_postgres::Config,
    ssl_mode: SslMode,
    /// `sslrootcert`: the CAs (PEM) that may sign the server's certificate; `None` (or
    /// `system`): the system's.
    root_cert: Option<PathBuf>,
}

impl PartialEq for PostgresUrl {
    fn eq(&self, other: &Self) -> bool {
        self.config == other.config
            && self.ssl_mode == other.ssl_mode
            && self.root_cert == other.root_cert
    }
}

impl Eq for PostgresUrl {}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl PostgresUrl {
    /// Parses a `postgres://` (or `postgresql://`) URL, with libpq's TLS parameters.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut ssl_mode = SslMode::Prefer;
        let mut root_cert = None;
        let mut rest = form_urlencoded::Serializer::new(String::new());
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "sslmode" => ssl_mode = value.parse()?,
                "sslrootcert" if value == "system" => root_cert = None,
                "sslrootcert" => root_cert = Some(PathBuf::from(&*value)),
                _ => {
                    rest.append_pair(&key, &value);
                }
            }
        }
        let rest = rest.finish();
        let url = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{rest}")
        };
        // The error never quotes the URL: it may hold a password.
        let config = tokio_postgres::Config::from_str(&url)
            .map_err(|e| UrlError::Postgres(e.to_string()))?;
        if config.get_hosts().is_empty() {
            return Err(UrlError::Postgres("it names no host".into()));
        }
        if config.get_user().is_none() {
            return Err(UrlError::Postgres("it names no user".into()));
        }
        if let Some(path) = &root_cert {
            std::fs::File::open(path).map_err(|e| {
                UrlError::Postgres(format!(
                    "sslrootcert {} cannot be read: {e}",
                    path.display()
                ))
            })?;
        }
        Ok(Self {
            config,
            ssl_mode,
            root_cert,
        })
    }

    /// The password, from elsewhere than the URL (a file). A URL that has one already is an
    /// error: one of the two would be ignored.
    pub fn with_password(mut self, password: &SecretString) -> Result<Self, UrlError> {
        if self.config.get_password().is_some() {
            return Err(UrlError::Postgres(
                "the URL has a password already; give it in one place only".into(),
            ));
        }
        self.config.password(password.expose_secret());
        Ok(self)
    }

    /// How the connections use TLS: the URL's `sslmode`, `prefer` when it names none.
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// The URL without its password, for logs and `/health`.
    pub fn describe(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
            None => String::new(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let mut shown = format!(
            "postgres://{}@{host}:{port}/{}?sslmode={}",
            self.config.get_user().unwrap_or_default(),
            self.config.get_dbname().unwrap_or_default(),
            self.ssl_mode.as_str()
        );
        if let Some(path) = &self.root_cert {
            shown.push_str(&format!("&sslrootcert={}", path.display()));
        }
        shown
    }

    /// tokio-postgres's settings: TLS required for every mode from `require` on.
    pub(crate) fn config(&self) -> tokio_postgres::Config {
        let mut config = self.config.clone();
        config.ssl_mode(match self.ssl_mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        config
    }

    /// The TLS connector `sslmode` and `sslrootcert` ask for.
    pub(crate) fn tls(&self) -> Result<MakeTlsConnector, String> {
        let mut builder =
            SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
        if let Some(path) = &self.root_cert {
            builder
                .set_ca_file(path)
                .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
        }
        let verify = match self.ssl_mode {
            SslMode::VerifyCa | SslMode::VerifyFull => true,
            // libpq: a root certificate given makes `require` check the chain.
            SslMode::Require | SslMode::Prefer => self.root_cert.is_some(),
            SslMode::Disable => false,
        };
        if !verify {
            builder.set_verify(SslVerifyMode::NONE);
        }
        let check_host = self.ssl_mode == SslMode::VerifyFull;
        let mut connector = MakeTlsConnector::new(builder.build());
        connector.set_callback(move |connect, _domain| {
            connect.set_verify_hostname(check_host);
            Ok(())
        });
        Ok(connector)
    }
}

/// Why a PostgreSQL server refused a connection, when a person must fix it: waiting does
/// not help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The server refused the login: a wrong user or password, none given, or no
    /// `pg_hba.conf` entry for this client.
    #[error("the server refused the login (user or password): {0}")]
    Authentication(String),
    /// The server takes only TLS connections and the URL says `sslmode=disable`.
    #[error("the server accepts only TLS connections, and sslmode=disable: {0}")]
    TlsRequired(String),
    /// The server does not offer TLS, and the URL's `sslmode` is `require` or stricter.
    #[error("the server does not offer TLS, and the URL's sslmode requires it")]
    NoTls,
    /// The server's certificate is not signed by a CA of `sslrootcert` (or the system's).
    #[error("the server's certificate is not signed by a CA in sslrootcert (or the system's): {0}")]
    UntrustedCertificate(String),
    /// The server's certificate does not name the host connected to (`sslmode=verify-full`).
    #[error(
        "the server's certificate does not name the host connected to (sslmode=verify-full): {0}"
    )]
    HostMismatch(String),
    /// A certificate of the TLS handshake has expired.
    #[error("a certificate has expired: {0}")]
    ExpiredCertificate(String),
    /// The TLS handshake failed for another reason than a certificate above.
    #[error("the TLS handshake failed: {0}")]
    Tls(String),
}

impl Refusal {
    /// The refusal `error` is, if it is one.
    pub fn of(error: &tokio_postgres::Error) -> Option<Self> {
        if let Some(db) = error.as_db_error() {
            let message = db.message().to_owned();
            return match db.code().code() {
                // invalid_password
                "28P01" => Some(Self::Authentication(message)),
                // invalid_authorization_specification: pg_hba.conf refused, for TLS or not.
                "28000" if message.contains("no encryption") => Some(Self::TlsRequired(message)),
                "28000" => Some(Self::Authentication(message)),
                _ => None,
            };
        }
        let mut text = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        let lower = text.to_ascii_lowercase();
        if lower.contains("server does not support tls") {
            Some(Self::NoTls)
        } else if lower.contains("certificate has expired") {
            Some(Self::ExpiredCertificate(text))
        } else if lower.contains("hostname mismatch") || lower.contains("ip address mismatch") {
            Some(Self::HostMismatch(text))
        } else if lower.contains("certificate verify failed") {
            Some(Self::UntrustedCertificate(text))
        } else if lower.contains("tls handshake") && !lower.contains("connection reset") {
            Some(Self::Tls(text))
        } else if lower.contains("password") && lower.contains("missing") {
            // The server asked for a password and none was given.
            Some(Self::Authentication(text))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn libpq_tls_parameters_are_understood_and_kept_apart() {
        let url = PostgresUrl::parse(
            "postgres://app:pw-secret@db.example.com:6543/orders?sslmode=verify-full&application_name=x",
        )
        .unwrap();
        assert_eq!(url.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(url.config().get_application_name(), Some("x"));
        assert_eq!(
            url.describe(),
            "postgres://app@db.example.com:6543/orders?sslmode=verify-full"
        );
        assert!(!format!("{url:?}").contains("secret"));
        let default = PostgresUrl::parse("postgres://app@h/db").unwrap();
        assert_eq!(default.ssl_mode(), SslMode::Prefer);
        assert!(default.tls().is_ok());
        for mode in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
            let url = PostgresUrl::parse(&format!("postgres://app@h/db?sslmode={mode}")).unwrap();
            assert_eq!(url.ssl_mode().as_str(), mode);
        }
    }

    #[test]
    fn bad_tls_parameters_say_why_without_the_password() {
        let error = PostgresUrl::parse("postgres://app:pw-secret@h/db?sslmode=allow").unwrap_err();
        assert!(error.to_string().contains("sslmode=allow"), "{error}");
        let error = PostgresUrl::parse("postgres://app:pw-secret@h/db?sslrootcert=/no/such/ca.pem")
            .unwrap_err();
        assert!(error.to_string().contains("/no/such/ca.pem"), "{error}");
        assert!(!error.to_string().contains("secret"));
    }

    #[test]
    fn a_password_from_a_file_is_one_place_only() {
        let password = SecretString::from("from-file-secret".to_owned());
        let url = PostgresUrl::parse("postgres://app@h/db")
            .unwrap()
            .with_password(&password)
            .unwrap();
        assert_eq!(url.config().get_password(), Some(&b"from-file-secret"[..]));
        assert!(!format!("{url:?}").contains("secret"));
        let twice = PostgresUrl::parse("postgres://app:other@h/db")
            .unwrap()
            .with_password(&password);
        assert!(twice.is_err());
    }
}
