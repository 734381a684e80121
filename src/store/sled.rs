//! The embedded default: a sled 0.34 database in a folder.
//!
//! Layout: tree `meta` holds the format version and the key hash's secret; per policy, tree
//! `state/<policy>` maps a page number (u64, big-endian) to its occupied slots (16 bytes each:
//! fingerprint and state, little-endian), tree `names/<policy>` maps a fingerprint to the key's
//! bytes, and `meta` keeps `signature/<policy>`. Tree `records` holds named records kept beside
//! the counters (the gate's log of recent denials).

use std::fs::File;
use std::path::{Path, PathBuf};

use super::{PolicyChanges, Saved, Store, StoreError};

/// The on-disk format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

const FORMAT_KEY: &[u8] = b"portcullis/format";
/// How long an open waits for a store this process closed to be released by sled.
pub(crate) const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
const HASH_KEY: &[u8] = b"portcullis/hash_key";

/// A [`Store`] in a sled database.
pub struct SledStore {
    db: std::mem::ManuallyDrop<sled::Db>,
    meta: std::mem::ManuallyDrop<sled::Tree>,
    path: PathBuf,
    /// The fork generation it was opened in: a child forked later must not touch it (sled's
    /// threads are the parent's), not even to drop it.
    born: u64,
}

impl SledStore {
    /// Opens (or creates) the store in `path`, with sled's page cache set to `cache_capacity`
    /// bytes. Refuses a store held by another process, a corrupt one, one that portcullis did
    /// not write, and one of another format version.
    ///
    /// A store this process has just closed can stay locked for a moment while sled's background
    /// threads finish with its files; opening it again waits for that (up to
    /// five seconds). A store held by another process, or still open here, is refused at once.
    pub fn open(path: &Path, cache_capacity: u64) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(cache_capacity)
            .mode(sled::Mode::LowSpace);
        let started = std::time::Instant::now();
        let db = loop {
            match config.open().map_err(|e| open_error(&shown, e)) {
                Err(StoreError::Locked { .. })
                    if closing::recently(path) && started.elapsed() < CLOSE_GRACE =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                other => break other?,
            }
        };
        let meta = db.open_tree("meta").map_err(|e| io(&shown, e))?;
        let store = Self {
            db: std::mem::ManuallyDrop::new(db),
            meta: std::mem::ManuallyDrop::new(meta),
            path: path.to_path_buf(),
            born: crate::core::fork::watch(),
        };
        store.check_format()?;
        Ok(store)
    }

    fn shown(&self) -> String {
        self.path.display().to_string()
    }

    fn check_format(&self) -> Result<(), StoreError> {
        let path = self.shown();
        match self.meta.get(FORMAT_KEY).map_err(|e| io(&path, e))? {
            Some(v) => {
                let bytes: [u8; 4] = v.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    path: path.clone(),
                    detail: format!("the format marker has {} bytes, not 4", v.len()),
                })?;
                let found = u32::from_be_bytes(bytes);
                if found != FORMAT_VERSION {
                    return Err(StoreError::Version {
                        path,
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
                Ok(())
            }
            None => {
                // A new store is empty; anything else was written by someone else.
                let names: Vec<String> = self
                    .db
                    .tree_names()
                    .iter()
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .filter(|n| n != "__sled__default" && n != "meta")
                    .collect();
                if !names.is_empty() || !self.db.is_empty() || !self.meta.is_empty() {
                    return Err(StoreError::Foreign {
                        path,
                        detail: if names.is_empty() {
                            "it holds data but no portcullis format marker".into()
                        } else {
                            format!("it holds trees {}", names.join(", "))
                        },
                    });
                }
                self.meta
                    .insert(FORMAT_KEY, &FORMAT_VERSION.to_be_bytes())
                    .map_err(|e| io(&path, e))?;
                Ok(())
            }
        }
    }

    fn tree(&self, kind: &str, policy: &str) -> Result<sled::Tree, StoreError> {
        self.db
            .open_tree(format!("{kind}/{policy}"))
            .map_err(|e| io(&self.shown(), e))
    }
}

