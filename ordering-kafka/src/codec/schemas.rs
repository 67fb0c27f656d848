//! The schemas a codec knows: every published version of each (embedded from
//! `schemas/history/`), plus any a deployment adds at run time (`AvroCodec::with_schema_dir`).
//! Each is known by its fingerprint. The current version reads and writes straight from and
//! to the Rust types; an older (or newer, added) one is read through Avro schema resolution
//! into the current version, and a writer can be pinned to an older one for a rollout.

use std::path::{Path, PathBuf};
#[cfg(feature = "order")]
use std::sync::LazyLock;

use apache_avro::Schema;
use apache_avro::rabin::Rabin;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use std::sync::Arc;

use ordering_core::DecodeError;

use super::framed::{Frame, SchemaSource, WriterSchema, framed_header, split_framed};
use crate::error::KafkaError;

/// The two bytes that open a single-object encoded value.
pub const MAGIC: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;

/// The largest block a decoder may allocate for one field. Kafka records are small (1 MiB by
/// default); without a bound, a garbage length prefix could make the decoder allocate
/// hundreds of megabytes before failing.
const MAX_ALLOCATION: usize = 16 * 1024 * 1024;

/// One message type's schema: every published version, oldest first; the last is the current
/// one. This is all a serde type needs to be read and written by [`Avro`](super::Avro), older
/// and newer versions included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaVersions {
    /// A short name, for messages and errors (`status_update`).
    pub name: &'static str,
    /// The full name of the record the current version defines
    /// (`com.ecommerce.order.OrderStatusUpdate`): how a schema file found at run time is
    /// matched to its type. Older versions may bear a name the current one lists among its
    /// `aliases` (a record renamed).
    pub record: &'static str,
    /// The versions' schema texts (`.avsc`), oldest first. A published version is never edited;
    /// a change is a new version.
    pub published: &'static [&'static str],
}

impl SchemaVersions {
    /// Versions known only at run time (read from files, a registry): owned texts, kept for
    /// the life of the process, as every codec keeps the schemas it parsed. Make it once, at
    /// start-up.
    pub fn from_owned(name: String, record: String, published: Vec<String>) -> Self {
        let published: Vec<&'static str> = published
            .into_iter()
            .map(|text| &*Box::leak(text.into_boxed_str()))
            .collect();
        Self {
            name: Box::leak(name.into_boxed_str()),
            record: Box::leak(record.into_boxed_str()),
            published: Box::leak(published.into_boxed_slice()),
        }
    }
}

/// The dead letters' schema: every published version, oldest first, as embedded
/// (`schemas/history/dlq.vN.avsc`). Versions 1 to 3 named the record
/// `com.ecommerce.dlq.DeadLetter`, the order flow's namespace; version 4 is the library's own,
/// with the old name as an alias, so letters of every version stay readable.
pub(super) const DEAD_LETTER_VERSIONS: SchemaVersions = SchemaVersions {
    name: "dlq",
    record: "ordering.dlq.DeadLetter",
    published: &[
        include_str!("../../schemas/history/dlq.v1.avsc"),
        include_str!("../../schemas/history/dlq.v2.avsc"),
        include_str!("../../schemas/history/dlq.v3.avsc"),
        include_str!("../../schemas/history/dlq.v4.avsc"),
    ],
};

/// The newest version of the letters still named `com.ecommerce.dlq.DeadLetter`: what the
/// order flow's contract pins, so the shells write it unless told otherwise.
#[cfg(feature = "order")]
pub const ORDER_FLOW_DLQ_VERSION: u32 = 3;

/// The order flow's three message types, registered with their schema versions.
#[cfg(feature = "order")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaFamily {
    /// `order.avsc`, record `com.ecommerce.order.Order`.
    Order,
    /// `status_update.avsc`, record `com.ecommerce.order.OrderStatusUpdate`.
    StatusUpdate,
    /// `dlq.avsc`, the dead letters: record `ordering.dlq.DeadLetter` (version 4 on),
    /// `com.ecommerce.dlq.DeadLetter` before.
    DeadLetter,
}

