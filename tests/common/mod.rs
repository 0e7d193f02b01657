//! Helpers shared by the integration tests. Each test binary uses a subset.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};

use gpu_mnist::data::{DataSet, Splits, FASHION_MNIST, MNIST};
use gpu_mnist::{Device, GpuApi};

/// Set (as CI does) to make a missing GPU adapter fail the GPU tests instead of
/// skipping them.
pub const REQUIRE_ADAPTER_ENV: &str = "GPU_MNIST_REQUIRE_ADAPTER";
/// Set (as CI does) to make missing data files (MNIST, and Fashion-MNIST, which
/// `.ci/setup` installs) fail the data tests.
pub const REQUIRE_DATA_ENV: &str = "GPU_MNIST_REQUIRE_DATA";

fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// `set`'s directory: its environment variable, else `fallback`; `None` with a
/// notice when the files are not there, unless data is required.
fn data_dir(set: &DataSet, fallback: PathBuf) -> Option<PathBuf> {
    let dir = std::env::var_os(set.data_env)
        .map(PathBuf::from)
        .unwrap_or(fallback);
    if set.files().iter().all(|f| f.find_in(&dir).is_some()) {
        Some(dir)
    } else if required(REQUIRE_DATA_ENV) {
        panic!(
            "{REQUIRE_DATA_ENV} is set but the {} files are not in {}",
            set.title,
            dir.display()
        );
    } else {
        eprintln!(
            "notice: {} not found in {}; skipping this test",
            set.title,
            dir.display()
        );
        None
    }
}

/// The MNIST directory: `$GPU_MNIST_DATA`, else `../shared/data/mnist`.
pub fn mnist_dir() -> Option<PathBuf> {
    data_dir(
        &MNIST,
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mnist"),
    )
}

/// The Fashion-MNIST directory: `$GPU_MNIST_FASHION_MNIST_DATA`, else where
/// Debian's `dataset-fashion-mnist` puts it.
pub fn fashion_mnist_dir() -> Option<PathBuf> {
    data_dir(&FASHION_MNIST, PathBuf::from(FASHION_MNIST.system_dirs[0]))
}

/// MNIST, loaded once per test binary.
pub fn mnist() -> Option<Arc<Splits>> {
    static DATA: OnceLock<Option<Arc<Splits>>> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = mnist_dir()?;
        Some(Arc::new(MNIST.load(Some(&dir), None).expect("MNIST loads")))
    })
    .clone()
}

/// The Vulkan adapter (or `$GPU_MNIST_TEST_BACKENDS`, e.g. `gl`) as a device,
/// or `None` with a notice when there is none, unless an adapter is required.
pub fn gpu() -> Option<Device> {
    let api = match std::env::var("GPU_MNIST_TEST_BACKENDS").as_deref() {
        Ok("gl") => GpuApi::Gl,
        Ok("all") => GpuApi::Any,
        _ => GpuApi::Vulkan,
    };
    if !gpu_mnist::adapters(api).is_empty() {
        Some(Device::Gpu { api, adapter: None })
    } else if required(REQUIRE_ADAPTER_ENV) {
        panic!("{REQUIRE_ADAPTER_ENV} is set but there is no {api:?} adapter");
    } else {
        eprintln!("notice: skipping a GPU test: no {api:?} adapter");
        None
    }
}

/// Runs the `gpu-mnist` binary with `args`.
pub fn gpu_mnist(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gpu-mnist"))
        .args(args)
        .output()
        .unwrap()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `out`, once it is known to have succeeded (else its stderr is the panic).
pub fn ok(out: Output) -> Output {
    assert!(out.status.success(), "{}", stderr(&out));
    out
}

/// `train --backend cpu` with each case's flags is a usage error (exit 2)
/// whose message contains the case's text, and no panic.
pub fn assert_train_usage_errors(cases: &[(&[&str], &str)]) {
    for &(flags, message) in cases {
        let mut args = vec!["train", "--backend", "cpu"];
        args.extend_from_slice(flags);
        let out = gpu_mnist(&args);
        assert_eq!(out.status.code(), Some(2), "{flags:?}");
        let err = stderr(&out);
        assert!(err.contains(message), "{flags:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
