//! Watch: a chunked stream of `{"type": ..., "object": ...}` lines fed by a
//! store watch from the requested resourceVersion, filtered by namespace and
//! selectors (an object leaving the selection is a DELETED event, entering it
//! an ADDED), with bookmarks, timeouts, Table rendering, and 410 Gone in an
//! ERROR event when the revision was compacted — as kube-apiserver does.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use api::registry::ResourceType;
use api::ApiError;
use bytes::Bytes;
use futures::StreamExt;
use http::{header, HeaderMap, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};
use store::{Event, Revision, StoreError};

use crate::objects::{
    decode_stored, from_storage, list_objects, render_kind, table_of, Filter, Render,
};
use crate::request::{Query, ResourcePath};
use crate::{ApiServer, ResponseBody};

/// Watches end after this long unless the client asks for less (kube-apiserver
/// uses 30–60 minutes; clients re-watch from their last resourceVersion).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);

pub(crate) async fn serve(
    server: &Arc<ApiServer>,
    rt: &ResourceType,
    rp: &ResourcePath,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Response<ResponseBody>, ApiError> {
    let render = render_kind(headers)?;
    let filter = Filter::from_query(rt, rp, query)?;
    let timeout = match query.get("timeoutSeconds") {
        Some(t) => Duration::from_secs(
            t.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds: {t:?}")))?,
        ),
        None => DEFAULT_WATCH_TIMEOUT,
    };
    let bookmarks = query.flag("allowWatchBookmarks");
    let send_initial = query.flag("sendInitialEvents");
    let rv = query.get("resourceVersion").unwrap_or("");

    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let mut initial: Vec<Value> = Vec::new();
    let start: Revision;
    let mut gone: Option<ApiError> = None;
    if rv.is_empty() || rv == "0" || send_initial {
        // "Start at most recent": the current state as ADDED events, then changes.
        let mut list_query = query.clone();
        list_query.0.remove("resourceVersion");
        list_query.0.remove("limit");
        list_query.0.remove("continue");
        let listed = list_objects(server, rt, rp, &list_query).await?;
        initial = listed.items;
        start = listed.revision + 1;
    } else {
        let n: Revision = rv
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: \"{rv}\"")))?;
        start = n + 1;
    }
    let stream = match server
        .store
        .watch(&rt.list_prefix(rp.namespace.as_deref()), start)
        .await
    {
        Ok(s) => Some(s),
        Err(StoreError::Compacted { compacted, .. }) => {
            gone = Some(ApiError::gone(format!(
                "too old resource version: {rv} ({compacted})"
            )));
            None
        }
        Err(e) => return Err(crate::objects::store_error(e, rt, "")),
    };

    let rt = rt.clone();
    let query = query.clone();
    let server = server.clone();
    tokio::spawn(async move {
        server.metrics.watch_started();
        let enc = Encoder {
            rt: &rt,
            render,
            query: &query,
        };
        let mut last_revision = start - 1;
        'run: {
            if let Some(e) = gone {
                let _ = tx.send(line("ERROR", e.to_status())).await;
                break 'run;
            }
            for obj in initial {
                if tx.send(enc.event("ADDED", obj)).await.is_err() {
                    break 'run;
                }
            }
            if send_initial && bookmarks {
                let bm = enc.bookmark(last_revision, true);
                if tx.send(bm).await.is_err() {
                    break 'run;
                }
            }
            let mut stream = stream.expect("a stream unless gone");
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            let mut bookmark_tick = tokio::time::interval(BOOKMARK_INTERVAL);
            bookmark_tick.tick().await;
            loop {
                // `biased`: a fixed polling order keeps the simulation
                // deterministic (tokio's default is a random order).
                tokio::select! {
                    biased;
                    _ = &mut deadline => break,
                    _ = tx.closed() => break,
                    _ = bookmark_tick.tick(), if bookmarks => {
                        if tx.send(enc.bookmark(last_revision, false)).await.is_err() { break; }
                    }
                    batch = stream.next() => {
                        let Some(batch) = batch else { break };
                        let events = match batch {
                            Ok(events) => events,
                            Err(StoreError::Compacted { compacted, .. }) => {
                                let e = ApiError::gone(format!("too old resource version: {last_revision} ({compacted})"));
                                let _ = tx.send(line("ERROR", e.to_status())).await;
                                break;
                            }
                            // A lagging or closed store watch ends the HTTP watch;
                            // the client re-watches from its last resourceVersion.
                            Err(_) => break,
                        };
                        for ev in events {
                            last_revision = ev.revision();
                            let line = match spliced_event(&rt, &filter, render, &ev) {
                                Some(line) => line,
                                None => {
                                    let Some((kind, obj)) = translate(&rt, &filter, ev) else { continue };
                                    enc.event(kind, obj)
                                }
                            };
                            if tx.send(line).await.is_err() { break 'run; }
                        }
                    }
                }
            }
        }
        server.metrics.watch_ended();
    });

    let body = StreamBody::new(
        tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(|b| Ok::<_, Infallible>(Frame::data(b))),
    );
    let content_type = "application/json";
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(BodyExt::boxed(body))
        .unwrap())
}

