//! Imports image archives into the store: docker-archive (`docker save`,
//! `skopeo copy … docker-archive:`) and OCI image layout archives
//! (`skopeo copy … oci-archive:`), plain or gzip-compressed.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::reference::ImageReference;
use crate::store::{
    choose_platform, digest_hex, host_architecture, parse_config, Descriptor, ImageStore,
    IndexEntry, ManifestOrIndex, StoreError,
};
use crate::unpack::sha256_digest;

/// `manifest.json` of a docker-archive: one item per image.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerArchiveItem {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// An extracted archive; file reads stay inside it.
struct Extracted {
    dir: tempfile::TempDir,
}

impl Extracted {
    /// The path of `name` in the archive, refusing names (or symlinks in
    /// the archive) that lead outside it.
    fn path(&self, name: &str) -> Result<PathBuf, StoreError> {
        let joined = self.dir.path().join(name.trim_start_matches('/'));
        let real = joined
            .canonicalize()
            .map_err(|e| StoreError::Invalid(format!("{name}: {e}")))?;
        let root = self
            .dir
            .path()
            .canonicalize()
            .map_err(|e| StoreError::io("resolving the extraction directory", e))?;
        if !real.starts_with(&root) {
            return Err(StoreError::Invalid(format!(
                "{name} points outside the archive"
            )));
        }
        Ok(real)
    }

    fn exists(&self, name: &str) -> bool {
        self.dir.path().join(name).exists()
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path(name)?;
        std::fs::read(&path).map_err(|e| StoreError::Invalid(format!("reading {name}: {e}")))
    }

    fn open(&self, name: &str) -> Result<std::fs::File, StoreError> {
        let path = self.path(name)?;
        std::fs::File::open(&path).map_err(|e| StoreError::Invalid(format!("opening {name}: {e}")))
    }

    fn blob_name(digest: &str) -> Result<String, StoreError> {
        Ok(format!("blobs/sha256/{}", digest_hex(digest)?))
    }

    /// A blob of the OCI layout, checked against its digest.
    fn read_blob(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        let data = self.read(&Self::blob_name(digest)?)?;
        if sha256_digest(&data) != digest {
            return Err(StoreError::Invalid(format!(
                "blob {digest} does not match its digest"
            )));
        }
        Ok(data)
    }
}

