//! The book's chapter-5 convnet and other layer stacks through the binary:
//! training on the CPU and the GPU, the commands that read its checkpoint,
//! usage errors for stacks that cannot work, and checkpoints of the previous
//! version.

mod common;

use std::path::Path;

use common::{gpu_mnist, ok, stdout};

/// The number after `key` in `text` (`test_acc: 0.9791`).
fn number_after(text: &str, key: &str) -> f64 {
    let at = text
        .find(key)
        .unwrap_or_else(|| panic!("no {key} in {text}"))
        + key.len();
    text[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn the_books_convnet_trains_on_the_cpu_and_every_command_reads_it() {
    let Some(data) = common::mnist_dir() else {
        return;
    };
    let data = data.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("convnet.st");
    let saved = saved.to_str().unwrap();
    let out = ok(gpu_mnist(&[
        "train",
        "--model",
        "convnet",
        "--backend",
        "cpu",
        "--data-dir",
        data,
        "--epochs",
        "1",
        "--train-samples",
        "3000",
        "--save",
        saved,
    ]));
    let text = stdout(&out);
    // Keras' summary of the book's model, and its defaults (batch 64: 47 steps).
    assert!(
        text.contains("(None, 26, 26, 32)") && text.contains("Total params: 93322"),
        "{text}"
    );
    assert!(text.contains("47/47"), "{text}");
    let accuracy = number_after(&text, "test_acc:");
    assert!(accuracy > 0.85, "{text}");

    let evaluated = stdout(&ok(gpu_mnist(&[
        "evaluate",
        "--checkpoint",
        saved,
        "--backend",
        "cpu",
        "--data-dir",
        data,
    ])));
    assert!(
        evaluated.contains(&format!("{accuracy:.4}")),
        "{accuracy} vs {evaluated}"
    );

    let predicted = stdout(&ok(gpu_mnist(&[
        "predict",
        "--checkpoint",
        saved,
        "--backend",
        "cpu",
        "--data-dir",
        data,
        "--index",
        "0",
    ])));
    // MNIST's first test image is a 7.
    assert!(predicted.contains("label 7"), "{predicted}");

    let torch = dir.path().join("torch.st");
    let exported = stdout(&ok(gpu_mnist(&[
        "export",
        "--checkpoint",
        saved,
        "--pytorch",
        "-o",
        torch.to_str().unwrap(),
    ])));
    assert!(
        exported.contains("nn.Conv2d(1, 32, 3, padding=0)"),
        "{exported}"
    );
    let bytes = std::fs::read(&torch).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(file.tensor("0.weight").unwrap().shape(), [32, 1, 3, 3]);
    assert_eq!(file.tensor("9.weight").unwrap().shape(), [64, 576]);
}

/// One epoch on 5,000 images: the GPU's test accuracy within 0.01 of the
/// CPU's (CI runs this on Vulkan at 4, 8 and 16 lanes and on GL). The
/// devices sum products in different orders, and 79 RMSprop steps grow
/// those roundings, and the tuner's kernel choices (timed, so they can
/// differ between runs) change the orders: measured 0.0024 at 4 lanes,
/// 0.0015 at 8 and 16, 0.0001 on GL (2026-12-07), but 0.0066 at 4 lanes with
/// other choices, so the 0.003 is not a bound this can promise. That
/// the GPU computes the same steps is checked, to rounding, by the next test.
#[test]
fn the_convnet_trains_on_the_gpu_as_on_the_cpu() {
    let (Some(data), Some(gpu)) = (common::mnist_dir(), common::gpu()) else {
        return;
    };
    let backend = match gpu {
        gpu_mnist::Device::Gpu {
            api: gpu_mnist::GpuApi::Gl,
            ..
        } => "gl",
        _ => "vulkan",
    };
    let accuracy = |backend: &str| {
        let out = ok(gpu_mnist(&[
            "train",
            "--model",
            "convnet",
            "--backend",
            backend,
            "--data-dir",
            data.to_str().unwrap(),
            "--epochs",
            "1",
            "--train-samples",
            "5000",
            "--seed",
            "1",
            "--quiet",
        ]));
        number_after(&stdout(&out), "test_acc:")
    };
    let (cpu, gpu) = (accuracy("cpu"), accuracy(backend));
    assert!(cpu > 0.85, "{cpu}");
    assert!((cpu - gpu).abs() <= 0.01, "cpu {cpu}, {backend} {gpu}");
}

/// Two SGD steps of the book's convnet at batch 128 (its first weight
/// gradient sums 86,528 products): the GPU's parameters equal the CPU's to
/// rounding, every tensor, where a step moves them by about 1e-3.
#[test]
fn the_convnet_trains_on_the_gpu_step_for_step_as_on_the_cpu() {
    use gpu_mnist::data::Splits;
    use gpu_mnist::{Init, ModelSpec, OptimizerKind, OptimizerSpec, Params, TrainConfig, Trainer};
    let (Some(full), Some(gpu)) = (common::mnist(), common::gpu()) else {
        return;
    };
    let data = std::sync::Arc::new(Splits::new(
        full.train.truncated(200),
        full.test.truncated(10),
    ));
    let spec = ModelSpec::convnet(28, 28, 10);
    let params = Params::init(&spec, Init::Glorot, 1);
    let config = TrainConfig {
        optimizer: OptimizerSpec::keras_default(OptimizerKind::Sgd),
        shuffle: false,
        ..TrainConfig::default()
    };
    let trained = |device: &gpu_mnist::Device| {
        let mut trainer = Trainer::new(device, &spec, &params, data.clone(), config).unwrap();
        trainer.train_epoch(&mut ()).unwrap();
        trainer.params().unwrap()
    };
    let (cpu, gpu) = (trained(&gpu_mnist::Device::Cpu), trained(&gpu));
    for ((c, g), start) in cpu.tensors.iter().zip(&gpu.tensors).zip(&params.tensors) {
        let max = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max)
        };
        let (diff, moved) = (max(&c.values, &g.values), max(&c.values, &start.values));
        assert!(moved > 1e-4, "{}: moved {moved}", c.name);
        assert!(
            diff <= 1e-6,
            "{}: the GPU's differs by {diff}; a step moved it {moved}",
            c.name
        );
    }
}

