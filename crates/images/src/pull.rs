//! Pulls an image from a registry (Docker Registry HTTP API v2) with
//! oci-client into the store: the manifest (choosing linux on this
//! machine's architecture from an index), the config, and each layer not
//! already unpacked.

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;

use crate::reference::{is_loopback_registry, ImageReference};
use crate::store::{
    choose_platform, host_architecture, parse_config, Descriptor, ImageStore, IndexEntry,
    ManifestOrIndex, StoreError,
};
use crate::unpack::sha256_digest;
use crate::RegistryCredential;

const MANIFEST_TYPES: &[&str] = &[
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

fn client_for(registry: &str) -> Client {
    // reqwest is built without a default crypto provider (so the workspace
    // has one TLS stack, ring); install it once per process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let protocol = if is_loopback_registry(registry) {
        ClientProtocol::HttpsExcept(vec![registry.to_string()])
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig {
        protocol,
        // A registry that stops answering must fail the pull (and release
        // the per-reference lock) rather than hang it: ErrImagePull, then
        // the agent's back-off retries.
        connect_timeout: Some(std::time::Duration::from_secs(30)),
        read_timeout: Some(std::time::Duration::from_secs(60)),
        ..Default::default()
    })
}

/// Credentials for `registry`, matched like the kubelet's keyring matches
/// a host (Docker Hub is also known as `index.docker.io`).
fn auth_for(registry: &str, credentials: &[RegistryCredential]) -> RegistryAuth {
    let aliases: &[&str] = if registry == "docker.io" {
        &[
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "https://index.docker.io/v1/",
        ]
    } else {
        &[registry]
    };
    credentials
        .iter()
        .find(|c| {
            let host = c
                .registry
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/');
            aliases.contains(&host) || aliases.contains(&c.registry.as_str())
        })
        .map(|c| RegistryAuth::Basic(c.username.clone(), c.password.clone()))
        .unwrap_or(RegistryAuth::Anonymous)
}

/// Says what the registry said, in words a user can act on.
fn describe(
    error: OciDistributionError,
    reference: &ImageReference,
    authenticated: bool,
) -> StoreError {
    let message = match error {
        OciDistributionError::RegistryError { envelope, .. } => {
            let not_found = envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                        | OciErrorCode::BlobUnknown
                )
            });
            let said: Vec<String> = envelope
                .errors
                .iter()
                .map(|e| {
                    if e.message.is_empty() {
                        format!("{:?}", e.code)
                    } else {
                        e.message.clone()
                    }
                })
                .collect();
            if not_found {
                format!(
                    "failed to resolve reference \"{reference}\": {reference}: not found (the registry said: {})",
                    said.join("; ")
                )
            } else {
                format!("the registry refused the request: {}", said.join("; "))
            }
        }
        OciDistributionError::UnauthorizedError { url } => {
            if authenticated {
                format!("failed to authorize: the registry {} refused the credentials given for it (401 Unauthorized from {url})", reference.registry)
            } else {
                format!(
                    "failed to authorize: the registry {} requires credentials and none were given for it (401 Unauthorized from {url}); add an imagePullSecret",
                    reference.registry
                )
            }
        }
        OciDistributionError::AuthenticationFailure(reason) => {
            format!(
                "failed to authorize with {}: {}",
                reference.registry,
                reason.trim()
            )
        }
        OciDistributionError::ServerError { code, url, message } => {
            format!("the registry answered {code} for {url}: {}", message.trim())
        }
        OciDistributionError::RequestError(e) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            format!("failed to reach registry {}: {text}", reference.registry)
        }
        other => other.to_string(),
    };
    StoreError::Invalid(message)
}

