//! `gen-protobuf`: writes `crates/protobuf/src/generated.rs`, the Kubernetes protobuf schema as a
//! table of messages and fields that the `protobuf` crate's decoder walks.
//!
//! The schema comes from the prost-generated sources of the `k8s-pb` crate. Its directory is
//! located with `cargo metadata` on the `protobuf` crate (which has k8s-pb as a dev-dependency),
//! so the version is the one pinned in Cargo.lock and no registry path is guessed. The sources
//! are read with a small line-based parser of the `#[prost(...)]` attributes rather than by
//! linking k8s-pb, because prost keeps no runtime descriptors we could walk.
//!
//! Protobuf field names are not the JSON names (`volume_id` vs `volumeID`), so every field is
//! matched against the `properties` of the same definition in drover's own OpenAPI definitions,
//! by a normalised name. Fields with no match get a camelCase name derived from the snake_case
//! one, and are listed in the generated file's header so a reviewer sees every guess.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// The k8s-pb modules (paths under its `src/`) whose messages may appear in the table: the
/// group-versions drover serves plus the apimachinery packages they reference.
const PACKAGES: &[&str] = &[
    "api/core/v1",
    "api/apps/v1",
    "api/batch/v1",
    "api/autoscaling/v1",
    "api/autoscaling/v2",
    "api/coordination/v1",
    "api/discovery/v1",
    "api/events/v1",
    "api/node/v1",
    "api/scheduling/v1",
    "api/storage/v1",
    "api/policy/v1",
    "api/networking/v1",
    "api/rbac/v1",
    "api/authorization/v1",
    "api/authentication/v1",
    "apiextensions_apiserver/pkg/apis/apiextensions/v1",
    "apimachinery/pkg/apis/meta/v1",
    "apimachinery/pkg/api/resource",
    "apimachinery/pkg/util/intstr",
    "apimachinery/pkg/runtime",
];

/// Bodies clients send that k8s-pb does not mark as a `Resource` (subresources and options):
/// `(apiVersion, kind, definition)`.
const EXTRA_KINDS: &[(&str, &str, &str)] = &[
    ("policy/v1", "Eviction", "io.k8s.api.policy.v1.Eviction"),
    ("autoscaling/v1", "Scale", "io.k8s.api.autoscaling.v1.Scale"),
    (
        "authentication.k8s.io/v1",
        "TokenRequest",
        "io.k8s.api.authentication.v1.TokenRequest",
    ),
    (
        "meta.k8s.io/v1",
        "DeleteOptions",
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
    ),
];

/// Messages whose JSON form is not an object, with their canonical definition spelling and the
/// `protobuf::table::Shape` variant that decodes them.
const SHAPES: &[(&str, &str)] = &[
    ("io.k8s.apimachinery.pkg.apis.meta.v1.Time", "Time"),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime",
        "MicroTime",
    ),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.Duration", "Duration"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1", "RawJson"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.Verbs", "StringList"),
    ("io.k8s.apimachinery.pkg.api.resource.Quantity", "Quantity"),
    (
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
        "IntOrString",
    ),
    ("io.k8s.apimachinery.pkg.runtime.RawExtension", "RawJson"),
    (
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON",
        "RawJson",
    ),
    (
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray",
        "SchemaOrArray",
    ),
    (
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool",
        "SchemaOrBool",
    ),
    (
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray",
        "SchemaOrStringArray",
    ),
];

const OUTPUT: &str = "crates/protobuf/src/generated.rs";

pub fn run() -> Result<()> {
    let workspace = workspace_root();
    let src = k8s_pb_src(&workspace)?;
    let version = src
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();

    let mut parsed = Vec::new();
    for package in PACKAGES {
        let path = src.join(package).join("mod.rs");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let module: Vec<String> = package.split('/').map(str::to_owned).collect();
        parsed.push(parse_module(&text, &module).with_context(|| format!("parsing {package}"))?);
    }
    let table = build_table(&parsed, openapi::definitions())?;
    let out = render(&table, &version);
    let out_path = workspace.join(OUTPUT);
    std::fs::write(&out_path, out).with_context(|| format!("writing {}", out_path.display()))?;
    eprintln!(
        "wrote {} ({} messages, {} kinds, {} unresolved field names)",
        OUTPUT,
        table.messages.len(),
        table.kinds.len(),
        table.unresolved.len()
    );
    Ok(())
}

