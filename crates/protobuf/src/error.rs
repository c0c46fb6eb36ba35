//! What can go wrong decoding a protobuf body; messages name the failing byte, field or kind.

/// Why a protobuf body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    #[error("missing k8s protobuf magic")]
    MissingMagic,
    #[error("truncated varint at byte {offset}")]
    TruncatedVarint { offset: usize },
    #[error("varint longer than 10 bytes at byte {offset}")]
    VarintTooLong { offset: usize },
    #[error("truncated {what} at byte {offset}: needs {needed} bytes, {available} left")]
    Truncated {
        what: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("invalid field number {tag} at byte {offset}")]
    InvalidTag { tag: u64, offset: usize },
    #[error("unsupported wire type {wire_type} at byte {offset}")]
    UnsupportedWireType { wire_type: u8, offset: usize },
    #[error("{message} field {tag}: expected {expected}, got {got}")]
    WireTypeMismatch {
        message: &'static str,
        tag: u32,
        expected: &'static str,
        got: &'static str,
    },
    #[error("runtime.Unknown envelope has no typeMeta kind")]
    MissingKind,
    #[error("unknown kind {api_version} {kind}")]
    UnknownKind { api_version: String, kind: String },
    #[error("unsupported content encoding {0:?}")]
    UnsupportedContentEncoding(String),
    #[error("unsupported content type {0:?} in runtime.Unknown")]
    UnsupportedContentType(String),
    #[error("invalid JSON in {message} at byte {offset}: {reason}")]
    InvalidJson {
        message: &'static str,
        offset: usize,
        reason: String,
    },
    #[error("invalid {message} at byte {offset}: {reason}")]
    InvalidValue {
        message: &'static str,
        offset: usize,
        reason: String,
    },
    #[error("messages nested deeper than {limit} at byte {offset}")]
    TooDeep { limit: usize, offset: usize },
    /// The generated table names a message it does not contain; a bug in `generated.rs`.
    #[error("schema table has no message {0}")]
    MissingSchema(&'static str),
}
