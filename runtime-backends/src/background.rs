//! Housekeeping that must not slow down the calls kubelet waits on.
//!
//! On a small node, a long file walk on a normal-priority thread takes a whole core from
//! the threads answering kubelet for as long as it runs. Jobs here run on a thread of their
//! own at the lowest CPU priority instead: any thread with work to do preempts them, and
//! they still progress (unlike `SCHED_IDLE`), so their results never stop coming.

use std::io;

/// Run `job` on a new thread named `name` at the lowest CPU priority (`SCHED_BATCH`, nice
/// 19); its result, or an error when the thread could not start or `job` panicked.
pub async fn at_lowest_priority<T: Send + 'static>(
    name: &str,
    job: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            lower_this_thread();
            let _ = done.send(job());
        })?;
    result
        .await
        .map_err(|_| io::Error::other(format!("{name}: the job ended without a result")))
}

/// `SCHED_BATCH` at nice 19 for the calling thread only. Failing is not fatal: the job
/// then runs at normal priority.
fn lower_this_thread() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param that lives across
    // the call, and SCHED_BATCH takes priority 0.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "cannot set SCHED_BATCH");
    }
    // On Linux, PRIO_PROCESS with a thread id sets that thread's nice value alone.
    // SAFETY: gettid has no preconditions; setpriority only reads its integer arguments.
    let lowered = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19)
    };
    if lowered != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "cannot set nice 19");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn this_thread() -> (i32, i32) {
        // SAFETY: reads of the calling thread's own scheduling attributes.
        unsafe {
            let tid = libc::gettid();
            (
                libc::sched_getscheduler(0),
                libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t),
            )
        }
    }

    #[tokio::test]
    async fn the_job_runs_lowered_and_the_caller_is_untouched() {
        let before = this_thread();
        let (policy, nice) = at_lowest_priority("test-low", this_thread).await.unwrap();
        assert_eq!(policy, libc::SCHED_BATCH);
        assert_eq!(nice, 19);
        assert_eq!(this_thread(), before);
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error() {
        let result = at_lowest_priority("test-panic", || -> u32 { panic!("boom") }).await;
        assert!(result.is_err());
    }
}
