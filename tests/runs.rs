//! Training runs as a Keras user drives them, through the binary: validation
//! split, early stopping, history and CSV after every epoch, resumable
//! checkpoints (bit-identical continuation on the CPU and the GPU), and
//! output that ends quietly when its reader goes away.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{gpu_mnist, ok, stderr, stdout};
use gpu_mnist::{TrainConfig, TrainState};

fn history(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// `train` on a small slice of MNIST with these extra flags.
fn train(data: &Path, backend: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--backend",
        backend,
        "--data-dir",
        data.to_str().unwrap(),
        "--train-samples",
        "3000",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    gpu_mnist(&args)
}

/// 3 epochs, then 2 more from the checkpoint, equal 5 straight epochs: the
/// same parameters and optimizer state bit for bit, and the same metrics,
/// for the model of `model` flags (with `model_tensors` parameter tensors).
fn resume_is_exact(backend: &str, model: &[&str], model_tensors: usize, optimizers: &[&str]) {
    let Some(data) = common::mnist_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    for &optimizer in optimizers {
        let flags = [
            "--optimizer",
            optimizer,
            "--seed",
            "5",
            "--validation-split",
            "0.2",
        ];
        let run = |epochs: &str, extra: &[&str]| {
            let mut args = vec!["--epochs", epochs];
            args.extend_from_slice(&flags);
            args.extend_from_slice(model);
            args.extend_from_slice(extra);
            ok(train(&data, backend, &args))
        };
        run("3", &["--save", &p("three.st")]);
        let resumed = run(
            "2",
            &[
                "--resume",
                &p("three.st"),
                "--save",
                &p("resumed.st"),
                "--history",
                &p("resumed.json"),
            ],
        );
        let straight = run(
            "5",
            &["--save", &p("five.st"), "--history", &p("five.json")],
        );
        assert_eq!(
            stdout(&resumed),
            stdout(&straight),
            "{optimizer}: test metrics"
        );
        let (a, b) = (
            history(Path::new(&p("resumed.json"))),
            history(Path::new(&p("five.json"))),
        );
        assert_eq!(a["epochs"].as_array().unwrap().len(), 5);
        for key in ["loss", "accuracy", "val_loss", "val_accuracy"] {
            let values = |h: &serde_json::Value| -> Vec<f64> {
                h["epochs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e[key].as_f64().unwrap())
                    .collect()
            };
            assert_eq!(values(&a), values(&b), "{optimizer} {key}");
        }
        let tensors = |path: &str| {
            let bytes = std::fs::read(path).unwrap();
            let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            let mut all: Vec<(String, Vec<u8>)> = file
                .tensors()
                .into_iter()
                .map(|(name, view)| (name, view.data().to_vec()))
                .collect();
            all.sort();
            all
        };
        let (resumed, straight) = (tensors(&p("resumed.st")), tensors(&p("five.st")));
        // Parameters and the optimizer's state (Adam: two slots).
        let slots = if optimizer == "adam" { 2 } else { 1 };
        assert_eq!(resumed.len(), model_tensors * (1 + slots), "{optimizer}");
        assert!(resumed == straight, "{optimizer}: tensors differ");
    }
}

#[test]
fn resuming_continues_exactly_on_the_cpu() {
    resume_is_exact("cpu", &[], 4, &["adam", "rmsprop"]);
}

#[test]
fn resuming_continues_exactly_on_the_gpu() {
    if common::gpu().is_some() {
        resume_is_exact("vulkan", &[], 4, &["adam", "rmsprop"]);
    }
}

/// A convolution, a pool and dropout, whose mask depends on the step.
const CONV_STACK: &[&str] = &[
    "--layers",
    "conv2d(8,3,relu),maxpool(2),flatten,dropout(0.3),dense(10,softmax)",
];

/// The resumed run draws the masks the straight run drew.
#[test]
fn a_convnet_with_dropout_resumes_exactly_on_the_cpu() {
    resume_is_exact("cpu", CONV_STACK, 4, &["rmsprop"]);
}

#[test]
fn a_convnet_with_dropout_resumes_exactly_on_the_gpu() {
    if common::gpu().is_some() {
        resume_is_exact("vulkan", CONV_STACK, 4, &["rmsprop"]);
    }
}

#[test]
fn resuming_refuses_a_different_run_saying_what_differs() {
    let Some(data) = common::mnist_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("run.st");
    let saved = saved.to_str().unwrap();
    ok(train(&data, "cpu", &["--epochs", "1", "--save", saved]));
    let cases: [(&[&str], &str); 5] = [
        (&["--optimizer", "adam"], "saved by a run with --optimizer rmsprop"),
        (&["--hidden", "64"], "its model is 784 -> dense(512,relu),dense(10,softmax); this run asks for 784 -> dense(64,relu),dense(10,softmax) (--model, --hidden, --layers)"),
        (&["--model", "convnet", "--batch-size", "128", "--loss", "sparse"], "this run asks for 28x28x1 -> conv2d(32,3,relu,valid),maxpool(2),"),
        (&["--validation-split", "0.5"], "its run trained on 3000 examples and validated on 0; this run has 1500 and 1500"),
        (&["--seed", "2"], "--seed 1"),
    ];
    for (flags, message) in cases {
        let mut args = vec!["--epochs", "1", "--resume", saved];
        args.extend_from_slice(flags);
        let out = train(&data, "cpu", &args);
        assert_eq!(out.status.code(), Some(1), "{flags:?}");
        let err = stderr(&out);
        assert!(err.contains(message), "{flags:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    // As many examples, but not the same ones: one training label differs.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    for name in [
        "train-images-idx3-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ] {
        std::fs::copy(data.join(name), other.join(name)).unwrap();
    }
    let mut labels = gpu_mnist::data::idx::read_file(
        &data.join("train-labels-idx1-ubyte.gz"),
        gpu_mnist::data::idx::LABELS_MAGIC,
    )
    .unwrap();
    labels.data[7] = (labels.data[7] + 1) % 10;
    let encoded = gpu_mnist::data::idx::encode(&labels.dims, &labels.data);
    std::fs::write(other.join("train-labels-idx1-ubyte"), encoded).unwrap();
    let out = train(&other, "cpu", &["--epochs", "1", "--resume", saved]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("its run trained on other examples than this run's, though as many"),
        "{}",
        stderr(&out)
    );
    // A run state whose counts disagree (edited, or damaged) is refused.
    // A run state edited through the library, resumed: refused saying why.
    let resume_edited = |edit: &dyn Fn(&mut TrainConfig, &mut TrainState), message: &str| {
        let saved = gpu_mnist::checkpoint::read(Path::new(saved)).unwrap();
        let (mut config, mut state) = saved.run.clone().unwrap();
        edit(&mut config, &mut state);
        let edited = dir.path().join("edited.st");
        gpu_mnist::checkpoint::save_run(&edited, &saved.spec, &config, &state, saved.metadata)
            .unwrap();
        let out = train(
            &data,
            "cpu",
            &["--epochs", "1", "--resume", edited.to_str().unwrap()],
        );
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains(message), "{}", stderr(&out));
    };
    // Counts that disagree (edited, or damaged).
    resume_edited(
        &|_, state| state.steps += 1,
        "the saved run state is inconsistent: 25 steps taken, where 1 whole epoch(s) of 24 steps and 0 more make 24",
    );
    // A setting without a flag: named as Keras names it, not dumped.
    resume_edited(
        &|config, _| config.optimizer.rho = 0.95,
        "saved by a run with rho 0.95; this run asks for rho 0.9 (resume with the same training flags)",
    );
    // Weights without a run's state start a new run only through --init-from.
    let weights = dir.path().join("weights.st");
    let spec = gpu_mnist::ModelSpec::mlp(784, &[512], 10);
    let params = gpu_mnist::Params::init(&spec, gpu_mnist::Init::Glorot, 1);
    gpu_mnist::checkpoint::save(&weights, &spec, &params, Default::default()).unwrap();
    let weights = weights.to_str().unwrap();
    let out = train(&data, "cpu", &["--epochs", "1", "--resume", weights]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("holds weights but no training state"),
        "{}",
        stderr(&out)
    );
    ok(train(
        &data,
        "cpu",
        &["--epochs", "1", "--init-from", weights],
    ));
}

#[test]
fn validation_metrics_history_and_csv_are_written_every_epoch() {
    let Some(data) = common::mnist_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (json, csv) = (dir.path().join("h.json"), dir.path().join("h.csv"));
    let out = ok(train(
        &data,
        "cpu",
        &[
            "--epochs",
            "2",
            "--validation-split",
            "0.1",
            "--history",
            json.to_str().unwrap(),
            "--csv",
            csv.to_str().unwrap(),
        ],
    ));
    assert!(stdout(&out).contains("test_acc"), "{}", stdout(&out));
    let h = history(&json);
    let epochs = h["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 2);
    for e in epochs {
        let val = e["val_accuracy"].as_f64().unwrap();
        assert!(val > 0.5 && val <= 1.0, "{e}");
        assert!(e["val_loss"].as_f64().unwrap() > 0.0, "{e}");
    }
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "epoch,accuracy,loss,val_accuracy,val_loss");
    assert_eq!(lines.len(), 3);
    let row: Vec<f64> = lines[2].split(',').map(|v| v.parse().unwrap()).collect();
    assert_eq!(row[0], 1.0, "Keras counts epochs from 0");
    assert_eq!(row[3], epochs[1]["val_accuracy"].as_f64().unwrap());
    assert_eq!(row[4], epochs[1]["val_loss"].as_f64().unwrap());
}

#[test]
fn an_interrupted_run_keeps_its_history_and_csv() {
    let Some(data) = common::mnist_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (json, csv) = (dir.path().join("h.json"), dir.path().join("h.csv"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpu-mnist"))
        .args([
            "train",
            "--backend",
            "cpu",
            "--data-dir",
            data.to_str().unwrap(),
            "--epochs",
            "1000",
            "--quiet",
            "--history",
            json.to_str().unwrap(),
            "--csv",
            csv.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the first epoch's files, then kill the run outright.
    let start = std::time::Instant::now();
    while !csv.exists() {
        assert!(start.elapsed().as_secs() < 120, "no epoch finished");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let h = history(&json);
    assert!(!h["epochs"].as_array().unwrap().is_empty(), "{h}");
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("epoch,accuracy,loss\n0,"), "{text}");
}

#[test]
fn early_stopping_stops_and_keeps_the_best_epoch() {
    let Some(data) = common::mnist_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("h.json");
    // 300 examples and a large learning rate: validation loss soon rises.
    let out = ok(gpu_mnist(&[
        "train",
        "--backend",
        "cpu",
        "--data-dir",
        data.to_str().unwrap(),
        "--train-samples",
        "600",
        "--validation-split",
        "0.5",
        "--early-stopping",
        "2",
        "--lr",
        "0.01",
        "--epochs",
        "40",
        "--history",
        json.to_str().unwrap(),
    ]));
    let h = history(&json);
    let losses: Vec<f64> = h["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["val_loss"].as_f64().unwrap())
        .collect();
    assert!(losses.len() < 40, "never stopped: {losses:?}");
    let best = (0..losses.len()).fold(0, |b, i| if losses[i] < losses[b] { i } else { b });
    // Stopped `patience` epochs after the best, and restored it.
    assert_eq!(losses.len(), best + 3, "{losses:?}");
    assert_eq!(h["best_epoch"].as_u64(), Some(best as u64 + 1));
    let text = stdout(&out);
    assert!(
        text.contains("early stopping: no lower val_loss for 2 epochs"),
        "{text}"
    );
    assert!(
        text.contains(&format!("restored the weights of epoch {}", best + 1)),
        "{text}"
    );
}

#[test]
fn a_closed_pipe_ends_the_run_quietly() {
    let Some(data) = common::mnist_dir() else {
        return;
    };
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' train --backend cpu --data-dir '{}' --train-samples 3000 --epochs 3 | head -1",
            env!("CARGO_BIN_EXE_gpu-mnist"),
            data.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(stdout(&out).starts_with("backend: cpu"), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
}

#[test]
fn bad_validation_and_checkpoint_flags_get_one_line() {
    let cases: [(&[&str], &str); 4] = [
        (&["--validation-split", "1.5"], "must be between 0 and 1"),
        (&["--validation-split", "-0.1"], "must be between 0 and 1"),
        (&["--early-stopping", "3"], "--validation-split"),
        (&["--checkpoint-every", "1"], "--save"),
    ];
    common::assert_train_usage_errors(&cases);
    // A split that does not fit the data is a usage error too (exit 2).
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
        "1",
        "--validation-split",
        "0.5",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "error: a validation split of 0.5 leaves no examples on one side of 1 training examples (--validation-split)\n"
    );
}

/// Starts `train` (on the CPU unless `extra` names a backend) with `extra`
/// flags, waits for its first epoch's history, then sends it `signals`
/// (names for `kill`), each after its pause in milliseconds. A run still
/// going two minutes later has ignored them: killed, and the test fails.
fn signalled_run(data: &Path, extra: &[&str], history: &Path, signals: &[(&str, u64)]) -> Output {
    let mut args = vec!["train"];
    if !extra.contains(&"--backend") {
        args.extend(["--backend", "cpu"]);
    }
    args.extend([
        "--data-dir",
        data.to_str().unwrap(),
        "--quiet",
        "--history",
        history.to_str().unwrap(),
    ]);
    // Stops come at read-backs: frequent ones unless the test wants otherwise.
    if !extra.contains(&"--report-every") {
        args.extend(["--report-every", "5"]);
    }
    args.extend_from_slice(extra);
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpu-mnist"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !history.exists() {
        assert!(start.elapsed().as_secs() < 120, "no epoch finished");
        let ended = child.try_wait().unwrap();
        assert!(ended.is_none(), "the run ended first: {ended:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for &(signal, pause_ms) in signals {
        std::thread::sleep(std::time::Duration::from_millis(pause_ms));
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }
    let sent = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if sent.elapsed().as_secs() > 120 {
            child.kill().unwrap();
            panic!("the run ignored {signals:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The parameter tensors of a checkpoint, by name.
fn model_tensors(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut all: Vec<(String, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .filter(|(name, _)| name.starts_with("dense_"))
        .map(|(name, view)| (name, view.data().to_vec()))
        .collect();
    all.sort();
    all
}

/// Epochs with fewer steps than `--report-every` have no read-back before
/// their last: a stop asked during one still ends the run before the next
/// epoch (it used to be dropped, and the run went on to the end), saves it,
/// and the saved run resumes to the straight run bit for bit.
fn a_stop_ends_runs_of_short_epochs(backend: &str) {
    let Some(data) = common::mnist_dir() else {
        return;
    };
    let short_epochs: [&[&str]; 2] = [
        &["--train-samples", "2000"],
        &["--batch-size", "2048", "--train-samples", "8192"],
    ];
    for short in short_epochs {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name);
        let mut flags = vec!["--backend", backend, "--report-every", "50"];
        flags.extend_from_slice(short);
        let mut run = flags.clone();
        run.extend(["--epochs", "100000"]);
        let out = signalled_run(&data, &run, &p("h.json"), &[("INT", 0)]);
        assert_eq!(out.status.code(), Some(130), "{short:?}: {}", stderr(&out));
        let err = stderr(&out);
        let saved = p("h.resume.safetensors");
        assert!(
            err.contains(&format!("saved the run to {}", saved.display())),
            "{short:?}: {err}"
        );
        // Stopped between epochs: "interrupted by SIGINT at epoch N, step 0 of S".
        let epoch: usize = err
            .strip_prefix("interrupted by SIGINT at epoch ")
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{short:?}: {err}"));
        assert!(err.contains(", step 0 of "), "{short:?}: {err}");

        let train = |extra: &[&str]| {
            let mut args = vec!["train", "--data-dir", data.to_str().unwrap(), "--quiet"];
            args.extend_from_slice(&flags);
            args.extend_from_slice(extra);
            ok(gpu_mnist(&args))
        };
        let saved_arg = saved.to_str().unwrap();
        // As the message says: the history again, its checkpoint beside it
        // being the one resumed (no --save; nothing written at the end).
        let history = p("h.json");
        train(&[
            "--history",
            history.to_str().unwrap(),
            "--resume",
            saved_arg,
            "--epochs",
            "1",
        ]);
        let resumed = p("resumed.st");
        train(&[
            "--resume",
            saved_arg,
            "--epochs",
            "1",
            "--save",
            resumed.to_str().unwrap(),
        ]);
        let straight = p("straight.st");
        let epochs = epoch.to_string();
        train(&["--epochs", &epochs, "--save", straight.to_str().unwrap()]);
        assert!(
            model_tensors(&resumed) == model_tensors(&straight),
            "{short:?}: parameters differ after {epoch} epochs"
        );
    }
}

#[test]
fn a_stop_ends_runs_of_short_epochs_on_the_cpu() {
    a_stop_ends_runs_of_short_epochs("cpu");
}

#[test]
fn a_stop_ends_runs_of_short_epochs_on_the_gpu() {
    if common::gpu().is_some() {
        a_stop_ends_runs_of_short_epochs("vulkan");
    }
}

#[test]
fn ctrl_c_saves_the_run_and_resuming_it_finishes_the_same_run() {
    let Some(data) = common::mnist_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let run = p("run.st");
    let out = signalled_run(
        &data,
        &["--epochs", "3", "--save", run.to_str().unwrap()],
        &p("h.json"),
        &[("INT", 0)],
    );
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("interrupted by SIGINT at epoch 2, step "),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // Resume exactly as the message says.
    let command = err
        .split("continue it with: gpu-mnist ")
        .nth(1)
        .unwrap()
        .trim();
    assert!(
        command.ends_with(&format!("--resume {} --epochs 2", run.display())),
        "{command}"
    );
    let args: Vec<&str> = command.split(' ').collect();
    let resumed = ok(gpu_mnist(&args));
    let h = history(&p("h.json"));
    assert_eq!(h["epochs"].as_array().unwrap().len(), 3, "{h}");
    // The same parameters as a run that was never interrupted.
    let straight = p("straight.st");
    let uninterrupted = ok(train_full(
        &data,
        &["--epochs", "3", "--save", straight.to_str().unwrap()],
    ));
    assert_eq!(stdout(&resumed), stdout(&uninterrupted));
    assert!(
        model_tensors(&run) == model_tensors(&straight),
        "parameters differ"
    );
}

/// `train` on all of MNIST on the CPU, quiet.
fn train_full(data: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--backend",
        "cpu",
        "--data-dir",
        data.to_str().unwrap(),
        "--report-every",
        "5",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    gpu_mnist(&args)
}

#[test]
fn sigterm_saves_beside_the_history_and_a_second_signal_exits_at_once() {
    let Some(data) = common::mnist_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("h.json");
    let out = signalled_run(&data, &["--epochs", "50"], &history, &[("TERM", 0)]);
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    let beside = dir.path().join("h.resume.safetensors");
    assert!(
        stderr(&out).contains(&format!("saved the run to {}", beside.display())),
        "{}",
        stderr(&out)
    );
    assert!(gpu_mnist::checkpoint::read(&beside).unwrap().run.is_some());

    // One request delivered twice (as `timeout -s INT` does, to the process
    // and its group) is one request: the run still saves.
    let history = dir.path().join("twice.json");
    let out = signalled_run(
        &data,
        &["--epochs", "50"],
        &history,
        &[("INT", 0), ("INT", 0)],
    );
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("saved the run to"),
        "{}",
        stderr(&out)
    );

    // Asked again a second later, while an epoch of several seconds (one
    // read-back) is still running, it ends at once, saying so.
    let history = dir.path().join("again.json");
    let slow = [
        "--epochs",
        "50",
        "--hidden",
        "8192",
        "--train-samples",
        "40000",
        "--report-every",
        "313",
    ];
    let out = signalled_run(&data, &slow, &history, &[("INT", 0), ("INT", 1200)]);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("SIGINT: stopping at once, without saving"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("saved the run"), "{}", stderr(&out));

    // A request after the last epoch's steps is acknowledged, not swallowed.
    let history = dir.path().join("last.json");
    let last = [
        "--epochs",
        "1",
        "--hidden",
        "8192",
        "--train-samples",
        "20000",
    ];
    let out = signalled_run(&data, &last, &history, &[("TERM", 0)]);
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("interrupted by SIGTERM"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn divergence_stops_at_the_read_back_and_keeps_the_last_checkpoint() {
    let Some(data) = common::mnist_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("good.st");
    ok(train(
        &data,
        "cpu",
        &["--epochs", "1", "--save", saved.to_str().unwrap()],
    ));
    let before = std::fs::read(&saved).unwrap();
    let out = train_full(
        &data,
        &[
            "--optimizer",
            "sgd",
            "--lr",
            "1e30",
            "--epochs",
            "3",
            "--save",
            saved.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    // Stopped within the first epoch, at its first read-backs.
    assert!(
        err.contains("training diverged at epoch 1, step 5: the loss or a parameter is no longer a finite number (loss NaN)"),
        "{err}"
    );
    assert!(err.contains("try a smaller learning rate"), "{err}");
    assert_eq!(
        std::fs::read(&saved).unwrap(),
        before,
        "the good checkpoint was touched"
    );
}

#[test]
fn outputs_are_checked_before_training() {
    let Some(data) = common::mnist_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let images = data.join("train-images-idx3-ubyte");
    let images = if images.exists() {
        images
    } else {
        data.join("train-images-idx3-ubyte.gz")
    };
    let before = std::fs::read(&images).unwrap();
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec!["--save".into(), p("missing/run.st")],
            format!(
                "--save {}: {} is not a directory",
                p("missing/run.st"),
                p("missing")
            ),
        ),
        (
            vec!["--history".into(), p("same"), "--csv".into(), p("same")],
            format!(
                "--csv {} is also --history: each output needs a file of its own",
                p("same")
            ),
        ),
        (
            vec!["--save".into(), images.to_str().unwrap().into()],
            "is also a data file".into(),
        ),
        (
            vec!["--history".into(), dir.path().to_str().unwrap().into()],
            format!("--history {}: is a directory", dir.path().display()),
        ),
        (
            vec!["--csv".into(), "/dev/null".into()],
            "--csv /dev/null: is not a regular file".into(),
        ),
        (
            vec!["--save".into(), p(&"e".repeat(245))],
            "cannot write in".into(),
        ),
        (
            // The checkpoint resumed from may be replaced by --save only.
            vec![
                "--resume".into(),
                p("run.st"),
                "--history".into(),
                p("run.st"),
            ],
            format!("--history {} is also --resume", p("run.st")),
        ),
        (
            // Without --save, an interruption saves beside the history.
            vec![
                "--history".into(),
                p("h.json"),
                "--csv".into(),
                p("h.resume.safetensors"),
            ],
            format!(
                "the checkpoint an interruption saves {} is also --csv",
                p("h.resume.safetensors")
            ),
        ),
    ];
    for (flags, message) in cases {
        let mut args: Vec<&str> = vec!["--epochs", "1"];
        args.extend(flags.iter().map(String::as_str));
        let start = std::time::Instant::now();
        let out = train(&data, "cpu", &args);
        assert_eq!(out.status.code(), Some(1), "{flags:?}");
        let err = stderr(&out);
        assert!(err.contains(&message), "{flags:?}: {err}");
        // Refused at once, not after an epoch of training.
        assert!(!err.contains("panicked") && start.elapsed().as_secs() < 30);
    }
    assert_eq!(std::fs::read(&images).unwrap(), before);
}

#[test]
fn a_run_killed_while_saving_leaves_the_previous_checkpoint_whole() {
    let Some(data) = common::mnist_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("run.st");
    // A checkpoint every epoch of 100 examples: most of the time goes to writing.
    for delay_ms in [150, 230, 310, 390, 470] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gpu-mnist"))
            .args([
                "train",
                "--backend",
                "cpu",
                "--data-dir",
                data.to_str().unwrap(),
                "--train-samples",
                "100",
                "--epochs",
                "100000",
                "--quiet",
                "--save",
                saved.to_str().unwrap(),
                "--checkpoint-every",
                "1",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        while !saved.exists() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let checkpoint = gpu_mnist::checkpoint::read(&saved)
            .unwrap_or_else(|e| panic!("after a kill at {delay_ms} ms: {e}"));
        assert!(checkpoint.run.unwrap().1.epochs_done >= 1);
    }
    // Nothing but the checkpoint: no temporary left behind counts as it.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".partial"))
        .collect();
    assert_eq!(names, ["run.st"]);
}