impl ImageStore {
    /// Imports every image in the archive at `path`; returns the
    /// references imported. Errors name what is wrong with the archive
    /// (the caller adds the file name).
    pub fn import(&self, path: &Path) -> Result<Vec<String>, StoreError> {
        let file =
            std::fs::File::open(path).map_err(|e| StoreError::io("opening the archive", e))?;
        let mut reader = BufReader::new(file);
        let head = reader
            .fill_buf()
            .map_err(|e| StoreError::io("reading the archive", e))?;
        let stream: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::MultiGzDecoder::new(reader))
        } else {
            Box::new(reader)
        };
        // Held shared from the first layer unpacked until the index names
        // the image, like a pull.
        let _content = self.content_lock(false)?;
        let dir = tempfile::Builder::new()
            .prefix("import-")
            .tempdir_in(self.tmp_dir())
            .map_err(|e| StoreError::io("creating a temporary directory", e))?;
        let mut archive = tar::Archive::new(stream);
        // `unpack` refuses entries that would land outside `dir`.
        archive
            .unpack(dir.path())
            .map_err(|e| StoreError::Invalid(format!("not a readable tar archive: {e}")))?;
        let extracted = Extracted { dir };
        if extracted.exists("manifest.json") {
            self.import_docker_archive(&extracted)
        } else if extracted.exists("index.json") && extracted.exists("oci-layout") {
            self.import_oci_archive(&extracted)
        } else {
            Err(StoreError::Invalid(
                "not an image archive: it has neither manifest.json (docker-archive) nor oci-layout and index.json (oci-archive)"
                    .to_string(),
            ))
        }
    }

    fn import_docker_archive(&self, archive: &Extracted) -> Result<Vec<String>, StoreError> {
        let items: Vec<DockerArchiveItem> = serde_json::from_slice(&archive.read("manifest.json")?)
            .map_err(|e| StoreError::Invalid(format!("malformed manifest.json: {e}")))?;
        if items.is_empty() {
            return Err(StoreError::Invalid(
                "manifest.json lists no images".to_string(),
            ));
        }
        let mut imported = Vec::new();
        for item in items {
            let tags = item.repo_tags.clone().unwrap_or_default();
            if tags.is_empty() {
                return Err(StoreError::Invalid(format!(
                    "image {} in manifest.json has no RepoTags: name the image when saving it",
                    item.config
                )));
            }
            let references = tags
                .iter()
                .map(|t| ImageReference::parse(t).map(|r| r.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            let config_bytes = archive.read(&item.config)?;
            let config_digest = sha256_digest(&config_bytes);
            let (diff_ids, _) = parse_config(&config_bytes, &item.config)?;
            if diff_ids.len() != item.layers.len() {
                return Err(StoreError::Invalid(format!(
                    "manifest.json lists {} layers for {}, its config lists {} diff IDs",
                    item.layers.len(),
                    item.config,
                    diff_ids.len()
                )));
            }
            let mut layer_descriptors = Vec::new();
            for (layer, diff_id) in item.layers.iter().zip(&diff_ids) {
                let size = archive
                    .path(layer)?
                    .metadata()
                    .map_err(|e| StoreError::Invalid(format!("{layer}: {e}")))?
                    .len();
                if !self.layer_path(diff_id)?.is_dir() {
                    self.add_layer(diff_id, archive.open(layer)?, &format!("layer {layer}"))?;
                }
                layer_descriptors.push(serde_json::json!({
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar",
                    "digest": diff_id,
                    "size": size,
                }));
            }
            // A docker-archive has no manifest; write the one a registry
            // would serve so every image in the store has one.
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "digest": config_digest,
                    "size": config_bytes.len(),
                },
                "layers": layer_descriptors,
            });
            let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
            let manifest_digest = sha256_digest(&manifest_bytes);
            self.write_blob(&config_digest, &config_bytes)?;
            self.write_blob(&manifest_digest, &manifest_bytes)?;
            let size = config_bytes.len() as u64
                + layer_descriptors
                    .iter()
                    .map(|l| l["size"].as_u64().unwrap_or(0))
                    .sum::<u64>();
            for reference in references {
                self.set_image(
                    &reference,
                    IndexEntry {
                        manifest_digest: manifest_digest.clone(),
                        config_digest: config_digest.clone(),
                        layers: diff_ids.clone(),
                        size,
                        repo_digest: None,
                    },
                )?;
                imported.push(reference);
            }
        }
        Ok(imported)
    }

    fn import_oci_archive(&self, archive: &Extracted) -> Result<Vec<String>, StoreError> {
        let index: ManifestOrIndex = serde_json::from_slice(&archive.read("index.json")?)
            .map_err(|e| StoreError::Invalid(format!("malformed index.json: {e}")))?;
        let manifests = index.manifests.unwrap_or_default();
        if manifests.is_empty() {
            return Err(StoreError::Invalid(
                "index.json lists no images".to_string(),
            ));
        }
        let mut imported = Vec::new();
        for descriptor in manifests {
            let annotations = descriptor.annotations.clone().unwrap_or_default();
            let Some(name) = annotations
                .get("io.containerd.image.name")
                .or_else(|| annotations.get("org.opencontainers.image.ref.name"))
            else {
                return Err(StoreError::Invalid(format!(
                    "image {} in index.json has no name (org.opencontainers.image.ref.name): name the image when saving it",
                    descriptor.digest
                )));
            };
            let reference = ImageReference::parse(name)?.to_string();
            let (manifest_digest, manifest_bytes) = self.oci_manifest(archive, &descriptor)?;
            let manifest: ManifestOrIndex =
                serde_json::from_slice(&manifest_bytes).map_err(|e| {
                    StoreError::Invalid(format!("malformed manifest {manifest_digest}: {e}"))
                })?;
            let (Some(config), Some(layers)) = (manifest.config, manifest.layers) else {
                return Err(StoreError::Invalid(format!(
                    "manifest {manifest_digest} has no config or no layers"
                )));
            };
            let config_bytes = archive.read_blob(&config.digest)?;
            let (diff_ids, _) = parse_config(&config_bytes, &format!("config {}", config.digest))?;
            if diff_ids.len() != layers.len() {
                return Err(StoreError::Invalid(format!(
                    "manifest {manifest_digest} has {} layers, its config lists {} diff IDs",
                    layers.len(),
                    diff_ids.len()
                )));
            }
            for (layer, diff_id) in layers.iter().zip(&diff_ids) {
                if self.layer_path(diff_id)?.is_dir() {
                    continue;
                }
                let name = Extracted::blob_name(&layer.digest)?;
                let what = format!("layer {}", layer.digest);
                ImageStore::verify_file(&archive.path(&name)?, &layer.digest, &what)?;
                self.add_layer(diff_id, archive.open(&name)?, &what)?;
            }
            self.write_blob(&config.digest, &config_bytes)?;
            self.write_blob(&manifest_digest, &manifest_bytes)?;
            let size = config.size + layers.iter().map(|l| l.size).sum::<u64>();
            self.set_image(
                &reference,
                IndexEntry {
                    manifest_digest,
                    config_digest: config.digest.clone(),
                    layers: diff_ids,
                    size,
                    repo_digest: None,
                },
            )?;
            imported.push(reference);
        }
        Ok(imported)
    }

    /// The image manifest a descriptor of index.json names, going through a
    /// nested index (multi-platform) to this machine's platform.
    fn oci_manifest(
        &self,
        archive: &Extracted,
        descriptor: &Descriptor,
    ) -> Result<(String, Vec<u8>), StoreError> {
        let bytes = archive.read_blob(&descriptor.digest)?;
        let parsed: ManifestOrIndex = serde_json::from_slice(&bytes).map_err(|e| {
            StoreError::Invalid(format!("malformed manifest {}: {e}", descriptor.digest))
        })?;
        match parsed.manifests {
            None => Ok((descriptor.digest.clone(), bytes)),
            Some(list) => {
                let architecture = host_architecture();
                let chosen = choose_platform(&list, architecture).ok_or_else(|| {
                    StoreError::Invalid(format!(
                        "image index {} has no image for linux/{architecture}",
                        descriptor.digest
                    ))
                })?;
                let bytes = archive.read_blob(&chosen.digest)?;
                Ok((chosen.digest.clone(), bytes))
            }
        }
    }
}
