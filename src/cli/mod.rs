//! The command line: flags and their validation (`args`), the subcommands
//! (`commands`, `train`), the files they write (`outputs`), terminal progress (`progress`), the `bench` report
//! (`bench`), training curves (`plot`), images drawn in text (`draw`) and the
//! web page's server (`serve`).

/// `print!` that ends the program with one line (exit 1), not a panic, when
/// standard output cannot be written, as on a full disk (`> /dev/full`).
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::write_stdout(format_args!($($arg)*)) };
}

/// `println!` as [`out!`] does it.
macro_rules! outln {
    () => { out!("\n") };
    ($($arg:tt)*) => { out!("{}\n", format_args!($($arg)*)) };
}

pub mod args;
pub mod bench;
pub mod commands;
pub mod draw;
pub mod interrupt;
pub mod model_args;
pub mod outputs;
pub mod plot;
pub mod progress;
pub mod report;
pub mod serve;
pub mod train;

/// Writes to standard output or exits: a report nobody can read is a failure.
/// (A closed pipe ends the program quietly before this sees it: SIGPIPE.)
pub fn write_stdout(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(text).and_then(|()| stdout.flush()) {
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}
