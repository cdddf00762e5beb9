//! One tracing span and one latency histogram per RPC (DESIGN.md decision 10).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use tracing::Instrument;

use crate::error::Error;

/// Upper bounds of the latency buckets, in microseconds.
const BUCKETS_US: [u64; 12] = [
    10,
    25,
    50,
    100,
    250,
    500,
    1_000,
    5_000,
    25_000,
    100_000,
    1_000_000,
    u64::MAX,
];

#[derive(Default)]
pub struct Histogram {
    pub buckets: [AtomicU64; 12],
    pub count: AtomicU64,
    pub sum_us: AtomicU64,
    pub errors: AtomicU64,
}

impl Histogram {
    fn record(&self, micros: u64, failed: bool) {
        let slot = BUCKETS_US
            .iter()
            .position(|&b| micros <= b)
            .unwrap_or(BUCKETS_US.len() - 1);
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(micros, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Every method's histogram, created once so recording never takes a lock.
pub fn histograms() -> &'static HashMap<&'static str, Histogram> {
    static ALL: OnceLock<HashMap<&'static str, Histogram>> = OnceLock::new();
    ALL.get_or_init(|| {
        cri_api::RUNTIME_SERVICE
            .iter()
            .chain(cri_api::IMAGE_SERVICE)
            .map(|&m| (m, Histogram::default()))
            .collect()
    })
}

/// Run one RPC inside its span, timing it and mapping its error to a gRPC status.
pub async fn call<T, F>(method: &'static str, work: F) -> Result<tonic::Response<T>, tonic::Status>
where
    F: Future<Output = Result<T, Error>>,
{
    let span = tracing::debug_span!("rpc", method);
    let started = Instant::now();
    let result = work.instrument(span.clone()).await;
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    if let Some(histogram) = histograms().get(method) {
        histogram.record(micros, result.is_err());
    }
    let _entered = span.enter();
    match result {
        Ok(value) => {
            tracing::debug!(latency_us = micros, "ok");
            Ok(tonic::Response::new(value))
        }
        Err(err) => {
            let status = tonic::Status::from(err);
            if status.code() == tonic::Code::NotFound || status.code() == tonic::Code::Unimplemented
            {
                tracing::debug!(latency_us = micros, code = ?status.code(), error = status.message(), "failed");
            } else {
                tracing::warn!(latency_us = micros, code = ?status.code(), error = status.message(), "failed");
            }
            Err(status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_are_counted_per_method_with_errors() {
        let before = histograms()["Version"].count.load(Ordering::Relaxed);
        let ok = call("Version", async { Ok::<_, Error>(1) }).await;
        assert!(ok.is_ok());
        let err = call("Version", async {
            Err::<u32, _>(Error::NotFound("x".into()))
        })
        .await;
        assert_eq!(err.unwrap_err().code(), tonic::Code::NotFound);
        assert_eq!(
            histograms()["Version"].count.load(Ordering::Relaxed),
            before + 2
        );
        assert!(histograms()["Version"].errors.load(Ordering::Relaxed) >= 1);
    }
}
