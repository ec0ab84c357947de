//! Developer tasks for the SDK workspace, run as `cargo xtask <task>`.
//!
//! Tasks live here rather than in `build.rs` so that generated code is committed, reviewed and
//! checked for freshness, and so that building the SDK never runs a generator.
//!
//! - `cargo xtask codegen [--check] [--export]`: generates `vsphere-client/src/generated/` from
//!   the normalized vSphere schema (see [`codegen`]); `--check` fails on drift.
//! - `cargo xtask ffi-header [--check]`: generates the C header `ffi/include/vsdk.h` with
//!   cbindgen (see [`ffi_header`]); `--check` fails on drift.
//! - `cargo xtask layering`: checks that no workspace crate depends upward (see the README).
//!
//! xtask depends on no SDK crate, and no SDK crate depends on it.

mod codegen;
mod ffi_header;
mod layering;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("codegen") => codegen::run(&args[1..]),
        Some("ffi-header") => ffi_header::run(&args[1..]),
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

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  codegen [--check] [--export]   generate vsphere-client/src/generated/ from the schema
  ffi-header [--check]           generate the C header ffi/include/vsdk.h with cbindgen
  layering                       check that no workspace crate depends upward";
