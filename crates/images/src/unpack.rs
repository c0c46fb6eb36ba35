//! Unpacks one layer tarball into a directory in overlayfs form: OCI
//! whiteouts become what overlayfs reads (a `.wh.NAME` file becomes a 0:0
//! character device NAME, `.wh..wh..opq` becomes `trusted.overlay.opaque=y`
//! on its directory), and no entry can reach outside the directory.
//!
//! The caller unpacks into a fresh temporary directory and renames it into
//! place, so the checks here only need to hold within one layer.

use std::ffi::CString;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::store::StoreError;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// A reader that hashes what passes through it (sha256).
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    pub(crate) bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// `sha256:<hex>` of everything read so far.
    pub(crate) fn digest(self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// A zstd stream of one or more frames (encoders may split a layer into
/// several), decoded in pure Rust.
struct ZstdFrames<R: BufRead> {
    decoder: Option<ruzstd::StreamingDecoder<R, ruzstd::FrameDecoder>>,
}

impl<R: BufRead> ZstdFrames<R> {
    fn new(inner: R) -> Result<Self, StoreError> {
        let decoder = ruzstd::StreamingDecoder::new(inner)
            .map_err(|e| StoreError::Invalid(format!("reading zstd layer: {e}")))?;
        Ok(ZstdFrames {
            decoder: Some(decoder),
        })
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(decoder) = self.decoder.as_mut() else {
                return Ok(0);
            };
            let n = decoder.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            let mut inner = self.decoder.take().expect("checked above").into_inner();
            if inner.fill_buf()?.is_empty() {
                return Ok(0);
            }
            let next = ruzstd::StreamingDecoder::new(inner).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("zstd frame: {e}"))
            })?;
            self.decoder = Some(next);
        }
    }
}

/// Reads `inner`, then (once it ends) up to 2 KiB of zeros: some layer
/// writers (umoci 0.4) end the tar stream without the last entry's padding
/// and the end-of-archive blocks, which GNU tar and containerd accept; the
/// zeros let the tar reader finish the same way. They are not part of the
/// diff ID, which is hashed beneath this.
struct ZeroPadded<R> {
    inner: R,
    zeros_left: Option<usize>,
}

impl<R: Read> Read for ZeroPadded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.zeros_left.is_none() {
            let n = self.inner.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            self.zeros_left = Some(2048);
        }
        let left = self.zeros_left.as_mut().expect("set above");
        let n = buf.len().min(*left);
        buf[..n].fill(0);
        *left -= n;
        Ok(n)
    }
}

/// `sha256:<hex>` of a byte string.
pub(crate) fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Unpacks a (possibly gzip-compressed) layer tarball into `dest`, which
/// must exist and be empty, and returns the layer's diff ID (the sha256 of
/// the uncompressed tar), so the caller can check it against the image
/// config's `rootfs.diff_ids`.
pub(crate) fn unpack_layer(compressed: impl Read, dest: &Path) -> Result<String, StoreError> {
    let mut buffered = BufReader::new(compressed);
    let head = buffered
        .fill_buf()
        .map_err(|e| StoreError::io("reading layer", e))?;
    let decompressed: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(ZstdFrames::new(buffered)?)
    } else {
        Box::new(buffered)
    };
    let mut hashing = HashingReader::new(decompressed);
    {
        let mut archive = tar::Archive::new(ZeroPadded {
            inner: &mut hashing,
            zeros_left: None,
        });
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.set_preserve_mtime(true);
        archive.set_overwrite(true);
        let entries = archive
            .entries()
            .map_err(|e| StoreError::io("reading layer tar", e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| StoreError::io("reading layer tar", e))?;
            unpack_entry(&mut entry, dest)?;
        }
    }
    // The diff ID covers the whole tar stream, including the end-of-archive
    // blocks the tar reader stops before.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| StoreError::io("reading layer", e))?;
    Ok(hashing.digest())
}

