//! A soak with faults: cart-shell and two order-shell instances (one group) on PostgreSQL and
//! the embedded broker (its data in SQLite, so it survives a restart), a steady load of status
//! updates for MINUTES while a fault schedule kills and restarts each process (`kill -9`),
//! stops PostgreSQL and restarts the broker. Then, once order-shell caught up:
//! - every `202` is applied: each order shows its last accepted update or a later one it was
//!   sent (a request answered with an error may still have been published);
//! - no status went backwards in any look taken during the run;
//! - nothing was dead-lettered (every update is for an order that exists);
//! - memory: each process's resident set at its first and last sample.
//!
//! ```text
//! cargo build --release -p cart-shell -p order-shell
//! cargo run --release -p ordering-benches --bin soak -- [MINUTES] [RATE] [ORDERS]
//! ```
//! (defaults 10 minutes, 100 updates/s, 50 orders). Not part of `scripts/test`: RELIABILITY.md
//! has the figures of a run. Needs `scripts/broker install` and `scripts/postgres install`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ordering_benches::{Error, release_binary};
use ordering_http::testing::{ShellProcess, call_with, try_call_with};
use ordering_kafka::testing::{Storage, TestBroker, unique_topic};
use ordering_store::testing::TestPostgres;
use serde_json::json;
use tokio::sync::Mutex;

const TOKEN: &str = "soak-operator-token-3f9c";

/// What the load sent and what was accepted, per order: the numbers in the status `sNNNNNNN`.
#[derive(Default)]
struct Ledger {
    sent: HashMap<usize, u64>,
    accepted: HashMap<usize, u64>,
    /// The highest number each order was seen with, to catch one going backwards.
    seen: HashMap<usize, u64>,
    backwards: Vec<String>,
}

/// A process of the system, restarted by the faults; its resident set per incarnation.
struct Proc {
    name: &'static str,
    binary: PathBuf,
    env: Vec<(&'static str, String)>,
    shell: ShellProcess,
    /// (first, last) RSS sample in KiB of each incarnation.
    rss: Vec<(u64, u64)>,
}

impl Proc {
    fn start(name: &'static str, binary: &Path, env: Vec<(&'static str, String)>) -> Self {
        let shell = ShellProcess::start(binary, &env);
        Self {
            name,
            binary: binary.to_owned(),
            env,
            shell,
            rss: vec![(0, 0)],
        }
    }

    fn kill_and_restart(&mut self) {
        self.shell.kill();
        self.shell = ShellProcess::start(&self.binary, &self.env);
        self.rss.push((0, 0));
    }

