//! The image store against a real docker-registry with images built by
//! umoci from busybox-static: pull by tag and digest, layer reuse, pull
//! policies, auth, whiteouts as overlayfs reads them, and errors.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use images::testing::{run, ImageBuilder, Registry};
use images::{ImageError, ImageRequest, ImageService, ImageStore, PullPolicy, RegistryCredential};

fn request(image: &str, pull_policy: PullPolicy) -> ImageRequest {
    ImageRequest {
        image: image.to_string(),
        pull_policy,
        credentials: Vec::new(),
    }
}

fn layer_dirs(store: &ImageStore) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(store.root().join("layers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    dirs
}

#[tokio::test]
async fn pulls_by_tag_then_by_digest_and_reuses_layers() {
    let registry = Registry::start();
    let image = ImageBuilder::busybox(&["sh", "-c", "echo hi"]);
    let reference = registry.reference("test/busybox:1");
    image.push(&reference, None);

    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path().join("images")).unwrap();
    let resolved = store
        .ensure(&request(&reference, PullPolicy::IfNotPresent))
        .await
        .expect("pull by tag");
    assert_eq!(resolved.reference, reference);
    assert!(
        resolved
            .image_id
            .starts_with(&format!("{}/test/busybox@sha256:", registry.address)),
        "image ID is the repo digest: {}",
        resolved.image_id
    );
    assert_eq!(resolved.config.cmd, vec!["sh", "-c", "echo hi"]);
    assert_eq!(resolved.config.env, vec!["PATH=/bin"]);
    assert_eq!(resolved.layers.len(), 1);
    let layer = &resolved.layers[0];
    assert!(
        layer.join("bin/busybox").is_file(),
        "busybox unpacked in {}",
        layer.display()
    );
    assert_eq!(
        std::fs::read_link(layer.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    let busybox = std::fs::metadata(layer.join("bin/busybox")).unwrap();
    assert_eq!(busybox.mode() & 0o111, 0o111, "busybox stays executable");

    // By digest: the same image, found without a second download.
    let by_digest = store
        .ensure(&request(&resolved.image_id, PullPolicy::IfNotPresent))
        .await
        .expect("pull by digest");
    assert_eq!(by_digest.layers, resolved.layers);
    assert_eq!(by_digest.config, resolved.config);

    // Always re-resolves the tag but reuses the unpacked layer.
    let inode_before = std::fs::metadata(layer).unwrap().ino();
    let again = store
        .ensure(&request(&reference, PullPolicy::Always))
        .await
        .expect("re-pull");
    assert_eq!(again.layers, resolved.layers);
    assert_eq!(
        std::fs::metadata(layer).unwrap().ino(),
        inode_before,
        "layer not unpacked again"
    );
    assert_eq!(
        layer_dirs(&store).len(),
        1,
        "one layer directory: {:?}",
        layer_dirs(&store)
    );

    // A second image on the same base shares its layer.
    let derived = image;
    let extra = derived.staging("extra");
    std::fs::write(extra.join("greeting"), "hello\n").unwrap();
    derived.insert(&extra, "/srv");
    let derived_reference = registry.reference("test/derived:1");
    derived.push(&derived_reference, None);
    let derived_image = store
        .ensure(&request(&derived_reference, PullPolicy::IfNotPresent))
        .await
        .expect("pull derived");
    assert_eq!(derived_image.layers.len(), 2);
    assert_eq!(
        derived_image.layers[0], resolved.layers[0],
        "base layer shared"
    );
    assert_eq!(layer_dirs(&store).len(), 2);
    assert_eq!(
        std::fs::read_to_string(derived_image.layers[1].join("srv/greeting")).unwrap(),
        "hello\n"
    );

    // Nothing half-done is left behind.
    assert_eq!(
        std::fs::read_dir(store.root().join("tmp")).unwrap().count(),
        0
    );
}

#[tokio::test]
async fn concurrent_pulls_of_one_image_pull_once() {
    let registry = Registry::start();
    let image = ImageBuilder::busybox(&["sh"]);
    let reference = registry.reference("test/busybox:1");
    image.push(&reference, None);
    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path()).unwrap();
    let a = request(&reference, PullPolicy::IfNotPresent);
    let b = request(&reference, PullPolicy::IfNotPresent);
    let (first, second) = tokio::join!(store.ensure(&a), store.ensure(&b));
    let (first, second) = (first.expect("first pull"), second.expect("second pull"));
    assert_eq!(first, second);
    assert_eq!(layer_dirs(&store).len(), 1);
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = [0u8; 64];
    // SAFETY: NUL-terminated strings and a buffer of the length given.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| buf[..len as usize].to_vec())
}

fn overlay_mount(layers: &[PathBuf], target: &Path) {
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|l| l.display().to_string())
        .collect();
    run(Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!("lowerdir={}", lower.join(":")))
        .arg(target));
}

