//! The operator console at `/console`: pages rendered from embedded minijinja templates,
//! with embedded scripts and styles (`console/` in this crate; no CDN, no build step). The
//! pages read the same JSON API any client reads, with the operator token the browser tab
//! keeps; the server side adds only `/api/console/overview` (the charts' history, the lag and
//! the group's members), see [`series`].

pub(crate) mod series;

use bytes::Bytes;
use http_body_util::Full;
use hyper::StatusCode;
use hyper::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderName, HeaderValue, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use minijinja::{Environment, context};
use ordering_http::Response;

/// Scripts, styles and data from this origin only: nothing inline, nothing fetched elsewhere.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                      script-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
                      base-uri 'none'; form-action 'self'";

/// A page of the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Overview,
    DeadLetters,
    Redrive,
    Orders,
}

impl Page {
    const ALL: [Page; 4] = [
        Page::Overview,
        Page::DeadLetters,
        Page::Redrive,
        Page::Orders,
    ];

    /// What the templates and the script call it.
    fn name(self) -> &'static str {
        match self {
            Page::Overview => "overview",
            Page::DeadLetters => "dead-letters",
            Page::Redrive => "redrive",
            Page::Orders => "orders",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Page::Overview => "Overview",
            Page::DeadLetters => "Dead letters",
            Page::Redrive => "Redrive",
            Page::Orders => "Orders",
        }
    }

    fn template(self) -> (&'static str, &'static str) {
        match self {
            Page::Overview => (
                "overview.html",
                include_str!("../../console/templates/overview.html"),
            ),
            Page::DeadLetters => (
                "dead_letters.html",
                include_str!("../../console/templates/dead_letters.html"),
            ),
            Page::Redrive => (
                "redrive.html",
                include_str!("../../console/templates/redrive.html"),
            ),
            Page::Orders => (
                "orders.html",
                include_str!("../../console/templates/orders.html"),
            ),
        }
    }
}

/// A file the pages load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    Script,
    Styles,
    ChartScript,
    ChartStyles,
}

impl Asset {
    fn body(self) -> &'static str {
        match self {
            Asset::Script => include_str!("../../console/assets/console.js"),
            Asset::Styles => include_str!("../../console/assets/console.css"),
            Asset::ChartScript => include_str!("../../console/assets/vendor/uPlot.iife.min.js"),
            Asset::ChartStyles => include_str!("../../console/assets/vendor/uPlot.min.css"),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Asset::Script | Asset::ChartScript => "text/javascript; charset=utf-8",
            Asset::Styles | Asset::ChartStyles => "text/css; charset=utf-8",
        }
    }
}

/// What every page shows of the service.
#[derive(Debug, Clone)]
pub(crate) struct Facts {
    pub(crate) token_configured: bool,
    pub(crate) dlq_topic: String,
    pub(crate) consumer_group: String,
}

/// The templates, parsed once.
pub(crate) struct Pages(Environment<'static>);

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages").finish_non_exhaustive()
    }
}

impl Pages {
    /// Parses the embedded templates; an error is a defect of this build (a test renders
    /// every page).
    pub(crate) fn new() -> Result<Self, minijinja::Error> {
        let mut env = Environment::new();
        env.add_template(
            "base.html",
            include_str!("../../console/templates/base.html"),
        )?;
        env.add_template(
            "filters.html",
            include_str!("../../console/templates/filters.html"),
        )?;
        for page in Page::ALL {
            let (name, source) = page.template();
            env.add_template(name, source)?;
        }
        Ok(Self(env))
    }

    fn html(&self, page: Page, facts: &Facts) -> Result<String, minijinja::Error> {
        self.0.get_template(page.template().0)?.render(context! {
            page => page.name(),
            title => page.title(),
            token_configured => facts.token_configured,
            dlq_topic => facts.dlq_topic,
            consumer_group => facts.consumer_group,
            version => env!("CARGO_PKG_VERSION"),
        })
    }

    /// `GET` of a page.
    pub(crate) fn render(&self, page: Page, facts: &Facts) -> Response {
        match self.html(page, facts) {
            Ok(html) => respond(
                Bytes::from(html),
                "text/html; charset=utf-8",
                // The page says whether a token is configured: never a stale one.
                "no-store",
            ),
            Err(error) => {
                tracing::error!(%error, page = page.name(), "a console page did not render");
                ordering_http::ApiError::internal(format!("the page did not render: {error}"))
                    .into_response()
            }
        }
    }
}

/// `GET` of an asset. Cached briefly: a new version of the binary brings new ones.
pub(crate) fn asset(asset: Asset) -> Response {
    respond(
        Bytes::from_static(asset.body().as_bytes()),
        asset.content_type(),
        "public, max-age=300",
    )
}

fn respond(body: Bytes, content_type: &'static str, cache: &'static str) -> Response {
    let mut response = hyper::Response::new(Full::new(body));
    *response.status_mut() = StatusCode::OK;
    let headers: [(HeaderName, &'static str); 6] = [
        (CONTENT_TYPE, content_type),
        (CACHE_CONTROL, cache),
        (CONTENT_SECURITY_POLICY, POLICY),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (X_FRAME_OPTIONS, "DENY"),
        (REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_renders_with_and_without_a_token() {
        let pages = Pages::new().unwrap();
        for page in Page::ALL {
            for token_configured in [true, false] {
                let facts = Facts {
                    token_configured,
                    dlq_topic: "dlq<&>".into(),
                    consumer_group: "group".into(),
                };
                let html = pages.html(page, &facts).unwrap();
                assert!(html.contains("dlq&lt;&amp;&gt;"), "escaped: {html}");
                assert!(html.contains(&format!("data-page=\"{}\"", page.name())));
                // The token is asked for only where one is configured.
                assert_eq!(html.contains("id=\"token-input\""), token_configured);
                let response = pages.render(page, &facts);
                assert_eq!(response.status(), 200, "{page:?}");
                assert!(
                    response.headers()[CONTENT_SECURITY_POLICY]
                        .to_str()
                        .unwrap()
                        .contains("script-src 'self'")
                );
            }
        }
    }
}
