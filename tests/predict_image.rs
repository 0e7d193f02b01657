//! `gpu-mnist predict --image` as a user runs it: pictures of digits at odd
//! sizes, in both polarities and in three encodings, predicted by a checkpoint
//! trained here; bad files get one line naming the problem.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use gpu_mnist::data::catalog::MNIST;
use image::{imageops, GrayImage, Luma, LumaA, Rgb};

fn gpu_mnist(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gpu-mnist"))
        .args(args)
        .output()
        .unwrap()
}

/// A checkpoint trained once for all the tests (2 epochs on the CPU, about
/// 97%), or `None` without MNIST.
fn checkpoint() -> Option<&'static Path> {
    static CKPT: OnceLock<Option<PathBuf>> = OnceLock::new();
    CKPT.get_or_init(|| {
        let data = common::mnist_dir()?;
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("predict_image");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("model.safetensors");
        let out = gpu_mnist(&[
            "train",
            "--backend",
            "cpu",
            "--epochs",
            "2",
            "--quiet",
            "--save",
            path.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        Some(path)
    })
    .as_deref()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `predict --image` on `files` and returns each file's output block:
/// its header, 28 lines of drawing and the top three.
fn predict(ckpt: &Path, files: &[PathBuf]) -> Vec<Vec<String>> {
    let mut args = vec!["predict", "--backend", "cpu", "--checkpoint"];
    args.push(ckpt.to_str().unwrap());
    for f in files {
        args.extend(["--image", f.to_str().unwrap()]);
    }
    let out = gpu_mnist(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let blocks: Vec<Vec<String>> = stdout
        .split("\n\n")
        .map(|b| b.lines().map(String::from).collect())
        .collect();
    assert_eq!(blocks.len(), files.len(), "{stdout}");
    for (block, file) in blocks.iter().zip(files) {
        assert_eq!(block.len(), 1 + 28 + 3, "{stdout}");
        assert_eq!(block[0], format!("{}:", file.display()));
        assert!(block[1..29].iter().all(|l| l.chars().count() == 56));
        assert!(block[29].starts_with("  1. ") && block[31].starts_with("  3. "));
    }
    blocks
}

/// The class a block ranks first, and its probability in percent.
fn top(block: &[String]) -> (String, f64) {
    let fields: Vec<&str> = block[29].split_whitespace().collect();
    let percent = fields[2].trim_end_matches('%').parse().unwrap();
    (fields[1].to_string(), percent)
}

/// MNIST test image `i` drawn twice as large, off-centre in a 97x61 picture,
/// light on dark, and its label.
fn rerendered(i: usize) -> (GrayImage, u8) {
    static TEST: OnceLock<gpu_mnist::data::Dataset> = OnceLock::new();
    let test = TEST.get_or_init(|| {
        let dir = common::mnist_dir().unwrap();
        MNIST.load(Some(&dir), None).unwrap().test
    });
    let small = GrayImage::from_raw(28, 28, test.image(i).to_vec()).unwrap();
    let large = imageops::resize(&small, 56, 56, imageops::FilterType::Triangle);
    let mut picture = GrayImage::new(97, 61);
    imageops::overlay(&mut picture, &large, 35, 2);
    (picture, test.labels[i])
}

fn inverted(image: &GrayImage) -> GrayImage {
    let mut out = image.clone();
    imageops::invert(&mut out);
    out
}

#[test]
fn test_images_at_odd_sizes_polarities_and_encodings_are_predicted() {
    let Some(ckpt) = checkpoint() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut labels = Vec::new();
    for i in 0..6 {
        let (light, label) = rerendered(i);
        let dark = inverted(&light);
        // Light on dark as colour PNG, dark on light as grey JPEG, and black
        // ink on a transparent canvas as RGBA PNG.
        let rgb = image::RgbImage::from_fn(97, 61, |x, y| Rgb([light.get_pixel(x, y).0[0]; 3]));
        let rgba = image::RgbaImage::from_fn(97, 61, |x, y| {
            image::Rgba([0, 0, 0, light.get_pixel(x, y).0[0]])
        });
        let png = dir.path().join(format!("{i}-rgb.png"));
        let jpeg = dir.path().join(format!("{i}-grey.jpg"));
        let alpha = dir.path().join(format!("{i}-rgba.png"));
        rgb.save(&png).unwrap();
        dark.save(&jpeg).unwrap();
        rgba.save(&alpha).unwrap();
        for f in [png, jpeg, alpha] {
            files.push(f);
            labels.push(label.to_string());
        }
    }
    let blocks = predict(ckpt, &files);
    for ((block, label), file) in blocks.iter().zip(&labels).zip(&files) {
        let (class, percent) = top(block);
        assert_eq!(&class, label, "{}: {block:#?}", file.display());
        assert!(percent > 50.0, "{}: {block:#?}", file.display());
    }
}

#[test]
fn digits_drawn_here_are_predicted() {
    let Some(ckpt) = checkpoint() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A thick, slightly slanted "1", black on white, in a tall picture.
    let one = GrayImage::from_fn(150, 240, |x, y| {
        let centre = 80.0 - (f64::from(y) - 120.0) * 0.1;
        let on = (30..210).contains(&y) && (f64::from(x) - centre).abs() < 12.0;
        Luma([if on { 20 } else { 235 }])
    });
    // A "0": an upright elliptical ring, white on black, off to the left.
    let zero = GrayImage::from_fn(300, 200, |x, y| {
        let (dx, dy) = ((f64::from(x) - 90.0) / 55.0, (f64::from(y) - 100.0) / 80.0);
        let r = (dx * dx + dy * dy).sqrt();
        Luma([if (0.75..1.0).contains(&r) { 250 } else { 5 }])
    });
    let files = [dir.path().join("one.png"), dir.path().join("zero.jpg")];
    one.save(&files[0]).unwrap();
    zero.save(&files[1]).unwrap();
    let blocks = predict(ckpt, &files);
    assert_eq!(top(&blocks[0]).0, "1", "{:#?}", blocks[0]);
    assert_eq!(top(&blocks[1]).0, "0", "{:#?}", blocks[1]);
}

#[test]
fn the_index_mode_draws_the_test_image_and_ranks_three_classes() {
    let (Some(ckpt), Some(data)) = (checkpoint(), common::mnist_dir()) else {
        return;
    };
    let out = gpu_mnist(&[
        "predict",
        "--backend",
        "cpu",
        "--data-dir",
        data.to_str().unwrap(),
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--index",
        "0",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 32, "{lines:#?}");
    assert_eq!(lines[0], "image 0 (label 7):");
    assert_eq!(top(&lines).0, "7", "{lines:#?}");
    // Test image 0's top-left is background and its stroke is full ink.
    assert!(lines[1].starts_with("    "), "{lines:#?}");
    assert!(lines[1..29].iter().any(|l| l.contains('█')), "{lines:#?}");
    let percents: Vec<f64> = lines[29..]
        .iter()
        .map(|l| {
            l.split_whitespace()
                .nth(2)
                .unwrap()
                .trim_end_matches('%')
                .parse()
                .unwrap()
        })
        .collect();
    assert!(percents.windows(2).all(|w| w[0] >= w[1]), "{percents:?}");

    let both = gpu_mnist(&[
        "predict",
        "--checkpoint",
        "x",
        "--index",
        "1",
        "--image",
        "y.png",
    ]);
    assert_eq!(both.status.code(), Some(2));
    assert!(
        stderr(&both).contains("cannot be used with"),
        "{}",
        stderr(&both)
    );
}

#[test]
fn bad_pictures_get_one_line_naming_the_problem() {
    let Some(ckpt) = checkpoint() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank.png");
    GrayImage::from_pixel(64, 48, Luma([240]))
        .save(&blank)
        .unwrap();
    let clear = dir.path().join("clear.png");
    image::GrayAlphaImage::from_pixel(20, 20, LumaA([0, 0]))
        .save(&clear)
        .unwrap();
    let text = dir.path().join("notes.png");
    std::fs::write(&text, "a digit, honest\n").unwrap();
    let truncated = dir.path().join("truncated.png");
    noise().save(&truncated).unwrap();
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let missing = dir.path().join("missing.png");
    let huge = dir.path().join("huge.png");
    std::fs::write(&huge, png_header(100_000, 100_000)).unwrap();

    // A JPEG of a test digit, which the image crate's lenient decoding read
    // as whole when cut or when its header claimed 7000 x 7000.
    let digit = dir.path().join("digit.jpg");
    inverted(&rerendered(0).0).save(&digit).unwrap();
    let whole = std::fs::read(&digit).unwrap();
    let scan = whole.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    let cut_jpeg = dir.path().join("cut.jpg");
    std::fs::write(&cut_jpeg, &whole[..scan + (whole.len() - scan) * 3 / 10]).unwrap();
    let frame = whole.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    let mut claims = whole.clone();
    claims[frame + 5..frame + 9].copy_from_slice(&[0x1B, 0x58, 0x1B, 0x58]);
    let claims_more = dir.path().join("claims-more.jpg");
    std::fs::write(&claims_more, claims).unwrap();

    let d = |p: &Path| p.display().to_string();
    let cases = [
        (
            &cut_jpeg,
            format!(
                "{}: corrupt JPEG image: the file ends before its end-of-image marker (cut short?)",
                d(&cut_jpeg)
            ),
        ),
        (
            &claims_more,
            format!(
                "{}: corrupt JPEG image: its header claims 7000x7000 pixels",
                d(&claims_more)
            ),
        ),
        (&blank, format!("{}: the image is blank: no ink", d(&blank))),
        (&clear, format!("{}: the image is blank: no ink", d(&clear))),
        (&text, format!("{}: not a PNG or JPEG image", d(&text))),
        (
            &truncated,
            format!("{}: corrupt PNG image: ", d(&truncated)),
        ),
        (
            &missing,
            format!("cannot read {}: No such file", d(&missing)),
        ),
    ];
    for (file, message) in cases {
        let out = gpu_mnist(&[
            "predict",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--image",
            file.to_str().unwrap(),
        ]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.starts_with(&format!("error: {message}")), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(out.stdout.is_empty());
    }
}

/// A noisy 400x300 picture whose PNG is large enough to cut in half mid-data.
fn noise() -> GrayImage {
    GrayImage::from_fn(400, 300, |x, y| {
        Luma([((x * 7919 + y * 104_729) % 251) as u8])
    })
}

/// A grey PNG that claims `width`x`height` pixels but holds ten bytes of them:
/// only the header check stands between it and a 10 GB allocation.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        png.extend((data.len() as u32).to_be_bytes());
        png.extend(kind);
        png.extend(data);
        png.extend(crc.sum().to_be_bytes());
    }
    let mut ihdr = [width.to_be_bytes(), height.to_be_bytes()].concat();
    ihdr.extend([8, 0, 0, 0, 0]); // 8-bit grey, no interlacing
    let mut idat = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut idat, &[0; 10]).unwrap();
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &idat.finish().unwrap());
    chunk(&mut png, b"IEND", &[]);
    png
}
