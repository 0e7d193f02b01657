//! Reader for the IDX format of the MNIST files, gzip-compressed or raw.
//!
//! Layout: a big-endian magic `0x0000_08NN` (`08` = unsigned byte, `NN` = rank),
//! `NN` big-endian `u32` dimensions, then exactly `product(dims)` bytes.

use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;

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

/// Returns the decompressed content when `bytes` is gzip (by its magic), else `bytes`.
pub fn decompress_if_gzip(bytes: Vec<u8>) -> Result<Vec<u8>, IdxProblem> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(bytes.len() * 4);
        GzDecoder::new(bytes.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| IdxProblem::Gzip(e.to_string()))?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

/// Parses decompressed IDX bytes, requiring the given magic (which fixes the rank).
pub fn parse(bytes: &[u8], expected_magic: u32) -> Result<IdxArray, IdxProblem> {
    let rank = (expected_magic & 0xff) as usize;
    let header_len = 4 + 4 * rank;
    let word = |i: usize| u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap());
    if bytes.len() < 4 {
        return Err(IdxProblem::TooShortForHeader { found: bytes.len() });
    }
    let magic = word(0);
    if magic != expected_magic {
        return Err(IdxProblem::BadMagic {
            found: magic,
            expected: expected_magic,
        });
    }
    if bytes.len() < header_len {
        return Err(IdxProblem::TooShortForHeader { found: bytes.len() });
    }
    let dims: Vec<usize> = (1..=rank).map(|i| word(i) as usize).collect();
    if let Some(index) = dims.iter().position(|&d| d == 0) {
        return Err(IdxProblem::ZeroDimension { index });
    }
    let expected = dims.iter().product::<usize>();
    let found = bytes.len() - header_len;
    if found != expected {
        return Err(IdxProblem::LengthMismatch { expected, found });
    }
    Ok(IdxArray {
        dims,
        data: bytes[header_len..].to_vec(),
    })
}

/// Reads and parses one IDX file (gzip or raw) from disk.
pub fn read_file(path: &Path, expected_magic: u32) -> Result<IdxArray, IdxError> {
    let with_file = |problem| IdxError {
        file: path.display().to_string(),
        problem,
    };
    let raw = std::fs::read(path).map_err(|e| with_file(IdxProblem::Io(e.to_string())))?;
    let bytes = decompress_if_gzip(raw).map_err(with_file)?;
    parse(&bytes, expected_magic).map_err(with_file)
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
