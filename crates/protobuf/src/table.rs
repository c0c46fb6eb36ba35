//! The shape of the generated schema table (`generated.rs`) and the constructors it is written with.

/// How a message appears in JSON. Most are objects; the rest are Kubernetes types with a custom
/// JSON form (`Time` is a string, `IntOrString` a number or string, `RawExtension` inline JSON).
// Variants cover everything the generator can emit; a table without, say, a Duration field
// (none of today's served kinds has one) must not make the decoder lose support for it.
#[allow(dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Object,
    /// meta/v1 Time: RFC 3339, whole seconds.
    Time,
    /// meta/v1 MicroTime: RFC 3339 with six fractional digits.
    MicroTime,
    /// meta/v1 Duration: a Go duration string (`1m30s`).
    Duration,
    /// resource.Quantity: its canonical string.
    Quantity,
    /// intstr.IntOrString: a number or a string.
    IntOrString,
    /// runtime.RawExtension, meta/v1 FieldsV1, apiextensions JSON: bytes that hold JSON.
    RawJson,
    /// meta/v1 Verbs: a list of strings.
    StringList,
    /// apiextensions JSONSchemaPropsOrArray: a schema or a list of schemas.
    SchemaOrArray,
    /// apiextensions JSONSchemaPropsOrBool: a schema or a boolean.
    SchemaOrBool,
    /// apiextensions JSONSchemaPropsOrStringArray: a schema or a list of strings.
    SchemaOrStringArray,
}

