//! How the shells' processes allocate.

/// glibc malloc arenas the shells keep (unless `MALLOC_ARENA_MAX` says otherwise).
const ARENAS: i32 = 2;

/// Caps glibc's malloc arenas at two (`ARENAS`). glibc gives threads that allocate at the same
/// time arenas of their own (up to eight per core) and seldom hands their free memory back, so
/// a burst of work spread over many threads (librdkafka's, one set per topic reader, and the
/// blocking pool's) leaves each thread's peak behind: eight clients paging through a topic
/// grew order-shell's peak memory by 37-71 MiB, by 4-17 MiB with two arenas (BENCHMARKS.md,
/// "Topic scans: memory"). The shells' threads mostly wait on the network, so sharing arenas
/// costs little. Does nothing on other C libraries, or when `MALLOC_ARENA_MAX` is set.
pub fn cap_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt only sets a parameter of the allocator, under the allocator's own lock;
    // no memory is touched.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}
