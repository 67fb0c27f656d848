//! HTTP in, JSON out. The table names every endpoint once, with who may call it and what
//! work it may wait for; [`App::handle`] applies both, in that order, before any handler
//! runs. The handlers live by resource: orders, dead letters, the console, health.

mod console;
mod dead_letters;
mod health;
mod orders;

use std::time::Duration;

use hyper::Method;
use ordering_http::limit::{Turn, WorkLimit};
use ordering_http::router::{Route, Routes};
use ordering_http::{ApiError, HttpRequest, Response};

pub(crate) use self::health::Probes;
use crate::App;
use crate::config::Limits;
use crate::console::{self as pages, Asset, Page};

/// How long `/health` (and the console's question to the coordinator) waits for the broker
/// and for the store.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// What serves a request: quick work, answered at once, or heavy work, which first takes a
/// turn of its [`WorkLimit`]. The split is in the type, so an endpoint cannot be added without
/// saying which it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Answered from memory or by one keyed read of the store.
    Quick(Quick),
    /// Reads a topic, pages the store or redrives: bounded by its turns.
    Heavy(Heavy),
}

/// Endpoints that never wait for a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quick {
    OrderDetails,
    OrderHistory,
    DlqInfo,
    Health,
    Metrics,
    OpenApi,
    ConsoleOverview,
    Console(Page),
    ConsoleAsset(Asset),
}

/// Endpoints that take a turn of a [`WorkLimit`] before they run, and keep it to their end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heavy {
    DlqMessages,
    DlqRedrive,
    Stats,
    OrderIdsInTopic,
}

impl Heavy {
    /// The work limit whose turn it takes.
    fn limit(self, limits: &Limits) -> &WorkLimit {
        match self {
            Self::DlqMessages => &limits.dlq_pages,
            Self::DlqRedrive => &limits.redrives,
            Self::Stats => &limits.stats,
            Self::OrderIdsInTopic => &limits.scans,
        }
    }
}

/// Who may call an endpoint, checked before it takes a turn: a caller refused never holds
/// one from the operator.
enum Access {
    /// Anyone; the operator's token, if presented, may show more.
    Anyone,
    /// With an operator token configured, only a caller presenting it; anyone without.
    OperatorWhenConfigured,
    /// Only the operator, and refused outright without a token configured.
    Operator,
}

impl Endpoint {
    fn access(self) -> Access {
        match self {
            Self::Heavy(Heavy::DlqRedrive) => Access::Operator,
            Self::Heavy(Heavy::DlqMessages) | Self::Quick(Quick::ConsoleOverview) => {
                Access::OperatorWhenConfigured
            }
            Self::Heavy(Heavy::Stats | Heavy::OrderIdsInTopic)
            | Self::Quick(
                Quick::OrderDetails
                | Quick::OrderHistory
                | Quick::DlqInfo
                | Quick::Health
                | Quick::Metrics
                | Quick::OpenApi
                | Quick::Console(_)
                | Quick::ConsoleAsset(_),
            ) => Access::Anyone,
        }
    }
}

const fn quick(method: Method, path: &'static str, endpoint: Quick) -> Route<Endpoint> {
    Route::new(method, path, Endpoint::Quick(endpoint))
}

const fn heavy(method: Method, path: &'static str, endpoint: Heavy) -> Route<Endpoint> {
    Route::new(method, path, Endpoint::Heavy(endpoint))
}

/// Every endpoint, once.
pub static ROUTES: Routes<Endpoint> = Routes(&[
    quick(Method::GET, "/api/order-details", Quick::OrderDetails),
    heavy(Method::GET, "/api/dlq/messages", Heavy::DlqMessages),
    quick(Method::GET, "/api/dlq/info", Quick::DlqInfo),
    heavy(Method::POST, "/api/dlq/redrive", Heavy::DlqRedrive),
    heavy(Method::GET, "/api/stats", Heavy::Stats),
    heavy(
        Method::GET,
        "/api/getAllOrderIdsFromTopic",
        Heavy::OrderIdsInTopic,
    ),
    quick(Method::GET, "/health", Quick::Health),
    quick(Method::GET, "/metrics", Quick::Metrics),
    quick(Method::GET, "/openapi.json", Quick::OpenApi),
    quick(Method::GET, "/api/order-history", Quick::OrderHistory),
    quick(Method::GET, "/api/console/overview", Quick::ConsoleOverview),
    quick(Method::GET, "/console", Quick::Console(Page::Overview)),
    quick(
        Method::GET,
        "/console/dead-letters",
        Quick::Console(Page::DeadLetters),
    ),
    quick(
        Method::GET,
        "/console/redrive",
        Quick::Console(Page::Redrive),
    ),
    quick(Method::GET, "/console/orders", Quick::Console(Page::Orders)),
    quick(
        Method::GET,
        "/console/assets/console.js",
        Quick::ConsoleAsset(Asset::Script),
    ),
    quick(
        Method::GET,
        "/console/assets/console.css",
        Quick::ConsoleAsset(Asset::Styles),
    ),
    quick(
        Method::GET,
        "/console/assets/vendor/uPlot.iife.min.js",
        Quick::ConsoleAsset(Asset::ChartScript),
    ),
    quick(
        Method::GET,
        "/console/assets/vendor/uPlot.min.css",
        Quick::ConsoleAsset(Asset::ChartStyles),
    ),
]);