/// A field's protobuf type. `Message` names a definition in `MESSAGES`.
// As for `Shape`: Kubernetes uses no unsigned or float fields today, the generator supports them.
#[allow(dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Double,
    Float,
    Message(&'static str),
    /// A proto map: key kind, value kind.
    Map(&'static Kind, &'static Kind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field {
    pub tag: u32,
    /// The Kubernetes JSON name (`volumeID`, `$ref`).
    pub json: &'static str,
    pub kind: Kind,
    pub repeated: bool,
    /// Go embeds this message field (`json:",inline"`), so its fields are merged into the
    /// parent's object and `json` is empty: `Volume.volumeSource`, `Probe.handler`.
    pub inline: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Message {
    /// The Kubernetes definition name: `io.k8s.api.core.v1.ConfigMap`.
    pub name: &'static str,
    pub shape: Shape,
    /// Sorted by tag.
    pub fields: &'static [Field],
}

impl Message {
    pub(crate) fn field(&self, tag: u32) -> Option<&'static Field> {
        self.fields
            .binary_search_by_key(&tag, |f| f.tag)
            .ok()
            .map(|i| &self.fields[i])
    }
}

pub(crate) const fn msg(name: &'static str, shape: Shape, fields: &'static [Field]) -> Message {
    Message {
        name,
        shape,
        fields,
    }
}

/// An optional (singular) field, or a map.
pub(crate) const fn opt(tag: u32, json: &'static str, kind: Kind) -> Field {
    Field {
        tag,
        json,
        kind,
        repeated: false,
        inline: false,
    }
}

pub(crate) const fn rep(tag: u32, json: &'static str, kind: Kind) -> Field {
    Field {
        tag,
        json,
        kind,
        repeated: true,
        inline: false,
    }
}

/// An embedded message field.
pub(crate) const fn inl(tag: u32, kind: Kind) -> Field {
    Field {
        tag,
        json: "",
        kind,
        repeated: false,
        inline: true,
    }
}

/// The message with definition name `name`.
pub(crate) fn message(name: &str) -> Option<&'static Message> {
    let messages = crate::generated::MESSAGES;
    messages
        .binary_search_by(|m| m.name.cmp(name))
        .ok()
        .map(|i| &messages[i])
}

/// The message of a body with this apiVersion and kind.
pub(crate) fn message_for_kind(api_version: &str, kind: &str) -> Option<&'static Message> {
    let kinds = crate::generated::KINDS;
    let name = kinds
        .binary_search_by(|(v, k, _)| (*v, *k).cmp(&(api_version, kind)))
        .ok()
        .map(|i| kinds[i].2)
        .or(match kind {
            // client-go registers DeleteOptions in every group-version, so a typed client for
            // apps/v1 sends `apps/v1 DeleteOptions`.
            "DeleteOptions" => Some("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"),
            _ => None,
        })?;
    message(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generated::{KINDS, MESSAGES};

    fn referenced(kind: Kind) -> Vec<&'static str> {
        match kind {
            Kind::Message(name) => vec![name],
            Kind::Map(key, value) => [referenced(*key), referenced(*value)].concat(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn every_referenced_message_is_in_the_table() {
        for message in MESSAGES {
            for field in message.fields {
                for name in referenced(field.kind) {
                    assert!(
                        super::message(name).is_some(),
                        "{}.{} references missing {name}",
                        message.name,
                        field.json
                    );
                }
            }
        }
        for (api_version, kind, name) in KINDS {
            assert!(
                super::message(name).is_some(),
                "{api_version} {kind} → missing {name}"
            );
        }
    }

    #[test]
    fn table_is_sorted_for_binary_search() {
        assert!(MESSAGES.windows(2).all(|w| w[0].name < w[1].name));
        assert!(KINDS
            .windows(2)
            .all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)));
        for message in MESSAGES {
            assert!(
                message.fields.windows(2).all(|w| w[0].tag < w[1].tag),
                "{} fields not sorted by unique tag",
                message.name
            );
        }
    }

    #[test]
    fn json_names_are_unique_and_inline_fields_are_messages() {
        for message in MESSAGES {
            let mut names: Vec<&str> = message
                .fields
                .iter()
                .filter(|f| !f.inline)
                .map(|f| f.json)
                .collect();
            names.sort_unstable();
            assert!(
                names.windows(2).all(|w| w[0] != w[1]) && names.iter().all(|n| !n.is_empty()),
                "{}: {names:?}",
                message.name
            );
            for field in message.fields.iter().filter(|f| f.inline) {
                assert!(matches!(field.kind, Kind::Message(_)) && !field.repeated);
            }
        }
    }

    /// `(tag, kind, repeated)` of each field.
    type FieldShape = (u32, Kind, bool);

    /// The decoder reads the custom-JSON messages by tag; the table must agree on those tags.
    #[test]
    fn shaped_messages_have_the_tags_the_decoder_reads() {
        let cases: &[(&str, &[FieldShape])] = &[
            (
                "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
                &[(1, Kind::Int64, false), (2, Kind::Int32, false)],
            ),
            (
                "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime",
                &[(1, Kind::Int64, false), (2, Kind::Int32, false)],
            ),
            (
                "io.k8s.apimachinery.pkg.api.resource.Quantity",
                &[(1, Kind::String, false)],
            ),
            (
                "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
                &[
                    (1, Kind::Int64, false),
                    (2, Kind::Int32, false),
                    (3, Kind::String, false),
                ],
            ),
            (
                "io.k8s.apimachinery.pkg.runtime.RawExtension",
                &[(1, Kind::Bytes, false)],
            ),
            (
                "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1",
                &[(1, Kind::Bytes, false)],
            ),
            (
                "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON",
                &[(1, Kind::Bytes, false)],
            ),
        ];
        for (name, want) in cases {
            let message = super::message(name).unwrap_or_else(|| panic!("{name} missing"));
            let got: Vec<FieldShape> = message
                .fields
                .iter()
                .map(|f| (f.tag, f.kind, f.repeated))
                .collect();
            assert_eq!(&got, want, "{name}");
        }
        let schema = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps";
        let or_cases: &[(&str, u32, u32, Kind)] = &[
            ("JSONSchemaPropsOrArray", 1, 2, Kind::Message(schema)),
            ("JSONSchemaPropsOrBool", 2, 1, Kind::Bool),
            ("JSONSchemaPropsOrStringArray", 1, 2, Kind::String),
        ];
        for (short, schema_tag, other_tag, other_kind) in or_cases {
            let name = format!("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.{short}");
            let message = super::message(&name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(
                message.field(*schema_tag).map(|f| f.kind),
                Some(Kind::Message(schema))
            );
            assert_eq!(message.field(*other_tag).map(|f| f.kind), Some(*other_kind));
        }
    }
}
