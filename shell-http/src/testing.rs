//! Running a shell binary as a real process and talking HTTP to it (feature `testing`).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// A shell process on a free port of 127.0.0.1; killed when dropped.
pub struct ShellProcess {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
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
        let mut shell = Self {
            child: Some(child),
            port,
            log,
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

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
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
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub text: String,
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
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body.unwrap_or_default())))
        .expect("a valid request");
    let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
        .await
        .unwrap_or_else(|_| panic!("{method} {url}: no answer within 30 s"))
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
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
    Reply {
        status,
        headers,
        text,
        json,
    }
}

pub async fn get(url: &str) -> Reply {
    call("GET", url, None).await
}

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
