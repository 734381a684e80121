//! `portcullis`: check, inspect and reset limits from a terminal, validate config files, and
//! serve a demo HTTP API behind the gate.
//!
//! Exit codes: 0 success (or allowed), 1 denied or invalid, 2 usage error.

mod args;
mod client;
mod commands;
mod serve;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let result = match cli.command {
        args::Command::Serve(a) => serve::run(a),
        args::Command::Check(a) => commands::check(a, cli.json),
        args::Command::Validate(a) => commands::validate(a, cli.json),
        args::Command::Inspect(a) => commands::inspect(a, cli.json),
        args::Command::Reset(a) => commands::reset(a, cli.json),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("portcullis: {message}");
            ExitCode::from(1)
        }
    }
}
