//! Node selector terms (`nodeSelectorTerms`, `preference`, a PV's `nodeAffinity`)
//! compiled once and matched against node labels and `metadata.name`, following
//! component-helpers' `nodeaffinity` package.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, NodeSelectorTerm, Pod, PreferredSchedulingTerm,
};

/// The terms of a node selector: a node matches when any term matches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct NodeSelector {
    terms: Vec<Term>,
}

/// One term: every label requirement and every field requirement must hold.
/// A term that failed to parse never matches.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Term {
    labels: Option<Vec<LabelRequirement>>,
    fields: Option<Vec<FieldRequirement>>,
    invalid: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum LabelRequirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
    GreaterThan(String, i64),
    LessThan(String, i64),
}

/// `matchFields` only knows `metadata.name` with `In`/`NotIn` and one value.
#[derive(Clone, Debug, PartialEq, Eq)]
enum FieldRequirement {
    Equals(String, String),
    NotEquals(String, String),
}

impl NodeSelector {
    /// Compiles `nodeSelectorTerms`; empty terms are dropped because they select nothing.
    pub(crate) fn new(terms: &[NodeSelectorTerm]) -> NodeSelector {
        NodeSelector {
            terms: terms
                .iter()
                .filter(|term| !is_empty_term(term))
                .map(Term::new)
                .collect(),
        }
    }

    /// Whether any term matches the node. An empty `node_name` skips `matchFields`,
    /// as Kubernetes does for a PersistentVolume's node affinity.
    pub(crate) fn matches(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.terms
            .iter()
            .any(|term| term.matches(node_name, labels))
    }

    /// The node names this selector is restricted to through `matchFields`
    /// `metadata.name In [...]` in every term (NodeAffinity's PreFilter), or
    /// `None` when some term allows any node.
    pub(crate) fn restricted_node_names(terms: &[NodeSelectorTerm]) -> Option<Vec<String>> {
        let mut names: Option<Vec<String>> = None;
        for term in terms {
            let mut term_names: Option<Vec<String>> = None;
            for requirement in term.match_fields.iter().flatten() {
                if requirement.key == "metadata.name" && requirement.operator == "In" {
                    let values: Vec<String> = requirement.values.clone().unwrap_or_default();
                    term_names = Some(match term_names {
                        None => values,
                        Some(previous) => previous
                            .into_iter()
                            .filter(|n| values.contains(n))
                            .collect(),
                    });
                }
            }
            let term_names = term_names?;
            let names = names.get_or_insert_with(Vec::new);
            for name in term_names {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    }
}

fn is_empty_term(term: &NodeSelectorTerm) -> bool {
    term.match_expressions.as_ref().is_none_or(Vec::is_empty)
        && term.match_fields.as_ref().is_none_or(Vec::is_empty)
}

impl Term {
    fn new(term: &NodeSelectorTerm) -> Term {
        let mut invalid = false;
        let labels = match term.match_expressions.as_deref() {
            Some(expressions) if !expressions.is_empty() => {
                let parsed: Option<Vec<_>> =
                    expressions.iter().map(LabelRequirement::new).collect();
                invalid |= parsed.is_none();
                parsed
            }
            _ => None,
        };
        let fields = match term.match_fields.as_deref() {
            Some(requirements) if !requirements.is_empty() => {
                let parsed: Option<Vec<_>> =
                    requirements.iter().map(FieldRequirement::new).collect();
                invalid |= parsed.is_none();
                parsed
            }
            _ => None,
        };
        Term {
            labels,
            fields,
            invalid,
        }
    }

    fn matches(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        if self.invalid {
            return false;
        }
        if let Some(requirements) = &self.labels {
            if !requirements.iter().all(|r| r.matches(labels)) {
                return false;
            }
        }
        if let Some(requirements) = &self.fields {
            if !node_name.is_empty() && !requirements.iter().all(|r| r.matches(node_name)) {
                return false;
            }
        }
        true
    }
}

impl LabelRequirement {
    fn new(requirement: &NodeSelectorRequirement) -> Option<LabelRequirement> {
        let key = requirement.key.clone();
        let values = requirement.values.clone().unwrap_or_default();
        let single_integer = || match values.as_slice() {
            [value] => value.parse::<i64>().ok(),
            _ => None,
        };
        match requirement.operator.as_str() {
            "In" if !values.is_empty() => Some(LabelRequirement::In(key, values)),
            "NotIn" if !values.is_empty() => Some(LabelRequirement::NotIn(key, values)),
            "Exists" if values.is_empty() => Some(LabelRequirement::Exists(key)),
            "DoesNotExist" if values.is_empty() => Some(LabelRequirement::DoesNotExist(key)),
            "Gt" => Some(LabelRequirement::GreaterThan(key, single_integer()?)),
            "Lt" => Some(LabelRequirement::LessThan(key, single_integer()?)),
            _ => None,
        }
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            LabelRequirement::In(key, values) => {
                labels.get(key).is_some_and(|v| values.contains(v))
            }
            LabelRequirement::NotIn(key, values) => {
                labels.get(key).is_none_or(|v| !values.contains(v))
            }
            LabelRequirement::Exists(key) => labels.contains_key(key),
            LabelRequirement::DoesNotExist(key) => !labels.contains_key(key),
            LabelRequirement::GreaterThan(key, bound) => labels
                .get(key)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *bound),
            LabelRequirement::LessThan(key, bound) => labels
                .get(key)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *bound),
        }
    }
}

