//! `cargo xtask ffi-header [--check]`: generates the C header `ffi/include/vsdk.h` from the
//! FFI crate's sources with cbindgen (pinned in the workspace manifest), deterministically;
//! `--check` fails when the committed header differs from what the sources give.

use std::path::{Path, PathBuf};

/// The FFI crate's directory, from the workspace root.
const CRATE_DIR: &str = "ffi";
/// The header, from the workspace root.
const HEADER: &str = "ffi/include/vsdk.h";

fn workspace_root() -> PathBuf {
    // xtask lives one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The header the sources give, as text.
fn generate(root: &Path) -> Result<String, String> {
    let crate_dir = root.join(CRATE_DIR);
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .map_err(|e| format!("cannot read ffi/cbindgen.toml: {e}"))?;
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .map_err(|e| format!("cbindgen failed: {e}"))?;
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).map_err(|e| format!("cbindgen wrote non-UTF-8: {e}"))
}

/// Runs the task with its arguments (`--check` or nothing).
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let check = match args {
        [] => false,
        [a] if a == "--check" => true,
        _ => return Err("usage: cargo xtask ffi-header [--check]".to_owned()),
    };
    let root = workspace_root();
    let header = generate(&root)?;
    let path = root.join(HEADER);
    if check {
        let committed =
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read {HEADER}: {e}"))?;
        if committed != header {
            return Err(format!(
                "{HEADER} is stale: the FFI sources changed; run `cargo xtask ffi-header` \
                 and commit the result"
            ));
        }
        println!("{HEADER} is up to date");
        return Ok(());
    }
    std::fs::write(&path, header).map_err(|e| format!("cannot write {HEADER}: {e}"))?;
    println!("wrote {HEADER}");
    Ok(())
}
