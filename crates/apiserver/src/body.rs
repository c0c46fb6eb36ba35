//! Request bodies: read with a size limit (413 past it) and decoded by content
//! type — JSON, YAML, and the patch media types — with 400/415 for what cannot
//! be decoded. Never a 500 for bad input.

use api::ApiError;
use bytes::Bytes;
use http::{header, HeaderMap};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::MAX_BODY_BYTES;

pub async fn read<B>(headers: &HeaderMap, body: B) -> Result<Bytes, ApiError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    let mut over = declared.is_some_and(|len| len > MAX_BODY_BYTES);
    let mut drained = 0usize;
    // Read to the end even past the limit (up to a cap), so the client gets
    // the 413 instead of a reset connection while it is still sending.
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if over {
                drained += data.len();
                if drained > DRAIN_LIMIT_BYTES {
                    break;
                }
            } else if buf.len() + data.len() > MAX_BODY_BYTES {
                over = true;
                drained = buf.len() + data.len();
                buf.clear();
            } else {
                buf.extend_from_slice(&data);
            }
        }
    }
    if over {
        return Err(too_large());
    }
    Ok(buf.freeze())
}

/// How much of an oversized body is read and discarded before giving up on
/// the connection.
const DRAIN_LIMIT_BYTES: usize = 64 * 1024 * 1024;

fn too_large() -> ApiError {
    ApiError::too_large(format!(
        "the request body is larger than the limit of {MAX_BODY_BYTES} bytes"
    ))
}

/// The media type without parameters, lowercased.
pub fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Decodes an object body (create/update) in JSON or YAML.
pub fn decode_object(headers: &HeaderMap, bytes: &[u8]) -> Result<Value, ApiError> {
    let mt = media_type(headers);
    let v = match mt.as_str() {
        "application/json" | "" | "*/*" => decode_json(bytes)?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => decode_yaml(bytes)?,
        // What client-go's typed clients (kubectl create, drain, ...) send.
        protobuf::MEDIA_TYPE => protobuf::decode_object(bytes).map_err(|e| {
            ApiError::bad_request(format!("error decoding the protobuf request body: {e}"))
        })?,
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(v)
}

pub fn decode_json(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("error decoding the request body as JSON: {e}")))
}

pub fn decode_yaml(bytes: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_yaml::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!("error decoding the request body as YAML: {e}"))
    })?;
    if v.is_null() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
        h
    }

    #[test]
    fn decoding() {
        assert!(decode_object(&headers("application/json"), br#"{"a":1}"#).is_ok());
        assert!(decode_object(&headers("application/yaml"), b"a: 1\n").is_ok());
        assert_eq!(
            decode_object(&headers("application/json"), b"{nope")
                .unwrap_err()
                .code,
            400
        );
        assert_eq!(
            decode_object(&headers("application/json"), b"[1]")
                .unwrap_err()
                .code,
            400
        );
        assert_eq!(
            decode_object(&headers("application/json"), b"")
                .unwrap_err()
                .code,
            400
        );
        assert_eq!(
            decode_object(&headers("text/html"), b"{}")
                .unwrap_err()
                .code,
            415
        );
        // Protobuf without the k8s magic is undecodable, not unsupported.
        assert_eq!(
            decode_object(&headers("application/vnd.kubernetes.protobuf"), b"{}")
                .unwrap_err()
                .code,
            400
        );
    }
}
