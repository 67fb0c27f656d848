//! A schema registry for tests (features `testing` and `registry`): no registry server can be
//! installed where the tests run, so this serves the part of Confluent's documented REST API
//! that Avro serializers and deserializers use, in memory, on a free local port.
//!
//! What it serves, as Confluent documents it:
//! - `POST /subjects/{subject}/versions` registers a schema (the same schema again answers its
//!   id; another version must pass the subject's compatibility check, `BACKWARD`: the new
//!   schema reads what the latest wrote; else `409`), `{"id": n}`;
//! - `POST /subjects/{subject}` looks a schema up, `{"subject","id","version","schema"}`, or
//!   `404` with `error_code` `40401` (no such subject) or `40403` (no such schema);
//! - `GET /schemas/ids/{id}`, `{"schema": …}`, or `404` `40403`;
//! - `GET /subjects`, `GET /subjects/{subject}/versions`,
//!   `GET /subjects/{subject}/versions/{version|latest}`;
//! - `POST /compatibility/subjects/{subject}/versions/{version|latest}`,
//!   `{"is_compatible": bool}`;
//! - basic authentication when started with a user: `401` `{"error_code": 401}` otherwise.
//!
//! Ids are global: one schema has one id whatever its subjects. Query strings are ignored.
//! [`TestRegistry::stop`] takes it off the network (keeping its schemas), [`TestRegistry::start_again`]
//! brings it back on the same port: an outage mid-stream.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// The registry's contents.
#[derive(Debug, Default)]
struct Contents {
    /// Schema texts by id.
    schemas: BTreeMap<u32, String>,
    /// Each subject's versions, oldest first, as schema ids.
    subjects: BTreeMap<String, Vec<u32>>,
    /// Requests answered, all kinds.
    requests: u64,
}

/// A schema registry in memory, serving Confluent's REST API on `127.0.0.1`.
pub struct TestRegistry {
    addr: SocketAddr,
    contents: Arc<Mutex<Contents>>,
    auth: Option<String>,
    /// HTTPS, when started with a certificate.
    tls: Option<tokio_rustls::TlsAcceptor>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for TestRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRegistry")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl TestRegistry {
    /// A registry on a free port, open to anyone.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A registry on a free port that asks for basic authentication as `user`/`password`.
    pub async fn with_user(user: &str, password: &str) -> Self {
        Self::start_with(Some((user, password))).await
    }

