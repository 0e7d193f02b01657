//! The command line: flags and their validation (`args`), the subcommands
//! (`commands`, `train`), terminal progress (`progress`), the `bench` report
//! (`bench`) and training curves (`plot`).

pub mod args;
pub mod bench;
pub mod commands;
pub mod interrupt;
pub mod plot;
pub mod progress;
pub mod report;
pub mod train;
