//! The dead letter as an Avro `Value`, field by field, and back.

use apache_avro::types::Value;
use ordering_core::{DeadLetter, DecodeError, FailureClass, Header};

// The dead letter is mapped by hand: it has unions and bytes, which serde would have to be
// told about field by field anyway, and the class is an enum in Rust and a string on the wire.
pub(super) fn dead_letter_value(l: &DeadLetter) -> Value {
    fn opt(value: Option<Value>) -> Value {
        match value {
            None => Value::Union(0, Box::new(Value::Null)),
            Some(v) => Value::Union(1, Box::new(v)),
        }
    }
    let int = |n: u32| Value::Int(i32::try_from(n).unwrap_or(i32::MAX));
    let fields = [
        ("originalTopic", Value::String(l.original_topic.clone())),
        ("originalPartition", Value::Int(l.original_partition)),
        ("originalOffset", Value::Long(l.original_offset)),
        ("originalKey", opt(l.key_str().map(Value::String))),
        (
            "originalTimestamp",
            opt(l.original_timestamp.map(Value::Long)),
        ),
        ("originalValue", Value::Bytes(l.original_value.clone())),
        (
            "originalMessage",
            opt(l.original_message.clone().map(Value::String)),
        ),
        ("errorType", Value::String(l.error_type.clone())),
        ("errorClass", Value::String(l.error_class.as_str().into())),
        ("errorMessage", Value::String(l.error_message.clone())),
        ("retryCount", int(l.retry_count)),
        ("failedAttempts", int(l.failed_attempts)),
        (
            "firstFailureTimestamp",
            Value::String(l.first_failure_timestamp.clone()),
        ),
        (
            "lastFailureTimestamp",
            Value::String(l.last_failure_timestamp.clone()),
        ),
        ("consumerGroup", Value::String(l.consumer_group.clone())),
        ("redriveCount", int(l.redrive_count)),
        ("reduced", Value::Boolean(l.reduced_from.is_some())),
        (
            "originalValueSize",
            opt(l
                .reduced_from
                .map(|n| Value::Long(i64::try_from(n).unwrap_or(i64::MAX)))),
        ),
        (
            "originalKeyBytes",
            opt(l.original_key.clone().map(Value::Bytes)),
        ),
        (
            "originalHeaders",
            Value::Array(
                l.original_headers
                    .iter()
                    .map(|h| {
                        Value::Record(vec![
                            ("name".to_owned(), Value::String(h.name.clone())),
                            ("value".to_owned(), opt(h.value.clone().map(Value::Bytes))),
                        ])
                    })
                    .collect(),
            ),
        ),
    ];
    Value::Record(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

pub(super) fn dead_letter_from(value: Value) -> Result<DeadLetter, DecodeError> {
    let Value::Record(fields) = value else {
        return Err(DecodeError::new("a dead letter must be a record"));
    };
    let mut fields: std::collections::HashMap<String, Value> = fields.into_iter().collect();
    let mut take = |name: &str| {
        let value = fields
            .remove(name)
            .ok_or_else(|| DecodeError::new(format!("dead letter without {name}")))?;
        Ok::<_, DecodeError>(match value {
            Value::Union(_, inner) => *inner,
            other => other,
        })
    };
    let bad = |name: &str, v: &Value| DecodeError::new(format!("dead letter field {name}: {v:?}"));
    macro_rules! field {
        ($name:literal, $($pat:pat => $out:expr),+) => {{
            match take($name)? {
                $($pat => $out,)+
                other => return Err(bad($name, &other)),
            }
        }};
    }
    let count = |n: i32| u32::try_from(n).unwrap_or(0);
    let error_class: String = field!("errorClass", Value::String(s) => s);
    let reduced: bool = field!("reduced", Value::Boolean(b) => b);
    let value_size: Option<i64> =
        field!("originalValueSize", Value::Null => None, Value::Long(n) => Some(n));
    let original_value: Vec<u8> = field!("originalValue", Value::Bytes(b) => b);
    let key_text: Option<String> =
        field!("originalKey", Value::Null => None, Value::String(s) => Some(s));
    // Letters written before version 3 have only the text; it is the key for UTF-8 keys.
    let original_key: Option<Vec<u8>> = match take("originalKeyBytes") {
        Ok(Value::Bytes(b)) => Some(b),
        Ok(Value::Null) | Err(_) => key_text.map(String::into_bytes),
        Ok(other) => return Err(bad("originalKeyBytes", &other)),
    };
    let original_headers = match take("originalHeaders") {
        Ok(Value::Array(items)) => items
            .into_iter()
            .map(header_from)
            .collect::<Result<Vec<_>, _>>()?,
        Err(_) => Vec::new(),
        Ok(other) => return Err(bad("originalHeaders", &other)),
    };
    let reduced_from = reduced.then(|| {
        value_size
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(original_value.len() as u64)
    });
    Ok(DeadLetter {
        original_topic: field!("originalTopic", Value::String(s) => s),
        original_partition: field!("originalPartition", Value::Int(n) => n),
        original_offset: field!("originalOffset", Value::Long(n) => n),
        // Not in the schema: the reader of a letter's record sets it from its headers.
        original_incarnation: ordering_core::FIRST_INCARNATION,
        original_key,
        original_headers,
        original_timestamp: field!("originalTimestamp", Value::Null => None, Value::Long(n) => Some(n)),
        original_value,
        original_message: field!("originalMessage", Value::Null => None, Value::String(s) => Some(s)),
        error_type: field!("errorType", Value::String(s) => s),
        error_class: error_class
            .parse::<FailureClass>()
            .map_err(|e| DecodeError::new(e.to_string()))?,
        error_message: field!("errorMessage", Value::String(s) => s),
        retry_count: field!("retryCount", Value::Int(n) => count(n)),
        failed_attempts: field!("failedAttempts", Value::Int(n) => count(n)),
        first_failure_timestamp: field!("firstFailureTimestamp", Value::String(s) => s),
        last_failure_timestamp: field!("lastFailureTimestamp", Value::String(s) => s),
        consumer_group: field!("consumerGroup", Value::String(s) => s),
        redrive_count: field!("redriveCount", Value::Int(n) => count(n)),
        reduced_from,
    })
}

fn header_from(value: Value) -> Result<Header, DecodeError> {
    let Value::Record(fields) = value else {
        return Err(DecodeError::new("a dead letter's header must be a record"));
    };
    let (mut name, mut value) = (None, None);
    for (field, v) in fields {
        match (field.as_str(), v) {
            ("name", Value::String(s)) => name = Some(s),
            ("value", Value::Union(_, inner)) => match *inner {
                Value::Bytes(b) => value = Some(b),
                Value::Null => {}
                other => {
                    return Err(DecodeError::new(format!(
                        "dead letter header value: {other:?}"
                    )));
                }
            },
            _ => {}
        }
    }
    let name = name.ok_or_else(|| DecodeError::new("dead letter header without a name"))?;
    Ok(Header { name, value })
}