    /// A registry serving HTTPS with `cert_pem` (its chain) and `key_pem` (PKCS#8), open to
    /// anyone.
    pub async fn with_tls(cert_pem: &str, key_pem: &str) -> Self {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("a PEM certificate chain");
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("a PEM private key");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("the certificate goes with its key");
        let mut registry = Self::start_with(None).await;
        registry.stop();
        registry.tls = Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)));
        registry.start_again().await;
        registry
    }

    async fn start_with(auth: Option<(&str, &str)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a local port for the test registry");
        let addr = listener.local_addr().expect("the test registry's address");
        let mut registry = Self {
            addr,
            contents: Arc::default(),
            auth: auth.map(|(user, password)| {
                let pair = format!("{user}:{password}");
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }),
            tls: None,
            server: None,
        };
        registry.serve(listener);
        registry
    }

    /// Its base URL, `http://127.0.0.1:<port>` (`https://` with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.lock().requests
    }

    /// Registers `schema` under `subject` as a client would, checking compatibility; its id.
    pub fn register(&self, subject: &str, schema: &str) -> Result<u32, String> {
        let mut contents = self.lock();
        register(&mut contents, subject, schema, None).map_err(|(_, body)| body.to_string())
    }

    /// Registers `schema` under `subject` with the id `id`, as a registry in `IMPORT` mode
    /// takes a schema copied from another registry.
    pub fn import(&self, subject: &str, schema: &str, id: u32) -> Result<u32, String> {
        let mut contents = self.lock();
        register(&mut contents, subject, schema, Some(id)).map_err(|(_, body)| body.to_string())
    }

    /// Takes the registry off the network: new connections are refused and open ones cut.
    /// What it holds is kept.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }

    /// Serves again on the same port, with the same contents.
    pub async fn start_again(&mut self) {
        self.stop();
        // The port was just freed; bind until the system lets it go.
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        };
        self.serve(listener);
    }

    fn serve(&mut self, listener: TcpListener) {
        let contents = self.contents.clone();
        let auth = self.auth.clone();
        let tls = self.tls.clone();
        self.server = Some(tokio::spawn(async move {
            // Aborting the server drops this set, which aborts every connection with it.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (contents, auth, tls) = (contents.clone(), auth.clone(), tls.clone());
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let (contents, auth) = (contents.clone(), auth.clone());
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                answer(&contents, auth.as_deref(), request).await,
                            )
                        }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let io = hyper_util::rt::TokioIo::new(stream);
                            let _ = http.serve_connection(io, service).await;
                        }
                        // A client that does not trust the certificate hangs up here.
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                let io = hyper_util::rt::TokioIo::new(stream);
                                let _ = http.serve_connection(io, service).await;
                            }
                        }
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        }));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Contents> {
        self.contents.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

type Answer = (StatusCode, Value);

fn error(status: StatusCode, code: u32, message: impl Into<String>) -> Answer {
    (
        status,
        json!({"error_code": code, "message": message.into()}),
    )
}

async fn answer(
    contents: &Mutex<Contents>,
    auth: Option<&str>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (status, body) = route(contents, auth, request).await;
    Response::builder()
        .status(status)
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

async fn route(
    contents: &Mutex<Contents>,
    auth: Option<&str>,
    request: Request<Incoming>,
) -> Answer {
    if let Some(expected) = auth {
        let presented = request
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if presented != Some(expected) {
            return error(StatusCode::UNAUTHORIZED, 401, "Unauthorized");
        }
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return error(StatusCode::BAD_REQUEST, 400, e.to_string()),
    };
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let schema_of = || -> Result<String, Answer> {
        request["schema"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| error(StatusCode::UNPROCESSABLE_ENTITY, 42201, "no schema"))
    };
    let wanted_id = request["id"].as_u64().and_then(|id| u32::try_from(id).ok());
    let mut contents = contents.lock().unwrap_or_else(PoisonError::into_inner);
    contents.requests += 1;
    let parts: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(|p| {
            form_urlencoded::parse(format!("p={p}").as_bytes())
                .next()
                .map_or_else(String::new, |(_, v)| v.into_owned())
        })
        .collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let result = match (method.as_str(), parts.as_slice()) {
        ("GET", ["subjects"]) => Ok((
            StatusCode::OK,
            json!(contents.subjects.keys().collect::<Vec<_>>()),
        )),
        ("POST", ["subjects", subject, "versions"]) => schema_of()
            .and_then(|schema| register(&mut contents, subject, &schema, wanted_id))
            .map(|id| (StatusCode::OK, json!({"id": id}))),
        ("POST", ["subjects", subject]) => {
            schema_of().and_then(|schema| look_up(&contents, subject, &schema))
        }
        ("GET", ["subjects", subject, "versions"]) => match contents.subjects.get(*subject) {
            Some(ids) => Ok((StatusCode::OK, json!((1..=ids.len()).collect::<Vec<_>>()))),
            None => Err(no_subject(subject)),
        },
        ("GET", ["subjects", subject, "versions", version]) => {
            version_of(&contents, subject, version)
                .map(|(version, id)| (StatusCode::OK, described(&contents, subject, version, id)))
        }
        ("GET", ["schemas", "ids", id]) => {
            match id.parse::<u32>().ok().and_then(|id| text(&contents, id)) {
                Some(schema) => Ok((StatusCode::OK, json!({"schema": schema}))),
                None => Err(error(
                    StatusCode::NOT_FOUND,
                    40403,
                    format!("Schema {id} not found"),
                )),
            }
        }
        ("POST", ["compatibility", "subjects", subject, "versions", version]) => schema_of()
            .and_then(|schema| {
                let (_, id) = version_of(&contents, subject, version)?;
                let old = text(&contents, id).unwrap_or_default();
                Ok((
                    StatusCode::OK,
                    json!({"is_compatible": compatible(&old, &schema)?}),
                ))
            }),
        _ => Err(error(
            StatusCode::NOT_FOUND,
            404,
            format!("HTTP 404 Not Found: {method} {path}"),
        )),
    };
    result.unwrap_or_else(|e| e)
}

/// The schema as the registry compares schemas: parsed, so spacing and key order do not
/// make another schema.
fn parsed(schema: &str) -> Result<Schema, Answer> {
    Schema::parse_str(schema).map_err(|e| {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            format!("Invalid schema: {e}"),
        )
    })
}

/// The same schema, as Confluent's look-up compares them: the whole schema (docs, defaults
/// and all), not only its canonical form; spacing and key order aside.
fn same(a: &str, b: &str) -> bool {
    let json = |text: &str| serde_json::from_str::<Value>(text).ok();
    matches!((json(a), json(b)), (Some(a), Some(b)) if a == b)
}

/// `BACKWARD`, the registry's default: the new schema reads what the old one wrote.
fn compatible(old: &str, new: &str) -> Result<bool, Answer> {
    let (old, new) = (parsed(old)?, parsed(new)?);
    Ok(SchemaCompatibility::can_read(&old, &new).is_ok())
}

fn text(contents: &Contents, id: u32) -> Option<String> {
    contents.schemas.get(&id).cloned()
}

fn no_subject(subject: &str) -> Answer {
    error(
        StatusCode::NOT_FOUND,
        40401,
        format!("Subject '{subject}' not found."),
    )
}

fn register(
    contents: &mut Contents,
    subject: &str,
    schema: &str,
    wanted: Option<u32>,
) -> Result<u32, Answer> {
    parsed(schema)?;
    let versions = contents.subjects.get(subject).cloned().unwrap_or_default();
    if let Some(&id) = versions
        .iter()
        .find(|&&id| text(contents, id).is_some_and(|t| same(&t, schema)))
    {
        return Ok(id);
    }
    if let Some(&latest) = versions.last() {
        let old = text(contents, latest).unwrap_or_default();
        if !compatible(&old, schema)? {
            return Err(error(
                StatusCode::CONFLICT,
                409,
                "Schema being registered is incompatible with an earlier schema for subject",
            ));
        }
    }
    let known = contents
        .schemas
        .iter()
        .find(|(_, t)| same(t, schema))
        .map(|(id, _)| *id);
    let id = match (known, wanted) {
        (Some(id), None) => id,
        (Some(id), Some(wanted)) if id == wanted => id,
        (None, Some(wanted)) if !contents.schemas.contains_key(&wanted) => wanted,
        (_, Some(wanted)) => {
            return Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                42205,
                format!("Overwrite new schema with id {wanted} is not permitted."),
            ));
        }
        (None, None) => {
            let id = contents
                .schemas
                .keys()
                .next_back()
                .map_or(1, |last| last + 1);
            contents.schemas.insert(id, schema.to_owned());
            id
        }
    };
    contents
        .schemas
        .entry(id)
        .or_insert_with(|| schema.to_owned());
    contents
        .subjects
        .entry(subject.to_owned())
        .or_default()
        .push(id);
    Ok(id)
}

