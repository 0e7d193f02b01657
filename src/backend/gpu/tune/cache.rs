//! The kernel cache file: the tuner's choices, by adapter, driver and product,
//! kept across runs so a second run starts at once. This module's one job is
//! that file:
//!
//! - where it is: `$GPU_MNIST_KERNEL_CACHE`, else `kernels.json` in the user
//!   cache directory;
//! - which file is its own: a format line tells the cache's file, whole or
//!   damaged (a damaged one is ignored and rebuilt), from any other file the
//!   variable might name (a checkpoint named by mistake), which it never
//!   replaces or removes;
//! - saving a choice: under a lock on `<path>.lock` the file is read again,
//!   and either a choice another process saved meanwhile is adopted or this
//!   one is added and the file written whole, atomically; so runs measuring
//!   at once keep every choice and agree on each.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Choice;

/// The log target of the cache's warnings (a damaged or foreign file, one
/// that cannot be written), which the CLI shows whatever `RUST_LOG` says:
/// they are about a file of the user's, not the program's internals.
pub const WARNING_TARGET: &str = "gpu_mnist::kernel_cache";

/// Environment variable naming the cache file instead of the default.
pub const CACHE_ENV: &str = "GPU_MNIST_KERNEL_CACHE";

/// The cache file: `$GPU_MNIST_KERNEL_CACHE`, else `kernels.json` in the user
/// cache directory.
pub fn path() -> Option<PathBuf> {
    match std::env::var_os(CACHE_ENV).filter(|v| !v.is_empty()) {
        Some(path) => Some(PathBuf::from(path)),
        None => Some(crate::user_cache_dir()?.join("kernels.json")),
    }
}

/// What the cache file says of one key.
pub enum Lookup {
    /// The choice saved for the key.
    Saved(Choice),
    /// No choice (or none `known`) is saved; `writable`: whether a choice
    /// measured now may be saved, i.e. the path holds nothing or the cache's
    /// own file.
    Unsaved { writable: bool },
}

/// The choice saved for `key` in the file at `path`, if `known` accepts it.
pub fn lookup(path: &Path, key: &str, known: impl Fn(&Choice) -> bool) -> Lookup {
    let cache = read(path);
    match cache.choices.get(key).filter(|c| known(c)) {
        Some(saved) => Lookup::Saved(saved.clone()),
        None => Lookup::Unsaved {
            writable: cache.ours,
        },
    }
}

/// The choice every process uses for `key`: the cache file's, when another
/// process saved one (that `known` accepts) while this one measured, so that
/// two runs started together still compute alike; else `choice`, added to
/// the file. A file that cannot be written is warned of, and `choice` used.
pub fn settle(path: &Path, key: String, choice: Choice, known: impl Fn(&Choice) -> bool) -> Choice {
    settle_locked(path, key, choice.clone(), known).unwrap_or_else(|e| {
        warn_once(path, &format!("cannot write it: {e}"));
        choice
    })
}

/// Removes the cache file, so the next device opened measures again. A file
/// at the path that is not a cache is refused, not removed.
pub fn forget(path: &Path) -> std::io::Result<()> {
    match crate::input_file::read_bounded(path, MAX_CACHE_BYTES) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Ok(bytes) if !matches!(recognise(&bytes), Contents::Foreign) => std::fs::remove_file(path),
        _ => Err(std::io::Error::other(format!(
            "{} is not a kernel cache; not removing it (check {CACHE_ENV})",
            path.display()
        ))),
    }
}

/// Far more than any number of adapters and shapes needs.
const MAX_CACHE_BYTES: u64 = 16 << 20;

/// The cache file: choices by adapter and product, under a format line by
/// which the cache tells its own file (whole or damaged) from any other file
/// the variable might name, which it never replaces or removes. (The tuner's
/// tests read and edit it.)
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub(super) struct CacheFile {
    format: String,
    pub(super) choices: BTreeMap<String, Choice>,
}

pub(crate) const CACHE_FORMAT: &str = "gpu-mnist kernel choices";

/// What the cache path holds.
struct Cached {
    choices: BTreeMap<String, Choice>,
    /// Nothing, or the cache's own file (even damaged): it may be written.
    ours: bool,
}

/// One warning per process: the cache is read once per matmul shape.
fn warn_once(path: &Path, why: &str) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        log::warn!(target: WARNING_TARGET, "kernel cache {}: {why}", path.display());
    }
}

