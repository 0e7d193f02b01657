//! The binary as a user runs it: training, checkpoints, and one clear error line
//! (never a panic) for bad flags and bad data.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use gpu_mnist::checkpoint::{self, DATASET_KEY};
use gpu_mnist::data::catalog::{CLASSES, FEATURES};
use gpu_mnist::data::{idx, FASHION_MNIST};
use gpu_mnist::{Init, ModelSpec, Params};

fn gpu_mnist(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gpu-mnist"))
        .args(args)
        .env_remove("GPU_MNIST_DATA")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts a failure with exit code `code` whose stderr contains `needle` and no panic.
fn assert_fails(out: &Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
}

#[test]
fn absurd_flags_are_rejected_with_a_clear_message() {
    let cases: [(&[&str], &str); 12] = [
        (
            &["--batch-size", "0"],
            "invalid value '0' for '--batch-size <BATCH_SIZE>'",
        ),
        (
            &["--epochs", "0"],
            "invalid value '0' for '--epochs <EPOCHS>'",
        ),
        (&["--lr", "-1"], "must be greater than 0, got -1"),
        (&["--lr", "0"], "must be greater than 0, got 0"),
        (&["--lr", "NaN"], "NaN is not a finite number"),
        (&["--lr", "fast"], "'fast' is not a number"),
        (&["--hidden", "0"], "hidden layer widths must be at least 1"),
        (&["--hidden", "512,x"], "'x' is not a layer width"),
        (&["--hidden", "-5"], "'-5' is not a layer width"),
        // Refused before anything is allocated: an allocation this size aborts.
        (
            &["--hidden", "65536,65536"],
            "the model has 4347133962 parameters, more than the 268435456 (1 GiB of f32) supported",
        ),
        (
            &["--optimizer", "adagrad"],
            "invalid value 'adagrad' for '--optimizer <OPTIMIZER>'",
        ),
        (
            &["--backend", "cuda"],
            "invalid value 'cuda' for '--backend <BACKEND>'",
        ),
    ];
    for (flags, message) in cases {
        let mut args = vec!["train"];
        args.extend_from_slice(flags);
        assert_fails(&gpu_mnist(&args), 2, message);
    }
    assert_fails(
        &gpu_mnist(&["train", "--momentum", "1"]),
        2,
        "must be in [0, 1), got 1",
    );
}

/// Writes four small, valid MNIST-format files into `dir`.
fn write_small_set(dir: &Path) {
    let images = |n: usize| idx::encode(&[n, 28, 28], &vec![7; n * 784]);
    let labels = |n: usize| idx::encode(&[n], &vec![1; n]);
    std::fs::write(dir.join("train-images-idx3-ubyte"), images(20)).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), labels(20)).unwrap();
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), images(5)).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), labels(5)).unwrap();
}

#[test]
fn bad_data_gets_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = gpu_mnist(&["train", "--backend", "cpu", "--data-dir", d]);
    assert_fails(&out, 1, "error: MNIST files not found in");
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));

    write_small_set(dir.path());
    let ok = gpu_mnist(&[
        "train",
        "--backend",
        "cpu",
        "--data-dir",
        d,
        "--epochs",
        "1",
        "--quiet",
    ]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(
        stdout(&ok).ends_with("test_acc: 1.0000\n"),
        "all labels are 1, learnt at once: {}",
        stdout(&ok)
    );

    let images = dir.path().join("t10k-images-idx3-ubyte");
    let mut bytes = std::fs::read(&images).unwrap();
    bytes.truncate(bytes.len() - 10);
    std::fs::write(&images, &bytes).unwrap();
    let out = gpu_mnist(&["train", "--backend", "cpu", "--data-dir", d]);
    assert_fails(
        &out,
        1,
        "t10k-images-idx3-ubyte: expected 3920 data bytes after the header, found 3910",
    );

    std::fs::write(&images, idx::encode(&[5], &[0; 5])).unwrap();
    assert_fails(
        &gpu_mnist(&["train", "--data-dir", d]),
        1,
        "t10k-images-idx3-ubyte: wrong magic number 0x00000801, expected 0x00000803",
    );

    std::fs::write(&images, idx::encode(&[4, 28, 28], &vec![0; 4 * 784])).unwrap();
    assert_fails(
        &gpu_mnist(&["train", "--data-dir", d]),
        1,
        "4 images but 5 labels",
    );

    // Something other than a file under a data file's name is named, not
    // called missing, and never opened (a FIFO would block the open).
    #[cfg(unix)]
    {
        std::fs::remove_file(&images).unwrap();
        let made = Command::new("mkfifo").arg(&images).status().unwrap();
        assert!(made.success());
        assert_fails(
            &gpu_mnist(&["train", "--backend", "cpu", "--data-dir", d]),
            1,
            "t10k-images-idx3-ubyte: cannot read the file: is not a regular file",
        );
    }
}