impl FieldRequirement {
    fn new(requirement: &NodeSelectorRequirement) -> Option<FieldRequirement> {
        let value = match requirement.values.as_deref() {
            Some([value]) => value.clone(),
            _ => return None,
        };
        match requirement.operator.as_str() {
            "In" => Some(FieldRequirement::Equals(requirement.key.clone(), value)),
            "NotIn" => Some(FieldRequirement::NotEquals(requirement.key.clone(), value)),
            _ => None,
        }
    }

    fn matches(&self, node_name: &str) -> bool {
        // Nodes expose only metadata.name as a field; any other field reads as empty.
        let field = |key: &str| {
            if key == "metadata.name" {
                node_name
            } else {
                ""
            }
        };
        match self {
            FieldRequirement::Equals(key, value) => field(key) == value,
            FieldRequirement::NotEquals(key, value) => field(key) != value,
        }
    }
}

/// A pod's hard node constraints: `spec.nodeSelector` and the required node
/// affinity (`GetRequiredNodeAffinity`).
#[derive(Clone, Debug, Default)]
pub(crate) struct RequiredNodeAffinity {
    node_selector: Option<BTreeMap<String, String>>,
    affinity: Option<NodeSelector>,
}

impl RequiredNodeAffinity {
    pub(crate) fn of(pod: &Pod) -> RequiredNodeAffinity {
        let spec = pod.spec.as_ref();
        let node_selector = spec.and_then(|s| s.node_selector.clone());
        let affinity = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|required| NodeSelector::new(&required.node_selector_terms));
        RequiredNodeAffinity {
            node_selector,
            affinity,
        }
    }

    pub(crate) fn matches(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        if let Some(selector) = &self.node_selector {
            if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                return false;
            }
        }
        match &self.affinity {
            Some(affinity) => affinity.matches(node_name, labels),
            None => true,
        }
    }
}

/// A pod's preferred node affinity terms with their weights.
#[derive(Clone, Debug, Default)]
pub(crate) struct PreferredNodeAffinity {
    terms: Vec<(i64, Term)>,
}

impl PreferredNodeAffinity {
    pub(crate) fn new(terms: &[PreferredSchedulingTerm]) -> PreferredNodeAffinity {
        PreferredNodeAffinity {
            terms: terms
                .iter()
                .filter(|t| t.weight != 0 && !is_empty_term(&t.preference))
                .map(|t| (i64::from(t.weight), Term::new(&t.preference)))
                .collect(),
        }
    }

