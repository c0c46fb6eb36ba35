//! The Kubernetes API client drover's own components (controllers,
//! scheduler, simulation) use. It speaks the API's HTTP semantics —
//! paths, verbs, content types, `Status` errors, chunked watch streams — to
//! a [`Transport`]; the in-process transport calls `ApiServer::handle`
//! directly, so in-process components go through exactly the validation,
//! defaulting and admission clients get, without TLS or sockets.

use std::pin::Pin;
use std::sync::Arc;

pub mod events;
pub mod https;

use apiserver::{ApiServer, ResponseBody};
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::Stream;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

/// A resource's REST coordinates: `(group, version, plural)`, core group `""`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gvr {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
}

impl Gvr {
    pub const fn new(group: &'static str, version: &'static str, plural: &'static str) -> Gvr {
        Gvr {
            group,
            version,
            plural,
        }
    }

    /// The collection path, e.g. `/apis/apps/v1/namespaces/default/deployments`.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let root = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match namespace {
            Some(ns) => format!("{root}/namespaces/{ns}/{}", self.plural),
            None => format!("{root}/{}", self.plural),
        }
    }

    pub fn object_path(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}/{name}", self.collection_path(namespace))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a `Status` failure.
    #[error("{code} {reason}: {message}")]
    Api {
        code: u16,
        reason: String,
        message: String,
    },
    #[error("transport: {0}")]
    Transport(String),
    #[error("decoding the response: {0}")]
    Decode(String),
}

impl ClientError {
    pub fn code(&self) -> Option<u16> {
        match self {
            ClientError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409) && !self.is_already_exists()
    }
    pub fn is_already_exists(&self) -> bool {
        matches!(self, ClientError::Api { reason, .. } if reason == "AlreadyExists")
    }
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }
    pub fn is_gone(&self) -> bool {
        self.code() == Some(410)
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Sends one request and returns the response with its (possibly streaming) body.
pub trait Transport: Send + Sync {
    fn send(&self, request: Request<Full<Bytes>>) -> BoxFuture<'_, Result<Response<ResponseBody>>>;
}

/// Calls an `ApiServer` in the same process.
pub struct InProcess {
    server: Arc<ApiServer>,
    authorization: String,
}

impl InProcess {
    pub fn new(server: Arc<ApiServer>, token: &str) -> InProcess {
        InProcess {
            server,
            authorization: format!("Bearer {token}"),
        }
    }
}

impl Transport for InProcess {
    fn send(
        &self,
        mut request: Request<Full<Bytes>>,
    ) -> BoxFuture<'_, Result<Response<ResponseBody>>> {
        request.headers_mut().insert(
            http::header::AUTHORIZATION,
            self.authorization
                .parse()
                .expect("token is a valid header value"),
        );
        let server = self.server.clone();
        Box::pin(async move { Ok(server.handle(request).await) })
    }
}

/// How a patch body is to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Strategic,
    Json,
}

impl PatchType {
    fn content_type(self) -> &'static str {
        match self {
            PatchType::Merge => "application/merge-patch+json",
            PatchType::Strategic => "application/strategic-merge-patch+json",
            PatchType::Json => "application/json-patch+json",
        }
    }
}

/// Options of a DELETE.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// Only delete this incarnation (`preconditions.uid`).
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    /// `Background`, `Foreground` or `Orphan`.
    pub propagation: Option<String>,
    pub grace_period_seconds: Option<i64>,
}

/// A list result: the items and the list's resourceVersion to watch from.
#[derive(Clone, Debug)]
pub struct ObjectList {
    pub items: Vec<Value>,
    pub resource_version: String,
}

/// One watch event; the object as a JSON value, or (from
/// [`Client::watch_raw`]) as the raw JSON text of the event line, for
/// callers that decode it straight into their own type.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent<T = Value> {
    Added(T),
    Modified(T),
    Deleted(T),
    Bookmark {
        resource_version: String,
    },
    /// An `ERROR` event; the stream ends after it (410 means relist).
    Error(ClientError),
}

pub type WatchStream = Pin<Box<dyn Stream<Item = WatchEvent> + Send>>;

/// A watch whose objects are left as raw JSON text.
pub type RawWatchStream = Pin<Box<dyn Stream<Item = WatchEvent<Box<RawValue>>> + Send>>;

#[derive(Clone)]
pub struct Client {
    transport: Arc<dyn Transport>,
    field_manager: String,
}

