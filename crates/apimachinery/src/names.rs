//! Name, label and annotation validation with Kubernetes' exact wording, so
//! kubectl users see the same messages they would get from kube-apiserver.
//!
//! The checks are hand-written character scans rather than regexes: they are
//! the hot path of every create and update, and the patterns are simple. The
//! regex text still appears in messages because Kubernetes prints it.

use std::collections::BTreeMap;
use std::fmt;

/// Longest DNS-1123 subdomain (object names of most kinds).
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Longest DNS-1123 / DNS-1035 label.
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Longest name part of a qualified name (label and annotation keys).
pub const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
/// Longest label value.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;
/// Sum of the lengths of all annotation keys and values.
pub const TOTAL_ANNOTATION_SIZE_LIMIT_BYTES: usize = 256 * 1024;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// Kubernetes' `field.ErrorType`, limited to the kinds drover reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    Invalid,
    Required,
    Duplicate,
    NotSupported,
    TooLong,
    Forbidden,
    NotFound,
}

impl FieldErrorKind {
    /// The text Kubernetes prints for the kind (`field.ErrorType.String()`).
    pub fn as_str(self) -> &'static str {
        match self {
            FieldErrorKind::Invalid => "Invalid value",
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::NotFound => "Not found",
        }
    }

    /// The `reason` of a `Status.details.causes[]` entry for this kind.
    pub fn cause_reason(self) -> &'static str {
        match self {
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::NotFound => "FieldValueNotFound",
        }
    }
}

/// One validation failure at a field path, Kubernetes' `field.Error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted field path such as `metadata.name` or `spec.ports[0].port`.
    pub field: String,
    pub kind: FieldErrorKind,
    /// The offending value; printed Go-quoted. `None` for kinds that omit it.
    pub value: Option<String>,
    pub message: String,
    /// The value is printed as is (numbers, booleans), not quoted.
    pub value_unquoted: bool,
}

