//! The embedded store's on-disk format: CRC-framed write-ahead-log records in
//! segment files, an atomically replaced snapshot file, and recovery from both.
//!
//! Layout of the data directory:
//! - `wal-<first revision, 20 digits>.log`: records `[len u32][crc32 u32][payload]`,
//!   little endian; a record whose frame or checksum does not verify ends the log
//!   (a torn write) and is truncated away on recovery, but only in the last segment.
//! - `snapshot`: `DRVSNAP1`, the whole retained MVCC state, then a crc32 of it.
//!   Written to `snapshot.tmp`, fsynced, renamed, directory fsynced.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::mvcc::{Mutation, MvccState, Version};
use crate::{KeyValue, Revision, StoreError};

const SNAPSHOT_MAGIC: &[u8; 8] = b"DRVSNAP1";
pub(crate) const SNAPSHOT_FILE: &str = "snapshot";
const SNAPSHOT_TEMP_FILE: &str = "snapshot.tmp";
/// A frame claiming more than this is garbage, not a record: it bounds the
/// allocation a corrupt length could cause.
const MAX_RECORD_BYTES: usize = 1 << 30;

const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;
const TAG_COMPACT: u8 = 3;

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32 (IEEE), incremental.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Crc32(u32);

impl Crc32 {
    pub(crate) fn new() -> Self {
        Crc32(!0)
    }
    pub(crate) fn update(&mut self, data: &[u8]) {
        let mut c = self.0;
        for &b in data {
            c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }
    pub(crate) fn finish(self) -> u32 {
        !self.0
    }
}

pub(crate) fn crc32(data: &[u8]) -> u32 {
    let mut crc = Crc32::new();
    crc.update(data);
    crc.finish()
}

pub(crate) fn io_error(context: &str, path: &Path, error: io::Error) -> StoreError {
    StoreError::Io(format!("{context} {}: {error}", path.display()))
}

// ---------------------------------------------------------------- records

/// Append one framed record to `out`.
pub(crate) fn encode_record(out: &mut Vec<u8>, mutation: &Mutation) {
    let frame_start = out.len();
    out.extend_from_slice(&[0u8; 8]);
    let payload_start = out.len();
    match mutation {
        Mutation::Put(kv) => {
            out.push(TAG_PUT);
            out.extend_from_slice(&kv.mod_revision.to_le_bytes());
            out.extend_from_slice(&kv.create_revision.to_le_bytes());
            out.extend_from_slice(&kv.version.to_le_bytes());
            put_bytes(out, kv.key.as_bytes());
            put_bytes(out, &kv.value);
        }
        Mutation::Delete { key, revision } => {
            out.push(TAG_DELETE);
            out.extend_from_slice(&revision.to_le_bytes());
            put_bytes(out, key.as_bytes());
        }
        Mutation::Compact { revision } => {
            out.push(TAG_COMPACT);
            out.extend_from_slice(&revision.to_le_bytes());
        }
    }
    let len = (out.len() - payload_start) as u32;
    let crc = crc32(&out[payload_start..]);
    out[frame_start..frame_start + 4].copy_from_slice(&len.to_le_bytes());
    out[frame_start + 4..frame_start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A cursor over a byte slice; every read fails softly so a short buffer is an
/// `Err(())`, never a panic.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ()> {
        if self.data.len() < n {
            return Err(());
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, ()> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, ()> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| ())?,
        ))
    }
    fn i64(&mut self) -> Result<i64, ()> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| ())?,
        ))
    }
    fn u64(&mut self) -> Result<u64, ()> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| ())?,
        ))
    }
    fn bytes(&mut self) -> Result<&'a [u8], ()> {
        let len = self.u32()? as usize;
        self.take(len)
    }
    fn string(&mut self) -> Result<String, ()> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| ())
    }
}

fn decode_payload(payload: &[u8]) -> Result<Mutation, ()> {
    let mut r = Reader { data: payload };
    let mutation = match r.u8()? {
        TAG_PUT => {
            let mod_revision = r.i64()?;
            let create_revision = r.i64()?;
            let version = r.i64()?;
            let key = r.string()?;
            let value = Bytes::copy_from_slice(r.bytes()?);
            Mutation::Put(KeyValue {
                key,
                value,
                create_revision,
                mod_revision,
                version,
            })
        }
        TAG_DELETE => {
            let revision = r.i64()?;
            Mutation::Delete {
                key: r.string()?,
                revision,
            }
        }
        TAG_COMPACT => Mutation::Compact { revision: r.i64()? },
        _ => return Err(()),
    };
    if !r.data.is_empty() {
        return Err(());
    }
    Ok(mutation)
}

