//! The IDX reader and the data-set checks, on small files the tests write.

use std::io::Write;

use flate2::write::GzEncoder;
use gpu_mnist::data::catalog::CLASSES;
use gpu_mnist::data::idx::{self, IdxProblem, IMAGES_MAGIC, LABELS_MAGIC};
use gpu_mnist::data::source::DataError;
use gpu_mnist::data::MNIST;
use gpu_mnist::data::{pixel, Dataset, PIXEL_SCALE};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn images(n: usize) -> Vec<u8> {
    let pixels: Vec<u8> = (0..n * 4 * 3).map(|i| i as u8).collect();
    idx::encode(&[n, 4, 3], &pixels)
}

#[test]
fn parses_raw_and_gzip_images() {
    let raw = images(5);
    let parsed = idx::parse(&raw, IMAGES_MAGIC).unwrap();
    assert_eq!(parsed.dims, vec![5, 4, 3]);
    assert_eq!(parsed.data.len(), 60);
    assert_eq!(parsed.data[13], 13);
    let unzipped = idx::decompress_if_gzip(gzip(&raw), raw.len() as u64).unwrap();
    assert_eq!(idx::parse(&unzipped, IMAGES_MAGIC).unwrap(), parsed);
}

#[test]
fn joins_gzip_members_and_refuses_junk_after_them() {
    let raw = images(5);
    let (head, tail) = raw.split_at(20);
    // `gzip -c a b` writes two members; gunzip joins them.
    let two = [gzip(head), gzip(tail)].concat();
    assert_eq!(
        idx::parse(&two, IMAGES_MAGIC).unwrap(),
        idx::parse(&raw, IMAGES_MAGIC).unwrap()
    );
    let unzipped = idx::decompress_if_gzip(two, raw.len() as u64).unwrap();
    assert_eq!(unzipped, raw);
    // The first member alone would be a whole file: what follows must not be ignored.
    let junk = [gzip(&raw), b"not gzip".to_vec()].concat();
    assert!(matches!(
        idx::parse(&junk, IMAGES_MAGIC),
        Err(IdxProblem::Gzip(_))
    ));
    assert!(matches!(
        idx::decompress_if_gzip(junk, raw.len() as u64),
        Err(IdxProblem::Gzip(_))
    ));
    let extra = [gzip(&raw), gzip(b"more")].concat();
    assert_eq!(
        idx::parse(&extra, IMAGES_MAGIC).unwrap_err(),
        IdxProblem::TrailingData {
            expected: 5 * 4 * 3
        }
    );
}

#[test]
fn rejects_wrong_magic() {
    let err = idx::parse(&images(2), LABELS_MAGIC).unwrap_err();
    assert_eq!(
        err,
        IdxProblem::BadMagic {
            found: IMAGES_MAGIC,
            expected: LABELS_MAGIC
        }
    );
    assert_eq!(
        err.to_string(),
        "wrong magic number 0x00000803, expected 0x00000801"
    );
}

#[test]
fn rejects_truncated_and_overlong_data() {
    let mut raw = images(3);
    raw.pop();
    assert_eq!(
        idx::parse(&raw, IMAGES_MAGIC).unwrap_err(),
        IdxProblem::LengthMismatch {
            expected: 36,
            found: 35
        }
    );
    raw.extend([0, 0]);
    assert_eq!(
        idx::parse(&raw, IMAGES_MAGIC).unwrap_err(),
        IdxProblem::TrailingData { expected: 36 }
    );
}