fn io(path: &str, e: sled::Error) -> StoreError {
    match e {
        sled::Error::Corruption { at, .. } => StoreError::Corrupt {
            path: path.into(),
            detail: match at {
                Some(at) => format!("sled found a damaged record at {at:?}"),
                None => "sled found a damaged record".into(),
            },
        },
        other => StoreError::Io {
            path: path.into(),
            detail: other.to_string(),
        },
    }
}

fn open_error(path: &str, e: sled::Error) -> StoreError {
    if let sled::Error::Io(ref err) = e {
        let text = err.to_string();
        if err.kind() == std::io::ErrorKind::WouldBlock || text.contains("lock") {
            return StoreError::Locked { path: path.into() };
        }
    }
    match e {
        sled::Error::Corruption { .. } => io(path, e),
        // sled reports short or garbled files as unsupported or as bugs.
        sled::Error::Unsupported(d) | sled::Error::ReportableBug(d) => StoreError::Corrupt {
            path: path.into(),
            detail: d,
        },
        other => io(path, other),
    }
}

fn encode(entries: &[(u64, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 16);
    for (fp, state) in entries {
        out.extend_from_slice(&fp.to_le_bytes());
        out.extend_from_slice(&state.to_le_bytes());
    }
    out
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

impl Store for SledStore {
    fn hash_key(&self) -> Result<Option<[u8; 16]>, StoreError> {
        let path = self.shown();
        match self.meta.get(HASH_KEY).map_err(|e| io(&path, e))? {
            None => Ok(None),
            Some(v) => v
                .as_ref()
                .try_into()
                .map(Some)
                .map_err(|_| StoreError::Corrupt {
                    path,
                    detail: format!("the key hash secret has {} bytes, not 16", v.len()),
                }),
        }
    }

    fn set_hash_key(&self, key: [u8; 16]) -> Result<(), StoreError> {
        self.meta
            .insert(HASH_KEY, &key)
            .map(|_| ())
            .map_err(|e| io(&self.shown(), e))
    }

    fn load(&self, policy: &str, signature: &str) -> Result<Saved, StoreError> {
        let path = self.shown();
        let sig_key = format!("signature/{policy}");
        let state = self.tree("state", policy)?;
        let names = self.tree("names", policy)?;
        let saved = self.meta.get(&sig_key).map_err(|e| io(&path, e))?;
        if saved.as_deref() != Some(signature.as_bytes()) {
            // A new policy, or one whose algorithm or limits changed: its old state would be
            // misread, so it starts fresh.
            state.clear().map_err(|e| io(&path, e))?;
            names.clear().map_err(|e| io(&path, e))?;
            self.meta
                .insert(sig_key.as_bytes(), signature.as_bytes())
                .map_err(|e| io(&path, e))?;
            return Ok(Saved::default());
        }
        let mut out = Saved::default();
        for item in state.iter() {
            let (k, v) = item.map_err(|e| io(&path, e))?;
            if k.len() != 8 || v.len() % 16 != 0 {
                return Err(StoreError::Corrupt {
                    path,
                    detail: format!(
                        "policy {policy:?}: a page record has a {}-byte key and a {}-byte value",
                        k.len(),
                        v.len()
                    ),
                });
            }
            for at in (0..v.len()).step_by(16) {
                out.entries.push((u64_at(&v, at), u64_at(&v, at + 8)));
            }
        }
        for item in names.iter() {
            let (k, v) = item.map_err(|e| io(&path, e))?;
            if k.len() != 8 {
                return Err(StoreError::Corrupt {
                    path,
                    detail: format!("policy {policy:?}: a key name has a {}-byte id", k.len()),
                });
            }
            let mut fp = [0u8; 8];
            fp.copy_from_slice(&k);
            out.names.push((u64::from_be_bytes(fp), v.to_vec()));
        }
        Ok(out)
    }

    fn write(&self, changes: &[PolicyChanges]) -> Result<(), StoreError> {
        self.forked()?;
        let path = self.shown();
        for c in changes {
            let state = self.tree("state", &c.policy)?;
            let names = self.tree("names", &c.policy)?;
            let mut pages = sled::Batch::default();
            let mut named = sled::Batch::default();
            if c.replace_all {
                for k in state.iter().keys() {
                    pages.remove(k.map_err(|e| io(&path, e))?);
                }
                for k in names.iter().keys() {
                    named.remove(k.map_err(|e| io(&path, e))?);
                }
            }
            for (page, entries) in &c.pages {
                let key = page.to_be_bytes();
                if entries.is_empty() {
                    pages.remove(&key);
                } else {
                    pages.insert(&key, encode(entries));
                }
            }
            for fp in &c.forget {
                named.remove(&fp.to_be_bytes());
            }
            for (fp, name) in &c.names {
                named.insert(&fp.to_be_bytes(), name.as_slice());
            }
            state.apply_batch(pages).map_err(|e| io(&path, e))?;
            names.apply_batch(named).map_err(|e| io(&path, e))?;
        }
        Ok(())
    }

    fn sync(&self, power_loss: bool) -> Result<(), StoreError> {
        self.forked()?;
        let path = self.shown();
        self.db.flush().map_err(|e| io(&path, e))?;
        if power_loss {
            // sled's flush writes with sync_file_range, which survives a process crash but
            // not a power loss; an fsync of the data file makes it durable.
            File::open(self.path.join("db"))
                .and_then(|f| f.sync_all())
                .map_err(|e| StoreError::Io {
                    path,
                    detail: format!("fsync failed: {e}"),
                })?;
        }
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db.size_on_disk().map_err(|e| io(&self.shown(), e))
    }

    fn location(&self) -> String {
        self.shown()
    }

    fn record(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.forked()?;
        let path = self.shown();
        let tree = self.db.open_tree("records").map_err(|e| io(&path, e))?;
        Ok(tree
            .get(name)
            .map_err(|e| io(&path, e))?
            .map(|v| v.to_vec()))
    }

    fn set_record(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.forked()?;
        let path = self.shown();
        let tree = self.db.open_tree("records").map_err(|e| io(&path, e))?;
        tree.insert(name, value)
            .map(|_| ())
            .map_err(|e| io(&path, e))
    }
}

impl SledStore {
    /// Used in a child forked after the open: refuse (sled's threads stayed in the parent).
    fn forked(&self) -> Result<(), StoreError> {
        if crate::core::fork::generation() != self.born {
            return Err(StoreError::Forked { path: self.shown() });
        }
        Ok(())
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        if crate::core::fork::generation() != self.born {
            // In a forked child, dropping sled would wait for threads that are not here:
            // leave it to the process's exit.
            return;
        }
        // SAFETY: dropped once, here; neither field is used after.
        unsafe {
            std::mem::ManuallyDrop::drop(&mut self.meta);
            std::mem::ManuallyDrop::drop(&mut self.db);
        }
        closing::record(&self.path);
    }
}

/// Stores this process closed lately, so a reopen can tell "still being released by sled"
/// from "held by someone else".
mod closing {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::time::Instant;

    static CLOSED: parking_lot::Mutex<Option<HashMap<PathBuf, Instant>>> =
        parking_lot::const_mutex(None);

    fn key(path: &Path) -> PathBuf {
        std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
    }

    pub(super) fn record(path: &Path) {
        let mut closed = CLOSED.lock();
        let map = closed.get_or_insert_with(HashMap::new);
        map.retain(|_, at| at.elapsed() < super::CLOSE_GRACE);
        map.insert(key(path), Instant::now());
    }

    pub(super) fn recently(path: &Path) -> bool {
        CLOSED
            .lock()
            .as_ref()
            .and_then(|m| m.get(&key(path)))
            .is_some_and(|at| at.elapsed() < super::CLOSE_GRACE)
    }
}
