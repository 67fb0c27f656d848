//! Schema evolution: every published version stays as published, each new one is compatible
//! both ways with the one before, and records of any known version decode into the current
//! types, while an unknown one is told apart as `UnknownSchema`.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use common::crc64_avro;
use ordering_core::order::{OrderEvent, OrderId, Status, StatusUpdate};
use ordering_core::{DeadLetter, DecodeErrorKind, FailureClass};
use ordering_kafka::order::{AvroCodec, ORDER_FLOW_DLQ_VERSION, SchemaFamily};
use ordering_kafka::testing::{STATUS_UPDATE_V3, status_update_v3};
use ordering_kafka::{Codec, DEAD_LETTER_SCHEMA, DeadLetterCodec, SchemaError};

fn history() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/history")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `(file, crc)` per line of `schemas/history/PUBLISHED`.
fn published() -> Vec<(String, String)> {
    read(&history().join("PUBLISHED"))
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (file, crc) = l.split_once(' ').expect("FILE CRC");
            (file.to_owned(), crc.trim().to_owned())
        })
        .collect()
}

#[test]
fn published_versions_are_never_edited_and_all_listed() {
    let listed = published();
    for (file, crc) in &listed {
        let bytes = std::fs::read(history().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            format!("{:016X}", crc64_avro(&bytes)),
            *crc,
            "{file} was edited after it was published: add a new version instead"
        );
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(history())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".avsc"))
        .collect();
    on_disk.sort();
    let mut names: Vec<String> = listed.into_iter().map(|(f, _)| f).collect();
    names.sort();
    assert_eq!(
        on_disk, names,
        "every version file is listed in PUBLISHED, and only those"
    );
}

/// The versions of `family` in order, parsed, checked to be numbered 1, 2, … with no gap.
fn versions(family: SchemaFamily) -> Vec<(String, Schema)> {
    let mut numbered: Vec<(u32, String)> = published()
        .into_iter()
        .filter_map(|(file, _)| {
            let rest = file.strip_prefix(&format!("{}.v", family.file_stem()))?;
            Some((rest.strip_suffix(".avsc")?.parse().ok()?, file))
        })
        .collect();
    numbered.sort();
    let numbers: Vec<u32> = numbered.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        numbers,
        (1..=numbers.len() as u32).collect::<Vec<_>>(),
        "{family}"
    );
    numbered
        .into_iter()
        .map(|(_, file)| {
            let schema = Schema::parse_str(&read(&history().join(&file)))
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            (file, schema)
        })
        .collect()
}

#[test]
fn each_version_reads_and_is_read_by_the_one_before() {
    for family in SchemaFamily::ALL {
        let versions = versions(family);
        for pair in versions.windows(2) {
            let ((old_file, old), (new_file, new)) = (&pair[0], &pair[1]);
            SchemaCompatibility::can_read(old, new)
                .unwrap_or_else(|e| panic!("{new_file} cannot read what {old_file} wrote: {e}"));
            SchemaCompatibility::can_read(new, old)
                .unwrap_or_else(|e| panic!("{old_file} cannot read what {new_file} wrote: {e}"));
        }
    }
}

#[test]
fn the_current_schema_is_the_newest_published_version_and_the_one_embedded() {
    let codec = AvroCodec::new().unwrap();
    for family in SchemaFamily::ALL {
        let versions = versions(family);
        let (newest, _) = versions.last().unwrap();
        let current = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../schemas")
            .join(format!("{}.avsc", family.file_stem()));
        // `schemas/` holds the contract's files: for the letters, the newest version still
        // named `com.ecommerce.dlq.DeadLetter`, which the shells write by default.
        let contract = match family {
            SchemaFamily::DeadLetter => &versions[ORDER_FLOW_DLQ_VERSION as usize - 1].0,
            _ => newest,
        };
        assert_eq!(read(&current), read(&history().join(contract)), "{family}");
        if family == SchemaFamily::DeadLetter {
            assert_eq!(read(&history().join(newest)), DEAD_LETTER_SCHEMA);
        }
        assert_eq!(
            family.published().len(),
            versions.len(),
            "{family}: every published version is embedded in the codec"
        );
        assert_eq!(codec.writes(family) as usize, versions.len());
    }
}