/// The records of one segment up to the first one that does not verify.
#[derive(Debug)]
pub(crate) struct DecodedSegment {
    pub(crate) mutations: Vec<Mutation>,
    /// Bytes of verified records; anything after is a torn or corrupt tail.
    pub(crate) valid_len: usize,
}

pub(crate) fn decode_segment(data: &[u8]) -> DecodedSegment {
    let mut mutations = Vec::new();
    let mut offset = 0;
    while data.len() - offset >= 8 {
        let len =
            u32::from_le_bytes(data[offset..offset + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(data[offset + 4..offset + 8].try_into().expect("4 bytes"));
        // A zero length is never written (every payload has a tag) and is what a
        // zero-filled tail after a crash looks like; its crc would also be 0.
        if len == 0 || len > MAX_RECORD_BYTES || data.len() - offset - 8 < len {
            break;
        }
        let payload = &data[offset + 8..offset + 8 + len];
        if crc32(payload) != crc {
            break;
        }
        let Ok(mutation) = decode_payload(payload) else {
            break;
        };
        mutations.push(mutation);
        offset += 8 + len;
    }
    DecodedSegment {
        mutations,
        valid_len: offset,
    }
}

// ---------------------------------------------------------------- segments

pub(crate) fn segment_file_name(first_revision: Revision) -> String {
    format!("wal-{first_revision:020}.log")
}

/// WAL segments in `dir`, ordered by the first revision they may hold.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(Revision, PathBuf)>, StoreError> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_error("reading directory", dir, e))? {
        let entry = entry.map_err(|e| io_error("reading directory", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(digits) = name
            .strip_prefix("wal-")
            .and_then(|n| n.strip_suffix(".log"))
        else {
            continue;
        };
        if let Ok(first) = digits.parse::<Revision>() {
            segments.push((first, entry.path()));
        }
    }
    segments.sort();
    Ok(segments)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("syncing directory", dir, e))
}

/// Create an empty segment and make its directory entry durable.
pub(crate) fn create_segment(dir: &Path, first_revision: Revision) -> Result<File, StoreError> {
    let path = dir.join(segment_file_name(first_revision));
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| io_error("creating wal segment", &path, e))?;
    sync_dir(dir)?;
    Ok(file)
}

/// Remove segments whose every record is at or below `revision` (they are all
/// covered by a snapshot at `revision`).
pub(crate) fn remove_segments_covered_by(dir: &Path, revision: Revision) -> Result<(), StoreError> {
    let segments = list_segments(dir)?;
    for (index, (_, path)) in segments.iter().enumerate() {
        // Segment i holds revisions [first_i, first_{i+1}); it is covered when the
        // next one starts at or below revision + 1.
        let covered = segments
            .get(index + 1)
            .is_some_and(|(next_first, _)| *next_first <= revision + 1);
        if covered {
            fs::remove_file(path).map_err(|e| io_error("removing wal segment", path, e))?;
        }
    }
    sync_dir(dir)
}

// ---------------------------------------------------------------- snapshot