/// The watch line of a store event built from the stored bytes, without
/// decoding the object into a `Value` and encoding it again: for plain JSON
/// watches without selectors (every event concerns the watcher) of objects
/// stored at the served version. `None` means: take the general path.
fn spliced_event(rt: &ResourceType, filter: &Filter, render: Render, ev: &Event) -> Option<Bytes> {
    if render != Render::Json || !filter.selects_all() || rt.storage_version != rt.api_version() {
        return None;
    }
    let (kind, stored, revision) = match ev {
        Event::Put { kv, prev } => (
            if prev.is_some() { "MODIFIED" } else { "ADDED" },
            &kv.value,
            kv.mod_revision,
        ),
        Event::Delete { revision, prev } => ("DELETED", &prev.value, *revision),
    };
    let object = splice_resource_version(stored, &rt.api_version(), revision)?;
    let mut line = Vec::with_capacity(object.len() + 40);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(&object);
    line.extend_from_slice(b"}\n");
    Some(Bytes::from(line))
}

/// A stored object's JSON with `"resourceVersion":"<revision>"` appended to
/// its `metadata` — what decoding it, setting the field and encoding it again
/// gives — found by scanning the top-level keys only. `None` (take the
/// general path) unless the top level is an object with an `apiVersion` equal
/// to `api_version` and an object `metadata` that has no resourceVersion yet.
pub(crate) fn splice_resource_version(
    stored: &[u8],
    api_version: &str,
    revision: Revision,
) -> Option<Vec<u8>> {
    let want_api_version = serde_json::to_vec(api_version).ok()?;
    let mut i = skip_ws(stored, 0);
    if stored.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    let (mut api_version_ok, mut metadata_close, mut metadata_empty) = (false, None, false);
    loop {
        i = skip_ws(stored, i);
        match stored.get(i)? {
            b'}' => break,
            b'"' => {}
            _ => return None,
        }
        let key_end = skip_string(stored, i)?;
        let key = &stored[i + 1..key_end - 1];
        i = skip_ws(stored, key_end);
        if stored.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(stored, i + 1);
        let end = skip_value(stored, start)?;
        let value = &stored[start..end];
        match key {
            b"apiVersion" => api_version_ok = value == want_api_version.as_slice(),
            b"metadata" => {
                if value.first() != Some(&b'{') || contains(value, b"\"resourceVersion\"") {
                    return None;
                }
                metadata_close = Some(end - 1);
                metadata_empty = skip_ws(stored, start + 1) == end - 1;
            }
            _ => {}
        }
        i = skip_ws(stored, end);
        match stored.get(i)? {
            b',' => i += 1,
            b'}' => break,
            _ => return None,
        }
    }
    if !api_version_ok || skip_ws(stored, i + 1) != stored.len() {
        return None;
    }
    let close = metadata_close?;
    let mut out = Vec::with_capacity(stored.len() + 32);
    out.extend_from_slice(&stored[..close]);
    if !metadata_empty {
        out.push(b',');
    }
    out.extend_from_slice(b"\"resourceVersion\":\"");
    out.extend_from_slice(revision.to_string().as_bytes());
    out.push(b'"');
    out.extend_from_slice(&stored[close..]);
    Some(out)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while bytes
        .get(i)
        .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        i += 1;
    }
    i
}

