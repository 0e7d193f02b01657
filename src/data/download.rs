//! Fetches files from mirrors, verifies their SHA-256 (of the decompressed
//! content, or of the upstream archive's bytes), and writes each one
//! atomically, so the target directory never holds a partial or unverified file. It knows no data set and prints nothing: the caller names
//! the files and mirrors, and draws progress from the events it is handed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use super::verify::{sha256_hex, Digest, Identify, Received, RemoteFile};
use crate::atomic_file::write_atomically;

/// Checks that `bytes` are the file before it is written.
fn verify(file: &RemoteFile, bytes: Vec<u8>, identify: Identify<'_>) -> Result<(), String> {
    super::verify::check(file, bytes, identify)
        .map(drop)
        .map_err(|problem| format!("{problem}; the download was discarded and nothing was written"))
}

/// How long a mirror may keep the download waiting, and how often it is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkLimits {
    /// To open a connection.
    pub connect: Duration,
    /// For the response's headers, and then for each read of the body: a
    /// mirror that stalls this long is given up for the next.
    pub stall: Duration,
    /// Rounds over the mirrors before giving up.
    pub rounds: u32,
    /// The wait before the second round, doubling for each round after it.
    pub backoff: Duration,
    /// The slowest average transfer (bytes per second, judged once `stall`
    /// has passed) kept: a mirror trickling a byte at a time never stalls,
    /// but would hold the download for days.
    pub min_rate: u64,
}

impl Default for NetworkLimits {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            stall: Duration::from_secs(15),
            rounds: 3,
            backoff: Duration::from_secs(1),
            // MNIST's largest file in under 20 minutes.
            min_rate: 8 << 10,
        }
    }
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
    /// `url` failed (`error`) and another attempt follows: the next mirror,
    /// or another round.
    Failed {
        file: &'a str,
        url: &'a str,
        error: &'a str,
    },
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

/// Whether `dir` already holds a verified copy of `file`.
fn already_verified(file: &RemoteFile, dir: &Path) -> Option<PathBuf> {
    let path = dir.join(&file.name);
    let bytes = crate::input_file::read_bounded(&path, transfer_cap(file.max_bytes)).ok()?;
    verify(file, bytes, &|_| None).ok().map(|()| path)
}

/// The most bytes a file of `content` bytes can take on the wire: gzip adds
/// a header and trailer, and stored blocks where data does not compress.
fn transfer_cap(content: u64) -> u64 {
    content + content / 1000 + 1024
}

/// Why a transfer failed, and whether asking the same URL again could help.
struct FetchFailure {
    why: String,
    lasting: bool,
}

impl From<String> for FetchFailure {
    fn from(why: String) -> Self {
        Self {
            why,
            lasting: false,
        }
    }
}

/// Redirects followed (ureq's default number).
const MAX_REDIRECTS: usize = 10;

/// The response to a GET of `url`, following redirects to http and https
/// URLs: by hand, so that one elsewhere (`file:///...`) is named as such,
/// where ureq said "too many redirects".
fn get(agent: &ureq::Agent, url: &str) -> Result<ureq::http::Response<ureq::Body>, FetchFailure> {
    let mut url = url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        let response = agent.get(&url).call().map_err(|e| FetchFailure {
            why: e.to_string(),
            // A malformed URL or a refusal (404, 403) will be the same next
            // time; a timeout (408) or rate limit (429) may not.
            lasting: match e {
                ureq::Error::BadUri(_) | ureq::Error::Http(_) => true,
                ureq::Error::StatusCode(code) => {
                    (400..500).contains(&code) && code != 408 && code != 429
                }
                _ => false,
            },
        })?;
        if !response.status().is_redirection() {
            return Ok(response);
        }
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        url = followed(&url, location).ok_or_else(|| FetchFailure {
            why: format!(
                "redirects to '{location}', which is not followed (only http and https URLs are)"
            ),
            lasting: true,
        })?;
    }
    Err(FetchFailure {
        why: format!("redirects more than {MAX_REDIRECTS} times"),
        lasting: true,
    })
}

/// Where a redirect from `from` to `location` goes: an http or https URL,
/// or a path on the same server.
fn followed(from: &str, location: &str) -> Option<String> {
    let uri: ureq::http::Uri = location.parse().ok()?;
    match uri.scheme_str() {
        Some("http" | "https") => Some(location.to_string()),
        Some(_) => None,
        None if location.starts_with('/') && !location.starts_with("//") => {
            let from: ureq::http::Uri = from.parse().ok()?;
            Some(format!(
                "{}://{}{location}",
                from.scheme_str()?,
                from.authority()?
            ))
        }
        None => None,
    }
}

/// A response's body, and its content type when it looks like a page.
struct Fetched {
    body: Vec<u8>,
    page: Option<String>,
}

