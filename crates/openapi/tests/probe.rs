use std::collections::BTreeMap;
use std::time::Instant;
#[test]
fn probe() {
    let t = Instant::now();
    let defs = openapi::definitions();
    eprintln!("definitions: {} in {:?}", defs.len(), t.elapsed());
    let pod = openapi::schema_for("", "v1", "Pod").unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&pod["properties"]["metadata"]).unwrap());
    eprintln!("{}", serde_json::to_string_pretty(&defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]).unwrap());
    let r = openapi::ResourceInfo { group: "".into(), version: "v1".into(), kind: "Pod".into(), plural: "pods".into(), namespaced: true, subresources: vec!["status".into()], verbs: vec![] };
    let t = Instant::now();
    let doc = openapi::group_version_document("", "v1", &[r], &BTreeMap::new());
    let s = serde_json::to_string(&doc).unwrap();
    eprintln!("doc {} bytes, {} schemas in {:?}", s.len(), doc["components"]["schemas"].as_object().unwrap().len(), t.elapsed());
    std::fs::write("/tmp/pod_doc.json", serde_json::to_string_pretty(&doc).unwrap()).unwrap();
}