#[cfg(feature = "order")]
impl SchemaFamily {
    /// The three, in the order [`AvroCodec::fingerprints`](super::AvroCodec::fingerprints)
    /// gives theirs.
    pub const ALL: [SchemaFamily; 3] = [Self::Order, Self::StatusUpdate, Self::DeadLetter];

    /// The file name stem in `schemas/`.
    pub fn file_stem(self) -> &'static str {
        match self {
            Self::Order => "order",
            Self::StatusUpdate => "status_update",
            Self::DeadLetter => "dlq",
        }
    }

    fn record_name(self) -> &'static str {
        match self {
            Self::Order => "com.ecommerce.order.Order",
            Self::StatusUpdate => "com.ecommerce.order.OrderStatusUpdate",
            Self::DeadLetter => DEAD_LETTER_VERSIONS.record,
        }
    }

    /// Its registration: name, record and versions.
    pub fn versions(self) -> SchemaVersions {
        SchemaVersions {
            name: self.file_stem(),
            record: self.record_name(),
            published: self.published(),
        }
    }

    /// Every published version, oldest first, as embedded: `schemas/history/<stem>.vN.avsc`.
    /// Published versions are never edited; a change is a new version (README, "Changing a
    /// schema").
    pub fn published(self) -> &'static [&'static str] {
        match self {
            Self::Order => &[include_str!("../../schemas/history/order.v1.avsc")],
            Self::StatusUpdate => &[
                include_str!("../../schemas/history/status_update.v1.avsc"),
                include_str!("../../schemas/history/status_update.v2.avsc"),
            ],
            Self::DeadLetter => DEAD_LETTER_VERSIONS.published,
        }
    }

    pub(super) fn index(self) -> usize {
        match self {
            Self::Order => 0,
            Self::StatusUpdate => 1,
            Self::DeadLetter => 2,
        }
    }
}

#[cfg(feature = "order")]
impl std::fmt::Display for SchemaFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.file_stem())
    }
}

/// A schema that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// A registered version (embedded, or given to [`SchemaVersions::from_owned`]) cannot be
    /// used: not valid Avro, not readable into the newest version, or no version at all. The
    /// build or the registration is at fault; retrying does not help.
    #[error("embedded schema {name} is invalid: {reason}")]
    Embedded {
        /// The schema's short name, with the version at fault when there is one
        /// (`dlq version 2`).
        name: String,
        /// What is wrong, in the Avro library's words.
        reason: String,
    },
    /// A schema directory, or a file in it, cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The directory, or the file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A `.avsc` file of a schema directory is not a valid Avro schema.
    #[error("{} is not a valid Avro schema: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// A `.avsc` file of a schema directory defines a record that no registered type answers
    /// to: keep only versions of the codec's types in that directory.
    #[error("{} is record {name:?}, none of {known}", path.display())]
    UnknownRecord {
        /// The file.
        path: PathBuf,
        /// The full name of the record it defines (empty when the schema is not a record).
        name: String,
        /// The registered types' record names, comma-separated.
        known: String,
    },
    /// A `.avsc` file of a schema directory cannot be read into the current version of its
    /// type (a field added without a default, a type changed, say).
    #[error("{} cannot be read into the current {schema} schema: {reason}", path.display())]
    Incompatible {
        /// The file.
        path: PathBuf,
        /// The type's short name ([`SchemaVersions::name`]).
        schema: &'static str,
        /// Why, in the words of Avro schema resolution.
        reason: String,
    },
    /// A published version defines another record than the one registered
    /// ([`SchemaVersions::record`], or an alias of the newest version): a registration
    /// mistake.
    #[error(
        "{name} version {version} defines record {found:?}, but its SchemaVersions say {record:?}: make `record` the schema's namespace and name (or an alias of its newest version)"
    )]
    RecordMismatch {
        /// The type's short name ([`SchemaVersions::name`]).
        name: String,
        /// The version at fault, counted from 1.
        version: usize,
        /// The record name registered.
        record: String,
        /// The record name the version defines (empty when it is not a record).
        found: String,
    },
    /// The Rust type deserializes as a struct whose serde name is not the schema record's
    /// short name, so every decode would fail; the message says which `#[serde(rename)]`
    /// fixes it.
    #[error(
        "the Rust type {rust_type} reads as serde struct {serde_name:?}, but the schema's record is {record:?}: every decode would fail; add #[serde(rename = \"{short}\")] to the type"
    )]
    TypeName {
        /// The Rust type's name (`std::any::type_name`).
        rust_type: &'static str,
        /// The struct name serde gives it.
        serde_name: &'static str,
        /// The schema's full record name.
        record: String,
        /// The record's name without its namespace: what the type must be renamed to.
        short: String,
    },
    /// A codec was pinned to a version the schema has not published.
    #[error("{schema} has no version {version} (published: 1 to {latest})")]
    NoSuchVersion {
        /// The schema's short name ([`SchemaVersions::name`]).
        schema: &'static str,
        /// The version asked for.
        version: u32,
        /// The newest published version: versions run from 1 to it.
        latest: u32,
    },
}

