//! Whole-file writes that a crash or a concurrent reader never sees half done:
//! caches, checkpoints and reports are either the old file, the new one, or absent.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same directory (so the
/// rename stays on one file system) that is synced before the rename replaces
/// `path`. On error the temporary file is removed and `path` is left as it was.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.partial", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    // Makes the rename itself durable. Best effort: the file is complete either
    // way, and some file systems refuse to sync a directory.
    #[cfg(unix)]
    let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    Ok(())
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
