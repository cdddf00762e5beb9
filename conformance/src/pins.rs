//! The cases each endpoint is expected to skip, each with its reason. The suite's verdict
//! (`crate::verdict`) fails on any other skip, and on a pinned case that no longer skips: a
//! feature that lands removes its pins in the same change.

use crate::verdict::Pin;

const CONTAINERD_1_6_NO_V5: &str = "containerd 1.6's streaming server predates v5.channel.k8s.io";
const CONTAINERD_1_6_EXEC_OUTLIVES_CLIENT: &str =
    "containerd 1.6's exec outlives its client: the process runs on after the connection is gone";
const CHECKPOINT: &str = "CheckpointContainer needs CRIU, which neither runtime here has";
const CONTAINERD_1_6_NO_RRO: &str =
    "the endpoint reports no recursive read-only mounts (containerd 1.6 does not ask runc)";
const RUNC_1_1_USERNS: &str =
    "runc 1.1 on this machine has no idmapped mounts, so no user-namespaced pods";
const CONTAINERD_1_6_NO_EVENTS: &str = "containerd 1.6 does not implement GetContainerEvents";
const CONTAINERD_1_6_UNKNOWN_METHOD: &str = "containerd 1.6 predates this RPC";
const CONTAINERD_1_6_NO_FIELD: &str = "containerd 1.6 predates this field of the CRI";

/// crius on containerd.
pub const CRIUS_CONTAINERD_SKIPS: &[Pin] = &[
    Pin {
        case: "[container] CheckpointContainer of an unknown container fails",
        reason: CHECKPOINT,
    },
    Pin {
        case: "[container] CheckpointContainer writes a checkpoint archive of a running container",
        reason: CHECKPOINT,
    },
    Pin {
        case: "[security] a user namespace maps the pod's root to the given host ids",
        reason: RUNC_1_1_USERNS,
    },
];

