//! The Kafka ecosystem's Avro framing (feature `registry`): a zero byte, the writer schema's
//! 4-byte big-endian id in a Confluent Schema Registry, then the Avro datum. Java's
//! `KafkaAvroSerializer`, Kafka Connect, ksqlDB, Debezium and Python's `confluent_kafka`
//! write it; any registry with Confluent's REST API keeps the schemas (Confluent, Karapace,
//! Apicurio, Redpanda's).
//!
//! The HTTP calls are [`schema_registry_converter`]'s (its async client: basic auth, timeouts,
//! Confluent's error codes); the framing, the cache and the resolution into the reader's
//! types are this crate's, the same resolution the registry-free codec gives its history
//! versions.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, get_schema_by_id, perform_sr_call,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{RawError, SrCall};
use secrecy::{ExposeSecret, SecretString};

use super::framed::{Fetch, FetchError, SchemaSource, WriterSchema};

/// How the subject a writer's schema is kept under is named: Confluent's three strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubjectStrategy {
    /// `<topic>-value`: one schema (and its versions) per topic. Confluent's default.
    #[default]
    TopicName,
    /// The record's full name: one subject per type, whatever the topic.
    RecordName,
    /// `<topic>-<record full name>`: several types on one topic, each with its own versions.
    TopicRecordName,
}

impl SubjectStrategy {
    /// The subject of a value of record `record` (its full name) written to `topic`.
    pub fn subject(self, topic: &str, record: &str) -> String {
        match self {
            Self::TopicName => format!("{topic}-value"),
            Self::RecordName => record.to_owned(),
            Self::TopicRecordName => format!("{topic}-{record}"),
        }
    }
}

impl FromStr for SubjectStrategy {
    type Err = String;

    /// `topic`, `record` or `topic-record`, or Confluent's class names
    /// (`io.confluent.kafka.serializers.subject.TopicNameStrategy`, …).
    fn from_str(raw: &str) -> Result<Self, String> {
        let name = raw.trim().rsplit('.').next().unwrap_or_default();
        match name.to_ascii_lowercase().as_str() {
            "topic" | "topicnamestrategy" => Ok(Self::TopicName),
            "record" | "recordnamestrategy" => Ok(Self::RecordName),
            "topic-record" | "topicrecordnamestrategy" => Ok(Self::TopicRecordName),
            _ => Err(format!(
                "must be topic, record or topic-record (Confluent's TopicNameStrategy, RecordNameStrategy, TopicRecordNameStrategy), got {raw:?}"
            )),
        }
    }
}

/// What a writer does when its schema is not yet under its subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Registration {
    /// Look the schema up only, and refuse to start if it is not registered. The careful
    /// default (Confluent's `auto.register.schemas=false`): schemas reach production through
    /// review and CI, where the registry's compatibility check runs, never as a side effect
    /// of a deploy.
    #[default]
    LookUpOnly,
    /// Register it (the registry still refuses a version incompatible with the subject's).
    AutoRegister,
}

/// Basic authentication, as Confluent's clients take it (`basic.auth.user.info`,
/// `<user>:<password>`; an API key and secret on Confluent Cloud).
#[derive(Clone)]
pub struct BasicAuth {
    /// The user (an API key).
    pub user: String,
    /// The password (an API secret): never shown.
    pub password: SecretString,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("user", &self.user)
            .field("password", &"[redacted]")
            .finish()
    }
}

impl FromStr for BasicAuth {
    type Err = String;

    /// `<user>:<password>`; the password may hold colons, the user may not.
    fn from_str(raw: &str) -> Result<Self, String> {
        match raw.trim_end_matches(['\r', '\n']).split_once(':') {
            Some((user, password)) if !user.is_empty() => Ok(Self {
                user: user.to_owned(),
                password: SecretString::from(password.to_owned()),
            }),
            _ => Err("must be <user>:<password> (an API key and its secret)".into()),
        }
    }
}

/// Where the registry is and how to talk to it.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Its base URL (`https://psrc-xxxx.europe-west3.gcp.confluent.cloud`).
    pub url: String,
    /// Basic authentication, if the registry asks for it.
    pub basic_auth: Option<BasicAuth>,
    /// A PEM file of the certificate authorities to trust instead of the system's, for a
    /// registry with a private CA.
    pub ca_file: Option<PathBuf>,
    /// How long one call may take, connecting included.
    pub timeout: Duration,
    /// The most writer schemas kept at once; beyond, the least recently fetched is dropped
    /// (and fetched again if a record needs it).
    pub max_schemas: usize,
    /// Whether a writer registers its schema or only looks it up.
    pub registration: Registration,
    /// How subjects are named.
    pub strategy: SubjectStrategy,
}

