//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) decoded into the
//! Kubernetes JSON shape drover stores.
//!
//! kubectl's typed clients (`create configmap`, `create deployment`, drain's eviction) send
//! protobuf; everything else in drover speaks JSON, so the API server turns such a body into the
//! `serde_json::Value` a JSON client would have sent and carries on. Responses stay JSON, which
//! every client accepts.
//!
//! The schema is data, not code: `generated.rs` is a table of every message reachable from the
//! served kinds, written by `cargo xtask gen-protobuf` from the k8s-pb crate's sources with JSON
//! names taken from drover's OpenAPI definitions. k8s-pb itself is only a test dependency.
//!
//! Architecture invariant: pure functions over bytes, no I/O; no input makes the decoder panic.

mod decode;
mod error;
// Written by `cargo xtask gen-protobuf`; left as generated so regenerating gives no diff.
#[rustfmt::skip]
mod generated;
mod table;
mod wire;

pub use error::ProtobufError;

/// The Content-Type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf body starts with.
const MAGIC: &[u8] = b"k8s\x00";

/// Decodes a Kubernetes protobuf body (magic + `runtime.Unknown`) into the object's JSON, with
/// `apiVersion` and `kind` taken from the envelope.
pub fn decode_object(body: &[u8]) -> Result<serde_json::Value, ProtobufError> {
    decode::decode_envelope(body, 0, 0)
}
