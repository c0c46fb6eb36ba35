//! Pod volumes, as the kubelet's volume manager makes them: a pure plan
//! (which objects a pod's volumes read, and from them which directories,
//! files and host paths each volume is) and a thin writer that makes the
//! plan real under `<root>/<pod uid>/volumes/<plugin>/<name>` — files
//! written atomically the way the kubelet's AtomicWriter does it, tmpfs for
//! `emptyDir.medium: Memory` — and resolves `subPath`s without ever
//! leaving the volume (the CVE-2021-25741 class).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, KeyToPath, Pod, ResourceFieldSelector, Volume,
};
use serde_json::Value;

use crate::runtime::Mount;

pub const PLUGIN_EMPTY_DIR: &str = "kubernetes.io~empty-dir";
pub const PLUGIN_CONFIG_MAP: &str = "kubernetes.io~configmap";
pub const PLUGIN_SECRET: &str = "kubernetes.io~secret";
pub const PLUGIN_DOWNWARD_API: &str = "kubernetes.io~downward-api";
pub const PLUGIN_PROJECTED: &str = "kubernetes.io~projected";

/// The `defaultMode` of ConfigMap, Secret, downward-API and projected
/// volumes when the pod does not say (0644).
pub const DEFAULT_MODE: i32 = 0o644;

/// The API objects a pod's volumes read, fetched by the agent (`None`:
/// not found).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Objects {
    pub config_maps: BTreeMap<String, Option<Value>>,
    pub secrets: BTreeMap<String, Option<Value>>,
    pub claims: BTreeMap<String, Option<Value>>,
    pub persistent_volumes: BTreeMap<String, Option<Value>>,
    /// Service account tokens by what was asked (the TokenRequest's
    /// answer, or why there is none).
    pub tokens: BTreeMap<TokenAsk, Result<String, String>>,
}

/// A projected `serviceAccountToken`: for which audience (empty: the API
/// server's) and how long.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenAsk {
    pub audience: String,
    pub expiration_seconds: i64,
}

/// `serviceAccountToken.expirationSeconds` when the pod does not say.
pub const DEFAULT_TOKEN_SECONDS: i64 = 3600;

impl TokenAsk {
    fn of(p: &k8s_openapi::api::core::v1::ServiceAccountTokenProjection) -> TokenAsk {
        TokenAsk {
            audience: p.audience.clone().unwrap_or_default(),
            expiration_seconds: p.expiration_seconds.unwrap_or(DEFAULT_TOKEN_SECONDS),
        }
    }
}

/// Which objects to fetch for a pod (same namespace as the pod; PVs after
/// the claims, see [`persistent_volumes_needed`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Needed {
    pub config_maps: BTreeSet<String>,
    pub secrets: BTreeSet<String>,
    pub claims: BTreeSet<String>,
    pub tokens: BTreeSet<TokenAsk>,
}

pub fn needed(pod: &Pod) -> Needed {
    let mut out = Needed::default();
    for v in volumes(pod) {
        if let Some(c) = &v.config_map {
            out.config_maps.insert(c.name.clone());
        }
        if let Some(s) = &v.secret {
            out.secrets
                .insert(s.secret_name.clone().unwrap_or_default());
        }
        if let Some(c) = &v.persistent_volume_claim {
            out.claims.insert(c.claim_name.clone());
        }
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(c) = &source.config_map {
                out.config_maps.insert(c.name.clone());
            }
            if let Some(s) = &source.secret {
                out.secrets.insert(s.name.clone());
            }
            if let Some(t) = &source.service_account_token {
                out.tokens.insert(TokenAsk::of(t));
            }
        }
    }
    out
}

