//! What a pod asks of its network, in CNI terms: `CNI_ARGS` and the runtime config values
//! (`portMappings`, `bandwidth`, `dns`, `ipRanges`) plugins may declare capabilities for.

use serde_json::{json, Map, Value};

use crate::domain::{Protocol, SandboxConfig};
use crate::error::{Error, Result};

pub const INGRESS_BANDWIDTH: &str = "kubernetes.io/ingress-bandwidth";
pub const EGRESS_BANDWIDTH: &str = "kubernetes.io/egress-bandwidth";

/// Burst for a bandwidth limit: containerd sends this, letting the plugin size the bucket.
const BANDWIDTH_BURST: u64 = u32::MAX as u64;

/// `CNI_ARGS` for a pod (what kubelet's CNI plumbing and containerd pass).
pub fn cni_args(id: &str, config: &SandboxConfig) -> String {
    let m = &config.metadata;
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={id};K8S_POD_UID={}",
        m.namespace, m.name, m.uid
    )
}

/// Every runtime config value crius can offer for this pod; each plugin gets the subset its
/// `capabilities` declare.
pub fn runtime_config(
    config: &SandboxConfig,
    pod_cidr: Option<&str>,
) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    let ports: Vec<Value> = config
        .port_mappings
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| {
            json!({
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": protocol(p.protocol),
                "hostIP": p.host_ip,
            })
        })
        .collect();
    out.insert("portMappings".to_string(), Value::Array(ports));
    if let Some(bandwidth) = bandwidth(config)? {
        out.insert("bandwidth".to_string(), bandwidth);
    }
    if let Some(dns) = &config.dns {
        out.insert(
            "dns".to_string(),
            json!({ "servers": dns.servers, "searches": dns.searches, "options": dns.options }),
        );
    }
    if let Some(cidr) = pod_cidr.filter(|c| !c.is_empty()) {
        let ranges: Vec<Value> = cidr
            .split(',')
            .map(|c| json!([{ "subnet": c.trim() }]))
            .collect();
        out.insert("ipRanges".to_string(), Value::Array(ranges));
    }
    Ok(out)
}

fn protocol(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

/// The bandwidth plugin's runtime config from the pod's traffic shaping annotations.
fn bandwidth(config: &SandboxConfig) -> Result<Option<Value>> {
    let rate = |key: &str| -> Result<Option<u64>> {
        match config.annotations.get(key) {
            None => Ok(None),
            Some(text) => parse_quantity(text).map(Some).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "annotation {key}={text:?} is not a bandwidth such as \"10M\" or \"1Gi\""
                ))
            }),
        }
    };
    let ingress = rate(INGRESS_BANDWIDTH)?;
    let egress = rate(EGRESS_BANDWIDTH)?;
    if ingress.is_none() && egress.is_none() {
        return Ok(None);
    }
    let mut out = Map::new();
    if let Some(rate) = ingress {
        out.insert("ingressRate".to_string(), rate.into());
        out.insert("ingressBurst".to_string(), BANDWIDTH_BURST.into());
    }
    if let Some(rate) = egress {
        out.insert("egressRate".to_string(), rate.into());
        out.insert("egressBurst".to_string(), BANDWIDTH_BURST.into());
    }
    Ok(Some(Value::Object(out)))
}

/// A Kubernetes quantity (`10M`, `1Gi`, `1.5k`, `500`) in whole units (bits per second for
/// bandwidth). Fractions of a unit round up, as `Quantity.Value()` does.
pub fn parse_quantity(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let multiplier: u128 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') || fraction.len() > 9 {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let scale = 10u128.pow(fraction.len() as u32);
    let fraction: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().ok()?
    };
    let scaled = (whole.checked_mul(scale)?.checked_add(fraction)?).checked_mul(multiplier)?;
    u64::try_from(scaled.div_ceil(scale)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DnsConfig, PodMetadata, PortMapping};

    #[test]
    fn quantities() {
        let ok = [
            ("10M", 10_000_000),
            ("1Gi", 1 << 30),
            ("100k", 100_000),
            ("1.5M", 1_500_000),
            ("500", 500),
            ("2Ki", 2048),
            ("0.5", 1),
            (" 3G ", 3_000_000_000),
        ];
        for (text, want) in ok {
            assert_eq!(parse_quantity(text), Some(want), "{text:?}");
        }
        for bad in [
            "",
            "M",
            "10Q",
            "1.2.3M",
            "-1M",
            "10 M",
            "ten",
            "99999999999999999999E",
        ] {
            assert_eq!(parse_quantity(bad), None, "{bad:?}");
        }
    }

    fn pod() -> SandboxConfig {
        SandboxConfig {
            metadata: PodMetadata {
                name: "web".into(),
                uid: "u-1".into(),
                namespace: "prod".into(),
                attempt: 0,
            },
            ..Default::default()
        }
    }

    #[test]
    fn cni_args_name_the_pod() {
        assert_eq!(
            cni_args("abc", &pod()),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1"
        );
    }

    #[test]
    fn runtime_config_from_the_pod() {
        let mut config = pod();
        config.port_mappings = vec![
            PortMapping {
                protocol: Protocol::Udp,
                container_port: 53,
                host_port: 5353,
                host_ip: "127.0.0.1".into(),
            },
            // Without a host port there is nothing for portmap to do.
            PortMapping {
                protocol: Protocol::Tcp,
                container_port: 80,
                host_port: 0,
                host_ip: String::new(),
            },
        ];
        config
            .annotations
            .insert(INGRESS_BANDWIDTH.into(), "10M".into());
        config.dns = Some(DnsConfig {
            servers: vec!["10.0.0.10".into()],
            searches: vec!["svc".into()],
            options: vec!["ndots:5".into()],
        });
        let runtime = runtime_config(&config, Some("10.244.1.0/24")).unwrap();
        assert_eq!(
            runtime["portMappings"],
            json!([{"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}])
        );
        assert_eq!(
            runtime["bandwidth"],
            json!({"ingressRate": 10_000_000, "ingressBurst": BANDWIDTH_BURST})
        );
        assert_eq!(
            runtime["dns"],
            json!({"servers": ["10.0.0.10"], "searches": ["svc"], "options": ["ndots:5"]})
        );
        assert_eq!(runtime["ipRanges"], json!([[{"subnet": "10.244.1.0/24"}]]));

        let plain = runtime_config(&pod(), None).unwrap();
        assert_eq!(plain["portMappings"], json!([]));
        assert!(
            plain.get("bandwidth").is_none()
                && plain.get("dns").is_none()
                && plain.get("ipRanges").is_none()
        );
    }

    #[test]
    fn bad_bandwidth_is_invalid_argument() {
        let mut config = pod();
        config
            .annotations
            .insert(EGRESS_BANDWIDTH.into(), "fast".into());
        let err = runtime_config(&config, None).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument(ref m) if m.contains(EGRESS_BANDWIDTH)),
            "{err}"
        );
    }
}
