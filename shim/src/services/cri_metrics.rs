//! ListMetricDescriptors, ListPodSandboxMetrics and StreamPodSandboxMetrics: the cAdvisor-named
//! pod and container metrics of [`crate::cri_metrics`], converted to the CRI.

use std::sync::Arc;

use cri_api::v1 as cri;

use super::stats::blocking;
use crate::cri_metrics::{
    ContainerMetrics, Descriptor, MetricKind, PodMetrics, Sample, DESCRIPTORS,
};
use crate::error::Result;
use crate::runtime::Crius;

pub fn descriptors() -> cri::ListMetricDescriptorsResponse {
    cri::ListMetricDescriptorsResponse {
        descriptors: DESCRIPTORS.iter().map(|d| descriptor(d)).collect(),
    }
}

/// Every ready pod's metrics. Reading cgroup files is blocking I/O, hence the blocking pool.
pub async fn list(crius: &Arc<Crius>) -> Result<Vec<cri::PodSandboxMetrics>> {
    let pods = blocking(crius, |c| c.pod_metrics()).await?;
    Ok(pods.iter().map(pod).collect())
}

fn descriptor(d: &Descriptor) -> cri::MetricDescriptor {
    cri::MetricDescriptor {
        name: d.name.to_string(),
        help: d.help.to_string(),
        label_keys: d.label_keys().map(str::to_string).collect(),
    }
}

fn pod(p: &PodMetrics) -> cri::PodSandboxMetrics {
    cri::PodSandboxMetrics {
        pod_sandbox_id: p.sandbox_id.clone(),
        metrics: p.metrics.iter().map(metric).collect(),
        container_metrics: p.containers.iter().map(container).collect(),
    }
}

fn container(c: &ContainerMetrics) -> cri::ContainerMetrics {
    cri::ContainerMetrics {
        container_id: c.container_id.clone(),
        metrics: c.metrics.iter().map(metric).collect(),
    }
}

fn metric(s: &Sample) -> cri::Metric {
    let metric_type = match s.descriptor.kind {
        MetricKind::Counter => cri::MetricType::Counter,
        MetricKind::Gauge => cri::MetricType::Gauge,
    };
    cri::Metric {
        name: s.descriptor.name.to_string(),
        timestamp: s.timestamp,
        metric_type: metric_type as i32,
        label_values: s.label_values.clone(),
        value: Some(cri::UInt64Value { value: s.value }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_carry_every_label_key_in_order() {
        let answer = descriptors();
        let usage = answer
            .descriptors
            .iter()
            .find(|d| d.name == "container_cpu_usage_seconds_total")
            .unwrap();
        assert_eq!(
            usage.label_keys,
            [
                "id",
                "name",
                "image",
                "namespace",
                "pod",
                "container",
                "cpu"
            ]
        );
        assert!(answer.descriptors.iter().all(|d| !d.help.is_empty()));
    }

    #[test]
    fn a_sample_becomes_a_metric_of_its_descriptors_name_and_type() {
        let sample = Sample {
            descriptor: DESCRIPTORS[0],
            timestamp: 42,
            label_values: vec!["a".into(); 7],
            value: 3,
        };
        let converted = metric(&sample);
        assert_eq!(converted.name, "container_cpu_usage_seconds_total");
        assert_eq!(converted.metric_type, cri::MetricType::Counter as i32);
        assert_eq!(converted.timestamp, 42);
        assert_eq!(converted.value, Some(cri::UInt64Value { value: 3 }));
        assert_eq!(converted.label_values.len(), 7);
    }
}
