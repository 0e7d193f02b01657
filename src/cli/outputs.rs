//! The files a command will write, checked before it does any work: each one
//! [`check_writable`] (the atomic write's own checks, its temporary file made
//! and removed), not read-only, not one of the tool's own kinds of file
//! that the output is not (a checkpoint named as `--history`) unless the
//! user says `--overwrite`, and none the same file as another output or as
//! a file the command reads (a checkpoint, a history, the data set's own
//! files), so a typo can neither waste a run nor replace what the user had.

use std::path::{Path, PathBuf};

use gpu_mnist::atomic_file::{check_writable, resolve_links};
use gpu_mnist::file_kind::FileKind;

use super::args::DataArgs;
use super::commands::CliError;

/// What an output writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    Checkpoint,
    PytorchExport,
    Json,
    Csv,
    Picture,
}

impl Writes {
    /// Whether it may replace a file of `kind` without `--overwrite`: one of
    /// its own kind (the next run's history over the last one's).
    fn replaces(self, kind: FileKind) -> bool {
        matches!(
            (self, kind),
            (Writes::Checkpoint, FileKind::Checkpoint)
                | (Writes::PytorchExport, FileKind::Safetensors)
                | (Writes::Json, FileKind::Json)
                | (Writes::Csv, FileKind::Csv)
                | (Writes::Picture, FileKind::Png | FileKind::Svg)
        )
    }

    fn describe(self) -> &'static str {
        match self {
            Writes::Checkpoint => "a checkpoint",
            Writes::PytorchExport => "a PyTorch export",
            Writes::Json => "JSON",
            Writes::Csv => "a CSV log",
            Writes::Picture => "a plot",
        }
    }
}

/// Files already spoken for, each with what it is (for the message).
#[derive(Default)]
pub struct Outputs {
    taken: Vec<(String, FileId)>,
    overwrite: bool,
}

impl Outputs {
    /// `--overwrite`: outputs may replace files of other kinds.
    pub fn overwrite(mut self, yes: bool) -> Self {
        self.overwrite = yes;
        self
    }

    /// A file the command reads, which no output may replace.
    pub fn reads(mut self, what: &str, path: &Path) -> Self {
        self.taken.push((what.to_string(), identity(path)));
        self
    }

    /// The data set's files wherever the command may look for them, which no
    /// output may replace.
    pub fn reads_data(mut self, data: &DataArgs) -> Self {
        let set = data.dataset.0;
        let dirs = match &data.data_dir {
            Some(dir) => vec![dir.clone()],
            None => set.default_search_dirs(),
        };
        for dir in dirs {
            for found in set.files().iter().filter_map(|f| f.find_in(&dir)) {
                self.taken.push(("a data file".into(), identity(&found)));
            }
        }
        self
    }

    /// Checks that `path`, named by `flag`, can be written with what `writes`.
    pub fn check(&mut self, flag: &str, path: &Path, writes: Writes) -> Result<(), CliError> {
        check_writable(path).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
        let id = identity(path);
        if let Some((other, _)) = self.taken.iter().find(|(_, p)| *p == id) {
            return Err(format!(
                "{flag} {} is also {other}: each output needs a file of its own",
                path.display()
            )
            .into());
        }
        // An atomic write renames over a file whatever its permissions.
        if std::fs::metadata(path).is_ok_and(|m| m.permissions().readonly()) {
            return Err(format!(
                "{flag} {}: the file is read-only; not replacing it",
                path.display()
            )
            .into());
        }
        if let Some(kind) = FileKind::of(path).filter(|&k| !self.overwrite && !writes.replaces(k)) {
            return Err(format!(
                "{flag} {} is {}; not replacing it with {} (pass --overwrite to)",
                path.display(),
                kind.describe(),
                writes.describe()
            )
            .into());
        }
        self.taken.push((flag.to_string(), id));
        Ok(())
    }

    /// [`Self::check`] of each `(flag, path, writes)` given.
    pub fn check_all<'a>(
        mut self,
        outputs: impl IntoIterator<Item = (&'a str, Option<&'a PathBuf>, Writes)>,
    ) -> Result<(), CliError> {
        for (flag, path, writes) in outputs {
            if let Some(path) = path {
                self.check(flag, path, writes)?;
            }
        }
        Ok(())
    }
}