fn workspace_root() -> PathBuf {
    // xtask lives directly under the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The `src/` directory of the k8s-pb package that Cargo.lock resolves for the protobuf crate.
fn k8s_pb_src(workspace: &Path) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(workspace.join("crates/protobuf/Cargo.toml"))
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: Value =
        serde_json::from_slice(&output.stdout).context("parsing cargo metadata")?;
    let manifest = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "k8s-pb")
        .and_then(|p| p["manifest_path"].as_str())
        .context("k8s-pb is not in the dependency graph of crates/protobuf")?;
    Ok(Path::new(manifest)
        .parent()
        .context("k8s-pb manifest path has no parent")?
        .join("src"))
}

/// One `#[prost(...)]` field as written in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawField {
    name: String,
    /// The inside of `#[prost(...)]`: `string, optional, tag = "1"`.
    attr: String,
    /// The Rust type with whitespace removed.
    ty: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RawMessage {
    name: String,
    fields: Vec<RawField>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RawKind {
    message: String,
    api_version: String,
    kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ParsedModule {
    module: Vec<String>,
    messages: Vec<RawMessage>,
    kinds: Vec<RawKind>,
}

/// Parses one prost-generated module: its messages and the `impl crate::Resource` blocks that
/// name a kind's apiVersion and kind.
fn parse_module(text: &str, module: &[String]) -> Result<ParsedModule> {
    let mut messages = Vec::new();
    let mut kinds = Vec::new();
    let mut derives_message = false;
    let mut current: Option<RawMessage> = None;
    let mut pending_attr: Option<String> = None;
    let mut pending_decl = String::new();
    let mut resource: Option<(String, Option<String>, Option<String>)> = None;

    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with("//") {
            continue;
        }
        if let Some(message) = current.as_mut() {
            if line == "}" {
                if pending_attr.is_some() {
                    bail!("line {}: attribute without a field", number + 1);
                }
                messages.extend(current.take());
            } else if let Some(attr) = trimmed
                .strip_prefix("#[prost(")
                .and_then(|a| a.strip_suffix(")]"))
            {
                pending_attr = Some(attr.to_owned());
            } else if pending_attr.is_some() {
                pending_decl.push_str(trimmed);
                let balanced =
                    pending_decl.matches('<').count() == pending_decl.matches('>').count();
                if balanced && pending_decl.ends_with(',') {
                    let decl = std::mem::take(&mut pending_decl);
                    let attr = pending_attr.take().unwrap_or_default();
                    message
                        .fields
                        .push(parse_field_decl(&decl, attr).with_context(|| {
                            format!("line {}: field of {}", number + 1, message.name)
                        })?);
                }
            }
            continue;
        }
        if let Some((name, _, _)) = resource.as_mut().filter(|_| line == "}") {
            let name = std::mem::take(name);
            if let Some((_, Some(api_version), Some(kind))) = resource.take() {
                kinds.push(RawKind {
                    message: name,
                    api_version,
                    kind,
                });
            }
            continue;
        }
        if let Some((_, api_version, kind)) = resource.as_mut() {
            if let Some(value) = const_str(trimmed, "API_VERSION") {
                *api_version = Some(value);
            } else if let Some(value) = const_str(trimmed, "KIND") {
                *kind = Some(value);
            }
            continue;
        }
        if trimmed.starts_with("#[derive(") {
            derives_message = trimmed.contains("::prost::Message");
        } else if let Some(rest) = trimmed.strip_prefix("pub struct ") {
            if !derives_message {
                continue;
            }
            derives_message = false;
            if let Some(name) = rest.strip_suffix(" {}") {
                messages.push(RawMessage {
                    name: name.to_owned(),
                    fields: Vec::new(),
                });
            } else if let Some(name) = rest.strip_suffix(" {") {
                current = Some(RawMessage {
                    name: name.to_owned(),
                    fields: Vec::new(),
                });
            } else {
                bail!("line {}: unexpected struct form {trimmed:?}", number + 1);
            }
        } else if let Some(rest) = trimmed.strip_prefix("impl crate::Resource for ") {
            let name = rest.trim_end_matches('{').trim().to_owned();
            resource = Some((name, None, None));
        }
    }
    if current.is_some() || resource.is_some() {
        bail!("unterminated struct or impl block");
    }
    Ok(ParsedModule {
        module: module.to_vec(),
        messages,
        kinds,
    })
}

/// `const KIND: &'static str = "Pod";` → `Pod`.
fn const_str(line: &str, name: &str) -> Option<String> {
    let rest = line.strip_prefix("const ")?.strip_prefix(name)?;
    let rest = rest.strip_prefix(": &'static str = \"")?;
    Some(rest.strip_suffix("\";")?.to_owned())
}

/// `pub volume_id: ::core::option::Option<...>,` (possibly joined from several lines).
fn parse_field_decl(decl: &str, attr: String) -> Result<RawField> {
    let rest = decl
        .strip_prefix("pub ")
        .context("field is not `pub`")?
        .strip_suffix(',')
        .context("field does not end with a comma")?;
    let (name, ty) = rest.split_once(':').context("field has no type")?;
    let ty: String = ty.chars().filter(|c| !c.is_whitespace()).collect();
    // rustfmt leaves a trailing comma inside generics that it broke over lines.
    let ty = ty.replace(",>", ">");
    Ok(RawField {
        name: name.trim().trim_start_matches("r#").to_owned(),
        attr,
        ty,
    })
}

/// Splits `btree_map = "string, message", tag = "1"` at commas outside quotes.
fn split_attr(attr: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in attr.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => parts.push(std::mem::take(&mut current).trim().to_owned()),
            _ => current.push(c),
        }
    }
    if !current.trim().is_empty() {
        parts.push(current.trim().to_owned());
    }
    parts
}