#[tokio::test]
async fn whiteouts_and_opaque_directories_read_right_through_overlayfs() {
    let registry = Registry::start();
    let image = ImageBuilder::busybox(&["sh"]);
    let data = image.staging("data");
    std::fs::create_dir_all(data.join("data")).unwrap();
    std::fs::write(data.join("data/a"), "a").unwrap();
    std::fs::write(data.join("data/b"), "b").unwrap();
    std::fs::write(data.join("motd"), "welcome").unwrap();
    image.insert(&data.join("data"), "/data");
    image.insert(&data.join("motd"), "/etc/motd");
    image.whiteout("/etc/motd");
    let replacement = image.staging("replacement");
    std::fs::write(replacement.join("c"), "c").unwrap();
    image.insert_opaque(&replacement, "/data");
    let reference = registry.reference("test/layered:1");
    image.push(&reference, None);

    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path()).unwrap();
    let resolved = store
        .ensure(&request(&reference, PullPolicy::IfNotPresent))
        .await
        .expect("pull layered image");
    assert_eq!(
        resolved.layers.len(),
        5,
        "busybox, data, motd, whiteout, opaque"
    );
    let whiteout = std::fs::symlink_metadata(resolved.layers[3].join("etc/motd")).unwrap();
    assert!(
        whiteout.file_type().is_char_device() && whiteout.rdev() == 0,
        "etc/motd is a 0:0 whiteout"
    );
    assert_eq!(
        xattr(&resolved.layers[4].join("data"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..]),
        "the opaque layer's /data is marked opaque"
    );
    assert_eq!(
        xattr(&resolved.layers[1].join("data"), "trusted.overlay.opaque"),
        None
    );

    // The merged view overlayfs gives a container.
    let merged = tempfile::tempdir().unwrap();
    overlay_mount(&resolved.layers, merged.path());
    let names = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let data_entries = names(&merged.path().join("data"));
    let motd_exists = merged.path().join("etc/motd").exists();
    let hostname = std::fs::read_to_string(merged.path().join("etc/hostname"));
    run(Command::new("umount").arg(merged.path()));
    assert_eq!(data_entries, vec!["c"], "opaque /data hides a and b");
    assert!(!motd_exists, "whited-out /etc/motd is gone");
    assert_eq!(hostname.unwrap(), "image\n", "lower layers show through");
}

#[tokio::test]
async fn missing_images_and_pull_policies() {
    let registry = Registry::start();
    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path()).unwrap();

    let missing = registry.reference("nope:1");
    let err = store
        .ensure(&request(&missing, PullPolicy::IfNotPresent))
        .await
        .expect_err("pulling a missing repository fails");
    let ImageError::Pull(message) = &err else {
        panic!("expected ErrImagePull, got {err:?}")
    };
    assert_eq!(err.reason(), "ErrImagePull");
    assert!(
        message.starts_with(&format!("failed to pull and unpack image \"{missing}\": "))
            && message.contains("not found"),
        "message: {message}"
    );

    let image = ImageBuilder::busybox(&["sh"]);
    let reference = registry.reference("test/busybox:1");
    image.push(&reference, None);
    let missing_tag = registry.reference("test/busybox:2");
    let err = store
        .ensure(&request(&missing_tag, PullPolicy::Always))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not found"), "missing tag: {err}");
    eprintln!("missing repository: {message}\nmissing tag: {err}");

    let err = store
        .ensure(&request(&reference, PullPolicy::Never))
        .await
        .unwrap_err();
    assert_eq!(err, ImageError::NeverPull(reference.clone()));
    assert_eq!(err.reason(), "ErrImageNeverPull");
    store
        .ensure(&request(&reference, PullPolicy::IfNotPresent))
        .await
        .expect("pull");
    store
        .ensure(&request(&reference, PullPolicy::Never))
        .await
        .expect("present now, Never is fine");

    let err = store
        .ensure(&request("Bad Name", PullPolicy::IfNotPresent))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "InvalidImageName", "{err}");

    // Nothing listens here: a connection error, said as such.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = store
        .ensure(&request(
            &format!("127.0.0.1:{closed}/x:1"),
            PullPolicy::IfNotPresent,
        ))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("failed to reach registry"),
        "{err}"
    );
    eprintln!("closed port: {err}");
}

#[tokio::test]
async fn pulls_with_basic_auth_credentials() {
    let registry = Registry::start_with_auth("alice", "s3cret");
    let image = ImageBuilder::busybox(&["sh"]);
    let reference = registry.reference("private/busybox:1");
    image.push(&reference, Some("alice:s3cret"));
    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path()).unwrap();

    let err = store
        .ensure(&request(&reference, PullPolicy::IfNotPresent))
        .await
        .expect_err("anonymous pull is refused");
    assert_eq!(err.reason(), "ErrImagePull");
    assert!(err.to_string().contains("requires credentials"), "{err}");
    eprintln!("anonymous: {err}");

    let with = |password: &str| ImageRequest {
        image: reference.clone(),
        pull_policy: PullPolicy::IfNotPresent,
        credentials: vec![
            RegistryCredential {
                registry: "other.example:5000".to_string(),
                username: "bob".to_string(),
                password: "nope".to_string(),
            },
            RegistryCredential {
                registry: registry.address.clone(),
                username: "alice".to_string(),
                password: password.to_string(),
            },
        ],
    };
    let err = store
        .ensure(&with("wrong"))
        .await
        .expect_err("wrong password is refused");
    assert!(err.to_string().contains("refused the credentials"), "{err}");
    eprintln!("wrong password: {err}");

    let resolved = store
        .ensure(&with("s3cret"))
        .await
        .expect("pull with credentials");
    assert!(resolved.layers[0].join("bin/busybox").is_file());
}

