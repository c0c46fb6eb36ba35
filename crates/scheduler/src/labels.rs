//! Label selectors compiled once per pod (apimachinery's `LabelSelectorAsSelector`),
//! so filters and scores match labels without re-reading the API structs.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// An empty label set, for objects without `metadata.labels`.
pub(crate) static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// A compiled label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Selector {
    /// Selects nothing: what a missing (`nil`) selector means.
    Nothing,
    /// Selects label sets meeting every requirement; no requirements selects everything.
    Requirements(Vec<Requirement>),
}

/// One `key operator values` requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl Selector {
    /// Compiles an API label selector. `None` selects nothing and `{}` selects
    /// everything, like Kubernetes. A selector that fails validation (unknown
    /// operator, `In` without values) selects nothing rather than everything.
    pub(crate) fn from_api(selector: Option<&LabelSelector>) -> Selector {
        let Some(selector) = selector else {
            return Selector::Nothing;
        };
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement {
                key: key.clone(),
                operator: Operator::In,
                values: vec![value.clone()],
            });
        }
        for expression in selector.match_expressions.iter().flatten() {
            let values = expression.values.clone().unwrap_or_default();
            let operator = match expression.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                _ => return Selector::Nothing,
            };
            let values_allowed = matches!(operator, Operator::In | Operator::NotIn);
            if values_allowed == values.is_empty() {
                return Selector::Nothing;
            }
            requirements.push(Requirement {
                key: expression.key.clone(),
                operator,
                values,
            });
        }
        Selector::Requirements(requirements)
    }

    /// A selector matching exactly the given labels (`SelectorFromSet`).
    pub(crate) fn from_labels(labels: &BTreeMap<String, String>) -> Selector {
        Selector::Requirements(
            labels
                .iter()
                .map(|(key, value)| Requirement {
                    key: key.clone(),
                    operator: Operator::In,
                    values: vec![value.clone()],
                })
                .collect(),
        )
    }

    /// Adds `key=value` requirements in front of this selector's, the way
    /// `matchLabelKeys` is merged into a topology spread constraint. Merging
    /// into a selector that selects nothing keeps only the new requirements,
    /// as Kubernetes does.
    pub(crate) fn merged_with_labels(self, labels: &BTreeMap<String, String>) -> Selector {
        if labels.is_empty() {
            return self;
        }
        let Selector::Requirements(mut merged) = Selector::from_labels(labels) else {
            return self;
        };
        if let Selector::Requirements(existing) = self {
            merged.extend(existing);
        }
        Selector::Requirements(merged)
    }

    /// Whether the labels satisfy the selector.
    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Selector::Nothing => false,
            Selector::Requirements(requirements) => requirements
                .iter()
                .all(|requirement| requirement.matches(labels)),
        }
    }

    /// A `key=value` that every matching label set must carry, if there is one:
    /// lets callers look candidates up in a label index instead of scanning.
    pub(crate) fn index_hint(&self) -> Option<(&str, &str)> {
        let Selector::Requirements(requirements) = self else {
            return None;
        };
        requirements.iter().find_map(|requirement| {
            match (requirement.operator, requirement.values.as_slice()) {
                (Operator::In, [value]) => Some((requirement.key.as_str(), value.as_str())),
                _ => None,
            }
        })
    }
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn check(selector: serde_json::Value, pod_labels: &[(&str, &str)], expected: bool) {
        let selector: Option<LabelSelector> =
            serde_json::from_value(selector.clone()).expect("test selector must decode");
        let compiled = Selector::from_api(selector.as_ref());
        assert_eq!(
            compiled.matches(&labels(pod_labels)),
            expected,
            "selector {selector:?} against {pod_labels:?}"
        );
    }

    #[test]
    fn matching() {
        check(json!(null), &[("app", "web")], false);
        check(json!({}), &[], true);
        check(json!({}), &[("app", "web")], true);
        check(
            json!({"matchLabels": {"app": "web"}}),
            &[("app", "web")],
            true,
        );
        check(
            json!({"matchLabels": {"app": "web"}}),
            &[("app", "db")],
            false,
        );
        check(json!({"matchLabels": {"app": "web"}}), &[], false);
        check(
            json!({"matchLabels": {"app": "web", "tier": "fe"}}),
            &[("app", "web")],
            false,
        );
        let expr = |op: &str, values: &[&str]| json!({"matchExpressions": [{"key": "app", "operator": op, "values": values}]});
        check(expr("In", &["web", "api"]), &[("app", "api")], true);
        check(expr("In", &["web", "api"]), &[("app", "db")], false);
        check(expr("In", &["web"]), &[], false);
        check(expr("NotIn", &["web"]), &[("app", "db")], true);
        check(expr("NotIn", &["web"]), &[("app", "web")], false);
        check(expr("NotIn", &["web"]), &[], true);
        check(
            json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]}),
            &[("app", "")],
            true,
        );
        check(
            json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]}),
            &[],
            false,
        );
        check(
            json!({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}),
            &[],
            true,
        );
        check(
            json!({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}),
            &[("app", "x")],
            false,
        );
        // Invalid selectors select nothing.
        check(expr("In", &[]), &[("app", "web")], false);
        check(expr("Gt", &["1"]), &[("app", "2")], false);
        check(
            json!({"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]}),
            &[("app", "x")],
            false,
        );
    }

    #[test]
    fn index_hint_and_merge() {
        let selector: LabelSelector = serde_json::from_value(json!({"matchExpressions": [
            {"key": "tier", "operator": "Exists"},
            {"key": "app", "operator": "In", "values": ["web"]}
        ]}))
        .expect("decodes");
        let compiled = Selector::from_api(Some(&selector));
        assert_eq!(compiled.index_hint(), Some(("app", "web")));
        assert_eq!(Selector::Nothing.index_hint(), None);
        let merged = compiled.merged_with_labels(&labels(&[("hash", "abc")]));
        assert_eq!(merged.index_hint(), Some(("hash", "abc")));
        assert!(merged.matches(&labels(&[("app", "web"), ("tier", "x"), ("hash", "abc")])));
        assert!(!merged.matches(&labels(&[("app", "web"), ("tier", "x"), ("hash", "def")])));
        let from_nothing = Selector::Nothing.merged_with_labels(&labels(&[("hash", "abc")]));
        assert!(from_nothing.matches(&labels(&[("hash", "abc")])));
        let nothing_stays = Selector::Nothing.merged_with_labels(&BTreeMap::new());
        assert!(!nothing_stays.matches(&BTreeMap::new()));
    }
}
