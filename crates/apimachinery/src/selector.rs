//! Label selectors: the `-l` string form parsed exactly as kube-apiserver
//! parses it, the structured `matchLabels`/`matchExpressions` form of API
//! objects, matching against labels, and printing back to the string form.
//!
//! The parser mirrors Kubernetes' lexer and recursive-descent parser closely,
//! including its error messages, because kubectl users see them verbatim.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::names::{self, aggregate_message, FieldError};

/// Why a selector string or requirement was rejected. `Display` is the
/// message kube-apiserver returns in its 400 `Status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The string could not be tokenized or did not follow the grammar.
    #[error("{0}")]
    Syntax(String),
    /// One requirement was malformed or invalid.
    #[error("unable to parse requirement: {0}")]
    Requirement(String),
    /// A field selector named a field the resource does not index.
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

/// How a requirement compares the label's value with its own values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    In,
    NotIn,
    Equals,
    DoubleEquals,
    NotEquals,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

impl Operator {
    /// The name Kubernetes' `selection.Operator` carries, used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

/// One term of a selector, e.g. `tier in (web,api)`. `values` are sorted and
/// free of duplicates, as Kubernetes keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

impl Requirement {
    /// Kubernetes' `NewRequirement`: validates key, values and their count for
    /// the operator. Errors use paths relative to the requirement (`key`,
    /// `values[0][key]`), since that is what the string parser reports.
    pub fn new(
        key: &str,
        operator: Operator,
        values: Vec<String>,
    ) -> Result<Requirement, Vec<FieldError>> {
        let mut values = values;
        values.sort();
        values.dedup();
        let mut errs = Vec::new();
        if let Err(e) = validate_label_key(key, "key") {
            errs.push(e);
        }
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                errs.push(FieldError::invalid(
                    "values",
                    "",
                    "for 'in', 'notin' operators, values set can't be empty",
                ));
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                errs.push(FieldError::invalid(
                    "values",
                    values.join(","),
                    "exact-match compatibility requires one single value",
                ));
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                errs.push(FieldError::invalid(
                    "values",
                    values.join(","),
                    "values set must be empty for exists and does not exist",
                ));
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(FieldError::invalid(
                        "values",
                        values.join(","),
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (i, value) in values.iter().enumerate() {
                    if value.parse::<i64>().is_err() {
                        errs.push(FieldError::invalid(
                            format!("values[{i}]"),
                            value.as_str(),
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, value) in values.iter().enumerate() {
            let messages = names::is_valid_label_value(value);
            if !messages.is_empty() {
                errs.push(FieldError::invalid(
                    format!("values[{i}][{key}]"),
                    value.as_str(),
                    messages.join("; "),
                ));
            }
        }
        if errs.is_empty() {
            Ok(Requirement {
                key: key.to_string(),
                operator,
                values,
            })
        } else {
            Err(errs)
        }
    }

    /// Whether a label set satisfies this requirement. A missing label
    /// satisfies `!=` and `notin`, as in Kubernetes.
    pub fn matches<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        let value = get(&self.key);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                value.is_some_and(|v| self.has_value(v))
            }
            Operator::NotIn | Operator::NotEquals => !value.is_some_and(|v| self.has_value(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(actual), [bound]) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.as_slice(),
                ) else {
                    return false;
                };
                let Ok(bound) = bound.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    actual > bound
                } else {
                    actual < bound
                }
            }
        }
    }

    fn has_value(&self, value: &str) -> bool {
        self.values
            .binary_search_by(|v| v.as_str().cmp(value))
            .is_ok()
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        f.write_str(op)?;
        let set = matches!(self.operator, Operator::In | Operator::NotIn);
        if set {
            f.write_str("(")?;
        }
        f.write_str(&self.values.join(","))?;
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A parsed label selector: all requirements must match (logical AND).
/// No requirements selects everything; `nothing()` (a missing structured
/// selector) selects no object at all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    matches_nothing: bool,
}

impl LabelSelector {
    /// Selects every object (the empty string, or `{}`).
    pub fn everything() -> LabelSelector {
        LabelSelector::default()
    }

    /// Selects no object (a null structured selector).
    pub fn nothing() -> LabelSelector {
        LabelSelector {
            requirements: Vec::new(),
            matches_nothing: true,
        }
    }

    /// Builds a selector from requirements, sorted by key as Kubernetes sorts them.
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> LabelSelector {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector {
            requirements,
            matches_nothing: false,
        }
    }

