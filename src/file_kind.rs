//! What a file is, told from its first bytes: the kinds of file this tool
//! writes or reads (checkpoints, data set files, the kernel cache, JSON
//! reports and histories, CSV logs, plots), so that a command refuses to
//! replace one of them with a file of another kind (`--history` given the
//! name of a trained model, say).

use std::io::Read;
use std::path::Path;

/// A kind of file, as far as its first bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A gpu-mnist checkpoint: safetensors with the model's tensor names.
    Checkpoint,
    /// Other safetensors (e.g. an export for PyTorch).
    Safetensors,
    /// An IDX data set file, raw.
    Idx,
    /// Gzip: a data set's downloaded files.
    Gzip,
    /// The tuner's kernel cache.
    KernelCache,
    /// Any other JSON document (a history, a report).
    Json,
    /// A CSV log of epochs (Keras' CSVLogger columns).
    Csv,
    Png,
    Svg,
}

/// How much of a file [`FileKind::of`] reads.
const HEAD: u64 = 64 * 1024;

impl FileKind {
    /// The kind of the file at `path`, if it is one of these (`None` for
    /// anything else, or nothing there).
    pub fn of(path: &Path) -> Option<FileKind> {
        let mut file = crate::input_file::open_regular(path).ok()?;
        let mut head = Vec::new();
        (&mut file).take(HEAD).read_to_end(&mut head).ok()?;
        // A checkpoint's tensor names follow its metadata, a long run's
        // history among them: its whole header is read.
        if let Some(length) = safetensors_header_length(&head) {
            let rest = (8 + length).saturating_sub(head.len() as u64);
            file.take(rest).read_to_end(&mut head).ok()?;
        }
        Self::sniff(&head)
    }

    /// The kind of a file that begins with `head`.
    pub fn sniff(head: &[u8]) -> Option<FileKind> {
        if head.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Some(FileKind::Png);
        }
        if head.starts_with(&crate::data::idx::GZIP_MAGIC) {
            return Some(FileKind::Gzip);
        }
        if let [0, 0, 0x08, 1..=4, ..] = head {
            return Some(FileKind::Idx);
        }
        if let Some(kind) = safetensors(head) {
            return Some(kind);
        }
        let text = head.trim_ascii_start();
        let contains = |needle: &str| text.windows(needle.len()).any(|w| w == needle.as_bytes());
        if text.starts_with(b"{") {
            return Some(
                if contains(crate::backend::gpu::tune::cache::CACHE_FORMAT) {
                    FileKind::KernelCache
                } else {
                    FileKind::Json
                },
            );
        }
        if text.starts_with(b"<svg") || (text.starts_with(b"<?xml") && contains("<svg")) {
            return Some(FileKind::Svg);
        }
        text.starts_with(b"epoch,").then_some(FileKind::Csv)
    }

    /// What it is, for a message: "a gpu-mnist checkpoint".
    pub fn describe(self) -> &'static str {
        match self {
            FileKind::Checkpoint => "a gpu-mnist checkpoint",
            FileKind::Safetensors => "a safetensors file",
            FileKind::Idx => "an IDX data set file",
            FileKind::Gzip => "a gzip file (as a data set's downloads are)",
            FileKind::KernelCache => "the GPU kernel cache",
            FileKind::Json => "a JSON file",
            FileKind::Csv => "a CSV log of epochs",
            FileKind::Png => "a PNG picture",
            FileKind::Svg => "an SVG picture",
        }
    }
}

/// A safetensors header's start: its length (8 bytes, little-endian, below
/// safetensors' own bound) then a JSON object; a checkpoint's names its
/// model's tensors, every model having a dense layer.
fn safetensors(head: &[u8]) -> Option<FileKind> {
    let length = safetensors_header_length(head)?;
    let header = &head[8..head.len().min(8 + length as usize)];
    let named = |name: &str| header.windows(name.len()).any(|w| w == name.as_bytes());
    Some(if named("\"dense_0.kernel\"") {
        FileKind::Checkpoint
    } else {
        FileKind::Safetensors
    })
}

/// The header length a safetensors file's first bytes announce, when they
/// look like one (a length within safetensors' bound, then a JSON object).
fn safetensors_header_length(head: &[u8]) -> Option<u64> {
    let (length, rest) = head.split_first_chunk::<8>()?;
    let length = u64::from_le_bytes(*length);
    ((2..=crate::checkpoint::MAX_HEADER).contains(&length) && rest.first() == Some(&b'{'))
        .then_some(length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Init, ModelSpec, Params};

    /// Each kind from what this crate writes (or the format's own start).
    #[test]
    fn the_tools_files_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.safetensors");
        let spec = ModelSpec::mlp(4, &[3], 2);
        let params = Params::init(&spec, Init::Glorot, 1);
        crate::checkpoint::save(&model, &spec, &params, Default::default()).unwrap();
        assert_eq!(FileKind::of(&model), Some(FileKind::Checkpoint));
        // A long run's history ahead of the tensor names, past the first read.
        let history = "x".repeat(2 * HEAD as usize);
        let long = dir.path().join("long.safetensors");
        let metadata = [("history".to_string(), history)].into();
        crate::checkpoint::save(&long, &spec, &params, metadata).unwrap();
        assert_eq!(FileKind::of(&long), Some(FileKind::Checkpoint));
        let torch = dir.path().join("t.safetensors");
        crate::checkpoint::export_pytorch(&torch, &spec, &params).unwrap();
        assert_eq!(FileKind::of(&torch), Some(FileKind::Safetensors));
        let cases: [(&[u8], Option<FileKind>); 10] = [
            (b"\x89PNG\r\n\x1a\n\0\0", Some(FileKind::Png)),
            (b"\x1f\x8b\x08\0", Some(FileKind::Gzip)),
            (&[0, 0, 8, 3, 0, 0, 0, 1], Some(FileKind::Idx)),
            (
                b"{\n  \"format\": \"gpu-mnist kernel choices\",",
                Some(FileKind::KernelCache),
            ),
            (b"  {\"epochs\": []}", Some(FileKind::Json)),
            (b"epoch,accuracy,loss\n0,0.9,0.3\n", Some(FileKind::Csv)),
            (b"<svg width=\"1\"", Some(FileKind::Svg)),
            (b"<?xml version=\"1.0\"?>\n<svg", Some(FileKind::Svg)),
            (b"notes about a run\n", None),
            (b"", None),
        ];
        for (head, kind) in cases {
            assert_eq!(
                FileKind::sniff(head),
                kind,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
        assert_eq!(FileKind::of(&dir.path().join("nothing")), None);
    }
}
