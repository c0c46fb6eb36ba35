//! Test helpers for this crate's and other crates' tests (feature
//! `testing`): build small images from busybox-static with umoci, and serve
//! them from a real docker-registry on a fresh loopback port.
//!
//! Needs `umoci`, `skopeo`, `docker-registry`, `zstd` and `busybox`
//! (Debian's busybox-static) on the PATH; scripts/install-deps installs
//! them.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs a command, panicking with its output if it fails.
pub fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| {
        panic!("running {command:?}: {e} (is it installed? see scripts/install-deps)")
    });
    if !output.status.success() {
        panic!(
            "{command:?} failed ({}):\nstdout: {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A docker-registry serving on `127.0.0.1:<fresh port>` from a temporary
/// directory; killed on drop.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub address: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// A registry anyone can pull from and push to.
    pub fn start() -> Registry {
        Self::start_inner(None)
    }

    /// A registry that requires HTTP basic auth as `username`/`password`
    /// (an htpasswd file with a bcrypt hash).
    pub fn start_with_auth(username: &str, password: &str) -> Registry {
        Self::start_inner(Some((username, password)))
    }

    fn start_inner(auth: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().expect("temp dir for the registry");
        let port = {
            let listener =
                std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
            listener.local_addr().unwrap().port()
        };
        let address = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {address}\n",
            dir.path().join("data").display()
        );
        if let Some((username, password)) = auth {
            let hash = bcrypt::hash(password, 4).expect("bcrypt hash");
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{username}:{hash}\n")).expect("writing htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: drover-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("writing the registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting docker-registry (apt-get install docker-registry)");
        let mut registry = Registry {
            address,
            child,
            _dir: dir,
        };
        let log = |r: &Registry| {
            std::fs::read_to_string(r._dir.path().join("registry.log")).unwrap_or_default()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Checked before connecting: if the port was taken meanwhile,
            // the registry exits and something else answers there.
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!(
                    "docker-registry exited ({status}) instead of serving on {}; its log:\n{}",
                    registry.address,
                    log(&registry)
                );
            }
            if TcpStream::connect(&registry.address).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                panic!(
                    "docker-registry did not listen on {} within 30 s; its log:\n{}",
                    registry.address,
                    log(&registry)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    /// Where the registry keeps blobs and manifests (to corrupt them in
    /// tests).
    pub fn storage_dir(&self) -> PathBuf {
        self._dir.path().join("data")
    }

    /// `127.0.0.1:PORT/<name>`.
    pub fn reference(&self, name: &str) -> String {
        format!("{}/{name}", self.address)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An OCI image layout built with umoci in a temporary directory.
pub struct ImageBuilder {
    dir: tempfile::TempDir,
    /// `<layout>:<tag>` as umoci and skopeo's `oci:` transport take it.
    image: String,
}

impl ImageBuilder {
    /// A one-layer image with busybox-static as /bin/busybox, /bin/sh and a
    /// few applets as symlinks to it, and `cmd` as its command.
    pub fn busybox(cmd: &[&str]) -> ImageBuilder {
        let dir = tempfile::tempdir().expect("temp dir for the image");
        let layout = dir.path().join("layout");
        let image = format!("{}:latest", layout.display());
        run(Command::new("umoci")
            .arg("init")
            .arg("--layout")
            .arg(&layout));
        run(Command::new("umoci").args(["new", "--image", &image]));
        let builder = ImageBuilder { dir, image };
        let rootfs = builder.staging("busybox");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::fs::copy(busybox_path(), rootfs.join("bin/busybox")).expect("copying busybox");
        for applet in ["sh", "ls", "cat", "echo", "sleep", "id", "env"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        std::fs::write(rootfs.join("etc/hostname"), "image\n").unwrap();
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        builder.insert(&rootfs, "/");
        let mut config = Command::new("umoci");
        config.args([
            "config",
            "--image",
            &builder.image,
            "--config.env",
            "PATH=/bin",
        ]);
        for arg in cmd {
            config.arg(format!("--config.cmd={arg}"));
        }
        run(&mut config);
        builder
    }

    /// A fresh empty directory to stage files for a layer in.
    pub fn staging(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join("staging").join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    /// Adds a layer with `source` at `target`.
    pub fn insert(&self, source: &Path, target: &str) {
        run(Command::new("umoci")
            .args(["insert", "--image", &self.image])
            .arg(source)
            .arg(target));
    }

    /// Adds a layer with `source` at `target`, hiding what lower layers
    /// have under `target` (an opaque directory).
    pub fn insert_opaque(&self, source: &Path, target: &str) {
        run(Command::new("umoci")
            .args(["insert", "--opaque", "--image", &self.image])
            .arg(source)
            .arg(target));
    }

    /// Adds a layer that deletes `target` (a whiteout).
    pub fn whiteout(&self, target: &str) {
        run(Command::new("umoci").args(["insert", "--whiteout", "--image", &self.image, target]));
    }

    /// Pushes the image to `reference` (`127.0.0.1:PORT/name:tag`) with
    /// skopeo over plain HTTP; `creds` is `user:password`.
    pub fn push(&self, reference: &str, creds: Option<&str>) {
        self.push_tag("latest", reference, creds);
    }

    /// Pushes the layout's `tag` (an image or an index, with everything it
    /// names) to `reference`.
    pub fn push_tag(&self, tag: &str, reference: &str, creds: Option<&str>) {
        let mut command = Command::new("skopeo");
        command.args(["copy", "--quiet", "--all", "--dest-tls-verify=false"]);
        if let Some(creds) = creds {
            command.args(["--dest-creds", creds]);
        }
        command
            .arg(format!("oci:{}:{tag}", self.layout().display()))
            .arg(format!("docker://{reference}"));
        run(&mut command);
    }

    fn layout(&self) -> PathBuf {
        self.dir.path().join("layout")
    }

    /// Adds tag `index_tag`: an image index (manifest list) naming this
    /// image for linux on this machine's architecture and, for linux on
    /// `other_architecture`, a copy whose command is `["wrong-platform"]`.
    pub fn add_index(&self, index_tag: &str, other_architecture: &str) {
        let other_tag = format!("other-{other_architecture}");
        let other = format!("{}:{other_tag}", self.layout().display());
        run(Command::new("umoci").args(["tag", "--image", &self.image, &other_tag]));
        run(Command::new("umoci").args([
            "config",
            "--image",
            &other,
            "--clear=config.cmd",
            "--config.cmd=wrong-platform",
        ]));
        let index_path = self.layout().join("index.json");
        let mut index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&index_path).unwrap())
                .expect("layout index.json");
        let entry = |tag: &str, architecture: &str| {
            let d = index["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
                .unwrap_or_else(|| panic!("tag {tag} in the layout"));
            serde_json::json!({
                "mediaType": d["mediaType"],
                "digest": d["digest"],
                "size": d["size"],
                "platform": {"architecture": architecture, "os": "linux"},
            })
        };
        let list = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                entry(&other_tag, other_architecture),
                entry("latest", crate::host_architecture()),
            ],
        });
        let bytes = serde_json::to_vec(&list).unwrap();
        let digest = crate::unpack::sha256_digest(&bytes);
        let hex = digest.trim_start_matches("sha256:");
        std::fs::write(self.layout().join("blobs/sha256").join(hex), &bytes).unwrap();
        index["manifests"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": digest,
                "size": bytes.len(),
                "annotations": {"org.opencontainers.image.ref.name": index_tag},
            }));
        std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    }

    /// Recompresses the layers of the `latest` tag with zstd (the `zstd`
    /// command), keeping their diff IDs: what registries serve for images
    /// built with `--compression-format zstd`.
    pub fn recompress_zstd(&self) {
        let layout = self.layout();
        let blob = |digest: &str| {
            layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:"))
        };
        let index_path = layout.join("index.json");
        let mut index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
        let entry = index["manifests"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "latest")
            .expect("tag latest");
        let mut manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(blob(entry["digest"].as_str().unwrap())).unwrap(),
        )
        .unwrap();
        for layer in manifest["layers"].as_array_mut().unwrap() {
            let gz = std::fs::File::open(blob(layer["digest"].as_str().unwrap())).unwrap();
            let tar = self.dir.path().join("layer.tar");
            let mut out = std::fs::File::create(&tar).unwrap();
            std::io::copy(&mut flate2::read::MultiGzDecoder::new(gz), &mut out).unwrap();
            let zst = self.dir.path().join("layer.tar.zst");
            run(Command::new("zstd")
                .args(["-q", "-f"])
                .arg(&tar)
                .arg("-o")
                .arg(&zst));
            let bytes = std::fs::read(&zst).unwrap();
            let digest = crate::unpack::sha256_digest(&bytes);
            std::fs::write(blob(&digest), &bytes).unwrap();
            layer["mediaType"] = "application/vnd.oci.image.layer.v1.tar+zstd".into();
            layer["digest"] = digest.into();
            layer["size"] = bytes.len().into();
        }
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let digest = crate::unpack::sha256_digest(&bytes);
        std::fs::write(blob(&digest), &bytes).unwrap();
        entry["digest"] = digest.into();
        entry["size"] = bytes.len().into();
        std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    }

    /// Writes the image as an OCI archive named `name` (`busybox:1`).
    pub fn save_oci_archive(&self, path: &Path, name: &str) {
        run(Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(format!("oci:{}", self.image))
            .arg(format!("oci-archive:{}:{name}", path.display())));
    }

    /// Writes the image as a docker-archive (what `docker save` makes)
    /// tagged `name`.
    pub fn save_docker_archive(&self, path: &Path, name: &str) {
        run(Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(format!("oci:{}", self.image))
            .arg(format!("docker-archive:{}:{name}", path.display())));
    }
}

/// The static busybox binary (Debian's busybox-static installs it as
/// /bin/busybox).
pub fn busybox_path() -> PathBuf {
    for candidate in ["/usr/bin/busybox", "/bin/busybox"] {
        if Path::new(candidate).is_file() {
            return PathBuf::from(candidate);
        }
    }
    panic!("busybox not found: apt-get install busybox-static");
}