#[test]
fn offline_without_data_says_where_it_looked() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gpu-mnist"))
        .args(["train", "--backend", "cpu"])
        .current_dir(home.path())
        .env_remove("GPU_MNIST_DATA")
        .env("HOME", home.path())
        .env("XDG_CACHE_HOME", home.path().join("cache"))
        // Nothing listens on the discard port: the download fails at once.
        .env("GPU_MNIST_MIRRORS", "http://127.0.0.1:9/")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_fails(&out, 1, "not found in data/mnist");
    assert!(
        err.contains("train-images-idx3-ubyte, train-labels-idx1-ubyte"),
        "{err}"
    );
    assert!(
        err.contains("the download failed") && err.contains("pass --data-dir DIR"),
        "{err}"
    );
    assert!(!home
        .path()
        .join("cache/gpu-mnist/mnist/train-images-idx3-ubyte.gz")
        .exists());
}

/// The epoch lines and test metrics of a run, without the timings.
fn metrics_only(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with("Epoch") || l.starts_with("test_"))
        .map(|l| {
            l.split(" - ")
                // Drop the timings ("0.7s", "2ms/step").
                .filter(|part| !part.ends_with('s') && !part.ends_with("/step"))
                .collect::<Vec<_>>()
                .join(" - ")
        })
        .collect()
}

#[test]
fn training_is_reproducible_and_checkpoints_round_trip() {
    let Some(dir) = common::mnist_dir() else {
        return;
    };
    let d = dir.to_str().unwrap();
    let work = tempfile::tempdir().unwrap();
    let ckpt = work.path().join("model.safetensors");
    let history = work.path().join("history.json");
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--backend",
            "cpu",
            "--data-dir",
            d,
            "--epochs",
            "2",
            "--train-samples",
            "3000",
        ];
        args.extend_from_slice(extra);
        gpu_mnist(&args)
    };
    let first = train(&[
        "--save",
        ckpt.to_str().unwrap(),
        "--history",
        history.to_str().unwrap(),
    ]);
    assert!(first.status.success(), "{}", stderr(&first));
    let second = train(&[]);
    let (a, b) = (
        metrics_only(&stdout(&first)),
        metrics_only(&stdout(&second)),
    );
    assert_eq!(a.len(), 3, "{a:?}");
    assert_eq!(a, b, "the same seed prints the same metrics");
    assert_ne!(a, metrics_only(&stdout(&train(&["--seed", "2"]))));

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&history).unwrap()).unwrap();
    assert_eq!(json["epochs"].as_array().unwrap().len(), 2);
    assert_eq!(json["counters"]["steps"], 2 * 24);

    let eval = gpu_mnist(&[
        "evaluate",
        "--backend",
        "cpu",
        "--data-dir",
        d,
        "--checkpoint",
        ckpt.to_str().unwrap(),
    ]);
    assert!(eval.status.success(), "{}", stderr(&eval));
    assert_eq!(
        metrics_only(&stdout(&eval)),
        a[2..].to_vec(),
        "the checkpoint evaluates as trained"
    );

    let predict = gpu_mnist(&[
        "predict",
        "--data-dir",
        d,
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--index",
        "0",
        "1",
    ]);
    // Per image: a header, 28 lines of drawing, the top three; a blank line between.
    let lines: Vec<String> = stdout(&predict).lines().map(String::from).collect();
    assert_eq!(lines.len(), 2 * 32 + 1, "{lines:?}");
    assert_eq!(lines[0], "image 0 (label 7):");
    assert!(lines[29].starts_with("  1. 7 "), "{lines:?}");
    assert_eq!(lines[33], "image 1 (label 2):");
    assert!(lines[62].starts_with("  1. 2 "), "{lines:?}");

    let out = gpu_mnist(&[
        "predict",
        "--data-dir",
        d,
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--index",
        "10000",
    ]);
    assert_fails(
        &out,
        1,
        "index 10000 is out of range: the test set has 10000 images",
    );
    std::fs::write(&ckpt, b"not a checkpoint").unwrap();
    let out = gpu_mnist(&[
        "evaluate",
        "--data-dir",
        d,
        "--checkpoint",
        ckpt.to_str().unwrap(),
    ]);
    assert_fails(&out, 1, "error: checkpoint ");
}

