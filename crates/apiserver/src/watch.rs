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
                            let Some((kind, obj)) = translate(&rt, &filter, ev) else { continue };
                            if tx.send(enc.event(kind, obj)).await.is_err() { break 'run; }
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
