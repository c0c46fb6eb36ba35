//! Label selector parsing, printing, matching and the structured form.

use std::collections::BTreeMap;

use apimachinery::selector::{LabelSelector, Operator};
use serde_json::json;

/// Parses `input` and compares its canonical string form, or the error message.
fn check(input: &str, expect: &str) {
    let actual = match LabelSelector::parse(input) {
        Ok(selector) => selector.to_string(),
        Err(e) => format!("error: {e}"),
    };
    assert_eq!(actual, expect, "parsing {input:?}");
}

#[test]
fn parse_and_print() {
    check("", "");
    check("   ", "");
    check("a=b", "a=b");
    check("a==b", "a==b");
    check("a!=b", "a!=b");
    check("a = b", "a=b");
    check("a", "a");
    check("!a", "!a");
    check("! a", "!a");
    check("a,b", "a,b");
    check("b,a", "a,b");
    check("a=", "a=");
    check("a=,b=c", "a=,b=c");
    check("x in (b,a)", "x in (a,b)");
    check("x in(a)", "x in (a)");
    check("x in (a, b ,a)", "x in (a,b)");
    check("x notin (a)", "x notin (a)");
    check("x in ()", "x in ()");
    check("x in (,a)", "x in (,a)");
    check("x in (a,)", "x in (,a)");
    check("x>1", "x>1");
    check("x < 10", "x<10");
    check("in=notin", "in=notin");
    check("notin", "notin");
    check("a=in", "a=in");
    check("example.com/app=web", "example.com/app=web");
    check(
        "app.kubernetes.io/name in (db),tier!=front,!canary",
        "app.kubernetes.io/name in (db),!canary,tier!=front",
    );
    check("\ta=b\n", "a=b");
    check("a=B_1.x-y", "a=B_1.x-y");
}

#[test]
fn parse_errors() {
    check(
        ",",
        "error: found ',', expected: !, identifier, or 'end of string'",
    );
    check("a,", "error: found '', expected: identifier after ','");
    check("a,,b", "error: found ',', expected: identifier after ','");
    check(
        "a b",
        "error: unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt",
    );
    check(
        "a=b c",
        "error: found 'c', expected: ',' or 'end of string'",
    );
    check(
        "a in b",
        "error: unable to parse requirement: found 'b' expected: '('",
    );
    check(
        "a in (b c)",
        "error: unable to parse requirement: found 'c', expected: ',' or ')'",
    );
    check(
        "a in (b",
        "error: unable to parse requirement: found '', expected: ',' or ')'",
    );
    check(
        "a in (=)",
        "error: unable to parse requirement: found '=', expected: ',', ')' or identifier",
    );
    check(
        "a in",
        "error: unable to parse requirement: found '' expected: '('",
    );
    check(
        "a==(",
        "error: unable to parse requirement: found '(', expected: identifier",
    );
    check(
        "a=(",
        "error: unable to parse requirement: found '(', expected: identifier",
    );
    check(
        "a in in",
        "error: unable to parse requirement: found 'in' expected: '('",
    );
    check(
        "!",
        "error: unable to parse requirement: found '', expected: identifier",
    );
    check(
        "!=a",
        "error: found '!=', expected: !, identifier, or 'end of string'",
    );
    check("a>b", "error: unable to parse requirement: values[0]: Invalid value: \"b\": for 'Gt', 'Lt' operators, the value must be an integer");
    check(
        "a/b/c=d",
        "error: unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
    );
    check(
        "-a=b",
        "error: unable to parse requirement: <nil>: Invalid value: \"-a\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
    );
    check(
        "a=b/c",
        "error: unable to parse requirement: values[0][a]: Invalid value: \"b/c\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
    );
}