/// Whether `a` and `b` name the same file (as [`Outputs`] judges a clash).
pub fn same_file(a: &Path, b: &Path) -> bool {
    identity(a) == identity(b)
}

/// The file a path names: on unix, an existing file's device and inode (so a
/// hard link is the same file); else the path, links and `..` resolved as far
/// as it exists.
fn identity(path: &Path) -> FileId {
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::MetadataExt;
        return FileId::Inode(meta.dev(), meta.ino());
    }
    if let Ok(real) = std::fs::canonicalize(path) {
        return FileId::Path(real);
    }
    let path = resolve_links(path).unwrap_or_else(|_| path.to_path_buf());
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let parent = std::fs::canonicalize(&parent).unwrap_or(parent);
    FileId::Path(parent.join(path.file_name().unwrap_or_default()))
}

#[derive(Debug, PartialEq, Eq)]
enum FileId {
    #[cfg(unix)]
    Inode(u64, u64),
    Path(PathBuf),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: Result<(), CliError>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn an_output_may_not_replace_an_input_or_another_output() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model.safetensors");
        std::fs::write(&model, b"weights").unwrap();
        let mut outputs = Outputs::default().reads("the checkpoint", &model);
        let again = dir.path().join(".").join("model.safetensors");
        assert_eq!(
            message(outputs.check("--json", &again, Writes::Json)),
            format!(
                "--json {} is also the checkpoint: each output needs a file of its own",
                again.display()
            )
        );
        let report = dir.path().join("report.json");
        outputs.check("--json", &report, Writes::Json).unwrap();
        assert!(message(outputs.check("--csv", &report, Writes::Csv)).contains("is also --json"));
        assert_eq!(std::fs::read(&model).unwrap(), b"weights");
    }

    #[test]
    fn a_missing_directory_or_a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let typo = dir.path().join("typo").join("out.json");
        assert_eq!(
            message(Outputs::default().check("-o", &typo, Writes::Json)),
            format!(
                "-o {}: {} is not a directory",
                typo.display(),
                typo.parent().unwrap().display()
            )
        );
        assert!(
            message(Outputs::default().check("-o", dir.path(), Writes::Json))
                .ends_with("is a directory")
        );
        assert!(!dir.path().join("typo").exists());
    }

    #[cfg(unix)]
    #[test]
    fn links_are_judged_by_where_they_end() {
        let dir = tempfile::tempdir().unwrap();
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("gone").join("x"), &dangling).unwrap();
        let why = message(Outputs::default().check("--save", &dangling, Writes::Checkpoint));
        let gone = dir.path().join("gone");
        assert!(
            why.ends_with(&format!("{} is not a directory", gone.display())),
            "{why}"
        );
        assert!(!dir.path().join("gone").exists());
        // A link to a new file in an existing directory is fine.
        let ahead = dir.path().join("ahead");
        std::os::unix::fs::symlink(dir.path().join("new.json"), &ahead).unwrap();
        Outputs::default()
            .check("--save", &ahead, Writes::Checkpoint)
            .unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        let why = message(Outputs::default().check("--save", &a, Writes::Checkpoint));
        assert!(why.ends_with("too many levels of symbolic links"), "{why}");
        // Through a link, an input is still recognised.
        let model = dir.path().join("model");
        std::fs::write(&model, b"w").unwrap();
        let alias = dir.path().join("alias");
        std::os::unix::fs::symlink(&model, &alias).unwrap();
        let mut outputs = Outputs::default().reads("the checkpoint", &model);
        assert!(
            message(outputs.check("-o", &alias, Writes::Json)).contains("is also the checkpoint")
        );
        // And through a hard link.
        let hard = dir.path().join("hard");
        std::fs::hard_link(&model, &hard).unwrap();
        assert!(
            message(outputs.check("-o", &hard, Writes::Json)).contains("is also the checkpoint")
        );
    }

    #[cfg(unix)]
    #[test]
    fn devices_are_refused() {
        let why = message(Outputs::default().check("--json", Path::new("/dev/null"), Writes::Json));
        assert_eq!(why, "--json /dev/null: is not a regular file");
    }
}