#[test]
fn stacks_that_cannot_work_are_usage_errors() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["--layers", "dense(10,softmax)"],
            "layer 0 (Dense) needs a flat input, but its input is (None, 28, 28, 1): add Flatten before it",
        ),
        (
            &["--layers", "conv2d(8,3,relu),maxpool(30),flatten,dense(10,softmax)"],
            "layer 1 (MaxPooling2D): a 30x30 window does not fit its 26x26 input",
        ),
        (
            &["--model", "convnet", "--hidden", "64"],
            "--hidden sets the MLP's widths",
        ),
        (
            &["--model", "convnet", "--layers", "flatten,dense(10,softmax)"],
            "cannot be used with",
        ),
    ];
    common::assert_train_usage_errors(&cases);
}

/// A checkpoint written by the version before layers owned their tensors
/// (commit 5dc949b: `train --hidden 16 --epochs 1 --train-samples 2000
/// --seed 3 --save`): it evaluates to what that version printed, and its
/// run resumes.
#[test]
fn checkpoints_of_the_previous_version_load() {
    let Some(data) = common::mnist_dir() else {
        return;
    };
    let data = data.to_str().unwrap();
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mlp-5dc949b.safetensors");
    let fixture = fixture.to_str().unwrap();
    let evaluated = stdout(&ok(gpu_mnist(&[
        "evaluate",
        "--checkpoint",
        fixture,
        "--backend",
        "cpu",
        "--data-dir",
        data,
    ])));
    assert!(
        evaluated.contains(include_str!("fixtures/mlp-5dc949b.test_acc").trim()),
        "{evaluated}"
    );
    let dir = tempfile::tempdir().unwrap();
    let resumed = dir.path().join("resumed.st");
    ok(gpu_mnist(&[
        "train",
        "--backend",
        "cpu",
        "--data-dir",
        data,
        "--hidden",
        "16",
        "--epochs",
        "1",
        "--train-samples",
        "2000",
        "--seed",
        "3",
        "--resume",
        fixture,
        "--save",
        resumed.to_str().unwrap(),
        "--quiet",
    ]));
}