fn labels(s: &str) -> BTreeMap<String, String> {
    s.split(',')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// Parses `selector` and matches it against `key=value,...` labels.
fn check_match(selector: &str, object_labels: &str, expect: bool) {
    let selector = LabelSelector::parse(selector).unwrap();
    assert_eq!(
        selector.matches(&labels(object_labels)),
        expect,
        "{selector} against {object_labels:?}"
    );
}

#[test]
fn matching() {
    check_match("", "", true);
    check_match("", "a=b", true);
    check_match("a=b", "a=b", true);
    check_match("a=b", "a=c", false);
    check_match("a=b", "", false);
    check_match("a==b", "a=b,c=d", true);
    check_match("a!=b", "", true);
    check_match("a!=b", "a=b", false);
    check_match("a!=b", "a=c", true);
    check_match("a", "a=", true);
    check_match("a", "b=a", false);
    check_match("!a", "b=a", true);
    check_match("!a", "a=x", false);
    check_match("a in (x,y)", "a=y", true);
    check_match("a in (x,y)", "a=z", false);
    check_match("a in (x,y)", "", false);
    check_match("a notin (x,y)", "", true);
    check_match("a notin (x,y)", "a=x", false);
    check_match("a notin (x,y)", "a=z", true);
    check_match("a=", "a=", true);
    check_match("a=", "", false);
    check_match("a>5", "a=6", true);
    check_match("a>5", "a=5", false);
    check_match("a<5", "a=-1", true);
    check_match("a<5", "a=x", false);
    check_match("a=b,c=d", "a=b,c=d", true);
    check_match("a=b,c=d", "a=b,c=e", false);
}

/// Converts a structured selector; prints it, or the field errors one per line.
fn check_json(input: serde_json::Value, expect: &str) {
    let actual = match LabelSelector::from_json(Some(&input), "spec.selector") {
        Ok(selector) => selector.to_string(),
        Err(errs) => errs
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    };
    assert_eq!(actual, expect, "converting {input}");
}

#[test]
fn structured_form() {
    check_json(json!({}), "");
    check_json(
        json!({"matchLabels": {"app": "web", "tier": "fe"}}),
        "app=web,tier=fe",
    );
    check_json(
        json!({"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]}),
        "env in (dev,prod)",
    );
    check_json(
        json!({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["a"]}]}),
        "env notin (a)",
    );
    check_json(
        json!({"matchExpressions": [{"key": "env", "operator": "Exists"}]}),
        "env",
    );
    check_json(
        json!({"matchExpressions": [{"key": "env", "operator": "DoesNotExist", "values": []}]}),
        "!env",
    );
    check_json(
        json!({"matchLabels": {"z": "1"}, "matchExpressions": [{"key": "a", "operator": "Exists"}]}),
        "a,z=1",
    );
    check_json(
        json!({"matchExpressions": [{"key": "env", "operator": "In"}]}),
        "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
    );
    check_json(
        json!({"matchExpressions": [{"key": "env", "operator": "Exists", "values": ["x"]}]}),
        "spec.selector.matchExpressions[0].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
    );
    check_json(
        json!({"matchExpressions": [{"key": "env", "operator": "Equals", "values": ["x"]}]}),
        "spec.selector.matchExpressions[0].operator: Invalid value: \"Equals\": not a valid selector operator",
    );
    check_json(
        json!({"matchLabels": {"app": "a b"}}),
        "spec.selector.matchLabels: Invalid value: \"a b\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
    );
    check_json(
        json!({"matchExpressions": [{"key": "Bad Key", "operator": "Exists"}]}),
        "spec.selector.matchExpressions[0].key: Invalid value: \"Bad Key\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
    );
    check_json(
        json!({"matchLabels": {"app": 3}}),
        "spec.selector.matchLabels[app]: Invalid value: \"3\": must be a string",
    );
}

#[test]
fn null_selects_nothing_and_empty_selects_everything() {
    let nothing = LabelSelector::from_json(None, "spec.selector").unwrap();
    assert!(nothing.is_nothing());
    assert!(!nothing.matches(&labels("a=b")));
    let everything = LabelSelector::from_json(Some(&json!({})), "spec.selector").unwrap();
    assert!(everything.is_everything());
    assert!(everything.matches(&labels("")));
}

#[test]
fn json_labels_and_objects() {
    let selector = LabelSelector::parse("app=web").unwrap();
    assert!(selector.matches_object(&json!({"metadata": {"labels": {"app": "web"}}})));
    assert!(!selector.matches_object(&json!({"metadata": {}})));
    assert!(!selector.matches_labels_value(None));
    assert!(LabelSelector::parse("!app")
        .unwrap()
        .matches_labels_value(None));
    assert_eq!(selector.requirements()[0].operator, Operator::Equals);
    assert_eq!(selector.requires_exact_match("app"), Some("web"));
    assert_eq!(selector.requires_exact_match("tier"), None);
}

#[test]
fn from_set_builds_equality_requirements() {
    assert_eq!(
        LabelSelector::from_set(&labels("b=2,a=1")).to_string(),
        "a=1,b=2"
    );
    assert!(LabelSelector::from_set(&labels("a=b c")).is_nothing());
}
