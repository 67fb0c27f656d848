//! Typed request bodies: fields read by serde (`#[serde(deserialize_with = ...)]`), with
//! errors that name the field and say what was wrong, the way a client reads them:
//! `orderId is required`, `numItems: must be a whole number, got a string`.
//!
//! ```
//! #[derive(serde::Deserialize)]
//! #[serde(rename_all = "camelCase")]
//! struct CreateOrder {
//!     #[serde(default, deserialize_with = "ordering_http::body::text")]
//!     order_id: Option<String>,
//!     #[serde(default, deserialize_with = "ordering_http::body::whole_number")]
//!     num_items: Option<i64>,
//! }
//! ```

use serde::de::{Deserialize, Deserializer, Error};
use serde_json::Value;

use crate::{ApiError, kind};

/// A field the body must have: `400` "`field` is required" when it is missing or `null`.
pub fn required<T>(value: Option<T>, field: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::bad_request(format!("{field} is required")))
}

/// A string field; missing or `null` is `None`.
pub fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(text)),
        other => Err(D::Error::custom(format!(
            "must be a string, got {}",
            kind(&other)
        ))),
    }
}

/// A whole-number field; missing or `null` is `None`. `2.5` and `"2"` are refused.
pub fn whole_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Null => Ok(None),
        Value::Number(n) if n.is_i64() => Ok(n.as_i64()),
        other => Err(D::Error::custom(format!(
            "must be a whole number, got {}",
            match &other {
                Value::Number(n) => n.to_string(),
                other => kind(other).to_owned(),
            }
        ))),
    }
}
