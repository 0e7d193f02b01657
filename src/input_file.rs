//! Opening and reading the files a user names (checkpoints, histories,
//! pictures, data files, caches) so that a wrong name can neither hang the
//! program nor exhaust its memory: only regular files are opened (a FIFO
//! would block `open` until a writer appears, `/dev/zero` never ends), and a
//! read stops at a bound the caller states.

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Opens `path` (links followed) if it is a regular file.
pub fn open_regular(path: &Path) -> std::io::Result<File> {
    // Asked before opening: opening a FIFO blocks until it has a writer.
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    let file = File::open(path)?;
    // The name may have been swapped in between: a swap to a FIFO has
    // blocked by now, but a swap to a device or directory is still caught.
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("is not a regular file"));
    }
    Ok(file)
}

/// The whole of the regular file `path`, refused when longer than `limit` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    read_file_bounded(open_regular(path)?, limit)
}

/// The whole of `file`, opened by [`open_regular`] and standing at its start,
/// refused when longer than `limit` bytes.
pub fn read_file_bounded(file: File, limit: u64) -> std::io::Result<Vec<u8>> {
    let len = file.metadata()?.len();
    if len > limit {
        return Err(too_large(len, limit));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // The bound holds even if the file grows while it is read.
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64, limit));
    }
    Ok(bytes)
}

fn not_regular(meta: &std::fs::Metadata) -> std::io::Error {
    let kind = if meta.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    };
    std::io::Error::other(format!("is {kind}"))
}

fn too_large(len: u64, limit: u64) -> std::io::Error {
    std::io::Error::other(format!(
        "is {} bytes, more than the {} this file can be",
        len, limit
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_file_within_its_bound_and_refuses_a_longer_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").unwrap();
        assert_eq!(read_bounded(&path, 5).unwrap(), b"12345");
        let err = read_bounded(&path, 4).unwrap_err();
        assert_eq!(
            err.to_string(),
            "is 5 bytes, more than the 4 this file can be"
        );
    }

    #[test]
    fn a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_bounded(dir.path(), 10).unwrap_err();
        assert_eq!(err.to_string(), "is a directory");
    }

    #[cfg(unix)]
    #[test]
    fn devices_and_fifos_are_refused_without_blocking() {
        let err = read_bounded(Path::new("/dev/zero"), 10).unwrap_err();
        assert_eq!(err.to_string(), "is not a regular file");
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Opening it for reading would block until a writer came.
        let err = open_regular(&fifo).unwrap_err();
        assert_eq!(err.to_string(), "is not a regular file");
    }
}