    /// Kubernetes' `SelectorFromSet`: one `key=value` per entry (a Service's
    /// `spec.selector`, a DaemonSet's node selector). Entries that are not
    /// valid labels cannot match anything, so they make the selector select nothing.
    pub fn from_set(set: &BTreeMap<String, String>) -> LabelSelector {
        let mut requirements = Vec::with_capacity(set.len());
        for (key, value) in set {
            match Requirement::new(key, Operator::Equals, vec![value.clone()]) {
                Ok(r) => requirements.push(r),
                Err(_) => return LabelSelector::nothing(),
            }
        }
        LabelSelector::from_requirements(requirements)
    }

    /// Parses the string form kubectl sends in `labelSelector=`.
    pub fn parse(selector: &str) -> Result<LabelSelector, SelectorError> {
        let tokens = lex(selector);
        let requirements = Parser {
            tokens,
            position: 0,
        }
        .parse()?;
        Ok(LabelSelector::from_requirements(requirements))
    }

    /// Converts the structured form found in API objects (`spec.selector`),
    /// validating it first; errors carry paths under `field_path`.
    /// `None` or `null` selects nothing, `{}` selects everything, as
    /// Kubernetes' `LabelSelectorAsSelector` does.
    pub fn from_json(
        value: Option<&Value>,
        field_path: &str,
    ) -> Result<LabelSelector, Vec<FieldError>> {
        let Some(value) = value.filter(|v| !v.is_null()) else {
            return Ok(LabelSelector::nothing());
        };
        let errs = validate_label_selector(value, field_path);
        if !errs.is_empty() {
            return Err(errs);
        }
        let mut requirements = Vec::new();
        if let Some(Value::Object(match_labels)) = value.get("matchLabels") {
            for (key, v) in match_labels {
                let v = v.as_str().unwrap_or_default().to_string();
                requirements.push(Requirement {
                    key: key.clone(),
                    operator: Operator::Equals,
                    values: vec![v],
                });
            }
        }
        if let Some(Value::Array(expressions)) = value.get("matchExpressions") {
            for expression in expressions {
                let key = expression
                    .get("key")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let operator = match expression.get("operator").and_then(Value::as_str) {
                    Some("In") => Operator::In,
                    Some("NotIn") => Operator::NotIn,
                    Some("Exists") => Operator::Exists,
                    _ => Operator::DoesNotExist,
                };
                let mut values: Vec<String> =
                    string_array(expression.get("values")).unwrap_or_default();
                values.sort();
                values.dedup();
                requirements.push(Requirement {
                    key,
                    operator,
                    values,
                });
            }
        }
        Ok(LabelSelector::from_requirements(requirements))
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    pub fn is_everything(&self) -> bool {
        !self.matches_nothing && self.requirements.is_empty()
    }

    pub fn is_nothing(&self) -> bool {
        self.matches_nothing
    }

    /// The value every matching object must have for `key`, if the selector
    /// pins one (`key=value`, `key==value` or `key in (value)`).
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find_map(|r| match (r.operator, r.values.as_slice()) {
                (Operator::Equals | Operator::DoubleEquals | Operator::In, [only])
                    if r.key == key =>
                {
                    Some(only.as_str())
                }
                _ => None,
            })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|key| labels.get(key).map(String::as_str))
    }

    /// Matches a JSON labels object; non-string values count as absent.
    pub fn matches_json_map(&self, labels: &serde_json::Map<String, Value>) -> bool {
        self.matches_with(|key| labels.get(key).and_then(Value::as_str))
    }

    /// Matches an object's `metadata.labels` (which may be absent).
    pub fn matches_labels_value(&self, labels: Option<&Value>) -> bool {
        match labels {
            Some(Value::Object(map)) => self.matches_json_map(map),
            _ => self.matches_with(|_| None),
        }
    }

    /// Matches a whole API object by its `metadata.labels`.
    pub fn matches_object(&self, object: &Value) -> bool {
        self.matches_labels_value(object.get("metadata").and_then(|m| m.get("labels")))
    }

    /// Matches any label source; `get` returns a label's value if present.
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        !self.matches_nothing && self.requirements.iter().all(|r| r.matches(&get))
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for LabelSelector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LabelSelector::parse(s)
    }
}

