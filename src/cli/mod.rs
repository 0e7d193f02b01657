//! The command line: flags and their validation (`args`), the subcommands
//! (`commands`, `train`), terminal progress (`progress`), the `bench` report
//! (`bench`), training curves (`plot`) and images drawn in text (`draw`).

pub mod args;
pub mod bench;
pub mod commands;
pub mod draw;
pub mod interrupt;
pub mod plot;
pub mod progress;
pub mod report;
pub mod train;