fn read(path: &Path) -> Cached {
    let fresh = |ours| Cached {
        choices: BTreeMap::new(),
        ours,
    };
    let bytes = match crate::input_file::read_bounded(path, MAX_CACHE_BYTES) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return fresh(true),
        Err(e) => {
            warn_once(path, &format!("{e}; choices are measured and not saved"));
            return fresh(false);
        }
    };
    match recognise(&bytes) {
        Contents::Cache(choices) => Cached {
            choices,
            ours: true,
        },
        Contents::Damaged => {
            warn_once(
                path,
                "damaged; choices are measured again and the file rebuilt",
            );
            fresh(true)
        }
        Contents::Foreign => {
            warn_once(
                path,
                "is some other file, left as it is; choices are measured and not saved",
            );
            fresh(false)
        }
    }
}

/// What a file at the cache path turns out to be.
enum Contents {
    Cache(BTreeMap<String, Choice>),
    /// Empty, or cut short: the format line is there, the rest is not.
    Damaged,
    Foreign,
}

fn recognise(bytes: &[u8]) -> Contents {
    match serde_json::from_slice::<CacheFile>(bytes) {
        Ok(file) if file.format == CACHE_FORMAT => return Contents::Cache(file.choices),
        _ => {}
    }
    // Earlier versions wrote the choices alone: kept, and rewritten in this
    // format with the next choice made.
    if let Ok(choices) = serde_json::from_slice(bytes) {
        return Contents::Cache(choices);
    }
    let head = &bytes[..bytes.len().min(256)];
    let marked = head
        .windows(CACHE_FORMAT.len())
        .any(|w| w == CACHE_FORMAT.as_bytes());
    if marked || head.iter().all(u8::is_ascii_whitespace) {
        Contents::Damaged
    } else {
        Contents::Foreign
    }
}

/// [`settle`], failing where the file cannot be locked or written. Under an
/// exclusive lock on `<path>.lock`, the file is read again and written whole.
fn settle_locked(
    path: &Path,
    key: String,
    choice: Choice,
    known: impl Fn(&Choice) -> bool,
) -> std::io::Result<Choice> {
    // Held until the file is written: no other process saves in between.
    let _lock = lock(path)?;
    let mut cache = read(path);
    if let Some(saved) = cache.choices.get(&key).filter(|c| known(c)) {
        return Ok(saved.clone());
    }
    if !cache.ours {
        return Ok(choice);
    }
    cache.choices.insert(key, choice.clone());
    write(path, cache.choices)?;
    Ok(choice)
}

/// `<path>.lock`, created if need be and locked exclusively where the file
/// system can (released when the file is dropped).
fn lock(path: &Path) -> std::io::Result<std::fs::File> {
    // The cache's own directory is made on first use.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)?;
    match lock.lock() {
        // A file system without locks (some network mounts) still gets the
        // re-read, as without a lock.
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => Ok(lock),
        locked => locked.map(|()| lock),
    }
}

/// Writes `choices` to `path` in the cache's format, atomically.
fn write(path: &Path, choices: BTreeMap<String, Choice>) -> std::io::Result<()> {
    let file = CacheFile {
        format: CACHE_FORMAT.into(),
        choices,
    };
    let bytes = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
    crate::atomic_file::write_atomically(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_tells_its_files_from_others() {
        let choice = Choice {
            product: "NN".into(),
            kernel: "scalar".into(),
            trials: Vec::new(),
            host_checked: true,
        };
        let choices = BTreeMap::from([("key".to_string(), choice)]);
        let file = CacheFile {
            format: CACHE_FORMAT.into(),
            choices: choices.clone(),
        };
        let whole = serde_json::to_vec_pretty(&file).unwrap();
        assert!(matches!(recognise(&whole), Contents::Cache(c) if c == choices));
        // An earlier version's file: the choices alone.
        let older = serde_json::to_vec(&choices).unwrap();
        assert!(matches!(recognise(&older), Contents::Cache(c) if c == choices));
        assert!(matches!(
            recognise(&whole[..whole.len() / 2]),
            Contents::Damaged
        ));
        assert!(matches!(recognise(b""), Contents::Damaged));
        assert!(matches!(recognise(br#"{"epochs": []}"#), Contents::Foreign));
        assert!(matches!(
            recognise(b"\x10\0\0\0\0\0\0\0{}"),
            Contents::Foreign
        ));
    }
}