/// The current version of a family: writes and reads straight from and to the Rust types.
pub(super) struct Current {
    pub(super) fingerprint: [u8; 8],
    writer: GenericDatumWriter<'static>,
    reader: GenericDatumReader<'static>,
    name: String,
}

/// A version other than the current one, read through resolution into the current one.
struct Resolving {
    fingerprint: [u8; 8],
    reader: GenericDatumReader<'static>,
}

/// A published version a writer can be pinned to.
struct Pinnable {
    schema: &'static Schema,
    /// The version's text as published: what a registry is given, so that its look-up,
    /// which compares texts as the registry renders them, finds what other writers of the
    /// same file registered. (Only a registry reads it: feature `registry`.)
    #[cfg_attr(not(feature = "registry"), allow(dead_code))]
    text: &'static str,
    fingerprint: [u8; 8],
    writer: GenericDatumWriter<'static>,
}

/// One message type's schemas.
pub(super) struct Family {
    pub(super) name: &'static str,
    /// The record names its versions may bear: the current one's and its aliases.
    names: Vec<String>,
    pub(super) current: Current,
    current_schema: &'static Schema,
    others: Vec<Resolving>,
    /// Published versions by number (index 0 is version 1).
    published: Vec<Pinnable>,
}

/// Everything a codec knows, for its lifetime: parsed once per process (and once more per
/// schema directory), so codecs can be `Copy`. One family per registered type, in the order
/// registered.
pub(super) struct Schemas {
    families: Vec<Family>,
}

pub(super) fn fingerprint(schema: &Schema) -> [u8; 8] {
    let bytes = schema.fingerprint::<Rabin>().bytes;
    let mut out = [0; 8];
    // Rabin fingerprints are 8 bytes; a shorter one would stay zero-padded.
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = b;
    }
    out
}

fn leak(schema: Schema) -> &'static Schema {
    Box::leak(Box::new(schema))
}

fn full_name(schema: &Schema) -> Option<String> {
    match schema {
        Schema::Record(record) => Some(record.name.fullname(None)),
        _ => None,
    }
}

/// The record names a type answers to: its own and the aliases its newest version declares
/// (the names of its older versions, after a rename). Any of them may name a version.
fn answers_to(versions: &SchemaVersions) -> Vec<String> {
    let mut names = vec![versions.record.to_owned()];
    let newest = versions
        .published
        .last()
        .map(|text| Schema::parse_str(text));
    if let Some(Ok(Schema::Record(record))) = newest {
        let namespace = record.name.namespace();
        names.extend(
            record
                .aliases
                .iter()
                .flatten()
                .map(|alias| alias.fullname(namespace)),
        );
    }
    names
}

/// The order flow's types, in [`SchemaFamily::ALL`] order.
#[cfg(feature = "order")]
fn order_flow() -> Vec<SchemaVersions> {
    SchemaFamily::ALL.map(SchemaFamily::versions).to_vec()
}

#[cfg(feature = "order")]
static EMBEDDED: LazyLock<Result<&'static Schemas, String>> = LazyLock::new(|| {
    Schemas::build(&order_flow(), Vec::new())
        .map(|schemas| &*Box::leak(Box::new(schemas)))
        .map_err(|e| e.to_string())
});

