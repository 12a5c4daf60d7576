//! `boltlinkctl`: operate a BoltLink installation. The command tree and what each command
//! does live in the library (`boltlink::ctl::cli`); this only parses the arguments.

use clap::Parser;

fn main() -> std::process::ExitCode {
    boltlink::ctl::cli::run(boltlink::ctl::cli::Cli::parse())
}