fn unpack_entry<R: Read>(entry: &mut tar::Entry<R>, dest: &Path) -> Result<(), StoreError> {
    let kind = entry.header().entry_type();
    if kind.is_pax_global_extensions()
        || kind.is_pax_local_extensions()
        || kind.is_gnu_longname()
        || kind.is_gnu_longlink()
    {
        // Metadata for the entries that follow, not files.
        return Ok(());
    }
    let raw_path = entry
        .path()
        .map_err(|e| StoreError::io("reading layer entry name", e))?
        .into_owned();
    let relative = contained_path(&raw_path)?;
    let Some(name) = relative
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
    else {
        // The layer's root (`./`): nothing to create.
        return Ok(());
    };
    let parent = relative.parent().unwrap_or(Path::new(""));
    let parent_dir = make_parents(dest, parent, &raw_path)?;

    if name == OPAQUE_WHITEOUT {
        return set_xattr(&parent_dir, "trusted.overlay.opaque", b"y");
    }
    if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
        if hidden.starts_with(WHITEOUT_PREFIX) {
            // Other `.wh..wh.` names are reserved metadata (AUFS hard-link
            // directories); overlayfs has no use for them.
            return Ok(());
        }
        let target = parent_dir.join(hidden);
        remove_existing(&target)?;
        return make_whiteout(&target);
    }

    let target = dest.join(&relative);
    if kind.is_dir() {
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => remove_existing(&target)?,
            Err(_) => {}
        }
    } else {
        remove_existing(&target)?;
    }
    if kind.is_hard_link() {
        let link = entry
            .link_name()
            .map_err(|e| StoreError::io("reading hard link target", e))?
            .ok_or_else(|| {
                StoreError::Invalid(format!(
                    "layer entry {} is a hard link without a target",
                    raw_path.display()
                ))
            })?
            .into_owned();
        let source_relative = contained_path(&link)?;
        let source_parent = source_relative.parent().unwrap_or(Path::new(""));
        check_parents(dest, source_parent, &link)?;
        let source = dest.join(&source_relative);
        return std::fs::hard_link(&source, &target).map_err(|e| {
            StoreError::io(
                format!("linking {} to {}", target.display(), source.display()),
                e,
            )
        });
    }
    if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
        // The tar crate writes these as regular files; images (e.g. a
        // /dev/null in a rootfs) need the real node.
        return make_special(entry.header(), kind, &target)
            .map_err(|e| StoreError::io(format!("creating device {}", raw_path.display()), e));
    }
    let xattrs = allowed_xattrs(entry)?;
    entry
        .unpack(&target)
        .map_err(|e| StoreError::io(format!("unpacking {}", raw_path.display()), e))?;
    if !kind.is_symlink() {
        for (name, value) in xattrs {
            set_xattr(&target, &name, &value)?;
        }
    }
    Ok(())
}

/// The extended attributes an entry carries (PAX `SCHILY.xattr.*`) that a
/// layer may set: file capabilities (`setcap` binaries such as ping) and
/// `user.*`. Others are dropped; `trusted.overlay.*` in particular would
/// let a layer steer overlayfs (redirects, opaque dirs of other layers).
fn allowed_xattrs<R: Read>(
    entry: &mut tar::Entry<R>,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let mut out = Vec::new();
    let Some(extensions) = entry
        .pax_extensions()
        .map_err(|e| StoreError::io("reading pax headers", e))?
    else {
        return Ok(out);
    };
    for extension in extensions {
        let extension = extension.map_err(|e| StoreError::io("reading pax headers", e))?;
        let Ok(key) = extension.key() else { continue };
        let Some(name) = key.strip_prefix("SCHILY.xattr.") else {
            continue;
        };
        if name == "security.capability" || name.starts_with("user.") {
            out.push((name.to_string(), extension.value_bytes().to_vec()));
        }
    }
    Ok(out)
}

fn make_special(header: &tar::Header, kind: tar::EntryType, path: &Path) -> io::Result<()> {
    let file_type = if kind.is_character_special() {
        libc::S_IFCHR
    } else if kind.is_block_special() {
        libc::S_IFBLK
    } else {
        libc::S_IFIFO
    };
    let mode = header.mode()? & 0o7777;
    let major = header.device_major()?.unwrap_or(0);
    let minor = header.device_minor()?.unwrap_or(0);
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))?;
    // SAFETY: `c` is a valid NUL-terminated path for each call.
    unsafe {
        if libc::mknod(c.as_ptr(), file_type | mode, libc::makedev(major, minor)) != 0 {
            return Err(io::Error::last_os_error());
        }
        // mknod applies the umask; the layer's mode is what counts.
        if libc::chmod(c.as_ptr(), mode) != 0 {
            return Err(io::Error::last_os_error());
        }
        let (uid, gid) = (header.uid()? as libc::uid_t, header.gid()? as libc::gid_t);
        if libc::lchown(c.as_ptr(), uid, gid) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The entry's path relative to the layer root: a leading `/` or `./` is
/// dropped (the layer's root is `/`), `..` is refused.
fn contained_path(path: &Path) -> Result<PathBuf, StoreError> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(StoreError::Invalid(format!(
                    "layer entry {} points outside the layer",
                    path.display()
                )))
            }
        }
    }
    Ok(out)
}