/// The PersistentVolumes the pod's bound claims name.
pub fn persistent_volumes_needed(objects: &Objects) -> BTreeSet<String> {
    objects
        .claims
        .values()
        .flatten()
        .filter_map(|c| c.pointer("/spec/volumeName")?.as_str())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

fn volumes(pod: &Pod) -> &[Volume] {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default()
}

/// One file of a ConfigMap, Secret, downward-API or projected volume,
/// relative to the volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilePlan {
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A directory of the pod; `tmpfs` (with a size in bytes, `None` for
    /// tmpfs' default) for `medium: Memory`.
    EmptyDir { tmpfs: Option<Option<i64>> },
    /// Files written atomically; rewritten when the objects change.
    Files(Vec<FilePlan>),
    /// A path of the node (`hostPath`, or a PersistentVolume's `hostPath`
    /// or `local.path`), checked against `kind` (`hostPath.type`).
    Host { path: PathBuf, kind: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumePlan {
    pub name: String,
    pub plugin: &'static str,
    pub source: Source,
    /// Every mount of it is read-only (a claim with `readOnly: true`).
    pub read_only: bool,
}

/// Facts about the node a downward-API `resourceFieldRef` falls back to
/// (a container without a limit gets the node's allocatable).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeResources {
    pub cpu_milli: i64,
    pub memory_bytes: i64,
}

/// Plans every volume of the pod; an error is the kubelet's message after
/// `MountVolume.SetUp failed for volume "x" : `.
pub fn plan(
    pod: &Pod,
    objects: &Objects,
    node: NodeResources,
) -> Vec<(String, Result<VolumePlan, String>)> {
    volumes(pod)
        .iter()
        .map(|v| (v.name.clone(), plan_one(pod, v, objects, node)))
        .collect()
}

fn plan_one(
    pod: &Pod,
    v: &Volume,
    objects: &Objects,
    node: NodeResources,
) -> Result<VolumePlan, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    // ConfigMap, Secret, downward-API and projected volumes are always
    // mounted read-only, as the kubelet does since 1.10.
    let volume = |plugin, source: Source| VolumePlan {
        name: v.name.clone(),
        plugin,
        read_only: matches!(source, Source::Files(_)),
        source,
    };
    if let Some(e) = &v.empty_dir {
        let tmpfs = (e.medium.as_deref() == Some("Memory")).then(|| {
            e.size_limit
                .as_ref()
                .and_then(|q| scheduler::quantity::parse_value(&q.0).ok())
                .or_else(|| pod_memory_limit(pod))
        });
        return Ok(volume(PLUGIN_EMPTY_DIR, Source::EmptyDir { tmpfs }));
    }
    if let Some(c) = &v.config_map {
        let files = object_files(
            false,
            &c.name,
            objects.config_maps.get(&c.name).cloned().flatten(),
            c.items.as_deref(),
            c.default_mode.unwrap_or(DEFAULT_MODE),
            c.optional.unwrap_or(false),
        )?;
        return Ok(volume(PLUGIN_CONFIG_MAP, Source::Files(files)));
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let files = object_files(
            true,
            &name,
            objects.secrets.get(&name).cloned().flatten(),
            s.items.as_deref(),
            s.default_mode.unwrap_or(DEFAULT_MODE),
            s.optional.unwrap_or(false),
        )?;
        return Ok(volume(PLUGIN_SECRET, Source::Files(files)));
    }
    if let Some(d) = &v.downward_api {
        let files = downward_files(
            pod,
            d.items.as_deref().unwrap_or_default(),
            d.default_mode.unwrap_or(DEFAULT_MODE),
            node,
        )?;
        return Ok(volume(PLUGIN_DOWNWARD_API, Source::Files(files)));
    }
    if let Some(p) = &v.projected {
        let mode = p.default_mode.unwrap_or(DEFAULT_MODE);
        let mut files = Vec::new();
        for source in p.sources.iter().flatten() {
            if let Some(c) = &source.config_map {
                files.extend(object_files(
                    false,
                    &c.name,
                    objects.config_maps.get(&c.name).cloned().flatten(),
                    c.items.as_deref(),
                    mode,
                    c.optional.unwrap_or(false),
                )?);
            }
            if let Some(s) = &source.secret {
                files.extend(object_files(
                    true,
                    &s.name,
                    objects.secrets.get(&s.name).cloned().flatten(),
                    s.items.as_deref(),
                    mode,
                    s.optional.unwrap_or(false),
                )?);
            }
            if let Some(d) = &source.downward_api {
                files.extend(downward_files(
                    pod,
                    d.items.as_deref().unwrap_or_default(),
                    mode,
                    node,
                )?);
            }
            if let Some(t) = &source.service_account_token {
                match objects.tokens.get(&TokenAsk::of(t)) {
                    Some(Ok(token)) => files.push(FilePlan {
                        path: t.path.clone(),
                        data: token.clone().into_bytes(),
                        mode: mode as u32,
                    }),
                    Some(Err(why)) => return Err(format!("failed to fetch token: {why}")),
                    None => return Err("failed to fetch token: not requested".into()),
                }
            }
        }
        return Ok(volume(PLUGIN_PROJECTED, Source::Files(files)));
    }
    if let Some(h) = &v.host_path {
        return Ok(volume(
            "kubernetes.io~host-path",
            Source::Host {
                path: PathBuf::from(&h.path),
                kind: h.type_.clone().unwrap_or_default(),
            },
        ));
    }
    if let Some(c) = &v.persistent_volume_claim {
        let claim = objects
            .claims
            .get(&c.claim_name)
            .cloned()
            .flatten()
            .ok_or_else(|| format!("persistentvolumeclaim \"{}\" not found", c.claim_name))?;
        let phase = claim
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("Pending");
        let volume_name = claim
            .pointer("/spec/volumeName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if phase != "Bound" || volume_name.is_empty() {
            return Err(format!(
                "PVC {namespace}/{} has non-bound phase (\"{phase}\") or empty pvc.Spec.VolumeName (\"{volume_name}\")",
                c.claim_name
            ));
        }
        let pv = objects
            .persistent_volumes
            .get(volume_name)
            .cloned()
            .flatten()
            .ok_or_else(|| format!("persistentvolume \"{volume_name}\" not found"))?;
        let (path, kind) = if let Some(p) =
            pv.pointer("/spec/hostPath/path").and_then(Value::as_str)
        {
            let kind = pv
                .pointer("/spec/hostPath/type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            (p, kind)
        } else if let Some(p) = pv.pointer("/spec/local/path").and_then(Value::as_str) {
            // A local volume must exist; it is never created by the kubelet.
            (p, "Directory")
        } else {
            return Err(format!(
                "persistentvolume \"{volume_name}\" has neither hostPath nor local: drover mounts only those"
            ));
        };
        return Ok(VolumePlan {
            name: v.name.clone(),
            plugin: "kubernetes.io~host-path",
            source: Source::Host {
                path: PathBuf::from(path),
                kind: kind.to_string(),
            },
            read_only: c.read_only.unwrap_or(false),
        });
    }
    Err("unsupported volume type (drover supports emptyDir, configMap, secret, downwardAPI, projected, hostPath and persistentVolumeClaim)".into())
}

/// The pod's memory limit (the size of a memory-backed emptyDir without
/// `sizeLimit`), if every container has one.
fn pod_memory_limit(pod: &Pod) -> Option<i64> {
    let spec = pod.spec.as_ref()?;
    let mut total = 0;
    for c in &spec.containers {
        let q = c.resources.as_ref()?.limits.as_ref()?.get("memory")?;
        total += scheduler::quantity::parse_value(&q.0).ok()?;
    }
    Some(total)
}

fn object_files(
    secret: bool,
    name: &str,
    object: Option<Value>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
) -> Result<Vec<FilePlan>, String> {
    let kind = if secret { "secret" } else { "configmap" };
    let Some(object) = object else {
        return if optional {
            Ok(Vec::new())
        } else {
            Err(format!("{kind} \"{name}\" not found"))
        };
    };
    let data = object_data(&object, secret);
    let mode = |m: Option<i32>| (m.unwrap_or(default_mode) & 0o777) as u32;
    match items {
        None => Ok(data
            .into_iter()
            .map(|(k, v)| FilePlan {
                path: k,
                data: v,
                mode: mode(None),
            })
            .collect()),
        Some(items) => {
            let mut out = Vec::new();
            for item in items {
                match data.get(&item.key) {
                    Some(v) => out.push(FilePlan {
                        path: item.path.clone(),
                        data: v.clone(),
                        mode: mode(item.mode),
                    }),
                    None if optional => {}
                    None if secret => {
                        return Err(format!("references non-existent secret key: {}", item.key))
                    }
                    None => {
                        return Err(format!(
                            "configmap references non-existent config key: {}",
                            item.key
                        ))
                    }
                }
            }
            Ok(out)
        }
    }
}

/// Keys → bytes: a Secret's `data` base64-decoded, a ConfigMap's `data`
/// and `binaryData`.
fn object_data(object: &Value, secret: bool) -> BTreeMap<String, Vec<u8>> {
    use base64::Engine;
    let decode = |v: &Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default().trim())
            .unwrap_or_default()
    };
    let mut out = BTreeMap::new();
    if let Some(map) = object.get("data").and_then(Value::as_object) {
        for (k, v) in map {
            let bytes = if secret {
                decode(v)
            } else {
                v.as_str().unwrap_or_default().as_bytes().to_vec()
            };
            out.insert(k.clone(), bytes);
        }
    }
    if let (false, Some(map)) = (secret, object.get("binaryData").and_then(Value::as_object)) {
        for (k, v) in map {
            out.insert(k.clone(), decode(v));
        }
    }
    if secret {
        // stringData is folded into data by the API server; read it anyway
        // for objects written around it.
        if let Some(map) = object.get("stringData").and_then(Value::as_object) {
            for (k, v) in map {
                out.insert(
                    k.clone(),
                    v.as_str().unwrap_or_default().as_bytes().to_vec(),
                );
            }
        }
    }
    out
}

fn downward_files(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: i32,
    node: NodeResources,
) -> Result<Vec<FilePlan>, String> {
    let mut out = Vec::new();
    for item in items {
        let text = if let Some(f) = &item.field_ref {
            field_text(pod, &f.field_path)?
        } else if let Some(r) = &item.resource_field_ref {
            resource_text(pod, r, node)?
        } else {
            continue;
        };
        out.push(FilePlan {
            path: item.path.clone(),
            data: text.into_bytes(),
            mode: (item.mode.unwrap_or(default_mode) & 0o777) as u32,
        });
    }
    Ok(out)
}

