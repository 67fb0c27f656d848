//! A throwaway Nisshi broker for tests (feature `testing`): a free port, its own directory,
//! gone when dropped.
//!
//! Install the broker once per machine with `scripts/broker install`; `NISSHI_BIN` overrides
//! where it is looked for.

#[cfg(feature = "registry")]
pub use crate::testing_registry::{TestRegistry, confluent_python};

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Where a test broker keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// Fast, and gone with the process.
    Memory,
    /// In a sqlite file in the broker's directory: survives a [`TestBroker::restart`].
    Sqlite,
}

/// A broker process owned by a test. Dropping it kills the broker.
pub struct TestBroker {
    port: u16,
    dir: PathBuf,
    storage: Storage,
    child: Option<Child>,
    /// The certificate and key (PEM) of a broker that requires TLS and SASL/SCRAM.
    secured: Option<(PathBuf, PathBuf)>,
}

impl std::fmt::Debug for TestBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestBroker").finish_non_exhaustive()
    }
}

fn nisshi() -> PathBuf {
    if let Some(bin) = std::env::var_os("NISSHI_BIN") {
        return bin.into();
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nisshi"))
            .find(|bin| bin.is_file())
    });
    on_path.unwrap_or_else(|| {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo")
            });
        home.join("bin").join("nisshi")
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

impl TestBroker {
    /// A fresh in-memory broker on a free port.
    pub fn start() -> Self {
        Self::start_with(Storage::Memory)
    }

    /// A fresh broker on a free port, keeping its data in `storage`, once it listens (20 s
    /// at most). Panics when it cannot start: not installed, or exited at start-up (see its
    /// `broker.log`).
    pub fn start_with(storage: Storage) -> Self {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "ordering-test-broker-{}-{}-{port}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("creating the broker's directory");
        let mut broker = Self {
            port,
            dir,
            storage,
            child: None,
            secured: None,
        };
        broker.launch();
        broker
    }