impl Schemas {
    /// The embedded versions, parsed once per process.
    #[cfg(feature = "order")]
    pub(super) fn embedded() -> Result<&'static Schemas, KafkaError> {
        EMBEDDED.clone().map_err(KafkaError::Config)
    }

    /// The order flow's embedded versions plus the `.avsc` files of `dir`.
    #[cfg(feature = "order")]
    pub(super) fn with_dir(dir: &Path) -> Result<&'static Schemas, SchemaError> {
        Self::registered(&order_flow(), Some(dir))
    }

    /// The versions of `types`, plus the `.avsc` files of `dir` if given (each a version of
    /// one type, told by its record name, that resolves into the current version). Parsed
    /// once and kept for the process: make a codec once and copy it.
    pub(super) fn registered(
        types: &[SchemaVersions],
        dir: Option<&Path>,
    ) -> Result<&'static Schemas, SchemaError> {
        let extra = match dir {
            Some(dir) => read_dir(types, dir)?,
            None => Vec::new(),
        };
        Schemas::build(types, extra).map(|schemas| &*Box::leak(Box::new(schemas)))
    }

    fn build(
        types: &[SchemaVersions],
        extra: Vec<(usize, PathBuf, &'static Schema)>,
    ) -> Result<Self, SchemaError> {
        apache_avro::util::max_allocation_bytes(MAX_ALLOCATION);
        let families = types
            .iter()
            .enumerate()
            .map(|(i, versions)| {
                let extra = extra
                    .iter()
                    .filter(|(of, _, _)| *of == i)
                    .map(|(_, path, schema)| (path.clone(), *schema));
                Family::build(versions, extra.collect())
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { families })
    }

    #[cfg(feature = "order")]
    pub(super) fn family(&self, family: SchemaFamily) -> &Family {
        &self.families[family.index()]
    }

    /// The family of one type, `versions` (plus the `.avsc` files of `dir`): what a codec of
    /// one type reads and writes.
    pub(super) fn one(
        versions: SchemaVersions,
        dir: Option<&Path>,
    ) -> Result<&'static Family, SchemaError> {
        Self::registered(&[versions], dir)?
            .families
            .first()
            .ok_or(SchemaError::Embedded {
                name: versions.name.into(),
                reason: "not registered".into(),
            })
    }
}