impl Client {
    pub fn new(transport: Arc<dyn Transport>, field_manager: &str) -> Client {
        Client {
            transport,
            field_manager: field_manager.to_string(),
        }
    }

    pub fn in_process(server: Arc<ApiServer>, token: &str, field_manager: &str) -> Client {
        Client::new(Arc::new(InProcess::new(server, token)), field_manager)
    }

    /// The same client writing under another field manager name.
    pub fn with_field_manager(&self, field_manager: &str) -> Client {
        Client {
            transport: self.transport.clone(),
            field_manager: field_manager.to_string(),
        }
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        content_type: &str,
        body: Option<Bytes>,
    ) -> Result<Value> {
        let bytes = self.call_bytes(method, uri, content_type, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// The body of a successful response, undecoded; an error status as
    /// [`ClientError::Api`].
    async fn call_bytes(
        &self,
        method: Method,
        uri: &str,
        content_type: &str,
        body: Option<Bytes>,
    ) -> Result<Bytes> {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::CONTENT_TYPE, content_type)
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let response = self.transport.send(request).await?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|_| ClientError::Transport("reading the response body".into()))?
            .to_bytes();
        if status.is_success() {
            Ok(bytes)
        } else {
            let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            Err(status_error(status, &value))
        }
    }

    fn with_manager(&self, path: String) -> String {
        format!("{path}?fieldManager={}", self.field_manager)
    }

    pub async fn get(&self, gvr: Gvr, namespace: Option<&str>, name: &str) -> Result<Value> {
        self.call(
            Method::GET,
            &gvr.object_path(namespace, name),
            "application/json",
            None,
        )
        .await
    }

    /// Lists everything (following `continue` tokens), optionally filtered.
    pub async fn list(
        &self,
        gvr: Gvr,
        namespace: Option<&str>,
        label_selector: Option<&str>,
        field_selector: Option<&str>,
    ) -> Result<ObjectList> {
        let mut items = Vec::new();
        let mut failed = None;
        let resource_version = self
            .list_pages(gvr, namespace, label_selector, field_selector, |page| {
                for item in page {
                    match serde_json::from_str(item.get()) {
                        Ok(value) => items.push(value),
                        Err(e) => failed = Some(ClientError::Decode(e.to_string())),
                    }
                }
            })
            .await?;
        match failed {
            Some(e) => Err(e),
            None => Ok(ObjectList {
                items,
                resource_version,
            }),
        }
    }