struct CrcWriter<W: Write> {
    inner: W,
    crc: Crc32,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Durably replace the snapshot with `state`.
pub(crate) fn write_snapshot(dir: &Path, state: &MvccState) -> Result<(), StoreError> {
    let temp = dir.join(SNAPSHOT_TEMP_FILE);
    let fail = |e| io_error("writing snapshot", &temp, e);
    let file = File::create(&temp).map_err(fail)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    out.write_all(SNAPSHOT_MAGIC).map_err(fail)?;
    let mut body = CrcWriter {
        inner: out,
        crc: Crc32::new(),
    };
    write_snapshot_body(&mut body, state).map_err(fail)?;
    let crc = body.crc.finish();
    let mut out = body.inner;
    out.write_all(&crc.to_le_bytes()).map_err(fail)?;
    let file = out.into_inner().map_err(|e| fail(e.into_error()))?;
    file.sync_all().map_err(fail)?;
    drop(file);
    let target = dir.join(SNAPSHOT_FILE);
    fs::rename(&temp, &target).map_err(|e| io_error("renaming snapshot to", &target, e))?;
    sync_dir(dir)
}

fn write_snapshot_body(out: &mut impl Write, state: &MvccState) -> io::Result<()> {
    out.write_all(&state.revision.to_le_bytes())?;
    out.write_all(&state.compacted.to_le_bytes())?;
    out.write_all(&(state.keys.len() as u64).to_le_bytes())?;
    for (key, versions) in &state.keys {
        out.write_all(&(key.len() as u32).to_le_bytes())?;
        out.write_all(key.as_bytes())?;
        out.write_all(&(versions.len() as u32).to_le_bytes())?;
        for v in versions {
            out.write_all(&v.mod_revision.to_le_bytes())?;
            out.write_all(&v.create_revision.to_le_bytes())?;
            out.write_all(&v.version.to_le_bytes())?;
            match &v.value {
                None => out.write_all(&[0])?,
                Some(value) => {
                    out.write_all(&[1])?;
                    out.write_all(&(value.len() as u32).to_le_bytes())?;
                    out.write_all(value)?;
                }
            }
        }
    }
    Ok(())
}

/// Read the snapshot, if there is one. The snapshot is only ever renamed into
/// place complete, so any damage is corruption, not a torn write.
pub(crate) fn read_snapshot(dir: &Path) -> Result<Option<MvccState>, StoreError> {
    let path = dir.join(SNAPSHOT_FILE);
    let mut data = Vec::new();
    match File::open(&path) {
        Ok(mut f) => f
            .read_to_end(&mut data)
            .map_err(|e| io_error("reading snapshot", &path, e))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("opening snapshot", &path, e)),
    };
    let corrupt = |what: &str| StoreError::Corrupt(format!("snapshot {}: {what}", path.display()));
    if data.len() < SNAPSHOT_MAGIC.len() + 4 || &data[..8] != SNAPSHOT_MAGIC {
        return Err(corrupt("bad header"));
    }
    let body = &data[8..data.len() - 4];
    let stored_crc = u32::from_le_bytes(data[data.len() - 4..].try_into().expect("4 bytes"));
    if crc32(body) != stored_crc {
        return Err(corrupt("checksum mismatch"));
    }
    decode_snapshot_body(body)
        .map(Some)
        .map_err(|()| corrupt("malformed body"))
}

fn decode_snapshot_body(body: &[u8]) -> Result<MvccState, ()> {
    let mut r = Reader { data: body };
    let mut state = MvccState {
        revision: r.i64()?,
        compacted: r.i64()?,
        ..Default::default()
    };
    let key_count = r.u64()?;
    for _ in 0..key_count {
        let key = r.string()?;
        let version_count = r.u32()?;
        let mut versions = Vec::with_capacity(version_count.min(1024) as usize);
        for _ in 0..version_count {
            let mod_revision = r.i64()?;
            let create_revision = r.i64()?;
            let version = r.i64()?;
            let value = match r.u8()? {
                0 => None,
                1 => Some(Bytes::copy_from_slice(r.bytes()?)),
                _ => return Err(()),
            };
            versions.push(Version {
                mod_revision,
                create_revision,
                version,
                value,
            });
        }
        state.keys.insert(key, versions);
    }
    if !r.data.is_empty() {
        return Err(());
    }
    Ok(state)
}

// ---------------------------------------------------------------- recovery

/// What recovery hands to the committer.
pub(crate) struct Recovered {
    pub(crate) state: MvccState,
    /// The segment to append to.
    pub(crate) segment: File,
    /// Bytes of log written since the snapshot (all segments), for the snapshot trigger.
    pub(crate) wal_bytes: u64,
}