#[tokio::test]
async fn an_image_index_resolves_to_this_machines_platform() {
    let registry = Registry::start();
    let image = ImageBuilder::busybox(&["right-platform"]);
    let other = if images::host_architecture() == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    image.add_index("multi", other);
    let reference = registry.reference("test/multi:1");
    image.push_tag("multi", &reference, None);
    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path()).unwrap();
    let resolved = store
        .ensure(&request(&reference, PullPolicy::IfNotPresent))
        .await
        .expect("pull through the index");
    assert_eq!(
        resolved.config.cmd,
        vec!["right-platform"],
        "linux/{} chosen",
        images::host_architecture()
    );
}

#[tokio::test]
async fn content_that_does_not_match_its_digest_is_refused() {
    let registry = Registry::start();
    let image = ImageBuilder::busybox(&["sh"]);
    let reference = registry.reference("test/busybox:1");
    image.push(&reference, None);
    // Corrupt the largest blob (the layer) in the registry's storage,
    // keeping its length.
    let mut largest: Option<(u64, PathBuf)> = None;
    let mut stack = vec![registry.storage_dir()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else if entry.file_name() == "data"
                && largest.as_ref().is_none_or(|(size, _)| meta.len() > *size)
            {
                largest = Some((meta.len(), entry.path()));
            }
        }
    }
    let (size, path) = largest.expect("a blob in the registry");
    std::fs::write(&path, vec![0u8; size as usize]).unwrap();

    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path()).unwrap();
    let err = store
        .ensure(&request(&reference, PullPolicy::IfNotPresent))
        .await
        .expect_err("a corrupt layer is refused");
    assert!(err.to_string().to_lowercase().contains("digest"), "{err}");
    assert!(
        layer_dirs(&store).is_empty(),
        "nothing unpacked: {:?}",
        layer_dirs(&store)
    );
    assert!(store.list().unwrap().is_empty());
}

#[tokio::test]
async fn a_half_unpacked_or_missing_layer_is_never_used() {
    let registry = Registry::start();
    let image = ImageBuilder::busybox(&["sh"]);
    let reference = registry.reference("test/busybox:1");
    image.push(&reference, None);
    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path()).unwrap();
    let first = store
        .ensure(&request(&reference, PullPolicy::IfNotPresent))
        .await
        .unwrap();

    // As if the agent crashed mid-unpack: the layer directory is gone and a
    // partial copy sits in tmp/.
    let layer = first.layers[0].clone();
    let partial = store.root().join("tmp/layer-crashed");
    std::fs::rename(&layer, &partial).unwrap();
    std::fs::remove_file(partial.join("bin/busybox")).unwrap();
    let err = store
        .ensure(&request(&reference, PullPolicy::Never))
        .await
        .unwrap_err();
    assert_eq!(
        err.reason(),
        "ErrImageNeverPull",
        "an image missing a layer is not present"
    );
    let again = store
        .ensure(&request(&reference, PullPolicy::IfNotPresent))
        .await
        .unwrap();
    assert_eq!(again.layers, first.layers);
    assert!(
        layer.join("bin/busybox").is_file(),
        "the layer was unpacked again, whole"
    );
    store.collect_garbage().unwrap();
    assert!(!partial.exists(), "garbage collection clears tmp/");
    assert!(layer.is_dir(), "and keeps layers in use");
}

#[tokio::test]
async fn pulls_zstd_compressed_layers() {
    let registry = Registry::start();
    let image = ImageBuilder::busybox(&["sh"]);
    let extra = image.staging("extra");
    std::fs::write(extra.join("note"), "zstd\n").unwrap();
    image.insert(&extra, "/srv");
    image.recompress_zstd();
    let reference = registry.reference("test/zstd:1");
    image.push(&reference, None);
    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path()).unwrap();
    let resolved = store
        .ensure(&request(&reference, PullPolicy::IfNotPresent))
        .await
        .expect("pull zstd layers");
    assert!(resolved.layers[0].join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_to_string(resolved.layers[1].join("srv/note")).unwrap(),
        "zstd\n"
    );
    let manifests_with_zstd = std::fs::read_dir(store.root().join("blobs/sha256"))
        .unwrap()
        .filter(|b| {
            std::fs::read_to_string(b.as_ref().unwrap().path())
                .is_ok_and(|text| text.contains("application/vnd.oci.image.layer.v1.tar+zstd"))
        })
        .count();
    assert_eq!(
        manifests_with_zstd, 1,
        "the pulled manifest names zstd layers"
    );
}