/// `fieldpath.FormatMap`: sorted `key="value"` lines.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn field_text(pod: &Pod, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let subscript = |prefix: &str| {
        path.strip_prefix(prefix).map(|k| {
            k.trim_start_matches("['")
                .trim_end_matches("']")
                .to_string()
        })
    };
    Ok(match path {
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        _ => {
            if let Some(k) = subscript("metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|m| m.get(&k))
                    .cloned()
                    .unwrap_or_default()
            } else if let Some(k) = subscript("metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|m| m.get(&k))
                    .cloned()
                    .unwrap_or_default()
            } else {
                return Err(format!(
                    "unsupported fieldPath {path:?} in a downwardAPI volume"
                ));
            }
        }
    })
}

/// `resourceFieldRef`: the container's limit or request divided by
/// `divisor` (rounded up); a missing limit is the node's allocatable.
fn resource_text(
    pod: &Pod,
    r: &ResourceFieldSelector,
    node: NodeResources,
) -> Result<String, String> {
    let container: Option<&Container> = pod.spec.as_ref().and_then(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .find(|c| Some(&c.name) == r.container_name.as_ref())
    });
    let Some(container) = container else {
        return Err(format!(
            "container {:?} in resourceFieldRef not found",
            r.container_name.clone().unwrap_or_default()
        ));
    };
    let (map, key) = r
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported resource {:?}", r.resource))?;
    let resources = container.resources.as_ref();
    let list = match map {
        "limits" => resources.and_then(|x| x.limits.as_ref()),
        "requests" => resources.and_then(|x| x.requests.as_ref()),
        _ => return Err(format!("unsupported resource {:?}", r.resource)),
    };
    let quantity = list.and_then(|l| l.get(key)).map(|q| q.0.clone());
    let divisor = r.divisor.as_ref().map(|d| d.0.clone());
    let div_up = |a: i64, b: i64| if b <= 0 { a } else { (a + b - 1) / b };
    match key {
        "cpu" => {
            let milli = match quantity {
                Some(q) => scheduler::quantity::parse_milli_value(&q).map_err(|e| e.to_string())?,
                None if map == "limits" => node.cpu_milli,
                None => 0,
            };
            let divisor = divisor
                .map(|d| scheduler::quantity::parse_milli_value(&d).map_err(|e| e.to_string()))
                .transpose()?
                .unwrap_or(1000);
            Ok(div_up(milli, divisor).to_string())
        }
        "memory" | "ephemeral-storage" => {
            let bytes = match quantity {
                Some(q) => scheduler::quantity::parse_value(&q).map_err(|e| e.to_string())?,
                None if map == "limits" && key == "memory" => node.memory_bytes,
                None => 0,
            };
            let divisor = divisor
                .map(|d| scheduler::quantity::parse_value(&d).map_err(|e| e.to_string()))
                .transpose()?
                .unwrap_or(1);
            Ok(div_up(bytes, divisor).to_string())
        }
        _ => Err(format!("unsupported resource {:?}", r.resource)),
    }
}

/// A volume made on the node: where it is and how containers mount it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetUpVolume {
    pub path: PathBuf,
    pub read_only: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {source}", path.display())]
pub struct VolumeIoError {
    what: &'static str,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> VolumeIoError {
    let path = path.to_path_buf();
    move |source| VolumeIoError { what, path, source }
}

/// Makes planned volumes real under `root` (the agent's
/// `DATA/agent/volumes`): `<root>/<uid>/volumes/<plugin>/<name>`, subPath
/// bind mounts under `<root>/<uid>/volume-subpaths/<volume>/<container>/<i>`.
#[derive(Clone, Debug)]
pub struct VolumeManager {
    root: PathBuf,
}

impl VolumeManager {
    /// The root holds every pod's secrets and service account tokens, so
    /// it is made (or tightened to) 0750, as the kubelet keeps
    /// `/var/lib/kubelet/pods`: containers reach their volumes through
    /// their bind mounts, and no other user of the node can read them here.
    pub fn new(root: PathBuf) -> VolumeManager {
        if let Err(e) = std::fs::create_dir_all(&root)
            .and_then(|()| std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o750)))
        {
            tracing::warn!("volumes: making {} private: {e}", root.display());
        }
        VolumeManager { root }
    }

    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root.join(uid)
    }

    /// The uids with volume state on this node (to clean up pods gone
    /// from the API after a restart).
    pub fn pods(&self) -> Vec<String> {
        std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect()
    }

    /// Sets up (or refreshes) one planned volume. Idempotent: an existing
    /// directory or tmpfs is re-adopted, unchanged files are not rewritten.
    pub fn set_up(&self, uid: &str, plan: &VolumePlan) -> Result<SetUpVolume, String> {
        let dir = self
            .pod_dir(uid)
            .join("volumes")
            .join(plan.plugin)
            .join(&plan.name);
        let path = match &plan.source {
            Source::Host { path, kind } => {
                check_host_path(path, kind)?;
                path.clone()
            }
            Source::EmptyDir { tmpfs } => {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("creating {}: {e}", dir.display()))?;
                if let Some(size) = tmpfs {
                    if !is_mount_point(&dir) {
                        let size = size.map(|s| format!("size={s}"));
                        mount_tmpfs(&dir, false, size.as_deref())?;
                    }
                }
                // emptyDir is world-writable, as the kubelet makes it.
                let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777));
                dir
            }
            Source::Files(files) => {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("creating {}: {e}", dir.display()))?;
                if memory_backed(plan.plugin) && !is_tmpfs(&dir) {
                    mount_tmpfs(&dir, true, Some("mode=0755"))?;
                }
                write_atomically(&dir, files, jiff::Timestamp::now()).map_err(|e| e.to_string())?;
                dir
            }
        };
        Ok(SetUpVolume {
            path,
            read_only: plan.read_only,
        })
    }

    /// The container's mounts: each `volumeMount` with its `subPath` (or
    /// `subPathExpr` expanded from `env`) resolved inside the volume and
    /// bind-mounted by file descriptor under `volume-subpaths/`, so the
    /// runtime mounts a path nobody can redirect any more.
    pub fn mounts(
        &self,
        uid: &str,
        container: &Container,
        env: &[(String, String)],
        volumes: &BTreeMap<String, SetUpVolume>,
    ) -> Result<Vec<Mount>, String> {
        let vars: BTreeMap<&str, &str> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut out = Vec::new();
        for (i, m) in container.volume_mounts.iter().flatten().enumerate() {
            let Some(volume) = volumes.get(&m.name) else {
                return Err(format!(
                    "volume {:?} of volumeMount {:?} is not set up",
                    m.name, m.name
                ));
            };
            let sub_path = match (&m.sub_path, &m.sub_path_expr) {
                (Some(s), _) if !s.is_empty() => Some(s.clone()),
                (_, Some(e)) if !e.is_empty() => Some(crate::agent::expand(e, &vars)),
                _ => None,
            };
            let read_only = m.read_only.unwrap_or(false) || volume.read_only;
            let (source, is_file) = match sub_path {
                None => (volume.path.clone(), volume.path.is_file()),
                Some(sub) => {
                    let target = self
                        .pod_dir(uid)
                        .join("volume-subpaths")
                        .join(&m.name)
                        .join(&container.name)
                        .join(i.to_string());
                    let is_file = bind_sub_path(&volume.path, &sub, &target).map_err(|reason| {
                        format!(
                            "failed to prepare subPath for volumeMount {:?} of container {:?}: {reason}",
                            m.name, container.name
                        )
                    })?;
                    (target, is_file)
                }
            };
            out.push(Mount {
                source,
                destination: PathBuf::from(&m.mount_path),
                read_only,
                is_file,
            });
        }
        Ok(out)
    }

    /// Unmounts everything of the pod (tmpfs, subPath binds) and deletes
    /// its volume directories. hostPath and PersistentVolume data are never
    /// below the pod directory, so they stay. Refuses to delete anything
    /// while a mount below is left (deleting through a bind mount would
    /// delete the data it shows).
    pub fn tear_down(&self, uid: &str) -> Result<(), String> {
        let dir = self.pod_dir(uid);
        if !dir.exists() {
            return Ok(());
        }
        unmount_below(&dir)?;
        std::fs::remove_dir_all(&dir).map_err(|e| format!("removing {}: {e}", dir.display()))
    }
}

