//! HTTPS: `TLS_CERT_FILE` and `TLS_KEY_FILE` (PEM) make a shell serve HTTPS only (rustls).
//! Both are read at start-up; a certificate is rotated by a (rolling) restart.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::env::{Env, EnvError};

fn error(name: &'static str, path: &str, reason: impl Into<String>) -> EnvError {
    EnvError {
        name,
        value: path.to_owned(),
        reason: reason.into(),
    }
}

/// HTTPS as `TLS_CERT_FILE` and `TLS_KEY_FILE` set it up: the certificate and its key,
/// loaded once.
#[derive(Clone)]
pub struct Https {
    pub(crate) acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Https {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Https")
    }
}

/// HTTPS as `TLS_CERT_FILE` and `TLS_KEY_FILE` ask; `None` (plain HTTP) when neither is set.
/// One without the other, a file that cannot be read or parsed, or a key that is not the
/// certificate's stop the start naming the setting.
pub fn https(env: &Env) -> Result<Option<Https>, EnvError> {
    let cert = env.text("TLS_CERT_FILE", "");
    let key = env.text("TLS_KEY_FILE", "");
    match (cert.is_empty(), key.is_empty()) {
        (true, true) => return Ok(None),
        (false, true) => {
            return Err(error(
                "TLS_KEY_FILE",
                "",
                format!("is required with TLS_CERT_FILE={cert}"),
            ));
        }
        (true, false) => {
            return Err(error(
                "TLS_CERT_FILE",
                "",
                format!("is required with TLS_KEY_FILE={key}"),
            ));
        }
        (false, false) => {}
    }
    std::fs::File::open(&cert)
        .map_err(|e| error("TLS_CERT_FILE", &cert, format!("cannot be read: {e}")))?;
    std::fs::File::open(&key)
        .map_err(|e| error("TLS_KEY_FILE", &key, format!("cannot be read: {e}")))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(Path::new(&cert))
        .and_then(Iterator::collect)
        .map_err(|e| {
            error(
                "TLS_CERT_FILE",
                &cert,
                format!("is not PEM certificates: {e}"),
            )
        })?;
    if chain.is_empty() {
        return Err(error("TLS_CERT_FILE", &cert, "holds no PEM certificate"));
    }
    // Never the key's bytes in a message: only that it does not parse.
    let private = PrivateKeyDer::from_pem_file(Path::new(&key)).map_err(|_| {
        error(
            "TLS_KEY_FILE",
            &key,
            "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| error("TLS_CERT_FILE", &cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            error(
                "TLS_KEY_FILE",
                &key,
                format!("does not go with TLS_CERT_FILE={cert}: {e}"),
            )
        })?;
    Ok(Some(Https {
        acceptor: TlsAcceptor::from(Arc::new(config)),
    }))
}
