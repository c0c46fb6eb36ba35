//! Protobuf messages decoded into Kubernetes JSON by walking the generated schema table.
//!
//! Decoding follows Go's Kubernetes JSON encoding rather than protobuf's own JSON mapping:
//! `bytes` become base64 strings, the apimachinery wrapper types (`Time`, `Quantity`,
//! `IntOrString`, `RawExtension`, ...) become their custom JSON forms, and fields Go embeds are
//! merged into their parent. Unknown fields are skipped, as protobuf requires, so a newer client
//! can send fields drover's table does not know.

use base64::Engine as _;
use chrono::DateTime;
use serde_json::{Map, Number, Value};

use crate::table::{self, Field, Kind, Message, Shape};
use crate::wire::{Reader, WireValue};
use crate::{ProtobufError, MAGIC, MEDIA_TYPE};

/// Deeper nesting is refused instead of risking the stack on a hostile body (100 is also C++
/// protobuf's default). Real objects stay far below: a CRD schema costs one to two messages per
/// level of its JSON schema. A level costs under 5 KiB of stack even in a debug build.
const MAX_DEPTH: usize = 100;

type Result<T> = std::result::Result<T, ProtobufError>;

/// Decodes magic + `runtime.Unknown` starting at absolute offset `base` of the request body.
pub(crate) fn decode_envelope(body: &[u8], base: usize, depth: usize) -> Result<Value> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or(ProtobufError::MissingMagic)?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: (&[u8], usize) = (&[], base + body.len());
    let mut content_encoding = String::new();
    let mut content_type = String::new();
    let mut reader = Reader::new(rest, base + MAGIC.len());
    while let Some((tag, value)) = reader.next_field()? {
        let context = ("runtime.Unknown", tag);
        match tag {
            1 => {
                let (data, offset) = expect_bytes(context, value)?;
                let mut type_meta = Reader::new(data, offset);
                while let Some((tag, value)) = type_meta.next_field()? {
                    let context = ("runtime.TypeMeta", tag);
                    match tag {
                        1 => api_version = expect_string(context, value)?,
                        2 => kind = expect_string(context, value)?,
                        _ => {}
                    }
                }
            }
            2 => raw = expect_bytes(context, value)?,
            3 => content_encoding = expect_string(context, value)?,
            4 => content_type = expect_string(context, value)?,
            _ => {}
        }
    }
    if !content_encoding.is_empty() {
        return Err(ProtobufError::UnsupportedContentEncoding(content_encoding));
    }
    if kind.is_empty() {
        return Err(ProtobufError::MissingKind);
    }
    let fields = match content_type.as_str() {
        "" | MEDIA_TYPE => {
            let message = table::message_for_kind(&api_version, &kind).ok_or_else(|| {
                ProtobufError::UnknownKind {
                    api_version: api_version.clone(),
                    kind: kind.clone(),
                }
            })?;
            decode_fields(message, raw.0, raw.1, depth + 1)?
        }
        // The envelope may carry a JSON object; Kubernetes' own clients never send one, but the
        // format allows it and it costs nothing to accept.
        "application/json" => match parse_json("runtime.Unknown", raw.0, raw.1)? {
            Value::Object(map) => map,
            _ => {
                return Err(ProtobufError::InvalidJson {
                    message: "runtime.Unknown",
                    offset: raw.1,
                    reason: "not an object".to_owned(),
                })
            }
        },
        _ => return Err(ProtobufError::UnsupportedContentType(content_type)),
    };
    let mut object = Map::new();
    object.insert("apiVersion".to_owned(), Value::String(api_version));
    object.insert("kind".to_owned(), Value::String(kind));
    for (key, value) in fields {
        if key != "apiVersion" && key != "kind" {
            object.insert(key, value);
        }
    }
    Ok(Value::Object(object))
}