    pub(crate) fn of(pod: &Pod) -> PreferredNodeAffinity {
        let terms = pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_deref()
            })
            .unwrap_or_default();
        PreferredNodeAffinity::new(terms)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The sum of the weights of the terms the node matches.
    pub(crate) fn weight(&self, node_name: &str, labels: &BTreeMap<String, String>) -> i64 {
        self.terms
            .iter()
            .filter(|(_, term)| term.matches(node_name, labels))
            .map(|(weight, _)| weight)
            .sum()
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

    fn check(terms: serde_json::Value, node: &str, node_labels: &[(&str, &str)], expected: bool) {
        let terms: Vec<NodeSelectorTerm> =
            serde_json::from_value(terms.clone()).expect("terms decode");
        let selector = NodeSelector::new(&terms);
        assert_eq!(
            selector.matches(node, &labels(node_labels)),
            expected,
            "terms {terms:?} against node {node} {node_labels:?}"
        );
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> serde_json::Value {
        json!([{"matchExpressions": [{"key": key, "operator": op, "values": values}]}])
    }

    #[test]
    fn label_requirements() {
        check(expr("zone", "In", &["a", "b"]), "n", &[("zone", "b")], true);
        check(
            expr("zone", "In", &["a", "b"]),
            "n",
            &[("zone", "c")],
            false,
        );
        check(expr("zone", "In", &["a"]), "n", &[], false);
        check(expr("zone", "NotIn", &["a"]), "n", &[("zone", "b")], true);
        check(expr("zone", "NotIn", &["a"]), "n", &[("zone", "a")], false);
        check(expr("zone", "NotIn", &["a"]), "n", &[], true);
        check(expr("gpu", "Exists", &[]), "n", &[("gpu", "")], true);
        check(expr("gpu", "Exists", &[]), "n", &[], false);
        check(expr("gpu", "DoesNotExist", &[]), "n", &[], true);
        check(
            expr("gpu", "DoesNotExist", &[]),
            "n",
            &[("gpu", "1")],
            false,
        );
        check(expr("cores", "Gt", &["4"]), "n", &[("cores", "8")], true);
        check(expr("cores", "Gt", &["4"]), "n", &[("cores", "4")], false);
        check(
            expr("cores", "Gt", &["4"]),
            "n",
            &[("cores", "many")],
            false,
        );
        check(expr("cores", "Gt", &["4"]), "n", &[], false);
        check(expr("cores", "Lt", &["4"]), "n", &[("cores", "-1")], true);
        check(expr("cores", "Lt", &["4"]), "n", &[("cores", "4")], false);
        // Invalid requirements make their term match nothing.
        check(
            expr("cores", "Gt", &["4", "5"]),
            "n",
            &[("cores", "8")],
            false,
        );
        check(expr("cores", "Gt", &["x"]), "n", &[("cores", "8")], false);
        check(expr("zone", "In", &[]), "n", &[("zone", "")], false);
        check(expr("gpu", "Exists", &["x"]), "n", &[("gpu", "x")], false);
        check(
            expr("zone", "Matches", &["a"]),
            "n",
            &[("zone", "a")],
            false,
        );
    }

    #[test]
    fn terms_and_fields() {
        // Terms are ORed, requirements within a term ANDed.
        let two_terms = json!([
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]},
                                  {"key": "disk", "operator": "In", "values": ["ssd"]}]},
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}
        ]);
        check(
            two_terms.clone(),
            "n",
            &[("zone", "a"), ("disk", "ssd")],
            true,
        );
        check(
            two_terms.clone(),
            "n",
            &[("zone", "a"), ("disk", "hdd")],
            false,
        );
        check(two_terms.clone(), "n", &[("zone", "b")], true);
        // No terms, or only empty terms, select nothing.
        check(json!([]), "n", &[], false);
        check(json!([{}]), "n", &[("zone", "a")], false);
        check(json!([{"matchExpressions": []}]), "n", &[], false);
        let name = |op: &str, values: &[&str]| json!([{"matchFields": [{"key": "metadata.name", "operator": op, "values": values}]}]);
        check(name("In", &["n1"]), "n1", &[], true);
        check(name("In", &["n1"]), "n2", &[], false);
        check(name("NotIn", &["n1"]), "n2", &[], true);
        check(name("NotIn", &["n1"]), "n1", &[], false);
        check(name("In", &["n1", "n2"]), "n1", &[], false);
        check(name("Exists", &[]), "n1", &[], false);
        // Without a node name (a PV's node affinity) fields are not checked.
        check(name("In", &["n1"]), "", &[], true);
        let both = json!([{
            "matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}],
            "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]
        }]);
        check(both.clone(), "n1", &[("zone", "a")], true);
        check(both.clone(), "n1", &[("zone", "b")], false);
        check(both, "n2", &[("zone", "a")], false);
    }

    #[test]
    fn restricted_node_names() {
        let check_names = |terms: serde_json::Value, expected: Option<&[&str]>| {
            let terms: Vec<NodeSelectorTerm> = serde_json::from_value(terms).expect("decode");
            let expected =
                expected.map(|names| names.iter().map(|n| n.to_string()).collect::<Vec<_>>());
            assert_eq!(NodeSelector::restricted_node_names(&terms), expected);
        };
        let name_in =
            |values: &[&str]| json!({"key": "metadata.name", "operator": "In", "values": values});
        check_names(json!([{"matchFields": [name_in(&["a"])]}]), Some(&["a"]));
        check_names(
            json!([{"matchFields": [name_in(&["a"])]}, {"matchFields": [name_in(&["b"])]}]),
            Some(&["a", "b"]),
        );
        check_names(
            json!([{"matchFields": [name_in(&["a", "b"]), name_in(&["b"])]}]),
            Some(&["b"]),
        );
        check_names(
            json!([{"matchFields": [name_in(&["a"]), name_in(&["b"])]}]),
            Some(&[]),
        );
        check_names(
            json!([{"matchFields": [name_in(&["a"])]}, {"matchExpressions": [{"key": "x", "operator": "Exists"}]}]),
            None,
        );
        check_names(json!([]), None);
    }

    #[test]
    fn preferred_weights() {
        let terms: Vec<PreferredSchedulingTerm> = serde_json::from_value(json!([
            {"weight": 5, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}},
            {"weight": 3, "preference": {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}},
            {"weight": 0, "preference": {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}},
            {"weight": 7, "preference": {}}
        ]))
        .expect("decode");
        let preferred = PreferredNodeAffinity::new(&terms);
        assert_eq!(
            preferred.weight("n", &labels(&[("zone", "a"), ("disk", "ssd")])),
            8
        );
        assert_eq!(preferred.weight("n", &labels(&[("zone", "a")])), 5);
        assert_eq!(preferred.weight("n", &labels(&[])), 0);
    }
}
