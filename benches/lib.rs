//! What the load-run binaries share; the criterion benchmarks are the `[[bench]]` targets of
//! this package (`cargo bench`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// `target/release/<name>`, the shell a load run measures; an error saying how to build it
/// when it is missing.
pub fn release_binary(name: &str) -> Result<PathBuf, Error> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/release")
        .join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: cargo build --release -p {name}",
            path.display()
        )
        .into())
    }
}

/// Runs `concurrency` loops of `one` (given a request number) for `seconds`; completions
/// per second.
pub async fn load<F, Fut>(concurrency: usize, seconds: u64, one: F) -> Result<f64, Error>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Error>> + Send,
{
    let one = Arc::new(one);
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency as u64)
        .map(|w| {
            let (one, done, stop) = (one.clone(), done.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = w;
                while !stop.load(Ordering::Relaxed) {
                    one(n).await?;
                    done.fetch_add(1, Ordering::Relaxed);
                    n += concurrency as u64;
                }
                Ok::<_, Error>(())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let count = done.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    for worker in workers {
        worker.await??;
    }
    Ok(count as f64 / elapsed.as_secs_f64())
}
