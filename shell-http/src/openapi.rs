//! The HTTP contract of both shells, `docs/openapi.yaml` (OpenAPI 3), embedded at build time.
//! Each shell serves the operations tagged with its name at `GET /openapi.json`; the shells'
//! tests check the document against their routing tables and their answers.

use bytes::Bytes;
use http_body_util::Full;
use hyper::StatusCode;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use serde_json::Value;

use crate::Response;

/// The document as written.
pub const DOCUMENT: &str = include_str!("../../docs/openapi.yaml");

/// The operations a path item may hold (OpenAPI 3.0, "Path Item Object").
pub const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Why the embedded document cannot be served (caught by the shells' tests, never at run time
/// in a released build).
#[derive(Debug, thiserror::Error)]
#[error("docs/openapi.yaml: {0}")]
pub struct OpenApiError(String);

/// One service's part of the document, ready to serve.
#[derive(Debug, Clone)]
pub struct OpenApi {
    json: Bytes,
}

impl OpenApi {
    /// The document with only the operations tagged `service`.
    pub fn for_service(service: &str) -> Result<Self, OpenApiError> {
        let document = document(service)?;
        Ok(Self {
            json: Bytes::from(document.to_string()),
        })
    }

    /// `GET /openapi.json`.
    pub fn response(&self) -> Response {
        let mut response = hyper::Response::new(Full::new(self.json.clone()));
        *response.status_mut() = StatusCode::OK;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

/// The document as JSON, with only the operations tagged `service` (and the paths that have
/// any).
pub fn document(service: &str) -> Result<Value, OpenApiError> {
    let mut document: Value =
        serde_yaml_ng::from_str(DOCUMENT).map_err(|e| OpenApiError(e.to_string()))?;
    let paths = document
        .get_mut("paths")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| OpenApiError("no paths".into()))?;
    for item in paths.values_mut() {
        if let Some(item) = item.as_object_mut() {
            item.retain(|key, operation| {
                !METHODS.contains(&key.as_str()) || is_tagged(operation, service)
            });
        }
    }
    paths.retain(|_, item| {
        item.as_object()
            .is_some_and(|item| item.keys().any(|key| METHODS.contains(&key.as_str())))
    });
    Ok(document)
}

fn is_tagged(operation: &Value, service: &str) -> bool {
    operation["tags"]
        .as_array()
        .is_some_and(|tags| tags.iter().any(|tag| tag == service))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_service_gets_its_own_operations() {
        let cart = document("cart-shell").unwrap();
        let order = document("order-shell").unwrap();
        assert_eq!(cart["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        assert!(cart["paths"]["/api/update-order"]["put"].is_object());
        assert!(cart["paths"].get("/api/order-details").is_none());
        assert!(order["paths"]["/api/order-details"]["get"].is_object());
        assert!(order["paths"].get("/api/update-order").is_none());
        // Both have a health check, each its own.
        assert!(cart["paths"]["/health"]["get"].is_object());
        assert!(order["paths"]["/health"]["get"].is_object());
        assert!(
            document("no-such-shell").unwrap()["paths"]
                .as_object()
                .unwrap()
                .is_empty()
        );
    }
}
