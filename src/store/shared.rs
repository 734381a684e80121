//! The shared store: every process that opens the same folder with the same policy uses the
//! same lock-free table, its slots in a file mapped `MAP_SHARED`. nginx workers, gunicorn and
//! uvicorn workers, Node `cluster` workers and pre-forking C servers share one quota this way,
//! with no lock and no system call per check.
//!
//! The folder holds:
//!
//! * `portcullis.meta`: magic, format version and the key hash's secret, which every process
//!   must share for fingerprints to agree;
//! * one `<policy>-<shape>.table` per policy definition (`shape` hashes the policy's algorithm,
//!   parameters and table size): a 4 KiB header (magic, format version, bucket size and count,
//!   claim flags, hash secret, the policy's name and full signature), the claim flags, then
//!   the buckets. A policy whose definition changes gets a new file; the old one is never read
//!   for the new definition.
//! * `portcullis-metrics-v1.board`: where the processes publish their counters for the gate's
//!   metrics (`store/board.rs`; 4 MiB, one slot per process).
//!
//! Files are built under a temporary name, sized with `posix_fallocate` (so a full tmpfs fails
//! at open, never with SIGBUS at a later write), written, and published with `link`, which
//! fails rather than replace a file another process may already map: N processes starting at
//! once agree on one file and none ever sees a half-built one. A file is never truncated.
//!
//! Each process holds a shared `flock` on every table it maps. A table file of a policy whose
//! definition changed is removed when a process opens that policy's new table, if no process
//! holds it and it was last opened more than [`STALE_AFTER`] ago; until then `portcullis
//! inspect` can read it.
//!
//! Durability: state lives in the page cache of the mapped file, so a process crash (even
//! SIGKILL) loses nothing. On a disk folder the kernel writes changed pages back on its own
//! schedule (`vm.dirty_expire_centisecs`, 30 s by default): that much can be lost to a power
//! loss. A policy with `durability = "immediate"` returns a decision that changed a key only
//! after `msync(MS_SYNC)` of its table. A folder on tmpfs (`/dev/shm/...`) is faster and
//! survives process crashes and restarts, but not a reboot.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use super::StoreError;
use crate::core::keyhash;
use crate::core::table::{Bucket, Claim, Region, Table, BUCKET_BYTES, CLAIMS, CLAIM_BYTES};

/// The format of the meta and table files this build reads and writes.
pub const SHARED_FORMAT_VERSION: u32 = 1;

/// How long an unused table of a changed policy is kept for inspection.
pub const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

const META_NAME: &str = "portcullis.meta";
const META_MAGIC: &[u8; 8] = b"PCSHARED";
const META_BYTES: usize = 64;
const TABLE_MAGIC: &[u8; 8] = b"PCTABLE\0";
const HEADER_BYTES: usize = 4096;
const CLAIMS_OFFSET: usize = HEADER_BYTES;
const BUCKETS_OFFSET: usize = CLAIMS_OFFSET + CLAIMS * CLAIM_BYTES;
const NAME_AT: usize = 64;
const NAME_MAX: usize = 256;
const SIGNATURE_AT: usize = 512;
const SIGNATURE_MAX: usize = HEADER_BYTES - SIGNATURE_AT - 4;
const LAST_OPENED_AT: u64 = 56;

/// A folder of tables shared by every process that opens it.
pub struct SharedStore {
    dir: PathBuf,
    hash_key: [u8; 16],
    /// The tables this process mapped, for `msync` and sizes.
    mapped: Mutex<Vec<Arc<Mapping>>>,
}

impl std::fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// One table file mapped into this process.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    path: PathBuf,
    /// Holds the shared `flock` that says the file is in use.
    _file: File,
}

// SAFETY: the mapping is plain shared memory; the table reads and writes it only through
// atomics, and `Mapping` itself only unmaps it once, in `drop`.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what `mmap` returned, unmapped only here; every table
        // over it holds an `Arc` of this mapping, so none is left reading it.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// One table file as found in a store's folder (see [`SharedStore::list`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFile {
    /// The file.
    pub path: PathBuf,
    /// The policy's name.
    pub policy: String,
    /// The policy's signature (its algorithm and parameters).
    pub signature: String,
    /// Slots in the table.
    pub capacity: usize,
    /// When a process last opened it, Unix seconds.
    pub last_opened: u64,
}

fn io(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

fn corrupt(path: &Path, detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: path.display().to_string(),
        detail: detail.into(),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// A name in the folder no other process or thread picks: for files built before `link`.
fn temp_path(dir: &Path, what: &str) -> PathBuf {
    let mut r = [0u8; 8];
    let _ = getrandom::getrandom(&mut r);
    dir.join(format!(
        ".{what}.{}.{:016x}.tmp",
        std::process::id(),
        u64::from_le_bytes(r)
    ))
}

/// Publishes `temp` as `path` unless `path` exists (then the existing file wins); removes `temp`.
fn publish(temp: &Path, path: &Path) -> Result<(), StoreError> {
    let linked = std::fs::hard_link(temp, path);
    let _ = std::fs::remove_file(temp);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io(path, format!("cannot publish {}: {e}", temp.display()))),
    }
}

