//! Fetches files from mirrors, verifies the SHA-256 of their decompressed content,
//! and writes each one atomically, so the target directory never holds a partial
//! or unverified file. It knows no data set and prints nothing: the caller names
//! the files and mirrors, and draws progress from the events it is handed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::idx::decompress_if_gzip;
use crate::atomic_file::write_atomically;

/// A file to fetch, and the content it must decompress to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Name on the mirrors and in the target directory, e.g. `train-images-idx3-ubyte.gz`.
    pub name: String,
    /// SHA-256 of the decompressed content (of the bytes themselves when they are
    /// not gzip), lowercase hex: a mirror may recompress, the content must not change.
    pub sha256: String,
}

/// A download event, for the caller to draw. `file` is a [`RemoteFile::name`].
/// Each mirror's transfer starts with `Started`, so after a failed transfer the
/// next mirror's `Started` restarts the count; a file already verified on disk
/// produces no events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress<'a> {
    /// A mirror answered; `total` is the size it announced.
    Started { file: &'a str, total: Option<u64> },
    /// `bytes` more bytes arrived.
    Advanced { file: &'a str, bytes: u64 },
    /// The file is verified and written.
    Finished { file: &'a str },
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
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

/// SHA-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks that `gz` decompresses to the file's expected content.
fn verify(file: &RemoteFile, gz: Vec<u8>) -> Result<(), String> {
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

/// Whether `dir` already holds a verified copy of `file`.
fn already_verified(file: &RemoteFile, dir: &Path) -> Option<PathBuf> {
    let path = dir.join(&file.name);
    let bytes = std::fs::read(&path).ok()?;
    verify(file, bytes).ok().map(|()| path)
}

fn fetch(
    agent: &ureq::Agent,
    url: &str,
    file: &str,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Vec<u8>, String> {
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    let total = response.body().content_length();
    progress(Progress::Started { file, total });
    let mut body = Vec::with_capacity(total.unwrap_or(1 << 20) as usize);
    let mut reader = response.body_mut().as_reader();
    let mut chunk = vec![0; 1 << 16];
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => return Ok(body),
            Ok(n) => {
                body.extend_from_slice(&chunk[..n]);
                progress(Progress::Advanced {
                    file,
                    bytes: n as u64,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("transfer failed: {e}")),
        }
    }
}

/// Downloads each of `files` that `dir` lacks a verified copy of, trying `mirrors`
/// (base URLs) in order, and returns the paths of all of them in `dir`.
pub fn download_files(
    dir: &Path,
    files: &[RemoteFile],
    mirrors: &[String],
    progress: &mut dyn FnMut(Progress<'_>),
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
        let name = &file.name;
        let mut attempts = Vec::new();
        let mut saved = None;
        for mirror in mirrors {
            let url = format!("{}/{name}", mirror.trim_end_matches('/'));
            let body = match fetch(&agent, &url, name, progress) {
                Ok(body) => body,
                Err(e) => {
                    attempts.push(format!("{url}: {e}"));
                    continue;
                }
            };
            match verify(file, body.clone()) {
                Ok(()) => {
                    let path = dir.join(name);
                    write_atomically(&path, &body).map_err(|cause| DownloadError::Write {
                        path: path.clone(),
                        cause,
                    })?;
                    progress(Progress::Finished { file: name });
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
                    file: name.clone(),
                    attempts,
                })
            }
        }
    }
    Ok(paths)
}
