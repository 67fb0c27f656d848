//! JSON (serde_json), for services whose events are JSON on the wire.

use std::marker::PhantomData;

use ordering_core::DecodeError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use super::Codec;
use crate::error::KafkaError;

/// Events of type `M` as JSON documents, one per record value.
///
/// A value that is not JSON (or is cut short) is a malformed payload, dead-lettered as
/// *poison* (`errorType` `DecodeError`); JSON that is not an `M` (a field missing, a wrong
/// type) is an invalid event, dead-lettered as *permanent* with the `errorType` this codec
/// was given ([`Json::invalid_as`], `InvalidEvent` unless set). Cheap to copy.
pub struct Json<M> {
    invalid: &'static str,
    _message: PhantomData<fn() -> M>,
}

impl<M> Json<M> {
    /// A JSON codec; invalid events are dead-lettered as `InvalidEvent`.
    pub fn new() -> Self {
        Self {
            invalid: "InvalidEvent",
            _message: PhantomData,
        }
    }

    /// The dead letter's `errorType` for JSON that is not an `M` (`InvalidReservation`, say).
    pub fn invalid_as(mut self, error_type: &'static str) -> Self {
        self.invalid = error_type;
        self
    }
}

impl<M> Default for Json<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M> Clone for Json<M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M> Copy for Json<M> {}

impl<M> std::fmt::Debug for Json<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Json")
            .field("type", &std::any::type_name::<M>())
            .field("invalid", &self.invalid)
            .finish()
    }
}

impl<M: Serialize + DeserializeOwned> Codec<M> for Json<M> {
    fn encode(&self, message: &M) -> Result<Vec<u8>, KafkaError> {
        serde_json::to_vec(message).map_err(|e| KafkaError::Encode(e.to_string()))
    }

    fn decode(&self, payload: &[u8]) -> Result<M, DecodeError> {
        serde_json::from_slice(payload).map_err(|e| match e.classify() {
            Category::Data => DecodeError::invalid(self.invalid, format!("not a valid event: {e}")),
            Category::Syntax | Category::Eof | Category::Io => {
                DecodeError::new(format!("not JSON: {e}"))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordering_core::{DecodeErrorKind, FailureClass};

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Reservation {
        sku: String,
        quantity: u32,
    }

    #[test]
    fn round_trips_and_tells_garbage_from_an_invalid_event() {
        let codec = Json::<Reservation>::new().invalid_as("InvalidReservation");
        let event = Reservation {
            sku: "SKU-1".into(),
            quantity: 2,
        };
        let bytes = codec.encode(&event).unwrap();
        assert_eq!(bytes, br#"{"sku":"SKU-1","quantity":2}"#);
        assert_eq!(codec.decode(&bytes).unwrap(), event);

        for garbage in [&b"{\"sku\": "[..], b"\xff\xfe", b""] {
            let error = codec.decode(garbage).unwrap_err();
            assert_eq!(error.kind(), DecodeErrorKind::Malformed, "{error}");
            assert_eq!(FailureClass::from(error.kind()), FailureClass::Poison);
            assert_eq!(error.error_type(), "DecodeError");
        }
        for invalid in [&br#"{"sku": "SKU-1"}"#[..], br#"{"sku": 1, "quantity": 2}"#] {
            let error = codec.decode(invalid).unwrap_err();
            assert_eq!(error.kind(), DecodeErrorKind::Invalid, "{error}");
            assert_eq!(FailureClass::from(error.kind()), FailureClass::Permanent);
            assert_eq!(error.error_type(), "InvalidReservation");
        }
        assert_eq!(
            Json::<Reservation>::new()
                .decode(b"{}")
                .unwrap_err()
                .error_type(),
            "InvalidEvent"
        );
    }
}