fn flock(file: &File, op: libc::c_int) -> std::io::Result<()> {
    // SAFETY: `file` is an open descriptor for the duration of the call.
    if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl SharedStore {
    /// Opens (creating it if needed) the shared store in folder `dir`. Safe to call from any
    /// number of processes at once: they all end up with the same secret.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        // Lock tags tell processes apart by their id, kept up to date across forks.
        crate::core::fork::watch();
        match std::fs::metadata(dir) {
            Ok(m) if !m.is_dir() => {
                return Err(io(dir, "is not a folder (the shared store needs a folder)"))
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(|e| io(dir, format!("cannot create: {e}")))?
            }
            Err(e) => return Err(io(dir, e)),
        }
        let meta = dir.join(META_NAME);
        if !meta.exists() {
            let temp = temp_path(dir, "meta");
            let mut bytes = [0u8; META_BYTES];
            bytes[..8].copy_from_slice(META_MAGIC);
            bytes[8..12].copy_from_slice(&SHARED_FORMAT_VERSION.to_le_bytes());
            getrandom::getrandom(&mut bytes[16..32])
                .map_err(|e| io(dir, format!("no randomness for the key hash's secret: {e}")))?;
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)
                .map_err(|e| io(dir, format!("cannot write in the folder: {e}")))?;
            file.write_all_at(&bytes, 0)
                .and_then(|()| file.sync_all())
                .map_err(|e| io(&temp, e))?;
            publish(&temp, &meta)?;
        }
        let hash_key = Self::read_meta(&meta)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            hash_key,
            mapped: Mutex::new(Vec::new()),
        })
    }

    fn read_meta(meta: &Path) -> Result<[u8; 16], StoreError> {
        let mut bytes = Vec::new();
        File::open(meta)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| io(meta, e))?;
        if bytes.len() < 8 || &bytes[..8] != META_MAGIC {
            return Err(StoreError::Foreign {
                path: meta.display().to_string(),
                detail: "no portcullis shared-store header".into(),
            });
        }
        if bytes.len() != META_BYTES {
            return Err(corrupt(
                meta,
                format!("{} bytes, expected {META_BYTES}", bytes.len()),
            ));
        }
        let version = u32_at(&bytes, 8);
        if version != SHARED_FORMAT_VERSION {
            return Err(StoreError::Version {
                path: meta.display().to_string(),
                found: version,
                supported: SHARED_FORMAT_VERSION,
            });
        }
        let mut key = [0u8; 16];
        key.copy_from_slice(&bytes[16..32]);
        Ok(key)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The key hash's secret every process of this store uses.
    pub fn hash_key(&self) -> [u8; 16] {
        self.hash_key
    }

    /// The file of a policy's table: named by the policy and a hash of its signature and size.
    fn table_path(&self, policy: &str, signature: &str, buckets: usize) -> PathBuf {
        let safe: String = policy
            .chars()
            .take(64)
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let shape = format!("{signature}\n{buckets}");
        let h = keyhash::hash(
            0x7063_7368_6172_6564,
            0x7461_626c_6573_0001,
            shape.as_bytes(),
        );
        self.dir.join(format!("{safe}-{h:016x}.table"))
    }

    /// Maps the table of a policy (creating it if no process has yet), for a limiter.
    pub(crate) fn table(
        &self,
        policy: &str,
        signature: &str,
        capacity: usize,
    ) -> Result<Table, StoreError> {
        let buckets = Table::bucket_count(capacity);
        let path = self.table_path(policy, signature, buckets);
        if policy.len() > NAME_MAX || signature.len() > SIGNATURE_MAX {
            return Err(io(
                &path,
                "policy name or signature too long for a table header",
            ));
        }
        let size = BUCKETS_OFFSET + buckets * BUCKET_BYTES;
        let mapping = loop {
            if !path.exists() {
                self.create_table(&path, policy, signature, buckets, size)?;
            }
            let file = match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(f) => f,
                // Removed as stale between the check and the open: build it again.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&path, e)),
            };
            flock(&file, libc::LOCK_SH).map_err(|e| io(&path, e))?;
            // A file removed as stale before our lock was taken is no longer the table: check
            // that the name still refers to what we locked.
            let same = match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if !same {
                continue;
            }
            self.check_header(&file, &path, policy, signature, buckets, size)?;
            let _ = file.write_all_at(&unix_now().to_le_bytes(), LAST_OPENED_AT);
            break Arc::new(map(file, &path, size)?);
        };
        self.remove_stale(policy, &path);
        let base = mapping.ptr.as_ptr();
        // SAFETY (the offsets): the file is `size` bytes, mapped whole; both regions lie
        // inside it, page-aligned plus multiples of 64, so 64-byte aligned.
        let (claims, bucket_ptr) = unsafe {
            (
                NonNull::new_unchecked(base.add(CLAIMS_OFFSET).cast::<Claim>()),
                NonNull::new_unchecked(base.add(BUCKETS_OFFSET).cast::<Bucket>()),
            )
        };
        self.mapped.lock().push(Arc::clone(&mapping));
        let region = Region {
            buckets: bucket_ptr,
            bucket_count: buckets,
            claims,
            owner: Box::new(mapping),
        };
        // SAFETY: the region is the file's claims and buckets, mapped read-write for as long
        // as `owner` (an `Arc` of the mapping) lives; the file was zeroed by
        // `posix_fallocate` at creation and is written only by tables over it, whose header
        // (checked above) has the same bucket count, layout and hash secret as ours.
        Ok(unsafe { Table::over_region(region, self.hash_key) })
    }

    fn create_table(
        &self,
        path: &Path,
        policy: &str,
        signature: &str,
        buckets: usize,
        size: usize,
    ) -> Result<(), StoreError> {
        let temp = temp_path(&self.dir, "table");
        let result = (|| {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)
                .map_err(|e| io(&self.dir, format!("cannot write in the folder: {e}")))?;
            // SAFETY: a valid descriptor; offsets are in range for `off_t` on 64-bit Linux.
            let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, size as libc::off_t) };
            if rc != 0 {
                return Err(io(
                    path,
                    format!(
                        "cannot reserve {size} bytes for the table: {}",
                        std::io::Error::from_raw_os_error(rc)
                    ),
                ));
            }
            let mut header = vec![0u8; HEADER_BYTES];
            header[..8].copy_from_slice(TABLE_MAGIC);
            header[8..12].copy_from_slice(&SHARED_FORMAT_VERSION.to_le_bytes());
            header[12..16].copy_from_slice(&(BUCKET_BYTES as u32).to_le_bytes());
            header[16..24].copy_from_slice(&(buckets as u64).to_le_bytes());
            header[24..28].copy_from_slice(&(CLAIMS as u32).to_le_bytes());
            header[28..32].copy_from_slice(&(CLAIM_BYTES as u32).to_le_bytes());
            header[32..48].copy_from_slice(&self.hash_key);
            header[48..56].copy_from_slice(&unix_now().to_le_bytes());
            header[NAME_AT..NAME_AT + 4].copy_from_slice(&(policy.len() as u32).to_le_bytes());
            header[NAME_AT + 4..NAME_AT + 4 + policy.len()].copy_from_slice(policy.as_bytes());
            header[SIGNATURE_AT..SIGNATURE_AT + 4]
                .copy_from_slice(&(signature.len() as u32).to_le_bytes());
            header[SIGNATURE_AT + 4..SIGNATURE_AT + 4 + signature.len()]
                .copy_from_slice(signature.as_bytes());
            file.write_all_at(&header, 0).map_err(|e| io(&temp, e))?;
            file.sync_all().map_err(|e| io(&temp, e))?;
            Ok(())
        })();
        match result {
            Ok(()) => publish(&temp, path),
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                Err(e)
            }
        }
    }

    fn check_header(
        &self,
        file: &File,
        path: &Path,
        policy: &str,
        signature: &str,
        buckets: usize,
        size: usize,
    ) -> Result<(), StoreError> {
        let found = read_header(file, path)?;
        let mismatch = |what: &str, found: String, expected: String| {
            corrupt(
                path,
                format!("{what} is {found}, expected {expected}; the file was left untouched"),
            )
        };
        if found.key != self.hash_key {
            return Err(mismatch(
                "the key hash's secret",
                "another store's".into(),
                format!("this store's ({})", self.dir.join(META_NAME).display()),
            ));
        }
        if found.info.capacity != buckets * 4 {
            return Err(mismatch(
                "the table size",
                format!("{} slots", found.info.capacity),
                format!("{} slots", buckets * 4),
            ));
        }
        if found.info.policy != policy || found.info.signature != signature {
            return Err(mismatch(
                "the policy",
                format!("{:?} ({})", found.info.policy, found.info.signature),
                format!("{policy:?} ({signature})"),
            ));
        }
        if found.file_len != size as u64 {
            return Err(mismatch(
                "the file size",
                format!("{} bytes", found.file_len),
                format!("{size} bytes (truncated or grown by something else)"),
            ));
        }
        Ok(())
    }

    /// Removes the tables of `policy` other than `current` that no process holds and that
    /// were last opened more than [`STALE_AFTER`] ago.
    fn remove_stale(&self, policy: &str, current: &Path) {
        let Ok(list) = Self::list(&self.dir) else {
            return;
        };
        let cutoff = unix_now().saturating_sub(STALE_AFTER.as_secs());
        for t in list {
            if t.path == current || t.policy != policy || t.last_opened > cutoff {
                continue;
            }
            let Ok(file) = File::open(&t.path) else {
                continue;
            };
            // Held by a process (shared lock): still in use, keep it.
            if flock(&file, libc::LOCK_EX | libc::LOCK_NB).is_ok() {
                let _ = std::fs::remove_file(&t.path);
            }
        }
    }

    /// The table files in a store's folder, for `portcullis inspect`.
    pub fn list(dir: &Path) -> Result<Vec<TableFile>, StoreError> {
        let mut out = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(|e| io(dir, e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("table") {
                continue;
            }
            if let Ok(file) = File::open(&path) {
                if let Ok(h) = read_header(&file, &path) {
                    out.push(h.info);
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Makes every table this process mapped durable against a power loss (`msync`).
    pub fn sync(&self) -> Result<(), StoreError> {
        for m in self.mapped.lock().iter() {
            // SAFETY: the range is a live mapping of this process (held by the `Arc`).
            let rc = unsafe { libc::msync(m.ptr.as_ptr().cast(), m.len, libc::MS_SYNC) };
            if rc != 0 {
                return Err(io(&m.path, std::io::Error::last_os_error()));
            }
        }
        Ok(())
    }

    /// Bytes of the table files this process mapped.
    pub fn size_on_disk(&self) -> u64 {
        self.mapped.lock().iter().map(|m| m.len as u64).sum()
    }
}

struct Header {
    info: TableFile,
    key: [u8; 16],
    file_len: u64,
}

fn read_header(file: &File, path: &Path) -> Result<Header, StoreError> {
    let file_len = file.metadata().map_err(|e| io(path, e))?.len();
    let mut h = vec![0u8; HEADER_BYTES];
    let mut read = 0;
    while read < HEADER_BYTES {
        match file.read_at(&mut h[read..], read as u64) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(io(path, e)),
        }
    }
    if read < 8 || &h[..8] != TABLE_MAGIC {
        return Err(StoreError::Foreign {
            path: path.display().to_string(),
            detail: "no portcullis table header".into(),
        });
    }
    if read < HEADER_BYTES {
        return Err(corrupt(
            path,
            format!("truncated: {file_len} bytes, shorter than its header"),
        ));
    }
    let version = u32_at(&h, 8);
    if version != SHARED_FORMAT_VERSION {
        return Err(StoreError::Version {
            path: path.display().to_string(),
            found: version,
            supported: SHARED_FORMAT_VERSION,
        });
    }
    if u32_at(&h, 12) as usize != BUCKET_BYTES
        || u32_at(&h, 24) as usize != CLAIMS
        || u32_at(&h, 28) as usize != CLAIM_BYTES
    {
        return Err(corrupt(
            path,
            format!(
                "layout is {}-byte buckets and {} claims of {} bytes, this build uses {BUCKET_BYTES}, {CLAIMS} and {CLAIM_BYTES}",
                u32_at(&h, 12),
                u32_at(&h, 24),
                u32_at(&h, 28)
            ),
        ));
    }
    let buckets = u64_at(&h, 16);
    if !buckets.is_power_of_two() || buckets > (1 << 40) {
        return Err(corrupt(
            path,
            format!("bucket count {buckets} is not valid"),
        ));
    }
    let text = |at: usize, max: usize| -> Result<String, StoreError> {
        let n = u32_at(&h, at) as usize;
        if n > max {
            return Err(corrupt(path, "header text too long"));
        }
        String::from_utf8(h[at + 4..at + 4 + n].to_vec())
            .map_err(|_| corrupt(path, "header text is not UTF-8"))
    };
    let mut key = [0u8; 16];
    key.copy_from_slice(&h[32..48]);
    Ok(Header {
        info: TableFile {
            path: path.to_path_buf(),
            policy: text(NAME_AT, NAME_MAX)?,
            signature: text(SIGNATURE_AT, SIGNATURE_MAX)?,
            capacity: buckets as usize * 4,
            last_opened: u64_at(&h, LAST_OPENED_AT as usize),
        },
        key,
        file_len,
    })
}

fn map(file: File, path: &Path, len: usize) -> Result<Mapping, StoreError> {
    // SAFETY: a fresh shared read-write mapping of `len` bytes of an open file at least that
    // long (checked by the header check); the kernel picks the address.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io(
            path,
            format!("cannot map: {}", std::io::Error::last_os_error()),
        ));
    }
    Ok(Mapping {
        ptr: NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io(path, "mapped at address 0"))?,
        len,
        path: path.to_path_buf(),
        _file: file,
    })
}