fn update(reason: Option<&str>) -> StatusUpdate {
    StatusUpdate::new(
        &OrderId::parse("ORD-7").unwrap(),
        &Status::parse("shipped").unwrap(),
        "2026-11-25T10:00:00Z".into(),
    )
    .with_reason(reason.map(str::to_owned))
}

#[test]
fn a_writer_pinned_to_version_1_is_read_by_the_current_reader() {
    let current = AvroCodec::new().unwrap();
    let pinned = current.pin(SchemaFamily::StatusUpdate, 1).unwrap();
    assert_eq!(pinned.writes(SchemaFamily::StatusUpdate), 1);
    let with_reason = update(Some("customer asked"));

    let old = pinned.encode(&with_reason).unwrap();
    let new = current.encode(&with_reason).unwrap();
    assert_ne!(old[2..10], new[2..10], "another fingerprint");
    // Version 1 has no reason: it is dropped, and reads back as the default.
    let read: StatusUpdate = current.decode(&old).unwrap();
    assert_eq!(read, update(None));
    assert_eq!(
        Codec::<StatusUpdate>::decode(&current, &new).unwrap(),
        with_reason
    );
    assert!(matches!(
        Codec::<OrderEvent>::decode(&current, &old),
        Ok(OrderEvent::StatusUpdated(_))
    ));

    // A dead letter pinned to version 1 loses the fields added since, nothing else.
    let letter = DeadLetter {
        original_topic: "t".into(),
        original_partition: 1,
        original_offset: 2,
        original_incarnation: 1,
        original_key: Some(b"ORD-7".to_vec()),
        original_headers: vec![ordering_core::Header {
            name: "traceparent".into(),
            value: Some(vec![0, 0xff]),
        }],
        original_timestamp: None,
        original_value: vec![1, 2],
        original_message: None,
        error_type: "OrderNotFound".into(),
        error_class: FailureClass::Retryable,
        error_message: "no".into(),
        retry_count: 3,
        failed_attempts: 4,
        first_failure_timestamp: "a".into(),
        last_failure_timestamp: "b".into(),
        consumer_group: "g".into(),
        redrive_count: 2,
        reduced_from: None,
    };
    let v1 = current.pin(SchemaFamily::DeadLetter, 1).unwrap();
    let read: DeadLetter = current.decode(&v1.encode(&letter).unwrap()).unwrap();
    assert_eq!(read.redrive_count, 0);
    assert_eq!(read.original_headers, []);
    assert_eq!(
        DeadLetter {
            redrive_count: 2,
            original_headers: letter.original_headers.clone(),
            ..read
        },
        letter
    );
    // Version 3 keeps a key that is not text, byte for byte, and the headers.
    let binary = DeadLetter {
        original_key: Some(vec![0xff, 0xfe, 0]),
        ..letter.clone()
    };
    let read: DeadLetter = current.decode(&current.encode(&binary).unwrap()).unwrap();
    assert_eq!(read, binary);

    let error = current.pin(SchemaFamily::StatusUpdate, 3).unwrap_err();
    assert!(
        matches!(error, SchemaError::NoSuchVersion { latest: 2, .. }),
        "{error}"
    );
}

#[test]
fn a_newer_version_is_unknown_until_the_reader_is_given_it() {
    let payload = status_update_v3("ORD-7", "late");

    let error = Codec::<OrderEvent>::decode(&AvroCodec::new().unwrap(), &payload).unwrap_err();
    assert_eq!(error.kind(), DecodeErrorKind::UnknownSchema, "{error}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("status_update.v3.avsc"), STATUS_UPDATE_V3).unwrap();
    let codec = AvroCodec::with_schema_dir(dir.path()).unwrap();
    let read = Codec::<OrderEvent>::decode(&codec, &payload).unwrap();
    assert_eq!(
        read,
        OrderEvent::StatusUpdated(update(Some("late"))),
        "resolved into the current version: the field it does not know is ignored"
    );
    // It still writes the current version.
    assert_eq!(codec.writes(SchemaFamily::StatusUpdate), 2);
}

#[test]
fn a_schema_directory_with_a_bad_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let incompatible = STATUS_UPDATE_V3.replace(
        r#"{"name": "status", "type": "string"}"#,
        r#"{"name": "status", "type": "int"}"#,
    );
    std::fs::write(dir.path().join("bad.avsc"), incompatible).unwrap();
    let error = AvroCodec::with_schema_dir(dir.path()).unwrap_err();
    assert!(matches!(error, SchemaError::Incompatible { .. }), "{error}");
    assert!(error.to_string().contains("bad.avsc"), "{error}");

    std::fs::write(
        dir.path().join("bad.avsc"),
        r#"{"type": "record", "name": "Stranger", "fields": []}"#,
    )
    .unwrap();
    let error = AvroCodec::with_schema_dir(dir.path()).unwrap_err();
    assert!(
        matches!(error, SchemaError::UnknownRecord { .. }),
        "{error}"
    );

    std::fs::write(dir.path().join("bad.avsc"), "{not json").unwrap();
    let error = AvroCodec::with_schema_dir(dir.path()).unwrap_err();
    assert!(matches!(error, SchemaError::Invalid { .. }), "{error}");
}

