//! The command line: flags and their validation (`args`), the subcommands
//! (`commands`, `train`), terminal progress (`progress`) and the `bench` report (`bench`).

pub mod args;
pub mod bench;
pub mod commands;
pub mod interrupt;
pub mod progress;
pub mod report;
pub mod train;