/// A field's wire kind before message paths are turned into definition names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RawKindOf {
    Scalar(&'static str),
    /// Module path and message name.
    Message(Vec<String>, String),
    Map(&'static str, Box<RawKindOf>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldSpec {
    tag: u32,
    repeated: bool,
    kind: RawKindOf,
}

fn scalar(name: &str) -> Result<&'static str> {
    Ok(match name {
        "string" => "String",
        "bytes" => "Bytes",
        "bool" => "Bool",
        "int32" | "sint32" | "sfixed32" => "Int32",
        "int64" | "sint64" | "sfixed64" => "Int64",
        "uint32" | "fixed32" => "Uint32",
        "uint64" | "fixed64" => "Uint64",
        "double" => "Double",
        "float" => "Float",
        other => bail!("unsupported scalar type {other}"),
    })
}

/// Interprets a field's attribute and type within `module`.
fn field_spec(field: &RawField, module: &[String]) -> Result<FieldSpec> {
    let parts = split_attr(&field.attr);
    let mut tag = None;
    let mut repeated = false;
    let mut kind = None;
    for part in &parts {
        let (key, value) = match part.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
            None => (part.as_str(), None),
        };
        match (key, value) {
            ("tag", Some(v)) => tag = Some(v.parse::<u32>().context("tag is not a number")?),
            ("repeated", None) => repeated = true,
            ("optional" | "required" | "boxed", None) | ("packed", Some(_)) => {}
            ("bytes", _) => kind = Some(RawKindOf::Scalar("Bytes")),
            ("message", None) => {
                let (path, name) = resolve_path(message_type(&field.ty)?, module)?;
                kind = Some(RawKindOf::Message(path, name));
            }
            ("map" | "btree_map" | "hash_map", Some(v)) => {
                let (key_kind, value_kind) = v.split_once(',').context("map without value")?;
                let value_kind = match value_kind.trim() {
                    "message" => {
                        let (path, name) = resolve_path(map_value_type(&field.ty)?, module)?;
                        RawKindOf::Message(path, name)
                    }
                    other => RawKindOf::Scalar(scalar(other)?),
                };
                kind = Some(RawKindOf::Map(
                    scalar(key_kind.trim())?,
                    Box::new(value_kind),
                ));
            }
            (name, None) if kind.is_none() => kind = Some(RawKindOf::Scalar(scalar(name)?)),
            _ => bail!("unexpected attribute part {part:?}"),
        }
    }
    Ok(FieldSpec {
        tag: tag.context("field has no tag")?,
        repeated,
        kind: kind.context("field has no type")?,
    })
}