/// The index after the string that starts (with its quote) at `i`.
fn skip_string(bytes: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        match bytes.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

/// The index after the JSON value that starts at `i`.
fn skip_value(bytes: &[u8], i: usize) -> Option<usize> {
    match bytes.get(i)? {
        b'"' => skip_string(bytes, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match bytes.get(j)? {
                    b'"' => {
                        j = skip_string(bytes, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while bytes
                .get(j)
                .is_some_and(|b| !matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// A store event as a watch event for this watcher, if it concerns it.
fn translate(rt: &ResourceType, filter: &Filter, ev: Event) -> Option<(&'static str, Value)> {
    let decode = |kv: &store::KeyValue| decode_stored(kv).and_then(|o| from_storage(rt, o)).ok();
    match ev {
        Event::Put { kv, prev } => {
            let cur = decode(&kv)?;
            let cur_match = filter.matches(&cur);
            // Without a selector every version matches: the previous value
            // need not be decoded (half the JSON parsing of a watch).
            let prev_match = if filter.selects_all() {
                prev.is_some()
            } else {
                prev.as_ref()
                    .and_then(decode)
                    .is_some_and(|p| filter.matches(&p))
            };
            match (prev.is_some(), prev_match, cur_match) {
                (false, _, true) => Some(("ADDED", cur)),
                (true, true, true) => Some(("MODIFIED", cur)),
                (true, false, true) => Some(("ADDED", cur)),
                (true, true, false) => Some(("DELETED", cur)),
                _ => None,
            }
        }
        Event::Delete { revision, prev } => {
            let mut obj = decode(&prev)?;
            if !filter.matches(&obj) {
                return None;
            }
            obj["metadata"]["resourceVersion"] = json!(revision.to_string());
            Some(("DELETED", obj))
        }
    }
}

struct Encoder<'a> {
    rt: &'a ResourceType,
    render: Render,
    query: &'a Query,
}

impl Encoder<'_> {
    fn event(&self, kind: &str, obj: Value) -> Bytes {
        let object = match self.render {
            Render::Json => obj,
            Render::Table => {
                let mut t = table_of(self.rt, std::slice::from_ref(&obj), self.query);
                t["metadata"] = json!({"resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""))});
                t
            }
            Render::PartialMetadata => {
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
            }
        };
        line(kind, object)
    }

    fn bookmark(&self, revision: Revision, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let (kind, api_version) = match self.render {
            Render::Json => (self.rt.kind.clone(), self.rt.api_version()),
            Render::Table => ("Table".to_string(), "meta.k8s.io/v1".to_string()),
            Render::PartialMetadata => (
                "PartialObjectMetadata".to_string(),
                "meta.k8s.io/v1".to_string(),
            ),
        };
        line(
            "BOOKMARK",
            json!({"kind": kind, "apiVersion": api_version, "metadata": metadata}),
        )
    }
}

fn line(kind: &str, object: Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": object}))
        .expect("serializing a Value cannot fail");
    v.push(b'\n');
    Bytes::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(stored: &str, revision: Revision) -> Value {
        let mut v: Value = serde_json::from_str(stored).unwrap();
        v["metadata"]["resourceVersion"] = json!(revision.to_string());
        v
    }

    #[test]
    fn splicing_the_resource_version_equals_decoding() {
        for stored in [
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","labels":{"x":"}\"{"}},"spec":{"containers":[{"name":"c","args":["]","{"]}]},"status":{}}"#,
            r#"{"kind":"Pod","metadata":{},"apiVersion":"v1","n":1.5,"t":true,"z":null}"#,
            r#" { "apiVersion" : "v1" , "metadata" : { "name" : "a" } } "#,
        ] {
            let out = splice_resource_version(stored.as_bytes(), "v1", 42).expect(stored);
            let parsed: Value = serde_json::from_slice(&out).expect("valid JSON");
            assert_eq!(parsed, decoded(stored, 42), "{stored}");
            // The key order of decode + insert: resourceVersion last in metadata.
            let keys: Vec<&String> = parsed["metadata"].as_object().unwrap().keys().collect();
            assert_eq!(keys.last().map(|k| k.as_str()), Some("resourceVersion"));
        }
    }

    #[test]
    fn anything_unusual_takes_the_general_path() {
        for stored in [
            r#"{"apiVersion":"v1beta1","metadata":{}}"#,
            r#"{"metadata":{}}"#,
            r#"{"apiVersion":"v1","metadata":{"resourceVersion":"3"}}"#,
            r#"{"apiVersion":"v1","metadata":"x"}"#,
            r#"{"apiVersion":"v1"}"#,
            r#"{"apiVersion":"v1","metadata":{}"#,
            r#"{"apiVersion":"v1","metadata":{}} trailing"#,
            r#"["apiVersion"]"#,
            r#"{"apiVersion":"v1","metadata":{"a":"unterminated}}"#,
            "",
        ] {
            assert_eq!(
                splice_resource_version(stored.as_bytes(), "v1", 1),
                None,
                "{stored}"
            );
        }
    }
}
