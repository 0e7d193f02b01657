//! The command line: flags and their validation (`args`), the subcommands
//! (`commands`), terminal progress (`progress`), the `bench` report (`bench`)
//! and images drawn in text (`draw`).

pub mod args;
pub mod bench;
pub mod commands;
pub mod draw;
pub mod progress;
