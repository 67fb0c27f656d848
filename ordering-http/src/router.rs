//! One routing table per shell: every endpoint's method and path, written once. The table
//! answers `404` and `405` (with `Allow`), labels requests for the HTTP metrics, and is what
//! the OpenAPI check compares `docs/openapi.yaml` with.

use hyper::Method;

use crate::{Response, method_not_allowed, no_such_path};

/// One endpoint: a method on a path, and what serves it.
#[derive(Debug, Clone)]
pub struct Route<E> {
    /// The method it answers.
    pub method: Method,
    /// The path, matched exactly: no parameters, no query string.
    pub path: &'static str,
    /// What serves it (typically a variant of the shell's own endpoint enum), as
    /// [`Routes::find`] gives it back.
    pub endpoint: E,
}

impl<E> Route<E> {
    /// `endpoint` serving `method` on `path`; `const`, for a `static` table.
    pub const fn new(method: Method, path: &'static str, endpoint: E) -> Self {
        Self {
            method,
            path,
            endpoint,
        }
    }
}

/// Why a request has no endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unrouted {
    /// `404`: nothing is served at this path.
    NoSuchPath(String),
    /// `405`: the path is served, with these methods only (for `Allow`).
    WrongMethod(String),
}

impl Unrouted {
    /// The `404`, or the `405` with `Allow`, as an error body.
    pub fn into_response(self) -> Response {
        match self {
            Self::NoSuchPath(path) => no_such_path(&path),
            Self::WrongMethod(allow) => method_not_allowed(&allow),
        }
    }
}

/// A shell's routing table.
#[derive(Debug)]
pub struct Routes<E: 'static>(pub &'static [Route<E>]);

impl<E: Copy> Routes<E> {
    /// The endpoint for `method` on `path`; else why not.
    pub fn find(&self, method: &Method, path: &str) -> Result<E, Unrouted> {
        let mut allowed = self.0.iter().filter(|route| route.path == path).peekable();
        if allowed.peek().is_none() {
            return Err(Unrouted::NoSuchPath(path.to_owned()));
        }
        let mut methods = Vec::new();
        for route in allowed {
            if route.method == *method {
                return Ok(route.endpoint);
            }
            methods.push(route.method.as_str());
        }
        Err(Unrouted::WrongMethod(methods.join(", ")))
    }
}

impl<E> Routes<E> {
    /// The path as the HTTP metrics label it: itself if served, else `other` (a client must
    /// not be able to make up label values).
    pub fn label(&self, path: &str) -> &'static str {
        self.0
            .iter()
            .find(|route| route.path == path)
            .map_or("other", |route| route.path)
    }

    /// Every `(method, path)` served.
    pub fn endpoints(&self) -> impl Iterator<Item = (&Method, &'static str)> {
        self.0.iter().map(|route| (&route.method, route.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Endpoint {
        Read,
        Write,
    }

    static ROUTES: Routes<Endpoint> = Routes(&[
        Route::new(Method::GET, "/thing", Endpoint::Read),
        Route::new(Method::PUT, "/thing", Endpoint::Write),
    ]);

    #[test]
    fn finds_the_endpoint_or_says_what_is_wrong() {
        assert_eq!(
            ROUTES.find(&Method::GET, "/thing").ok(),
            Some(Endpoint::Read)
        );
        assert_eq!(
            ROUTES.find(&Method::PUT, "/thing").ok(),
            Some(Endpoint::Write)
        );
        let refused = ROUTES.find(&Method::DELETE, "/thing");
        assert_eq!(refused, Err(Unrouted::WrongMethod("GET, PUT".into())));
        let refused = refused.unwrap_err().into_response();
        assert_eq!(refused.status(), 405);
        assert_eq!(refused.headers()["allow"], "GET, PUT");
        let missing = ROUTES.find(&Method::GET, "/other");
        assert_eq!(missing, Err(Unrouted::NoSuchPath("/other".into())));
        assert_eq!(missing.unwrap_err().into_response().status(), 404);
        assert_eq!(ROUTES.label("/thing"), "/thing");
        assert_eq!(ROUTES.label("/made-up"), "other");
    }
}