/// The `.avsc` files of `dir`, each matched to one of `types` by its record name.
fn read_dir(
    types: &[SchemaVersions],
    dir: &Path,
) -> Result<Vec<(usize, PathBuf, &'static Schema)>, SchemaError> {
    let io = |source| SchemaError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "avsc"))
        .collect();
    paths.sort();
    let names: Vec<Vec<String>> = types.iter().map(answers_to).collect();
    let mut extra = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|source| SchemaError::Io {
            path: path.clone(),
            source,
        })?;
        let schema = Schema::parse_str(&text).map_err(|e| SchemaError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let name = full_name(&schema).unwrap_or_default();
        let of = names
            .iter()
            .position(|n| n.contains(&name))
            .ok_or_else(|| SchemaError::UnknownRecord {
                path: path.clone(),
                name: name.clone(),
                known: types
                    .iter()
                    .map(|t| t.record)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        extra.push((of, path, leak(schema)));
    }
    Ok(extra)
}

impl Family {
    fn build(
        versions: &SchemaVersions,
        extra: Vec<(PathBuf, &'static Schema)>,
    ) -> Result<Self, SchemaError> {
        let embedded = |reason: String, n: usize| SchemaError::Embedded {
            name: format!("{} version {}", versions.name, n + 1),
            reason,
        };
        let names = answers_to(versions);
        let mut published = Vec::new();
        for (n, text) in versions.published.iter().enumerate() {
            let schema = leak(Schema::parse_str(text).map_err(|e| embedded(e.to_string(), n))?);
            let found = full_name(schema).unwrap_or_default();
            if !names.contains(&found) {
                return Err(SchemaError::RecordMismatch {
                    name: versions.name.into(),
                    version: n + 1,
                    record: versions.record.into(),
                    found,
                });
            }
            let writer = GenericDatumWriter::builder(schema)
                .build()
                .map_err(|e| embedded(e.to_string(), n))?;
            published.push(Pinnable {
                schema,
                text,
                fingerprint: fingerprint(schema),
                writer,
            });
        }
        let Some(latest) = published.last() else {
            return Err(embedded("no published version".into(), 0));
        };
        let current_schema = latest.schema;
        let current = Current {
            fingerprint: latest.fingerprint,
            writer: GenericDatumWriter::builder(current_schema)
                .build()
                .map_err(|e| embedded(e.to_string(), published.len() - 1))?,
            reader: GenericDatumReader::builder(current_schema)
                .build()
                .map_err(|e| embedded(e.to_string(), published.len() - 1))?,
            name: full_name(current_schema).unwrap_or_else(|| "value".into()),
        };
        let resolving = |writer: &'static Schema| {
            SchemaCompatibility::can_read(writer, current_schema).map_err(|e| e.to_string())?;
            GenericDatumReader::builder(writer)
                .reader_schema(current_schema)
                .build()
                .map(|reader| Resolving {
                    fingerprint: fingerprint(writer),
                    reader,
                })
                .map_err(|e| e.to_string())
        };
        let mut others = Vec::new();
        for (n, version) in published.iter().enumerate().rev().skip(1) {
            others.push(resolving(version.schema).map_err(|e| embedded(e, n))?);
        }
        for (path, schema) in extra {
            let fp = fingerprint(schema);
            if fp == current.fingerprint || others.iter().any(|o| o.fingerprint == fp) {
                continue; // already known
            }
            others.push(
                resolving(schema).map_err(|reason| SchemaError::Incompatible {
                    path,
                    schema: versions.name,
                    reason,
                })?,
            );
        }
        Ok(Self {
            name: versions.name,
            names,
            current,
            current_schema,
            others,
            published,
        })
    }

    /// The number of the newest published version.
    pub(super) fn latest(&self) -> u32 {
        u32::try_from(self.published.len()).unwrap_or(u32::MAX)
    }

    /// What a codec keeps to write published version `version`: `None` for the newest
    /// (written straight from the type), refused for a version this family does not have.
    pub(super) fn pin(&self, version: u32) -> Result<Option<u32>, SchemaError> {
        if !self.has_version(version) {
            return Err(SchemaError::NoSuchVersion {
                schema: self.name,
                version,
                latest: self.latest(),
            });
        }
        Ok((version != self.latest()).then_some(version))
    }

    /// The version a codec with `pin` writes.
    pub(super) fn writes(&self, pin: Option<u32>) -> u32 {
        pin.unwrap_or_else(|| self.latest())
    }

    /// The version a codec with `pin` writes in `frame`: a registered frame's own.
    pub(super) fn writes_framed(&self, pin: Option<u32>, frame: Frame) -> u32 {
        match frame {
            Frame::SingleObject => self.writes(pin),
            Frame::Registered { version, .. } => version,
        }
    }

    pub(super) fn has_version(&self, version: u32) -> bool {
        (1..=self.latest()).contains(&version)
    }

    /// Encodes `value` (a value of the current version) with published version `version`:
    /// fields it does not have are dropped, fields it has and the value lacks take its
    /// defaults.
    pub(super) fn encode_as(&self, version: u32, value: Value) -> Result<Vec<u8>, KafkaError> {
        let pinned = self.version(version)?;
        self.encode_value(pinned, header(pinned.fingerprint), value)
    }

    /// Published version `version`.
    fn version(&self, version: u32) -> Result<&Pinnable, KafkaError> {
        usize::try_from(version.saturating_sub(1))
            .ok()
            .and_then(|i| self.published.get(i))
            .ok_or_else(|| KafkaError::Encode(format!("no published version {version}")))
    }

    /// The text of published version `version`, as a registry is given it.
    #[cfg_attr(not(feature = "registry"), allow(dead_code))]
    pub(super) fn text_of(&self, version: u32) -> Result<&'static str, KafkaError> {
        self.version(version).map(|v| v.text)
    }

    /// The record name the current version defines.
    pub(super) fn record(&self) -> &str {
        &self.names[0]
    }

    fn encode_value(
        &self,
        pinned: &Pinnable,
        mut out: Vec<u8>,
        value: Value,
    ) -> Result<Vec<u8>, KafkaError> {
        let encode = |e: apache_avro::Error| KafkaError::Encode(e.to_string());
        let value = if std::ptr::eq(pinned.schema, self.current_schema) {
            value
        } else {
            value.resolve(pinned.schema).map_err(encode)?
        };
        pinned.writer.write_value(&mut out, value).map_err(encode)?;
        Ok(out)
    }

    /// The value of a payload this family knows the fingerprint of, as the current version;
    /// `None` if it knows none.
    pub(super) fn read(&self, payload: &[u8]) -> Result<Option<Value>, DecodeError> {
        let (fp, datum) = split(payload)?;
        if fp == self.current.fingerprint {
            return self
                .current
                .whole(&self.current.reader, datum, |r, b| r.read_value(b))
                .map(Some);
        }
        match self.others.iter().find(|o| o.fingerprint == fp) {
            Some(other) => self
                .current
                .whole(&other.reader, datum, |r, b| r.read_value(b))
                .map(Some),
            None => Ok(None),
        }
    }

    /// Encodes `message` with the current version straight from the type, or with the pinned
    /// published version through a `Value`.
    pub(super) fn encode_serde(
        &self,
        pin: Option<u32>,
        frame: Frame,
        message: &impl serde::Serialize,
    ) -> Result<Vec<u8>, KafkaError> {
        let (version, header) = match frame {
            Frame::SingleObject => {
                let version = self.writes(pin);
                (version, header(self.version(version)?.fingerprint))
            }
            Frame::Registered { id, version } => (version, framed_header(id)),
        };
        if version == self.latest() {
            return self.current.encode_serde(header, message);
        }
        let value =
            apache_avro::to_value(message).map_err(|e| KafkaError::Encode(e.to_string()))?;
        self.encode_value(self.version(version)?, header, value)
    }

    /// Decodes the current version straight into the type (the fast path), any other known
    /// version through a resolved `Value`.
    pub(super) fn decode_serde<M: serde::de::DeserializeOwned>(
        &self,
        payload: &[u8],
        source: Option<&dyn SchemaSource>,
    ) -> Result<M, DecodeError> {
        if let Some((id, datum)) = split_framed(payload) {
            let writer = framed_writer(id, source)?;
            return self.decode_written_by(&writer, datum);
        }
        let (fingerprint, datum) = split(payload)?;
        if fingerprint == self.current.fingerprint {
            return self.current.decode_serde(datum);
        }
        let value = self.read(payload)?.ok_or_else(|| unknown(fingerprint))?;
        self.deserialize(&value)
    }

    fn deserialize<M: serde::de::DeserializeOwned>(&self, value: &Value) -> Result<M, DecodeError> {
        apache_avro::from_value(value).map_err(|e| {
            DecodeError::new(format!("not a valid {} after resolution: {e}", self.name))
        })
    }

    /// Decodes `datum`, written with `writer` (a registry's schema): the fast path of the
    /// version it is, if this family embeds it, else resolved into the current version as
    /// any other version would be.
    pub(super) fn decode_written_by<M: serde::de::DeserializeOwned>(
        &self,
        writer: &WriterSchema,
        datum: &[u8],
    ) -> Result<M, DecodeError> {
        if writer.fingerprint == self.current.fingerprint {
            return self.current.decode_serde(datum);
        }
        if let Some(other) = self
            .others
            .iter()
            .find(|o| o.fingerprint == writer.fingerprint)
        {
            let value = self
                .current
                .whole(&other.reader, datum, |r, b| r.read_value(b))?;
            return self.deserialize(&value);
        }
        if !self.answers_to(&writer.record) {
            return Err(DecodeError::unknown_schema(format!(
                "the registry's schema is record {:?}, not a version of {}",
                writer.record,
                self.record()
            )));
        }
        // Checked first: a schema that cannot be read as the current version is unknown to
        // this reader (redrivable once it is), not a malformed record.
        SchemaCompatibility::can_read(&writer.schema, self.current_schema).map_err(|e| {
            DecodeError::unknown_schema(format!(
                "the registry's schema cannot be read as the current {}: {e}",
                self.name
            ))
        })?;
        let reader = GenericDatumReader::builder(&writer.schema)
            .reader_schema(self.current_schema)
            .build()
            .map_err(|e| {
                DecodeError::unknown_schema(format!(
                    "the registry's schema cannot be read as the current {}: {e}",
                    self.name
                ))
            })?;
        let value = self.current.whole(&reader, datum, |r, b| r.read_value(b))?;
        self.deserialize(&value)
    }

    /// Whether a record named `record` is a version of this family.
    pub(super) fn answers_to(&self, record: &str) -> bool {
        self.names.iter().any(|n| n == record)
    }

    /// Whether this family knows the fingerprint of `payload`'s writer.
    #[cfg(feature = "order")]
    pub(super) fn knows(&self, fp: [u8; 8]) -> bool {
        fp == self.current.fingerprint || self.others.iter().any(|o| o.fingerprint == fp)
    }
}

