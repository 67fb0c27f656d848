//! Random requests against a served shell (feature `testing`): methods, paths, query strings,
//! headers and bodies from proptest, each answer checked against the service's OpenAPI
//! document. What must hold for every request:
//! - a route answers only with a status `docs/openapi.yaml` documents for it; an unknown path
//!   answers `404` and a known path with another method `405`;
//! - nothing answers `5xx` but `503` (a dependency that is down);
//! - every `4xx` has the error body (`success: false`, `error`, `details`);
//! - the service keeps serving: a panic would drop the connection, which fails the request.

use ordering_core::testing::Seeded;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};

use crate::router::Routes;
use crate::testing::{Reply, get, try_call_with};

/// A body past every limit of the shells: 2 MiB.
const HUGE: usize = 2 * 1024 * 1024;

/// One service to fuzz, and what its requests are made of.
pub struct Target<'a, E: 'static> {
    /// Where its operations are documented.
    pub api: crate::openapi::Documented,
    /// `http://HOST:PORT` where it is served.
    pub base: &'a str,
    /// Its routing table: the paths requests are mostly made of, and what tells a `404` from
    /// a `405`.
    pub routes: &'a Routes<E>,
    /// Query parameters its routes read, given random values.
    pub params: &'a [&'a str],
    /// Fields of its JSON bodies, given random values.
    pub fields: &'a [&'a str],
    /// Headers worth sending now and then (a valid operator token, say).
    pub headers: &'a [(&'a str, &'a str)],
    /// Values its routes accept (an order id, a status), mixed in with random ones so that
    /// requests also get past validation.
    pub samples: &'a [&'a str],
}

impl<E> std::fmt::Debug for Target<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("service", &self.api.service)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// One generated request.
#[derive(Debug, Clone)]
pub struct Request {
    /// The HTTP method, possibly one no route has (`FUZZ`).
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// Query parameters, `(name, value)`, percent-encoded when sent.
    pub query: Vec<(String, String)>,
    /// Request headers, `(name, value)`, sent besides `Content-Type: application/json`.
    pub headers: Vec<(String, String)>,
    /// The body's bytes, not necessarily JSON or UTF-8; `None` sends an empty body.
    pub body: Option<Vec<u8>>,
}

/// Runs `cases` random requests against `target` on `runtime`; panics with the seed and the
/// smallest failing request if one breaks a rule. `FUZZ_CASES` and `FUZZ_SEED` override
/// `cases` and the fixed seed.
pub fn run<E: Copy>(runtime: &tokio::runtime::Runtime, target: &Target<'_, E>, cases: u32) {
    let Seeded {
        mut runner,
        seed,
        cases,
    } = Seeded::new("FUZZ", cases);
    // The statuses seen, to show what the run reached.
    let seen = std::sync::Mutex::new(std::collections::BTreeMap::<u16, u32>::new());
    let result = runner.run(&request(target), |request| {
        let status = runtime
            .block_on(check(target, &request))
            .map_err(TestCaseError::fail)?;
        *seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(status)
            .or_default() += 1;
        Ok(())
    });
    if let Err(failure) = result {
        panic!(
            "{}: FUZZ_SEED={seed} ({cases} cases): {failure}",
            target.api.service
        );
    }
    let seen = seen.into_inner().unwrap_or_else(|e| e.into_inner());
    eprintln!(
        "{}: {cases} random requests, seed {seed}, answered {seen:?}",
        target.api.service
    );
}

/// Sends `request` and checks the answer.
async fn check<E: Copy>(target: &Target<'_, E>, request: &Request) -> Result<u16, String> {
    let mut url = format!("{}{}", target.base, request.path);
    if !request.query.is_empty() {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&request.query)
            .finish();
        url = format!("{url}?{query}");
    }
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let reply = match try_call_with(&request.method, &url, request.body.as_deref(), &headers).await
    {
        Ok(reply) => reply,
        // A server may answer a body it will not read and close the connection while the
        // client still sends it (RFC 9110, 9.3.1 and 15.5.14): the client then sees the
        // connection reset, not the answer. Fine for a body past every limit, as long as
        // the service goes on serving.
        Err(error) if request.body.as_ref().is_some_and(|b| b.len() > HUGE) => {
            let health = get(&format!("{}/health", target.base)).await;
            return if health.status == 200 || health.status == 503 {
                Ok(0)
            } else {
                Err(format!("after {error}, /health answered {}", health.status))
            };
        }
        Err(error) => return Err(format!("{request:?}: {error}")),
    };
    let method = hyper::Method::from_bytes(request.method.as_bytes())
        .map_err(|e| format!("a generated method is invalid: {e}"))?;
    let known_path = target.routes.endpoints().any(|(_, p)| p == request.path);
    let routed = target.routes.find(&method, &request.path).is_ok();
    let status = reply.status;
    if status >= 500 && status != 503 {
        return Err(format!("{request:?} answered {status}: {}", reply.text));
    }
    if routed {
        let document = crate::openapi::document(target.api).map_err(|e| e.to_string())?;
        let responses = &document["paths"][request.path.as_str()]
            [method.as_str().to_ascii_lowercase()]["responses"];
        if responses.get(status.to_string()).is_none() {
            return Err(format!(
                "{request:?} answered {status}, not documented for {} {}: {}",
                method, request.path, reply.text
            ));
        }
    } else {
        let want = if known_path { 405 } else { 404 };
        if status != want {
            return Err(format!(
                "{request:?} answered {status}, not {want}: {}",
                reply.text
            ));
        }
    }
    if (400..500).contains(&status) && method != hyper::Method::HEAD {
        check_error_body(request, &reply)?;
    }
    Ok(status)
}