    /// A broker that accepts only TLS (`cert` and `key`, PEM) and SASL/SCRAM logins, as a
    /// production cluster does, knowing `users` (name, password; SCRAM-SHA-512 and
    /// SCRAM-SHA-256 both). Users are created on a plaintext start on the same storage,
    /// before the secured restart. Nisshi does not ask for client certificates: mutual TLS
    /// cannot be tested against it.
    pub fn start_secured(cert: &Path, key: &Path, users: &[(&str, &str)]) -> Self {
        let mut broker = Self::start_with(Storage::Sqlite);
        for (name, password) in users {
            for mechanism in ["scram512", "scram256"] {
                let output = Command::new(nisshi())
                    .args(["user", "create", "--broker"])
                    .arg(format!("tcp://127.0.0.1:{}", broker.port))
                    .args([name, password, "--mechanism", mechanism])
                    .current_dir(&broker.dir)
                    .output()
                    .expect("running nisshi user create");
                assert!(
                    output.status.success(),
                    "nisshi user create {name} failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
        broker.secured = Some((cert.to_owned(), key.to_owned()));
        broker.restart();
        broker
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the broker (as a crash would) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port (with [`Storage::Sqlite`], with its data).
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    fn launch(&mut self) {
        let storage = match self.storage {
            Storage::Memory => "memory://nisshi/".to_owned(),
            Storage::Sqlite => "sqlite://broker.db".to_owned(),
        };
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))
            .expect("opening the broker log");
        let bin = nisshi();
        let child = Command::new(&bin)
            .args(["broker", "--storage-engine", &storage])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            // Tests join groups one member at a time: no point waiting for more.
            .args(["--group-initial-rebalance-delay", "0s"])
            .args(match &self.secured {
                Some((cert, key)) => vec![
                    "--cert".into(),
                    cert.as_os_str().to_owned(),
                    "--key".into(),
                    key.as_os_str().to_owned(),
                    "--authentication".into(),
                ],
                None => Vec::new(),
            })
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("broker log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start the test broker {}: {e}. Install it with `scripts/broker install`",
                    bin.display()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "the test broker exited at start-up ({status}); see {}",
                    self.log_path().display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the test broker did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("broker.log")
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A topic name no other test uses.
pub fn unique_topic(prefix: &str) -> String {
    static COUNT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The offset `group` has committed for `topic`/`partition` (the next to consume), asked
/// without joining the group.
pub fn committed_offset(
    cluster: impl Into<crate::Cluster>,
    group: &str,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = cluster
        .into()
        .client_config()
        .set("group.id", group)
        .create()
        .expect("creating a consumer to read committed offsets");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("reading committed offsets");
    committed
        .find_partition(topic, partition)
        .and_then(|e| match e.offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        })
}

/// A third version of the status update, as a producer upgraded before its consumers would
/// write it: version 2 plus a `channel` string (default `web`). For schema-evolution tests.
pub const STATUS_UPDATE_V3: &str = r#"{
  "type": "record", "name": "OrderStatusUpdate", "namespace": "com.ecommerce.order",
  "fields": [
    {"name": "orderId", "type": "string"},
    {"name": "status", "type": "string"},
    {"name": "updateTimestamp", "type": "string"},
    {"name": "eventType", "type": "string", "default": "STATUS_UPDATE"},
    {"name": "reason", "type": ["null", "string"], "default": null},
    {"name": "channel", "type": "string", "default": "web"}
  ]
}"#;

/// A status update "shipped" of `order_id` with `reason`, in single-object encoding with
/// [`STATUS_UPDATE_V3`], written by apache-avro directly (not through the codec).
pub fn status_update_v3(order_id: &str, reason: &str) -> Vec<u8> {
    use apache_avro::types::{Record, Value};
    let schema = apache_avro::Schema::parse_str(STATUS_UPDATE_V3).expect("a valid schema");
    let mut record = Record::new(&schema).expect("a record schema");
    record.put("orderId", order_id);
    record.put("status", "shipped");
    record.put("updateTimestamp", "2026-11-25T10:00:00Z");
    record.put("eventType", "STATUS_UPDATE");
    record.put(
        "reason",
        Value::Union(1, Box::new(Value::String(reason.into()))),
    );
    record.put("channel", "phone");
    let fingerprint = schema.fingerprint::<apache_avro::rabin::Rabin>().bytes;
    let mut payload = crate::MAGIC.to_vec();
    payload.extend_from_slice(&fingerprint);
    apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .expect("a writer")
        .write_value(&mut payload, Value::from(record))
        .expect("a record that matches its schema");
    payload
}

/// The id the brokers give `topic` now (base64, as Kafka's tools print it); `None` while no
/// topic of that name exists.
pub fn topic_id(cluster: impl Into<crate::Cluster>, topic: &str) -> Option<String> {
    use rdkafka::consumer::Consumer;
    let consumer: rdkafka::consumer::BaseConsumer = cluster
        .into()
        .client_config()
        .create()
        .expect("creating a client to describe topics");
    crate::topic_id::describe(consumer.client(), &[topic], Duration::from_secs(10))
        .expect("describing topics")
        .into_iter()
        .find_map(|(name, id)| (name == topic).then_some(id))
}

/// Deletes `topic` and creates it again with `partitions` partitions, as an operator would:
/// a new incarnation, with a new topic id and offsets starting over from 0. Returns the ids
/// before and after.
pub async fn recreate_topic(
    cluster: impl Into<crate::Cluster>,
    topic: &str,
    partitions: i32,
) -> (String, String) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let cluster = cluster.into();
    let admin: AdminClient<DefaultClientContext> = cluster
        .client_config()
        .create()
        .expect("creating an admin client");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let before = topic_id(&cluster, topic).expect("the topic to re-create exists");
    for result in admin
        .delete_topics(&[topic], &options)
        .await
        .expect("deleting the topic")
    {
        result.expect("the topic deleted");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut created = false;
    loop {
        if !created {
            // A broker may refuse the name while the deletion completes.
            let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
            let results = admin
                .create_topics(&[new], &options)
                .await
                .expect("creating the topic");
            created = results.iter().all(Result::is_ok);
        }
        if created && let Some(after) = topic_id(&cluster, topic).filter(|id| *id != before) {
            return (before, after);
        }
        assert!(Instant::now() < deadline, "{topic} not created again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
