//! The operator console in a real browser: headless Chromium, driven over WebDriver by
//! chromedriver (Debian's `chromium` and `chromium-driver`, which `scripts/test` installs),
//! against real shells, a real broker and a SQLite store. An operator enters the token once,
//! finds a dead-lettered status update by its order id, reads its decoded payload, previews a
//! redrive, sends it, and sees the order's history gain the status.
//!
//! Screenshots of every page are written to `target/console-screenshots/`, or to the
//! directory `CONSOLE_SCREENSHOTS` names (`docs/console` refreshes the README's).

#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{OPERATOR_TOKEN, System, eventually};
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use ordering_kafka::testing::{Storage, TestBroker};
use serde_json::{Value, json};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const WAIT: Duration = Duration::from_secs(60);

/// chromedriver on a free port, and one headless Chromium session through it.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    shots: PathBuf,
}

impl Browser {
    async fn start() -> Self {
        for binary in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                Path::new(binary).is_file(),
                "{binary} is missing: run the tests with scripts/test, which installs Debian's chromium and chromium-driver"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().expect("a profile directory");
        // As root, in a sandbox with no network: no sandboxing of its own, and none of the
        // background connections a closed network refuses.
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=1280,1500".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({"binary": CHROMIUM, "args": args}),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + WAIT;
        let client = loop {
            let connected =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(capabilities.clone())
                    .connect(&url)
                    .await;
            match connected {
                Ok(client) => break client,
                Err(error) if Instant::now() < deadline => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => panic!("no browser session through chromedriver: {error}"),
            }
        };
        let shots = std::env::var_os("CONSOLE_SCREENSHOTS")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots")
            });
        std::fs::create_dir_all(&shots).expect("the screenshot directory");
        Self {
            client,
            driver,
            _profile: profile,
            shots,
        }
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("the page loads");
    }

    async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} never appeared: {e}"))
    }

    /// Waits until the text of `css` satisfies `check`, and gives it.
    async fn text_until(&self, css: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(element) = self.client.find(Locator::Css(css)).await
                && let Ok(text) = element.text().await
            {
                if check(&text) {
                    return text;
                }
                last = text;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("{css} never showed what was expected; last: {last:?}");
    }

    async fn script(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .expect("the script runs")
    }

    /// Presses Tab from the top of the page until focus has gone round, and checks that the
    /// skip link came first and that every visible control was reached.
    async fn tab_reaches_every_control(&self, page: &str) {
        // Let the page's script draw what it loads (rows and their buttons) first: until the
        // controls stay the same for a second (a loaded machine draws late), 15 s at most.
        let count = format!("return {CONTROLS}.map((e) => e.outerHTML).join('')");
        let (mut last, mut same_since) = (Value::Null, std::time::Instant::now());
        let settle = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < settle {
            let now = self.script(&count).await;
            if now != last {
                (last, same_since) = (now, std::time::Instant::now());
            } else if same_since.elapsed() >= Duration::from_secs(1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.script(
            "window.scrollTo(0, 0); document.activeElement && document.activeElement.blur();
             window.__focused = [];
             document.addEventListener('focusin', (e) => window.__focused.push(e.target));",
        )
        .await;
        let controls = self.script(&format!("return {CONTROLS}.length")).await;
        // A date-time input takes a Tab per part (month, day, year, hours, ...).
        let presses = controls.as_u64().unwrap_or(0) * 3 + 20;
        // As a person would: key presses to whatever has focus (WebDriver's actions), not
        // keys sent to a chosen element, which would focus it first.
        let tab = '\u{e004}';
        for _ in 0..presses {
            let press = KeyActions::new("keyboard".into())
                .then(KeyAction::Down { value: tab })
                .then(KeyAction::Up { value: tab });
            self.client.perform_actions(press).await.expect("Tab");
        }
        let first = self
            .script("return window.__focused[0] ? window.__focused[0].className : ''")
            .await;
        assert_eq!(first, json!("skip-link"), "{page}: the first Tab");
        let missed = self
            .script(&format!(
                "const seen = new Set(window.__focused);
                 return {CONTROLS}.filter((e) => !seen.has(e))
                     .map((e) => e.outerHTML.slice(0, 80));"
            ))
            .await;
        assert_eq!(missed, json!([]), "{page}: controls Tab never reached");
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("the screenshot is written");
        eprintln!("screenshot: {}", path.display());
    }

    /// No page keeps the token where another could read it: not in the address, not in the
    /// document, not in local storage.
    async fn assert_token_nowhere_but_the_tab(&self) {
        let url = self.client.current_url().await.expect("the address");
        assert!(!url.as_str().contains(OPERATOR_TOKEN), "{url}");
        let source = self.client.source().await.expect("the document");
        assert!(!source.contains(OPERATOR_TOKEN), "the token is in the page");
        let stored = self.script("return JSON.stringify(localStorage)").await;
        assert!(!stored.to_string().contains(OPERATOR_TOKEN), "{stored}");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_previews_and_redrives_a_dead_letter_in_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("orders.db").display());
    let system = System::start_with(
        TestBroker::start_with(Storage::Memory),
        &[("ORDER_STORE_URL", store), ("DLQ_MAX_RETRIES", "1".into())],
    );
    system.wait_until_consuming().await;

    // Updates for orders that do not exist yet: dead letters. One of them, CON-1, is the
    // operator's; the others make the table a table.
    assert_eq!(system.create("CON-OK", 2).await.status, 201);
    for (id, status) in [
        ("CON-2", "paid"),
        ("CON-1", "shipped"),
        ("CON-3", "delivered"),
    ] {
        assert_eq!(system.update(id, status).await.status, 202);
    }
    eventually("three dead letters", || async {
        (system.dead_letters().await.len() == 3).then_some(())
    })
    .await;
    // CON-1 arrives after its update was given up on: the letter is worth sending back now.
    assert_eq!(system.create("CON-1", 3).await.status, 201);
    eventually("CON-1 stored", || async {
        (system.order_details("CON-1").await.status == 200).then_some(())
    })
    .await;

    // Refreshing the README's screenshots: a few minutes of traffic first, so that the
    // charts have something to show.
    if std::env::var_os("CONSOLE_SCREENSHOTS").is_some() {
        traffic(&system, Duration::from_secs(150)).await;
    }
    let browser = Browser::start().await;
    let console = |path: &str| system.order.url(path);

    // Overview: the token is asked for once; the parts' health, the group, live charts.
    browser.goto(&console("/console")).await;
    browser
        .find("#token-input")
        .await
        .send_keys(OPERATOR_TOKEN)
        .await
        .unwrap();
    browser.find("#token-save").await.click().await.unwrap();
    browser
        .text_until("#token-state", |t| t.contains("Token set"))
        .await;
    browser
        .text_until("#health li[data-part=\"broker\"]", |t| {
            t.contains("available")
        })
        .await;
    browser
        .text_until("#instances tbody", |t| t.contains(&system.topics[1]))
        .await;
    // Two samples make the first point of a chart (one every five seconds).
    browser
        .text_until("#chart-records-latest", |t| {
            t.chars().any(|c| c.is_ascii_digit())
        })
        .await;
    browser.screenshot("overview").await;

    // Dead letters, found by order id: the decoded payload, the raw bytes, the history.
    browser
        .goto(&console("/console/dead-letters?orderId=CON-1"))
        .await;
    let rows = "#letters tbody tr[data-dlq-offset]";
    browser.text_until(rows, |t| t.contains("CON-1")).await;
    let shown = browser
        .script("return document.querySelectorAll('#letters tbody tr[data-dlq-offset]').length")
        .await;
    assert_eq!(shown, json!(1), "the filter keeps CON-1's letter only");
    browser
        .find(&format!("{rows} button.show-letter"))
        .await
        .click()
        .await
        .unwrap();
    let payload = browser
        .text_until("#letter-json", |t| t.contains("CON-1"))
        .await;
    let decoded: Value = serde_json::from_str(&payload).expect("the payload is JSON");
    assert_eq!(decoded["orderId"], "CON-1", "{payload}");
    assert_eq!(decoded["status"], "shipped", "{payload}");
    let hex = browser.text_until("#letter-hex", |t| !t.is_empty()).await;
    assert!(hex.starts_with("00000000"), "offsets and bytes: {hex}");
    browser.screenshot("dead-letters").await;
    browser.assert_token_nowhere_but_the_tab().await;

    // Redrive of the ticked letter: a dry run first, then the run, letter by letter.
    browser
        .find(&format!("{rows} input.select-letter"))
        .await
        .click()
        .await
        .unwrap();
    browser
        .find("#redrive-selected")
        .await
        .click()
        .await
        .unwrap();
    browser
        .text_until("#redrive-letters", |t| !t.trim().is_empty())
        .await;
    let confirm = browser.find("#confirm-redrive").await;
    assert!(
        !confirm.is_enabled().await.unwrap(),
        "nothing is sent before a preview"
    );
    browser.find("#dry-run").await.click().await.unwrap();
    browser
        .find("#preview-letters tr.letter-outcome[data-outcome=\"wouldRepublish\"]")
        .await;
    let previewed = browser
        .script("return document.querySelectorAll('#preview-letters tr.letter-outcome').length")
        .await;
    assert_eq!(previewed, json!(1), "only the chosen letter");
    browser.screenshot("redrive").await;
    assert_eq!(
        history_statuses(&system).await,
        ["pending"],
        "a dry run changes nothing"
    );
    browser
        .find("#confirm-redrive")
        .await
        .click()
        .await
        .unwrap();
    browser
        .find("#result-letters tr.letter-outcome[data-outcome=\"republished\"]")
        .await;

    // The order: its history gains the status the letter carried.
    browser
        .goto(&console("/console/orders?orderId=CON-1"))
        .await;
    let deadline = Instant::now() + WAIT;
    loop {
        let history = browser.text_until("#order-history", |_| true).await;
        if history.contains("shipped") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the history never showed shipped: {history}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        browser.find("#order-lookup").await.click().await.unwrap();
    }
    let statuses = browser
        .script("return [...document.querySelectorAll('#order-history tr.history-entry td.status')].map(td => td.textContent.trim())")
        .await;
    assert_eq!(statuses, json!(["pending", "shipped"]));
    browser
        .text_until("#order-letters", |t| t.contains("OrderNotFound"))
        .await;
    browser.screenshot("orders").await;
    assert_eq!(history_statuses(&system).await, ["pending", "shipped"]);

    // Keyboard: on every page, Tab from the top reaches every control, the skip link first.
    for page in [
        "/console",
        "/console/dead-letters?orderId=CON-1",
        "/console/redrive?letters=0:1",
        "/console/orders?orderId=CON-1",
    ] {
        browser.goto(&console(page)).await;
        browser.find("#main").await;
        browser.tab_reaches_every_control(page).await;
    }
    browser.client.set_window_size(360, 800).await.unwrap();
    for page in [
        "/console",
        "/console/dead-letters",
        "/console/orders?orderId=CON-1",
    ] {
        browser.goto(&console(page)).await;
        browser.find("#main").await;
        let overflow = browser
            .script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
            .await;
        let wide = browser.script(WIDER_THAN_THE_WINDOW).await;
        assert!(
            overflow.as_i64().unwrap_or(1) <= 0,
            "{page} scrolls sideways by {overflow}px: {wide}"
        );
    }
    browser.screenshot("narrow").await;
    browser.assert_token_nowhere_but_the_tab().await;
}

/// The page's visible controls, in a script.
const CONTROLS: &str = "[...document.querySelectorAll(
    'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea, [tabindex=\"0\"]'
)].filter((e) => e.offsetParent !== null)";