#[test]
fn headers_are_checked_before_anything_is_allocated() {
    // 60,000 images announced in a 16-byte file.
    let claim = idx::encode(&[60_000, 28, 28], &[]);
    assert_eq!(
        idx::parse(&claim, IMAGES_MAGIC).unwrap_err(),
        IdxProblem::Implausible {
            dims: vec![60_000, 28, 28],
            len: 16
        }
    );
    // Dimensions whose product overflows.
    let huge = idx::encode(&[u32::MAX as usize; 3], &[]);
    assert!(matches!(
        idx::parse(&huge, IMAGES_MAGIC).unwrap_err(),
        IdxProblem::Implausible { .. }
    ));
    // Compressed, a header may claim up to what DEFLATE could expand into,
    // and then the data must really be there.
    let labels = gzip(&idx::encode(&[20_000], &[]));
    assert_eq!(
        idx::parse(&labels, LABELS_MAGIC).unwrap_err(),
        IdxProblem::LengthMismatch {
            expected: 20_000,
            found: 0
        }
    );
    let absurd = gzip(&idx::encode(&[1 << 30], &[]));
    assert!(matches!(
        idx::parse(&absurd, LABELS_MAGIC).unwrap_err(),
        IdxProblem::Implausible { .. }
    ));
}

#[test]
fn decompression_stops_past_the_announced_length() {
    // 3 labels announced, then 200 MB of zeros that compress to about 200 KB:
    // refused after reading one byte too many, not after inflating it all.
    let mut raw = idx::encode(&[3], &[1, 2, 3]);
    raw.resize(200 << 20, 0);
    let gz = gzip(&raw);
    assert!(gz.len() < 1 << 20);
    assert_eq!(
        idx::parse(&gz, LABELS_MAGIC).unwrap_err(),
        IdxProblem::TrailingData { expected: 3 }
    );
}

#[test]
fn rejects_short_header_and_zero_dimension() {
    assert_eq!(
        idx::parse(&[0, 0, 8, 3, 0, 0, 0, 1], IMAGES_MAGIC).unwrap_err(),
        IdxProblem::TooShortForHeader { found: 8 }
    );
    let zero = idx::encode(&[0], &[]);
    assert_eq!(
        idx::parse(&zero, LABELS_MAGIC).unwrap_err(),
        IdxProblem::ZeroDimension { index: 0 }
    );
}

#[test]
fn rejects_corrupt_gzip() {
    let mut gz = gzip(&images(4));
    gz.truncate(gz.len() / 2);
    assert!(matches!(
        idx::decompress_if_gzip(gz.clone(), u64::MAX),
        Err(IdxProblem::Gzip(_))
    ));
    assert!(matches!(
        idx::parse(&gz, IMAGES_MAGIC),
        Err(IdxProblem::Gzip(_))
    ));
}

#[test]
fn dataset_checks_counts_and_labels() {
    let imgs = idx::parse(&images(3), IMAGES_MAGIC).unwrap();
    let two_labels = idx::parse(&idx::encode(&[2], &[1, 2]), LABELS_MAGIC).unwrap();
    let err = Dataset::from_idx(imgs.clone(), two_labels, CLASSES).unwrap_err();
    assert_eq!(err.to_string(), "3 images but 2 labels");
    let bad_label = idx::parse(&idx::encode(&[3], &[1, 10, 2]), LABELS_MAGIC).unwrap();
    let err = Dataset::from_idx(imgs.clone(), bad_label, CLASSES).unwrap_err();
    assert_eq!(
        err.to_string(),
        "label 10 at index 1 is not below the class count 10"
    );
    let labels = idx::parse(&idx::encode(&[3], &[1, 9, 2]), LABELS_MAGIC).unwrap();
    let data = Dataset::from_idx(imgs.clone(), labels.clone(), CLASSES).unwrap();
    assert_eq!((data.len, data.features, data.classes), (3, 12, 10));
    assert_eq!(data.image(1), &(12u8..24).collect::<Vec<_>>()[..]);
    // The class count is the data set's own, not MNIST's.
    let err = Dataset::from_idx(imgs.clone(), labels.clone(), 9).unwrap_err();
    assert_eq!(
        err,
        IdxProblem::LabelOutOfRange {
            index: 1,
            label: 9,
            classes: 9
        }
    );
    let data = Dataset::from_idx(imgs, labels, 200).unwrap();
    assert_eq!(data.classes, 200);
    let err = Dataset::new(vec![0; 4], vec![0, 3], 2, 3).unwrap_err();
    assert_eq!(
        err.to_string(),
        "label 3 at index 1 is not below the class count 3"
    );
}