/// Unmounts every mount at or below `dir`, deepest first. The mount table
/// is read once (it is long on a busy node: a few mounts per pod); whether
/// each listed mount point is gone is then asked of the path itself.
pub fn unmount_below(dir: &Path) -> Result<(), String> {
    let mut left = mounts_below(dir);
    left.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    // A path may hold stacked mounts: unmount until it holds none.
    for _ in 0..8 {
        for m in &left {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
        left.retain(|m| is_mount_point(m));
        if left.is_empty() {
            return Ok(());
        }
    }
    Err(format!(
        "mounts left below {}: {}",
        dir.display(),
        left.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// Mount points at or below `dir`, from `/proc/self/mountinfo`.
pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(&dir))
        .collect()
}

/// Whether `dir` is the root of a mount: asked of the path with `statx`
/// (`STATX_ATTR_MOUNT_ROOT`, Linux 5.8), which also sees bind mounts of
/// the same filesystem, without reading the whole mount table; from
/// `/proc/self/mountinfo` where the kernel does not say.
pub fn is_mount_point(dir: &Path) -> bool {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    match statx_mount_root(&dir) {
        Some(root) => root,
        None => mounts_below(&dir).contains(&dir),
    }
}

/// `Some(whether path is a mount root)`, or `None` when statx cannot say
/// (an old kernel, or the path cannot be looked up).
fn statx_mount_root(path: &Path) -> Option<bool> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statx fills the zeroed struct we pass; the path is a valid
    // NUL-terminated string for the duration of the call.
    let mut buf: libc::statx = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT,
            0,
            &mut buf,
        )
    };
    let attr = libc::STATX_ATTR_MOUNT_ROOT as u64;
    (rc == 0 && buf.stx_attributes_mask & attr != 0).then_some(buf.stx_attributes & attr != 0)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Secret and projected volumes (which hold service account tokens) live
/// in memory, a tmpfs per volume, as the kubelet keeps them: their contents
/// never reach the node's disk. It is also the fast way here: a pod's token
/// volume is a dozen new files and links, and on a busy node's ext4 making
/// them took ≈4 ms of a pod's start (inode allocation skipping the inodes
/// of recently deleted pods), against ≈0.1 ms for a mount and the files in
/// memory.
pub fn memory_backed(plugin: &str) -> bool {
    plugin == PLUGIN_SECRET || plugin == PLUGIN_PROJECTED
}

/// Whether `dir` is on a tmpfs (its own, or one it is below).
fn is_tmpfs(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

/// Mounts a tmpfs on `dir` (never setuid or device files; `noexec` for
/// volumes that hold only data) with mount options `data`.
fn mount_tmpfs(dir: &Path, noexec: bool, data: Option<&str>) -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if noexec {
        flags |= MsFlags::MS_NOEXEC;
    }
    mount(Some("tmpfs"), dir, Some("tmpfs"), flags, data)
        .map_err(|e| format!("mounting tmpfs on {}: {e}", dir.display()))
}

/// The kubelet's hostPath type checks (`checkTypeInternal`); `""` and
/// `DirectoryOrCreate` make a missing directory, `FileOrCreate` a missing
/// file.
pub fn check_host_path(path: &Path, kind: &str) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let p = path.display();
    let meta = std::fs::metadata(path);
    let exists = meta.is_ok();
    let ty = meta.as_ref().ok().map(|m| m.file_type());
    let fail = |what: &str| Err(format!("hostPath type check failed: {p} is not {what}"));
    match kind {
        "" | "DirectoryOrCreate" if !exists => std::fs::create_dir_all(path)
            .and_then(|()| {
                if kind == "DirectoryOrCreate" {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                } else {
                    Ok(())
                }
            })
            .map_err(|e| format!("creating hostPath directory {p}: {e}")),
        "" => Ok(()),
        "DirectoryOrCreate" | "Directory" => {
            if ty.is_some_and(|t| t.is_dir()) {
                Ok(())
            } else {
                fail("a directory")
            }
        }
        "FileOrCreate" if !exists => {
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|f| f.set_permissions(std::fs::Permissions::from_mode(0o644)))
                .map_err(|e| format!("creating hostPath file {p}: {e}"))
        }
        "FileOrCreate" | "File" => {
            if ty.is_some_and(|t| t.is_file()) {
                Ok(())
            } else {
                fail("a file")
            }
        }
        "Socket" => {
            if ty.is_some_and(|t| t.is_socket()) {
                Ok(())
            } else {
                fail("a socket file")
            }
        }
        "CharDevice" => {
            if ty.is_some_and(|t| t.is_char_device()) {
                Ok(())
            } else {
                fail("a character device")
            }
        }
        "BlockDevice" => {
            if ty.is_some_and(|t| t.is_block_device()) {
                Ok(())
            } else {
                fail("a block device")
            }
        }
        other => Err(format!("{other} is an invalid volume type")),
    }
}

