//! Whole-file writes that a crash or a concurrent reader never sees half done:
//! caches, checkpoints and reports are either the old file, the new one, or absent.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` through a uniquely named temporary file in the
/// same directory (so the rename stays on one file system), synced before the
/// rename replaces `path`, and the directory synced after it. On error the
/// temporary file is removed and `path` is left as it was.
///
/// A symbolic link is followed: the file it points to is replaced and the link
/// stays. A path that is a directory, a device or any other non-regular file
/// is refused. Missing parent directories are created.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let path = resolve_links(path)?;
    if let Ok(meta) = std::fs::metadata(&path) {
        if !meta.is_file() {
            return Err(std::io::Error::other(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    // Removed on any error (the temporary file's drop), renamed on success.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".partial")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(&path).map_err(|e| e.error)?;
    // Makes the rename itself durable. Best effort: the file is complete either
    // way, and some file systems refuse to sync a directory.
    #[cfg(unix)]
    let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    Ok(())
}

/// The path a chain of symbolic links at `path` ends at (`path` itself when
/// it is not a link, or does not exist).
fn resolve_links(path: &Path) -> std::io::Result<PathBuf> {
    let mut path = path.to_path_buf();
    // As the kernel does, give up on a chain too long to be anything but a loop.
    for _ in 0..40 {
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(&path)?;
                path = match path.parent() {
                    Some(dir) => dir.join(target),
                    None => target,
                };
            }
            _ => return Ok(path),
        }
    }
    Err(std::io::Error::other(format!(
        "{}: too many levels of symbolic links",
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_then_replaces_the_whole_file_leaving_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("out.bin");
        let long: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        write_atomically(&path, &long).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), long);
        write_atomically(&path, b"short").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"short");
        assert_eq!(entries(path.parent().unwrap()), vec!["out.bin"]);
    }

    #[test]
    fn fails_when_the_parent_is_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"keep").unwrap();
        assert!(write_atomically(&file.join("out.bin"), b"data").is_err());
        assert_eq!(std::fs::read(&file).unwrap(), b"keep");
        assert_eq!(entries(dir.path()), vec!["file"]);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_is_followed_and_stays_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let (target, link) = (dir.path().join("real.json"), dir.path().join("link.json"));
        std::fs::write(&target, b"old").unwrap();
        std::os::unix::fs::symlink("real.json", &link).unwrap();
        write_atomically(&link, b"new").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(entries(dir.path()), vec!["link.json", "real.json"]);
        // A loop of links is refused, not followed forever.
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        let err = write_atomically(&a, b"x").unwrap_err();
        assert!(err.to_string().contains("too many levels"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_device_is_refused() {
        let err = write_atomically(Path::new("/dev/null"), b"x").unwrap_err();
        assert_eq!(err.to_string(), "/dev/null is not a regular file");
    }

    #[test]
    fn failed_rename_removes_the_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("taken");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), b"x").unwrap();
        assert!(write_atomically(&target, b"data").is_err());
        assert_eq!(entries(dir.path()), vec!["taken"]);
        assert_eq!(entries(&target), vec!["inside"]);
    }
}
