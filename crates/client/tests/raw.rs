//! The client's raw paths against a real in-process API server on a memory
//! store: a list handed over page by page, and a watch whose objects stay
//! JSON text.

use apiserver::{ApiServer, Config};
use client::{Client, Gvr, WatchEvent};
use futures::StreamExt;
use serde_json::{json, Value};
use store::memory::MemoryStore;

const TOKEN: &str = "test-token";

async fn client() -> Client {
    let server = ApiServer::new(MemoryStore::new(), Config::new(vec![TOKEN.into()]));
    server.start().await.expect("API server bootstrap");
    Client::in_process(server, TOKEN, "test")
}

fn config_maps() -> Gvr {
    Gvr::new("", "v1", "configmaps")
}

fn config_map(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": format!("cm-{i:04}")}, "data": {"i": i.to_string()}})
}

#[tokio::test]
async fn list_pages_hands_over_every_object_in_pages_of_500() {
    let client = client().await;
    for i in 0..1203 {
        client
            .create(config_maps(), Some("default"), &config_map(i))
            .await
            .expect("create");
    }
    let mut pages = Vec::new();
    let mut names = Vec::new();
    let resource_version = client
        .list_pages(config_maps(), Some("default"), None, None, |page| {
            pages.push(page.len());
            for raw in page {
                let object: Value = serde_json::from_str(raw.get()).expect("an item is JSON");
                names.push(object["metadata"]["name"].as_str().unwrap().to_string());
            }
        })
        .await
        .expect("list_pages");
    assert_eq!(pages, [500, 500, 203], "page sizes");
    let expected: Vec<String> = (0..1203).map(|i| format!("cm-{i:04}")).collect();
    assert_eq!(names, expected, "every object once, in order");
    assert!(
        resource_version.parse::<i64>().unwrap() > 0,
        "{resource_version:?}"
    );

    // The JSON-value list is the same list.
    let list = client
        .list(config_maps(), Some("default"), None, None)
        .await
        .expect("list");
    assert_eq!(list.items.len(), 1203);
    assert_eq!(list.resource_version, resource_version);
}

#[tokio::test]
async fn list_pages_reports_an_api_error() {
    let client = client().await;
    let error = client
        .list_pages(Gvr::new("", "v1", "nosuchthings"), None, None, None, |_| {
            panic!("no page for an unknown resource")
        })
        .await
        .expect_err("an unknown resource");
    assert!(
        error.to_string().contains("404") || error.to_string().contains("NotFound"),
        "{error}"
    );
}

#[tokio::test]
async fn raw_watch_delivers_objects_as_json_text() {
    let client = client().await;
    let created = client
        .create(config_maps(), Some("default"), &config_map(1))
        .await
        .expect("create");
    let from = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut stream = client
        .watch_raw(config_maps(), Some("default"), &from, 30)
        .await
        .expect("watch");
    client
        .patch(
            config_maps(),
            Some("default"),
            "cm-0001",
            None,
            client::PatchType::Merge,
            &json!({"data": {"i": "changed"}}),
        )
        .await
        .expect("patch");
    client
        .delete(
            config_maps(),
            Some("default"),
            "cm-0001",
            &client::DeleteOptions::default(),
        )
        .await
        .expect("delete");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream goes on");
        let (kind, raw) = match event {
            WatchEvent::Modified(raw) => ("MODIFIED", raw),
            WatchEvent::Deleted(raw) => ("DELETED", raw),
            WatchEvent::Bookmark { .. } => continue,
            other => panic!("unexpected event {other:?}"),
        };
        let object: Value = serde_json::from_str(raw.get()).expect("the object is JSON");
        seen.push((kind, object["data"]["i"].as_str().unwrap().to_string()));
    }
    assert_eq!(
        seen,
        [
            ("MODIFIED", "changed".to_string()),
            ("DELETED", "changed".to_string())
        ]
    );
}