/// The message path inside `Option<..>`, `Vec<..>` and `Box<..>`.
fn message_type(ty: &str) -> Result<&str> {
    let mut ty = ty;
    for wrapper in [
        "::core::option::Option<",
        "::prost::alloc::vec::Vec<",
        "::prost::alloc::boxed::Box<",
    ] {
        if let Some(inner) = ty.strip_prefix(wrapper) {
            ty = inner.strip_suffix('>').context("unbalanced generic")?;
        }
    }
    if ty.contains('<') {
        bail!("unexpected message type {ty}");
    }
    Ok(ty)
}

/// The value type of `BTreeMap<K, V>`.
fn map_value_type(ty: &str) -> Result<&str> {
    let inner = ty
        .split_once('<')
        .and_then(|(_, rest)| rest.strip_suffix('>'))
        .context("map type without generics")?;
    let (_, value) = inner.split_once(',').context("map type without value")?;
    message_type(value)
}

/// Resolves `super::super::core::v1::PodSpec` relative to `module`.
fn resolve_path(path: &str, module: &[String]) -> Result<(Vec<String>, String)> {
    let mut segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let name = segments.pop().context("empty type path")?.to_owned();
    let mut resolved: Vec<String> = module.to_vec();
    let mut segments = segments.into_iter().peekable();
    if segments.peek() == Some(&"crate") {
        segments.next();
        resolved.clear();
    }
    for segment in segments {
        if segment == "super" {
            resolved.pop().context("`super` above the crate root")?;
        } else {
            resolved.push(segment.to_owned());
        }
    }
    Ok((resolved, name))
}

/// The Kubernetes package of a k8s-pb module: `api/core/v1` → `io.k8s.api.core.v1`.
fn package_of(module: &[String]) -> Result<String> {
    let first = module.first().context("empty module path")?;
    let prefix = match first.as_str() {
        "api" | "apimachinery" => first.clone(),
        "apiextensions_apiserver" => "apiextensions-apiserver".to_owned(),
        "kube_aggregator" => "kube-aggregator".to_owned(),
        other => bail!("unknown k8s-pb module root {other}"),
    };
    let rest: Vec<&str> = module[1..].iter().map(String::as_str).collect();
    Ok(format!("io.k8s.{prefix}.{}", rest.join(".")))
}

/// Lowercase without `_`, `-`, `$` (and `r#`), so `volume_id`, `volumeID` and
/// `x_kubernetes_preserve_unknown_fields`/`x-kubernetes-preserve-unknown-fields` meet.
fn normalise(name: &str) -> String {
    name.trim_start_matches("r#")
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | '$'))
        .flat_map(char::to_lowercase)
        .collect()
}

