//! One tracing span, one latency histogram and a count per gRPC status code for each RPC
//! (DESIGN.md decisions 10 and 14; `crate::metrics` exposes them).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::error::Error;
use crate::metrics::{LatencyHistogram, GRPC_CODES};

/// One method's latencies and its answers by gRPC status code.
pub struct RpcStats {
    pub latency: LatencyHistogram,
    codes: [AtomicU64; GRPC_CODES.len()],
}

impl RpcStats {
    fn new() -> Self {
        Self {
            latency: LatencyHistogram::new(),
            codes: [const { AtomicU64::new(0) }; GRPC_CODES.len()],
        }
    }

    pub fn record(&self, elapsed: Duration, code: tonic::Code) {
        self.latency.observe(elapsed);
        if let Some(calls) = self.codes.get(code as usize) {
            calls.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Calls answered with the code numbered `code` (an index into [`GRPC_CODES`]).
    pub fn calls_with(&self, code: usize) -> u64 {
        self.codes
            .get(code)
            .map_or(0, |calls| calls.load(Ordering::Relaxed))
    }
}

/// Every method's stats, created once so recording never takes a lock or allocates.
fn all() -> &'static HashMap<&'static str, RpcStats> {
    static ALL: OnceLock<HashMap<&'static str, RpcStats>> = OnceLock::new();
    ALL.get_or_init(|| {
        cri_api::RUNTIME_SERVICE
            .iter()
            .chain(cri_api::IMAGE_SERVICE)
            .map(|&m| (m, RpcStats::new()))
            .collect()
    })
}

/// One CRI method's stats; `None` for a name that is not a CRI method.
pub fn stats(method: &str) -> Option<&'static RpcStats> {
    all().get(method)
}

/// Every CRI method with its stats, runtime service first, in the order the proto lists them.
pub fn methods() -> impl Iterator<Item = (&'static str, &'static RpcStats)> {
    let all = all();
    cri_api::RUNTIME_SERVICE
        .iter()
        .chain(cri_api::IMAGE_SERVICE)
        .filter_map(move |&m| all.get(m).map(|stats| (m, stats)))
}

/// For the logs; called inside the macros, so a disabled level never pays the division.
fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

/// Run one RPC inside its span, timing it and mapping its error to a gRPC status.
pub async fn call<T, F>(method: &'static str, work: F) -> Result<tonic::Response<T>, tonic::Status>
where
    F: Future<Output = Result<T, Error>>,
{
    let span = tracing::debug_span!("rpc", method);
    let started = Instant::now();
    let result = work.instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let stats = stats(method);
    let _entered = span.enter();
    match result {
        Ok(value) => {
            if let Some(stats) = stats {
                stats.record(elapsed, tonic::Code::Ok);
            }
            tracing::debug!(latency_us = micros(elapsed), "ok");
            Ok(tonic::Response::new(value))
        }
        Err(err) => {
            let status = tonic::Status::from(err);
            if let Some(stats) = stats {
                stats.record(elapsed, status.code());
            }
            if status.code() == tonic::Code::NotFound || status.code() == tonic::Code::Unimplemented
            {
                tracing::debug!(latency_us = micros(elapsed), code = ?status.code(), error = status.message(), "failed");
            } else {
                tracing::warn!(latency_us = micros(elapsed), code = ?status.code(), error = status.message(), "failed");
            }
            Err(status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version() -> &'static RpcStats {
        stats("Version").unwrap()
    }

    #[tokio::test]
    async fn calls_are_counted_per_method_and_status_code() {
        let calls = version().latency.count();
        let ok = version().calls_with(tonic::Code::Ok as usize);
        let not_found = version().calls_with(tonic::Code::NotFound as usize);
        assert!(call("Version", async { Ok::<_, Error>(1) }).await.is_ok());
        let err = call("Version", async {
            Err::<u32, _>(Error::NotFound("x".into()))
        })
        .await;
        assert_eq!(err.unwrap_err().code(), tonic::Code::NotFound);
        assert_eq!(version().latency.count(), calls + 2);
        assert_eq!(version().calls_with(tonic::Code::Ok as usize), ok + 1);
        assert_eq!(
            version().calls_with(tonic::Code::NotFound as usize),
            not_found + 1
        );
    }

    #[test]
    fn every_cri_method_has_stats_and_every_code_a_name() {
        assert_eq!(
            methods().count(),
            cri_api::RUNTIME_SERVICE.len() + cri_api::IMAGE_SERVICE.len()
        );
        assert_eq!(
            GRPC_CODES[tonic::Code::Unauthenticated as usize],
            "Unauthenticated"
        );
        assert_eq!(GRPC_CODES[tonic::Code::NotFound as usize], "NotFound");
    }
}
