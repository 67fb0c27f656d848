//! A service's HTTP contract: an OpenAPI 3 document (YAML, embedded at build time) in which
//! the service's operations are tagged with its name. The service serves its part at
//! `GET /openapi.json`; `testing::check_openapi` checks the document against its routing
//! table and its answers.

use bytes::Bytes;
use http_body_util::Full;
use hyper::StatusCode;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use serde_json::Value;

use crate::Response;

/// Where a service's operations are documented: an OpenAPI document and the tag of the
/// service's operations in it (one document may describe several services).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Documented {
    /// The OpenAPI 3 document, in YAML (or JSON).
    pub document: &'static str,
    /// The tag of the service's operations.
    pub service: &'static str,
}

/// The operations a path item may hold (OpenAPI 3.0, "Path Item Object").
pub const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Why the embedded document cannot be served (caught by the service's tests, never at run
/// time in a released build).
#[derive(Debug, thiserror::Error)]
#[error("the OpenAPI document: {0}")]
pub struct OpenApiError(String);

/// One service's part of the document, ready to serve.
#[derive(Debug, Clone)]
pub struct OpenApi {
    json: Bytes,
}

impl OpenApi {
    /// The document with only the service's operations.
    pub fn for_service(api: Documented) -> Result<Self, OpenApiError> {
        let document = document(api)?;
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

/// The document as JSON, with only the service's operations (and the paths that have any).
pub fn document(api: Documented) -> Result<Value, OpenApiError> {
    let service = api.service;
    let mut document: Value =
        serde_yaml_ng::from_str(api.document).map_err(|e| OpenApiError(e.to_string()))?;
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

    const DOCUMENT: &str = r#"
openapi: 3.0.3
info: { title: two services, version: "1" }
paths:
  /api/a:
    get: { tags: [service-a], responses: { "200": { description: ok } } }
  /api/b:
    put: { tags: [service-b], responses: { "202": { description: accepted } } }
  /health:
    get: { tags: [service-a, service-b], responses: { "200": { description: ok } } }
"#;

    fn part(service: &'static str) -> Value {
        document(Documented {
            document: DOCUMENT,
            service,
        })
        .unwrap()
    }

    #[test]
    fn each_service_gets_its_own_operations() {
        let (a, b) = (part("service-a"), part("service-b"));
        assert_eq!(a["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        assert!(a["paths"]["/api/a"]["get"].is_object());
        assert!(a["paths"].get("/api/b").is_none());
        assert!(b["paths"]["/api/b"]["put"].is_object());
        assert!(b["paths"].get("/api/a").is_none());
        // Both have a health check, each its own.
        assert!(a["paths"]["/health"]["get"].is_object());
        assert!(b["paths"]["/health"]["get"].is_object());
        assert!(part("service-c")["paths"].as_object().unwrap().is_empty());
    }
}