fn look_up(contents: &Contents, subject: &str, schema: &str) -> Result<Answer, Answer> {
    parsed(schema)?;
    let versions = contents
        .subjects
        .get(subject)
        .ok_or_else(|| no_subject(subject))?;
    let (version, id) = versions
        .iter()
        .enumerate()
        .find(|(_, id)| text(contents, **id).is_some_and(|t| same(&t, schema)))
        .map(|(i, id)| (i + 1, *id))
        .ok_or_else(|| error(StatusCode::NOT_FOUND, 40403, "Schema not found"))?;
    Ok((StatusCode::OK, described(contents, subject, version, id)))
}

fn version_of(contents: &Contents, subject: &str, version: &str) -> Result<(usize, u32), Answer> {
    let versions = contents
        .subjects
        .get(subject)
        .ok_or_else(|| no_subject(subject))?;
    let number = match version {
        "latest" | "-1" => versions.len(),
        other => other.parse().unwrap_or(0),
    };
    number
        .checked_sub(1)
        .and_then(|i| versions.get(i))
        .map(|id| (number, *id))
        .ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                40402,
                format!("Version {version} not found."),
            )
        })
}

fn described(contents: &Contents, subject: &str, version: usize, id: u32) -> Value {
    json!({
        "subject": subject,
        "id": id,
        "version": version,
        "schema": text(contents, id).unwrap_or_default(),
    })
}

/// Confluent's own Python client (`confluent_kafka`, installed by `scripts/test`), run over
/// `tests/python/confluent_avro.py`: an Avro serializer and deserializer nobody on this
/// project wrote. `user_info`: basic auth, `user:password`.
pub mod confluent_python {
    use std::path::Path;
    use std::process::Command;

    use serde_json::Value;

    fn run(args: &[&str], user_info: Option<&str>) -> String {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/confluent_avro.py"
        );
        let mut command = Command::new("python3");
        command.arg(script).args(args);
        if let Some(user_info) = user_info {
            command.env("REGISTRY_USER_INFO", user_info);
        }
        let output = command
            .output()
            .expect("python3 runs (scripts/test installs confluent-kafka)");
        assert!(
            output.status.success(),
            "confluent_kafka failed (scripts/test installs it: pip install 'confluent-kafka[avro,schemaregistry]'): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("the script writes text")
    }

    /// `record` as Confluent's `AvroSerializer` writes it to `topic` with the schema of the
    /// file `schema`, registering it under `<topic>-value`.
    pub fn serialize(
        url: &str,
        topic: &str,
        schema: &Path,
        record: &Value,
        user_info: Option<&str>,
    ) -> Vec<u8> {
        let schema = schema.to_str().expect("a UTF-8 path");
        let hex = run(
            &["serialize", url, topic, schema, &record.to_string()],
            user_info,
        );
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex from the script"))
            .collect()
    }

    /// `payload` as Confluent's `AvroDeserializer` reads it.
    pub fn deserialize(url: &str, topic: &str, payload: &[u8]) -> Value {
        let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
        serde_json::from_str(&run(&["deserialize", url, topic, &hex], None))
            .expect("JSON from the script")
    }
}