/// The kubelet's AtomicWriter: the payload goes into a fresh
/// `..<timestamp>` directory, `..data` is switched to it by renaming a new
/// symlink over it, and each top-level name the user sees is a symlink
/// through `..data` — a reader sees the old or the new set, never a mix.
/// Nothing is written when the payload is unchanged.
pub fn write_atomically(
    dir: &Path,
    files: &[FilePlan],
    now: jiff::Timestamp,
) -> Result<bool, VolumeIoError> {
    // The API refuses such paths; this guards the node against an object
    // stored before that check (or written around it).
    for f in files {
        let unsafe_path = f.path.is_empty()
            || f.path.starts_with('/')
            || f.path.starts_with("..")
            || f.path.split('/').any(|seg| seg == "..");
        if unsafe_path {
            return Err(VolumeIoError {
                what: "refusing to write outside the volume",
                path: PathBuf::from(&f.path),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "the path must be relative and must not contain '..'",
                ),
            });
        }
    }
    let data_link = dir.join("..data");
    let current = std::fs::read_link(&data_link).ok();
    if let Some(current) = &current {
        if payload_matches(&dir.join(current), files) {
            return Ok(false);
        }
    }
    let stamp = now.strftime("..%Y_%m_%d_%H_%M_%S.%9f").to_string();
    let ts_dir = dir.join(&stamp);
    std::fs::create_dir(&ts_dir).map_err(io_err("creating", &ts_dir))?;
    let _ = std::fs::set_permissions(&ts_dir, std::fs::Permissions::from_mode(0o755));
    for f in files {
        let path = ts_dir.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        }
        std::fs::write(&path, &f.data).map_err(io_err("writing", &path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))
            .map_err(io_err("setting the mode of", &path))?;
    }
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    symlink(&stamp, &tmp_link).map_err(io_err("linking", &tmp_link))?;
    std::fs::rename(&tmp_link, &data_link).map_err(io_err("renaming onto", &data_link))?;
    // User-visible names: the first component of every path.
    let wanted: BTreeSet<String> = files
        .iter()
        .filter_map(|f| {
            f.path
                .split('/')
                .find(|c| !c.is_empty())
                .map(str::to_string)
        })
        .collect();
    for name in &wanted {
        let link = dir.join(name);
        if std::fs::read_link(&link).ok().as_deref() != Some(Path::new(&format!("..data/{name}"))) {
            let tmp = dir.join(format!("..{name}.tmp"));
            let _ = std::fs::remove_file(&tmp);
            symlink(format!("..data/{name}"), &tmp).map_err(io_err("linking", &tmp))?;
            std::fs::rename(&tmp, &link).map_err(io_err("renaming onto", &link))?;
        }
    }
    for entry in std::fs::read_dir(dir)
        .map_err(io_err("reading", dir))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") {
            if name != "..data" && name != stamp {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        } else if !wanted.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(true)
}

/// True if `dir` holds exactly `files` (content and mode).
fn payload_matches(dir: &Path, files: &[FilePlan]) -> bool {
    let mut count = 0usize;
    fn walk(dir: &Path, count: &mut usize) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&e.path(), count);
            } else {
                *count += 1;
            }
        }
    }
    walk(dir, &mut count);
    count == files.len()
        && files.iter().all(|f| {
            let path = dir.join(&f.path);
            std::fs::read(&path).is_ok_and(|d| d == f.data)
                && std::fs::metadata(&path).is_ok_and(|m| m.permissions().mode() & 0o777 == f.mode)
        })
}

/// Opens `sub` below `root` one component at a time with `O_PATH |
/// O_NOFOLLOW`, following relative symlinks only while they stay below
/// `root`: `..` above the root, an absolute symlink, or a symlink whose
/// target climbs out is refused. The returned descriptor is the resolved
/// file or directory itself, so nothing can swap it afterwards.
pub fn open_beneath(root: &Path, sub: &str) -> Result<OwnedFd, String> {
    use nix::fcntl::{openat, readlinkat, OFlag};
    use nix::sys::stat::{fstat, Mode, SFlag};
    if sub.starts_with('/') {
        return Err(format!("subPath {sub:?} must be a relative path"));
    }
    if sub.split('/').any(|c| c == "..") {
        return Err(format!("subPath {sub:?} must not contain '..'"));
    }
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let root_fd = openat(
        nix::fcntl::AT_FDCWD,
        root,
        flags | OFlag::O_DIRECTORY,
        Mode::empty(),
    )
    .map_err(|e| format!("opening volume {}: {e}", root.display()))?;
    let mut stack: Vec<OwnedFd> = vec![root_fd];
    let mut pending: VecDeque<String> = sub.split('/').map(str::to_string).collect();
    let mut links = 0;
    let mut walked = String::new();
    while let Some(c) = pending.pop_front() {
        if c.is_empty() || c == "." {
            continue;
        }
        if c == ".." {
            if stack.len() == 1 {
                return Err(format!(
                    "subPath {sub:?} resolves outside the volume (through \"{walked}\")"
                ));
            }
            stack.pop();
            continue;
        }
        let parent = stack.last().expect("the root stays on the stack");
        let fd = openat(parent.as_fd(), c.as_str(), flags, Mode::empty())
            .map_err(|e| format!("subPath {sub:?}: opening {c:?}: {e}"))?;
        if !walked.is_empty() {
            walked.push('/');
        }
        walked.push_str(&c);
        let st = fstat(fd.as_fd()).map_err(|e| format!("subPath {sub:?}: stat {c:?}: {e}"))?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK {
            links += 1;
            if links > 40 {
                return Err(format!(
                    "subPath {sub:?}: too many levels of symbolic links"
                ));
            }
            let target = readlinkat(fd.as_fd(), "")
                .map_err(|e| format!("subPath {sub:?}: reading link {walked:?}: {e}"))?;
            let target = target.to_string_lossy().into_owned();
            if target.starts_with('/') {
                return Err(format!(
                    "subPath {sub:?} goes through symlink \"{walked}\" -> {target:?}, outside the volume"
                ));
            }
            for part in target.split('/').rev() {
                pending.push_front(part.to_string());
            }
            continue;
        }
        stack.push(fd);
    }
    if stack.len() == 1 {
        return Err(format!("subPath {sub:?} is the volume itself"));
    }
    Ok(stack.pop().expect("checked above"))
}

/// Resolves `sub` in `root` with [`open_beneath`] and bind-mounts the
/// descriptor (`/proc/self/fd/N`) onto `target` (made as a file or a
/// directory to match). Returns whether it is a file.
pub fn bind_sub_path(root: &Path, sub: &str, target: &Path) -> Result<bool, String> {
    use std::os::fd::AsRawFd;
    let fd = open_beneath(root, sub)?;
    let st = nix::sys::stat::fstat(fd.as_fd()).map_err(|e| e.to_string())?;
    let is_dir = nix::sys::stat::SFlag::from_bits_truncate(st.st_mode)
        & nix::sys::stat::SFlag::S_IFMT
        == nix::sys::stat::SFlag::S_IFDIR;
    if is_mount_point(target) {
        let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    if is_dir {
        if target.is_file() {
            let _ = std::fs::remove_file(target);
        }
        std::fs::create_dir_all(target)
    } else {
        if target.is_dir() {
            let _ = std::fs::remove_dir(target);
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(target)
            .map(drop)
    }
    .map_err(|e| format!("creating {}: {e}", target.display()))?;
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    nix::mount::mount(
        Some(proc_path.as_str()),
        target,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        format!(
            "bind-mounting the resolved subPath onto {}: {e}",
            target.display()
        )
    })?;
    Ok(!is_dir)
}

/// The directory of a `Released` local-path PersistentVolume with the
/// `Delete` reclaim policy pinned to `node` — what this node's agent
/// deletes before deleting the volume. Only a `pvc-…` directory, the
/// provisioner's naming, is ever a candidate.
pub fn local_volume_to_delete(pv: &Value, node: &str) -> Option<PathBuf> {
    let s = |p: &str| pv.pointer(p).and_then(Value::as_str);
    if s("/metadata/annotations/pv.kubernetes.io~1provisioned-by")
        != Some(api_local_path_provisioner())
        || s("/status/phase") != Some("Released")
        || s("/spec/persistentVolumeReclaimPolicy") != Some("Delete")
    {
        return None;
    }
    let on_node = pv
        .pointer("/spec/nodeAffinity/required/nodeSelectorTerms")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|t| {
            t["matchExpressions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .any(|e| {
            e["key"] == "kubernetes.io/hostname"
                && e["values"]
                    .as_array()
                    .is_some_and(|v| v.iter().any(|n| n == node))
        });
    let path = PathBuf::from(s("/spec/hostPath/path")?);
    let named = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("pvc-"));
    (on_node && named && path.is_absolute()).then_some(path)
}

