//! The subset of Kubernetes JSONPath that CRD `additionalPrinterColumns`
//! use: fields, indexes, slices, wildcards, quoted keys and simple filters.
//! Missing keys yield no result rather than an error, as the apiserver
//! evaluates printer columns with missing keys allowed.

use serde_json::Value;

/// Why a path could not be parsed; the CRD column is then unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unrecognized column definition {path:?}: {reason}")]
pub struct JsonPathError {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Field(String),
    AllFields,
    /// Negative indexes count from the end.
    Index(i64),
    Slice(Option<i64>, Option<i64>),
    Filter(Filter),
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    /// Path relative to `@`.
    path: Vec<Segment>,
    /// `None` is an existence test (`?(@.ready)`).
    comparison: Option<(Comparison, Value)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Equal,
    NotEqual,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

/// A parsed path such as `.status.conditions[?(@.type=="Ready")].status`.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    segments: Vec<Segment>,
}

impl JsonPath {
    /// Parses with or without surrounding `{}` and a leading `$`.
    pub fn parse(path: &str) -> Result<JsonPath, JsonPathError> {
        let error = |reason: &str| JsonPathError {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        let mut inner = path.trim();
        if let Some(stripped) = inner.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            inner = stripped.trim();
        }
        inner = inner.strip_prefix('$').unwrap_or(inner);
        let chars: Vec<char> = inner.chars().collect();
        let mut position = 0;
        let segments = parse_segments(&chars, &mut position, false).map_err(|r| error(&r))?;
        if position != chars.len() {
            return Err(error(&format!(
                "unexpected {:?}",
                chars[position..].iter().collect::<String>()
            )));
        }
        Ok(JsonPath { segments })
    }

    /// All values the path selects, in document order.
    pub fn find<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        evaluate(&self.segments, root)
    }
}

fn evaluate<'a>(segments: &[Segment], root: &'a Value) -> Vec<&'a Value> {
    let mut current = vec![root];
    for segment in segments {
        let mut next = Vec::new();
        for value in current {
            match segment {
                Segment::Field(name) => next.extend(value.get(name.as_str())),
                Segment::AllFields => match value {
                    Value::Object(map) => next.extend(map.values()),
                    Value::Array(items) => next.extend(items.iter()),
                    _ => {}
                },
                Segment::Index(i) => {
                    if let Value::Array(items) = value {
                        let index = if *i < 0 { items.len() as i64 + i } else { *i };
                        if index >= 0 {
                            next.extend(items.get(index as usize));
                        }
                    }
                }
                Segment::Slice(start, end) => {
                    if let Value::Array(items) = value {
                        let len = items.len() as i64;
                        let clamp = |i: i64| if i < 0 { (len + i).max(0) } else { i.min(len) };
                        let from = start.map(clamp).unwrap_or(0);
                        let to = end.map(clamp).unwrap_or(len);
                        if from < to {
                            next.extend(&items[from as usize..to as usize]);
                        }
                    }
                }
                Segment::Filter(filter) => {
                    let candidates: Vec<&Value> = match value {
                        Value::Array(items) => items.iter().collect(),
                        other => vec![other],
                    };
                    next.extend(candidates.into_iter().filter(|c| filter_matches(filter, c)));
                }
            }
        }
        current = next;
    }
    current
}

fn filter_matches(filter: &Filter, candidate: &Value) -> bool {
    let found = evaluate(&filter.path, candidate);
    let Some((comparison, expected)) = &filter.comparison else {
        return !found.is_empty();
    };
    found
        .iter()
        .any(|actual| compare(actual, *comparison, expected))
}

fn compare(actual: &Value, comparison: Comparison, expected: &Value) -> bool {
    let ordering = match (actual, expected) {
        (Value::Number(a), Value::Number(b)) => a
            .as_f64()
            .zip(b.as_f64())
            .and_then(|(a, b)| a.partial_cmp(&b)),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (a, b) => {
            return match comparison {
                Comparison::Equal => a == b,
                Comparison::NotEqual => a != b,
                _ => false,
            }
        }
    };
    let Some(ordering) = ordering else {
        return false;
    };
    match comparison {
        Comparison::Equal => ordering.is_eq(),
        Comparison::NotEqual => ordering.is_ne(),
        Comparison::Less => ordering.is_lt(),
        Comparison::LessOrEqual => ordering.is_le(),
        Comparison::Greater => ordering.is_gt(),
        Comparison::GreaterOrEqual => ordering.is_ge(),
    }
}

