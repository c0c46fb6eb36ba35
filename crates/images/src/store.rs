//! The content-addressed image store on disk: manifests and configs as
//! blobs, each layer unpacked once into its own directory, and an index
//! from references to images.
//!
//! ```text
//! ROOT/index.json             reference → manifest, config, layer diff IDs
//! ROOT/blobs/sha256/<hex>     manifests and configs (verified)
//! ROOT/layers/<diff-id hex>/  one unpacked layer, overlayfs form
//! ROOT/tmp/                   downloads and half-unpacked layers
//! ROOT/lock, ROOT/index.lock  flock(2) files (see `FileLock`)
//! ```
//!
//! Compressed layer tarballs are not kept: a layer is unpacked as it is
//! verified and only its directory stays (keyed by diff ID, so a re-pull
//! with `Always` finds it without downloading).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::reference::ImageReference;
use crate::unpack::{sha256_digest, unpack_layer, HashingReader};
use crate::{
    ImageConfig, ImageError, ImageRequest, ImageService, PullPolicy, PullProgress, ResolvedImage,
};

/// Where the node agent keeps its images, given `drover server --data-dir`.
/// The `drover image` commands and the OCI runtime both use this.
pub fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("agent").join("images")
}

/// What went wrong in the store; the message names the path or object.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// Bad content: a digest mismatch, a malformed archive or manifest, an
    /// unsafe layer entry, a registry's refusal.
    #[error("{0}")]
    Invalid(String),
    #[error("image \"{0}\" not found")]
    NotFound(String),
    #[error(transparent)]
    Image(#[from] ImageError),
}

impl StoreError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> StoreError {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }
}

/// One image as `drover image ls` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSummary {
    /// `docker.io/library/busybox:latest`.
    pub reference: String,
    /// `sha256:` of the config blob.
    pub image_id: String,
    /// Bytes: the config plus the layers as the manifest sizes them
    /// (compressed for pulled images), as containerd reports.
    pub size: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub manifest_digest: String,
    pub config_digest: String,
    /// Layer diff IDs, lowest first.
    pub layers: Vec<String>,
    pub size: u64,
    /// `registry/repository@<manifest digest>` for pulled images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_digest: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Index {
    pub images: BTreeMap<String, IndexEntry>,
}

// ---- the manifest, index and config shapes (OCI and Docker v2 alike) ----

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ManifestOrIndex {
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub media_type: Option<String>,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub(crate) struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    config: Option<ContainerConfig>,
    rootfs: RootFs,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// The config's layer diff IDs and what a container starts from.
pub(crate) fn parse_config(
    bytes: &[u8],
    what: &str,
) -> Result<(Vec<String>, ImageConfig), StoreError> {
    let file: ConfigFile = serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Invalid(format!("{what}: malformed image config: {e}")))?;
    let c = file.config.unwrap_or_default();
    let config = ImageConfig {
        entrypoint: c.entrypoint.unwrap_or_default(),
        cmd: c.cmd.unwrap_or_default(),
        env: c.env.unwrap_or_default(),
        working_dir: c.working_dir.filter(|w| !w.is_empty()),
        user: c.user.filter(|u| !u.is_empty()),
    };
    for id in &file.rootfs.diff_ids {
        digest_hex(id).map_err(|e| StoreError::Invalid(format!("{what}: {e}")))?;
    }
    Ok((file.rootfs.diff_ids, config))
}

/// The hex part of a `sha256:<64 hex>` digest; anything else is refused
/// (a digest becomes a file name).
pub(crate) fn digest_hex(digest: &str) -> Result<&str, StoreError> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(hex)
        }
        _ => Err(StoreError::Invalid(format!(
            "unsupported or malformed digest {digest:?} (want sha256:<64 lowercase hex>)"
        ))),
    }
}

/// The GOARCH name of this machine, as image platforms name it (`amd64`).
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Picks the manifest for linux on this machine's architecture from an
/// index (manifest list).
pub(crate) fn choose_platform<'a>(
    manifests: &'a [Descriptor],
    architecture: &str,
) -> Option<&'a Descriptor> {
    manifests.iter().find(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == "linux" && p.architecture == architecture)
    })
}