impl RegistryConfig {
    /// The registry at `url`, with the defaults: no authentication, the system's CAs, 10 s
    /// per call, 1 000 schemas kept, look-up only, `TopicNameStrategy`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            basic_auth: None,
            ca_file: None,
            timeout: Duration::from_secs(10),
            max_schemas: 1000,
            registration: Registration::default(),
            strategy: SubjectStrategy::default(),
        }
    }
}

/// What went wrong with the registry, and whose fault it is.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The registry could not be reached, or failed, or refused our credentials: nothing
    /// the record did. Records wait and the call is tried again.
    #[error("the schema registry is unavailable: {0}")]
    Unavailable(String),
    /// The registry refused the credentials (`401`, `403`): a person must fix them. Records
    /// that need a schema wait meanwhile, as for any outage; a writer does not start.
    #[error("the schema registry refused the credentials: {0}")]
    Unauthorized(String),
    /// The registry has no schema with this id: the record was written with a schema that
    /// was never registered here (or was deleted). Its record is dead-lettered as
    /// `UnknownSchema`, to be redriven once the schema is registered.
    #[error("the schema registry has no schema with id {0}")]
    NoSuchId(u32),
    /// A look-up-only writer's schema is not under its subject: register it first.
    #[error(
        "schema {record} is not registered under subject {subject:?}: register it (the registry checks its compatibility), or set SCHEMA_REGISTRY_AUTO_REGISTER=true"
    )]
    NotRegistered {
        /// The subject looked in.
        subject: String,
        /// The record's full name.
        record: String,
    },
    /// The registry refused to register the schema (most often: incompatible with the
    /// subject's versions under its compatibility level).
    #[error("the schema registry refused {record} under subject {subject:?}: {reason}")]
    Refused {
        /// The subject.
        subject: String,
        /// The record's full name.
        record: String,
        /// The registry's own words.
        reason: String,
    },
    /// A schema the registry gave is not an Avro schema this crate can read.
    #[error("schema {id} from the registry cannot be used: {reason}")]
    Unusable {
        /// Its id.
        id: u32,
        /// Why.
        reason: String,
    },
    /// The settings cannot work (a CA file that cannot be read, a bad URL).
    #[error("invalid schema registry settings: {0}")]
    Config(String),
}

