//! Property tests: valid IDX files, checkpoints and pictures for `predict
//! --image`, mutated, truncated and extended at random, always give a correct
//! parse or a typed one-line error, never a panic, and never allocate beyond
//! what the input could hold.

use std::collections::HashMap;

use gpu_mnist::checkpoint;
use gpu_mnist::data::idx::{self, IdxProblem, IMAGES_MAGIC, LABELS_MAGIC};
use gpu_mnist::{Init, ModelSpec, Params};
use proptest::prelude::*;

/// A small valid images file: `n` images of `rows x cols`.
fn images(n: usize, rows: usize, cols: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..n * rows * cols).map(|i| (i * 7) as u8).collect();
    idx::encode(&[n, rows, cols], &data)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// What can be done to a valid file.
#[derive(Debug, Clone)]
enum Damage {
    /// Overwrite byte `at` (modulo the length) with `value`.
    Set {
        at: usize,
        value: u8,
    },
    Truncate {
        keep: usize,
    },
    Extend {
        extra: Vec<u8>,
    },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Damage::Set { at, value }),
        any::<usize>().prop_map(|keep| Damage::Truncate { keep }),
        proptest::collection::vec(any::<u8>(), 1..64).prop_map(|extra| Damage::Extend { extra }),
    ]
}

fn apply(mut bytes: Vec<u8>, damages: &[Damage]) -> Vec<u8> {
    for d in damages {
        match d {
            Damage::Set { at, value } if !bytes.is_empty() => {
                let i = at % bytes.len();
                bytes[i] = *value;
            }
            Damage::Set { .. } => {}
            Damage::Truncate { keep } => {
                let keep = keep % (bytes.len() + 1);
                bytes.truncate(keep);
            }
            Damage::Extend { extra } => bytes.extend_from_slice(extra),
        }
    }
    bytes
}

