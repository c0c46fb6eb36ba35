//! The shape of the generated schema table (`generated.rs`) and the constructors it is written with.

/// How a message appears in JSON. Most are objects; the rest are Kubernetes types with a custom
/// JSON form (`Time` is a string, `IntOrString` a number or string, `RawExtension` inline JSON).
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