/// A message's JSON, or `None` when Kubernetes would leave the field out (an unset `Time`, an
/// empty `RawExtension`).
///
/// Each shape has its own function: this one sits on every level of recursion, and a debug
/// build gives a function one stack slot per local of every match arm.
fn decode_message(
    message: &'static Message,
    data: &[u8],
    offset: usize,
    depth: usize,
) -> Result<Option<Value>> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::TooDeep {
            limit: MAX_DEPTH,
            offset,
        });
    }
    match message.shape {
        Shape::Object => {
            decode_fields(message, data, offset, depth).map(|o| Some(Value::Object(o)))
        }
        Shape::Time => time(message, data, offset, false),
        Shape::MicroTime => time(message, data, offset, true),
        Shape::Duration => duration(message, data, offset),
        Shape::Quantity => quantity(message, data, offset),
        Shape::IntOrString => int_or_string(message, data, offset),
        Shape::RawJson => raw_json(message, data, offset, depth),
        Shape::StringList => string_list(message, data, offset),
        Shape::SchemaOrArray => schema_or_array(message, data, offset, depth),
        Shape::SchemaOrBool => schema_or_bool(message, data, offset, depth),
        Shape::SchemaOrStringArray => schema_or_string_array(message, data, offset, depth),
    }
}

fn duration(message: &'static Message, data: &[u8], offset: usize) -> Result<Option<Value>> {
    let mut nanoseconds = 0i64;
    for_each_field(data, offset, |tag, value| {
        if tag == 1 {
            nanoseconds = expect_varint((message.name, tag), value)? as i64;
        }
        Ok(())
    })?;
    Ok(Some(Value::String(go_duration(nanoseconds))))
}

fn quantity(message: &'static Message, data: &[u8], offset: usize) -> Result<Option<Value>> {
    // Go's zero Quantity prints as "0".
    let mut quantity = "0".to_owned();
    for_each_field(data, offset, |tag, value| {
        if tag == 1 {
            quantity = expect_string((message.name, tag), value)?;
        }
        Ok(())
    })?;
    Ok(Some(Value::String(quantity)))
}

fn int_or_string(message: &'static Message, data: &[u8], offset: usize) -> Result<Option<Value>> {
    let (mut kind, mut int_value, mut string_value) = (0u64, 0i32, String::new());
    for_each_field(data, offset, |tag, value| {
        let context = (message.name, tag);
        match tag {
            1 => kind = expect_varint(context, value)?,
            2 => int_value = expect_varint(context, value)? as i32,
            3 => string_value = expect_string(context, value)?,
            _ => {}
        }
        Ok(())
    })?;
    match kind {
        0 => Ok(Some(Value::from(int_value))),
        1 => Ok(Some(Value::String(string_value))),
        other => Err(ProtobufError::InvalidValue {
            message: message.name,
            offset,
            reason: format!("type {other} is neither 0 (int) nor 1 (string)"),
        }),
    }
}

fn raw_json(
    message: &'static Message,
    data: &[u8],
    offset: usize,
    depth: usize,
) -> Result<Option<Value>> {
    let mut raw: (&[u8], usize) = (&[], offset);
    for_each_field(data, offset, |tag, value| {
        if tag == 1 {
            raw = expect_bytes((message.name, tag), value)?;
        }
        Ok(())
    })?;
    let (raw, raw_offset) = raw;
    if raw.is_empty() {
        Ok(None)
    } else if raw.starts_with(MAGIC) {
        // An embedded object a protobuf client encoded as protobuf, not JSON.
        decode_envelope(raw, raw_offset, depth + 1).map(Some)
    } else {
        parse_json(message.name, raw, raw_offset).map(Some)
    }
}

fn string_list(message: &'static Message, data: &[u8], offset: usize) -> Result<Option<Value>> {
    let mut items = Vec::new();
    for_each_field(data, offset, |tag, value| {
        if tag == 1 {
            items.push(Value::String(expect_string((message.name, tag), value)?));
        }
        Ok(())
    })?;
    Ok(Some(Value::Array(items)))
}