/// Creates the entry's missing parent directories; refuses a parent that
/// exists as anything but a directory (a symlink there could lead out of
/// the layer).
fn make_parents(dest: &Path, parent: &Path, entry: &Path) -> Result<PathBuf, StoreError> {
    let mut current = dest.to_path_buf();
    for component in parent.components() {
        current.push(component);
        match std::fs::symlink_metadata(&current) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(through_non_directory(entry, &current, dest)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir(&current)
                    .map_err(|e| StoreError::io(format!("creating {}", current.display()), e))?;
            }
            Err(e) => {
                return Err(StoreError::io(
                    format!("inspecting {}", current.display()),
                    e,
                ))
            }
        }
    }
    Ok(current)
}

/// Like [`make_parents`] but creates nothing (for a hard link's source).
fn check_parents(dest: &Path, parent: &Path, entry: &Path) -> Result<(), StoreError> {
    let mut current = dest.to_path_buf();
    for component in parent.components() {
        current.push(component);
        match std::fs::symlink_metadata(&current) {
            Ok(m) if m.is_dir() => {}
            _ => return Err(through_non_directory(entry, &current, dest)),
        }
    }
    Ok(())
}

fn through_non_directory(entry: &Path, at: &Path, dest: &Path) -> StoreError {
    StoreError::Invalid(format!(
        "layer entry {} goes through {}, which is not a directory in the layer",
        entry.display(),
        at.strip_prefix(dest).unwrap_or(at).display()
    ))
}

fn remove_existing(path: &Path) -> Result<(), StoreError> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(_) => return Ok(()),
    };
    result.map_err(|e| StoreError::io(format!("replacing {}", path.display()), e))
}

fn c_path(path: &Path) -> Result<CString, StoreError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| StoreError::Invalid(format!("path {} has a NUL byte", path.display())))
}