/// Rebuild the state from the snapshot and the log; truncate a torn tail of the
/// last segment so new records are appended after verified ones only.
pub(crate) fn recover(dir: &Path) -> Result<Recovered, StoreError> {
    // A leftover temp file is a snapshot that never became current.
    let _ = fs::remove_file(dir.join(SNAPSHOT_TEMP_FILE));
    let mut state = read_snapshot(dir)?.unwrap_or_default();
    let segments = list_segments(dir)?;
    let mut wal_bytes = 0u64;
    for (index, (_, path)) in segments.iter().enumerate() {
        let data = fs::read(path).map_err(|e| io_error("reading wal segment", path, e))?;
        let decoded = decode_segment(&data);
        let is_last = index + 1 == segments.len();
        if decoded.valid_len < data.len() {
            if !is_last {
                return Err(StoreError::Corrupt(format!(
                    "wal segment {} is damaged at byte {} and is not the last segment",
                    path.display(),
                    decoded.valid_len
                )));
            }
            tracing::warn!(
                segment = %path.display(),
                valid_bytes = decoded.valid_len,
                dropped_bytes = data.len() - decoded.valid_len,
                "truncating torn tail of the write-ahead log"
            );
            let file = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| io_error("opening wal segment", path, e))?;
            file.set_len(decoded.valid_len as u64)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_error("truncating wal segment", path, e))?;
        }
        wal_bytes += decoded.valid_len as u64;
        for mutation in &decoded.mutations {
            let already_in_snapshot = match mutation {
                Mutation::Put(kv) => kv.mod_revision <= state.revision,
                Mutation::Delete { revision, .. } => *revision <= state.revision,
                Mutation::Compact { revision } => *revision <= state.compacted,
            };
            if !already_in_snapshot {
                state.apply(mutation)?;
            }
        }
    }
    let segment = match segments.last() {
        Some((_, path)) => OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| io_error("opening wal segment", path, e))?,
        None => create_segment(dir, state.revision + 1)?,
    };
    Ok(Recovered {
        state,
        segment,
        wal_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_check_string() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    fn sample_mutations() -> Vec<Mutation> {
        vec![
            Mutation::Put(KeyValue {
                key: "/registry/pods/default/a".into(),
                value: Bytes::from_static(b"{\"x\":1}"),
                create_revision: 1,
                mod_revision: 1,
                version: 1,
            }),
            Mutation::Delete {
                key: "/registry/pods/default/a".into(),
                revision: 2,
            },
            Mutation::Compact { revision: 2 },
        ]
    }

    #[test]
    fn records_round_trip() {
        let mut buf = Vec::new();
        for m in sample_mutations() {
            encode_record(&mut buf, &m);
        }
        let decoded = decode_segment(&buf);
        assert_eq!(decoded.mutations, sample_mutations());
        assert_eq!(decoded.valid_len, buf.len());
    }

    #[test]
    fn damaged_tails_stop_at_the_last_good_record() {
        let mut buf = Vec::new();
        for m in sample_mutations() {
            encode_record(&mut buf, &m);
        }
        let mut first_only = Vec::new();
        encode_record(&mut first_only, &sample_mutations()[0]);
        let good = first_only.len();
        // (description, damage, records expected to survive)
        type Damage = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: Vec<(&str, Damage, usize)> = vec![
            (
                "cut inside second header",
                Box::new(move |b| b.truncate(good + 3)),
                1,
            ),
            (
                "cut inside second payload",
                Box::new(move |b| b.truncate(good + 10)),
                1,
            ),
            (
                "flipped byte in second payload",
                Box::new(move |b| b[good + 9] ^= 0xff),
                1,
            ),
            (
                "zero-filled tail",
                Box::new(|b| b.extend_from_slice(&[0u8; 64])),
                3,
            ),
            (
                "garbage tail",
                Box::new(|b| b.extend_from_slice(b"\xff\xff\xff\x7fgarbage")),
                3,
            ),
            (
                "huge length",
                Box::new(move |b| b[good..good + 4].copy_from_slice(&u32::MAX.to_le_bytes())),
                1,
            ),
        ];
        for (name, damage, survivors) in cases {
            let mut data = buf.clone();
            damage(&mut data);
            let decoded = decode_segment(&data);
            assert_eq!(decoded.mutations.len(), survivors, "{name}");
        }
    }

    #[test]
    fn snapshot_round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = MvccState::default();
        for m in &sample_mutations()[..2] {
            state.apply(m).unwrap();
        }
        state
            .apply(&Mutation::Put(KeyValue {
                key: "/k".into(),
                value: Bytes::from_static(b"v"),
                create_revision: 3,
                mod_revision: 3,
                version: 1,
            }))
            .unwrap();
        write_snapshot(dir.path(), &state).unwrap();
        assert_eq!(read_snapshot(dir.path()).unwrap(), Some(state));
        let path = dir.path().join(SNAPSHOT_FILE);
        let mut data = fs::read(&path).unwrap();
        let middle = data.len() / 2;
        data[middle] ^= 1;
        fs::write(&path, data).unwrap();
        assert!(matches!(
            read_snapshot(dir.path()),
            Err(StoreError::Corrupt(_))
        ));
    }
}
