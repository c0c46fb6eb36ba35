//! VolumeBinding (bound claims only): every PersistentVolumeClaim the pod uses must
//! exist, and a claim bound to a PersistentVolume with `spec.nodeAffinity` restricts
//! the pod to the nodes that volume can be used on. Unbound claims do not constrain
//! the node: they are provisioned (or bound) for the node the pod lands on.

use super::{FilterResult, Rejection};
use crate::node_selector::NodeSelector;
use crate::pod_info::PodInfo;
use crate::snapshot::{NodeInfo, Snapshot};

pub(crate) const NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub(crate) const PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";

/// The volumes of the pod's bound claims, in volume order.
#[derive(Clone, Debug, Default)]
pub(crate) struct VolumeState {
    bound: Vec<BoundClaim>,
}

#[derive(Clone, Debug)]
enum BoundClaim {
    /// The claim names a PersistentVolume the snapshot does not have.
    MissingVolume,
    /// The volume, with its required node affinity if it has one.
    Volume(Option<NodeSelector>),
}

pub(crate) fn pre_filter(snapshot: &Snapshot, pod: &PodInfo) -> Result<VolumeState, Rejection> {
    let mut state = VolumeState::default();
    let volumes = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    for volume in volumes {
        let (claim, ephemeral) = if let Some(source) = &volume.persistent_volume_claim {
            (source.claim_name.clone(), false)
        } else if volume.ephemeral.is_some() {
            (format!("{}-{}", pod.name, volume.name), true)
        } else {
            continue;
        };
        let Some(pvc) = snapshot.pvc(&pod.namespace, &claim) else {
            return Err(Rejection::unresolvable(if ephemeral {
                format!("waiting for ephemeral volume controller to create the persistentvolumeclaim \"{claim}\"")
            } else {
                format!("persistentvolumeclaim \"{claim}\" not found")
            }));
        };
        if pvc.metadata.deletion_timestamp.is_some() {
            return Err(Rejection::unresolvable(format!(
                "persistentvolumeclaim \"{claim}\" is being deleted"
            )));
        }
        let volume_name = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .unwrap_or_default();
        if volume_name.is_empty() {
            continue;
        }
        state.bound.push(match snapshot.pv(volume_name) {
            None => BoundClaim::MissingVolume,
            Some(pv) => BoundClaim::Volume(
                pv.spec
                    .as_ref()
                    .and_then(|s| s.node_affinity.as_ref())
                    .and_then(|a| a.required.as_ref())
                    .map(|required| NodeSelector::new(&required.node_selector_terms)),
            ),
        });
    }
    Ok(state)
}

pub(crate) fn filter(state: &VolumeState, node: &NodeInfo) -> FilterResult {
    for claim in &state.bound {
        match claim {
            BoundClaim::MissingVolume => return Err(Rejection::unresolvable(PV_NOT_EXIST)),
            // Like Kubernetes, only the node's labels are checked against a volume's terms.
            BoundClaim::Volume(Some(selector)) if !selector.matches("", node.labels()) => {
                return Err(Rejection::unresolvable(NODE_CONFLICT));
            }
            BoundClaim::Volume(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::outcome;
    use crate::testing::{node_term, pv, pvc, NodeBuilder, PodBuilder};
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

    fn check(
        pod: PodBuilder,
        claims: Vec<PersistentVolumeClaim>,
        volumes: Vec<PersistentVolume>,
        expected: Option<&str>,
    ) {
        let node = NodeBuilder::new("n1").zone("a").build();
        let snapshot = Snapshot::new(vec![node], vec![], claims, volumes);
        let node = snapshot.node_infos().next().expect("one node");
        let pod = PodInfo::new(pod.build());
        let got = match pre_filter(&snapshot, &pod) {
            Err(rejection) => Some(rejection.reasons.join(", ")),
            Ok(state) => outcome(filter(&state, node)),
        };
        assert_eq!(got.as_deref(), expected);
    }

    #[test]
    fn bound_claims() {
        let zone = "topology.kubernetes.io/zone";
        let in_zone = |z: &str| Some(node_term(zone, "In", &[z]));
        let p = || PodBuilder::new("p").pvc("data");
        check(PodBuilder::new("p"), vec![], vec![], None);
        check(
            p(),
            vec![],
            vec![],
            Some("persistentvolumeclaim \"data\" not found"),
        );
        check(p(), vec![pvc("data", "")], vec![], None);
        check(p(), vec![pvc("data", "pv1")], vec![pv("pv1", None)], None);
        check(
            p(),
            vec![pvc("data", "pv1")],
            vec![pv("pv1", in_zone("a"))],
            None,
        );
        check(
            p(),
            vec![pvc("data", "pv1")],
            vec![pv("pv1", in_zone("b"))],
            Some(NODE_CONFLICT),
        );
        check(p(), vec![pvc("data", "pv1")], vec![], Some(PV_NOT_EXIST));
        check(
            p().pvc("logs"),
            vec![pvc("data", "pv1"), pvc("logs", "pv2")],
            vec![pv("pv1", in_zone("a")), pv("pv2", in_zone("c"))],
            Some(NODE_CONFLICT),
        );
        check(
            p().pvc("logs"),
            vec![pvc("data", "pv1")],
            vec![pv("pv1", in_zone("a"))],
            Some("persistentvolumeclaim \"logs\" not found"),
        );
        let mut deleting = pvc("data", "pv1");
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        check(
            p(),
            vec![deleting],
            vec![pv("pv1", None)],
            Some("persistentvolumeclaim \"data\" is being deleted"),
        );
    }
}