    fn sample(&mut self) {
        let Some(kib) = self.shell.pid().and_then(rss_kib) else {
            return;
        };
        if let Some(last) = self.rss.last_mut() {
            if last.0 == 0 {
                last.0 = kib;
            }
            last.1 = kib;
        }
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn order_id(n: usize) -> String {
    format!("ORD-SOAK-{n:04}")
}

fn number_of(status: &str) -> Option<u64> {
    status.strip_prefix('s')?.parse().ok()
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let minutes: u64 = arg(0, "10").parse()?;
    let rate: u64 = arg(1, "100").parse()?;
    let orders: usize = arg(2, "50").parse()?;
    let (cart_bin, order_bin) = (
        release_binary("cart-shell")?,
        release_binary("order-shell")?,
    );

    let mut broker = TestBroker::start_with(Storage::Sqlite);
    let mut postgres = TestPostgres::start();
    let store = postgres.create_database().await;
    let data = tempfile::tempdir()?;
    let env = vec![
        ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
        ("KAFKA_TOPIC", unique_topic("orders")),
        ("KAFKA_STATUS_UPDATE_TOPIC", unique_topic("updates")),
        ("KAFKA_DLQ_TOPIC", unique_topic("dlq")),
        ("KAFKA_CONSUMER_GROUP", unique_topic("group")),
        ("KAFKA_SESSION_TIMEOUT_MS", "6000".to_owned()),
        ("ORDER_STORE_URL", store),
        (
            "IDEMPOTENCY_DB",
            data.path().join("keys.db").display().to_string(),
        ),
        ("OPERATOR_TOKEN", TOKEN.to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let procs = Arc::new(Mutex::new(vec![
        Proc::start("cart-shell", &cart_bin, env.clone()),
        Proc::start("order-shell A", &order_bin, env.clone()),
        Proc::start("order-shell B", &order_bin, env.clone()),
    ]));
    let cart_url = |procs: &[Proc]| procs[0].shell.url("");
    let order_url = |procs: &[Proc], i: usize| procs[1 + i % 2].shell.url("");

    // The orders, then wait until order-shell has them all.
    for n in 0..orders {
        let base = cart_url(&procs.lock().await);
        let body = json!({"orderId": order_id(n), "numItems": 1 + n % 5}).to_string();
        let reply = call_with(
            "POST",
            &format!("{base}/api/create-order"),
            Some(body.as_bytes()),
            &[],
        )
        .await;
        if reply.status != 201 {
            return Err(
                format!("creating {}: {} {}", order_id(n), reply.status, reply.text).into(),
            );
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let base = order_url(&procs.lock().await, 0);
        let stats = try_call_with("GET", &format!("{base}/api/stats?limit=1"), None, &[]).await;
        if stats.is_ok_and(|s| s.json["totalOrders"] == json!(orders)) {
            break;
        }
        if Instant::now() > deadline {
            return Err("order-shell never showed the orders".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("{orders} orders created; {minutes} min of {rate} updates/s with faults");

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let (requests, accepted_count) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    // The load: one update in flight per order at a time, so that an order's sends reach the
    // topic in the order they were numbered.
    let load: Vec<_> = (0..orders)
        .map(|n| {
            let (procs, ledger, stop) = (procs.clone(), ledger.clone(), stop.clone());
            let (requests, accepted_count) = (requests.clone(), accepted_count.clone());
            let every = Duration::from_secs_f64(orders as f64 / rate as f64);
            tokio::spawn(async move {
                let mut next = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let base = cart_url(&procs.lock().await);
                    let body = json!({"orderId": order_id(n), "status": format!("s{next:08}")})
                        .to_string();
                    ledger.lock().await.sent.insert(n, next);
                    requests.fetch_add(1, Ordering::Relaxed);
                    let reply = try_call_with(
                        "PUT",
                        &format!("{base}/api/update-order"),
                        Some(body.as_bytes()),
                        &[],
                    )
                    .await;
                    if reply.is_ok_and(|r| r.status == 202) {
                        accepted_count.fetch_add(1, Ordering::Relaxed);
                        ledger.lock().await.accepted.insert(n, next);
                    }
                    next += 1;
                    tokio::time::sleep(every.saturating_sub(started.elapsed())).await;
                }
            })
        })
        .collect();

    // Looks during the run: sampled orders' statuses must never go down; RSS samples.
    let watcher = {
        let (procs, ledger, stop) = (procs.clone(), ledger.clone(), stop.clone());
        tokio::spawn(async move {
            let mut round = 0usize;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                for p in procs.lock().await.iter_mut() {
                    p.sample();
                }
                for n in (round % 5..orders).step_by(5) {
                    let base = order_url(&procs.lock().await, round);
                    look(&base, n, &ledger).await;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };

    // The faults, in turn, every 30 s.
    let started = Instant::now();
    let run_for = Duration::from_secs(minutes * 60);
    let mut faults = Vec::new();
    let mut turn = 0usize;
    while started.elapsed() + Duration::from_secs(30) < run_for {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let at = started.elapsed().as_secs();
        let fault = match turn % 5 {
            0 => {
                procs.lock().await[1].kill_and_restart();
                "kill -9 order-shell A, restart"
            }
            1 => {
                postgres.stop();
                tokio::time::sleep(Duration::from_secs(10)).await;
                postgres.restart();
                "stop PostgreSQL for 10 s"
            }
            2 => {
                procs.lock().await[0].kill_and_restart();
                "kill -9 cart-shell, restart"
            }
            3 => {
                broker.stop();
                tokio::time::sleep(Duration::from_secs(5)).await;
                broker.restart();
                "stop the broker for 5 s"
            }
            _ => {
                procs.lock().await[2].kill_and_restart();
                "kill -9 order-shell B, restart"
            }
        };
        println!("{at:>4} s: {fault}");
        faults.push(fault);
        turn += 1;
    }
    tokio::time::sleep(run_for.saturating_sub(started.elapsed())).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await?;
    }
    watcher.await?;
    for p in procs.lock().await.iter_mut() {
        p.sample();
    }

    // Caught up: every order shows its last accepted update, or a later one it was sent.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut behind;
    loop {
        behind = Vec::new();
        for n in 0..orders {
            let base = order_url(&procs.lock().await, n);
            let shown = look(&base, n, &ledger).await;
            let l = ledger.lock().await;
            let (accepted, sent) = (l.accepted.get(&n).copied().unwrap_or(0), l.sent[&n]);
            match shown {
                Some(s) if s >= accepted && s <= sent => {}
                other => behind.push(format!(
                    "{} shows {other:?}, accepted {accepted}",
                    order_id(n)
                )),
            }
        }
        if behind.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let base = order_url(&procs.lock().await, 0);
    let dlq = call_with(
        "GET",
        &format!("{base}/api/dlq/messages?limit=1000"),
        None,
        &[("authorization", &format!("Bearer {TOKEN}"))],
    )
    .await;
    let letters = dlq.json["messages"].as_array().map_or(0, Vec::len);

    let l = ledger.lock().await;
    println!();
    println!(
        "requests {}, accepted (202) {}, faults {}",
        requests.load(Ordering::Relaxed),
        accepted_count.load(Ordering::Relaxed),
        faults.len()
    );
    println!(
        "not applied: {} {:?}",
        behind.len(),
        behind.iter().take(5).collect::<Vec<_>>()
    );
    println!(
        "went backwards: {} {:?}",
        l.backwards.len(),
        l.backwards.iter().take(5).collect::<Vec<_>>()
    );
    println!("dead letters: {letters} (answer {})", dlq.status);
    for p in procs.lock().await.iter() {
        let incarnations: Vec<String> = p
            .rss
            .iter()
            .map(|(first, last)| format!("{} -> {} MiB", first / 1024, last / 1024))
            .collect();
        println!("RSS {}: {}", p.name, incarnations.join(", "));
    }
    let failed = !behind.is_empty() || !l.backwards.is_empty() || letters != 0 || dlq.status != 200;
    if failed {
        return Err("the soak found lost, backward or dead-lettered updates".into());
    }
    println!("lost: 0, backwards: 0, dead-lettered: 0");
    Ok(())
}

/// The number of `n`'s status as the order-shell at `base` shows it, checked against what
/// was seen before; `None` when it does not answer.
async fn look(base: &str, n: usize, ledger: &Mutex<Ledger>) -> Option<u64> {
    let reply = try_call_with(
        "GET",
        &format!("{base}/api/order-details?orderId={}", order_id(n)),
        None,
        &[],
    )
    .await
    .ok()?;
    if reply.status != 200 {
        return None;
    }
    let status = reply.json["data"]["status"].as_str().unwrap_or_default();
    let shown = if status == "pending" {
        0
    } else {
        number_of(status)?
    };
    let mut l = ledger.lock().await;
    let before = l.seen.insert(n, shown).unwrap_or(0);
    if shown < before {
        l.backwards
            .push(format!("{}: s{before} then s{shown}", order_id(n)));
        l.seen.insert(n, before);
    }
    Some(shown)
}
