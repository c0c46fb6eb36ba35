//! drover's OCI image store: images pulled from registries or imported
//! from archives, each layer unpacked once (content-addressed) so the OCI
//! runtime can stack them as overlayfs lower directories.
//!
//! The seam the OCI runtime uses is [`ImageService`]; [`ImageStore`]
//! implements it (on disk under [`store_dir`]), tests may implement it over
//! a directory.

use std::path::PathBuf;
use std::time::Duration;

mod import;
mod pull;
pub mod reference;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod unpack;

pub use reference::ImageReference;
pub use store::{host_architecture, store_dir, ImageStore, ImageSummary, StoreError};

/// `imagePullPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// Credentials for one registry (from an `imagePullSecrets` Secret of type
/// `kubernetes.io/dockerconfigjson` or `kubernetes.io/dockercfg`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryCredential {
    /// The registry host (and port), e.g. `127.0.0.1:5000`.
    pub registry: String,
    pub username: String,
    pub password: String,
}

/// What a container asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRequest {
    /// The container's `image`, as written (`busybox`, `127.0.0.1:5000/app:1`,
    /// `repo@sha256:…`).
    pub image: String,
    pub pull_policy: PullPolicy,
    pub credentials: Vec<RegistryCredential>,
}

/// The parts of the image's config a container starts from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// `user`, `user:group`, `uid` or `uid:gid`.
    pub user: Option<String>,
}

/// An image ready to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The normalised reference (`docker.io/library/busybox:latest`).
    pub reference: String,
    /// The image ID (`sha256:` of the config blob), as `containerStatuses[].imageID`
    /// shows it (with the repo digest where known: `repo@sha256:…`).
    pub image_id: String,
    /// Unpacked layer directories, lowest first (overlayfs wants them
    /// reversed in `lowerdir`). Whiteouts are in overlayfs form.
    pub layers: Vec<PathBuf>,
    pub config: ImageConfig,
    /// Bytes, as `drover image ls` counts them.
    pub size: u64,
}

/// What [`ImageService::ensure_reporting`] did to make an image present
/// (the kubelet's image events are made from it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullProgress {
    /// A pull begins.
    Pulling,
    /// The pull is done: `pulled` is the pull itself, `waited` with the
    /// wait for another pull of the same image before it.
    Pulled {
        pulled: Duration,
        waited: Duration,
        size: u64,
    },
    /// The image was present; nothing was pulled.
    Present,
}

/// Why an image is not available; the message is what the user sees.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    /// `InvalidImageName`.
    #[error("{0}")]
    InvalidName(String),
    /// `ErrImageNeverPull`: policy Never and not present.
    #[error("container image \"{0}\" is not present with pull policy of Never")]
    NeverPull(String),
    /// `ErrImagePull`, with the registry's message.
    #[error("{0}")]
    Pull(String),
}

impl ImageError {
    /// The container waiting reason, as the kubelet names it.
    pub fn reason(&self) -> &'static str {
        match self {
            ImageError::InvalidName(_) => "InvalidImageName",
            ImageError::NeverPull(_) => "ErrImageNeverPull",
            ImageError::Pull(_) => "ErrImagePull",
        }
    }
}

/// What the OCI runtime needs of images.
#[async_trait::async_trait]
pub trait ImageService: Send + Sync + 'static {
    /// Makes the image present as `request.pull_policy` says (pulling it if
    /// needed) and returns it, telling `progress` what it does.
    async fn ensure_reporting(
        &self,
        request: &ImageRequest,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<ResolvedImage, ImageError>;

    /// [`ensure_reporting`](Self::ensure_reporting), unobserved.
    async fn ensure(&self, request: &ImageRequest) -> Result<ResolvedImage, ImageError> {
        self.ensure_reporting(request, &|_| {}).await
    }
}