impl RegistryError {
    /// Whether the same call may succeed later without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Writer schemas by id, at most `max` of them, the oldest dropped first. Ids never change
/// their schema, so nothing is ever stale; only memory bounds it.
#[derive(Debug, Default)]
struct Kept {
    by_id: HashMap<u32, Arc<WriterSchema>>,
    order: VecDeque<u32>,
}

/// A schema registry client: the writer schemas it fetched, by id, and whether it is failing.
/// Make one per process and share it (`&'static`, as the codecs' schemas are kept).
pub struct Registry {
    settings: SrSettings,
    url: String,
    max_schemas: usize,
    registration: Registration,
    strategy: SubjectStrategy,
    kept: RwLock<Kept>,
    /// Since when calls fail, and why: what `/health` says while records wait.
    failing: Mutex<Option<(Instant, String)>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("url", &self.url)
            .field("registration", &self.registration)
            .field("strategy", &self.strategy)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// A client for the registry `config` names; nothing is asked of it yet. Kept for the
    /// life of the process.
    pub fn new(config: &RegistryConfig) -> Result<&'static Registry, RegistryError> {
        let mut builder = SrSettings::new_builder(config.url.trim_end_matches('/').to_owned());
        builder.set_timeout(config.timeout);
        if let Some(auth) = &config.basic_auth {
            builder.set_basic_authorization(&auth.user, Some(auth.password.expose_secret()));
        }
        let mut client = reqwest::Client::builder().connect_timeout(config.timeout);
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                RegistryError::Config(format!("cannot read the CA file {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                RegistryError::Config(format!("{} is not a PEM bundle: {e}", path.display()))
            })?;
            client = client.tls_certs_only(certs);
        }
        let settings = builder
            .build_with(client)
            .map_err(|e| RegistryError::Config(e.error))?;
        Ok(Box::leak(Box::new(Registry {
            settings,
            url: config.url.clone(),
            max_schemas: config.max_schemas.max(1),
            registration: config.registration,
            strategy: config.strategy,
            kept: RwLock::default(),
            failing: Mutex::default(),
        })))
    }

    /// How this registry's subjects are named.
    pub fn strategy(&self) -> SubjectStrategy {
        self.strategy
    }

    /// The registry's URL as configured, for messages (credentials belong in
    /// [`RegistryConfig::basic_auth`], never in the URL).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `Ok` unless the last call failed for the registry's sake; then since when and why.
    pub fn health(&self) -> Result<(), (Duration, String)> {
        match &*self.failing.lock().unwrap_or_else(PoisonError::into_inner) {
            None => Ok(()),
            Some((since, why)) => Err((since.elapsed(), why.clone())),
        }
    }

    /// Fetches the writer schema of `id` and keeps it.
    pub async fn fetch_schema(&self, id: u32) -> Result<Arc<WriterSchema>, RegistryError> {
        if let Some(writer) = self.writer(id) {
            return Ok(writer);
        }
        let registered =
            get_schema_by_id(id, &self.settings)
                .await
                .map_err(|e| match raw_code(&e) {
                    Some(40403) => RegistryError::NoSuchId(id),
                    _ => failure(&e),
                });
        let registered = self.noted(registered)?;
        let writer =
            WriterSchema::parse(&registered.schema).map_err(|e| RegistryError::Unusable {
                id,
                reason: e.to_string(),
            })?;
        let writer = Arc::new(writer);
        let mut kept = self.kept.write().unwrap_or_else(PoisonError::into_inner);
        if kept.by_id.insert(id, writer.clone()).is_none() {
            kept.order.push_back(id);
        }
        while kept.order.len() > self.max_schemas {
            if let Some(oldest) = kept.order.pop_front() {
                kept.by_id.remove(&oldest);
            }
        }
        Ok(writer)
    }

    /// The id of `schema` (the text of record `record`'s schema) under `subject`: looked up, or registered when
    /// the registry's settings say so. A writer asks once, at start-up.
    pub async fn id_of(
        &self,
        subject: &str,
        record: &str,
        schema: &str,
    ) -> Result<u32, RegistryError> {
        let body = serde_json::json!({ "schema": schema }).to_string();
        let call = match self.registration {
            Registration::LookUpOnly => SrCall::PostForVersion(subject, &body),
            Registration::AutoRegister => SrCall::PostNew(subject, &body),
        };
        let answer = perform_sr_call(&self.settings, call).await.map_err(|e| {
            let code = raw_code(&e);
            match (self.registration, code) {
                (Registration::LookUpOnly, Some(40401 | 40403)) => RegistryError::NotRegistered {
                    subject: subject.into(),
                    record: record.into(),
                },
                (Registration::AutoRegister, Some(409 | 42201 | 422)) => RegistryError::Refused {
                    subject: subject.into(),
                    record: record.into(),
                    reason: describe(&e),
                },
                _ => failure(&e),
            }
        });
        let answer = self.noted(answer)?;
        answer.id.ok_or_else(|| {
            RegistryError::Unavailable(format!("the registry named no id for subject {subject:?}"))
        })
    }

    /// Notes whether the registry answered, for [`health`](Self::health).
    fn noted<T>(&self, result: Result<T, RegistryError>) -> Result<T, RegistryError> {
        let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        match &result {
            Err(RegistryError::Unavailable(why) | RegistryError::Unauthorized(why)) => {
                let since = failing
                    .as_ref()
                    .map_or_else(Instant::now, |(since, _)| *since);
                *failing = Some((since, why.clone()));
            }
            _ => *failing = None,
        }
        result
    }
}

/// The registry's own error code, when it answered with one.
fn raw_code(error: &SRCError) -> Option<u32> {
    let source = std::error::Error::source(error)?;
    source.downcast_ref::<RawError>().map(|raw| raw.error_code)
}

/// A failure that is no answer about the schema asked for: refused credentials, or an
/// outage (a bare `404` included: a path the registry does not serve, a wrong URL). Only
/// `40403` says a schema id does not exist.
fn failure(error: &SRCError) -> RegistryError {
    match raw_code(error) {
        Some(401 | 403 | 40101 | 40301) => RegistryError::Unauthorized(describe(error)),
        _ => RegistryError::Unavailable(describe(error)),
    }
}

/// An error in one line, the registry's own words first.
fn describe(error: &SRCError) -> String {
    match std::error::Error::source(error) {
        Some(source) => format!("{}: {source}", error.error),
        None => error.error.clone(),
    }
}

impl SchemaSource for Registry {
    fn writer(&self, id: u32) -> Option<Arc<WriterSchema>> {
        let kept = self.kept.read().unwrap_or_else(PoisonError::into_inner);
        kept.by_id.get(&id).cloned()
    }

    fn fetch(&'static self, id: u32) -> Fetch {
        Box::pin(async move {
            match self.fetch_schema(id).await {
                Ok(_) => Ok(()),
                // Answered: the record's own fault, its decode says so (`UnknownSchema`).
                Err(RegistryError::NoSuchId(_) | RegistryError::Unusable { .. }) => Ok(()),
                Err(error) => Err(FetchError(error.to_string())),
            }
        })
    }
}
