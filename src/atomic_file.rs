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
/// is refused, and so is a missing parent directory (a mistyped directory is
/// not created). The new file keeps the old one's permissions, or gets those
/// of any newly created file (0666 less the umask), not the temporary's 0600.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let target = Target::of(path)?;
    // Removed on any error (the temporary file's drop), renamed on success.
    let mut tmp = target.temporary()?;
    if let Some(meta) = &target.existing {
        tmp.as_file().set_permissions(meta.permissions())?;
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(&target.path)
        .map_err(|e| plain(e.error, format!("cannot replace {}", target.path.display())))?;
    // Makes the rename itself durable. Best effort: the file is complete either
    // way, and some file systems refuse to sync a directory.
    #[cfg(unix)]
    let _ = std::fs::File::open(&target.dir).and_then(|d| d.sync_all());
    Ok(())
}

/// Checks, changing nothing, that [`write_atomically`] could write `path`
/// now: the same refusals, and the same temporary file made (and removed) in
/// the same directory, so a name too long for it or a directory that cannot
/// be written shows before any work whose result would be lost.
pub fn check_writable(path: &Path) -> std::io::Result<()> {
    Target::of(path)?.temporary().map(drop)
}

/// Where a write goes: links followed, a regular file or nothing there yet.
struct Target {
    path: PathBuf,
    dir: PathBuf,
    existing: Option<std::fs::Metadata>,
}

impl Target {
    fn of(path: &Path) -> std::io::Result<Self> {
        // A trailing slash names a directory, whatever is there.
        if path
            .as_os_str()
            .to_string_lossy()
            .ends_with(std::path::is_separator)
        {
            return Err(std::io::Error::other("names a directory"));
        }
        // What the kernel finds at the path: a link into /proc to a pipe
        // (`/dev/stdout` in a pipeline) resolves by hand to no path at all.
        if std::fs::metadata(path).is_ok_and(|meta| !meta.is_file() && !meta.is_dir()) {
            return Err(std::io::Error::other("is not a regular file"));
        }
        let path = resolve_links(path)?;
        let existing = std::fs::metadata(&path).ok();
        match &existing {
            Some(meta) if meta.is_dir() => return Err(std::io::Error::other("is a directory")),
            Some(meta) if !meta.is_file() => {
                return Err(std::io::Error::other("is not a regular file"))
            }
            _ => {}
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} is not a directory", dir.display()),
            ));
        }
        Ok(Self {
            path,
            dir,
            existing,
        })
    }

    /// A new, uniquely named file beside the target, with the permissions of
    /// any new file (0666 less the umask).
    fn temporary(&self) -> std::io::Result<tempfile::NamedTempFile> {
        let name = self.path.file_name().unwrap_or_default().to_string_lossy();
        let prefix = format!(".{name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".partial");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // Passed to open(2), so the umask applies as to any new file.
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        builder
            .tempfile_in(&self.dir)
            .map_err(|e| plain(e, format!("cannot write in {}", self.dir.display())))
    }
}

/// `e` after `context`, without the temporary file's name that tempfile
/// appends (" at path ..."): the user never asked for that file.
fn plain(e: std::io::Error, context: String) -> std::io::Error {
    let why = e.to_string();
    let why = why.split(" at path ").next().unwrap_or_default();
    std::io::Error::new(e.kind(), format!("{context}: {why}"))
}

/// The path a chain of symbolic links at `path` ends at (`path` itself when
/// it is not a link, or does not exist); a loop is an error.
pub fn resolve_links(path: &Path) -> std::io::Result<PathBuf> {
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
    Err(std::io::Error::other("too many levels of symbolic links"))
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
        let path = dir.path().join("out.bin");
        let long: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        write_atomically(&path, &long).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), long);
        write_atomically(&path, b"short").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"short");
        assert_eq!(entries(dir.path()), vec!["out.bin"]);
    }

    #[test]
    fn a_missing_directory_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let typo = dir.path().join("typo");
        let err = write_atomically(&typo.join("out.bin"), b"x").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{} is not a directory", typo.display())
        );
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn the_check_finds_what_the_write_would_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        check_writable(&dir.path().join("fine.json")).unwrap();
        // The temporary's name is 16 bytes longer than the file's.
        let long = dir.path().join("e".repeat(245));
        let err = check_writable(&long).unwrap_err().to_string();
        assert!(err.starts_with("cannot write in "), "{err}");
        assert!(err.contains("too long"), "{err}");
        assert!(!err.contains(".partial"), "{err}");
        let err = check_writable(&dir.path().join("new").join("")).unwrap_err();
        assert_eq!(err.to_string(), "names a directory");
        assert!(entries(dir.path()).is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn new_files_get_the_umask_and_replaced_files_keep_their_mode() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let (fresh, plain) = (dir.path().join("fresh"), dir.path().join("plain"));
        std::fs::write(&plain, b"plain").unwrap();
        write_atomically(&fresh, b"x").unwrap();
        // A file made by File::create gets 0666 less the umask: the same mode.
        assert_eq!(mode(&fresh), mode(&plain));
        let shared = dir.path().join("shared");
        std::fs::write(&shared, b"old").unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomically(&shared, b"new").unwrap();
        assert_eq!(mode(&shared), 0o640);
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
        assert_eq!(err.to_string(), "is not a regular file");
    }

    /// `/dev/stdout` in a pipeline: a link to `/proc/self/fd/1`, a link to
    /// a pipe, which names no file (it used to say "cannot write in
    /// /proc/self/fd").
    #[cfg(target_os = "linux")]
    #[test]
    fn a_pipe_is_refused() {
        use std::os::fd::AsRawFd;
        let (reader, writer) = std::io::pipe().unwrap();
        for end in [reader.as_raw_fd(), writer.as_raw_fd()] {
            let path = PathBuf::from(format!("/proc/self/fd/{end}"));
            let err = write_atomically(&path, b"x").unwrap_err();
            assert_eq!(err.to_string(), "is not a regular file");
        }
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