impl App {
    /// Answers one request: its route, then its access rule, then (heavy work) a turn of its
    /// limit, then its handler.
    pub async fn handle(&self, request: HttpRequest) -> Response {
        let endpoint = match ROUTES.find(request.method(), request.uri().path()) {
            Ok(endpoint) => endpoint,
            Err(unrouted) => return unrouted.into_response(),
        };
        let operator = match self.admit(endpoint.access(), &request) {
            Ok(operator) => operator,
            Err(refused) => return refused.into_response(),
        };
        let result = match endpoint {
            Endpoint::Quick(quick) => self.quick(quick, &request, operator).await,
            Endpoint::Heavy(heavy) => match heavy.limit(&self.config.limits).enter().await {
                Ok(turn) => self.heavy(heavy, request, operator, turn).await,
                Err(busy) => Ok(busy.into_response()),
            },
        };
        result.unwrap_or_else(ApiError::into_response)
    }

    /// Whether the caller is let in, and whether as the operator.
    fn admit(&self, access: Access, request: &HttpRequest) -> Result<bool, ApiError> {
        let token = self.config.operator_token.as_ref();
        match (access, token) {
            (Access::Anyone, token) => Ok(token.is_some_and(|t| t.check(request).is_ok())),
            (Access::OperatorWhenConfigured, None) => Ok(false),
            (Access::OperatorWhenConfigured | Access::Operator, Some(token)) => {
                token.check(request).map(|()| true)
            }
            (Access::Operator, None) => Err(ApiError::forbidden(
                "redrive is disabled: start order-shell with OPERATOR_TOKEN (or OPERATOR_TOKEN_FILE) set, and send Authorization: Bearer <token>",
            )),
        }
    }

    async fn quick(
        &self,
        endpoint: Quick,
        request: &HttpRequest,
        operator: bool,
    ) -> Result<Response, ApiError> {
        Ok(match endpoint {
            Quick::OrderDetails => self.order_details(request).await?,
            Quick::OrderHistory => self.order_history(request).await?,
            Quick::DlqInfo => self.dlq_info(),
            Quick::Health => self.health(operator).await,
            Quick::Metrics => self.metrics.response(),
            Quick::OpenApi => self.openapi.response(),
            Quick::ConsoleOverview => self.console_overview().await,
            Quick::Console(page) => self.pages.render(page, &self.console_facts()),
            Quick::ConsoleAsset(asset) => pages::asset(asset),
        })
    }

    async fn heavy(
        &self,
        endpoint: Heavy,
        request: HttpRequest,
        operator: bool,
        turn: Turn,
    ) -> Result<Response, ApiError> {
        match endpoint {
            Heavy::DlqMessages => self.dlq_messages(&request, operator, turn).await,
            Heavy::DlqRedrive => self.redrive(request, turn).await,
            Heavy::Stats => self.stats(&request, turn).await,
            Heavy::OrderIdsInTopic => self.order_ids_in_topic(&request, turn).await,
        }
    }
}

/// Milliseconds since the Unix epoch as ISO 8601 UTC, e.g. `2026-11-30T12:00:00.000Z`.
fn iso_millis(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(at).to_string()
}

/// A query parameter as a number within `min..=max`, or `default` when absent.
fn number(
    raw: Option<&String>,
    name: &str,
    default: usize,
    min: usize,
    max: usize,
) -> Result<usize, ApiError> {
    let Some(raw) = raw else { return Ok(default) };
    match raw.trim().parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ if max == usize::MAX => Err(ApiError::bad_request(format!(
            "{name} must be a whole number of at least {min}, got {raw:?}"
        ))),
        _ => Err(ApiError::bad_request(format!(
            "{name} must be a whole number from {min} to {max}, got {raw:?}"
        ))),
    }
}
