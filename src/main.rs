//! The `gpu-mnist` command: flags in `cli/args.rs`, what each subcommand does
//! in `cli/commands.rs`, over the library's API.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// Mesa's Vulkan loader complains on stderr when `XDG_RUNTIME_DIR` is unset (as
/// on headless machines and in CI); point it at a private directory then.
fn ensure_runtime_dir() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return;
    }
    let dir = std::env::temp_dir().join("gpu-mnist-runtime");
    if std::fs::create_dir_all(&dir).is_ok() && private(&dir) {
        // Single-threaded here, before anything reads the environment.
        std::env::set_var("XDG_RUNTIME_DIR", &dir);
    }
}

/// Makes `dir` accessible to its owner only (the loader wants 0700).
fn private(dir: &std::path::Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).is_ok()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        true
    }
}

/// Ends the process quietly, as `cat` or `grep` do, when whoever reads its
/// output goes away (`gpu-mnist train | head -1`): Rust ignores SIGPIPE, so a
/// closed pipe would otherwise make the next `println!` panic.
fn die_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restoring a signal's default disposition, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    die_on_closed_pipe();
    ensure_runtime_dir();
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,wgpu_hal=off"),
    )
    // After RUST_LOG, so that no setting of it hides them.
    .filter_module(gpu_mnist::KERNEL_CACHE_LOG_TARGET, log::LevelFilter::Warn)
    .init();
    let args = cli::args::Cli::parse();
    match cli::commands::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<cli::commands::Exit>() {
            Some(exit) => {
                eprintln!("{}", exit.message);
                ExitCode::from(exit.code)
            }
            None => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