/// Pulls `reference` into the store and records it in the index.
pub(crate) async fn pull(
    store: &ImageStore,
    reference: &ImageReference,
    credentials: &[RegistryCredential],
) -> Result<(), StoreError> {
    let client = client_for(&reference.registry);
    let auth = auth_for(&reference.registry, credentials);
    let authenticated = !matches!(auth, RegistryAuth::Anonymous);
    let oci_reference = reference.to_oci();
    // Held shared while content is added and until the index names it, so
    // garbage collection cannot take a layer this pull has just unpacked.
    let _content = store.content_lock_async(false).await?;

    let (mut bytes, mut digest) = client
        .pull_manifest_raw(&oci_reference, &auth, MANIFEST_TYPES)
        .await
        .map_err(|e| describe(e, reference, authenticated))?;
    check_digest(&bytes, &digest, "manifest")?;
    let mut manifest = parse_manifest(&bytes)?;
    if let Some(manifests) = &manifest.manifests {
        let architecture = host_architecture();
        let chosen: &Descriptor = choose_platform(manifests, architecture).ok_or_else(|| {
            StoreError::Invalid(format!(
                "no image for linux/{architecture} in the image index"
            ))
        })?;
        let by_digest = oci_reference.clone_with_digest(chosen.digest.clone());
        let (b, d) = client
            .pull_manifest_raw(&by_digest, &auth, MANIFEST_TYPES)
            .await
            .map_err(|e| describe(e, reference, authenticated))?;
        check_digest(&b, &chosen.digest, "platform manifest")?;
        (bytes, digest) = (b, d);
        manifest = parse_manifest(&bytes)?;
        if manifest.manifests.is_some() {
            return Err(StoreError::Invalid(
                "image index points to another index".to_string(),
            ));
        }
    }
    let (Some(config_descriptor), Some(layers)) = (manifest.config, manifest.layers) else {
        return Err(StoreError::Invalid(format!(
            "manifest {digest} has no config or no layers (media type {:?})",
            manifest.media_type
        )));
    };
    store.write_blob(&digest, &bytes)?;

    let config_digest = config_descriptor.digest.clone();
    let config_bytes = match store.read_blob(&config_digest) {
        Ok(b) => b,
        Err(_) => {
            let mut data = Vec::new();
            client
                .pull_blob(&oci_reference, config_digest.as_str(), &mut data)
                .await
                .map_err(|e| describe(e, reference, authenticated))?;
            store.write_blob(&config_digest, &data)?;
            data
        }
    };
    let (diff_ids, _) = parse_config(&config_bytes, &format!("config {config_digest}"))?;
    if diff_ids.len() != layers.len() {
        return Err(StoreError::Invalid(format!(
            "manifest {digest} has {} layers, its config lists {} diff IDs",
            layers.len(),
            diff_ids.len()
        )));
    }

    for (layer, diff_id) in layers.iter().zip(&diff_ids) {
        if store.layer_path(diff_id)?.is_dir() {
            continue;
        }
        let download = tempfile::NamedTempFile::new_in(store.tmp_dir())
            .map_err(|e| StoreError::io("creating a temporary download file", e))?;
        let file = tokio::fs::File::from_std(
            download
                .reopen()
                .map_err(|e| StoreError::io("opening the download file", e))?,
        );
        // pull_blob checks the digest as the bytes stream in.
        client
            .pull_blob(&oci_reference, layer.digest.as_str(), file)
            .await
            .map_err(|e| describe(e, reference, authenticated))?;
        let store_for_unpack = store.clone();
        let diff_id = diff_id.clone();
        let layer = layer.clone();
        tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            let what = format!("layer {}", layer.digest);
            ImageStore::verify_file(download.path(), &layer.digest, &what)?;
            let file = std::fs::File::open(download.path())
                .map_err(|e| StoreError::io(format!("opening {what}"), e))?;
            store_for_unpack.add_layer(&diff_id, file, &what)?;
            Ok(())
        })
        .await
        .expect("unpack task panicked")?;
    }

    let size = config_descriptor.size + layers.iter().map(|l| l.size).sum::<u64>();
    let entry = IndexEntry {
        manifest_digest: digest.clone(),
        config_digest,
        layers: diff_ids,
        size,
        repo_digest: Some(reference.with_digest(&digest)),
    };
    let store = store.clone();
    let key = reference.to_string();
    tokio::task::spawn_blocking(move || store.set_image(&key, entry))
        .await
        .expect("index task panicked")
}

fn check_digest(bytes: &[u8], digest: &str, what: &str) -> Result<(), StoreError> {
    let actual = sha256_digest(bytes);
    if actual != digest {
        return Err(StoreError::Invalid(format!(
            "{what} content has digest {actual}, the registry said {digest}"
        )));
    }
    Ok(())
}

fn parse_manifest(bytes: &[u8]) -> Result<ManifestOrIndex, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Invalid(format!("malformed manifest: {e}")))
}
