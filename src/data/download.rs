//! Fetches the four upstream `.gz` files from public mirrors, verifies the SHA-256
//! of their decompressed content, and writes each one atomically, so the cache
//! never holds a partial or unverified file.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::idx::decompress_if_gzip;
use super::mnist::{MnistFile, FILES};

/// Environment variable with a comma-separated list of mirror base URLs that
/// replaces the defaults (for private mirrors and for tests).
pub const MIRRORS_ENV: &str = "GPU_MNIST_MIRRORS";

pub const DEFAULT_MIRRORS: [&str; 2] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
];

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("downloading is disabled")]
    Disabled,
    #[error("no cache directory: neither XDG_CACHE_HOME nor HOME is set")]
    NoCacheDir,
    #[error("no mirror configured")]
    NoMirrors,
    #[error("{file}: every mirror failed: {}", .attempts.join("; "))]
    AllMirrorsFailed { file: String, attempts: Vec<String> },
    #[error("cannot write {}: {cause}", .path.display())]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
}

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

/// SHA-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks that `gz` decompresses to the file's upstream content.
fn verify(file: &MnistFile, gz: Vec<u8>) -> Result<(), String> {
    let content = decompress_if_gzip(gz).map_err(|e| e.to_string())?;
    let found = sha256_hex(&content);
    if found == file.sha256 {
        Ok(())
    } else {
        Err(format!(
            "SHA-256 of the decompressed content is {found}, expected {}; the download was discarded and nothing was written",
            file.sha256
        ))
    }
}

/// Whether `dir` already holds a verified copy of `file` under its canonical name.
fn already_verified(file: &MnistFile, dir: &Path) -> Option<PathBuf> {
    let path = dir.join(format!("{}.gz", file.stem));
    let bytes = std::fs::read(&path).ok()?;
    verify(file, bytes).ok().map(|()| path)
}

fn fetch(agent: &ureq::Agent, url: &str, show_progress: bool) -> Result<Vec<u8>, String> {
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    let total = response.body().content_length();
    let bar = if show_progress {
        let bar = indicatif::ProgressBar::new(total.unwrap_or(0));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar.set_message(url.rsplit('/').next().unwrap_or(url).to_string());
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut body = Vec::with_capacity(total.unwrap_or(1 << 20) as usize);
    let mut reader = bar.wrap_read(response.body_mut().as_reader());
    reader
        .read_to_end(&mut body)
        .map_err(|e| format!("transfer failed: {e}"))?;
    bar.finish_and_clear();
    Ok(body)
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a
/// rename, so readers see either nothing or the whole file.
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
    }
    result
}

/// Downloads any of the four MNIST files that `dir` lacks, trying the mirrors in
/// order, and returns their paths once all four are verified.
pub fn download_all(
    dir: &Path,
    mirrors: &[String],
    show_progress: bool,
) -> Result<[PathBuf; 4], DownloadError> {
    let paths = download_files(dir, &FILES, mirrors, show_progress)?;
    Ok(paths.try_into().expect("one path per file"))
}

/// Downloads `<stem>.gz` for each of `files` that `dir` lacks a verified copy of.
pub fn download_files(
    dir: &Path,
    files: &[MnistFile],
    mirrors: &[String],
    show_progress: bool,
) -> Result<Vec<PathBuf>, DownloadError> {
    if mirrors.is_empty() {
        return Err(DownloadError::NoMirrors);
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into();
    let mut paths = Vec::with_capacity(files.len());
    for file in files {
        if let Some(path) = already_verified(file, dir) {
            paths.push(path);
            continue;
        }
        let name = format!("{}.gz", file.stem);
        let mut attempts = Vec::new();
        let mut saved = None;
        for mirror in mirrors {
            let url = format!("{}/{name}", mirror.trim_end_matches('/'));
            let body = match fetch(&agent, &url, show_progress) {
                Ok(body) => body,
                Err(e) => {
                    attempts.push(format!("{url}: {e}"));
                    continue;
                }
            };
            match verify(file, body.clone()) {
                Ok(()) => {
                    let path = dir.join(&name);
                    write_atomically(&path, &body).map_err(|cause| DownloadError::Write {
                        path: path.clone(),
                        cause,
                    })?;
                    saved = Some(path);
                    break;
                }
                Err(e) => attempts.push(format!("{url}: {e}")),
            }
        }
        match saved {
            Some(path) => paths.push(path),
            None => {
                return Err(DownloadError::AllMirrorsFailed {
                    file: name,
                    attempts,
                })
            }
        }
    }
    Ok(paths)
}
