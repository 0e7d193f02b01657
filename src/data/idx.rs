//! Reader for the IDX format of the MNIST files, gzip-compressed or raw.
//!
//! Layout: a big-endian magic `0x0000_08NN` (`08` = unsigned byte, `NN` = rank),
//! `NN` big-endian `u32` dimensions, then exactly `product(dims)` bytes.

use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;

/// Magic number of an IDX file of unsigned bytes with rank 3 (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with rank 1 (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// An IDX tensor of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Why a file is not the IDX tensor we expected; always reported with the file's name.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct IdxError {
    pub file: String,
    pub problem: IdxProblem,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdxProblem {
    #[error("cannot read the file: {0}")]
    Io(String),
    #[error("not a valid gzip stream: {0}")]
    Gzip(String),
    #[error("file is {found} bytes, too short for an IDX header")]
    TooShortForHeader { found: usize },
    #[error("wrong magic number 0x{found:08x}, expected 0x{expected:08x}")]
    BadMagic { found: u32, expected: u32 },
    #[error("dimension {index} is zero")]
    ZeroDimension { index: usize },
    #[error("expected {expected} data bytes after the header, found {found}")]
    LengthMismatch { expected: usize, found: usize },
    #[error("expected {expected} data bytes after the header, found more")]
    TrailingData { expected: usize },
    #[error("the header's dimensions {dims:?} need more data than a file of {len} bytes can hold")]
    Implausible { dims: Vec<usize>, len: u64 },
    #[error("dimensions {found:?} differ from the expected {expected:?}")]
    UnexpectedShape {
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("label {label} at index {index} is not below the class count {classes}")]
    LabelOutOfRange {
        index: usize,
        label: u8,
        classes: usize,
    },
    #[error("{images} images but {labels} labels")]
    CountMismatch { images: usize, labels: usize },
}

/// Returns the decompressed content when `bytes` is gzip (by its magic), else
/// `bytes`; content longer than `limit` bytes is refused as soon as it is.
/// As `gunzip` does, the members of a multi-member file are joined; unlike
/// it, bytes after the last member that are not another one are an error.
pub fn decompress_if_gzip(bytes: Vec<u8>, limit: u64) -> Result<Vec<u8>, IdxProblem> {
    let content = if bytes.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::with_capacity(bytes.len() * 4);
        MultiGzDecoder::new(bytes.as_slice())
            .take(limit.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| IdxProblem::Gzip(e.to_string()))?;
        out
    } else {
        bytes
    };
    if content.len() as u64 > limit {
        return Err(IdxProblem::Gzip(format!(
            "the content is longer than the file's {limit} bytes"
        )));
    }
    Ok(content)
}

/// A gzip stream's first two bytes.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The most bytes DEFLATE can expand one byte into (its best case, runs of
/// one byte, is 1032:1), so that a header claiming more than a compressed
/// file could hold is refused before anything is allocated.
const MAX_GZIP_EXPANSION: u64 = 1032;

/// Parses IDX bytes (gzip or raw), requiring the given magic (which fixes the rank).
pub fn parse(bytes: &[u8], expected_magic: u32) -> Result<IdxArray, IdxProblem> {
    read_from(bytes, bytes.len() as u64, expected_magic)
}

/// Reads as many bytes as `buf` holds, fewer only at the end of `source`.
fn read_up_to(source: &mut impl Read, buf: &mut [u8]) -> Result<usize, IdxProblem> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(IdxProblem::Io(e.to_string())),
        }
    }
    Ok(filled)
}

/// Reads an IDX tensor from `source` (`len` bytes, gzip or raw), checking
/// the header before allocating: the dimensions' product must not overflow
/// and must fit what `len` bytes can hold; then exactly that many data bytes
/// must follow, decompression stopping at the first byte beyond them.
pub fn read_from(source: impl Read, len: u64, expected_magic: u32) -> Result<IdxArray, IdxProblem> {
    let mut source = std::io::BufReader::new(source);
    let gzip = std::io::BufRead::fill_buf(&mut source)
        .map_err(|e| IdxProblem::Io(e.to_string()))?
        .starts_with(&GZIP_MAGIC);
    let (mut reader, expansion): (Box<dyn Read>, u64) = if gzip {
        (Box::new(MultiGzDecoder::new(source)), MAX_GZIP_EXPANSION)
    } else {
        (Box::new(source), 1)
    };
    let gzip_error = |p: IdxProblem| match p {
        IdxProblem::Io(e) if gzip => IdxProblem::Gzip(e),
        other => other,
    };
    let rank = (expected_magic & 0xff) as usize;
    let mut header = vec![0u8; 4 + 4 * rank];
    let found = read_up_to(&mut reader, &mut header[..4]).map_err(gzip_error)?;
    if found < 4 {
        return Err(IdxProblem::TooShortForHeader { found });
    }
    let word = |i: usize| u32::from_be_bytes(header[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    let magic = word(0);
    if magic != expected_magic {
        return Err(IdxProblem::BadMagic {
            found: magic,
            expected: expected_magic,
        });
    }
    let found = 4 + read_up_to(&mut reader, &mut header[4..]).map_err(gzip_error)?;
    if found < header.len() {
        return Err(IdxProblem::TooShortForHeader { found });
    }
    let word = |i: usize| u32::from_be_bytes(header[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    let dims: Vec<usize> = (1..=rank).map(|i| word(i) as usize).collect();
    if let Some(index) = dims.iter().position(|&d| d == 0) {
        return Err(IdxProblem::ZeroDimension { index });
    }
    let expected = dims
        .iter()
        .try_fold(1usize, |product, &d| product.checked_mul(d))
        .ok_or_else(|| IdxProblem::Implausible {
            dims: dims.clone(),
            len,
        })?;
    if expected as u64 > len.saturating_mul(expansion) {
        return Err(IdxProblem::Implausible { dims, len });
    }
    let mut data = vec![0u8; expected];
    let found = read_up_to(&mut reader, &mut data).map_err(gzip_error)?;
    if found < expected {
        return Err(IdxProblem::LengthMismatch { expected, found });
    }
    if read_up_to(&mut reader, &mut [0u8; 1]).map_err(gzip_error)? > 0 {
        return Err(IdxProblem::TrailingData { expected });
    }
    Ok(IdxArray { dims, data })
}

/// Reads and parses one IDX file (gzip or raw) from disk.
pub fn read_file(path: &Path, expected_magic: u32) -> Result<IdxArray, IdxError> {
    let with_file = |problem| IdxError {
        file: path.display().to_string(),
        problem,
    };
    let file = crate::input_file::open_regular(path)
        .map_err(|e| with_file(IdxProblem::Io(e.to_string())))?;
    let len = file
        .metadata()
        .map_err(|e| with_file(IdxProblem::Io(e.to_string())))?
        .len();
    read_from(file, len, expected_magic).map_err(with_file)
}

/// Encodes an IDX tensor of unsigned bytes: used to write test fixtures and by users
/// who want to export data in the format.
pub fn encode(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    out.extend_from_slice(&(0x0800u32 | dims.len() as u32).to_be_bytes());
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}
