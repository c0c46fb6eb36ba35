//! Name, label and annotation validation messages, word for word.

use std::collections::BTreeMap;

use apimachinery::names::{self, FieldError};

const SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const NAME_PART: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const VALUE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

/// Runs `validate` on `input`; `expect` is the messages joined by " | ", empty when valid.
fn check(validate: fn(&str) -> Vec<String>, input: &str, expect: &str) {
    assert_eq!(validate(input).join(" | "), expect, "validating {input:?}");
}

#[test]
fn dns1123_subdomain() {
    let f = names::is_dns1123_subdomain;
    check(f, "example.com", "");
    check(f, "a", "");
    check(f, "0-a.b-1", "");
    check(f, "", SUBDOMAIN);
    check(f, "Foo", SUBDOMAIN);
    check(f, "a..b", SUBDOMAIN);
    check(f, "-a", SUBDOMAIN);
    check(f, "a-", SUBDOMAIN);
    check(f, "a_b", SUBDOMAIN);
    check(f, &"a".repeat(253), "");
    check(f, &"a".repeat(254), "must be no more than 253 characters");
}

#[test]
fn dns1123_label() {
    let f = names::is_dns1123_label;
    check(f, "my-name", "");
    check(f, "123", "");
    check(f, "a.b", "must not contain dots");
    check(f, "A", LABEL);
    check(f, "", LABEL);
    check(f, &"a".repeat(63), "");
    check(f, &"a".repeat(64), "must be no more than 63 characters");
    check(
        f,
        &format!("{}.b", "a".repeat(64)),
        "must be no more than 63 characters | must not contain dots",
    );
}

#[test]
fn dns1035_label() {
    let f = names::is_dns1035_label;
    check(f, "my-svc", "");
    check(f, "1abc", DNS1035);
    check(f, "abc-", DNS1035);
}

#[test]
fn qualified_name() {
    let f = names::is_qualified_name;
    check(f, "app", "");
    check(f, "App_1.x-Y", "");
    check(f, "example.com/App", "");
    check(f, "kubernetes.io/role", "");
    check(f, "", &format!("name part must be non-empty | {NAME_PART}"));
    check(f, "/a", "prefix part must be non-empty");
    check(f, "Example.com/a", &format!("prefix part {SUBDOMAIN}"));
    check(
        f,
        "a/",
        &format!("name part must be non-empty | {NAME_PART}"),
    );
    check(f, "-a", NAME_PART);
    check(
        f,
        &"a".repeat(64),
        "name part must be no more than 63 characters",
    );
    check(f, "a/b/c", "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')");
}

#[test]
fn label_value() {
    let f = names::is_valid_label_value;
    check(f, "", "");
    check(f, "v1.2_x-Y", "");
    check(f, "a b", VALUE);
    check(f, "_a", VALUE);
    check(f, &"a".repeat(64), "must be no more than 63 characters");
}

#[test]
fn object_meta_name() {
    check(|n| names::validate_object_meta_name(n, false), "web-0", "");
    check(
        |n| names::validate_object_meta_name(n, false),
        "web-",
        SUBDOMAIN,
    );
    check(|n| names::validate_object_meta_name(n, true), "web-", "");
    check(
        |n| names::validate_object_meta_name(n, true),
        "-",
        SUBDOMAIN,
    );
    check(
        |n| names::validate_path_segment_name(n, false),
        "..",
        "may not be '..'",
    );
    check(
        |n| names::validate_path_segment_name(n, false),
        "a/b%",
        "may not contain '/' | may not contain '%'",
    );
    check(
        |n| names::validate_path_segment_name(n, false),
        "system:admin",
        "",
    );
}

/// Formats field errors one per line.
fn lines(errs: Vec<FieldError>) -> String {
    errs.iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn field_errors_format_like_kubernetes() {
    assert_eq!(
        lines(names::validate_name_and_generate_name(
            "Foo",
            "",
            "metadata",
            names::validate_object_meta_name
        )),
        format!("metadata.name: Invalid value: \"Foo\": {SUBDOMAIN}")
    );
    assert_eq!(
        lines(names::validate_name_and_generate_name(
            "",
            "",
            "metadata",
            names::validate_object_meta_name
        )),
        "metadata.name: Required value: name or generateName is required"
    );
    assert_eq!(
        lines(names::validate_name_and_generate_name(
            "",
            "web-",
            "metadata",
            names::validate_object_meta_name
        )),
        "metadata.name: Required value: name or generateName is required"
    );
    assert_eq!(
        FieldError::not_supported("spec.type", "Foo", &["ClusterIP", "NodePort"]).to_string(),
        "spec.type: Unsupported value: \"Foo\": supported values: \"ClusterIP\", \"NodePort\""
    );
    assert_eq!(
        FieldError::duplicate("spec.ports[1].name", "http").to_string(),
        "spec.ports[1].name: Duplicate value: \"http\""
    );
    assert_eq!(
        FieldError::invalid("a", "say \"hi\"\n", "bad").to_string(),
        "a: Invalid value: \"say \\\"hi\\\"\\n\": bad"
    );
    assert_eq!(
        names::aggregate_message(&[
            FieldError::required("a", "x"),
            FieldError::required("b", "y")
        ]),
        "[a: Required value: x, b: Required value: y]"
    );
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn labels_and_annotations() {
    assert_eq!(
        lines(names::validate_labels(
            &map(&[("app", "web"), ("example.com/tier", "")]),
            "metadata.labels"
        )),
        ""
    );
    assert_eq!(
        lines(names::validate_labels(&map(&[("a b", "x y")]), "metadata.labels")),
        format!("metadata.labels: Invalid value: \"a b\": {NAME_PART}\nmetadata.labels: Invalid value: \"x y\": {VALUE}")
    );
    assert_eq!(
        lines(names::validate_annotations(
            &map(&[("Example.COM/Note", "anything at all")]),
            "metadata.annotations"
        )),
        ""
    );
    assert_eq!(
        lines(names::validate_annotations(
            &map(&[("a", &"x".repeat(256 * 1024))]),
            "metadata.annotations"
        )),
        "metadata.annotations: Too long: may not be more than 262144 bytes"
    );
}
