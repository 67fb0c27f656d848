//! Running a shell binary as a real process and talking HTTP to it (feature `testing`).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::Value;

/// A shell process on a free port of 127.0.0.1; killed when dropped.
pub struct ShellProcess {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    /// `https` when started with `TLS_CERT_FILE`, else `http`.
    scheme: &'static str,
}

impl std::fmt::Debug for ShellProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShellProcess").finish_non_exhaustive()
    }
}

impl ShellProcess {
    /// Starts `binary` with `env` (plus `API_HOST`/`API_PORT`) and waits until it listens.
    pub fn start(binary: &Path, env: &[(&str, String)]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let log = std::env::temp_dir().join(format!(
            "{}-{}-{port}.log",
            binary
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("shell"),
            std::process::id()
        ));
        let out = std::fs::File::create(&log).expect("creating the shell's log");
        let child = Command::new(binary)
            .env("RUST_LOG", "info,rdkafka=warn") // unless `env` says otherwise
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("API_HOST", "127.0.0.1")
            .env("API_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let https = env
            .iter()
            .any(|(k, v)| *k == "TLS_CERT_FILE" && !v.is_empty());
        let mut shell = Self {
            child: Some(child),
            port,
            log,
            scheme: if https { "https" } else { "http" },
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = shell.exited() {
                panic!(
                    "{} exited at start-up ({status}):\n{}",
                    binary.display(),
                    shell.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen within 30 s",
                binary.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        shell
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` + `path` (`https://` for a shell serving HTTPS; its CA must be
    /// [`trust`]ed).
    pub fn url(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}{path}", self.scheme, self.port)
    }

    /// What the process printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status, if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process with SIGKILL (`kill -9`: no clean-up of any kind) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits (at most 30 s) for the process to end.
    pub fn terminate(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("the shell is running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.exited() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "no exit within 30 s of SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ShellProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An HTTP reply: its status, headers and body (parsed if JSON, else `Null`).
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The response headers.
    pub headers: hyper::HeaderMap,
    /// The body as text (bytes that are not UTF-8 replaced).
    pub text: String,
    /// The body parsed as JSON; `Null` when it is not JSON.
    pub json: Value,
}

/// Sends one request; `body` is sent as is with `Content-Type: application/json`.
pub async fn call(method: &str, url: &str, body: Option<&[u8]>) -> Reply {
    call_with(method, url, body, &[]).await
}

/// [`call`] with more request headers.
pub async fn call_with(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> Reply {
    try_call_with(method, url, body, headers)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// [`call_with`], with a request that could not be made, sent or answered as an error.
pub async fn try_call_with(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> Result<Reply, String> {
    let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(connector()?);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body.unwrap_or_default())))
        .map_err(|e| format!("{method} {url}: not a valid request: {e}"))?;
    let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
        .await
        .map_err(|_| format!("{method} {url}: no answer within 30 s"))?
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Reply {
        status,
        headers,
        text,
        json,
    })
}

/// CA certificates (PEM) that sign the certificates of shells serving HTTPS, added to what
/// [`call`] and the others trust in this process.
pub fn trust(ca_pem: &str) {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = TRUSTED.lock().unwrap_or_else(|e| e.into_inner());
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.push(cert.expect("a PEM certificate").into_owned());
    }
}

static TRUSTED: std::sync::Mutex<Vec<rustls_pki_types::CertificateDer<'static>>> =
    std::sync::Mutex::new(Vec::new());

/// HTTP, and HTTPS to servers whose CA was [`trust`]ed.
pub fn connector()
-> Result<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, String>
{
    let mut roots = rustls::RootCertStore::empty();
    for cert in TRUSTED.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        roots.add(cert.clone()).map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .build())
}

/// `GET url`; panics if the request cannot be made or gets no answer within 30 s.
pub async fn get(url: &str) -> Reply {
    call("GET", url, None).await
}

/// Sends `body` as JSON with `method`; panics if the request cannot be made or gets no
/// answer within 30 s.
pub async fn send_json(method: &str, url: &str, body: &Value) -> Reply {
    call(method, url, Some(body.to_string().as_bytes())).await
}

/// Checks a Prometheus text exposition with the real `promtool check metrics` (Debian's
/// `prometheus` package; `scripts/test` installs it): the format and Prometheus' naming rules
/// (units, `_total` on counters, help text). Panics with promtool's complaints.
pub fn promtool_check(exposition: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool cannot run ({e}): install it with `apt-get install prometheus`, or run the tests with scripts/test")
        });
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(exposition.as_bytes())
        .expect("writing to promtool");
    let output = child.wait_with_output().expect("promtool's answer");
    assert!(
        output.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- the exposition ---\n{exposition}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

/// The sum of the samples of `name` (exactly; `_bucket`/`_count` are names of their own) whose
/// labels contain every one of `labels` (each `key="value"`), in a Prometheus text exposition.
pub fn metric_sum(exposition: &str, name: &str, labels: &[&str]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.iter().all(|l| rest.contains(l)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// Checks `api` against a service served at `base` (e.g. `http://127.0.0.1:PORT`) with the
/// routing table `routes`:
/// - every route is documented for the service, with its method, and every documented
///   operation is a route;
/// - every documented operation, called with what the document gives (its example body, no
///   parameters), answers with one of its documented statuses, and an error answer has the
///   error body when the document says so;
/// - `GET /openapi.json` serves the service's part of the document.
pub async fn check_openapi<E>(
    api: crate::openapi::Documented,
    routes: &crate::router::Routes<E>,
    base: &str,
) {
    let document = crate::openapi::document(api).expect("the OpenAPI document parses");
    let paths = document["paths"].as_object().expect("paths");
    let mut documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flat_map(|ops| ops.keys())
                .filter(|key| crate::openapi::METHODS.contains(&key.as_str()))
                .map(move |method| (method.to_ascii_uppercase(), path.clone()))
        })
        .collect();
    let mut served: Vec<(String, String)> = routes
        .endpoints()
        .map(|(method, path)| (method.as_str().to_owned(), path.to_owned()))
        .collect();
    documented.sort();
    served.sort();
    assert_eq!(
        served, documented,
        "the routes of {} (left) and its OpenAPI document (right) differ",
        api.service
    );

    for (method, path) in &documented {
        let operation = &paths[path][method.to_ascii_lowercase()];
        let example = &operation["requestBody"]["content"]["application/json"]["example"];
        let body = (!example.is_null()).then(|| example.to_string());
        let reply = call(
            method,
            &format!("{base}{path}"),
            body.as_deref().map(str::as_bytes),
        )
        .await;
        let status = reply.status.to_string();
        let responses = operation["responses"].as_object().expect("responses");
        assert!(
            responses.contains_key(&status),
            "{method} {path} answered {status}, documented: {:?}; body {}",
            responses.keys().collect::<Vec<_>>(),
            reply.text
        );
        // The shared responses (`components/responses`) are all the error body.
        if responses[&status].get("$ref").is_some() {
            assert_eq!(
                reply.json["success"], false,
                "{method} {path}: {}",
                reply.text
            );
            assert!(
                reply.json["error"].is_string(),
                "{method} {path}: {}",
                reply.text
            );
            assert!(
                reply.json["details"].is_string(),
                "{method} {path}: {}",
                reply.text
            );
        }
    }

    let served_document = get(&format!("{base}/openapi.json")).await;
    assert_eq!(served_document.status, 200);
    assert_eq!(
        served_document.json, document,
        "GET /openapi.json of {}",
        api.service
    );
}

/// [`call_with`] on `base` + `path` (a route of the service, with any query), asserting that
/// the answer's status is one `api` documents for that operation.
pub async fn call_documented(
    api: crate::openapi::Documented,
    method: &str,
    base: &str,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> Reply {
    let reply = call_with(method, &format!("{base}{path}"), body, headers).await;
    let document = crate::openapi::document(api).expect("the OpenAPI document parses");
    let route = path.split('?').next().unwrap_or(path);
    let responses = &document["paths"][route][method.to_ascii_lowercase()]["responses"];
    let status = reply.status.to_string();
    assert!(
        responses.get(&status).is_some(),
        "{method} {path} answered {status}, which the OpenAPI document does not document for {}: {}",
        api.service,
        reply.text
    );
    reply
}

/// The variables `command` declares, one per setting.
pub fn declared_variables(command: &clap::Command) -> Vec<String> {
    let mut names: Vec<String> = command
        .get_arguments()
        .filter_map(|arg| arg.get_env()?.to_str().map(str::to_owned))
        .collect();
    // Declared in the help's closing text rather than as flags.
    let after = command
        .get_after_help()
        .map(|h| h.to_string())
        .unwrap_or_default();
    names.extend(
        crate::env::ENVIRONMENT_ONLY
            .iter()
            .filter(|name| after.contains(**name))
            .map(|name| (*name).to_owned()),
    );
    names.sort();
    names
}

/// Runs `binary --help` and checks that it succeeds and lists every variable in `names` with
/// its flag (`KAFKA_TOPIC` is `--kafka-topic`). Returns the help text.
pub fn help_lists(binary: &Path, names: &[String]) -> String {
    let output = Command::new(binary)
        .arg("--help")
        .output()
        .expect("the shell runs");
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8_lossy(&output.stdout).into_owned();
    for name in names {
        let flag = format!("--{}", name.to_ascii_lowercase().replace('_', "-"));
        if crate::env::ENVIRONMENT_ONLY.contains(&name.as_str()) {
            assert!(
                help.contains(&format!("  {name} ")),
                "{name} missing from --help:\n{help}"
            );
            assert!(
                !help.contains(&flag),
                "{flag} must not exist: a secret on the command line shows in the process list"
            );
            continue;
        }
        assert!(
            help.contains(&format!("[env: {name}")),
            "{name} missing from --help:\n{help}"
        );
        assert!(help.contains(&flag), "{flag} missing from --help:\n{help}");
    }
    help
}

/// Checks a shell's settings against its command line `command`: every variable `read` looks
/// up is declared there and every declared one is read; `binary --help` lists each with its
/// flag; and the defaults the command line fills in read the same as no settings at all
/// (compared through `Debug`), so `--help` tells the truth. Returns the help text.
pub fn check_settings<T, E>(
    command: clap::Command,
    binary: &Path,
    read: impl Fn(&crate::env::Env) -> Result<T, E>,
) -> String
where
    T: std::fmt::Debug,
    E: std::fmt::Debug,
{
    use crate::env::Env;
    let name = command.get_name().to_owned();
    let env = Env::from_args(command.clone(), [name.as_str()]).expect("no arguments parse");
    let from_command_line = read(&env).expect("the defaults are valid");
    drop(crate::init_tracing(&env, "test").expect("the default log format is valid"));
    let asked: Vec<String> = env.asked().into_iter().map(str::to_owned).collect();
    assert_eq!(
        asked,
        declared_variables(&command),
        "read (left), declared (right)"
    );
    let from_nothing = read(&Env::from_pairs(&[])).expect("the defaults are valid");
    assert_eq!(
        format!("{from_command_line:?}"),
        format!("{from_nothing:?}"),
        "the defaults --help shows differ from the code's"
    );
    help_lists(binary, &asked)
}

/// A throwaway PKI for TLS tests and benchmarks: a CA, the servers' certificate (localhost and 127.0.0.1) and key, an
/// expired one, and a CA that signed none of them.
pub struct Pki {
    dir: tempfile::TempDir,
    /// The CA's certificate (PEM).
    pub ca_pem: String,
    /// The servers' certificate and key (PEM, the key PKCS#8).
    pub cert_pem: String,
    /// The key of [`cert_pem`](Self::cert_pem) (PEM, PKCS#8).
    pub key_pem: String,
}

impl Pki {
    /// A new PKI in a temporary directory, its files: `ca.pem`, `server.pem`, `server.key`,
    /// `expired.pem`, `expired.key`, `rogue-ca.pem`.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a test certificate");
        let (ca_pem, issuer) = authority("ordering test CA");
        let (cert_pem, key_pem) = server_cert(&issuer, None);
        let (expired_pem, expired_key) = server_cert(&issuer, Some((2020, 2021)));
        let (rogue_pem, _) = authority("nobody's CA");
        let pki = Self {
            dir,
            ca_pem,
            cert_pem,
            key_pem,
        };
        for (name, pem) in [
            ("ca.pem", &pki.ca_pem),
            ("server.pem", &pki.cert_pem),
            ("server.key", &pki.key_pem),
            ("expired.pem", &expired_pem),
            ("expired.key", &expired_key),
            ("rogue-ca.pem", &rogue_pem),
        ] {
            std::fs::write(pki.path(name), pem).expect("a test certificate");
        }
        pki
    }

    /// A file of the PKI's directory (`""`: the directory).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// [`path`](Self::path) as text, for a setting.
    pub fn file(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

fn authority(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("a test certificate");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().expect("a test certificate");
    let cert = params.self_signed(&key).expect("a test certificate");
    (cert.pem(), Issuer::new(params, key))
}

/// A certificate for localhost and 127.0.0.1, valid from January of one year to January of
/// another if given.
fn server_cert(issuer: &Issuer<'_, KeyPair>, validity: Option<(i32, i32)>) -> (String, String) {
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("a test certificate");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    if let Some((from, until)) = validity {
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(until, 1, 1);
    }
    let key = KeyPair::generate().expect("a test certificate");
    let cert = params.signed_by(&key, issuer).expect("a test certificate");
    // PKCS#8, which the broker, PostgreSQL and rustls all read.
    (cert.pem(), key.serialize_pem())
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}