/// Kubernetes' `ValidateLabelSelector` over the JSON form, with paths under
/// `field_path` (e.g. `spec.selector`). Type mismatches are reported too,
/// since the input has not been through a typed decoder.
pub fn validate_label_selector(selector: &Value, field_path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Value::Object(selector) = selector else {
        errs.push(FieldError::invalid(
            field_path,
            selector.to_string(),
            "must be an object",
        ));
        return errs;
    };
    let labels_path = format!("{field_path}.matchLabels");
    match names::string_map_from_json(selector.get("matchLabels"), &labels_path) {
        Ok(labels) => errs.extend(names::validate_labels(&labels, &labels_path)),
        Err(e) => errs.extend(e),
    }
    match selector.get("matchExpressions") {
        None | Some(Value::Null) => {}
        Some(Value::Array(expressions)) => {
            for (i, expression) in expressions.iter().enumerate() {
                errs.extend(validate_requirement_json(
                    expression,
                    &format!("{field_path}.matchExpressions[{i}]"),
                ));
            }
        }
        Some(other) => errs.push(FieldError::invalid(
            format!("{field_path}.matchExpressions"),
            other.to_string(),
            "must be an array",
        )),
    }
    errs
}

fn validate_requirement_json(expression: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let values_path = format!("{path}.values");
    let values = match string_array(expression.get("values")) {
        Some(values) => values,
        None => {
            errs.push(FieldError::invalid(
                &values_path,
                expression["values"].to_string(),
                "must be an array of strings",
            ));
            Vec::new()
        }
    };
    match expression
        .get("operator")
        .and_then(Value::as_str)
        .unwrap_or_default()
    {
        "In" | "NotIn" => {
            if values.is_empty() {
                errs.push(FieldError::required(
                    &values_path,
                    "must be specified when `operator` is 'In' or 'NotIn'",
                ));
            }
        }
        "Exists" | "DoesNotExist" => {
            if !values.is_empty() {
                errs.push(FieldError::forbidden(
                    &values_path,
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                ));
            }
        }
        other => errs.push(FieldError::invalid(
            format!("{path}.operator"),
            other,
            "not a valid selector operator",
        )),
    }
    let key = expression
        .get("key")
        .and_then(Value::as_str)
        .unwrap_or_default();
    errs.extend(names::validate_label_name(key, &format!("{path}.key")));
    for (i, value) in values.iter().enumerate() {
        for message in names::is_valid_label_value(value) {
            errs.push(FieldError::invalid(
                format!("{values_path}[{i}]"),
                value.as_str(),
                message,
            ));
        }
    }
    errs
}

/// `None` when present but not an array of strings; absent or null is empty.
fn string_array(value: Option<&Value>) -> Option<Vec<String>> {
    match value {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(_) => None,
    }
}