/// The header's dimensions, when it has a whole one.
fn header_product(bytes: &[u8], rank: usize) -> Option<u128> {
    let raw = if bytes.starts_with(&[0x1f, 0x8b]) {
        return None;
    } else {
        bytes
    };
    (raw.len() >= 4 + 4 * rank).then(|| {
        (1..=rank)
            .map(|i| u32::from_be_bytes(raw[4 * i..4 * i + 4].try_into().unwrap()) as u128)
            .product()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn damaged_idx_files_parse_or_fail_with_a_typed_error(
        n in 1usize..5,
        rows in 1usize..6,
        cols in 1usize..6,
        compressed in any::<bool>(),
        damages in proptest::collection::vec(damage(), 1..4),
    ) {
        let valid = images(n, rows, cols);
        let start = if compressed { gzip(&valid) } else { valid.clone() };
        let bytes = apply(start, &damages);
        match idx::parse(&bytes, IMAGES_MAGIC) {
            Ok(array) => {
                // A parse is exactly what its header says.
                let product: usize = array.dims.iter().product();
                prop_assert_eq!(array.data.len(), product);
                prop_assert_eq!(array.dims.len(), 3);
                // Never more data than the input could hold.
                prop_assert!(array.data.len() as u64 <= 1032 * bytes.len() as u64);
                if let Some(p) = header_product(&bytes, 3) {
                    prop_assert_eq!(p, product as u128);
                }
            }
            Err(problem) => {
                // Every problem has a message for the user.
                prop_assert!(!problem.to_string().is_empty());
            }
        }
        // The labels reader sees the same bytes as the wrong magic or worse.
        if let Ok(array) = idx::parse(&bytes, LABELS_MAGIC) {
            prop_assert_eq!(array.dims.len(), 1);
        }
    }

    #[test]
    fn random_bytes_never_panic_the_idx_reader(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        for magic in [IMAGES_MAGIC, LABELS_MAGIC] {
            if let Err(e) = idx::parse(&bytes, magic) {
                let is_typed = matches!(
                    e,
                    IdxProblem::Io(_) | IdxProblem::Gzip(_) | IdxProblem::TooShortForHeader { .. }
                        | IdxProblem::BadMagic { .. } | IdxProblem::ZeroDimension { .. }
                        | IdxProblem::LengthMismatch { .. } | IdxProblem::TrailingData { .. }
                        | IdxProblem::Implausible { .. }
                );
                prop_assert!(is_typed, "{e:?}");
            }
        }
    }
}

/// A valid checkpoint of a small network, as bytes.
fn checkpoint_bytes(dir: &std::path::Path) -> Vec<u8> {
    let spec = ModelSpec::mlp(6, &[4], 3);
    let params = Params::init(&spec, Init::Glorot, 1);
    let path = dir.join("valid.st");
    let metadata = HashMap::from([("dataset".to_string(), "mnist".to_string())]);
    checkpoint::save(&path, &spec, &params, metadata).unwrap();
    std::fs::read(&path).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn damaged_checkpoints_load_or_fail_with_one_line(
        damages in proptest::collection::vec(damage(), 1..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let bytes = apply(checkpoint_bytes(dir.path()), &damages);
        let path = dir.path().join("damaged.st");
        std::fs::write(&path, &bytes).unwrap();
        match checkpoint::read(&path) {
            Ok(saved) => {
                // Whatever loads is a usable model: valid, finite, chained.
                prop_assert!(saved.spec.validate().is_ok());
                prop_assert_eq!(saved.spec.param_shapes(), saved.params.shapes());
                for t in saved.params.values() {
                    prop_assert!(t.iter().all(|v| v.is_finite()));
                }
            }
            Err(e) => {
                let message = e.to_string();
                let prefix = format!("checkpoint {}: ", path.display());
                prop_assert!(message.starts_with(&prefix), "{}", message);
                prop_assert_eq!(message.lines().count(), 1, "{}", message);
            }
        }
    }
}

#[test]
fn a_zero_width_layer_or_a_nan_weight_is_refused_with_its_reason() {
    use safetensors::tensor::{Dtype, TensorView};
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, tensors: Vec<(&str, Vec<usize>, Vec<f32>)>, model: Option<&str>| {
        let views: Vec<(String, TensorView)> = tensors
            .iter()
            .map(|(n, shape, v)| {
                let view =
                    TensorView::new(Dtype::F32, shape.clone(), bytemuck::cast_slice(v)).unwrap();
                (n.to_string(), view)
            })
            .collect();
        let metadata = model.map(|m| HashMap::from([("model".to_string(), m.to_string())]));
        let path = dir.path().join(name);
        std::fs::write(&path, safetensors::serialize(views, metadata).unwrap()).unwrap();
        path
    };
    let zero = write(
        "zero.st",
        vec![
            ("dense_0.kernel", vec![4, 0], vec![]),
            ("dense_0.bias", vec![0], vec![]),
            ("dense_1.kernel", vec![0, 3], vec![]),
            ("dense_1.bias", vec![3], vec![0.0; 3]),
        ],
        None,
    );
    let err = checkpoint::read(&zero).unwrap_err().to_string();
    assert!(
        err.contains("the saved architecture cannot be used"),
        "{err}"
    );
    let nan = write(
        "nan.st",
        vec![
            (
                "dense_0.kernel",
                vec![2, 3],
                vec![0.0, 1.0, f32::NAN, 0.0, 0.0, 0.0],
            ),
            ("dense_0.bias", vec![3], vec![0.0; 3]),
        ],
        None,
    );
    let err = checkpoint::read(&nan).unwrap_err().to_string();
    assert!(
        err.ends_with("dense_0.kernel holds NaN: not a trained model"),
        "{err}"
    );
}

/// A small valid picture of a digit: a light bar on dark, as PNG or JPEG.
fn picture(jpeg: bool) -> Vec<u8> {
    let image = image::GrayImage::from_fn(23, 31, |x, y| {
        image::Luma([if (9..14).contains(&x) && (4..27).contains(&y) {
            230
        } else {
            10
        }])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    let format = if jpeg {
        image::ImageFormat::Jpeg
    } else {
        image::ImageFormat::Png
    };
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn damaged_pictures_give_a_digit_or_one_line(
        jpeg in any::<bool>(),
        damages in proptest::collection::vec(damage(), 1..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("digit.png");
        std::fs::write(&path, apply(picture(jpeg), &damages)).unwrap();
        match gpu_mnist::data::digit_image::load(&path) {
            // Whatever decodes is a whole 28x28 frame with some ink in it.
            Ok(pixels) => prop_assert!(pixels.iter().any(|&p| p > 0)),
            Err(e) => {
                let message = e.to_string();
                prop_assert!(message.contains(&path.display().to_string()), "{}", message);
                prop_assert_eq!(message.lines().count(), 1, "{}", message);
            }
        }
    }
}

#[test]
fn a_file_of_zeros_is_refused_by_its_first_eight_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zeros.safetensors");
    std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
    let err = checkpoint::read(&path).unwrap_err().to_string();
    assert!(
        err.ends_with("not a safetensors file: its first 8 bytes announce a header of 0 bytes in a file of 1048576 (at most 100000000)"),
        "{err}"
    );
    std::fs::write(&path, b"abc").unwrap();
    let err = checkpoint::read(&path).unwrap_err().to_string();
    assert!(
        err.ends_with("3 bytes, too short for a safetensors header"),
        "{err}"
    );
}
