//! Field selector parsing, printing and matching.

use apimachinery::fields::FieldSelector;
use serde_json::json;

/// Parses `input` and compares its canonical string form, or the error message.
fn check(input: &str, expect: &str) {
    let actual = match FieldSelector::parse(input) {
        Ok(selector) => selector.to_string(),
        Err(e) => format!("error: {e}"),
    };
    assert_eq!(actual, expect, "parsing {input:?}");
}

#[test]
fn parse_and_print() {
    check("", "");
    check("metadata.name=x", "metadata.name=x");
    check("metadata.name==x", "metadata.name=x");
    check("status.phase!=Running", "status.phase!=Running");
    check(
        "spec.nodeName=n1,metadata.namespace=default",
        "metadata.namespace=default,spec.nodeName=n1",
    );
    check("a=b,", "a=b");
    check("a=", "a=");
    check(r"a=x\,y", r"a=x\,y");
    check(r"a=x\=y", r"a=x\=y");
    check(r"a=x\\y", r"a=x\\y");
    check(
        "a!==b",
        "error: invalid field selector: unescaped character in value: 61",
    );
    check(
        "a in (x)",
        "error: invalid selector: 'a in (x)'; can't understand 'a in (x)'",
    );
    check("a", "error: invalid selector: 'a'; can't understand 'a'");
    check(
        "a=b,c",
        "error: invalid selector: 'a=b,c'; can't understand 'c'",
    );
    check(
        r"a=x\y",
        r"error: invalid field selector: invalid escape sequence: \y",
    );
    check(
        r"a=x\",
        r"error: invalid field selector: invalid escape sequence: \",
    );
}

/// Matches `selector` against a pod-like object.
fn check_match(selector: &str, expect: bool) {
    let pod = json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "n1", "hostNetwork": true}, "status": {"phase": "Running"}});
    assert_eq!(
        FieldSelector::parse(selector).unwrap().matches_object(&pod),
        expect,
        "{selector}"
    );
}

#[test]
fn matching() {
    check_match("", true);
    check_match("metadata.name=p", true);
    check_match("metadata.name=q", false);
    check_match("spec.nodeName=n1,status.phase=Running", true);
    check_match("spec.nodeName=n1,status.phase!=Running", false);
    check_match("spec.nodeName!=", true);
    check_match("spec.schedulerName=", true);
    check_match("spec.schedulerName!=", false);
    check_match("spec.hostNetwork=true", true);
}

#[test]
fn requirements_and_support() {
    let selector = FieldSelector::parse("spec.nodeName=n1,status.podIP!=1.2.3.4").unwrap();
    let fields: Vec<&str> = selector
        .requirements()
        .iter()
        .map(|r| r.field.as_str())
        .collect();
    assert_eq!(fields, ["spec.nodeName", "status.podIP"]);
    assert!(selector
        .check_supported(&["spec.nodeName", "status.podIP"])
        .is_ok());
    assert_eq!(
        selector
            .check_supported(&["metadata.name", "spec.nodeName"])
            .unwrap_err()
            .to_string(),
        "field label not supported: status.podIP"
    );
    assert_eq!(selector.requires_exact_match("spec.nodeName"), Some("n1"));
    assert_eq!(selector.requires_exact_match("status.podIP"), None);
    assert!(selector.matches(|f| Some(if f == "spec.nodeName" {
        "n1".into()
    } else {
        "9.9.9.9".into()
    })));
}