/// Parses `.a.b[0]...` until the end, or (inside a filter) until a
/// comparison operator or `)`.
fn parse_segments(
    chars: &[char],
    position: &mut usize,
    in_filter: bool,
) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    while *position < chars.len() {
        match chars[*position] {
            '.' => {
                *position += 1;
                if chars.get(*position) == Some(&'*') {
                    *position += 1;
                    segments.push(Segment::AllFields);
                    continue;
                }
                let name = parse_field_name(chars, position);
                if !name.is_empty() {
                    segments.push(Segment::Field(name));
                } else if *position < chars.len() && chars[*position] != '[' {
                    return Err("empty field name".to_string());
                }
            }
            '[' => {
                *position += 1;
                segments.push(parse_bracket(chars, position)?);
            }
            c if in_filter && (matches!(c, '=' | '!' | '<' | '>' | ')') || c.is_whitespace()) => {
                break
            }
            c => {
                // A path may start with a bare field name (`metadata.name`).
                if segments.is_empty() && !in_filter {
                    let name = parse_field_name(chars, position);
                    if name.is_empty() {
                        return Err(format!("unexpected {c:?}"));
                    }
                    segments.push(Segment::Field(name));
                } else {
                    return Err(format!("unexpected {c:?}"));
                }
            }
        }
    }
    Ok(segments)
}

/// A field name ends at `.`, `[`, a filter operator or `)`; `\.` escapes a dot.
fn parse_field_name(chars: &[char], position: &mut usize) -> String {
    let mut name = String::new();
    while *position < chars.len() {
        let c = chars[*position];
        if c == '\\' && *position + 1 < chars.len() {
            name.push(chars[*position + 1]);
            *position += 2;
            continue;
        }
        if matches!(
            c,
            '.' | '[' | ']' | '(' | ')' | '=' | '!' | '<' | '>' | '{' | '}' | ','
        ) || c.is_whitespace()
        {
            break;
        }
        name.push(c);
        *position += 1;
    }
    name
}

fn skip_spaces(chars: &[char], position: &mut usize) {
    while *position < chars.len() && chars[*position].is_whitespace() {
        *position += 1;
    }
}

fn expect(chars: &[char], position: &mut usize, wanted: char) -> Result<(), String> {
    skip_spaces(chars, position);
    if chars.get(*position) == Some(&wanted) {
        *position += 1;
        Ok(())
    } else {
        Err(format!("expected {wanted:?}"))
    }
}

fn parse_quoted(chars: &[char], position: &mut usize) -> Result<String, String> {
    let quote = chars[*position];
    *position += 1;
    let mut text = String::new();
    while *position < chars.len() {
        let c = chars[*position];
        *position += 1;
        if c == '\\' && *position < chars.len() {
            text.push(chars[*position]);
            *position += 1;
        } else if c == quote {
            return Ok(text);
        } else {
            text.push(c);
        }
    }
    Err("unterminated string".to_string())
}

/// After `[`: `*`, `'key'`, `0`, `-1`, `1:3`, or `?(...)`; consumes the `]`.
fn parse_bracket(chars: &[char], position: &mut usize) -> Result<Segment, String> {
    skip_spaces(chars, position);
    let segment = match chars.get(*position) {
        Some('*') => {
            *position += 1;
            Segment::AllFields
        }
        Some('\'') | Some('"') => Segment::Field(parse_quoted(chars, position)?),
        Some('?') => {
            *position += 1;
            expect(chars, position, '(')?;
            skip_spaces(chars, position);
            if chars.get(*position) != Some(&'@') {
                return Err("filter must start with @".to_string());
            }
            *position += 1;
            let path = parse_segments(chars, position, true)?;
            skip_spaces(chars, position);
            let comparison = if chars.get(*position) == Some(&')') {
                None
            } else {
                let operator = parse_comparison(chars, position)?;
                skip_spaces(chars, position);
                Some((operator, parse_literal(chars, position)?))
            };
            expect(chars, position, ')')?;
            Segment::Filter(Filter { path, comparison })
        }
        _ => {
            let start = *position;
            while *position < chars.len() && chars[*position] != ']' {
                *position += 1;
            }
            let text: String = chars[start..*position]
                .iter()
                .collect::<String>()
                .trim()
                .to_string();
            let number = |s: &str| -> Result<Option<i64>, String> {
                let s = s.trim();
                if s.is_empty() {
                    Ok(None)
                } else {
                    s.parse::<i64>()
                        .map(Some)
                        .map_err(|_| format!("invalid array index {s:?}"))
                }
            };
            match text.split_once(':') {
                Some((from, to)) => Segment::Slice(
                    number(from)?,
                    number(to.split(':').next().unwrap_or_default())?,
                ),
                None => Segment::Index(number(&text)?.ok_or("empty array index")?),
            }
        }
    };
    expect(chars, position, ']')?;
    Ok(segment)
}

