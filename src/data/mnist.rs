//! MNIST's facts (shape, classes, files, mirrors) and where its four files come
//! from: an explicit directory, the `GPU_MNIST_DATA` environment variable,
//! `data/mnist` under the working directory, or the per-user cache (filled by a
//! verified download when nothing else has them).

use std::path::{Path, PathBuf};

use super::dataset::{Dataset, Splits};
use super::download::{self, DownloadError, Progress, RemoteFile};
use super::idx::{self, IdxError, IMAGES_MAGIC, LABELS_MAGIC};

/// Digits 0-9.
pub const CLASSES: usize = 10;
/// Pixels per image: 28 x 28.
pub const FEATURES: usize = 28 * 28;

/// Environment variable naming a directory that holds the MNIST files.
pub const DATA_ENV: &str = "GPU_MNIST_DATA";

/// Environment variable with a comma-separated list of mirror base URLs that
/// replaces the defaults (for private mirrors and for tests).
pub const MIRRORS_ENV: &str = "GPU_MNIST_MIRRORS";

/// Public copies of the original files, tried in order.
pub const DEFAULT_MIRRORS: [&str; 2] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
];

/// Mirror base URLs: `GPU_MNIST_MIRRORS` when set, else the public defaults.
pub fn mirrors() -> Vec<String> {
    match std::env::var(MIRRORS_ENV) {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect(),
        _ => DEFAULT_MIRRORS.iter().map(|m| m.to_string()).collect(),
    }
}

/// One of the four files, with the SHA-256 of its decompressed upstream content.
#[derive(Debug, Clone, Copy)]
pub struct MnistFile {
    /// Canonical name without `.gz`, e.g. `train-images-idx3-ubyte`.
    pub stem: &'static str,
    pub magic: u32,
    pub sha256: &'static str,
}

impl MnistFile {
    /// Names accepted on disk, in order of preference: gzip or raw, and the
    /// `train-images.idx3-ubyte` spelling some mirrors use.
    pub fn accepted_names(&self) -> [String; 4] {
        let dotted = self.stem.replacen("-idx", ".idx", 1);
        [
            format!("{}.gz", self.stem),
            self.stem.to_string(),
            format!("{dotted}.gz"),
            dotted,
        ]
    }

    pub fn find_in(&self, dir: &Path) -> Option<PathBuf> {
        self.accepted_names()
            .iter()
            .map(|name| dir.join(name))
            .find(|p| p.is_file())
    }

    /// The file as the mirrors serve it: gzip under its canonical name.
    pub fn remote(&self) -> RemoteFile {
        RemoteFile {
            name: format!("{}.gz", self.stem),
            sha256: self.sha256.to_string(),
        }
    }
}

pub const TRAIN_IMAGES: MnistFile = MnistFile {
    stem: "train-images-idx3-ubyte",
    magic: IMAGES_MAGIC,
    sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
};
pub const TRAIN_LABELS: MnistFile = MnistFile {
    stem: "train-labels-idx1-ubyte",
    magic: LABELS_MAGIC,
    sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
};
pub const TEST_IMAGES: MnistFile = MnistFile {
    stem: "t10k-images-idx3-ubyte",
    magic: IMAGES_MAGIC,
    sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
};
pub const TEST_LABELS: MnistFile = MnistFile {
    stem: "t10k-labels-idx1-ubyte",
    magic: LABELS_MAGIC,
    sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
};

pub const FILES: [MnistFile; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];

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
        "MNIST files not found in {dir}: missing {missing}",
        dir = .dir.display(),
        missing = .missing.join(", ")
    )]
    MissingInExplicitDir { dir: PathBuf, missing: Vec<String> },
    #[error(
        "MNIST files ({files}) not found in {searched} and the download failed ({cause}); \
         pass --data-dir DIR (or set {DATA_ENV}) to a directory holding them",
        files = FILES.map(|f| f.stem).join(", "),
        searched = .searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    Unavailable {
        searched: Vec<PathBuf>,
        cause: FetchError,
    },
}

/// The per-user cache directory of the data set: `mnist` in
/// [`crate::user_cache_dir`].
pub fn cache_dir() -> Option<PathBuf> {
    Some(crate::user_cache_dir()?.join("mnist"))
}

/// Directories searched when no `--data-dir` is given, in order.
pub fn default_search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(env) = std::env::var_os(DATA_ENV).filter(|v| !v.is_empty()) {
        dirs.push(PathBuf::from(env));
    }
    dirs.push(PathBuf::from("data").join("mnist"));
    dirs.extend(cache_dir());
    dirs
}

/// Paths of all four files in `dir`, or the stems that are missing.
fn complete_set(dir: &Path) -> Result<[PathBuf; 4], Vec<String>> {
    let found = FILES.map(|f| f.find_in(dir));
    let missing: Vec<String> = FILES
        .iter()
        .zip(&found)
        .filter(|(_, p)| p.is_none())
        .map(|(f, _)| f.stem.to_string())
        .collect();
    if missing.is_empty() {
        Ok(found.map(Option::unwrap))
    } else {
        Err(missing)
    }
}

/// Downloads any of the four files that `dir` lacks from [`mirrors`], and returns
/// their paths once all four are verified.
pub fn download_all(
    dir: &Path,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<[PathBuf; 4], DownloadError> {
    let files = FILES.map(|f| f.remote());
    let paths = download::download_files(dir, &files, &mirrors(), progress)?;
    Ok(paths.try_into().expect("one path per file"))
}

/// Finds the four files. With `explicit`, only that directory counts; otherwise
/// the default search runs, then, when `download` is given (it receives the
/// progress), a download into the cache directory.
pub fn locate(
    explicit: Option<&Path>,
    download: Option<&mut dyn FnMut(Progress<'_>)>,
) -> Result<[PathBuf; 4], DataError> {
    if let Some(dir) = explicit {
        return complete_set(dir).map_err(|missing| DataError::MissingInExplicitDir {
            dir: dir.to_path_buf(),
            missing,
        });
    }
    let searched = default_search_dirs();
    if let Some(paths) = searched.iter().find_map(|d| complete_set(d).ok()) {
        return Ok(paths);
    }
    let cause = match (download, cache_dir()) {
        (None, _) => FetchError::Disabled,
        (Some(_), None) => FetchError::NoCacheDir,
        (Some(progress), Some(dir)) => match download_all(&dir, progress) {
            Ok(paths) => return Ok(paths),
            Err(e) => e.into(),
        },
    };
    Err(DataError::Unavailable { searched, cause })
}

/// Loads both splits from the four files.
pub fn load_files(paths: &[PathBuf; 4]) -> Result<Splits, DataError> {
    let read = |i: usize| idx::read_file(&paths[i], FILES[i].magic);
    let pair = |images: usize, labels: usize| -> Result<Dataset, DataError> {
        Dataset::from_idx(read(images)?, read(labels)?, CLASSES).map_err(|problem| {
            DataError::Idx(IdxError {
                file: format!("{} + {}", paths[images].display(), paths[labels].display()),
                problem,
            })
        })
    };
    Ok(Splits::new(pair(0, 1)?, pair(2, 3)?))
}

/// Locates MNIST (see [`locate`]), downloads it if needed and allowed, and loads it.
pub fn load(
    explicit: Option<&Path>,
    download: Option<&mut dyn FnMut(Progress<'_>)>,
) -> Result<Splits, DataError> {
    load_files(&locate(explicit, download)?)
}