/// An overlayfs whiteout: a character device with device number 0:0.
fn make_whiteout(path: &Path) -> Result<(), StoreError> {
    let c = c_path(path)?;
    // SAFETY: `c` is a valid NUL-terminated path; mknod only reads it.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, libc::makedev(0, 0)) };
    if rc != 0 {
        return Err(StoreError::io(
            format!("creating whiteout {}", path.display()),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<(), StoreError> {
    let c = c_path(path)?;
    let n = CString::new(name).expect("xattr names have no NUL");
    // SAFETY: both strings are NUL-terminated and `value` outlives the call.
    let rc = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(StoreError::io(
            format!("setting {name} on {}", path.display()),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    /// A tar built entry by entry with raw names (the `tar` builder refuses
    /// `..`, which is what these tests need to feed in).
    struct Layer {
        builder: tar::Builder<Vec<u8>>,
    }

    impl Layer {
        fn new() -> Self {
            Layer {
                builder: tar::Builder::new(Vec::new()),
            }
        }

        fn header(name: &str, kind: tar::EntryType, size: u64) -> tar::Header {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_size(size);
            header.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            // Write the name bytes directly so `..` and `/` survive.
            let bytes = name.as_bytes();
            header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            header.set_cksum();
            header
        }

        fn dir(mut self, name: &str) -> Self {
            let h = Self::header(name, tar::EntryType::Directory, 0);
            self.builder.append(&h, io::empty()).unwrap();
            self
        }

        fn file(mut self, name: &str, content: &str) -> Self {
            let h = Self::header(name, tar::EntryType::Regular, content.len() as u64);
            self.builder.append(&h, content.as_bytes()).unwrap();
            self
        }

        fn link(mut self, name: &str, kind: tar::EntryType, target: &str) -> Self {
            let mut h = Self::header(name, kind, 0);
            h.set_link_name(target).unwrap();
            h.set_cksum();
            self.builder.append(&h, io::empty()).unwrap();
            self
        }

        fn finish(self) -> Vec<u8> {
            self.builder.into_inner().unwrap()
        }
    }

    fn unpack(layer: Vec<u8>) -> (tempfile::TempDir, Result<String, StoreError>) {
        let dir = tempfile::tempdir().unwrap();
        let result = unpack_layer(&layer[..], dir.path());
        (dir, result)
    }

    #[test]
    fn unpacks_files_and_reports_the_diff_id() {
        let tar = Layer::new()
            .dir("./")
            .dir("./etc/")
            .file("./etc/hostname", "box\n")
            .file("/abs/file", "rooted at the layer\n")
            .link("etc/alias", tar::EntryType::Symlink, "/etc/hostname")
            .link("etc/hard", tar::EntryType::Link, "etc/hostname")
            .finish();
        let expected = sha256_digest(&tar);
        let (dir, result) = unpack(tar);
        assert_eq!(
            result.unwrap(),
            expected,
            "diff id is the sha256 of the tar"
        );
        let root = dir.path();
        assert_eq!(
            std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
            "box\n"
        );
        assert!(
            root.join("abs/file").is_file(),
            "an absolute name lands inside the layer"
        );
        assert_eq!(
            std::fs::read_link(root.join("etc/alias")).unwrap(),
            Path::new("/etc/hostname")
        );
        let a = std::fs::metadata(root.join("etc/hostname")).unwrap();
        let b = std::fs::metadata(root.join("etc/hard")).unwrap();
        assert_eq!(a.ino(), b.ino(), "hard link shares the inode");
    }

    #[test]
    fn a_tar_cut_short_of_its_end_blocks_still_unpacks() {
        let mut tar = Layer::new().file("a", "abc").finish();
        // Drop the padding after "abc" and the two end-of-archive blocks.
        tar.truncate(512 + 3);
        let expected = sha256_digest(&tar);
        let (dir, result) = unpack(tar);
        assert_eq!(
            result.unwrap(),
            expected,
            "diff id covers only the real bytes"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a")).unwrap(),
            "abc"
        );
    }

    #[test]
    fn device_nodes_and_fifos_are_created_as_such() {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, major, minor) in [
            ("dev/null", tar::EntryType::Char, 1, 3),
            ("dev/loop9", tar::EntryType::Block, 7, 9),
            ("run/pipe", tar::EntryType::Fifo, 0, 0),
        ] {
            let mut header = Layer::header(name, kind, 0);
            header.set_mode(0o666);
            header.set_device_major(major).unwrap();
            header.set_device_minor(minor).unwrap();
            header.set_cksum();
            builder.append(&header, io::empty()).unwrap();
        }
        let (dir, result) = unpack(builder.into_inner().unwrap());
        result.unwrap();
        let null = std::fs::symlink_metadata(dir.path().join("dev/null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), libc::makedev(1, 3));
        assert_eq!(null.mode() & 0o7777, 0o666);
        let block = std::fs::symlink_metadata(dir.path().join("dev/loop9")).unwrap();
        assert!(block.file_type().is_block_device());
        assert_eq!(block.rdev(), libc::makedev(7, 9));
        assert!(std::fs::symlink_metadata(dir.path().join("run/pipe"))
            .unwrap()
            .file_type()
            .is_fifo());
    }

    #[test]
    fn capabilities_and_user_xattrs_are_kept_overlay_ones_dropped() {
        let mut builder = tar::Builder::new(Vec::new());
        builder
            .append_pax_extensions([
                ("SCHILY.xattr.user.note", &b"hello"[..]),
                ("SCHILY.xattr.trusted.overlay.opaque", &b"y"[..]),
            ])
            .unwrap();
        builder
            .append(
                &Layer::header("dir/", tar::EntryType::Directory, 0),
                io::empty(),
            )
            .unwrap();
        let (dir, result) = unpack(builder.into_inner().unwrap());
        result.unwrap();
        let get = |name: &str| {
            let c = c_path(&dir.path().join("dir")).unwrap();
            let n = CString::new(name).unwrap();
            let mut value = [0u8; 16];
            // SAFETY: valid NUL-terminated strings and a buffer of the given size.
            let len = unsafe {
                libc::lgetxattr(
                    c.as_ptr(),
                    n.as_ptr(),
                    value.as_mut_ptr().cast(),
                    value.len(),
                )
            };
            (len >= 0).then(|| value[..len as usize].to_vec())
        };
        assert_eq!(get("user.note").as_deref(), Some(&b"hello"[..]));
        assert_eq!(
            get("trusted.overlay.opaque"),
            None,
            "a layer cannot set overlay xattrs"
        );
    }

    #[test]
    fn gzip_layers_have_the_uncompressed_diff_id() {
        let tar = Layer::new().file("a", "x").finish();
        let expected = sha256_digest(&tar);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar).unwrap();
        let (dir, result) = unpack(gz.finish().unwrap());
        assert_eq!(result.unwrap(), expected);
        assert!(dir.path().join("a").is_file());
    }

    #[test]
    fn whiteouts_become_overlayfs_whiteouts() {
        let tar = Layer::new()
            .dir("etc/")
            .file("etc/.wh.passwd", "")
            .dir("var/cache/")
            .file("var/cache/.wh..wh..opq", "")
            .file("var/cache/kept", "new")
            .finish();
        let (dir, result) = unpack(tar);
        result.unwrap();
        let root = dir.path();
        let whiteout = std::fs::symlink_metadata(root.join("etc/passwd")).unwrap();
        assert!(
            whiteout.file_type().is_char_device(),
            "whiteout is a char device"
        );
        assert_eq!(whiteout.rdev(), 0, "whiteout is device 0:0");
        assert!(
            !root.join("etc/.wh.passwd").exists(),
            "the .wh. file itself is not kept"
        );
        assert!(!root.join("var/cache/.wh..wh..opq").exists());
        let mut value = [0u8; 8];
        let c = c_path(&root.join("var/cache")).unwrap();
        let n = CString::new("trusted.overlay.opaque").unwrap();
        // SAFETY: valid NUL-terminated strings and a buffer of the given size.
        let len = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                n.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        assert_eq!(
            len,
            1,
            "opaque xattr set on var/cache: {}",
            io::Error::last_os_error()
        );
        assert_eq!(value[0], b'y');
        assert!(root.join("var/cache/kept").is_file());
    }

    fn assert_refused(tar: Vec<u8>, outside: &Path, what: &str) {
        let (dir, result) = unpack(tar);
        match result {
            Err(StoreError::Invalid(msg)) => {
                assert!(msg.contains("layer entry"), "{what}: message {msg:?}")
            }
            other => panic!("{what}: expected the layer to be refused, got {other:?}"),
        }
        assert!(
            !outside.exists(),
            "{what}: {} was written",
            outside.display()
        );
        drop(dir);
    }

    #[test]
    fn a_symlinks_owner_is_set_on_the_link_not_its_target() {
        let scratch = tempfile::tempdir().unwrap();
        let victim = scratch.path().join("victim");
        std::fs::write(&victim, "host file").unwrap();
        let before = std::fs::metadata(&victim).unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = Layer::header("link", tar::EntryType::Symlink, 0);
        header.set_link_name(&victim).unwrap();
        header.set_uid(4242);
        header.set_gid(4242);
        header.set_mode(0o777);
        header.set_cksum();
        builder.append(&header, io::empty()).unwrap();
        let (dir, result) = unpack(builder.into_inner().unwrap());
        result.unwrap();
        let after = std::fs::metadata(&victim).unwrap();
        assert_eq!(
            (after.uid(), after.gid(), after.mode()),
            (before.uid(), before.gid(), before.mode())
        );
        let link = std::fs::symlink_metadata(dir.path().join("link")).unwrap();
        assert_eq!(
            link.uid(),
            4242,
            "the link itself is chowned (we run as root)"
        );
    }

    #[test]
    fn entries_cannot_escape_the_layer() {
        let scratch = tempfile::tempdir().unwrap();
        let outside = scratch.path().join("escaped");
        let outside_name = outside.to_str().unwrap();

        // `..` in a file name.
        let dotdot = format!("../../../../../../../..{outside_name}");
        assert_refused(Layer::new().file(&dotdot, "x").finish(), &outside, "dotdot");

        // A symlink to a directory outside, then a file through it.
        let tar = Layer::new()
            .link(
                "link",
                tar::EntryType::Symlink,
                scratch.path().to_str().unwrap(),
            )
            .file("link/escaped", "x")
            .finish();
        assert_refused(tar, &outside, "symlinked parent");

        // A relative symlink climbing out, then a file through it.
        let tar = Layer::new()
            .link(
                "up",
                tar::EntryType::Symlink,
                "../../../../../../../../../..",
            )
            .file(&format!("up{outside_name}"), "x")
            .finish();
        assert_refused(tar, &outside, "relative symlinked parent");

        // A hard link to a file outside.
        std::fs::write(scratch.path().join("secret"), "s").unwrap();
        let tar = Layer::new()
            .link(
                "h",
                tar::EntryType::Link,
                &format!("../../../../../../../..{}/secret", scratch.path().display()),
            )
            .finish();
        assert_refused(tar, &outside, "hard link out");

        // A hard link through a symlinked directory.
        let tar = Layer::new()
            .link(
                "s",
                tar::EntryType::Symlink,
                scratch.path().to_str().unwrap(),
            )
            .link("h", tar::EntryType::Link, "s/secret")
            .finish();
        assert_refused(tar, &outside, "hard link through a symlink");

        // A file written over an existing symlink replaces the link rather
        // than writing through it.
        let target = scratch.path().join("victim");
        std::fs::write(&target, "original").unwrap();
        let tar = Layer::new()
            .link("f", tar::EntryType::Symlink, target.to_str().unwrap())
            .file("f", "overwritten")
            .finish();
        let (dir, result) = unpack(tar);
        result.unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "original");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("f")).unwrap(),
            "overwritten"
        );
    }
}