#[test]
fn pixels_scale_into_the_unit_interval_within_an_ulp() {
    assert_eq!(pixel(0), 0.0);
    assert_eq!(pixel(255), 1.0);
    assert_eq!(PIXEL_SCALE, 1.0 / 255.0);
    for p in 0..=255u8 {
        // One correctly rounded multiplication by 1/255 rounded: within an
        // ulp of the exact quotient.
        let exact = p as f64 / 255.0;
        let ulp = f32::EPSILON as f64 * exact;
        assert!((pixel(p) as f64 - exact).abs() <= ulp, "pixel {p}");
    }
}

/// Writes a complete set of small, valid files under the given names.
fn write_set(dir: &std::path::Path, names: [&str; 4], n_train: usize) {
    let labels = |n: usize| idx::encode(&[n], &vec![3; n]);
    std::fs::write(dir.join(names[0]), gzip(&images(n_train))).unwrap();
    std::fs::write(dir.join(names[1]), labels(n_train)).unwrap();
    std::fs::write(dir.join(names[2]), images(2)).unwrap();
    std::fs::write(dir.join(names[3]), gzip(&labels(2))).unwrap();
}

#[test]
fn loads_both_spellings_gzip_or_raw() {
    let dir = tempfile::tempdir().unwrap();
    write_set(
        dir.path(),
        [
            "train-images-idx3-ubyte.gz",
            "train-labels.idx1-ubyte",
            "t10k-images.idx3-ubyte",
            "t10k-labels-idx1-ubyte.gz",
        ],
        5,
    );
    let data = MNIST.load(Some(dir.path()), None).unwrap();
    assert_eq!(
        (data.train.len, data.test.len, data.train.features),
        (5, 2, 12)
    );
    assert_eq!(data.train.labels, vec![3; 5]);
}

#[test]
fn explicit_dir_missing_files_names_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("train-images-idx3-ubyte"), images(1)).unwrap();
    // Download allowed, yet an explicit directory is never filled from a mirror.
    let mut events = 0;
    let err = MNIST
        .load(Some(dir.path()), Some(&mut |_| events += 1))
        .unwrap_err();
    assert_eq!(events, 0);
    assert!(matches!(err, DataError::MissingInExplicitDir { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains(
            "missing train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"
        ),
        "{msg}"
    );
    assert!(!msg.contains("missing train-images"), "{msg}");
}

#[test]
fn errors_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    write_set(
        dir.path(),
        [
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ],
        4,
    );
    // Labels for 3 images where the images file holds 4.
    std::fs::write(
        dir.path().join("train-labels-idx1-ubyte"),
        idx::encode(&[3], &[0, 1, 2]),
    )
    .unwrap();
    let msg = MNIST.load(Some(dir.path()), None).unwrap_err().to_string();
    assert!(
        msg.contains("train-labels-idx1-ubyte") && msg.ends_with("4 images but 3 labels"),
        "{msg}"
    );
    // A labels file where an images file belongs.
    std::fs::write(
        dir.path().join("train-images-idx3-ubyte"),
        idx::encode(&[3], &[0, 1, 2]),
    )
    .unwrap();
    let msg = MNIST.load(Some(dir.path()), None).unwrap_err().to_string();
    assert!(
        msg.contains("train-images-idx3-ubyte: wrong magic number 0x00000801, expected 0x00000803"),
        "{msg}"
    );
}

#[test]
fn accepted_names_cover_gzip_raw_and_dotted() {
    assert_eq!(
        MNIST.files()[0].accepted_names(),
        [
            "train-images-idx3-ubyte.gz",
            "train-images-idx3-ubyte",
            "train-images.idx3-ubyte.gz",
            "train-images.idx3-ubyte"
        ]
    );
}
