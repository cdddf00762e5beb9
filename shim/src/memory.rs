//! Keeping crius's resident memory small on a full node (glibc's allocator only).
//!
//! glibc gives a threaded process up to eight allocation arenas per core and keeps memory
//! freed into each of them. crius's steady state allocates little, but a pull or a burst of
//! creates leaves freed pages behind in several arenas; two arenas and an explicit trim after
//! the bursts keep RSS close to what is live.
//!
//! glibc also raises its mmap threshold each time a large block is freed, so that after the
//! first few, the large buffers of a full ListContainers answer (hundreds of KiB at a thousand
//! containers, one per concurrent call) come from the heap and leave holes in it. A fixed
//! threshold keeps every such buffer in its own mapping, returned whole when freed.

/// Blocks this large or larger are mapped on their own (glibc's initial default, kept fixed).
const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Cap glibc's arenas and fix its mmap threshold. Call before the async runtime starts its
/// threads.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning and has no memory-safety preconditions;
    // it runs before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
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