impl FieldError {
    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Invalid,
            value: Some(value.into()),
            message: message.into(),
            value_unquoted: false,
        }
    }

    /// An invalid number or boolean: printed unquoted, as Kubernetes does.
    pub fn invalid_unquoted(
        field: impl Into<String>,
        value: impl fmt::Display,
        message: impl Into<String>,
    ) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Invalid,
            value: Some(value.to_string()),
            message: message.into(),
            value_unquoted: true,
        }
    }

    pub fn required(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Required,
            value: None,
            message: message.into(),
            value_unquoted: false,
        }
    }

    pub fn forbidden(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Forbidden,
            value: None,
            message: message.into(),
            value_unquoted: false,
        }
    }

    pub fn not_found(field: impl Into<String>, value: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::NotFound,
            value: Some(value.into()),
            message: String::new(),
            value_unquoted: false,
        }
    }

    pub fn duplicate(field: impl Into<String>, value: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Duplicate,
            value: Some(value.into()),
            message: String::new(),
            value_unquoted: false,
        }
    }

    /// `supported` are listed, quoted, in the order given, as Kubernetes does.
    pub fn not_supported(
        field: impl Into<String>,
        value: impl Into<String>,
        supported: &[&str],
    ) -> Self {
        let message = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::NotSupported,
            value: Some(value.into()),
            message,
            value_unquoted: false,
        }
    }

    pub fn too_long(field: impl Into<String>, max_length_bytes: usize) -> Self {
        let unit = if max_length_bytes == 1 {
            "byte"
        } else {
            "bytes"
        };
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::TooLong,
            value: None,
            message: format!("may not be more than {max_length_bytes} {unit}"),
            value_unquoted: false,
        }
    }

    /// Everything after `field: `, Kubernetes' `ErrorBody()`.
    pub fn body(&self) -> String {
        let mut body = self.kind.as_str().to_string();
        // Kubernetes never prints the value of these kinds, even when set.
        let omit_value = matches!(
            self.kind,
            FieldErrorKind::Required | FieldErrorKind::Forbidden | FieldErrorKind::TooLong
        );
        if let (false, Some(value)) = (omit_value, &self.value) {
            body.push_str(": ");
            if self.value_unquoted {
                body.push_str(value);
            } else {
                body.push_str(&go_quote(value));
            }
        }
        if !self.message.is_empty() {
            body.push_str(": ");
            body.push_str(&self.message);
        }
        body
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

impl std::error::Error for FieldError {}

/// Joins errors the way Kubernetes' `ErrorList.ToAggregate().Error()` does:
/// one error alone, several as `[a, b]`.
pub fn aggregate_message(errors: &[FieldError]) -> String {
    match errors {
        [] => String::new(),
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Go's `%q` for strings: what Kubernetes uses to print bad values.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// Kubernetes' `RegexError`, including its odd `',  or '` joining.
fn regex_error(message: &str, pattern: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{message} (regex used for validation is '{pattern}')");
    }
    let mut out = format!("{message} (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push('\'');
        out.push_str(example);
        out.push_str("', ");
    }
    out.push_str("regex used for validation is '");
    out.push_str(pattern);
    out.push_str("')");
    out
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn matches_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && is_lower_alnum(b[0])
        && is_lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
}

/// One or more DNS-1123 labels joined by dots.
fn matches_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(matches_dns1123_label)
}

/// `[a-z]([-a-z0-9]*[a-z0-9])?`
fn matches_dns1035_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_lowercase()
        && is_lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn matches_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Checks a DNS-1123 subdomain (most object names). Empty result means valid.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Checks a DNS-1123 label (namespace names, service port names, ...).
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(value) {
        if matches_dns1123_subdomain(value) {
            // A valid subdomain that is not a valid label can only differ by dots.
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_ERR,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// Checks a DNS-1035 label (service names): must start with a letter.
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1035_label(value) {
        errs.push(regex_error(
            DNS1035_LABEL_ERR,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// Checks a qualified name such as a label or annotation key: an optional
/// DNS subdomain prefix and `/`, then a name part of at most 63 characters.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    is_dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(format!(
            "name part {}",
            max_len_error(QUALIFIED_NAME_MAX_LENGTH)
        ));
    }
    if !matches_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// Checks a label value: empty, or at most 63 qualified-name characters.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !matches_qualified_name_part(value) {
        errs.push(regex_error(
            LABEL_VALUE_ERR,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// Kubernetes' `NameIsDNSSubdomain`: the name rule of most kinds. With
/// `prefix_allowed` the value is a `generateName` prefix, so a trailing `-`
/// is fine because random characters will follow it.
pub fn validate_object_meta_name(name: &str, prefix_allowed: bool) -> Vec<String> {
    if prefix_allowed {
        is_dns1123_subdomain(&mask_trailing_dash(name))
    } else {
        is_dns1123_subdomain(name)
    }
}

/// Kubernetes' `NameIsDNSLabel` (namespaces, and names that become hostnames).
pub fn validate_object_meta_name_dns_label(name: &str, prefix_allowed: bool) -> Vec<String> {
    if prefix_allowed {
        is_dns1123_label(&mask_trailing_dash(name))
    } else {
        is_dns1123_label(name)
    }
}

/// Kubernetes' `NameIsDNS1035Label` (services).
pub fn validate_object_meta_name_dns1035_label(name: &str, prefix_allowed: bool) -> Vec<String> {
    if prefix_allowed {
        is_dns1035_label(&mask_trailing_dash(name))
    } else {
        is_dns1035_label(name)
    }
}

/// Kubernetes' `ValidatePathSegmentName`: the rule for kinds whose names only
/// need to be usable in a URL path (RBAC roles, for example).
pub fn validate_path_segment_name(name: &str, prefix_allowed: bool) -> Vec<String> {
    let mut errs = Vec::new();
    if !prefix_allowed && (name == "." || name == "..") {
        errs.push(format!("may not be '{name}'"));
    }
    for illegal in ["/", "%"] {
        if name.contains(illegal) {
            errs.push(format!("may not contain '{illegal}'"));
        }
    }
    errs
}

fn mask_trailing_dash(name: &str) -> String {
    match name.strip_suffix('-') {
        Some(rest) if name.len() > 1 => format!("{rest}a"),
        _ => name.to_string(),
    }
}

/// Validates `metadata.name` and `metadata.generateName` as Kubernetes'
/// `ValidateObjectMeta` does, with `name_rule` being one of the
/// `validate_object_meta_name*` functions. `meta_path` is usually `metadata`.
pub fn validate_name_and_generate_name(
    name: &str,
    generate_name: &str,
    meta_path: &str,
    name_rule: fn(&str, bool) -> Vec<String>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if !generate_name.is_empty() {
        for message in name_rule(generate_name, true) {
            errs.push(FieldError::invalid(
                format!("{meta_path}.generateName"),
                generate_name,
                message,
            ));
        }
    }
    if name.is_empty() {
        errs.push(FieldError::required(
            format!("{meta_path}.name"),
            "name or generateName is required",
        ));
    } else {
        for message in name_rule(name, false) {
            errs.push(FieldError::invalid(
                format!("{meta_path}.name"),
                name,
                message,
            ));
        }
    }
    errs
}

/// Kubernetes' `ValidateLabelName`: the error's path is the label map's, not the key's.
pub fn validate_label_name(key: &str, field_path: &str) -> Vec<FieldError> {
    is_qualified_name(key)
        .into_iter()
        .map(|m| FieldError::invalid(field_path, key, m))
        .collect()
}

/// Kubernetes' `ValidateLabels`: keys are qualified names, values label values.
pub fn validate_labels(labels: &BTreeMap<String, String>, field_path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (key, value) in labels {
        errs.extend(validate_label_name(key, field_path));
        errs.extend(
            is_valid_label_value(value)
                .into_iter()
                .map(|m| FieldError::invalid(field_path, value.as_str(), m)),
        );
    }
    errs
}

/// Kubernetes' `ValidateAnnotations`: keys are qualified names ignoring case,
/// and all keys and values together fit in 256 KiB.
pub fn validate_annotations(
    annotations: &BTreeMap<String, String>,
    field_path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total_size_bytes = 0usize;
    for (key, value) in annotations {
        // Annotation keys may use upper case in the prefix, unlike labels.
        for message in is_qualified_name(&key.to_lowercase()) {
            errs.push(FieldError::invalid(field_path, key.as_str(), message));
        }
        total_size_bytes += key.len() + value.len();
    }
    if total_size_bytes > TOTAL_ANNOTATION_SIZE_LIMIT_BYTES {
        errs.push(FieldError::too_long(
            field_path,
            TOTAL_ANNOTATION_SIZE_LIMIT_BYTES,
        ));
    }
    errs
}

/// Reads a `metadata.labels`-shaped JSON object into a map. Non-string values
/// are reported as invalid rather than silently dropped.
pub fn string_map_from_json(
    value: Option<&serde_json::Value>,
    field_path: &str,
) -> Result<BTreeMap<String, String>, Vec<FieldError>> {
    let mut map = BTreeMap::new();
    let object = match value {
        None | Some(serde_json::Value::Null) => return Ok(map),
        Some(serde_json::Value::Object(object)) => object,
        Some(other) => {
            return Err(vec![FieldError::invalid(
                field_path,
                other.to_string(),
                "must be an object of strings",
            )])
        }
    };
    let mut errs = Vec::new();
    for (key, value) in object {
        match value {
            serde_json::Value::String(s) => {
                map.insert(key.clone(), s.clone());
            }
            other => errs.push(FieldError::invalid(
                format!("{field_path}[{key}]"),
                other.to_string(),
                "must be a string",
            )),
        }
    }
    if errs.is_empty() {
        Ok(map)
    } else {
        Err(errs)
    }
}
