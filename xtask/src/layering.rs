//! The workspace's layering rule, checked against `cargo metadata`.
//!
//! `vsphere-client` depends on no workspace crate; `vsphere-sim` only on `vsphere-client`;
//! `vmenv-core` only on `vsphere-client`, and only as an optional dependency (behind its `vsphere`
//! feature); `volume-core` on `vsphere-client` and `vmenv-core`, both optional (the vSphere FCD
//! backend, and hot-plug of qcow2 volumes into the QEMU VMs vmenv-core runs): a volume moves
//! between nodes, and the hypervisor layer is what provides the nodes; `pipeline-core` on none; `examples` and the FFI crate
//! (`sdk-ffi`) on any SDK crate; `xtask` on none. `test-support` (dev-only, `publish = false`)
//! may depend on any crate but `xtask`, and every other crate may use it only as a dev-dependency.

use std::process::Command;

use serde_json::Value;

/// What each workspace crate may depend on: (crate, allowed workspace deps, must be optional).
const RULES: &[(&str, &[&str], bool)] = &[
    ("vsphere-client", &[], false),
    ("vsphere-sim", &["vsphere-client"], false),
    ("volume-core", &["vsphere-client", "vmenv-core"], true),
    ("vmenv-core", &["vsphere-client"], true),
    ("pipeline-core", &[], false),
    (
        "sdk-ffi",
        &[
            "vsphere-client",
            "vsphere-sim",
            "volume-core",
            "vmenv-core",
            "pipeline-core",
        ],
        false,
    ),
    ("xtask", &[], false),
    (
        "test-support",
        &["vsphere-client", "vsphere-sim", "volume-core", "vmenv-core"],
        false,
    ),
];

/// Crates that any workspace crate may use, but only as a dev-dependency.
const DEV_ONLY: &[&str] = &["test-support"];

/// Runs `cargo metadata` and checks the rules, returning every violation in one message.
pub(crate) fn check_workspace() -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let meta: Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("bad cargo metadata: {e}"))?;
    check(&meta)
}

/// Checks the rules against parsed `cargo metadata --no-deps` output.
fn check(meta: &Value) -> Result<(), String> {
    let packages = meta["packages"]
        .as_array()
        .ok_or("metadata has no packages")?;
    let names: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut violations = Vec::new();
    for p in packages {
        let name = p["name"].as_str().unwrap_or_default();
        let rule = RULES.iter().find(|(n, _, _)| *n == name);
        for d in p["dependencies"].as_array().into_iter().flatten() {
            let dep = d["name"].as_str().unwrap_or_default();
            if !names.contains(&dep) {
                continue;
            }
            if DEV_ONLY.contains(&dep) {
                if d["kind"].as_str() != Some("dev") {
                    violations.push(format!("{name} may use {dep} only as a dev-dependency"));
                }
                continue;
            }
            let Some((_, allowed, optional)) = rule else {
                continue;
            };
            if !allowed.contains(&dep) {
                violations.push(format!("{name} must not depend on {dep}"));
            } else if *optional && d["kind"].is_null() && d["optional"] != Value::Bool(true) {
                violations.push(format!("{name} may depend on {dep} only behind a feature"));
            }
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "layering violations:\n  {}",
            violations.join("\n  ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::check;

    #[test]
    fn the_workspace_itself_is_layered() {
        super::check_workspace().unwrap();
    }

    #[test]
    fn an_upward_dependency_is_reported() {
        let meta = json!({"packages": [
            {"name": "vsphere-client", "dependencies": [{"name": "volume-core", "kind": null}]},
            {"name": "volume-core", "dependencies": []}
        ]});
        let err = check(&meta).unwrap_err();
        assert!(
            err.contains("vsphere-client must not depend on volume-core"),
            "{err}"
        );
    }

    #[test]
    fn a_non_optional_vsphere_dependency_is_reported() {
        let meta = json!({"packages": [
            {"name": "vsphere-client", "dependencies": []},
            {"name": "volume-core", "dependencies": [
                {"name": "vsphere-client", "kind": null, "optional": false}]}
        ]});
        let err = check(&meta).unwrap_err();
        assert!(err.contains("only behind a feature"), "{err}");
    }

    #[test]
    fn test_support_is_a_dev_dependency_only() {
        let meta = json!({"packages": [
            {"name": "test-support", "dependencies": [
                {"name": "volume-core", "kind": null}]},
            {"name": "volume-core", "dependencies": [
                {"name": "test-support", "kind": "dev"}]},
            {"name": "examples", "dependencies": [
                {"name": "test-support", "kind": null}]}
        ]});
        let err = check(&meta).unwrap_err();
        assert!(
            err.contains("examples may use test-support only as a dev-dependency"),
            "{err}"
        );
        assert!(!err.contains("volume-core may"), "{err}");
        assert!(!err.contains("test-support must not"), "{err}");
    }

    #[test]
    fn dev_dependencies_may_be_non_optional() {
        let meta = json!({"packages": [
            {"name": "vsphere-client", "dependencies": []},
            {"name": "volume-core", "dependencies": [
                {"name": "vsphere-client", "kind": "dev", "optional": false}]}
        ]});
        assert!(check(&meta).is_ok());
    }
}
