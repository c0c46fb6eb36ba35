//! Image references normalised the way containerd names them
//! (`busybox` → `docker.io/library/busybox:latest`), so the same image
//! written two ways is one entry in the store.

use crate::ImageError;

/// A parsed, normalised image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageReference {
    /// `docker.io`, `127.0.0.1:5000`, `localhost`.
    pub registry: String,
    /// `library/busybox`, `test/app`.
    pub repository: String,
    /// The tag, absent when the reference names a digest.
    pub tag: Option<String>,
    /// `sha256:…`, when the reference names one.
    pub digest: Option<String>,
}

impl ImageReference {
    /// Parses and normalises `image` as written in a pod spec or on the
    /// command line. A reference with both a tag and a digest keeps the
    /// digest only (the digest decides what is pulled, as in containerd).
    pub fn parse(image: &str) -> Result<ImageReference, ImageError> {
        let invalid = |why: &str| {
            ImageError::InvalidName(format!(
                "failed to parse image reference \"{image}\": {why}"
            ))
        };
        if image.is_empty() {
            return Err(invalid("the reference is empty"));
        }
        if image.trim() != image {
            return Err(invalid("the reference has leading or trailing whitespace"));
        }
        let parsed: oci_client::Reference = image
            .parse()
            .map_err(|e: oci_client::ParseError| invalid(&e.to_string().to_lowercase()))?;
        let digest = parsed.digest().map(str::to_string);
        let tag = if digest.is_some() {
            None
        } else {
            Some(parsed.tag().unwrap_or("latest").to_string())
        };
        if parsed.repository().chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid("repository name must be lowercase"));
        }
        if let Some(d) = &digest {
            if !d.starts_with("sha256:") {
                return Err(invalid("only sha256 digests are supported"));
            }
        }
        Ok(ImageReference {
            registry: parsed.registry().to_string(),
            repository: parsed.repository().to_string(),
            tag,
            digest,
        })
    }

    /// `registry/repository`, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The reference pinned to a manifest digest: `registry/repository@sha256:…`
    /// (what `containerStatuses[].imageID` shows).
    pub fn with_digest(&self, digest: &str) -> String {
        format!("{}@{digest}", self.name())
    }

    /// The reference as oci-client takes it (it maps `docker.io` to the
    /// host Docker Hub is served from).
    pub(crate) fn to_oci(&self) -> oci_client::Reference {
        match &self.digest {
            Some(d) => oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                d.clone(),
            ),
            None => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                self.tag.clone().unwrap_or_else(|| "latest".to_string()),
            ),
        }
    }
}

impl std::fmt::Display for ImageReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.digest, &self.tag) {
            (Some(d), _) => write!(f, "{}/{}@{d}", self.registry, self.repository),
            (None, Some(t)) => write!(f, "{}/{}:{t}", self.registry, self.repository),
            (None, None) => write!(f, "{}/{}", self.registry, self.repository),
        }
    }
}

/// Whether a registry is reached over plain HTTP: like containerd's default,
/// registries on loopback (`localhost`, `127.0.0.0/8`, `[::1]`) are; every
/// other registry is reached over HTTPS.
pub fn is_loopback_registry(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        // `[::1]:5000`, `127.0.0.1:5000`, `localhost:5000`; a bare `::1` is
        // not a valid registry name, so a colon always precedes a port here.
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host == "localhost" {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        let got = ImageReference::parse(input)
            .unwrap_or_else(|e| panic!("parsing {input:?} failed: {e}"));
        assert_eq!(got.to_string(), expected, "normalising {input:?}");
    }

    #[test]
    fn normalises_like_containerd() {
        check("busybox", "docker.io/library/busybox:latest");
        check("busybox:1.36", "docker.io/library/busybox:1.36");
        check("library/busybox", "docker.io/library/busybox:latest");
        check("docker.io/busybox", "docker.io/library/busybox:latest");
        check(
            "index.docker.io/library/busybox:1",
            "docker.io/library/busybox:1",
        );
        check("someone/app:v2", "docker.io/someone/app:v2");
        check(
            "127.0.0.1:5000/test/busybox:1",
            "127.0.0.1:5000/test/busybox:1",
        );
        check("localhost/app", "localhost/app:latest");
        check("localhost:5000/app", "localhost:5000/app:latest");
        check("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10");
        let digest = format!("sha256:{}", "a".repeat(64));
        check(
            &format!("busybox@{digest}"),
            &format!("docker.io/library/busybox@{digest}"),
        );
        check(
            &format!("busybox:1@{digest}"),
            &format!("docker.io/library/busybox@{digest}"),
        );
    }

    #[test]
    fn rejects_invalid_names() {
        for bad in [
            "",
            "UPPER/case",
            "busybox:",
            "busybox@sha256:abc",
            " busybox",
            "a b",
            "busybox:tag with space",
        ] {
            match ImageReference::parse(bad) {
                Err(ImageError::InvalidName(msg)) => {
                    assert!(
                        msg.contains("failed to parse image reference"),
                        "{bad:?}: {msg}"
                    )
                }
                other => panic!("{bad:?} should be an invalid name, got {other:?}"),
            }
        }
    }

    #[test]
    fn loopback_registries_use_plain_http() {
        for (registry, loopback) in [
            ("127.0.0.1:5000", true),
            ("127.1.2.3:80", true),
            ("localhost", true),
            ("localhost:5000", true),
            ("[::1]:5000", true),
            ("docker.io", false),
            ("10.0.0.1:5000", false),
            ("registry.k8s.io", false),
            ("localhost.example.com:5000", false),
        ] {
            assert_eq!(is_loopback_registry(registry), loopback, "{registry}");
        }
    }
}