impl Current {
    pub(super) fn encode_serde(
        &self,
        mut out: Vec<u8>,
        message: &impl serde::Serialize,
    ) -> Result<Vec<u8>, KafkaError> {
        self.writer
            .write_ser(&mut out, message)
            .map_err(|e| KafkaError::Encode(e.to_string()))?;
        Ok(out)
    }

    /// Deserializes straight from the bytes (no intermediate `Value`: half the cost).
    pub(super) fn decode_serde<M: serde::de::DeserializeOwned>(
        &self,
        datum: &[u8],
    ) -> Result<M, DecodeError> {
        self.whole(&self.reader, datum, |reader, bytes| {
            reader.read_deser(bytes)
        })
        .map_err(|e| {
            // Both sides in one line: which schema the bytes were written with, and which
            // Rust type they were read into.
            DecodeError::new(format!(
                "{e} (writer: the current {} schema; reader: the Rust type {})",
                self.name,
                std::any::type_name::<M>()
            ))
        })
    }

    /// Runs `read` over `datum`, which must be exactly one datum: trailing bytes mean the
    /// payload is not what its header says.
    fn whole<'s, T>(
        &self,
        reader: &GenericDatumReader<'s>,
        mut datum: &[u8],
        read: impl FnOnce(&GenericDatumReader<'s>, &mut &[u8]) -> apache_avro::AvroResult<T>,
    ) -> Result<T, DecodeError> {
        let value = read(reader, &mut datum)
            .map_err(|e| DecodeError::new(format!("not a valid {}: {e}", self.name)))?;
        if !datum.is_empty() {
            return Err(DecodeError::new(format!(
                "{} trailing bytes after a {}",
                datum.len(),
                self.name
            )));
        }
        Ok(value)
    }
}

