//! Keeping crius's resident memory small on a full node (glibc's allocator only).
//!
//! glibc gives a threaded process up to eight allocation arenas per core and keeps memory
//! freed into each of them. crius's steady state allocates little, but a pull or a burst of
//! creates leaves freed pages behind in several arenas; one arena and an explicit trim after
//! the bursts keep RSS close to what is live. With two arenas, 50 clients listing 1000
//! kubelet-labelled containers each second (with pods coming and going) grew the second one
//! by ~6 MiB of free pages: RSS 36.6–38.4 MiB at the end of that load against 33.2–33.6 MiB
//! with one, while what was live stayed the same.

/// Cap glibc's arenas. Call before the async runtime starts its threads.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning and has no memory-safety preconditions;
    // it runs before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
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

/// Answers at least this large (a full list on a full node) are noted with
/// [`note_large_answer`].
const LARGE_ANSWER: usize = 64 * 1024;

/// Note an answer of `len` bytes, if it is large (see [`note_large_answer`]).
pub fn note_answer(len: usize) {
    if len >= LARGE_ANSWER {
        note_large_answer();
    }
}

/// Note that a large answer was built (a full list on a full node: hundreds of KiB in
/// buffers, freed once it is sent). While such answers keep coming, a trim returns what they
/// left free once a second; a last trim follows a second after the last of them, when its
/// buffers are gone too, so a node that just stopped being listed is not left at its peak.
pub fn note_large_answer() {
    wake_trimmer();
}

/// Note that a container or a pod was removed. Its records, encoded entries and labels go
/// back to the heap in pieces among live ones, and no large answer may follow to trim them
/// (the lists shrink as the node empties): a trim a second after the last removal of a
/// burst returns them. A node filled with 1000 containers and emptied again, cycle after
/// cycle, left crius at rest with 11.1–11.3 MiB of anonymous memory without this trim
/// (four cycles) and 6.4–7.0 MiB with it (three; RSS 22.0 against 17.3–18.0 MiB).
pub fn note_removal() {
    wake_trimmer();
}

/// Count a note and wake the trimming task (started on first use).
fn wake_trimmer() {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    static TRIMMER: Trimmer = Trimmer {
        notes: std::sync::atomic::AtomicU64::new(0),
        wake: tokio::sync::Notify::const_new(),
        task: std::sync::Mutex::new(None),
    };
    TRIMMER
        .notes
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    if let Ok(mut task) = TRIMMER.task.lock() {
        // Started on first use, and again should its runtime have gone (tests run several).
        if task
            .as_ref()
            .is_none_or(tokio::task::JoinHandle::is_finished)
        {
            *task = Some(runtime.spawn(trim_after_notes(&TRIMMER)));
        }
    }
    TRIMMER.wake.notify_one();
}

/// The background trims behind [`note_large_answer`] and [`note_removal`].
struct Trimmer {
    /// Notes so far (large answers, removals).
    notes: std::sync::atomic::AtomicU64,
    wake: tokio::sync::Notify,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Trims made by [`trim_after_notes`].
static TRIMS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

async fn trim_after_notes(trimmer: &'static Trimmer) {
    use std::sync::atomic::Ordering;
    // Notes (answers, removals) made before the last trim began its wait: their memory was
    // freed when it ran.
    let mut covered = 0;
    loop {
        trimmer.wake.notified().await;
        if trimmer.notes.load(Ordering::SeqCst) == covered {
            // A wake-up left from notes the last trim covered.
            continue;
        }
        loop {
            let seen = trimmer.notes.load(Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            if tokio::task::spawn_blocking(release_free).await.is_err() {
                return;
            }
            TRIMS.fetch_add(1, Ordering::SeqCst);
            covered = seen;
            if trimmer.notes.load(Ordering::SeqCst) == seen {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_trim_follows_large_answers_and_removals_once_a_second_and_after_the_last() {
        let trims = || TRIMS.load(Ordering::SeqCst);
        let before = trims();
        note_large_answer();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(trims() - before, 1, "one trim a second after a lone answer");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(trims() - before, 1, "no trims without answers");
        // Answers every 200 ms for 2 s: a trim about each second, the last one a second
        // after the last answer, then no more.
        let burst = trims();
        for _ in 0..10 {
            note_large_answer();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The last answer was 200 ms ago; 0.95 s after it, then 2 s after it.
        tokio::time::sleep(Duration::from_millis(750)).await;
        let before_last = trims();
        tokio::time::sleep(Duration::from_millis(1050)).await;
        assert_eq!(
            trims(),
            before_last + 1,
            "a trim a second after the last answer"
        );
        let made = trims() - burst;
        assert!((2..=4).contains(&made), "{made} trims for a 2 s burst");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(trims() - burst, made, "no trims once the answers stopped");
        // A removal is followed by a trim the same way.
        let removed = trims();
        note_removal();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(trims() - removed, 1, "one trim a second after a removal");
    }
}