/// containerd 1.6's built-in CRI (the reference). Its documented failures are not pinned here:
/// each case that has one says so itself (`Case::reference_known_failure`).
pub const REFERENCE_SKIPS: &[Pin] = &[
    Pin { case: "[container] CheckpointContainer of an unknown container fails", reason: CHECKPOINT },
    Pin { case: "[container] CheckpointContainer writes a checkpoint archive of a running container", reason: CHECKPOINT },
    Pin { case: "[container] ContainerStatus.image_id equals the Image.id of its image", reason: CONTAINERD_1_6_NO_FIELD },
    Pin { case: "[container] StreamContainers returns what ListContainers returns", reason: CONTAINERD_1_6_UNKNOWN_METHOD },
    Pin { case: "[container] recursive read-only mounts make submounts read-only too", reason: CONTAINERD_1_6_NO_RRO },
    Pin { case: "[container] stop_signal from the config is what StopContainer sends", reason: CONTAINERD_1_6_NO_FIELD },
    Pin { case: "[events] GetContainerEvents reports created, started, stopped and deleted in order", reason: CONTAINERD_1_6_NO_EVENTS },
    Pin { case: "[events] container events carry the pod sandbox status and the container's status", reason: CONTAINERD_1_6_NO_EVENTS },
    Pin { case: "[events] every subscriber receives the events", reason: CONTAINERD_1_6_NO_EVENTS },
    Pin { case: "[events] GetContainerEvents reports a sandbox's created, started, stopped and deleted under its id", reason: CONTAINERD_1_6_NO_EVENTS },
    Pin { case: "[events] events for 100 pods run at once are all delivered, none lost", reason: CONTAINERD_1_6_NO_EVENTS },
    Pin { case: "[events] a pod rebuilt from each event alone never has fewer containers than it has (30 pods)", reason: CONTAINERD_1_6_NO_EVENTS },
    Pin { case: "[image] StreamImages returns what ListImages returns", reason: CONTAINERD_1_6_UNKNOWN_METHOD },
    Pin { case: "[runtime info] RuntimeConfig reports the cgroup driver this node can run", reason: CONTAINERD_1_6_UNKNOWN_METHOD },
    Pin { case: "[runtime info] Status lists the runtime handlers, the default one included", reason: CONTAINERD_1_6_NO_FIELD },
    Pin { case: "[sandbox] PodSandboxStatus with a timestamp lists every container of the pod with its state", reason: CONTAINERD_1_6_NO_FIELD },
    Pin { case: "[sandbox] StreamPodSandboxes returns what ListPodSandbox returns", reason: CONTAINERD_1_6_UNKNOWN_METHOD },
    Pin { case: "[sandbox] UpdatePodSandboxResources accepts new resources for a running sandbox", reason: CONTAINERD_1_6_UNKNOWN_METHOD },
    Pin { case: "[sandbox] UpdatePodSandboxResources of an unknown sandbox is NotFound", reason: CONTAINERD_1_6_UNKNOWN_METHOD },
    Pin { case: "[security] ContainerStatus.user reports the process identity", reason: CONTAINERD_1_6_NO_FIELD },
    Pin { case: "[security] a user namespace maps the pod's root to the given host ids", reason: RUNC_1_1_USERNS },
    Pin { case: "[security] supplemental_groups_policy Strict ignores the image's /etc/group", reason: CONTAINERD_1_6_NO_FIELD },
    Pin { case: "[streaming] an exec whose client disconnects leaves no process behind", reason: CONTAINERD_1_6_EXEC_OUTLIVES_CLIENT },
    Pin { case: "[streaming] exec over WebSocket v5: a close message ends stdin and all output still arrives", reason: CONTAINERD_1_6_NO_V5 },
    Pin { case: "[stats] ListMetricDescriptors describes metrics by name, help and labels", reason: CONTAINERD_1_6_UNKNOWN_METHOD },
    Pin { case: "[stats] ListPodSandboxMetrics reports described metrics for a running pod", reason: CONTAINERD_1_6_UNKNOWN_METHOD },
    Pin { case: "[stats] StreamContainerStats returns what ListContainerStats returns", reason: CONTAINERD_1_6_UNKNOWN_METHOD },
    Pin { case: "[stats] StreamPodSandboxMetrics reports the running pod", reason: CONTAINERD_1_6_UNKNOWN_METHOD },
    Pin { case: "[stats] StreamPodSandboxStats returns what ListPodSandboxStats returns", reason: CONTAINERD_1_6_UNKNOWN_METHOD },
    Pin { case: "[stats] every metric descriptor name is one of kubelet's cAdvisor names", reason: CONTAINERD_1_6_UNKNOWN_METHOD },
    Pin { case: "[stats] CPU burnt by a busy loop shows in container_cpu_usage_seconds_total as the cgroup counts it, to the second", reason: CONTAINERD_1_6_UNKNOWN_METHOD },
    Pin { case: "[stats] bytes sent from a pod show in container_network_transmit_bytes_total for eth0", reason: CONTAINERD_1_6_UNKNOWN_METHOD },
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    #[test]
    fn every_pin_names_a_case_once() {
        let cases: BTreeSet<String> = crate::cases::all().iter().map(|c| c.full_name()).collect();
        for pins in [super::CRIUS_CONTAINERD_SKIPS, super::REFERENCE_SKIPS] {
            let mut seen = BTreeSet::new();
            for pin in pins {
                assert!(cases.contains(pin.case), "no such case: {}", pin.case);
                assert!(seen.insert(pin.case), "pinned twice: {}", pin.case);
            }
        }
    }

    #[test]
    fn no_documented_reference_failure_is_also_pinned() {
        for case in crate::cases::all() {
            if case.reference_known_failure.is_some() {
                let name = case.full_name();
                assert!(
                    !super::REFERENCE_SKIPS.iter().any(|p| p.case == name),
                    "{name} documents its reference failure and is pinned too"
                );
            }
        }
    }
}