fn camel_case(snake: &str) -> String {
    let mut out = String::new();
    for (i, word) in snake.split('_').enumerate() {
        let mut chars = word.chars();
        match chars.next() {
            Some(first) if i > 0 => {
                out.extend(first.to_uppercase());
                out.extend(chars);
            }
            Some(first) => {
                out.push(first);
                out.extend(chars);
            }
            None => {}
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Scalar(&'static str),
    Message(String),
    Map(&'static str, Box<Kind>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    tag: u32,
    json: String,
    kind: Kind,
    repeated: bool,
    /// Go embeds the message (`json:",inline"`): its fields appear in the parent's object.
    inline: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Message {
    shape: &'static str,
    fields: Vec<Field>,
}

#[derive(Debug, Default)]
struct Table {
    /// By definition name, so the output is sorted for binary search.
    messages: BTreeMap<String, Message>,
    /// `(apiVersion, kind)` → definition name.
    kinds: BTreeMap<(String, String), String>,
    /// `definition.field` names that had no OpenAPI property.
    unresolved: Vec<String>,
}

/// Resolves names, keeps only the messages reachable from a kind, and fills in JSON names.
fn build_table(modules: &[ParsedModule], definitions: &BTreeMap<String, Value>) -> Result<Table> {
    let shapes: BTreeMap<String, (&str, &'static str)> = SHAPES
        .iter()
        .map(|(name, shape)| (name.to_lowercase(), (*name, *shape)))
        .collect();
    let definitions_lower: BTreeMap<String, &str> = definitions
        .keys()
        .map(|k| (k.to_lowercase(), k.as_str()))
        .collect();
    // (module, rust name) → canonical definition name.
    let definition_name = |module: &[String], name: &str| -> Result<String> {
        let rust_spelling = format!("{}.{name}", package_of(module)?);
        let lower = rust_spelling.to_lowercase();
        Ok(shapes
            .get(&lower)
            .map(|(name, _)| *name)
            .or_else(|| definitions_lower.get(&lower).copied())
            .map(str::to_owned)
            .unwrap_or(rust_spelling))
    };

    let mut all: BTreeMap<String, (&ParsedModule, &RawMessage)> = BTreeMap::new();
    for module in modules {
        for message in &module.messages {
            let name = definition_name(&module.module, &message.name)?;
            if all.insert(name.clone(), (module, message)).is_some() {
                bail!("two messages are named {name}");
            }
        }
    }

    let own_properties = |name: &str| -> BTreeMap<String, String> {
        definitions
            .get(name)
            .and_then(|d| d.get("properties"))
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|p| p.keys())
            .map(|k| (normalise(k), k.clone()))
            .collect()
    };
    let inlined = inlined_fields(&all, &own_properties, &definition_name)?;
    // A message embedded into others (Go's `json:",inline"`) takes its JSON names from them too:
    // VolumeSource has no definition of its own, Volume's properties name its fields.
    let mut properties: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for name in all.keys() {
        properties.insert(name.clone(), own_properties(name));
    }
    for (parent, target) in inlined.values() {
        let parent_properties = own_properties(parent);
        properties
            .entry(target.clone())
            .or_default()
            .extend(parent_properties);
    }

    let mut table = Table::default();
    let mut roots = Vec::new();
    for module in modules {
        for kind in &module.kinds {
            let name = definition_name(&module.module, &kind.message)?;
            roots.push(name.clone());
            table
                .kinds
                .insert((kind.api_version.clone(), kind.kind.clone()), name);
        }
    }
    for (api_version, kind, name) in EXTRA_KINDS {
        roots.push((*name).to_owned());
        table.kinds.insert(
            ((*api_version).to_owned(), (*kind).to_owned()),
            (*name).to_owned(),
        );
    }

    let mut queue = roots;
    let mut seen = BTreeSet::new();
    while let Some(name) = queue.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let (module, raw) = all
            .get(&name)
            .with_context(|| format!("{name} is referenced but not in the included packages"))?;
        let json_names = properties.get(&name).cloned().unwrap_or_default();
        let shape = shapes
            .get(&name.to_lowercase())
            .map(|(_, shape)| *shape)
            .unwrap_or("Object");
        let mut fields = Vec::new();
        for raw_field in &raw.fields {
            let spec = field_spec(raw_field, &module.module)
                .with_context(|| format!("{name}.{}", raw_field.name))?;
            let inline = inlined.contains_key(&(name.clone(), raw_field.name.clone()));
            let json = match json_names.get(&normalise(&raw_field.name)) {
                _ if inline => String::new(),
                Some(json) => json.clone(),
                None => {
                    // Non-object shapes are decoded by tag, their names never reach JSON.
                    if shape == "Object" {
                        table.unresolved.push(format!("{name}.{}", raw_field.name));
                    }
                    camel_case(&raw_field.name)
                }
            };
            let mut resolve = |kind: &RawKindOf| -> Result<Kind> {
                Ok(match kind {
                    RawKindOf::Scalar(s) => Kind::Scalar(s),
                    RawKindOf::Message(module, message) => {
                        let target = definition_name(module, message)?;
                        queue.push(target.clone());
                        Kind::Message(target)
                    }
                    RawKindOf::Map(..) => bail!("nested map"),
                })
            };
            let kind = match &spec.kind {
                RawKindOf::Map(key, value) => Kind::Map(key, Box::new(resolve(value)?)),
                other => resolve(other)?,
            };
            fields.push(Field {
                tag: spec.tag,
                json,
                kind,
                repeated: spec.repeated,
                inline,
            });
        }
        fields.sort_by_key(|f| f.tag);
        table.messages.insert(name, Message { shape, fields });
    }
    Ok(table)
}

type Definitions<'a> = BTreeMap<String, (&'a ParsedModule, &'a RawMessage)>;

/// `(parent, field)` → `(parent, target)` for every field Go embeds into its parent's JSON.
///
/// The protobuf schema does not say which fields are embedded, so this is inferred: a singular
/// message field with no JSON property of its own whose target's fields are (mostly) properties
/// of the parent. That catches `Volume.volumeSource`, `Probe.handler`,
/// `SecretKeySelector.localObjectReference` and `EphemeralContainer.ephemeralContainerCommon`,
/// while a new field k8s-pb knows but the OpenAPI schema does not (`PodSpec.workloadRef`) stays
/// a plain field.
fn inlined_fields(
    all: &Definitions<'_>,
    own_properties: &dyn Fn(&str) -> BTreeMap<String, String>,
    definition_name: &dyn Fn(&[String], &str) -> Result<String>,
) -> Result<BTreeMap<(String, String), (String, String)>> {
    let mut inlined = BTreeMap::new();
    for (name, (module, raw)) in all {
        let parent_properties = own_properties(name);
        if parent_properties.is_empty() {
            continue;
        }
        for field in &raw.fields {
            if parent_properties.contains_key(&normalise(&field.name)) {
                continue;
            }
            let spec = field_spec(field, &module.module)?;
            let RawKindOf::Message(target_module, target) = &spec.kind else {
                continue;
            };
            if spec.repeated {
                continue;
            }
            let target = definition_name(target_module, target)?;
            let Some((_, target_raw)) = all.get(&target) else {
                continue;
            };
            let total = target_raw.fields.len();
            let shared = target_raw
                .fields
                .iter()
                .filter(|f| parent_properties.contains_key(&normalise(&f.name)))
                .count();
            if total > 0 && shared * 2 >= total {
                inlined.insert((name.clone(), field.name.clone()), (name.clone(), target));
            }
        }
    }
    Ok(inlined)
}

fn render_kind(kind: &Kind) -> String {
    match kind {
        Kind::Scalar(s) => format!("K::{s}"),
        Kind::Message(name) => format!("K::Message({name:?})"),
        Kind::Map(key, value) => format!("K::Map(&K::{key}, &{})", render_kind(value)),
    }
}

fn render(table: &Table, k8s_pb_version: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// @generated by `cargo run -p xtask -- gen-protobuf` (xtask/src/gen_protobuf.rs) from\n\
         // {k8s_pb_version} and drover's OpenAPI definitions. Do not edit by hand.\n\
         //\n\
         // Field names with no OpenAPI property (camelCase derived from the protobuf name):"
    );
    if table.unresolved.is_empty() {
        out.push_str("//   (none)\n");
    }
    for name in &table.unresolved {
        let _ = writeln!(out, "//   {name}");
    }
    out.push_str(
        "\n//! The Kubernetes protobuf schema as data: every message reachable from a served kind, \
         by definition name.\n\n\
         use crate::table::{inl, msg, opt, rep, Kind as K, Message, Shape};\n\n",
    );
    out.push_str(
        "/// `(apiVersion, kind)` → definition name of the body's message, sorted.\n\
         pub(crate) static KINDS: &[(&str, &str, &str)] = &[\n",
    );
    for ((api_version, kind), name) in &table.kinds {
        let _ = writeln!(out, "    ({api_version:?}, {kind:?}, {name:?}),");
    }
    out.push_str(
        "];\n\n/// Every message by definition name, sorted.\n\
         pub(crate) static MESSAGES: &[Message] = &[\n",
    );
    for (name, message) in &table.messages {
        let _ = writeln!(out, "    msg({name:?}, Shape::{}, &[", message.shape);
        for field in &message.fields {
            let kind = render_kind(&field.kind);
            let tag = field.tag;
            let json = &field.json;
            let _ = match (field.inline, field.repeated) {
                (true, _) => writeln!(out, "        inl({tag}, {kind}),"),
                (false, true) => writeln!(out, "        rep({tag}, {json:?}, {kind}),"),
                (false, false) => writeln!(out, "        opt({tag}, {json:?}, {kind}),"),
            };
        }
        out.push_str("    ]),\n");
    }
    out.push_str("];\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(path: &str) -> Vec<String> {
        path.split('/').map(str::to_owned).collect()
    }

    #[test]
    fn resolve_path_cases() {
        let cases = [
            ("PodSpec", "api/core/v1", "api/core/v1", "PodSpec"),
            (
                "super::super::super::apimachinery::pkg::apis::meta::v1::ObjectMeta",
                "api/apps/v1",
                "apimachinery/pkg/apis/meta/v1",
                "ObjectMeta",
            ),
            (
                "super::super::core::v1::PodTemplateSpec",
                "api/apps/v1",
                "api/core/v1",
                "PodTemplateSpec",
            ),
            (
                "crate::api::core::v1::Pod",
                "api/apps/v1",
                "api/core/v1",
                "Pod",
            ),
        ];
        for (path, from, want_module, want_name) in cases {
            let got = resolve_path(path, &module(from)).unwrap();
            assert_eq!(got, (module(want_module), want_name.to_owned()), "{path}");
        }
    }

    #[test]
    fn package_of_cases() {
        let cases = [
            ("api/core/v1", "io.k8s.api.core.v1"),
            (
                "apimachinery/pkg/apis/meta/v1",
                "io.k8s.apimachinery.pkg.apis.meta.v1",
            ),
            (
                "apiextensions_apiserver/pkg/apis/apiextensions/v1",
                "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1",
            ),
        ];
        for (from, want) in cases {
            assert_eq!(package_of(&module(from)).unwrap(), want);
        }
    }

    #[test]
    fn normalise_and_camel_case() {
        assert_eq!(normalise("volume_id"), normalise("volumeID"));
        assert_eq!(normalise("r#ref"), normalise("$ref"));
        assert_eq!(
            normalise("x_kubernetes_preserve_unknown_fields"),
            normalise("x-kubernetes-preserve-unknown-fields")
        );
        assert_eq!(camel_case("host_ip"), "hostIp");
        assert_eq!(camel_case("name"), "name");
    }

    #[test]
    fn parses_fields_maps_and_resources() {
        let source = r#"// This file is @generated by prost-build.
/// Doc.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ConfigMap {
    /// metadata
    #[prost(message, optional, tag = "1")]
    pub metadata: ::core::option::Option<
        super::super::super::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    >,
    #[prost(btree_map = "string, string", tag = "2")]
    pub data: ::prost::alloc::collections::BTreeMap<
        ::prost::alloc::string::String,
        ::prost::alloc::string::String,
    >,
    #[prost(btree_map = "string, message", tag = "4")]
    pub limits: ::prost::alloc::collections::BTreeMap<
        ::prost::alloc::string::String,
        super::super::super::apimachinery::pkg::api::resource::Quantity,
    >,
    #[prost(int32, repeated, packed = "false", tag = "5")]
    pub ports: ::prost::alloc::vec::Vec<i32>,
    #[prost(string, optional, tag = "6")]
    pub r#type: ::core::option::Option<::prost::alloc::string::String>,
}
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Patch {}

impl crate::Resource for ConfigMap {
    const API_VERSION: &'static str = "v1";
    const GROUP: &'static str = "";
    const VERSION: &'static str = "v1";
    const KIND: &'static str = "ConfigMap";
    const URL_PATH_SEGMENT: &'static str = "configmaps";
    type Scope = crate::NamespaceResourceScope;
}
"#;
        let m = module("api/core/v1");
        let parsed = parse_module(source, &m).unwrap();
        assert_eq!(parsed.messages.len(), 2);
        assert_eq!(parsed.messages[1].name, "Patch");
        assert_eq!(
            parsed.kinds,
            vec![RawKind {
                message: "ConfigMap".into(),
                api_version: "v1".into(),
                kind: "ConfigMap".into()
            }]
        );
        let specs: Vec<FieldSpec> = parsed.messages[0]
            .fields
            .iter()
            .map(|f| field_spec(f, &m).unwrap())
            .collect();
        let meta = module("apimachinery/pkg/apis/meta/v1");
        let resource = module("apimachinery/pkg/api/resource");
        let want = vec![
            FieldSpec {
                tag: 1,
                repeated: false,
                kind: RawKindOf::Message(meta, "ObjectMeta".into()),
            },
            FieldSpec {
                tag: 2,
                repeated: false,
                kind: RawKindOf::Map("String", Box::new(RawKindOf::Scalar("String"))),
            },
            FieldSpec {
                tag: 4,
                repeated: false,
                kind: RawKindOf::Map(
                    "String",
                    Box::new(RawKindOf::Message(resource, "Quantity".into())),
                ),
            },
            FieldSpec {
                tag: 5,
                repeated: true,
                kind: RawKindOf::Scalar("Int32"),
            },
            FieldSpec {
                tag: 6,
                repeated: false,
                kind: RawKindOf::Scalar("String"),
            },
        ];
        assert_eq!(specs, want);
        assert_eq!(parsed.messages[0].fields[4].name, "type");
    }
}