/// An flock(2) on a file in the store, released on drop. `ROOT/lock` is
/// held shared by anything that adds content (pull, import) and exclusive
/// by garbage collection, so a layer being unpacked for an image not yet in
/// the index is never collected; `ROOT/index.lock` is held exclusive around
/// each read-modify-write of the index. flock works between processes (a
/// `drover image` command beside a running server) and between open files
/// in one process.
pub(crate) struct FileLock {
    _file: std::fs::File,
}

impl FileLock {
    fn acquire(path: &Path, exclusive: bool) -> Result<FileLock, StoreError> {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| StoreError::io(format!("opening lock file {}", path.display()), e))?;
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        loop {
            // SAFETY: the fd is valid for the life of `file`.
            let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
            if rc == 0 {
                return Ok(FileLock { _file: file });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(StoreError::io(format!("locking {}", path.display()), e));
            }
        }
    }
}

/// The image store. Cheap to clone (shared state behind an `Arc`).
#[derive(Clone)]
pub struct ImageStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    /// One lock per normalised reference, so two pods pulling the same
    /// image at once pull it once.
    pulls: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<ImageStore, StoreError> {
        let root = root.into();
        for dir in ["blobs/sha256", "layers", "tmp"] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path)
                .map_err(|e| StoreError::io(format!("creating {}", path.display()), e))?;
        }
        Ok(ImageStore {
            inner: Arc::new(Inner {
                root,
                pulls: Default::default(),
            }),
        })
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub(crate) fn content_lock(&self, exclusive: bool) -> Result<FileLock, StoreError> {
        FileLock::acquire(&self.inner.root.join("lock"), exclusive)
    }

    pub(crate) async fn content_lock_async(&self, exclusive: bool) -> Result<FileLock, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.content_lock(exclusive))
            .await
            .expect("lock task panicked")
    }

    pub(crate) fn pull_lock(&self, reference: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut pulls = self.inner.pulls.lock().expect("pull lock map poisoned");
        pulls.entry(reference.to_string()).or_default().clone()
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.inner.root.join("tmp")
    }

    pub(crate) fn blob_path(&self, digest: &str) -> Result<PathBuf, StoreError> {
        Ok(self
            .inner
            .root
            .join("blobs/sha256")
            .join(digest_hex(digest)?))
    }

    /// The directory of an unpacked layer (present or not).
    pub fn layer_path(&self, diff_id: &str) -> Result<PathBuf, StoreError> {
        Ok(self.inner.root.join("layers").join(digest_hex(diff_id)?))
    }

    /// Writes a blob after checking its digest (temp file + rename, so a
    /// blob file is always whole).
    pub(crate) fn write_blob(&self, digest: &str, data: &[u8]) -> Result<(), StoreError> {
        let actual = sha256_digest(data);
        if actual != digest {
            return Err(StoreError::Invalid(format!(
                "content of {digest} does not match its digest (got {actual})"
            )));
        }
        let path = self.blob_path(digest)?;
        if path.exists() {
            return Ok(());
        }
        let mut tmp = tempfile::NamedTempFile::new_in(self.tmp_dir())
            .map_err(|e| StoreError::io("creating a temporary blob", e))?;
        io::Write::write_all(&mut tmp, data)
            .map_err(|e| StoreError::io(format!("writing blob {digest}"), e))?;
        tmp.persist(&path)
            .map_err(|e| StoreError::io(format!("storing blob {}", path.display()), e.error))?;
        Ok(())
    }

    /// Reads a stored blob, checking it is still what its name says.
    pub(crate) fn read_blob(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest)?;
        let data = std::fs::read(&path)
            .map_err(|e| StoreError::io(format!("reading blob {}", path.display()), e))?;
        if sha256_digest(&data) != digest {
            return Err(StoreError::Invalid(format!(
                "blob {} is corrupt (its content does not match its digest)",
                path.display()
            )));
        }
        Ok(data)
    }

    /// Unpacks a layer from `compressed` unless its directory exists;
    /// checks the diff ID the config promised. Crash-safe: unpacks into
    /// `tmp/` and renames, so a layer directory is complete or absent.
    pub(crate) fn add_layer(
        &self,
        diff_id: &str,
        compressed: impl Read,
        what: &str,
    ) -> Result<PathBuf, StoreError> {
        let dest = self.layer_path(diff_id)?;
        if dest.exists() {
            return Ok(dest);
        }
        let staging = tempfile::Builder::new()
            .prefix("layer-")
            .tempdir_in(self.tmp_dir())
            .map_err(|e| StoreError::io("creating a temporary layer directory", e))?;
        // The layer root is the container's `/`: 0755 like any image's.
        std::fs::set_permissions(
            staging.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .map_err(|e| StoreError::io(format!("chmod {}", staging.path().display()), e))?;
        let actual = unpack_layer(compressed, staging.path())
            .map_err(|e| StoreError::Invalid(format!("{what}: {e}")))?;
        if actual != diff_id {
            return Err(StoreError::Invalid(format!(
                "{what}: uncompressed content has digest {actual}, the image config says {diff_id}"
            )));
        }
        let staged = staging.keep();
        if let Err(e) = std::fs::rename(&staged, &dest) {
            // Another process unpacked the same layer meanwhile: keep theirs.
            let _ = std::fs::remove_dir_all(&staged);
            if !dest.exists() {
                return Err(StoreError::io(
                    format!("moving layer into {}", dest.display()),
                    e,
                ));
            }
        }
        Ok(dest)
    }

    fn read_index(&self) -> Result<Index, StoreError> {
        let path = self.inner.root.join("index.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                StoreError::Invalid(format!("{}: malformed index: {e}", path.display()))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(StoreError::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Read-modify-write of the index under `index.lock`.
    pub(crate) fn update_index<T>(
        &self,
        change: impl FnOnce(&mut Index) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _lock = FileLock::acquire(&self.inner.root.join("index.lock"), true)?;
        let mut index = self.read_index()?;
        let out = change(&mut index)?;
        let path = self.inner.root.join("index.json");
        let bytes = serde_json::to_vec_pretty(&index).expect("the index serialises");
        let mut tmp = tempfile::NamedTempFile::new_in(self.tmp_dir())
            .map_err(|e| StoreError::io("creating a temporary index", e))?;
        io::Write::write_all(&mut tmp, &bytes)
            .map_err(|e| StoreError::io("writing the index", e))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| StoreError::io("syncing the index", e))?;
        tmp.persist(&path)
            .map_err(|e| StoreError::io(format!("replacing {}", path.display()), e.error))?;
        Ok(out)
    }

    pub(crate) fn set_image(&self, reference: &str, entry: IndexEntry) -> Result<(), StoreError> {
        self.update_index(|index| {
            index.images.insert(reference.to_string(), entry);
            Ok(())
        })
    }

    /// The image a reference names, if it is in the index with all its
    /// content present.
    pub fn lookup(&self, reference: &ImageReference) -> Result<Option<ResolvedImage>, StoreError> {
        let key = reference.to_string();
        let index = {
            let _lock = FileLock::acquire(&self.inner.root.join("index.lock"), true)?;
            self.read_index()?
        };
        let entry = match index.images.get(&key) {
            Some(e) => e.clone(),
            // `repo@sha256:<manifest>` also finds an image pulled by tag.
            None => match &reference.digest {
                Some(d) => match index.images.iter().find(|(_, e)| {
                    &e.manifest_digest == d
                        && e.repo_digest.as_deref() == Some(&reference.with_digest(d))
                }) {
                    Some((_, e)) => e.clone(),
                    None => return Ok(None),
                },
                None => return Ok(None),
            },
        };
        let mut layers = Vec::with_capacity(entry.layers.len());
        for diff_id in &entry.layers {
            let path = self.layer_path(diff_id)?;
            if !path.is_dir() {
                return Ok(None);
            }
            layers.push(path);
        }
        let config_bytes = match self.read_blob(&entry.config_digest) {
            Ok(b) => b,
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let (_, config) = parse_config(&config_bytes, &format!("config of {key}"))?;
        Ok(Some(ResolvedImage {
            reference: key,
            image_id: entry
                .repo_digest
                .clone()
                .unwrap_or_else(|| entry.config_digest.clone()),
            layers,
            config,
            size: entry.size,
        }))
    }

    /// Every image: reference, ID, size; sorted by reference.
    pub fn list(&self) -> Result<Vec<ImageSummary>, StoreError> {
        let index = {
            let _lock = FileLock::acquire(&self.inner.root.join("index.lock"), true)?;
            self.read_index()?
        };
        Ok(index
            .images
            .into_iter()
            .map(|(reference, e)| ImageSummary {
                reference,
                image_id: e.config_digest,
                size: e.size,
            })
            .collect())
    }

    /// Drops a reference, or every reference of an image ID (`sha256:…` or
    /// at least 12 hex digits of it, as `crictl rmi` takes), and collects
    /// the blobs and layers no other image uses; returns the references
    /// removed. Layers stay usable by containers already running from them:
    /// an overlayfs mount keeps its lower directories' inodes alive.
    pub fn remove(&self, image: &str) -> Result<Vec<String>, StoreError> {
        let id_prefix = image.strip_prefix("sha256:").unwrap_or(image);
        let is_id = id_prefix.len() >= 12
            && id_prefix.len() <= 64
            && id_prefix
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let parsed = ImageReference::parse(image);
        let _content = self.content_lock(true)?;
        let removed = self.update_index(|index| {
            if let Ok(reference) = &parsed {
                let key = reference.to_string();
                if index.images.remove(&key).is_some() {
                    return Ok(vec![key]);
                }
            }
            if is_id {
                let matching: Vec<String> = index
                    .images
                    .iter()
                    .filter(|(_, e)| {
                        e.config_digest
                            .trim_start_matches("sha256:")
                            .starts_with(id_prefix)
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                let ids: BTreeSet<&str> = matching
                    .iter()
                    .map(|k| index.images[k].config_digest.as_str())
                    .collect();
                if ids.len() > 1 {
                    return Err(StoreError::Invalid(format!(
                        "image ID prefix {image} is ambiguous: it matches {} images",
                        ids.len()
                    )));
                }
                if !matching.is_empty() {
                    for k in &matching {
                        index.images.remove(k);
                    }
                    return Ok(matching);
                }
            }
            match parsed {
                Ok(reference) => Err(StoreError::NotFound(reference.to_string())),
                Err(_) if is_id => Err(StoreError::NotFound(image.to_string())),
                Err(e) => Err(e.into()),
            }
        })?;
        self.collect_garbage_locked()?;
        Ok(removed)
    }

    /// Removes blobs and layers no image in the index uses, and anything
    /// left in `tmp/` by a crash. Takes the content lock exclusively.
    pub fn collect_garbage(&self) -> Result<(), StoreError> {
        let _content = self.content_lock(true)?;
        self.collect_garbage_locked()
    }

    fn collect_garbage_locked(&self) -> Result<(), StoreError> {
        let index = {
            let _lock = FileLock::acquire(&self.inner.root.join("index.lock"), true)?;
            self.read_index()?
        };
        let mut blobs = BTreeSet::new();
        let mut layers = BTreeSet::new();
        for e in index.images.values() {
            blobs.insert(digest_hex(&e.manifest_digest)?.to_string());
            blobs.insert(digest_hex(&e.config_digest)?.to_string());
            for l in &e.layers {
                layers.insert(digest_hex(l)?.to_string());
            }
        }
        let sweep = |dir: PathBuf, keep: &BTreeSet<String>| -> Result<(), StoreError> {
            let entries = std::fs::read_dir(&dir)
                .map_err(|e| StoreError::io(format!("listing {}", dir.display()), e))?;
            for entry in entries {
                let entry =
                    entry.map_err(|e| StoreError::io(format!("listing {}", dir.display()), e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if keep.contains(&name) {
                    continue;
                }
                let path = entry.path();
                let result = if path.is_dir() && !path.is_symlink() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                result.map_err(|e| StoreError::io(format!("removing {}", path.display()), e))?;
            }
            Ok(())
        };
        sweep(self.inner.root.join("blobs/sha256"), &blobs)?;
        sweep(self.inner.root.join("layers"), &layers)?;
        sweep(self.tmp_dir(), &BTreeSet::new())?;
        Ok(())
    }

    /// Hashes a file, checking it against `digest`.
    pub(crate) fn verify_file(path: &Path, digest: &str, what: &str) -> Result<(), StoreError> {
        let file =
            std::fs::File::open(path).map_err(|e| StoreError::io(format!("opening {what}"), e))?;
        let mut hashing = HashingReader::new(file);
        io::copy(&mut hashing, &mut io::sink())
            .map_err(|e| StoreError::io(format!("reading {what}"), e))?;
        let actual = hashing.digest();
        if actual != digest {
            return Err(StoreError::Invalid(format!(
                "{what}: content has digest {actual}, expected {digest}"
            )));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ImageService for ImageStore {
    async fn ensure_reporting(
        &self,
        request: &ImageRequest,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<ResolvedImage, ImageError> {
        let reference = ImageReference::parse(&request.image)?;
        let key = reference.to_string();
        let asked = std::time::Instant::now();
        let lock = self.pull_lock(&key);
        let _pulling = lock.lock().await;
        // The index and config are small files, but the index lock may be
        // held by a `drover image` command: read off the async workers.
        let present = || {
            let store = self.clone();
            let reference = reference.clone();
            let key = key.clone();
            async move {
                tokio::task::spawn_blocking(move || store.lookup(&reference))
                    .await
                    .expect("lookup task panicked")
                    .map_err(|e| {
                        ImageError::Pull(format!(
                            "failed to read image \"{key}\" from the store: {e}"
                        ))
                    })
            }
        };
        if request.pull_policy != PullPolicy::Always {
            if let Some(image) = present().await? {
                progress(PullProgress::Present);
                return Ok(image);
            }
            if request.pull_policy == PullPolicy::Never {
                return Err(ImageError::NeverPull(request.image.clone()));
            }
        }
        progress(PullProgress::Pulling);
        let began = std::time::Instant::now();
        crate::pull::pull(self, &reference, &request.credentials)
            .await
            .map_err(|e| {
                ImageError::Pull(format!("failed to pull and unpack image \"{key}\": {e}"))
            })?;
        let image = present().await?.ok_or_else(|| {
            ImageError::Pull(format!(
                "image \"{key}\" vanished from the store right after its pull"
            ))
        })?;
        progress(PullProgress::Pulled {
            pulled: began.elapsed(),
            waited: asked.elapsed(),
            size: image.size,
        });
        Ok(image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(os: &str, arch: &str) -> Descriptor {
        Descriptor {
            media_type: None,
            digest: format!("sha256:{os}-{arch}"),
            size: 1,
            platform: Some(Platform {
                architecture: arch.to_string(),
                os: os.to_string(),
                variant: None,
            }),
            annotations: None,
        }
    }

    #[test]
    fn chooses_linux_on_the_host_architecture() {
        let list = vec![
            platform("windows", "amd64"),
            platform("linux", "arm64"),
            platform("linux", "amd64"),
        ];
        assert_eq!(
            choose_platform(&list, "amd64").unwrap().digest,
            "sha256:linux-amd64"
        );
        assert_eq!(
            choose_platform(&list, "arm64").unwrap().digest,
            "sha256:linux-arm64"
        );
        assert!(choose_platform(&list, "s390x").is_none());
        assert!(choose_platform(&[], "amd64").is_none());
    }

    #[test]
    fn digests_must_be_sha256_hex() {
        let good = format!("sha256:{}", "0a".repeat(32));
        assert!(digest_hex(&good).is_ok());
        for bad in [
            "sha256:../../etc",
            "sha512:00",
            "sha256:ABC",
            &format!("sha256:{}", "A".repeat(64)),
        ] {
            assert!(digest_hex(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_config_defaults() {
        let (ids, config) = parse_config(
            br#"{"config":{"Cmd":["sh"],"Env":["PATH=/bin"],"WorkingDir":"","User":"1000"},"rootfs":{"type":"layers","diff_ids":[]}}"#,
            "test",
        )
        .unwrap();
        assert!(ids.is_empty());
        assert_eq!(config.cmd, vec!["sh"]);
        assert_eq!(config.working_dir, None);
        assert_eq!(config.user.as_deref(), Some("1000"));
        assert!(parse_config(b"{}", "test").is_err(), "rootfs is required");
    }

    #[test]
    fn store_dir_is_under_the_agent_root() {
        assert_eq!(
            store_dir(Path::new("/var/lib/drover")),
            Path::new("/var/lib/drover/agent/images")
        );
    }
}
