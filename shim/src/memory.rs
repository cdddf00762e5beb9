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