fn check_error_body(request: &Request, reply: &Reply) -> Result<(), String> {
    let body = &reply.json;
    let ok = body["success"] == json!(false)
        && body["error"].as_str().is_some_and(|e| !e.is_empty())
        && body.get("details").is_some();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{request:?} answered {} without the error body: {}",
            reply.status, reply.text
        ))
    }
}

/// Requests made of `target`'s routes, parameters and fields, and of anything else.
pub fn request<E: Copy>(target: &Target<'_, E>) -> impl Strategy<Value = Request> + use<E> {
    let paths: Vec<String> = target
        .routes
        .endpoints()
        .map(|(_, p)| p.to_owned())
        .collect();
    let params: Vec<String> = target.params.iter().map(|&p| p.to_owned()).collect();
    let fields: Vec<String> = target.fields.iter().map(|&f| f.to_owned()).collect();
    let samples: Vec<String> = target.samples.iter().map(|&v| v.to_owned()).collect();
    let headers: Vec<(String, String)> = target
        .headers
        .iter()
        .map(|&(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    let endpoints: Vec<(String, String)> = target
        .routes
        .endpoints()
        .map(|(m, p)| (m.as_str().to_owned(), p.to_owned()))
        .collect();
    let method = prop_oneof![
        4 => Just("GET"),
        3 => Just("POST"),
        3 => Just("PUT"),
        1 => Just("DELETE"),
        1 => Just("PATCH"),
        1 => Just("HEAD"),
        1 => Just("OPTIONS"),
        1 => Just("FUZZ"),
    ]
    .prop_map(str::to_owned);
    let path = prop_oneof![
        3 => proptest::sample::select(paths.clone()),
        1 => (proptest::sample::select(paths), "[a-z0-9/._~-]{1,12}")
            .prop_map(|(p, tail)| format!("{p}{tail}")),
        1 => "/[a-zA-Z0-9/._~-]{0,40}",
    ];
    // Mostly a route as served, so that most requests reach a handler.
    let route = prop_oneof![
        3 => proptest::sample::select(endpoints),
        1 => (method, path),
    ];
    let name = prop_oneof![
        4 => proptest::sample::select(params),
        1 => "[a-zA-Z_]{1,10}",
    ];
    let query = proptest::collection::vec((name, text(samples.clone())), 0..4);
    let header = prop_oneof![
        2 => proptest::sample::select(headers),
        1 => "[ -~]{0,40}".prop_map(|t| ("authorization".to_owned(), format!("Bearer {t}"))),
        1 => "[ -~]{0,40}".prop_map(|k| ("idempotency-key".to_owned(), k)),
        1 => prop_oneof![Just("text/plain"), Just("application/x-www-form-urlencoded"), Just("")]
            .prop_map(|t| ("content-type".to_owned(), t.to_owned())),
    ];
    let headers = proptest::collection::vec(header, 0..3);
    let body = prop_oneof![
        2 => Just(None),
        3 => json_body(fields, samples).prop_map(|v| Some(v.to_string().into_bytes())),
        1 => proptest::collection::vec(any::<u8>(), 0..256).prop_map(Some),
        1 => "[ -~]{0,64}".prop_map(|t| Some(t.into_bytes())),
        1 => Just(Some(vec![b'{'; HUGE + 1])),
    ];
    (route, query, headers, body).prop_map(|((method, path), query, headers, body)| Request {
        method,
        path,
        query,
        headers,
        body,
    })
}

/// Query values: the samples, numbers at and past every bound, blanks, long, odd characters.
fn text(samples: Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(samples),
        2 => "[A-Za-z0-9-]{0,16}",
        2 => prop_oneof![
            Just("0"), Just("-1"), Just("1"), Just("1000"), Just("10001"), Just("100001"),
            Just("99999999999999999999"), Just("1e3"), Just(" "), Just(""), Just("NaN"),
        ]
        .prop_map(str::to_owned),
        1 => any::<String>(),
        1 => "[a-z]{3000}",
    ]
}

/// JSON objects with `fields`, and others, holding values of any type.
fn json_body(fields: Vec<String>, samples: Vec<String>) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        2 => (-2i64..120).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(|f| json!(f)),
        4 => text(samples.clone()).prop_map(Value::String),
    ];
    let value = leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{1,6}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let name = prop_oneof![
        4 => proptest::sample::select(fields.clone()),
        1 => "[a-zA-Z]{1,10}",
    ];
    // Every field, each a sample or a small number: often a body the service accepts.
    let plausible = prop_oneof![
        proptest::sample::select(samples).prop_map(Value::String),
        (1i64..100).prop_map(Value::from),
    ];
    let complete = proptest::collection::vec(plausible, fields.len())
        .prop_map(move |values| Value::Object(fields.iter().cloned().zip(values).collect()));
    prop_oneof![
        3 => proptest::collection::btree_map(name, value.clone(), 0..6)
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        3 => complete,
        1 => value,
    ]
}