/// A list of schemas when there is one, else the single schema (Go's MarshalJSON order).
fn schema_or_array(
    message: &'static Message,
    data: &[u8],
    offset: usize,
    depth: usize,
) -> Result<Option<Value>> {
    let (mut schema, mut schemas) = (None, Vec::new());
    for_each_field(data, offset, |tag, value| {
        match tag {
            1 => schema = nested(message, tag, value, depth)?,
            2 => schemas.push(nested(message, tag, value, depth)?.unwrap_or(Value::Null)),
            _ => {}
        }
        Ok(())
    })?;
    Ok(if schemas.is_empty() {
        schema
    } else {
        Some(Value::Array(schemas))
    })
}

/// The schema when there is one, else the boolean.
fn schema_or_bool(
    message: &'static Message,
    data: &[u8],
    offset: usize,
    depth: usize,
) -> Result<Option<Value>> {
    let (mut allows, mut schema) = (false, None);
    for_each_field(data, offset, |tag, value| {
        match tag {
            1 => allows = expect_varint((message.name, tag), value)? != 0,
            2 => schema = nested(message, tag, value, depth)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(Some(schema.unwrap_or(Value::Bool(allows))))
}

/// The string list when there is one, else the schema.
fn schema_or_string_array(
    message: &'static Message,
    data: &[u8],
    offset: usize,
    depth: usize,
) -> Result<Option<Value>> {
    let (mut schema, mut property) = (None, Vec::new());
    for_each_field(data, offset, |tag, value| {
        match tag {
            1 => schema = nested(message, tag, value, depth)?,
            2 => property.push(Value::String(expect_string((message.name, tag), value)?)),
            _ => {}
        }
        Ok(())
    })?;
    Ok(if property.is_empty() {
        schema
    } else {
        Some(Value::Array(property))
    })
}

/// The fields of an object-shaped message, in wire order.
fn decode_fields(
    message: &'static Message,
    data: &[u8],
    offset: usize,
    depth: usize,
) -> Result<Map<String, Value>> {
    let mut object = Map::new();
    let mut reader = Reader::new(data, offset);
    while let Some((tag, value)) = reader.next_field()? {
        if let Some(field) = message.field(tag) {
            // One function per field form keeps each recursion level's stack frame small in
            // debug builds, where every local of every branch gets its own slot.
            let context = (message.name, tag);
            match field.kind {
                Kind::Map(key_kind, value_kind) => insert_map_entry(
                    &mut object,
                    field,
                    (*key_kind, *value_kind),
                    context,
                    value,
                    depth,
                )?,
                _ if field.inline => merge_inline(&mut object, field, context, value, depth)?,
                _ if field.repeated => push_repeated(&mut object, field, context, value, depth)?,
                _ => set_singular(&mut object, field, context, value, depth)?,
            }
        }
    }
    // Kubernetes omits empty lists (`omitempty`); a packed field with no elements leaves one.
    object.retain(|_, v| !matches!(v, Value::Array(items) if items.is_empty()));
    Ok(object)
}

fn insert_map_entry(
    object: &mut Map<String, Value>,
    field: &'static Field,
    (key_kind, value_kind): (Kind, Kind),
    context: (&'static str, u32),
    value: WireValue<'_>,
    depth: usize,
) -> Result<()> {
    let (key, entry_value) = map_entry(context, key_kind, value_kind, value, depth)?;
    let map = object
        .entry(field.json)
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(map) = map {
        map.insert(key, entry_value);
    }
    Ok(())
}

fn merge_inline(
    object: &mut Map<String, Value>,
    field: &'static Field,
    context: (&'static str, u32),
    value: WireValue<'_>,
    depth: usize,
) -> Result<()> {
    if let Some(Value::Object(embedded)) = decode_value(context, field.kind, value, depth)? {
        object.extend(embedded);
    }
    Ok(())
}

fn push_repeated(
    object: &mut Map<String, Value>,
    field: &'static Field,
    context: (&'static str, u32),
    value: WireValue<'_>,
    depth: usize,
) -> Result<()> {
    let items = object
        .entry(field.json)
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(items) = items else {
        return Ok(());
    };
    match (value, packed_element(field)) {
        // proto2 Kubernetes messages are unpacked, but a decoder must accept both.
        (WireValue::Bytes { data, offset }, Some(read)) => {
            let mut packed = Reader::new(data, offset);
            while !packed.at_end() {
                let element = read(&mut packed)?;
                items.extend(decode_value(context, field.kind, element, depth)?);
            }
        }
        _ => items.push(decode_value(context, field.kind, value, depth)?.unwrap_or(Value::Null)),
    }
    Ok(())
}

/// A repeated occurrence of a singular field replaces the earlier one (last wins).
fn set_singular(
    object: &mut Map<String, Value>,
    field: &'static Field,
    context: (&'static str, u32),
    value: WireValue<'_>,
    depth: usize,
) -> Result<()> {
    match decode_value(context, field.kind, value, depth)? {
        // Go marshals a non-pointer string even when empty, and there "" means
        // unset (its JSON form omits it); dropping it keeps defaulting working.
        // storageClassName is a *string whose "" means "no class", so it stays.
        Some(Value::String(s)) if s.is_empty() && field.json != "storageClassName" => {
            object.remove(field.json);
        }
        Some(decoded) => {
            object.insert(field.json.to_owned(), decoded);
        }
        None => {
            object.remove(field.json);
        }
    }
    Ok(())
}

/// How to read one element of a packed repeated scalar field, if the kind can be packed.
fn packed_element(field: &Field) -> Option<fn(&mut Reader<'_>) -> Result<WireValue<'static>>> {
    match field.kind {
        Kind::Bool | Kind::Int32 | Kind::Int64 | Kind::Uint32 | Kind::Uint64 => {
            Some(|r| r.read_varint().map(WireValue::Varint))
        }
        Kind::Double => Some(|r| r.read_fixed64().map(WireValue::Fixed64)),
        Kind::Float => Some(|r| r.read_fixed32().map(WireValue::Fixed32)),
        _ => None,
    }
}

/// One map entry message: key 1, value 2.
fn map_entry(
    context: (&'static str, u32),
    key_kind: Kind,
    value_kind: Kind,
    value: WireValue<'_>,
    depth: usize,
) -> Result<(String, Value)> {
    let (data, offset) = expect_bytes(context, value)?;
    let (mut key, mut entry_value) = (None, None);
    let mut reader = Reader::new(data, offset);
    while let Some((tag, value)) = reader.next_field()? {
        match tag {
            1 => key = decode_value(context, key_kind, value, depth)?,
            2 => entry_value = Some((value, decode_value(context, value_kind, value, depth)?)),
            _ => {}
        }
    }
    let key = match key {
        Some(Value::String(key)) => key,
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let entry_value = match entry_value {
        Some((_, Some(value))) => value,
        // An absent value is the type's zero value, as in Go.
        Some((_, None)) | None => match value_kind {
            Kind::String | Kind::Bytes => Value::String(String::new()),
            Kind::Bool => Value::Bool(false),
            Kind::Message(_) | Kind::Map(..) => {
                let empty = WireValue::Bytes { data: &[], offset };
                decode_value(context, value_kind, empty, depth)?.unwrap_or(Value::Null)
            }
            _ => Value::from(0),
        },
    };
    Ok((key, entry_value))
}

/// A single (non-map) field value.
fn decode_value(
    context: (&'static str, u32),
    kind: Kind,
    value: WireValue<'_>,
    depth: usize,
) -> Result<Option<Value>> {
    let mismatch = |expected| ProtobufError::WireTypeMismatch {
        message: context.0,
        tag: context.1,
        expected,
        got: value.wire_type_name(),
    };
    let decoded = match (kind, value) {
        (Kind::String, WireValue::Bytes { data, .. }) => Value::String(utf8(data)),
        (Kind::Bytes, WireValue::Bytes { data, .. }) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(data))
        }
        (Kind::Bool, WireValue::Varint(v)) => Value::Bool(v != 0),
        // Negative int32s are sign-extended to ten-byte varints on the wire.
        (Kind::Int32, WireValue::Varint(v)) => Value::from(v as i32),
        (Kind::Int32, WireValue::Fixed32(v)) => Value::from(v as i32),
        (Kind::Int64, WireValue::Varint(v) | WireValue::Fixed64(v)) => Value::from(v as i64),
        (Kind::Uint32, WireValue::Varint(v)) => Value::from(v as u32),
        (Kind::Uint32, WireValue::Fixed32(v)) => Value::from(v),
        (Kind::Uint64, WireValue::Varint(v) | WireValue::Fixed64(v)) => Value::from(v),
        (Kind::Double, WireValue::Fixed64(v)) => float(f64::from_bits(v)),
        (Kind::Float, WireValue::Fixed32(v)) => float(f64::from(f32::from_bits(v))),
        (Kind::Message(name), WireValue::Bytes { data, offset }) => {
            let message = table::message(name).ok_or(ProtobufError::MissingSchema(name))?;
            return decode_message(message, data, offset, depth + 1);
        }
        (Kind::String | Kind::Bytes | Kind::Message(_) | Kind::Map(..), _) => {
            return Err(mismatch("length-delimited"))
        }
        (Kind::Double, _) => return Err(mismatch("64-bit")),
        (Kind::Float, _) => return Err(mismatch("32-bit")),
        (Kind::Int64 | Kind::Uint64, _) => return Err(mismatch("varint or 64-bit")),
        (Kind::Int32 | Kind::Uint32, _) => return Err(mismatch("varint or 32-bit")),
        (Kind::Bool, _) => return Err(mismatch("varint")),
    };
    Ok(Some(decoded))
}

/// JSON has no NaN or infinity; Go refuses to encode them, drover writes `null`.
fn float(value: f64) -> Value {
    Number::from_f64(value).map_or(Value::Null, Value::Number)
}

/// Go does not validate UTF-8 in protobuf strings and its JSON encoder replaces invalid bytes
/// with U+FFFD; doing the same keeps a stray byte from failing the whole request.
fn utf8(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// The message field `tag` of `message`, decoded (the schema inside `JSONSchemaPropsOr*`).
fn nested(
    message: &'static Message,
    tag: u32,
    value: WireValue<'_>,
    depth: usize,
) -> Result<Option<Value>> {
    let kind = message
        .field(tag)
        .map(|f| f.kind)
        .ok_or(ProtobufError::MissingSchema(message.name))?;
    decode_value((message.name, tag), kind, value, depth)
}

fn for_each_field<'a>(
    data: &'a [u8],
    offset: usize,
    mut visit: impl FnMut(u32, WireValue<'a>) -> Result<()>,
) -> Result<()> {
    let mut reader = Reader::new(data, offset);
    while let Some((tag, value)) = reader.next_field()? {
        visit(tag, value)?;
    }
    Ok(())
}

fn expect_bytes<'a>(
    context: (&'static str, u32),
    value: WireValue<'a>,
) -> Result<(&'a [u8], usize)> {
    match value {
        WireValue::Bytes { data, offset } => Ok((data, offset)),
        other => Err(ProtobufError::WireTypeMismatch {
            message: context.0,
            tag: context.1,
            expected: "length-delimited",
            got: other.wire_type_name(),
        }),
    }
}

fn expect_string(context: (&'static str, u32), value: WireValue<'_>) -> Result<String> {
    expect_bytes(context, value).map(|(data, _)| utf8(data))
}

fn expect_varint(context: (&'static str, u32), value: WireValue<'_>) -> Result<u64> {
    match value {
        WireValue::Varint(v) => Ok(v),
        other => Err(ProtobufError::WireTypeMismatch {
            message: context.0,
            tag: context.1,
            expected: "varint",
            got: other.wire_type_name(),
        }),
    }
}

fn parse_json(message: &'static str, raw: &[u8], offset: usize) -> Result<Value> {
    serde_json::from_slice(raw).map_err(|e| ProtobufError::InvalidJson {
        message,
        offset,
        reason: e.to_string(),
    })
}

/// meta/v1 Time (whole seconds) or MicroTime (microseconds), in UTC as Go prints them. A message
/// with no fields is Go's zero time, which Kubernetes writes as `null`; it is left out instead.
fn time(
    message: &'static Message,
    data: &[u8],
    offset: usize,
    micro: bool,
) -> Result<Option<Value>> {
    let (mut seconds, mut nanos, mut any) = (0i64, 0i64, false);
    for_each_field(data, offset, |tag, value| {
        match tag {
            1 => seconds = expect_varint((message.name, tag), value)? as i64,
            2 => nanos = i64::from(expect_varint((message.name, tag), value)? as i32),
            _ => return Ok(()),
        }
        any = true;
        Ok(())
    })?;
    if !any {
        return Ok(None);
    }
    // Go's time.Unix accepts nanoseconds outside [0, 1e9) and carries them into the seconds.
    let seconds = seconds.checked_add(nanos.div_euclid(1_000_000_000));
    let nanos = nanos.rem_euclid(1_000_000_000) as u32;
    let time = seconds
        .and_then(|s| DateTime::from_timestamp(s, nanos))
        .ok_or_else(|| ProtobufError::InvalidValue {
            message: message.name,
            offset,
            reason: "time out of range".to_owned(),
        })?;
    let format = if micro {
        "%Y-%m-%dT%H:%M:%S%.6fZ"
    } else {
        "%Y-%m-%dT%H:%M:%SZ"
    };
    Ok(Some(Value::String(time.format(format).to_string())))
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `1.5ms`, `0s`.
pub(crate) fn go_duration(nanoseconds: i64) -> String {
    let sign = if nanoseconds < 0 { "-" } else { "" };
    let total = nanoseconds.unsigned_abs();
    if total == 0 {
        return "0s".to_owned();
    }
    if total < 1_000 {
        return format!("{sign}{total}ns");
    }
    if total < 1_000_000 {
        return format!("{sign}{}µs", fraction(total, 3));
    }
    if total < 1_000_000_000 {
        return format!("{sign}{}ms", fraction(total, 6));
    }
    let seconds = fraction(total % 60_000_000_000, 9);
    let minutes_total = total / 60_000_000_000;
    let (hours, minutes) = (minutes_total / 60, minutes_total % 60);
    match (hours, minutes_total) {
        (0, 0) => format!("{sign}{seconds}s"),
        (0, _) => format!("{sign}{minutes}m{seconds}s"),
        _ => format!("{sign}{hours}h{minutes}m{seconds}s"),
    }
}

/// `value / 10^digits` with the fraction's trailing zeros (and a bare point) dropped.
fn fraction(value: u64, digits: u32) -> String {
    let unit = 10u64.pow(digits);
    let (whole, frac) = (value / unit, value % unit);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:0width$}", width = digits as usize);
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_duration_matches_go() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (999, "999ns"),
            (1_500, "1.5µs"),
            (1_500_000, "1.5ms"),
            (1_000_000_000, "1s"),
            (1_500_000_000, "1.5s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_500_000_000, "1h2m3.5s"),
            (-5_000_000_000, "-5s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ];
        for (nanoseconds, want) in cases {
            assert_eq!(go_duration(nanoseconds), want, "{nanoseconds}");
        }
    }
}