#[test]
fn fashion_mnist_trains_and_predicts_by_class_name() {
    let Some(dir) = common::fashion_mnist_dir() else {
        return;
    };
    let d = dir.to_str().unwrap();
    let work = tempfile::tempdir().unwrap();
    let ckpt = work.path().join("fashion.safetensors");
    let c = ckpt.to_str().unwrap();
    let data = [
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        d,
        "--backend",
        "cpu",
    ];
    let mut args = vec!["train", "--epochs", "1", "--quiet", "--save", c];
    args.extend(data);
    let out = gpu_mnist(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let acc: f32 = stdout(&out)
        .trim_end()
        .rsplit("test_acc: ")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(acc > 0.80, "one epoch on Fashion-MNIST reached only {acc}");
    let saved = checkpoint::read(&ckpt).unwrap();
    assert_eq!(saved.metadata[DATASET_KEY], "fashion-mnist");

    let mut args = vec!["predict", "--checkpoint", c, "--index", "0"];
    args.extend(data);
    let out = gpu_mnist(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("image 0 (label Ankle boot):\n"), "{text}");
    // The top classes by name: "  1. Ankle boot    93.1%".
    let first = text
        .lines()
        .find_map(|l| l.strip_prefix("  1. "))
        .unwrap_or_else(|| panic!("{text}"));
    let predicted = first
        .rsplit_once("  ")
        .map(|(name, _)| name.trim())
        .unwrap();
    assert!(FASHION_MNIST.classes.contains(&predicted), "{text}");

    let mut args = vec!["evaluate", "--checkpoint", c];
    args.extend(data);
    let out = gpu_mnist(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = stdout(&out);
    assert!(report.contains("dataset: Fashion-MNIST\n"), "{report}");
    // The per-class table names the classes.
    assert!(
        report.contains("\n0 T-shirt/top ") && report.contains("\n9 Ankle boot "),
        "{report}"
    );
}

#[test]
fn evaluate_refuses_a_checkpoint_of_another_data_set() {
    let Some(dir) = common::mnist_dir() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let spec = ModelSpec::mlp(FEATURES, &[8], CLASSES);
    let params = Params::init(&spec, Init::Glorot, 1);
    let tagged = work.path().join("fashion.safetensors");
    let metadata = [(DATASET_KEY.to_string(), "fashion-mnist".to_string())];
    checkpoint::save(&tagged, &spec, &params, metadata.into()).unwrap();
    let evaluate = |ckpt: &Path| {
        gpu_mnist(&[
            "evaluate",
            "--dataset",
            "mnist",
            "--data-dir",
            dir.to_str().unwrap(),
            "--backend",
            "cpu",
            "--checkpoint",
            ckpt.to_str().unwrap(),
        ])
    };
    let out = evaluate(&tagged);
    assert_fails(
        &out,
        1,
        &format!(
            "error: checkpoint {} was trained on fashion-mnist, not mnist: pass --dataset fashion-mnist",
            tagged.display()
        ),
    );
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    // A name this version does not know is not offered as a flag value.
    let unknown = work.path().join("cifar.safetensors");
    let metadata = [(DATASET_KEY.to_string(), "cifar10".to_string())];
    checkpoint::save(&unknown, &spec, &params, metadata.into()).unwrap();
    assert_fails(
        &evaluate(&unknown),
        1,
        &format!(
            "error: checkpoint {} was trained on cifar10, not mnist: cifar10 is not a data set this version knows",
            unknown.display()
        ),
    );

    // A checkpoint that does not say (an older one) is taken at its word.
    let untagged = work.path().join("old.safetensors");
    checkpoint::save(&untagged, &spec, &params, Default::default()).unwrap();
    let out = evaluate(&untagged);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("test_acc: "), "{}", stdout(&out));
}

#[test]
fn vulkan_backend_trains_from_the_command_line() {
    let Some(dir) = common::mnist_dir() else {
        return;
    };
    if common::gpu().is_none() {
        return;
    }
    let vulkan_train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--backend",
            "vulkan",
            "--data-dir",
            dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        gpu_mnist(&args)
    };
    let out = vulkan_train(&["--epochs", "1", "--train-samples", "2000", "--hidden", "64"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("backend: ") && text.contains("(vulkan, "),
        "{text}"
    );
    let acc: f64 = text
        .lines()
        .last()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        acc > 0.7,
        "one epoch of 2,000 images reaches over 70% (chance is 10%): {text}"
    );
    // A batch whose gather needs more workgroups than a dimension allows is
    // refused before anything is built, naming the limit.
    let out = vulkan_train(&["--batch-size", "65536", "--hidden", "8"]);
    assert_fails(&out, 1, "must be at least");
    assert!(
        stderr(&out).contains("this adapter allows"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn auto_takes_a_hardware_gpu_or_else_the_cpu_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    write_small_set(dir.path());
    let out = gpu_mnist(&[
        "train",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--epochs",
        "1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let first = stdout(&out).lines().next().unwrap_or_default().to_string();
    let adapters = gpu_mnist::adapters(gpu_mnist::GpuApi::Any);
    if adapters.iter().any(|a| !a.is_software()) {
        assert!(!first.starts_with("backend: cpu"), "{first}");
        assert!(first.contains("chosen by auto: a hardware GPU"), "{first}");
    } else if adapters.is_empty() {
        assert!(first.starts_with("backend: cpu"), "{first}");
        assert!(first.contains("chosen by auto: no GPU adapter"), "{first}");
    } else {
        // lavapipe / llvmpipe only, as on CI.
        assert!(first.starts_with("backend: cpu"), "{first}");
        assert!(
            first.contains("chosen by auto: only software GPU adapters"),
            "{first}"
        );
    }
    // The Keras-style summary follows.
    assert!(
        stdout(&out).contains("Total params: 407050"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn devices_shows_the_kernel_choices_measured_once_then_cached() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("kernels.json");
    let devices = |extra: &[&str]| {
        let mut args = vec!["devices", "--kernels"];
        args.extend_from_slice(extra);
        Command::new(env!("CARGO_BIN_EXE_gpu-mnist"))
            .args(&args)
            .env("GPU_MNIST_KERNEL_CACHE", &cache)
            .output()
            .unwrap()
    };
    let first = devices(&[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let text = stdout(&first);
    // The book's first layer has several candidates, each timed.
    let line = text
        .lines()
        .find(|l| l.contains("NN BiasRelu batch=M 128x784x512"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("scalar ") && line.contains(" ms"), "{line}");
    // The narrow products (the 10-class layer, the bias gradients) try split-K.
    for product in ["NN Bias batch=M 128x512x10", "NN None batch=K 1x128x512"] {
        let line = text
            .lines()
            .find(|l| l.contains(product))
            .unwrap_or_else(|| panic!("{product}: {text}"));
        assert!(line.contains("split-k "), "{line}");
    }
    let written = std::fs::read_to_string(&cache).unwrap();
    assert!(written.contains("128x784x512"), "{written}");
    // The second run reads the same choices back.
    assert_eq!(stdout(&devices(&[])), text);
    // A damaged cache (cut short) is ignored, with one warning, and rebuilt.
    std::fs::write(&cache, &written.as_bytes()[..written.len() / 2]).unwrap();
    let rebuilt = devices(&[]);
    assert!(rebuilt.status.success(), "{}", stderr(&rebuilt));
    // Once, though the cache is read for each of the model's products.
    assert_eq!(
        stderr(&rebuilt)
            .matches("damaged; choices are measured again")
            .count(),
        1,
        "{}",
        stderr(&rebuilt)
    );
    // Whatever RUST_LOG says: the warning is about the user's file.
    std::fs::write(&cache, &written.as_bytes()[..written.len() / 2]).unwrap();
    let quiet = Command::new(env!("CARGO_BIN_EXE_gpu-mnist"))
        .args(["devices", "--kernels"])
        .env("GPU_MNIST_KERNEL_CACHE", &cache)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(
        stderr(&quiet).contains("damaged; choices are measured again"),
        "{}",
        stderr(&quiet)
    );
    let whole = std::fs::read_to_string(&cache).unwrap();
    assert!(
        whole.contains("\"format\": \"gpu-mnist kernel choices\""),
        "{whole}"
    );
    assert!(whole.contains("128x784x512"), "{whole}");
    // Any other file named as the cache is neither replaced nor removed.
    std::fs::write(&cache, "not a cache").unwrap();
    let other = devices(&[]);
    assert!(other.status.success(), "{}", stderr(&other));
    assert!(
        stderr(&other).contains("is some other file, left as it is"),
        "{}",
        stderr(&other)
    );
    assert_fails(
        &devices(&["--retune"]),
        1,
        "is not a kernel cache; not removing it",
    );
    assert_eq!(std::fs::read_to_string(&cache).unwrap(), "not a cache");
    std::fs::remove_file(&cache).unwrap();
    // --retune measures again.
    assert!(devices(&["--retune"]).status.success());
    // A hand-edited choice naming no candidate is measured again and
    // replaced (it used to reach an `expect`).
    let mut edited: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
    for choice in edited["choices"].as_object_mut().unwrap().values_mut() {
        choice["kernel"] = "turbo".into();
    }
    std::fs::write(&cache, edited.to_string()).unwrap();
    let remeasured = devices(&[]);
    assert!(remeasured.status.success(), "{}", stderr(&remeasured));
    assert!(
        stdout(&remeasured).contains("128x784x512"),
        "{}",
        stdout(&remeasured)
    );
    let rewritten = std::fs::read_to_string(&cache).unwrap();
    assert!(!rewritten.contains("turbo"), "{rewritten}");
}

#[test]
fn evaluate_reports_a_confusion_matrix_that_agrees_with_test_acc() {
    let Some(data) = common::mnist_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, json) = (dir.path().join("m.st"), dir.path().join("report.json"));
    let trained = gpu_mnist(&[
        "train",
        "--backend",
        "cpu",
        "--data-dir",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--train-samples",
        "3000",
        "--quiet",
        "--save",
        ckpt.to_str().unwrap(),
    ]);
    assert!(trained.status.success(), "{}", stderr(&trained));
    let out = gpu_mnist(&[
        "evaluate",
        "--backend",
        "cpu",
        "--data-dir",
        data.to_str().unwrap(),
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("backend: cpu"), "{text}");
    assert!(
        text.contains("confusion matrix") && text.contains("most confidently wrong"),
        "{text}"
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let confusion: Vec<Vec<u64>> = serde_json::from_value(report["confusion"].clone()).unwrap();
    let total: u64 = confusion.iter().flatten().sum();
    let trace: u64 = (0..10).map(|c| confusion[c][c]).sum();
    assert_eq!(total, 10_000);
    let acc = report["test_acc"].as_f64().unwrap();
    assert!((trace as f64 / 1e4 - acc).abs() < 1e-12, "{trace} vs {acc}");
    // Recall of a class is its diagonal over its row.
    let recall = report["per_class"][3]["recall"].as_f64().unwrap();
    let row: u64 = confusion[3].iter().sum();
    assert_eq!(recall, confusion[3][3] as f64 / row as f64);
    // The worst mistakes are mistakes, most confident first.
    let wrong = report["confidently_wrong"].as_array().unwrap();
    assert_eq!(wrong.len(), 10);
    for pair in wrong.windows(2) {
        assert!(pair[0]["confidence"].as_f64() >= pair[1]["confidence"].as_f64());
    }
    assert!(wrong.iter().all(|m| m["label"] != m["predicted"]));
}

#[test]
fn export_writes_pytorch_linear_layers() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, out) = (dir.path().join("m.st"), dir.path().join("torch.st"));
    let spec = gpu_mnist::ModelSpec::mlp(784, &[32], 10);
    let params = gpu_mnist::Params::init(&spec, gpu_mnist::Init::Glorot, 4);
    gpu_mnist::checkpoint::save(&ckpt, &spec, &params, Default::default()).unwrap();
    let run = |checkpoint: &Path| {
        gpu_mnist(&[
            "export",
            "--pytorch",
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
    };
    let done = run(&ckpt);
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(stdout(&done).contains(
        "nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10), nn.Softmax(dim=1))"
    ));
    let bytes = std::fs::read(&out).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(file.tensor("0.weight").unwrap().shape(), [32, 784]);
    assert_eq!(file.tensor("2.weight").unwrap().shape(), [10, 32]);
    assert_fails(&run(&dir.path().join("missing.st")), 1, "missing.st");
    // Output nobody can read is a failure with one line, not a panic.
    #[cfg(target_os = "linux")]
    let full = Command::new(env!("CARGO_BIN_EXE_gpu-mnist"))
        .args(["export", "--pytorch", "--checkpoint"])
        .arg(&ckpt)
        .arg("-o")
        .arg(&out)
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    #[cfg(target_os = "linux")]
    assert_fails(
        &full,
        1,
        "error: cannot write to standard output: No space left on device",
    );
}

#[test]
fn no_command_writes_over_a_file_it_reads() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    write_small_set(&data);
    let ckpt = dir.path().join("m.st");
    let spec = ModelSpec::mlp(FEATURES, &[8], CLASSES);
    checkpoint::save(
        &ckpt,
        &spec,
        &Params::init(&spec, Init::Glorot, 1),
        Default::default(),
    )
    .unwrap();
    let history = dir.path().join("h.svg");
    std::fs::write(&history, r#"{"epochs": []}"#).unwrap();
    let labels = data.join("t10k-labels-idx1-ubyte");
    let (c, d, l) = (
        ckpt.to_str().unwrap(),
        data.to_str().unwrap(),
        labels.to_str().unwrap(),
    );
    let cases: [(Vec<&str>, String); 5] = [
        (
            vec!["evaluate", "--checkpoint", c, "--data-dir", d, "--json", c],
            format!("--json {c} is also the checkpoint"),
        ),
        (
            vec!["evaluate", "--checkpoint", c, "--data-dir", d, "--json", l],
            format!("--json {l} is also a data file"),
        ),
        (
            vec!["bench", "--backend", "cpu", "--data-dir", d, "--json", l],
            format!("--json {l} is also a data file"),
        ),
        (
            vec!["export", "--pytorch", "--checkpoint", c, "-o", c],
            format!("--output {c} is also the checkpoint"),
        ),
        (
            vec![
                "plot",
                history.to_str().unwrap(),
                "-o",
                history.to_str().unwrap(),
            ],
            format!("--output {} is also the history", history.display()),
        ),
    ];
    let before: Vec<Vec<u8>> = [&ckpt, &labels, &history]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    for (args, message) in cases {
        assert_fails(&gpu_mnist(&args), 1, &message);
    }
    let after: Vec<Vec<u8>> = [&ckpt, &labels, &history]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(before, after);
    // A report to a directory that does not exist is refused before any work,
    // and the directory is not made.
    let typo = dir.path().join("typo").join("r.json");
    let out = gpu_mnist(&[
        "evaluate",
        "--checkpoint",
        c,
        "--data-dir",
        d,
        "--json",
        typo.to_str().unwrap(),
    ]);
    assert_fails(&out, 1, "is not a directory");
    assert!(!dir.path().join("typo").exists());
}

#[test]
fn flags_that_would_do_nothing_and_negative_numbers_are_refused() {
    let cases: [(&[&str], &str); 10] = [
        (
            &[
                "predict",
                "--checkpoint",
                "x",
                "--image",
                "a.png",
                "--data-dir",
                "d",
            ],
            "--data-dir and --no-download are not read with --image: the pictures are the data",
        ),
        (
            &["train", "--init", "uniform", "--resume", "run.st"],
            "the argument '--init <INIT>' cannot be used with '--resume <FILE>'",
        ),
        (
            &["train", "--optimizer", "adam", "--momentum", "0.5"],
            "--momentum applies to sgd and rmsprop",
        ),
        (
            &["train", "--nesterov"],
            "--nesterov needs --optimizer sgd and a --momentum above 0",
        ),
        (
            &[
                "train",
                "--optimizer",
                "rmsprop",
                "--momentum",
                "0.9",
                "--nesterov",
            ],
            "--nesterov needs --optimizer sgd",
        ),
        (
            &["train", "--backend", "cpu", "--adapter", "0"],
            "--adapter picks a GPU adapter; --backend cpu uses none",
        ),
        (
            &[
                "evaluate",
                "--checkpoint",
                "x",
                "--backend",
                "cpu",
                "--retune",
            ],
            "--retune measures GPU kernels",
        ),
        (
            &["train", "--epochs", "-1"],
            "invalid value '-1' for '--epochs <EPOCHS>': -1 is not in 1..=100000",
        ),
        (
            &["train", "--batch-size", "-128"],
            "invalid value '-128' for '--batch-size <BATCH_SIZE>'",
        ),
        (
            &["predict", "--checkpoint", "x", "--index", "-1"],
            "invalid value '-1' for '--index <I>...'",
        ),
    ];
    for (args, message) in cases {
        assert_fails(&gpu_mnist(args), 2, message);
    }
    if let Some(data) = common::mnist_dir() {
        assert_fails(
            &gpu_mnist(&[
                "bench",
                "--backend",
                "cpu",
                "--steps",
                "470",
                "--data-dir",
                data.to_str().unwrap(),
            ]),
            2,
            "--steps 470 is more than one epoch (469 steps of 128)",
        );
        assert_fails(
            &gpu_mnist(&[
                "train",
                "--backend",
                "cpu",
                "--train-samples",
                "60001",
                "--data-dir",
                data.to_str().unwrap(),
            ]),
            2,
            "error: --train-samples 60001 is more than the 60000 training images",
        );
    }
}

#[test]
fn evaluate_and_predict_never_read_the_training_set() {
    let Some(data) = common::mnist_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("mnist");
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("t10k") {
            std::fs::copy(&path, copy.join(&name)).unwrap();
        } else if name.starts_with("train") {
            // Present (the set is complete) but unreadable as IDX.
            std::fs::write(copy.join(&name), b"not read").unwrap();
        }
    }
    let ckpt = dir.path().join("m.st");
    let spec = gpu_mnist::ModelSpec::mlp(784, &[16], 10);
    let params = gpu_mnist::Params::init(&spec, gpu_mnist::Init::Glorot, 1);
    gpu_mnist::checkpoint::save(&ckpt, &spec, &params, Default::default()).unwrap();
    let run = |command: &str| {
        gpu_mnist(&[
            command,
            "--backend",
            "cpu",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--data-dir",
            copy.to_str().unwrap(),
        ])
    };
    for command in ["evaluate", "predict"] {
        let out = run(command);
        assert!(out.status.success(), "{command}: {}", stderr(&out));
    }
    // Nor need them.
    let labels = copy.join("train-labels-idx1-ubyte.gz");
    std::fs::rename(&labels, dir.path().join("elsewhere")).unwrap();
    let out = run("evaluate");
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::rename(dir.path().join("elsewhere"), &labels).unwrap();
    // Training does read them, and says which is broken.
    let out = gpu_mnist(&[
        "train",
        "--backend",
        "cpu",
        "--data-dir",
        copy.to_str().unwrap(),
    ]);
    assert_fails(&out, 1, "train-images-idx3-ubyte");
}

/// The checkpoint is read before any data set file is looked for: a bad one
/// is refused at once, where `evaluate` used to locate (or download) MNIST
/// first. Here no data is anywhere, so a data error would mean the order
/// was wrong.
#[test]
fn a_bad_checkpoint_is_refused_before_the_data_is_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.st");
    std::fs::write(&empty, b"").unwrap();
    let nowhere = dir.path().join("no-data");
    for command in ["evaluate", "predict"] {
        let out = gpu_mnist(&[
            command,
            "--checkpoint",
            empty.to_str().unwrap(),
            "--data-dir",
            nowhere.to_str().unwrap(),
            "--no-download",
        ]);
        assert_fails(
            &out,
            1,
            &format!(
                "error: checkpoint {}: 0 bytes, too short for a safetensors header",
                empty.display()
            ),
        );
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    }
}

/// An output never replaces a file of another of the tool's kinds (a trained
/// model named as `--history` by a slip used to become 497 bytes of JSON)
/// unless `--overwrite` says so, nor a read-only file; each refusal is one
/// line, before any work, and the file is left as it was.
#[test]
fn outputs_do_not_replace_the_tools_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let model = p("model.safetensors");
    let spec = ModelSpec::mlp(FEATURES, &[8], CLASSES);
    checkpoint::save(
        &model,
        &spec,
        &Params::init(&spec, Init::Glorot, 1),
        Default::default(),
    )
    .unwrap();
    let cache = p("kernels.json");
    std::fs::write(
        &cache,
        "{\"format\": \"gpu-mnist kernel choices\", \"choices\": {}}",
    )
    .unwrap();
    let read_only = p("report.json");
    std::fs::write(&read_only, "{}").unwrap();
    let mut permissions = std::fs::metadata(&read_only).unwrap().permissions();
    permissions.set_readonly(true);
    std::fs::set_permissions(&read_only, permissions).unwrap();
    let kept: Vec<(std::path::PathBuf, Vec<u8>)> = [&model, &cache, &read_only]
        .iter()
        .map(|f| (f.to_path_buf(), std::fs::read(f).unwrap()))
        .collect();

    let s = |path: &Path| path.to_str().unwrap().to_string();
    let other = p("other.safetensors");
    std::fs::copy(&model, &other).unwrap();
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec!["train".into(), "--history".into(), s(&model)],
            format!(
                "error: --history {} is a gpu-mnist checkpoint; not replacing it with JSON (pass --overwrite to)",
                model.display()
            ),
        ),
        (
            vec!["train".into(), "--csv".into(), s(&cache)],
            format!(
                "error: --csv {} is the GPU kernel cache; not replacing it with a CSV log (pass --overwrite to)",
                cache.display()
            ),
        ),
        (
            vec!["evaluate".into(), "--checkpoint".into(), s(&other), "--json".into(), s(&model)],
            format!("error: --json {} is a gpu-mnist checkpoint", model.display()),
        ),
        (
            vec!["export".into(), "--checkpoint".into(), s(&other), "--pytorch".into(), "-o".into(), s(&model)],
            format!(
                "error: --output {} is a gpu-mnist checkpoint; not replacing it with a PyTorch export",
                model.display()
            ),
        ),
        (
            vec!["train".into(), "--save".into(), s(&cache)],
            format!("error: --save {} is the GPU kernel cache", cache.display()),
        ),
        (
            vec!["train".into(), "--history".into(), s(&read_only), "--overwrite".into()],
            format!(
                "error: --history {}: the file is read-only; not replacing it",
                read_only.display()
            ),
        ),
    ];
    for (args, message) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = gpu_mnist(&args);
        assert_fails(&out, 1, &message);
        assert!(stderr(&out).starts_with(&message), "{}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    }
    for (path, bytes) in &kept {
        assert_eq!(&std::fs::read(path).unwrap(), bytes, "{}", path.display());
    }

    // Said so, the output replaces it.
    let Some(data) = common::mnist_dir() else {
        return;
    };
    let out = gpu_mnist(&[
        "train",
        "--backend",
        "cpu",
        "--data-dir",
        data.to_str().unwrap(),
        "--train-samples",
        "500",
        "--epochs",
        "1",
        "--quiet",
        "--csv",
        model.to_str().unwrap(),
        "--overwrite",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = std::fs::read_to_string(&model).unwrap();
    assert!(csv.starts_with("epoch,accuracy,loss\n0,"), "{csv}");
}

/// Every output takes a file name that is not UTF-8, as the file system
/// does: `--plot` used to be refused by the argument parser where `--csv`
/// and `--history` were not.
#[cfg(unix)]
#[test]
fn outputs_take_names_that_are_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let Some(data) = common::mnist_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let name = |bytes: &[u8]| dir.path().join(std::ffi::OsStr::from_bytes(bytes));
    let (plot, csv) = (name(b"curves-\xff.png"), name(b"log-\xfe.csv"));
    let out = Command::new(env!("CARGO_BIN_EXE_gpu-mnist"))
        .args(["train", "--backend", "cpu", "--quiet", "--epochs", "1"])
        .args(["--train-samples", "300", "--data-dir"])
        .arg(&data)
        .arg("--plot")
        .arg(&plot)
        .arg("--csv")
        .arg(&csv)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::read(&plot).unwrap().starts_with(b"\x89PNG"));
    assert!(std::fs::read_to_string(&csv).unwrap().starts_with("epoch,"));
}
