//! `cargo xtask codegen [--check] [--export]`: generates `vsphere-client/src/generated/` from the
//! normalized schema `vsphere-client/schema/vsphere.schema.json`.
//!
//! - `--export` first re-runs the schema exporter (`vsphere-client/schema/export_pyvmomi.py`)
//!   with the Python interpreter in `SDK_TEST_PYTHON` (or `python3`), which must have the pinned
//!   pyVmomi installed.
//! - `--check` writes nothing: it fails if the committed generated code (and, when a Python with
//!   pyVmomi is available through `SDK_TEST_PYTHON`, the committed schema) is not what the
//!   generator would write now.
//!
//! Generation is deterministic: the same schema always yields byte-identical files.

mod emit;
mod names;
mod schema;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs the task with its command-line arguments.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let check = args.iter().any(|a| a == "--check");
    let export = args.iter().any(|a| a == "--export");
    if let Some(bad) = args
        .iter()
        .find(|a| !matches!(a.as_str(), "--check" | "--export"))
    {
        return Err(format!("codegen: unknown argument {bad}"));
    }
    let root = workspace_root();
    let schema_path = root.join("vsphere-client/schema/vsphere.schema.json");
    let exporter = root.join("vsphere-client/schema/export_pyvmomi.py");

    if export || check {
        let python = std::env::var("SDK_TEST_PYTHON").ok();
        if export || python.is_some() {
            let python = python.unwrap_or_else(|| "python3".to_owned());
            let out =
                std::env::temp_dir().join(format!("vsphere-schema-{}.json", std::process::id()));
            let status = Command::new(&python)
                .arg(&exporter)
                .arg(&out)
                .status()
                .map_err(|e| format!("cannot run {python}: {e}"))?;
            if !status.success() {
                return Err(format!("the schema exporter failed ({status})"));
            }
            let fresh = fs::read(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            let _ = fs::remove_file(&out);
            if check {
                let committed = fs::read(&schema_path).unwrap_or_default();
                if committed != fresh {
                    return Err(format!(
                        "{} is not what the exporter writes now: run `cargo xtask codegen --export` and commit",
                        schema_path.display()
                    ));
                }
                eprintln!("schema: fresh (re-exported from pyVmomi)");
            } else {
                fs::write(&schema_path, &fresh)
                    .map_err(|e| format!("{}: {e}", schema_path.display()))?;
            }
        } else {
            eprintln!("schema: not re-exported (set SDK_TEST_PYTHON to a Python with pyVmomi)");
        }
    }

    let text =
        fs::read_to_string(&schema_path).map_err(|e| format!("{}: {e}", schema_path.display()))?;
    let schema: schema::Schema =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", schema_path.display()))?;
    if schema.format != 1 {
        return Err(format!("schema format {} is not supported", schema.format));
    }
    let files = emit::generate(&schema)?;
    let out_dir = root.join("vsphere-client/src/generated");
    if check {
        let stale = compare(&out_dir, &files)?;
        if stale.is_empty() {
            eprintln!("generated code: fresh ({} files)", files.len());
            return Ok(());
        }
        return Err(format!(
            "generated code is not up to date ({}): run `cargo xtask codegen` and commit",
            stale.join(", ")
        ));
    }
    write_all(&out_dir, &files)?;
    eprintln!("wrote {} files to {}", files.len(), out_dir.display());
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The names of files that differ from, are missing in, or are extra in `dir`.
fn compare(dir: &Path, files: &BTreeMap<String, String>) -> Result<Vec<String>, String> {
    let mut stale = Vec::new();
    for (name, text) in files {
        let on_disk = fs::read_to_string(dir.join(name)).unwrap_or_default();
        if on_disk != *text {
            stale.push(name.clone());
        }
    }
    for name in existing(dir)? {
        if !files.contains_key(&name) {
            stale.push(format!("{name} (extra)"));
        }
    }
    Ok(stale)
}

fn existing(dir: &Path) -> Result<Vec<String>, String> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|e| e.to_string())?;
        if let Some(n) = e.file_name().to_str()
            && Path::new(n).extension().is_some_and(|x| x == "rs")
        {
            out.push(n.to_owned());
        }
    }
    Ok(out)
}

fn write_all(dir: &Path, files: &BTreeMap<String, String>) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for name in existing(dir)? {
        if !files.contains_key(&name) {
            fs::remove_file(dir.join(&name)).map_err(|e| format!("{name}: {e}"))?;
        }
    }
    for (name, text) in files {
        let path = dir.join(name);
        if fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}
