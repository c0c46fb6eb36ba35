//! Server-side printing: turns API objects into the `meta.k8s.io/v1` Table
//! that `kubectl get` asks for, with the columns and cell values
//! kube-apiserver's printers produce, so kubectl output looks the same.
//!
//! Everything here is pure: objects and `now` in, a Table as JSON out.
//! Architecture invariant: this crate knows nothing about HTTP or storage.

mod apps;
mod core_group;
pub mod duration;
pub mod jsonpath;
mod other;
mod value;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

/// What each row carries besides its cells (`includeObject=` in TableOptions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    /// The object's metadata as a `PartialObjectMetadata`, Kubernetes' default.
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query value; unknown values are `None` so
    /// the caller can reject them.
    pub fn parse(value: &str) -> Option<IncludeObject> {
        match value {
            "None" => Some(IncludeObject::None),
            "Metadata" | "" => Some(IncludeObject::Metadata),
            "Object" => Some(IncludeObject::Object),
            _ => None,
        }
    }
}

/// One entry of a CRD version's `additionalPrinterColumns`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CustomColumn {
    pub name: String,
    /// `integer`, `number`, `string`, `boolean` or `date`.
    pub column_type: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

impl CustomColumn {
    /// Reads an `additionalPrinterColumns` entry; `None` if it lacks a name or path.
    pub fn from_json(column: &Value) -> Option<CustomColumn> {
        let text = |key: &str| {
            column
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let name = text("name");
        let json_path = text("jsonPath");
        if name.is_empty() || json_path.is_empty() {
            return None;
        }
        Some(CustomColumn {
            name,
            column_type: text("type"),
            format: text("format"),
            description: text("description"),
            priority: column.get("priority").and_then(Value::as_i64).unwrap_or(0),
            json_path,
        })
    }

    /// Reads a whole `additionalPrinterColumns` array, skipping unusable entries.
    pub fn list_from_json(columns: Option<&Value>) -> Vec<CustomColumn> {
        columns
            .and_then(Value::as_array)
            .map(|cs| cs.iter().filter_map(CustomColumn::from_json).collect())
            .unwrap_or_default()
    }
}

/// A column header of a built-in printer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Column {
    pub name: &'static str,
    pub column_type: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    pub priority: i64,
}

/// Shorthand for a priority-0 column.
pub(crate) const fn col(
    name: &'static str,
    column_type: &'static str,
    description: &'static str,
) -> Column {
    Column {
        name,
        column_type,
        format: "",
        description,
        priority: 0,
    }
}

/// Shorthand for a priority-1 column, shown by `kubectl get -o wide` only.
pub(crate) const fn wide(
    name: &'static str,
    column_type: &'static str,
    description: &'static str,
) -> Column {
    Column {
        name,
        column_type,
        format: "",
        description,
        priority: 1,
    }
}

pub(crate) const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
pub(crate) const AGE_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
pub(crate) const NAME: Column = Column {
    name: "Name",
    column_type: "string",
    format: "name",
    description: NAME_DESCRIPTION,
    priority: 0,
};
pub(crate) const AGE: Column = col("Age", "string", AGE_DESCRIPTION);

/// Produces one row's cells from an object and the current time.
pub(crate) type CellsFn = fn(&Value, DateTime<Utc>) -> Vec<Value>;

/// A built-in printer: its headers and a function from one object to its
/// cells (one per header, wide columns included: the server always prints
/// wide and kubectl drops priority > 0 columns unless `-o wide`).
pub(crate) struct Printer {
    pub columns: &'static [Column],
    pub cells: CellsFn,
    /// Extra `conditions` for a row, e.g. a completed pod.
    pub conditions: Option<fn(&Value) -> Option<Value>>,
}

const DEFAULT_COLUMNS: &[Column] = &[NAME, AGE];

fn default_cells(object: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![json!(value::name(object)), json!(value::age(object, now))]
}

/// The printer kube-apiserver uses for a built-in kind, by API group and kind.
fn printer_for(group: &str, kind: &str) -> Option<Printer> {
    core_group::printer(group, kind)
        .or_else(|| apps::printer(group, kind))
        .or_else(|| other::printer(group, kind))
}

/// Builds the Table for `objects` of one kind. Built-in kinds use their
/// printer; `custom_columns` (a CRD's `additionalPrinterColumns`) take over
/// when given. Kinds with neither get Name and Age, which is what a custom
/// resource without printer columns shows.
pub fn table(
    group: &str,
    kind: &str,
    objects: &[Value],
    now: DateTime<Utc>,
    include_object: IncludeObject,
    custom_columns: Option<&[CustomColumn]>,
) -> Value {
    let (column_definitions, rows): (Vec<Value>, Vec<Value>) =
        match (custom_columns, printer_for(group, kind)) {
            (Some(columns), _) => {
                let columns = other::custom_columns_or_default(columns);
                let definitions = other::custom_column_definitions(&columns);
                let rows = objects
                    .iter()
                    .map(|o| {
                        row(
                            other::custom_cells(&columns, o, now),
                            None,
                            o,
                            include_object,
                        )
                    })
                    .collect();
                (definitions, rows)
            }
            (None, Some(printer)) => {
                let definitions = printer.columns.iter().map(column_definition).collect();
                let rows = objects
                    .iter()
                    .map(|o| {
                        row(
                            (printer.cells)(o, now),
                            printer.conditions.and_then(|c| c(o)),
                            o,
                            include_object,
                        )
                    })
                    .collect();
                (definitions, rows)
            }
            (None, None) => {
                let definitions = DEFAULT_COLUMNS.iter().map(column_definition).collect();
                let rows = objects
                    .iter()
                    .map(|o| row(default_cells(o, now), None, o, include_object))
                    .collect();
                (definitions, rows)
            }
        };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": column_definitions,
        "rows": rows,
    })
}

/// The column names a built-in printer produces (for tests and discovery);
/// `None` when the kind has no printer of its own.
pub fn column_names(group: &str, kind: &str) -> Option<Vec<&'static str>> {
    printer_for(group, kind).map(|p| p.columns.iter().map(|c| c.name).collect())
}

fn column_definition(column: &Column) -> Value {
    json!({
        "name": column.name,
        "type": column.column_type,
        "format": column.format,
        "description": column.description,
        "priority": column.priority,
    })
}

fn row(
    cells: Vec<Value>,
    conditions: Option<Value>,
    object: &Value,
    include_object: IncludeObject,
) -> Value {
    let mut row = Map::new();
    row.insert("cells".into(), Value::Array(cells));
    if let Some(conditions) = conditions {
        row.insert("conditions".into(), conditions);
    }
    match include_object {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            let metadata = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
            row.insert(
                "object".into(),
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata}),
            );
        }
        IncludeObject::Object => {
            row.insert("object".into(), object.clone());
        }
    }
    Value::Object(row)
}