fn api_local_path_provisioner() -> &'static str {
    "drover.dev/local-path"
}

/// `MountVolume.SetUp failed for volume "x" : <why>` (the kubelet's
/// FailedMount message).
pub fn failed_mount_message(volume: &str, why: &str) -> String {
    format!("MountVolume.SetUp failed for volume \"{volume}\" : {why}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A temporary directory whose mounts go (those a failed run left)
    /// before it does.
    struct Unmount(tempfile::TempDir);

    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = unmount_below(self.0.path());
        }
    }

    fn pod(volumes: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1",
                         "labels": {"app": "web", "tier": "a\"b"}, "annotations": {"x": "1"}},
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}}}],
                     "volumes": volumes}
        }))
        .unwrap()
    }

    fn objects(cms: Value, secrets: Value) -> Objects {
        let map = |v: Value| {
            v.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect()
        };
        Objects {
            config_maps: map(cms),
            secrets: map(secrets),
            ..Default::default()
        }
    }

    fn check(volumes: Value, objects: &Objects, expect: Result<Vec<(&str, &str, u32)>, &str>) {
        let p = pod(volumes);
        let planned = plan(
            &p,
            objects,
            NodeResources {
                cpu_milli: 2000,
                memory_bytes: 1 << 30,
            },
        );
        let got = planned.into_iter().next().unwrap().1;
        match (got, expect) {
            (
                Ok(VolumePlan {
                    source: Source::Files(files),
                    ..
                }),
                Ok(want),
            ) => {
                let got: Vec<(String, String, u32)> = files
                    .into_iter()
                    .map(|f| (f.path, String::from_utf8(f.data).unwrap(), f.mode))
                    .collect();
                let want: Vec<(String, String, u32)> = want
                    .into_iter()
                    .map(|(a, b, m)| (a.to_string(), b.to_string(), m))
                    .collect();
                assert_eq!(got, want);
            }
            (Err(e), Err(want)) => assert_eq!(e, want),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn config_map_and_secret_files() {
        let o = objects(
            json!({"cm": {"data": {"a": "1", "b": "2"}, "binaryData": {"bin": "aGk="}}}),
            json!({"s": {"data": {"pw": "c2VjcmV0"}}}),
        );
        check(
            json!([{"name": "v", "configMap": {"name": "cm"}}]),
            &o,
            Ok(vec![
                ("a", "1", 0o644),
                ("b", "2", 0o644),
                ("bin", "hi", 0o644),
            ]),
        );
        check(
            json!([{"name": "v", "configMap": {"name": "cm", "defaultMode": 0o600,
                    "items": [{"key": "b", "path": "dir/b.txt"}, {"key": "a", "path": "a", "mode": 0o400}]}}]),
            &o,
            Ok(vec![("dir/b.txt", "2", 0o600), ("a", "1", 0o400)]),
        );
        check(
            json!([{"name": "v", "secret": {"secretName": "s"}}]),
            &o,
            Ok(vec![("pw", "secret", 0o644)]),
        );
        check(
            json!([{"name": "v", "configMap": {"name": "nope"}}]),
            &o,
            Err("configmap \"nope\" not found"),
        );
        check(
            json!([{"name": "v", "secret": {"secretName": "nope"}}]),
            &o,
            Err("secret \"nope\" not found"),
        );
        check(
            json!([{"name": "v", "configMap": {"name": "nope", "optional": true}}]),
            &o,
            Ok(vec![]),
        );
        check(
            json!([{"name": "v", "configMap": {"name": "cm", "items": [{"key": "zz", "path": "z"}]}}]),
            &o,
            Err("configmap references non-existent config key: zz"),
        );
        check(
            json!([{"name": "v", "secret": {"secretName": "s", "items": [{"key": "zz", "path": "z"}]}}]),
            &o,
            Err("references non-existent secret key: zz"),
        );
    }

    #[test]
    fn downward_api_and_projected_files() {
        let o = objects(
            json!({"kube-root-ca.crt": {"data": {"ca.crt": "CA"}}}),
            json!({}),
        );
        check(
            json!([{"name": "v", "downwardAPI": {"items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}},
                {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu", "divisor": "1m"}},
                {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}},
                {"path": "cpu-req", "resourceFieldRef": {"containerName": "c", "resource": "requests.cpu"}}
            ]}}]),
            &o,
            Ok(vec![
                ("labels", "app=\"web\"\ntier=\"a\\\"b\"", 0o644),
                ("name", "p", 0o644),
                ("app", "web", 0o644),
                ("cpu", "250", 0o644),
                ("mem", "64", 0o644),
                ("cpu-req", "0", 0o644),
            ]),
        );
        let mut o = o;
        o.tokens.insert(
            TokenAsk {
                audience: String::new(),
                expiration_seconds: DEFAULT_TOKEN_SECONDS,
            },
            Ok("header.claims.signature".into()),
        );
        check(
            json!([{"name": "v", "projected": {"defaultMode": 0o440, "sources": [
                {"serviceAccountToken": {"path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}
            ]}}]),
            &o,
            Ok(vec![
                ("token", "header.claims.signature", 0o440),
                ("ca.crt", "CA", 0o440),
                ("namespace", "default", 0o440),
            ]),
        );
        // A token that could not be had fails the mount, naming why.
        o.tokens.insert(
            TokenAsk {
                audience: "vault".into(),
                expiration_seconds: 7200,
            },
            Err("serviceaccounts \"builder\" not found".into()),
        );
        check(
            json!([{"name": "v", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token", "audience": "vault", "expirationSeconds": 7200}}
            ]}}]),
            &o,
            Err("failed to fetch token: serviceaccounts \"builder\" not found"),
        );
    }

    #[test]
    fn memory_empty_dir_is_tmpfs_sized_by_limit() {
        let p = pod(json!([{"name": "m", "emptyDir": {"medium": "Memory"}},
                           {"name": "s", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                           {"name": "d", "emptyDir": {}}]));
        let got: Vec<Source> = plan(&p, &Objects::default(), NodeResources::default())
            .into_iter()
            .map(|(_, r)| r.unwrap().source)
            .collect();
        assert_eq!(
            got,
            [
                Source::EmptyDir {
                    tmpfs: Some(Some(64 << 20))
                },
                Source::EmptyDir {
                    tmpfs: Some(Some(1 << 20))
                },
                Source::EmptyDir { tmpfs: None },
            ]
        );
    }

    #[test]
    fn claims_must_be_bound_to_a_host_path_volume() {
        let p = pod(json!([{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}]));
        let run = |claims: Value, pvs: Value| {
            let map = |v: Value| {
                v.as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), Some(v.clone())))
                    .collect()
            };
            let o = Objects {
                claims: map(claims),
                persistent_volumes: map(pvs),
                ..Default::default()
            };
            plan(&p, &o, NodeResources::default())
                .remove(0)
                .1
                .map(|v| v.source)
        };
        assert_eq!(
            run(json!({}), json!({})),
            Err("persistentvolumeclaim \"c\" not found".into())
        );
        assert_eq!(
            run(json!({"c": {"status": {"phase": "Pending"}}}), json!({})),
            Err("PVC default/c has non-bound phase (\"Pending\") or empty pvc.Spec.VolumeName (\"\")".into())
        );
        let bound = json!({"c": {"spec": {"volumeName": "pv1"}, "status": {"phase": "Bound"}}});
        assert_eq!(
            run(bound.clone(), json!({})),
            Err("persistentvolume \"pv1\" not found".into())
        );
        assert_eq!(
            run(
                bound.clone(),
                json!({"pv1": {"spec": {"hostPath": {"path": "/data/x", "type": "DirectoryOrCreate"}}}})
            ),
            Ok(Source::Host {
                path: "/data/x".into(),
                kind: "DirectoryOrCreate".into()
            })
        );
        assert_eq!(
            run(
                bound,
                json!({"pv1": {"spec": {"local": {"path": "/data/y"}}}})
            ),
            Ok(Source::Host {
                path: "/data/y".into(),
                kind: "Directory".into()
            })
        );
    }

    fn files(list: &[(&str, &str)]) -> Vec<FilePlan> {
        list.iter()
            .map(|(p, d)| FilePlan {
                path: p.to_string(),
                data: d.as_bytes().to_vec(),
                mode: 0o644,
            })
            .collect()
    }

    #[test]
    fn atomic_writer_swaps_data_and_keeps_user_names_as_links() {
        let dir = tempfile::tempdir().unwrap();
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert!(write_atomically(dir.path(), &files(&[("a", "1"), ("sub/b", "2")]), t0).unwrap());
        assert_eq!(std::fs::read_to_string(dir.path().join("a")).unwrap(), "1");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("sub/b")).unwrap(),
            "2"
        );
        assert_eq!(
            std::fs::read_link(dir.path().join("a")).unwrap(),
            Path::new("..data/a")
        );
        // Unchanged: nothing written.
        let t1 = t0 + jiff::SignedDuration::from_secs(1);
        assert!(!write_atomically(dir.path(), &files(&[("a", "1"), ("sub/b", "2")]), t1).unwrap());
        // Changed: new data, the removed name goes, the old dir goes.
        assert!(write_atomically(dir.path(), &files(&[("a", "9")]), t1).unwrap());
        assert_eq!(std::fs::read_to_string(dir.path().join("a")).unwrap(), "9");
        assert!(!dir.path().join("sub").exists());
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["..2026_01_01_00_00_01.000000000", "..data", "a"]);
    }

    #[test]
    fn atomic_writer_refuses_paths_outside_the_volume() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("vol");
        std::fs::create_dir(&dir).unwrap();
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        for bad in ["../escaped", "a/../../escaped", "/tmp/escaped", "..x", ""] {
            let err = write_atomically(&dir, &files(&[("ok", "1"), (bad, "2")]), t0)
                .expect_err(bad)
                .to_string();
            assert!(
                err.contains("refusing to write outside the volume"),
                "{bad}: {err}"
            );
        }
        // Nothing was written, not even the good file.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        assert!(!parent.path().join("escaped").exists());
    }

    #[test]
    fn volume_root_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("volumes");
        let _ = VolumeManager::new(root.clone());
        let mode = std::fs::metadata(&root).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o750, "{mode:o}");
    }

    #[test]
    fn host_path_types_are_checked_like_the_kubelet() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("file"), "x").unwrap();
        assert_eq!(check_host_path(&d.join("new"), "DirectoryOrCreate"), Ok(()));
        assert!(d.join("new").is_dir());
        assert_eq!(check_host_path(&d.join("f2"), "FileOrCreate"), Ok(()));
        assert!(d.join("f2").is_file());
        assert_eq!(
            check_host_path(&d.join("file"), "Directory"),
            Err(format!(
                "hostPath type check failed: {} is not a directory",
                d.join("file").display()
            ))
        );
        assert_eq!(
            check_host_path(&d.join("missing"), "File"),
            Err(format!(
                "hostPath type check failed: {} is not a file",
                d.join("missing").display()
            ))
        );
        assert_eq!(
            check_host_path(d, "Socket"),
            Err(format!(
                "hostPath type check failed: {} is not a socket file",
                d.display()
            ))
        );
        assert_eq!(
            check_host_path(Path::new("/dev/null"), "CharDevice"),
            Ok(())
        );
        assert_eq!(
            check_host_path(d, "Bogus"),
            Err("Bogus is an invalid volume type".into())
        );
    }

    #[test]
    fn sub_paths_never_leave_the_volume() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("vol");
        std::fs::create_dir_all(vol.join("a/b")).unwrap();
        std::fs::write(vol.join("a/b/f"), "in").unwrap();
        std::fs::write(dir.path().join("secret"), "out").unwrap();
        symlink("a/b/f", vol.join("inner")).unwrap();
        symlink("../../..", vol.join("a/b/up")).unwrap();
        symlink("/etc", vol.join("abs")).unwrap();
        symlink("..", vol.join("parent")).unwrap();
        std::fs::create_dir_all(vol.join("c")).unwrap();
        symlink("../a", vol.join("c/side")).unwrap();
        let ok = |sub: &str| {
            let fd = open_beneath(&vol, sub).unwrap_or_else(|e| panic!("{sub}: {e}"));
            std::fs::read_link(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&fd)
            ))
            .unwrap()
        };
        assert_eq!(ok("a/b/f"), vol.join("a/b/f"));
        assert_eq!(ok("inner"), vol.join("a/b/f"));
        assert_eq!(ok("c/side/b"), vol.join("a/b"));
        for (sub, why) in [
            ("../secret", "must not contain '..'"),
            ("/etc", "must be a relative path"),
            ("abs/passwd", "outside the volume"),
            ("parent/secret", "resolves outside the volume"),
            ("a/b/up/secret", "resolves outside the volume"),
            ("missing/x", "No such file"),
        ] {
            let err = open_beneath(&vol, sub).unwrap_err();
            assert!(err.contains(why), "{sub}: {err} should say {why}");
        }
    }

    #[test]
    fn only_released_local_path_volumes_of_this_node_are_deleted() {
        let pv = |phase: &str, policy: &str, node: &str, path: &str| {
            json!({"metadata": {"name": "pvc-1", "annotations": {"pv.kubernetes.io/provisioned-by": "drover.dev/local-path"}},
                   "spec": {"persistentVolumeReclaimPolicy": policy, "hostPath": {"path": path},
                            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
                   "status": {"phase": phase}})
        };
        let path = "/data/storage/pvc-1_default_c";
        assert_eq!(
            local_volume_to_delete(&pv("Released", "Delete", "n1", path), "n1"),
            Some(PathBuf::from(path))
        );
        assert_eq!(
            local_volume_to_delete(&pv("Bound", "Delete", "n1", path), "n1"),
            None
        );
        assert_eq!(
            local_volume_to_delete(&pv("Released", "Retain", "n1", path), "n1"),
            None
        );
        assert_eq!(
            local_volume_to_delete(&pv("Released", "Delete", "n2", path), "n1"),
            None
        );
        assert_eq!(
            local_volume_to_delete(&pv("Released", "Delete", "n1", "/etc"), "n1"),
            None
        );
        let mut other = pv("Released", "Delete", "n1", path);
        other["metadata"]["annotations"] = json!({});
        assert_eq!(local_volume_to_delete(&other, "n1"), None);
    }

    /// Secret and projected volumes are a tmpfs each (as the kubelet keeps
    /// them: never on the node's disk), set up again without a second
    /// mount; configMap and downwardAPI volumes stay on disk. Needs root.
    #[test]
    fn secret_and_projected_volumes_are_in_memory_and_go_with_the_pod() {
        let dir = Unmount(tempfile::tempdir().unwrap());
        let dir = &dir.0;
        let manager = VolumeManager::new(dir.path().join("volumes"));
        let files = |plugin: &'static str, name: &str| VolumePlan {
            name: name.into(),
            plugin,
            source: Source::Files(vec![FilePlan {
                path: "token".into(),
                data: b"secret".to_vec(),
                mode: 0o644,
            }]),
            read_only: true,
        };
        for (plugin, name, in_memory) in [
            (PLUGIN_SECRET, "s", true),
            (PLUGIN_PROJECTED, "kube-api-access", true),
            (PLUGIN_CONFIG_MAP, "c", false),
            (PLUGIN_DOWNWARD_API, "d", false),
        ] {
            let plan = files(plugin, name);
            let set_up = manager.set_up("u2", &plan).unwrap();
            assert_eq!(
                is_tmpfs(&set_up.path),
                in_memory,
                "{plugin} volume {name} at {}: tmpfs",
                set_up.path.display()
            );
            assert_eq!(
                std::fs::read_to_string(set_up.path.join("token")).unwrap(),
                "secret"
            );
            // Set up again (a refresh, an agent restart): the same mount.
            assert_eq!(manager.set_up("u2", &plan).unwrap(), set_up);
            assert_eq!(
                mounts_below(&set_up.path).len(),
                usize::from(in_memory),
                "{plugin} volume {name}: mounts"
            );
        }
        manager.tear_down("u2").unwrap();
        assert!(!manager.pod_dir("u2").exists());
        assert!(mounts_below(dir.path()).is_empty());
    }

    /// Real mounts (needs root, as the agent's tests run): a memory
    /// emptyDir is a tmpfs, a subPathExpr is bind-mounted from the
    /// resolved directory, re-set-up is idempotent, and tear-down unmounts
    /// everything before deleting.
    #[test]
    fn the_manager_mounts_tmpfs_and_sub_paths_and_tears_them_down() {
        let dir = Unmount(tempfile::tempdir().unwrap());
        let dir = &dir.0;
        let manager = VolumeManager::new(dir.path().join("volumes"));
        let memory = VolumePlan {
            name: "mem".into(),
            plugin: PLUGIN_EMPTY_DIR,
            source: Source::EmptyDir {
                tmpfs: Some(Some(1 << 20)),
            },
            read_only: false,
        };
        let set_up = manager.set_up("u1", &memory).unwrap();
        assert!(
            is_mount_point(&set_up.path),
            "a tmpfs at {}",
            set_up.path.display()
        );
        std::fs::create_dir_all(set_up.path.join("pod-a")).unwrap();
        std::fs::write(set_up.path.join("pod-a/f"), "a").unwrap();
        // Set up again (an agent restart): the same tmpfs, content kept.
        assert_eq!(manager.set_up("u1", &memory).unwrap(), set_up);
        assert_eq!(mounts_below(&set_up.path).len(), 1);
        let container: Container = serde_json::from_value(json!({"name": "c",
            "volumeMounts": [{"name": "mem", "mountPath": "/data", "subPathExpr": "$(POD)"},
                             {"name": "mem", "mountPath": "/all", "readOnly": true}]}))
        .unwrap();
        let volumes: BTreeMap<String, SetUpVolume> = [("mem".to_string(), set_up.clone())].into();
        let env = [("POD".to_string(), "pod-a".to_string())];
        let mounts = manager.mounts("u1", &container, &env, &volumes).unwrap();
        let sub = manager.pod_dir("u1").join("volume-subpaths/mem/c/0");
        assert_eq!(
            mounts,
            [
                Mount {
                    source: sub.clone(),
                    destination: "/data".into(),
                    read_only: false,
                    is_file: false
                },
                Mount {
                    source: set_up.path.clone(),
                    destination: "/all".into(),
                    read_only: true,
                    is_file: false
                },
            ]
        );
        assert_eq!(std::fs::read_to_string(sub.join("f")).unwrap(), "a");
        manager.tear_down("u1").unwrap();
        assert!(!manager.pod_dir("u1").exists());
        assert!(mounts_below(dir.path()).is_empty());
    }

    /// A bind mount within one filesystem (same device as its parent, which
    /// a device comparison would miss) is a mount point, stacked mounts
    /// are all undone, and a plain directory is not one.
    #[test]
    fn bind_mounts_are_mount_points_and_stacked_ones_are_all_unmounted() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root to mount");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (source, target) = (dir.path().join("source"), dir.path().join("target"));
        std::fs::create_dir_all(&source).unwrap();
        std::fs::create_dir_all(&target).unwrap();
        assert!(!is_mount_point(&target), "a plain directory");
        assert_eq!(statx_mount_root(&target), Some(false), "statx answers here");
        for _ in 0..2 {
            nix::mount::mount(
                Some(&source),
                &target,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .unwrap();
        }
        assert!(
            is_mount_point(&target),
            "a bind mount of the same filesystem"
        );
        unmount_below(dir.path()).unwrap();
        assert!(!is_mount_point(&target), "both stacked bind mounts undone");
        assert!(mounts_below(dir.path()).is_empty());
    }

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