    /// Lists everything (following `continue` tokens, 500 objects a page),
    /// handing each page's objects to `page` as raw JSON text, so that a
    /// caller decodes them into its own type one page at a time instead of
    /// holding the whole list as JSON values. Returns the list's
    /// resourceVersion.
    pub async fn list_pages(
        &self,
        gvr: Gvr,
        namespace: Option<&str>,
        label_selector: Option<&str>,
        field_selector: Option<&str>,
        mut page: impl FnMut(Vec<Box<RawValue>>),
    ) -> Result<String> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            items: Vec<Box<RawValue>>,
            #[serde(default)]
            metadata: PageMeta,
        }
        #[derive(Default, Deserialize)]
        struct PageMeta {
            #[serde(default, rename = "continue")]
            continue_token: Option<String>,
            #[serde(default, rename = "resourceVersion")]
            resource_version: Option<String>,
        }
        let mut continue_token: Option<String> = None;
        loop {
            let mut query = vec!["limit=500".to_string()];
            if let Some(s) = label_selector {
                query.push(format!("labelSelector={}", encode(s)));
            }
            if let Some(s) = field_selector {
                query.push(format!("fieldSelector={}", encode(s)));
            }
            if let Some(c) = &continue_token {
                query.push(format!("continue={}", encode(c)));
            }
            let uri = format!("{}?{}", gvr.collection_path(namespace), query.join("&"));
            let bytes = self
                .call_bytes(Method::GET, &uri, "application/json", None)
                .await?;
            let decoded: Page =
                serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))?;
            drop(bytes);
            page(decoded.items);
            match decoded.metadata.continue_token.filter(|c| !c.is_empty()) {
                Some(c) => continue_token = Some(c),
                None => return Ok(decoded.metadata.resource_version.unwrap_or_default()),
            }
        }
    }

    /// Watches from `resource_version` with bookmarks. The stream ends when
    /// the server ends it (timeout) or after an `Error` event.
    pub async fn watch(
        &self,
        gvr: Gvr,
        namespace: Option<&str>,
        resource_version: &str,
        timeout_seconds: u32,
    ) -> Result<WatchStream> {
        self.watch_selected(gvr, namespace, resource_version, timeout_seconds, None)
            .await
    }

    /// [`Client::watch`] of the objects a field selector selects.
    pub async fn watch_selected(
        &self,
        gvr: Gvr,
        namespace: Option<&str>,
        resource_version: &str,
        timeout_seconds: u32,
        field_selector: Option<&str>,
    ) -> Result<WatchStream> {
        let uri = watch_uri(
            gvr,
            namespace,
            resource_version,
            timeout_seconds,
            field_selector,
        );
        self.event_stream(uri, decode_event).await
    }

    /// [`Client::watch`] with each object left as raw JSON text (see
    /// [`Client::list_pages`]).
    pub async fn watch_raw(
        &self,
        gvr: Gvr,
        namespace: Option<&str>,
        resource_version: &str,
        timeout_seconds: u32,
    ) -> Result<RawWatchStream> {
        let uri = watch_uri(gvr, namespace, resource_version, timeout_seconds, None);
        self.event_stream(uri, decode_raw_event).await
    }

    /// A watch request's response as a stream of events, one per line.
    async fn event_stream<T: Send + 'static>(
        &self,
        uri: String,
        decode: fn(&[u8]) -> WatchEvent<T>,
    ) -> Result<Pin<Box<dyn Stream<Item = WatchEvent<T>> + Send>>> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let response = self.transport.send(request).await?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Err(status_error(status, &value));
        }
        let body = response.into_body();
        let stream = futures::stream::unfold(
            (body, BytesMut::new(), false),
            move |(mut body, mut buffer, mut done)| async move {
                loop {
                    if done {
                        return None;
                    }
                    if let Some(newline) = buffer.iter().position(|b| *b == b'\n') {
                        let line = buffer.split_to(newline + 1);
                        let line = &line[..line.len() - 1];
                        if line.iter().all(u8::is_ascii_whitespace) {
                            continue;
                        }
                        let event = decode(line);
                        if matches!(event, WatchEvent::Error(_)) {
                            done = true;
                        }
                        return Some((event, (body, buffer, done)));
                    }
                    match body.frame().await {
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data() {
                                buffer.extend_from_slice(&data);
                            }
                        }
                        Some(Err(_)) | None => return None,
                    }
                }
            },
        );
        Ok(Box::pin(stream))
    }

    pub async fn create(&self, gvr: Gvr, namespace: Option<&str>, object: &Value) -> Result<Value> {
        let uri = self.with_manager(gvr.collection_path(namespace));
        self.call(
            Method::POST,
            &uri,
            "application/json",
            Some(to_bytes(object)),
        )
        .await
    }

    /// POST to a subresource, e.g. `pods/NAME/binding` or `pods/NAME/eviction`.
    pub async fn create_subresource(
        &self,
        gvr: Gvr,
        namespace: Option<&str>,
        name: &str,
        subresource: &str,
        object: &Value,
    ) -> Result<Value> {
        let uri = self.with_manager(format!(
            "{}/{subresource}",
            gvr.object_path(namespace, name)
        ));
        self.call(
            Method::POST,
            &uri,
            "application/json",
            Some(to_bytes(object)),
        )
        .await
    }

    /// PUT of the whole object (optimistic concurrency on its resourceVersion).
    pub async fn replace(
        &self,
        gvr: Gvr,
        namespace: Option<&str>,
        name: &str,
        object: &Value,
    ) -> Result<Value> {
        let uri = self.with_manager(gvr.object_path(namespace, name));
        self.call(
            Method::PUT,
            &uri,
            "application/json",
            Some(to_bytes(object)),
        )
        .await
    }

    pub async fn replace_status(
        &self,
        gvr: Gvr,
        namespace: Option<&str>,
        name: &str,
        object: &Value,
    ) -> Result<Value> {
        let uri = self.with_manager(format!("{}/status", gvr.object_path(namespace, name)));
        self.call(
            Method::PUT,
            &uri,
            "application/json",
            Some(to_bytes(object)),
        )
        .await
    }

    pub async fn patch(
        &self,
        gvr: Gvr,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        patch_type: PatchType,
        patch: &Value,
    ) -> Result<Value> {
        let mut path = gvr.object_path(namespace, name);
        if let Some(sub) = subresource {
            path = format!("{path}/{sub}");
        }
        let uri = self.with_manager(path);
        self.call(
            Method::PATCH,
            &uri,
            patch_type.content_type(),
            Some(to_bytes(patch)),
        )
        .await
    }

    /// DELETE; returns the object as the server answered (still present
    /// with a deletionTimestamp when finalizers or grace hold it, or the
    /// `Status` of a finished deletion).
    pub async fn delete(
        &self,
        gvr: Gvr,
        namespace: Option<&str>,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Value> {
        let mut body = json!({"kind": "DeleteOptions", "apiVersion": "v1"});
        if options.uid.is_some() || options.resource_version.is_some() {
            body["preconditions"] =
                json!({"uid": options.uid, "resourceVersion": options.resource_version});
        }
        if let Some(p) = &options.propagation {
            body["propagationPolicy"] = json!(p);
        }
        if let Some(g) = options.grace_period_seconds {
            body["gracePeriodSeconds"] = json!(g);
        }
        self.call(
            Method::DELETE,
            &gvr.object_path(namespace, name),
            "application/json",
            Some(to_bytes(&body)),
        )
        .await
    }
}