fn header(fingerprint: [u8; 8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&fingerprint);
    out
}

/// Splits a payload into its fingerprint and datum.
pub(super) fn split(payload: &[u8]) -> Result<([u8; 8], &[u8]), DecodeError> {
    if payload.len() < HEADER_LEN {
        return Err(DecodeError::new(format!(
            "{} bytes is too short for Avro single-object encoding",
            payload.len()
        )));
    }
    let (header, datum) = payload.split_at(HEADER_LEN);
    if header[..2] != MAGIC {
        return Err(DecodeError::new(format!(
            "not Avro single-object encoding (starts {:02X} {:02X}, expected C3 01)",
            header[0], header[1]
        )));
    }
    let mut fingerprint = [0; 8];
    fingerprint.copy_from_slice(&header[2..]);
    Ok((fingerprint, datum))
}

/// The writer schema of a Confluent-framed record, or why there is none: the record's fault
/// (an id no registry knows, or no registry to ask), redrivable once that is fixed.
pub(super) fn framed_writer(
    id: u32,
    source: Option<&dyn SchemaSource>,
) -> Result<Arc<WriterSchema>, DecodeError> {
    let Some(source) = source else {
        return Err(DecodeError::unknown_schema(format!(
            "a Confluent Schema Registry record (schema id {id}), and no registry is configured (SCHEMA_REGISTRY_URL)"
        )));
    };
    source.writer(id).ok_or_else(|| {
        DecodeError::unknown_schema(format!("schema id {id} is not in the schema registry"))
    })
}

/// A payload whose writer schema this codec does not know: a newer writer, most likely.
pub(super) fn unknown(fingerprint: [u8; 8]) -> DecodeError {
    DecodeError::unknown_schema(format!(
        "unknown schema fingerprint {:016X}",
        u64::from_le_bytes(fingerprint)
    ))
}
