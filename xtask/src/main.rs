//! Developer tasks for the SDK workspace, run as `cargo xtask <task>`.
//!
//! Tasks live here rather than in `build.rs` so that generated code is committed, reviewed and
//! checked for freshness, and so that building the SDK never runs a generator.
//!
//! - `cargo xtask layering`: checks that no workspace crate depends upward (see the README).
//!
//! Code generation (`codegen [--check]`) and the C header (`ffi-header [--check]`) join this list
//! with their issues. xtask depends on no SDK crate, and no SDK crate depends on it.

mod layering;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("layering") => layering::check_workspace(),
        Some(other) => Err(format!("unknown task `{other}`\n\n{USAGE}")),
        None => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: cargo xtask <task>\n\ntasks:\n  layering   check that no workspace crate depends upward";
