//! The C test programs (`tests/c/*.c`), compiled with `cc -Wall -Wextra -Werror` against the
//! static library `libvsdk.a` that cargo built for these tests, and run three ways: normally,
//! built with AddressSanitizer (and its leak checker), and under valgrind (`--leak-check=full
//! --errors-for-leak-kinds=definite --error-exitcode=1`: no definite leaks, no memory
//! errors). The C example (`examples/c/vsdk_example.c`) is built the same way and run once,
//! so it never rots.
//!
//! Without `cc` or `valgrind` these tests say so and pass, unless `CI` is set (the test
//! command installs both from `ci/apt-packages.txt`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The system libraries a Rust static library needs on Linux
/// (`rustc --print native-static-libs`): libgit2 first (pipeline-core's Git task links the
/// system libgit2), then what every Rust static library needs.
const NATIVE_LIBS: &[&str] = &[
    "-lgit2",
    "-lgcc_s",
    "-lutil",
    "-lrt",
    "-lpthread",
    "-lm",
    "-ldl",
    "-lc",
];

/// How a program is built and run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Plain,
    Asan,
    Valgrind,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("ffi/ has a parent")
        .to_path_buf()
}

/// `target/<profile>/`, where cargo put `libvsdk.a`: the test binary is in its `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether the tool is there; without it, skips (outside CI) or fails (in CI).
fn require(tool: &str) -> bool {
    if have(tool) {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{tool} is missing (ci/apt-packages.txt lists it)"
    );
    eprintln!("SKIPPED: {tool} is not installed (apt-get install {tool}); CI is unset");
    false
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A fresh scratch directory under the target directory.
fn scratch(name: &str) -> PathBuf {
    let dir = profile_dir()
        .join("c-tests")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// Compiles `source` for `mode` into `out_dir`; returns the executable.
fn compile(source: &Path, mode: Mode, out_dir: &Path) -> PathBuf {
    // `cargo test` leaves the library it built for this run in `deps/` (next to the test);
    // `cargo build` copies it up to `target/<profile>/`.
    let exe = std::env::current_exe().expect("the test's path");
    let lib = [exe.parent(), Some(profile_dir().as_path())]
        .into_iter()
        .flatten()
        .map(|d| d.join("libvsdk.a"))
        .find(|p| p.exists())
        .unwrap_or_else(|| profile_dir().join("libvsdk.a"));
    assert!(
        lib.exists(),
        "{} is missing: cargo builds it with the tests (crate-type staticlib)",
        lib.display()
    );
    let stem = source
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("a C file");
    let program = out_dir.join(format!("{stem}-{mode:?}").to_lowercase());
    let mut cc = Command::new("cc");
    cc.args(["-std=c11", "-g", "-Wall", "-Wextra", "-Werror"])
        .arg("-I")
        .arg(workspace().join("ffi/include"))
        .arg("-I")
        .arg(workspace().join("ffi/tests/c"));
    if mode == Mode::Asan {
        cc.args(["-fsanitize=address", "-fno-omit-frame-pointer"]);
    }
    cc.arg(source)
        .arg(&lib)
        .args(NATIVE_LIBS)
        .arg("-o")
        .arg(&program);
    let o = cc.output().expect("cc runs");
    assert!(o.status.success(), "cc {}: {}", source.display(), text(&o));
    program
}

/// Runs a built program (under valgrind in [`Mode::Valgrind`]); asserts it ends well and
/// prints `marker`.
fn run_built(program: &Path, mode: Mode, dir: &Path, marker: &str) {
    let work = dir.join(format!("work-{mode:?}"));
    std::fs::create_dir_all(&work).expect("work directory");
    let mut cmd = match mode {
        Mode::Plain | Mode::Asan => Command::new(program),
        Mode::Valgrind => {
            let mut c = Command::new("valgrind");
            c.args([
                "--leak-check=full",
                "--errors-for-leak-kinds=definite",
                "--error-exitcode=1",
                "--quiet",
            ])
            .arg(program);
            c
        }
    };
    cmd.arg(&work);
    if mode == Mode::Asan {
        cmd.env("ASAN_OPTIONS", "detect_leaks=1");
    }
    let o = cmd.output().expect("the program runs");
    let out = text(&o);
    assert!(
        o.status.success(),
        "{} ({mode:?}) failed: {out}",
        program.display()
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(marker),
        "{} ({mode:?}) did not finish: {out}",
        program.display()
    );
    if mode == Mode::Valgrind {
        assert!(
            !String::from_utf8_lossy(&o.stderr).contains("definitely lost"),
            "valgrind reports a leak: {out}"
        );
    }
}

/// Builds one C program and runs it: `Plain` runs it normally and then under valgrind (the
/// same executable; linking the static library is the slow part), `Asan` builds it with
/// AddressSanitizer and runs it.
fn run(source: &str, mode: Mode, marker: &str) {
    if !require("cc") {
        return;
    }
    let source = workspace().join(source);
    let stem = source.file_stem().and_then(|s| s.to_str()).unwrap_or("c");
    let dir = scratch(&format!("{stem}-{mode:?}"));
    let program = compile(&source, mode, &dir);
    run_built(&program, mode, &dir, marker);
    if mode == Mode::Plain && marker != EXAMPLE && require("valgrind") {
        run_built(&program, Mode::Valgrind, &dir, marker);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The example's marker: it runs once, plainly.
const EXAMPLE: &str = "vsdk_example: OK";

#[test]
fn full_flow_plain_and_valgrind() {
    run("ffi/tests/c/full_flow.c", Mode::Plain, "full_flow: OK");
}

#[test]
fn full_flow_asan() {
    run("ffi/tests/c/full_flow.c", Mode::Asan, "full_flow: OK");
}

#[test]
fn errors_plain_and_valgrind() {
    run("ffi/tests/c/errors.c", Mode::Plain, "errors: OK");
}

#[test]
fn errors_asan() {
    run("ffi/tests/c/errors.c", Mode::Asan, "errors: OK");
}

#[test]
fn threads_plain_and_valgrind() {
    run("ffi/tests/c/threads.c", Mode::Plain, "threads: OK");
}

#[test]
fn threads_asan() {
    run("ffi/tests/c/threads.c", Mode::Asan, "threads: OK");
}

#[test]
fn the_c_example_builds_and_runs() {
    run("examples/c/vsdk_example.c", Mode::Plain, EXAMPLE);
}
