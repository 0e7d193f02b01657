//! Training curves through the binary: `train --plot` and `gpu-mnist plot`,
//! the images read back as an SVG or PNG reader sees them, and one clear line
//! for every bad input.

mod common;

use std::path::Path;
use std::process::{Command, Output};

/// The plot's size (`SIZE` in src/cli/plot.rs).
const SIZE: (u32, u32) = (1200, 500);
/// The series' colours: training, validation.
const TRAINING: [u8; 3] = [31, 119, 180];
const VALIDATION: [u8; 3] = [255, 127, 14];

fn gpu_mnist(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gpu-mnist"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Asserts a failure whose stderr is one line containing `needle`, and no panic.
fn assert_fails(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "stderr: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn hex(rgb: [u8; 3]) -> String {
    format!("#{:02X}{:02X}{:02X}", rgb[0], rgb[1], rgb[2])
}

/// What an SVG reader finds in the file: its size, every text, and how many
/// point markers each series colour fills.
struct Svg {
    size: (String, String),
    texts: Vec<String>,
    markers: Box<dyn Fn([u8; 3]) -> usize>,
}

fn read_svg(path: &Path) -> Svg {
    let source = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&source).expect("the plot is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    let size = (
        root.attribute("width").unwrap().to_string(),
        root.attribute("height").unwrap().to_string(),
    );
    let texts = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or_default().trim().to_string())
        .collect();
    let fills: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("circle"))
        .filter_map(|n| n.attribute("fill").map(str::to_string))
        .collect();
    Svg {
        size,
        texts,
        markers: Box::new(move |rgb| fills.iter().filter(|f| **f == hex(rgb)).count()),
    }
}

fn count(texts: &[String], text: &str) -> usize {
    texts.iter().filter(|t| *t == text).count()
}

#[test]
fn train_draws_the_curves_and_plot_redraws_them_as_png() {
    let Some(data) = common::mnist_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (svg, history, png) = (
        dir.path().join("out.svg"),
        dir.path().join("h.json"),
        dir.path().join("out.png"),
    );
    ok(gpu_mnist(&[
        "train",
        "--backend",
        "cpu",
        "--epochs",
        "2",
        "--train-samples",
        "2000",
        "--plot",
        svg.to_str().unwrap(),
        "--history",
        history.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--quiet",
    ]));

    let drawn = read_svg(&svg);
    assert_eq!(drawn.size, ("1200".into(), "500".into()));
    for text in ["Training curves: 2 epochs", "Loss", "Accuracy"] {
        assert_eq!(count(&drawn.texts, text), 1, "{text} in {:?}", drawn.texts);
    }
    // Each panel has its axis label and a legend naming the one series.
    assert_eq!(count(&drawn.texts, "epoch"), 2);
    assert_eq!(count(&drawn.texts, "training"), 2);
    assert_eq!(count(&drawn.texts, "validation"), 0);
    // A marker per epoch in each panel.
    assert_eq!((drawn.markers)(TRAINING), 4);
    assert_eq!((drawn.markers)(VALIDATION), 0);

    ok(gpu_mnist(&[
        "plot",
        history.to_str().unwrap(),
        "-o",
        png.to_str().unwrap(),
    ]));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().expect("a PNG header");
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).expect("PNG image data");
    assert_eq!((frame.width, frame.height), SIZE);
    assert_eq!(frame.color_type, png::ColorType::Rgb);
    let rgb: Vec<[u8; 3]> = pixels[..frame.buffer_size()]
        .chunks_exact(3)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    let background = rgb.iter().filter(|&&p| p == [255; 3]).count();
    let black = rgb.iter().filter(|&&p| p == [0; 3]).count();
    let training = rgb.iter().filter(|&&p| p == TRAINING).count();
    assert!(
        background > rgb.len() / 2,
        "mostly white: {background} of {}",
        rgb.len()
    );
    assert!(black > 0, "no text or axes");
    assert!(
        training > 100,
        "the training curves cover {training} pixels"
    );
    assert!(!rgb.contains(&VALIDATION), "no validation to draw");
}

#[test]
fn validation_values_are_drawn_as_their_own_series() {
    let dir = tempfile::tempdir().unwrap();
    let (history, svg) = (dir.path().join("h.json"), dir.path().join("v.svg"));
    let epoch = |e: u32, loss: f64, val_loss: f64| {
        serde_json::json!({
            "epoch": e, "loss": loss, "accuracy": 1.0 - loss / 4.0,
            "val_loss": val_loss, "val_accuracy": 1.0 - val_loss / 4.0, "seconds": 0.5,
        })
    };
    // As `train --history` writes it, with fields the plot does not use.
    let json = serde_json::json!({
        "backend": "cpu",
        "epochs": [epoch(1, 0.3, 0.2), epoch(2, 0.15, 0.12), epoch(3, 0.08, 0.1)],
        "fit_seconds": 1.5,
        "test_acc": 0.97,
    });
    std::fs::write(&history, json.to_string()).unwrap();
    ok(gpu_mnist(&[
        "plot",
        history.to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
    ]));
    let drawn = read_svg(&svg);
    assert_eq!(count(&drawn.texts, "Training curves: 3 epochs"), 1);
    assert_eq!(count(&drawn.texts, "training"), 2);
    assert_eq!(count(&drawn.texts, "validation"), 2);
    assert_eq!((drawn.markers)(TRAINING), 6);
    assert_eq!((drawn.markers)(VALIDATION), 6);
}

#[test]
fn bad_inputs_get_one_line_and_no_image() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    std::fs::write(path("corrupt.json"), "{\"epochs\": [{\"epoch\": 1,").unwrap();
    std::fs::write(path("empty.json"), "{\"epochs\": []}").unwrap();
    std::fs::write(path("other.json"), "{\"steps\": 5}").unwrap();
    let good = r#"{"epochs": [{"epoch": 1, "loss": 0.3, "accuracy": 0.9, "val_loss": null, "val_accuracy": null, "seconds": 1.0}]}"#;
    std::fs::write(path("good.json"), good).unwrap();

    // (history, image, what the line says, the file it names)
    let cases = [
        ("missing.json", "out.svg", "cannot read", "missing.json"),
        (
            "corrupt.json",
            "out.svg",
            "not a history file written by `train --history`",
            "corrupt.json",
        ),
        (
            "other.json",
            "out.svg",
            "missing field `epochs`",
            "other.json",
        ),
        (
            "empty.json",
            "out.svg",
            "the history has no epochs to plot",
            "empty.json",
        ),
    ];
    for (history, image, message, named) in cases {
        let out = gpu_mnist(&["plot", &path(history), "-o", &path(image)]);
        assert_fails(&out, message);
        assert_fails(&out, &path(named));
        assert!(!Path::new(&path(image)).exists(), "{history} -> {image}");
    }
    // An image name of no format drawn is a usage error, as clap's own, before
    // any history or data is read or training starts.
    let usage = |args: &[&str], flag: &str, image: &str| {
        let out = gpu_mnist(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        let first = err.lines().next().unwrap_or_default();
        assert_eq!(
            first,
            format!(
                "error: invalid value '{image}' for '{flag} <FILE>': cannot plot to {image}: the file name must end in .svg or .png"
            )
        );
    };
    let bmp = path("out.bmp");
    usage(&["plot", &path("good.json"), "-o", &bmp], "--output", &bmp);
    assert!(!Path::new(&bmp).exists());
    let jpg = path("curves.jpg");
    usage(
        &["train", "--plot", &jpg, "--data-dir", &path("nowhere")],
        "--plot",
        &jpg,
    );
}