/// The elements that stick out of a narrow window (outside the tables' own scroll regions).
const WIDER_THAN_THE_WINDOW: &str = "
    const width = document.documentElement.clientWidth;
    return [document.documentElement.scrollWidth, width, window.innerWidth, ...[...document.querySelectorAll('body *')]
        .filter(e => e.getBoundingClientRect().right > width + 1 || e.scrollWidth > width + 1)
        .slice(0, 12)
        .map(e => `${e.tagName.toLowerCase()}#${e.id}.${e.className} ${Math.round(e.getBoundingClientRect().right)} ${e.scrollWidth}`)];";

/// Orders, their updates, and now and then an update of an order that never comes (a dead
/// letter), for `time`.
async fn traffic(system: &System, time: Duration) {
    let end = Instant::now() + time;
    let mut n = 0;
    while Instant::now() < end {
        let id = format!("TR-{n}");
        if n % 20 == 19 {
            system.update(&format!("{id}-MISSING"), "shipped").await;
        } else {
            system.create(&id, 2).await;
            system.update(&id, "paid").await;
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(50 + (n % 7) * 20)).await;
    }
}

/// CON-1's history as the API gives it.
async fn history_statuses(system: &System) -> Vec<String> {
    let reply =
        ordering_http::testing::get(&system.order.url("/api/order-history?orderId=CON-1")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap_or_default().to_owned())
        .collect()
}
