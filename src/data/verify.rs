//! What a data file must be: its SHA-256 sums, checked on bytes from
//! anywhere (a mirror, the user's disk, a web page's origin).

use sha2::{Digest as _, Sha256};

use super::idx::decompress_if_gzip;

/// What a file's bytes must hash to (SHA-256, lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Digest {
    /// Of the decompressed content (of the bytes themselves when they are not
    /// gzip): a mirror may recompress, the content must not change.
    Content(String),
    /// Of the bytes exactly as served, with their size: for files whose content
    /// sum nobody publishes, only the upstream archive itself passes.
    Archive { sha256: String, size: u64 },
}

impl Digest {
    pub fn matches(&self, received: &Received) -> bool {
        match self {
            Digest::Content(sha256) => received.content == *sha256,
            Digest::Archive { sha256, size } => received.size == *size && received.bytes == *sha256,
        }
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Digest::Content(sha256) => write!(f, "content {sha256}"),
            Digest::Archive { sha256, size } => write!(f, "the {size}-byte archive {sha256}"),
        }
    }
}

/// The sums of what a mirror served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// SHA-256 of the bytes as served.
    pub bytes: String,
    pub size: u64,
    /// SHA-256 of their decompressed content.
    pub content: String,
}

impl Received {
    /// The sums of `bytes`, whose content may be at most `max_content` bytes
    /// (decompression stops past it), and that content.
    pub fn of(bytes: Vec<u8>, max_content: u64) -> Result<(Self, Vec<u8>), String> {
        let (size, sha) = (bytes.len() as u64, sha256_hex(&bytes));
        let content = decompress_if_gzip(bytes, max_content).map_err(|e| e.to_string())?;
        let received = Self {
            bytes: sha,
            size,
            content: sha256_hex(&content),
        };
        Ok((received, content))
    }
}

/// Names what arrived when the caller knows it (e.g. another data set's file),
/// for the message that refuses it.
pub type Identify<'a> = &'a dyn Fn(&Received) -> Option<String>;

/// A data file, and what it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Name on the mirrors and in the target directory, e.g. `train-images-idx3-ubyte.gz`.
    pub name: String,
    /// Any one of these accepts the bytes.
    pub digests: Vec<Digest>,
    /// The most bytes the file, or its decompressed content, may have: a
    /// mirror announcing or sending more is cut off there.
    pub max_bytes: u64,
}

/// SHA-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks that `bytes` are the file and returns their decompressed content;
/// else says what is wrong, naming what they are instead when `identify`
/// knows.
pub fn check(file: &RemoteFile, bytes: Vec<u8>, identify: Identify<'_>) -> Result<Vec<u8>, String> {
    let (received, content) = Received::of(bytes, file.max_bytes)?;
    if file.digests.iter().any(|d| d.matches(&received)) {
        return Ok(content);
    }
    Err(match identify(&received) {
        Some(other) => format!("this is {other}, not the file asked for"),
        None => format!(
            "SHA-256 of the decompressed content is {}, of the {} bytes {}; expected {}",
            received.content,
            received.size,
            received.bytes,
            file.digests
                .iter()
                .map(Digest::to_string)
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    })
}