fn parse_comparison(chars: &[char], position: &mut usize) -> Result<Comparison, String> {
    let two: String = chars[*position..chars.len().min(*position + 2)]
        .iter()
        .collect();
    let (comparison, width) = match two.as_str() {
        "==" => (Comparison::Equal, 2),
        "!=" => (Comparison::NotEqual, 2),
        "<=" => (Comparison::LessOrEqual, 2),
        ">=" => (Comparison::GreaterOrEqual, 2),
        _ if two.starts_with('<') => (Comparison::Less, 1),
        _ if two.starts_with('>') => (Comparison::Greater, 1),
        // Kubernetes also accepts a single `=` for equality.
        _ if two.starts_with('=') => (Comparison::Equal, 1),
        _ => return Err("expected a comparison operator".to_string()),
    };
    *position += width;
    Ok(comparison)
}

fn parse_literal(chars: &[char], position: &mut usize) -> Result<Value, String> {
    match chars.get(*position) {
        Some('\'') | Some('"') => Ok(Value::String(parse_quoted(chars, position)?)),
        _ => {
            let start = *position;
            while *position < chars.len()
                && !chars[*position].is_whitespace()
                && chars[*position] != ')'
            {
                *position += 1;
            }
            let text: String = chars[start..*position].iter().collect();
            match text.as_str() {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                "null" => Ok(Value::Null),
                _ => serde_json::from_str::<serde_json::Number>(&text)
                    .map(Value::Number)
                    .map_err(|_| format!("invalid literal {text:?}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Evaluates `path` on a fixed object; `expect` is the JSON array of results or `error`.
    fn check(path: &str, expect: &str) {
        let object = json!({
            "metadata": {"name": "x", "labels": {"app": "web", "app.kubernetes.io/name": "db"}},
            "spec": {"replicas": 3, "ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "False"}]}
        });
        let actual = match JsonPath::parse(path) {
            Ok(p) => serde_json::to_string(&p.find(&object)).unwrap(),
            Err(_) => "error".to_string(),
        };
        assert_eq!(actual, expect, "{path}");
    }

    #[test]
    fn paths() {
        check(".metadata.name", r#"["x"]"#);
        check("{.metadata.name}", r#"["x"]"#);
        check("$.metadata.name", r#"["x"]"#);
        check("metadata.name", r#"["x"]"#);
        check(".spec.replicas", "[3]");
        check(".metadata.missing", "[]");
        check(".metadata.labels.app", r#"["web"]"#);
        check(r".metadata.labels.app\.kubernetes\.io/name", r#"["db"]"#);
        check(".metadata.labels['app.kubernetes.io/name']", r#"["db"]"#);
        check(".spec.ports[0].port", "[80]");
        check(".spec.ports[-1].port", "[443]");
        check(".spec.ports[5].port", "[]");
        check(".spec.ports[*].name", r#"["http","https"]"#);
        check(".spec.ports[0:1].name", r#"["http"]"#);
        check(".spec.ports.*.port", "[80,443]");
        check(
            r#".status.conditions[?(@.type=="Ready")].status"#,
            r#"["True"]"#,
        );
        check(
            ".status.conditions[?(@.type == 'Synced')].status",
            r#"["False"]"#,
        );
        check(
            r#".status.conditions[?(@.status!="True")].type"#,
            r#"["Synced"]"#,
        );
        check(".spec.ports[?(@.port>100)].name", r#"["https"]"#);
        check(".spec.ports[?(@.name)].port", "[80,443]");
        check(".spec.ports[", "error");
        check(".spec.ports[x]", "error");
    }
}
