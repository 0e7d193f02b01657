//! Where a catalogue data set's four files come from: an explicit directory,
//! the data set's environment variable, `data/<name>` under the working
//! directory, a system package's directory, or the per-user cache (filled by a
//! verified download when nothing else has them).

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::catalog::{self, DataSet};
use super::dataset::{Dataset, Splits};
use super::download::{self, DownloadError, Progress};
use super::idx::{self, IdxError};

/// Environment variable with a comma-separated list of mirror base URLs that
/// replaces the defaults of the data set asked for (for private mirrors and
/// for tests).
pub const MIRRORS_ENV: &str = "GPU_MNIST_MIRRORS";

/// Why the per-user cache could not supply the files.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("downloading is disabled")]
    Disabled,
    #[error("no cache directory: neither XDG_CACHE_HOME nor HOME is set")]
    NoCacheDir,
    #[error(transparent)]
    Download(#[from] DownloadError),
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{0}")]
    Idx(#[from] IdxError),
    #[error(
        "{title} files not found in {dir}: missing {missing}",
        title = .set.title,
        dir = .dir.display(),
        missing = .missing.join(", ")
    )]
    MissingInExplicitDir {
        set: &'static DataSet,
        dir: PathBuf,
        missing: Vec<String>,
    },
    #[error(
        "{title} files ({files}) not found in {searched} and the download failed ({cause}); \
         pass --data-dir DIR (or set {env}) to a directory holding them",
        title = .set.title,
        env = .set.data_env,
        files = .set.files().map(|f| f.stem).join(", "),
        searched = .searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    Unavailable {
        set: &'static DataSet,
        searched: Vec<PathBuf>,
        cause: FetchError,
    },
}

impl DataSet {
    /// Mirror base URLs: `GPU_MNIST_MIRRORS` when set, else the public ones.
    pub fn mirror_urls(&self) -> Vec<String> {
        match std::env::var(MIRRORS_ENV) {
            Ok(list) if !list.trim().is_empty() => list
                .split(',')
                .map(|m| m.trim().to_string())
                .filter(|m| !m.is_empty())
                .collect(),
            _ => self.mirrors.iter().map(|m| m.to_string()).collect(),
        }
    }

    /// Directories searched when no `--data-dir` is given, in order.
    pub fn default_search_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if let Some(env) = std::env::var_os(self.data_env).filter(|v| !v.is_empty()) {
            dirs.push(PathBuf::from(env));
        }
        dirs.push(PathBuf::from("data").join(self.name));
        dirs.extend(self.system_dirs.iter().map(PathBuf::from));
        dirs.extend(self.cache_dir());
        dirs
    }

    /// Paths of the `wanted` files (indices into [`DataSet::files`]) in
    /// `dir`, or the stems that are missing.
    fn complete_set(&self, dir: &Path, wanted: Range<usize>) -> Result<Vec<PathBuf>, Vec<String>> {
        let files = &self.files()[wanted];
        let found: Vec<Option<PathBuf>> = files.iter().map(|f| f.find_in(dir)).collect();
        let missing: Vec<String> = files
            .iter()
            .zip(&found)
            .filter(|(_, p)| p.is_none())
            .map(|(f, _)| f.stem.to_string())
            .collect();
        if missing.is_empty() {
            Ok(found.into_iter().flatten().collect())
        } else {
            Err(missing)
        }
    }

    /// Downloads any of the four files that `dir` lacks from the mirrors, and
    /// returns their paths once all four are verified.
    pub fn download_all(
        &self,
        dir: &Path,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<[PathBuf; 4], DownloadError> {
        let files = self.files().map(|f| f.remote());
        let paths = download::download_files(
            dir,
            &files,
            &self.mirror_urls(),
            &catalog::identify,
            progress,
        )?;
        Ok(paths.try_into().expect("one path per file"))
    }

    /// Finds the four files. With `explicit`, only that directory counts;
    /// otherwise the default search runs, then, when `download` is given (it
    /// receives the progress), a download into the cache directory.
    pub fn locate(
        &'static self,
        explicit: Option<&Path>,
        download: Option<&mut dyn FnMut(Progress<'_>)>,
    ) -> Result<[PathBuf; 4], DataError> {
        let paths = self.locate_files(explicit, download, 0..4)?;
        Ok(paths.try_into().expect("four paths"))
    }

    /// [`Self::locate`] of the `wanted` files only (a download fetches all).
    fn locate_files(
        &'static self,
        explicit: Option<&Path>,
        download: Option<&mut dyn FnMut(Progress<'_>)>,
        wanted: Range<usize>,
    ) -> Result<Vec<PathBuf>, DataError> {
        if let Some(dir) = explicit {
            return self.complete_set(dir, wanted).map_err(|missing| {
                DataError::MissingInExplicitDir {
                    set: self,
                    dir: dir.to_path_buf(),
                    missing,
                }
            });
        }
        let searched = self.default_search_dirs();
        if let Some(paths) = searched
            .iter()
            .find_map(|d| self.complete_set(d, wanted.clone()).ok())
        {
            return Ok(paths);
        }
        let cause = match (download, self.cache_dir()) {
            (None, _) => FetchError::Disabled,
            (Some(_), None) => FetchError::NoCacheDir,
            (Some(progress), Some(dir)) => match self.download_all(&dir, progress) {
                Ok(paths) => return Ok(paths[wanted].to_vec()),
                Err(e) => e.into(),
            },
        };
        Err(DataError::Unavailable {
            set: self,
            searched,
            cause,
        })
    }

    /// Loads both splits from the four files (any IDX data set whose labels
    /// are below the catalogue's class count).
    pub fn load_files(&self, paths: &[PathBuf; 4]) -> Result<Splits, DataError> {
        Ok(Splits::new(
            self.load_pair(&paths[0..2], 0)?,
            self.load_pair(&paths[2..4], 2)?,
        ))
    }

    /// One split from its images and labels (`pair`), which are the files
    /// `first` and `first + 1` of [`DataSet::files`].
    fn load_pair(&self, pair: &[PathBuf], first: usize) -> Result<Dataset, DataError> {
        let files = self.files();
        let read = |i: usize| idx::read_file(&pair[i], files[first + i].magic);
        Dataset::from_idx(read(0)?, read(1)?, self.classes.len()).map_err(|problem| {
            DataError::Idx(IdxError {
                file: format!("{} + {}", pair[0].display(), pair[1].display()),
                problem,
            })
        })
    }

    /// Locates the data set as [`DataSet::load`] does, but needs and reads
    /// only the test split's files.
    pub fn load_test(
        &'static self,
        explicit: Option<&Path>,
        download: Option<&mut dyn FnMut(Progress<'_>)>,
    ) -> Result<Dataset, DataError> {
        self.load_pair(&self.locate_files(explicit, download, 2..4)?, 2)
    }

    /// Locates the data set (see [`DataSet::locate`]), downloads it if needed
    /// and allowed, and loads it.
    pub fn load(
        &'static self,
        explicit: Option<&Path>,
        download: Option<&mut dyn FnMut(Progress<'_>)>,
    ) -> Result<Splits, DataError> {
        self.load_files(&self.locate(explicit, download)?)
    }
}