/// Kubernetes reports a bad key in the string form with a nil field path,
/// which prints as `<nil>`.
fn validate_label_key(key: &str, path: &str) -> Result<(), FieldError> {
    let messages = names::is_qualified_name(key);
    if messages.is_empty() {
        Ok(())
    } else {
        Err(FieldError::invalid(path, key, messages.join("; ")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Identifier,
    DoesNotExist,
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    GreaterThan,
    LessThan,
    OpenPar,
    ClosedPar,
    Comma,
    EndOfString,
}

/// Where the parser is decides whether `in`/`notin` are keywords: only in
/// operator position, so `in=notin` is a valid selector.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

fn is_special_symbol(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn symbol_token(s: &str) -> Option<Token> {
    Some(match s {
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::DoesNotExist,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::GreaterThan,
        "<" => Token::LessThan,
        "!=" => Token::NotEquals,
        "(" => Token::OpenPar,
        _ => return None,
    })
}

/// Splits the selector into tokens; the last is always `EndOfString`.
fn lex(input: &str) -> Vec<(Token, String)> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    loop {
        while i < chars.len() && is_whitespace(chars[i]) {
            i += 1;
        }
        // Go's lexer reads a NUL byte as the end of input.
        if i >= chars.len() || chars[i] == '\0' {
            tokens.push((Token::EndOfString, String::new()));
            return tokens;
        }
        if is_special_symbol(chars[i]) {
            // Longest match: `!=` and `==` are the only two-character symbols.
            let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
            if let Some(token) = symbol_token(&two).filter(|_| two.chars().count() == 2) {
                tokens.push((token, two));
                i += 2;
            } else {
                let one = chars[i].to_string();
                tokens.push((
                    symbol_token(&one).expect("every special symbol is a token"),
                    one,
                ));
                i += 1;
            }
            continue;
        }
        let start = i;
        while i < chars.len()
            && chars[i] != '\0'
            && !is_special_symbol(chars[i])
            && !is_whitespace(chars[i])
        {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let token = match word.as_str() {
            "in" => Token::In,
            "notin" => Token::NotIn,
            _ => Token::Identifier,
        };
        tokens.push((token, word));
    }
}

struct Parser {
    tokens: Vec<(Token, String)>,
    position: usize,
}

impl Parser {
    fn lookahead(&self, context: Context) -> (Token, String) {
        let (token, literal) = self.tokens[self.position.min(self.tokens.len() - 1)].clone();
        (Self::in_context(token, context), literal)
    }

    fn consume(&mut self, context: Context) -> (Token, String) {
        let item = self.lookahead(context);
        if self.position < self.tokens.len() - 1 {
            self.position += 1;
        }
        item
    }

    fn in_context(token: Token, context: Context) -> Token {
        match (context, token) {
            (Context::Values, Token::In | Token::NotIn) => Token::Identifier,
            _ => token,
        }
    }

    fn parse(mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let (token, literal) = self.lookahead(Context::Values);
            match token {
                Token::Identifier | Token::DoesNotExist => {
                    requirements.push(
                        self.parse_requirement()
                            .map_err(SelectorError::Requirement)?,
                    );
                    let (token, literal) = self.consume(Context::Values);
                    match token {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let (next, next_literal) = self.lookahead(Context::Values);
                            if next != Token::Identifier && next != Token::DoesNotExist {
                                return Err(SelectorError::Syntax(format!(
                                    "found '{next_literal}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(SelectorError::Syntax(format!(
                                "found '{literal}', expected: ',' or 'end of string'"
                            )))
                        }
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => {
                    return Err(SelectorError::Syntax(format!(
                        "found '{literal}', expected: !, identifier, or 'end of string'"
                    )))
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, inferred) = self.parse_key_and_infer_operator()?;
        if let Some(operator) = inferred {
            return Requirement::new(&key, operator, Vec::new()).map_err(|e| aggregate_message(&e));
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(&key, operator, values).map_err(|e| aggregate_message(&e))
    }

    /// Returns the key and, for `key` and `!key`, the operator those imply.
    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let (mut token, mut literal) = self.consume(Context::Values);
        let negated = token == Token::DoesNotExist;
        if negated {
            (token, literal) = self.consume(Context::Values);
        }
        if token != Token::Identifier {
            return Err(format!("found '{literal}', expected: identifier"));
        }
        validate_label_key(&literal, "<nil>").map_err(|e| e.to_string())?;
        let (next, _) = self.lookahead(Context::Values);
        let operator = if negated {
            Some(Operator::DoesNotExist)
        } else if next == Token::EndOfString || next == Token::Comma {
            Some(Operator::Exists)
        } else {
            None
        };
        Ok((literal, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        let (token, literal) = self.consume(Context::KeyAndOperator);
        Ok(match token {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => {
                return Err(format!(
                    "found '{literal}', expected: in, notin, =, ==, !=, gt, lt"
                ))
            }
        })
    }

    fn parse_values(&mut self) -> Result<Vec<String>, String> {
        let (token, literal) = self.consume(Context::Values);
        if token != Token::OpenPar {
            return Err(format!("found '{literal}' expected: '('"));
        }
        let (token, literal) = self.lookahead(Context::Values);
        match token {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                let (token, _) = self.consume(Context::Values);
                if token != Token::ClosedPar {
                    return Err(format!("found '{literal}', expected: ')'"));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                // `()` means the single empty value, not an empty set.
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(format!(
                "found '{literal}', expected: ',', ')' or identifier"
            )),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, String> {
        let mut values: Vec<String> = Vec::new();
        loop {
            let (token, literal) = self.consume(Context::Values);
            match token {
                Token::Identifier => {
                    values.push(literal);
                    let (next, next_literal) = self.lookahead(Context::Values);
                    match next {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(values),
                        _ => return Err(format!("found '{next_literal}', expected: ',' or ')'")),
                    }
                }
                // Empty list entries (`(,a)`, `(a,)`, `(a,,b)`) stand for the empty value.
                Token::Comma => {
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    let (next, _) = self.lookahead(Context::Values);
                    if next == Token::ClosedPar {
                        values.push(String::new());
                        return Ok(values);
                    }
                    if next == Token::Comma {
                        self.consume(Context::Values);
                        values.push(String::new());
                    }
                }
                _ => return Err(format!("found '{literal}', expected: ',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>, String> {
        let (token, _) = self.lookahead(Context::Values);
        if token == Token::EndOfString || token == Token::Comma {
            return Ok(vec![String::new()]);
        }
        let (token, literal) = self.consume(Context::Values);
        if token == Token::Identifier {
            Ok(vec![literal])
        } else {
            Err(format!("found '{literal}', expected: identifier"))
        }
    }
}
