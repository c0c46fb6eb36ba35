//! Importing archives made by skopeo (docker-archive and oci-archive),
//! listing, removing with garbage collection, and malformed archives.

use std::path::Path;

use images::testing::ImageBuilder;
use images::{ImageRequest, ImageService, ImageStore, PullPolicy, StoreError};

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

async fn run_never(store: &ImageStore, image: &str) -> images::ResolvedImage {
    store
        .ensure(&ImageRequest {
            image: image.to_string(),
            pull_policy: PullPolicy::Never,
            credentials: Vec::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("{image} should be present after import: {e}"))
}

#[tokio::test]
async fn imports_docker_and_oci_archives_sharing_layers() {
    let image = ImageBuilder::busybox(&["sleep", "3600"]);
    let scratch = tempfile::tempdir().unwrap();
    let docker_archive = scratch.path().join("docker.tar");
    let oci_archive = scratch.path().join("oci.tar");
    image.save_docker_archive(&docker_archive, "busybox:docker");
    image.save_oci_archive(&oci_archive, "example.com/team/busybox:oci");

    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path()).unwrap();
    assert_eq!(
        store
            .import(&docker_archive)
            .expect("import docker-archive"),
        vec!["docker.io/library/busybox:docker"]
    );
    assert_eq!(
        store.import(&oci_archive).expect("import oci-archive"),
        vec!["example.com/team/busybox:oci"]
    );

    let from_docker = run_never(&store, "busybox:docker").await;
    let from_oci = run_never(&store, "example.com/team/busybox:oci").await;
    assert_eq!(from_docker.config.cmd, vec!["sleep", "3600"]);
    assert_eq!(
        from_docker.layers, from_oci.layers,
        "one layer, unpacked once"
    );
    assert!(from_docker.layers[0].join("bin/busybox").is_file());
    assert!(
        from_docker.image_id.starts_with("sha256:"),
        "imported images have the config digest as ID: {}",
        from_docker.image_id
    );
    assert_eq!(count(&store.root().join("layers")), 1);

    let list = store.list().unwrap();
    let references: Vec<&str> = list.iter().map(|s| s.reference.as_str()).collect();
    assert_eq!(
        references,
        vec![
            "docker.io/library/busybox:docker",
            "example.com/team/busybox:oci"
        ]
    );
    assert!(
        list.iter().all(|s| s.size > 500_000),
        "sizes count the layer: {list:?}"
    );
    assert_eq!(
        list[0].image_id, list[1].image_id,
        "same config, same image ID"
    );

    // Removing one keeps the layer the other uses; removing both collects it.
    assert_eq!(
        store.remove("busybox:docker").unwrap(),
        vec!["docker.io/library/busybox:docker"]
    );
    assert_eq!(count(&store.root().join("layers")), 1);
    run_never(&store, "example.com/team/busybox:oci").await;
    let err = store.remove("busybox:docker").unwrap_err();
    assert_eq!(
        err.to_string(),
        "image \"docker.io/library/busybox:docker\" not found"
    );
    // By image ID (12 hex digits, as `crictl images` shows it).
    let id = list[1].image_id.trim_start_matches("sha256:")[..12].to_string();
    assert_eq!(
        store.remove(&id).unwrap(),
        vec!["example.com/team/busybox:oci"]
    );
    assert!(store.list().unwrap().is_empty());
    assert!(matches!(store.remove(&id), Err(StoreError::NotFound(_))));
    assert_eq!(count(&store.root().join("layers")), 0, "layers collected");
    assert_eq!(
        count(&store.root().join("blobs/sha256")),
        0,
        "blobs collected"
    );
    assert_eq!(count(&store.root().join("tmp")), 0);
}

#[test]
fn malformed_archives_are_refused_with_a_reason() {
    let scratch = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path()).unwrap();
    let expect_invalid = |path: &Path, want: &str| {
        match store.import(path) {
            Err(StoreError::Invalid(msg)) => {
                assert!(msg.contains(want), "{}: {msg}", path.display())
            }
            other => panic!(
                "{}: expected a refusal mentioning {want:?}, got {other:?}",
                path.display()
            ),
        }
        assert!(store.list().unwrap().is_empty());
        assert_eq!(count(&store.root().join("layers")), 0, "nothing unpacked");
    };

    let text = scratch.path().join("notes.txt");
    std::fs::write(
        &text,
        "this is not a tar archive, it is a note of some length ".repeat(20),
    )
    .unwrap();
    expect_invalid(&text, "not a readable tar archive");

    let empty_tar = scratch.path().join("empty.tar");
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(2);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    builder
        .append_data(&mut header, "README", &b"hi"[..])
        .unwrap();
    std::fs::write(&empty_tar, builder.into_inner().unwrap()).unwrap();
    expect_invalid(&empty_tar, "not an image archive");

    // A docker-archive whose layer does not match the config's diff ID.
    let image = ImageBuilder::busybox(&["sh"]);
    let good = scratch.path().join("good.tar");
    image.save_docker_archive(&good, "busybox:1");
    let unpacked = scratch.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    tar::Archive::new(std::fs::File::open(&good).unwrap())
        .unpack(&unpacked)
        .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(unpacked.join("manifest.json")).unwrap()).unwrap();
    let layer = manifest[0]["Layers"][0].as_str().unwrap().to_string();
    let mut other = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(1);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    other.append_data(&mut header, "evil", &b"x"[..]).unwrap();
    std::fs::write(unpacked.join(&layer), other.into_inner().unwrap()).unwrap();
    let tampered = scratch.path().join("tampered.tar");
    let mut repacked = tar::Builder::new(std::fs::File::create(&tampered).unwrap());
    repacked.append_dir_all(".", &unpacked).unwrap();
    repacked.finish().unwrap();
    drop(repacked);
    expect_invalid(&tampered, "the image config says");
}
