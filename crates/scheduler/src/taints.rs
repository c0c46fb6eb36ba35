//! Taint and toleration matching (component-helpers' `ToleratesTaint`), shared by the
//! TaintToleration filter and score, NodeUnschedulable and PodTopologySpread's
//! node inclusion policy.

use k8s_openapi::api::core::v1::{Taint, Toleration};

/// Whether one toleration tolerates the taint: an empty effect matches every
/// effect, an empty key (with `Exists`) matches every key, and the operator
/// defaults to `Equal`.
pub(crate) fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        "Exists" => true,
        _ => false,
    }
}

/// Whether any of the tolerations tolerates the taint.
pub(crate) fn tolerated_by_any(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations
        .iter()
        .any(|toleration| tolerates(toleration, taint))
}

/// The first `NoSchedule` or `NoExecute` taint the tolerations do not tolerate.
pub(crate) fn first_untolerated_scheduling_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
) -> Option<&'a Taint> {
    taints.iter().find(|taint| {
        (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
            && !tolerated_by_any(tolerations, taint)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.to_string(),
            value: (!value.is_empty()).then(|| value.to_string()),
            effect: effect.to_string(),
            time_added: None,
        }
    }

    fn toleration(key: &str, operator: &str, value: &str, effect: &str) -> Toleration {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Toleration {
            key: some(key),
            operator: some(operator),
            value: some(value),
            effect: some(effect),
            toleration_seconds: None,
        }
    }

    fn check(t: Toleration, taint: Taint, expected: bool) {
        assert_eq!(tolerates(&t, &taint), expected, "{t:?} tolerates {taint:?}");
    }

    #[test]
    fn toleration_matching() {
        check(
            toleration("k", "Equal", "v", "NoSchedule"),
            taint("k", "v", "NoSchedule"),
            true,
        );
        check(
            toleration("k", "", "v", "NoSchedule"),
            taint("k", "v", "NoSchedule"),
            true,
        );
        check(
            toleration("k", "Equal", "v", "NoSchedule"),
            taint("k", "w", "NoSchedule"),
            false,
        );
        check(
            toleration("k", "Equal", "", "NoSchedule"),
            taint("k", "", "NoSchedule"),
            true,
        );
        check(
            toleration("k", "Equal", "v", "NoSchedule"),
            taint("k", "v", "NoExecute"),
            false,
        );
        check(
            toleration("k", "Equal", "v", ""),
            taint("k", "v", "NoExecute"),
            true,
        );
        check(
            toleration("k", "Exists", "", "NoSchedule"),
            taint("k", "anything", "NoSchedule"),
            true,
        );
        check(
            toleration("k", "Exists", "", "NoSchedule"),
            taint("other", "", "NoSchedule"),
            false,
        );
        check(
            toleration("", "Exists", "", ""),
            taint("any", "thing", "NoExecute"),
            true,
        );
        check(
            toleration("", "Exists", "", "PreferNoSchedule"),
            taint("any", "", "NoSchedule"),
            false,
        );
        check(
            toleration("k", "Gt", "1", ""),
            taint("k", "2", "NoSchedule"),
            false,
        );
    }

    #[test]
    fn first_untolerated() {
        let taints = [
            taint("soft", "", "PreferNoSchedule"),
            taint("a", "1", "NoSchedule"),
            taint("b", "2", "NoExecute"),
        ];
        let none: [Toleration; 0] = [];
        assert_eq!(
            first_untolerated_scheduling_taint(&taints, &none).map(|t| t.key.as_str()),
            Some("a")
        );
        let tolerate_a = [toleration("a", "Exists", "", "")];
        assert_eq!(
            first_untolerated_scheduling_taint(&taints, &tolerate_a).map(|t| t.key.as_str()),
            Some("b")
        );
        let tolerate_all = [toleration("", "Exists", "", "")];
        assert_eq!(
            first_untolerated_scheduling_taint(&taints, &tolerate_all),
            None
        );
    }
}