/// The letter of `tests/fixtures/letter.v3.bin`, written by the release before the letters'
/// record moved to the library's namespace (version 3, `com.ecommerce.dlq.DeadLetter`).
fn fixture_letter() -> DeadLetter {
    DeadLetter {
        original_topic: "inventory-reservations".into(),
        original_partition: 2,
        original_offset: 41,
        original_incarnation: 1,
        original_key: Some(b"SKU-404".to_vec()),
        original_headers: vec![ordering_core::Header {
            name: "traceparent".into(),
            value: Some(b"00-abc-def-01".to_vec()),
        }],
        original_timestamp: Some(1_767_225_600_000),
        original_value: br#"{"sku":"SKU-404","quantity":3}"#.to_vec(),
        original_message: Some(r#"{"sku":"SKU-404","quantity":3}"#.into()),
        error_type: "OutOfStock".into(),
        error_class: FailureClass::Permanent,
        error_message: "SKU-404 has 0 in stock".into(),
        retry_count: 0,
        failed_attempts: 1,
        first_failure_timestamp: "2026-12-04T12:00:00.000Z".into(),
        last_failure_timestamp: "2026-12-04T12:00:00.000Z".into(),
        consumer_group: "inventory".into(),
        redrive_count: 1,
        reduced_from: None,
    }
}

#[test]
fn letters_are_the_librarys_record_and_old_letters_stay_readable() {
    let newest = Schema::parse_str(DEAD_LETTER_SCHEMA).unwrap();
    let Schema::Record(record) = &newest else {
        panic!("a record")
    };
    assert_eq!(record.name.fullname(None), "ordering.dlq.DeadLetter");
    let aliases: Vec<String> = record
        .aliases
        .iter()
        .flatten()
        .map(|a| a.fullname(None))
        .collect();
    assert_eq!(aliases, ["com.ecommerce.dlq.DeadLetter"]);

    // A service's letters are written with the library's record, version 4.
    let codec = DeadLetterCodec::new().unwrap();
    assert_eq!(codec.writes(), 4);
    let letter = fixture_letter();
    let written = codec.encode(&letter).unwrap();
    let v4 = Schema::parse_str(&read(&history().join("dlq.v4.avsc"))).unwrap();
    assert_eq!(
        written[2..10],
        v4.fingerprint::<apache_avro::rabin::Rabin>().bytes[..]
    );
    assert_eq!(codec.decode(&written).unwrap(), letter);

    // Bytes written by the previous release (version 3, the old name), read by this one:
    // through the library's codec and the order flow's, whose shells still write version 3.
    let old = include_bytes!("fixtures/letter.v3.bin");
    assert_eq!(codec.decode(old).unwrap(), letter);
    let order_flow = AvroCodec::new().unwrap();
    assert_eq!(
        Codec::<DeadLetter>::decode(&order_flow, old).unwrap(),
        letter
    );
    let shells = order_flow
        .pin(SchemaFamily::DeadLetter, ORDER_FLOW_DLQ_VERSION)
        .unwrap();
    assert_eq!(
        Codec::<DeadLetter>::encode(&shells, &letter).unwrap(),
        old,
        "the shells write what the previous release wrote, byte for byte"
    );
    // And a letter of the library's version is read by the order flow too.
    assert_eq!(
        Codec::<DeadLetter>::decode(&order_flow, &written).unwrap(),
        letter
    );

    // A schema directory may hold a letter version under either name.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("old-name.avsc"),
        read(&history().join("dlq.v3.avsc")),
    )
    .unwrap();
    assert_eq!(
        DeadLetterCodec::with_schema_dir(dir.path())
            .unwrap()
            .writes(),
        4
    );
}
