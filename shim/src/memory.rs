//! Keeping crius's resident memory small on a full node (glibc's allocator only).
//!
//! glibc gives a threaded process up to eight allocation arenas per core and keeps memory
//! freed into each of them. crius's steady state allocates little, but a pull or a burst of
//! creates leaves freed pages behind in several arenas; two arenas and an explicit trim after
//! the bursts keep RSS close to what is live.

/// Cap glibc's arenas. Call before the async runtime starts its threads.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning and has no memory-safety preconditions;
    // it runs before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Return freed heap memory to the operating system.
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory held by the allocator; it is thread-safe
    // and has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Note that a large answer was built (a full list on a full node: hundreds of KiB in
/// buffers, freed once it is sent). At most once a second, a trim then returns what such
/// answers left free, so a node listed every second keeps its RSS close to what is live.
pub fn note_large_answer() {
    use std::sync::atomic::{AtomicU64, Ordering};
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    static LAST_MS: AtomicU64 = AtomicU64::new(0);
    let now = u64::try_from(
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_millis(),
    )
    .unwrap_or(u64::MAX);
    let last = LAST_MS.load(Ordering::Relaxed);
    if now.saturating_sub(last) < 1000
        || LAST_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        drop(runtime.spawn_blocking(release_free));
    }
}
