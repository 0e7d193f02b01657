//! The command line: flags and their validation (`args`), the subcommands
//! (`commands`), terminal progress (`progress`) and the `bench` report (`bench`).

pub mod args;
pub mod bench;
pub mod commands;
pub mod progress;
