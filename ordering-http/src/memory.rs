//! How the shells' processes allocate.

/// glibc malloc arenas the shells keep (unless `MALLOC_ARENA_MAX` says otherwise).
const ARENAS: i32 = 2;

/// Caps glibc's malloc arenas at two (`ARENAS`). glibc gives threads that allocate at the same
/// time arenas of their own (up to eight per core) and seldom hands their free memory back, so
/// a burst of work spread over many threads (librdkafka's, one set per topic reader, and the
/// blocking pool's) leaves each thread's peak behind: eight clients paging through a topic
/// grew order-shell's peak memory by 37-71 MiB, by 4-17 MiB with two arenas (BENCHMARKS.md,
/// "Topic scans: memory"). The shells' threads mostly wait on the network, so sharing arenas
/// costs little. Does nothing on other C libraries, or when `MALLOC_ARENA_MAX` or a
/// `glibc.malloc.arena_max` tunable is set.
///
/// Must run before any other thread exists: glibc fixes its arena limit as threads first
/// allocate, and `mallopt` is not thread-safe. [`run`] does it in that order.
fn cap_malloc_arenas() {
    let tunable = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("arena_max"));
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() || tunable {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: called by `run` on the main thread before the runtime starts any other thread
    // (glibc's mallopt is MT-unsafe); it only sets a parameter of the allocator.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// A shell's `main`: caps the malloc arenas while the process has one thread, then runs
/// `main` on a multi-threaded tokio runtime (what `#[tokio::main]` would build, after the
/// cap instead of before it).
pub fn run<F>(service: &str, main: impl FnOnce() -> F) -> std::process::ExitCode
where
    F: std::future::Future<Output = std::process::ExitCode>,
{
    cap_malloc_arenas();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(main()),
        Err(error) => {
            eprintln!("{service}: cannot start the async runtime: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