fn fetch(
    agent: &ureq::Agent,
    url: &str,
    remote: &RemoteFile,
    limits: &NetworkLimits,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Fetched, FetchFailure> {
    let (file, max) = (remote.name.as_str(), transfer_cap(remote.max_bytes));
    let mut response = get(agent, url)?;
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
    let total = response.body().content_length();
    if let Some(total) = total.filter(|&t| t > max) {
        return Err(FetchFailure {
            why: format!("announces {total} bytes, more than the file's {max}"),
            lasting: true,
        });
    }
    progress(Progress::Started { file, total });
    let mut body = Vec::with_capacity(total.unwrap_or(1 << 20) as usize);
    // One byte more than allowed tells a mirror that sends too much.
    let mut reader = response.body_mut().as_reader().take(max + 1);
    let mut chunk = vec![0; 1 << 16];
    let start = std::time::Instant::now();
    loop {
        match reader.read(&mut chunk) {
            Ok(0) if body.len() as u64 > max => {
                return Err(FetchFailure {
                    why: format!("sent more than the file's {max} bytes"),
                    lasting: true,
                })
            }
            Ok(0) => {
                // Text that is not gzip in a .gz file's place: a page (a
                // mirror's error or login page, with status 200), unless it
                // verifies (a server may gzip-encode the file, and ureq
                // decode it).
                let page = content_type.filter(|t| {
                    t.starts_with("text/")
                        && file.ends_with(".gz")
                        && !body.starts_with(&super::idx::GZIP_MAGIC)
                });
                return Ok(Fetched { body, page });
            }
            Ok(n) => {
                body.extend_from_slice(&chunk[..n]);
                progress(Progress::Advanced {
                    file,
                    bytes: n as u64,
                });
                // Judged as bytes arrive, so a body that is whole is kept.
                let elapsed = start.elapsed();
                let expected = limits.min_rate as f64 * elapsed.as_secs_f64();
                if elapsed > limits.stall && (body.len() as f64) < expected {
                    return Err(format!(
                        "too slow: {} bytes in {:.0} s, under {} bytes/s",
                        body.len(),
                        elapsed.as_secs_f64(),
                        limits.min_rate
                    )
                    .into());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("transfer failed: {e}").into()),
        }
    }
}

/// Downloads each of `files` that `dir` lacks a verified copy of, trying `mirrors`
/// (base URLs) in order within [`NetworkLimits::default`], and returns the
/// paths of all of them in `dir`. A refused download is named by `identify`
/// when it knows what it is.
pub fn download_files(
    dir: &Path,
    files: &[RemoteFile],
    mirrors: &[String],
    identify: Identify<'_>,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Vec<PathBuf>, DownloadError> {
    download_files_within(
        &NetworkLimits::default(),
        dir,
        files,
        mirrors,
        identify,
        progress,
    )
}

/// [`download_files`] within `limits`: a mirror that fails (cannot connect,
/// stalls, sends too much, or sends something else) gives way to the next,
/// and the mirrors are tried `limits.rounds` times with a growing pause.
pub fn download_files_within(
    limits: &NetworkLimits,
    dir: &Path,
    files: &[RemoteFile],
    mirrors: &[String],
    identify: Identify<'_>,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Vec<PathBuf>, DownloadError> {
    if mirrors.is_empty() {
        return Err(DownloadError::NoMirrors);
    }
    // The one directory made on the user's behalf: a data set's own (its cache).
    std::fs::create_dir_all(dir).map_err(|cause| DownloadError::Write {
        path: dir.to_path_buf(),
        cause,
    })?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(limits.connect))
        .timeout_recv_response(Some(limits.stall))
        .timeout_per_read(Some(limits.stall))
        // Followed by `get`.
        .max_redirects(0)
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
        // Mirrors that served something else, or refused in a way that will
        // not change (a malformed URL, 404), are not asked again; those that
        // failed to deliver (unreachable, stalled, cut off) are, after a pause.
        let mut refused = vec![false; mirrors.len()];
        let rounds = limits.rounds.max(1);
        'rounds: for round in 0..rounds {
            if round > 0 {
                std::thread::sleep(limits.backoff * (1 << (round - 1).min(16)));
            }
            for (m, mirror) in mirrors.iter().enumerate() {
                if refused[m] {
                    continue;
                }
                let url = format!("{}/{name}", mirror.trim_end_matches('/'));
                let error = match fetch(&agent, &url, file, limits, progress) {
                    Err(failure) => {
                        refused[m] |= failure.lasting;
                        failure.why
                    }
                    Ok(Fetched { body, page }) => match verify(file, body.clone(), identify) {
                        Err(error) => {
                            refused[m] = true;
                            match page {
                                Some(page) => format!(
                                    "not a gzip file ({page}): the mirror sent a page; nothing was written"
                                ),
                                None => error,
                            }
                        }
                        Ok(()) => {
                            let path = dir.join(name);
                            write_atomically(&path, &body).map_err(|cause| {
                                DownloadError::Write {
                                    path: path.clone(),
                                    cause,
                                }
                            })?;
                            progress(Progress::Finished { file: name });
                            saved = Some(path);
                            break 'rounds;
                        }
                    },
                };
                let another = refused[m + 1..].contains(&false)
                    || round + 1 < rounds && refused.contains(&false);
                if another {
                    progress(Progress::Failed {
                        file: name,
                        url: &url,
                        error: &error,
                    });
                }
                attempts.push(format!("{url}: {error}"));
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