/// Decodes a JSON object into a k8s-openapi type.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| ClientError::Decode(e.to_string()))
}

fn to_bytes(value: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("JSON values serialize"))
}

fn status_error(status: StatusCode, value: &Value) -> ClientError {
    ClientError::Api {
        code: value
            .get("code")
            .and_then(Value::as_u64)
            .map(|c| c as u16)
            .unwrap_or(status.as_u16()),
        reason: value
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("Unknown")
            .to_string(),
        message: value
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    }
}

fn decode_event(line: &[u8]) -> WatchEvent {
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => return WatchEvent::Error(ClientError::Decode(format!("watch event: {e}"))),
    };
    let mut value = value;
    let object = value
        .get_mut("object")
        .map(Value::take)
        .unwrap_or(Value::Null);
    match value.get("type").and_then(Value::as_str) {
        Some("ADDED") => WatchEvent::Added(object),
        Some("MODIFIED") => WatchEvent::Modified(object),
        Some("DELETED") => WatchEvent::Deleted(object),
        Some("BOOKMARK") => WatchEvent::Bookmark {
            resource_version: object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        },
        _ => WatchEvent::Error(status_error(StatusCode::INTERNAL_SERVER_ERROR, &object)),
    }
}

/// The path and query of a watch with bookmarks from `resource_version`.
fn watch_uri(
    gvr: Gvr,
    namespace: Option<&str>,
    resource_version: &str,
    timeout_seconds: u32,
    field_selector: Option<&str>,
) -> String {
    let mut uri = format!(
        "{}?watch=true&allowWatchBookmarks=true&resourceVersion={}&timeoutSeconds={timeout_seconds}",
        gvr.collection_path(namespace),
        encode(resource_version)
    );
    if let Some(s) = field_selector {
        uri.push_str(&format!("&fieldSelector={}", encode(s)));
    }
    uri
}

/// A watch event line with its object left as raw JSON text.
fn decode_raw_event(line: &[u8]) -> WatchEvent<Box<RawValue>> {
    #[derive(Deserialize)]
    struct Line {
        #[serde(rename = "type")]
        kind: String,
        object: Box<RawValue>,
    }
    let line: Line = match serde_json::from_slice(line) {
        Ok(l) => l,
        Err(e) => return WatchEvent::Error(ClientError::Decode(format!("watch event: {e}"))),
    };
    match line.kind.as_str() {
        "ADDED" => WatchEvent::Added(line.object),
        "MODIFIED" => WatchEvent::Modified(line.object),
        "DELETED" => WatchEvent::Deleted(line.object),
        "BOOKMARK" => {
            #[derive(Deserialize)]
            struct Bookmark {
                #[serde(default)]
                metadata: BookmarkMeta,
            }
            #[derive(Default, Deserialize)]
            struct BookmarkMeta {
                #[serde(default, rename = "resourceVersion")]
                resource_version: String,
            }
            WatchEvent::Bookmark {
                resource_version: serde_json::from_str::<Bookmark>(line.object.get())
                    .map(|b| b.metadata.resource_version)
                    .unwrap_or_default(),
            }
        }
        _ => {
            let object: Value = serde_json::from_str(line.object.get()).unwrap_or(Value::Null);
            WatchEvent::Error(status_error(StatusCode::INTERNAL_SERVER_ERROR, &object))
        }
    }
}

/// Percent-encodes a query parameter value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
